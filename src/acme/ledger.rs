//! The times of the last issued certificates (`pace`'s daily cap), kept in
//! the ACME state directory so that a restart does not forget them: a relay
//! restarted over and over (crash-looping, the clock ahead) would otherwise
//! order at each start until the CA locks the account.
//!
//! One file per CA and domain set ([`StateDir::issued_file`]: the CA's limits
//! count per account and per set of names, and a certificate from staging
//! must not hold back the first one from production): one RFC 3339 time a
//! line, oldest first, written whole or not at all ([`StateDir::write`]). A
//! file that cannot be read or understood does not stop the relay: it is
//! taken as the cap reached when the file was last written (its mtime; now
//! when unknown), with a warning naming it; deleting the file allows an order
//! at once.

use std::path::Path;
use std::time::SystemTime;

use super::cache::StateDir;
use super::pace::{Issued, MAX_ORDERS_PER_DAY};

/// The issued times kept in `path` (none when there is no file yet); times
/// ahead of `now` (the clock was ahead when they were written) count as now.
pub fn load(path: &Path, now: SystemTime) -> Issued {
    let problem = match StateDir::read(path) {
        Ok(None) => return Issued::default(),
        Ok(Some(bytes)) => match parse(&bytes) {
            Ok(times) => {
                let mut issued = Issued::default();
                for t in times {
                    issued.record(t.min(now));
                }
                return issued;
            }
            Err(why) => why,
        },
        Err(e) => format!("cannot read it: {e}"),
    };
    let written = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_or(now, |t| t.min(now));
    let mut issued = Issued::default();
    for _ in 0..MAX_ORDERS_PER_DAY {
        issued.record(written);
    }
    tracing::warn!(
        file = %path.display(),
        problem = %problem,
        counted_as_issued_at = %crate::tls::rfc3339(written),
        "the ACME issued-certificate times are unusable; taken as the daily cap reached when the file was last \
         written (the next order waits up to a day; delete the file to allow one at once)"
    );
    issued
}

fn parse(bytes: &[u8]) -> Result<Vec<SystemTime>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            humantime::parse_rfc3339(l.trim()).map_err(|e| format!("line {}: {e} (not an RFC 3339 time)", n + 1))
        })
        .collect()
}

/// Replace the file at `path` with `issued`'s times.
pub fn save(path: &Path, issued: &Issued) -> std::io::Result<()> {
    let text: String = issued
        .times()
        .map(|t| format!("{}\n", crate::tls::rfc3339(t)))
        .collect();
    StateDir::write(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const H: Duration = Duration::from_secs(3600);

    /// A state directory and its ledger for one CA and one name.
    fn dir() -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::open(t.path()).unwrap();
        let file = d.issued_file(&["hooks.example.com".into()], "https://ca.test/dir");
        (t, file)
    }

    #[test]
    fn each_ca_and_domain_set_has_its_own_ledger() {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::open(t.path()).unwrap();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let one = d.issued_file(&names(&["a.example", "b.example"]), "https://ca.test/dir");
        assert_eq!(
            one,
            d.issued_file(&names(&["B.example", "a.example"]), "https://ca.test/dir")
        );
        assert_ne!(one, d.issued_file(&names(&["a.example"]), "https://ca.test/dir"));
        assert_ne!(
            one,
            d.issued_file(&names(&["a.example", "b.example"]), "https://staging.ca.test/dir")
        );
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn saved_times_are_loaded_again_and_keep_the_cap() {
        let (_t, d) = dir();
        let t0 = at(1_800_000_000);
        assert_eq!(load(&d, t0).wait(t0), None, "no file: no wait");
        let mut issued = Issued::default();
        for i in 0..MAX_ORDERS_PER_DAY as u32 {
            issued.record(t0 + H * i);
        }
        save(&d, &issued).unwrap();
        let now = t0 + H * 3;
        let mut again = load(&d, now);
        assert_eq!(again.wait(now), Some(H * 21));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_damaged_file_counts_as_the_cap_reached_when_it_was_written() {
        let (_t, d) = dir();
        std::fs::write(&d, "2026-12-02T10:00:00Z\nnot a time\n").unwrap();
        let now = SystemTime::now();
        let wait = load(&d, now).wait(now).expect("waits");
        assert!(wait > 23 * H && wait <= 24 * H, "{wait:?}");
    }

    #[test]
    fn times_ahead_of_the_clock_count_as_now() {
        let (_t, d) = dir();
        let now = at(1_800_000_000);
        let mut issued = Issued::default();
        for _ in 0..MAX_ORDERS_PER_DAY {
            issued.record(now + H * 24 * 200);
        }
        save(&d, &issued).unwrap();
        assert_eq!(load(&d, now).wait(now), Some(H * 24));
    }
}
