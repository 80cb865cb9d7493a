//! `hookrelay forward URL --to LOCAL_URL`: the private side of a pull
//! subscriber. It runs inside the private network, needs no config file and
//! no store (the relay keeps the cursor), long-polls the relay's pull API
//! ([`client`]), POSTs each message to the local service with its headers and
//! original bytes ([`pump`]), acknowledges after a local `2xx` and hands back
//! otherwise ([`acker`]), reconnects with back-off and jitter ([`backoff`]),
//! pulls one message at a time while the local service fails ([`pause`]),
//! releases what it will not deliver (`release`),
//! and shows what it does ([`status`]). A message offered again after a
//! local `2xx` whose acknowledgement the relay never got is acknowledged,
//! not posted twice ([`unacked`]). SIGTERM, SIGINT and SIGHUP stop it
//! cleanly (`signals`).
//! The token comes from `--token-file` or `HOOKRELAY_PULL_TOKEN`; it is never
//! printed.

pub mod acker;
#[cfg(test)]
mod acker_conflict_tests;
#[cfg(test)]
mod acker_tests;
mod active;
pub mod backoff;
pub mod client;
#[cfg(test)]
mod client_tests;
mod local_post;
pub mod pause;
mod probe;
#[cfg(test)]
mod probe_tests;
#[cfg(test)]
mod pull_loop_tests;
pub mod pump;
#[cfg(test)]
mod pump_tests;
mod refused;
mod relay_error;
mod release;
#[cfg(test)]
mod release_tests;
#[cfg(test)]
mod round_tests;
mod signals;
pub mod status;
pub mod unacked;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::sync::watch;

use crate::auth::Secret;
use crate::config::{LogConfig, LogFormat};

/// The environment variable the token may come from.
pub const TOKEN_ENV: &str = "HOOKRELAY_PULL_TOKEN";

/// What `hookrelay forward` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The relay's pull URL, e.g. `https://hooks.example.com/pull/laptop`.
    pub url: String,
    /// The local service, e.g. `http://127.0.0.1:3000/webhooks`.
    pub to: String,
    pub token_file: Option<PathBuf>,
    /// Messages delivered locally at once (and leased at most).
    pub concurrency: usize,
    /// Trust this CA (PEM) besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// How long one long-poll waits for work.
    pub wait: Duration,
    /// How long the local service may take per message.
    pub timeout: Duration,
}

/// The token: `--token-file` first, then `HOOKRELAY_PULL_TOKEN`; surrounding
/// whitespace (a file's newline) is dropped.
pub fn read_token(file: Option<&Path>) -> Result<Secret, String> {
    let text = match file {
        Some(f) => crate::config::small_file::read_text(f, crate::config::small_file::SECRET_MAX)
            .map_err(|e| format!("cannot read the token file {}: {e}", f.display()))?,
        None => std::env::var(TOKEN_ENV).map_err(|_| format!("no token: give --token-file FILE or set {TOKEN_ENV}"))?,
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(match file {
            Some(f) => format!("the token file {} is empty", f.display()),
            None => format!("{TOKEN_ENV} is empty"),
        });
    }
    // A second line (or any control character) would make no valid
    // `Authorization` header: the relay would refuse a token never sent.
    if token.chars().any(char::is_control) {
        return Err(match file {
            Some(f) => format!(
                "the token file {} holds more than one line (or a control character): it must hold the token \
                 alone, on one line",
                f.display()
            ),
            None => format!("{TOKEN_ENV} holds a line break (or a control character): set it to the token alone"),
        });
    }
    Ok(Secret::new(token))
}

/// What to warn about a token file that other users of this machine can
/// read or write (its mode has bits for others, as a file made with the
/// default umask has, or lets its group write it, or lets the shared group
/// `users` read it): any of them could pull the subscriber's callbacks. A
/// service's own group that may read it (`root:hookrelay` 0640, for the
/// service's user) is a choice, not warned about.
fn token_file_open_to_others(file: &Path) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(file).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    let shared_group = mode & 0o040 != 0 && group_name(meta.gid()).is_some_and(|g| g == "users");
    (mode & 0o027 != 0 || shared_group).then(|| {
        format!(
            "the token file {} is open to other users of this machine (mode {mode:o}): anyone who reads it can \
             take this subscriber's callbacks; make it the owner's only (chmod 600), or its group's to read (chmod 640)",
            file.display()
        )
    })
}

/// The name of group `gid` in `/etc/group`, if it is there.
fn group_name(gid: u32) -> Option<String> {
    find_group(|_, g| g == gid).map(|(name, _)| name)
}

/// The first group of `/etc/group` (name, gid) that `wanted`.
fn find_group(wanted: impl Fn(&str, u32) -> bool) -> Option<(String, u32)> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let gid = f.nth(1)?.parse::<u32>().ok()?;
        wanted(name, gid).then(|| (name.to_string(), gid))
    })
}

/// An absolute http(s) URL without credentials (`what` names it in errors).
fn absolute(what: &str, s: &str, query_allowed: bool) -> Result<Uri, String> {
    let authority = s
        .split_once("://")
        .map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if authority.contains('@') {
        return Err(format!("invalid {what}: credentials do not belong in the URL"));
    }
    // Errors show the URL with its query values out: one may be a key.
    let shown = crate::auth::token::redact_url(s);
    if s.contains('#') {
        return Err(format!(
            "invalid {what} {shown:?}: no fragment (#…): it is never sent, so it cannot select anything"
        ));
    }
    let absolute = || format!("invalid {what} {shown:?}: use an absolute http:// or https:// URL");
    let u: Uri = s.parse().map_err(|_| absolute())?;
    if !matches!(u.scheme_str(), Some("http" | "https")) || u.host().is_none_or(str::is_empty) {
        return Err(absolute());
    }
    // `http::Uri` reads `:9O90` as no port: the scheme's port, somewhere else.
    if crate::config::unusable_port(s) {
        return Err(format!(
            "invalid {what} {shown:?}: the port must be a number from 1 to 65535"
        ));
    }
    if !query_allowed && u.query().is_some() {
        return Err(format!(
            "invalid {what} {shown:?}: no query string (the forwarder adds wait and max)"
        ));
    }
    Ok(u)
}

/// Whether the relay URL ends in `/pull/{subscriber}` (a reverse proxy may
/// put a prefix before it): a route's or the admin API's URL is named as the
/// likely mistake before the relay answers it with a 405 or a refused token.
fn pull_path(url: &Uri) -> Result<(), String> {
    let segments: Vec<&str> = url.path().trim_end_matches('/').rsplit('/').take(2).collect();
    match segments.as_slice() {
        [name, "pull"] if !name.is_empty() => Ok(()),
        _ => Err(format!(
            "invalid relay URL {url}: not a pull URL (expected …/pull/SUBSCRIBER, the pull subscriber's name, \
             on the relay's public listener)"
        )),
    }
}

/// A random id for this process, sent with every request so the relay can
/// tell our leases from another forwarder's.
fn forwarder_id() -> String {
    format!("fwd-{:016x}", fastrand::u64(..))
}

/// Run `hookrelay forward`; the process exit code.
pub fn main(opts: &Options) -> ExitCode {
    // An answer of the local service that came while the forwarder was
    // paused is read, not posted again (`clock::pauses::timeout_at`).
    crate::clock::pauses::start();
    let terminal = std::io::stderr().is_terminal();
    crate::logging::init(&LogConfig {
        // On a terminal the status line tells the story; logs only say what is wrong.
        level: if terminal { "warn" } else { "info" }.into(),
        format: LogFormat::Auto,
    });
    let prepared = (|| {
        let token = read_token(opts.token_file.as_deref())?;
        if let Some(why) = opts.token_file.as_deref().and_then(token_file_open_to_others) {
            tracing::warn!("{why}");
        }
        let url = absolute("relay URL", &opts.url, false)?;
        if let Err(why) = pull_path(&url) {
            // A reverse proxy may map another path to the pull API: go on, but
            // say what a 405 or a refused token would then most likely mean.
            tracing::warn!("{why}; going on in case a proxy maps it");
        }
        let to = absolute("--to URL", &opts.to, true)?;
        if url.scheme_str() == Some("http") && !url.host().is_some_and(is_loopback) {
            tracing::warn!(relay = %url, "the relay URL is plain http: the token and the messages cross the network unencrypted");
        }
        crate::tls::install_provider();
        let tls = crate::tls::client_config(opts.ca_file.as_deref()).map_err(|e| e.to_string())?;
        let relay = client::Relay::new(url.clone(), token, tls.clone(), forwarder_id(), opts.wait)?;
        let local = client::Local::new(to, tls, opts.timeout);
        Ok::<_, String>((url, relay, local))
    })();
    let (url, relay, local) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("hookrelay-forward")
        .build()
        .expect("runtime");
    let status = Arc::new(status::Status::new(url.to_string(), terminal));
    let pump = pump::Pump {
        relay: Arc::new(relay),
        local: Arc::new(local),
        status: status.clone(),
        concurrency: opts.concurrency,
        unacked: Arc::default(),
    };
    let result = rt.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        signals::spawn(stop_tx);
        tracing::info!(relay = %url, "hookrelay forward starting");
        let shown = tokio::spawn({
            let status = pump.status.clone();
            let stop = stop_rx.clone();
            async move { status.show(stop).await }
        });
        let r = pump.run(stop_rx).await;
        shown.abort();
        r
    });
    if terminal {
        eprintln!("\r\x1b[2K{}", status.line());
    }
    match result {
        Ok(()) => {
            tracing::info!(
                delivered = status.delivered(),
                handed_back = status.handed_back(),
                not_sent_twice = status.not_twice(),
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(absolute("relay URL", "https://hooks.example.com/pull/laptop", false).is_ok());
        for (bad, needle) in [
            ("hooks.example.com/pull/x", "absolute"),
            ("ftp://h/pull/x", "absolute"),
            ("https://u:p@h/pull/x", "credentials"),
            ("https://h/pull/x?wait=1s", "no query"),
            ("https://h/pull/x#laptop", "no fragment"),
            ("https://:8443/pull/x", "absolute"),
            ("https://h:84O3/pull/x", "the port must be"),
            ("http://h:0/in", "the port must be"),
        ] {
            let e = absolute("relay URL", bad, false).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains("u:p"), "{e}");
        }
        // A refused URL is shown with its query values out.
        for bad in [
            "ftp://h/in?key=SeCrEtKeY",
            "https://h/in?key=SeCrEtKeY#f",
            "https://h/pull/x?key=SeCrEtKeY",
        ] {
            let e = absolute("--to URL", bad, bad.starts_with("ftp")).unwrap_err();
            assert!(!e.contains("SeCrEtKeY") && e.contains("key="), "{e}");
        }
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && !is_loopback("10.0.0.1"));
        for ok in [
            "https://h/pull/laptop",
            "https://h/relay/pull/laptop",
            "http://h:1/pull/x/",
        ] {
            assert!(pull_path(&ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "https://h/hooks/main",
            "https://h/pull/",
            "https://h/",
            "https://h/pull/x/ack",
        ] {
            let e = pull_path(&bad.parse().unwrap()).unwrap_err();
            assert!(e.contains("not a pull URL"), "{bad}: {e}");
        }
    }

    #[test]
    fn token_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(read_token(Some(&f)).unwrap(), Secret::new("s3cret"));
        std::fs::write(&f, "\n").unwrap();
        assert!(read_token(Some(&f)).unwrap_err().contains("empty"));
        // A second line would be sent as a bare `Bearer` (refused as a wrong token).
        std::fs::write(&f, "s3cret\nsecond-line\n").unwrap();
        let e = read_token(Some(&f)).unwrap_err();
        assert!(e.contains("more than one line") && !e.contains("s3cret"), "{e}");
        let e = read_token(Some(&dir.path().join("missing"))).unwrap_err();
        assert!(e.contains("cannot read the token file"), "{e}");
    }

    #[test]
    fn a_token_file_others_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "s3cret\n").unwrap();
        for (mode, warned) in [
            (0o600, false),
            (0o400, false),
            (0o640, false),
            (0o644, true),
            (0o660, true),
            (0o602, true),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let why = token_file_open_to_others(&f);
            assert_eq!(why.is_some(), warned, "{mode:o}: {why:?}");
            if let Some(why) = why {
                assert!(
                    why.contains(&format!("mode {mode:o}")) && !why.contains("s3cret"),
                    "{why}"
                );
            }
        }
        // Readable by the shared group `users` (where this machine has one
        // and the test may give the file to it: root).
        let users = find_group(|name, _| name == "users").map(|(_, gid)| gid);
        if let Some(gid) = users.filter(|g| std::os::unix::fs::chown(&f, None, Some(*g)).is_ok()) {
            assert_eq!(group_name(gid).as_deref(), Some("users"));
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
            assert!(token_file_open_to_others(&f).is_some(), "0640 with group users");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(token_file_open_to_others(&f).is_none(), "0600 with group users");
        } else {
            eprintln!("SKIPPED the group `users` case: no such group, or not root");
        }
    }
}
