//! The ACME state directory: the account key, the current certificate
//! bundle (key + chain) and the times of the certificates issued (`ledger`),
//! one file each, named after a hash of what they belong to (contact and
//! directory URL; the domains, sorted and lowercased, and the directory URL). A certificate for other names is only a stand-in,
//! served while the one for the configured names is ordered (`Acme::new`).
//!
//! Files are written whole or not at all (temporary file, fsync, rename) with
//! mode 0600 in a 0700 directory: they hold private keys. Owns the file layout
//! only; when to order is for `renew`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rustls_acme::{AccountCache, CertCache};
use sha2::{Digest, Sha256};

/// Up to this many names, [`StateDir::is_from`] tries every order of a
/// certificate's names for its legacy file name (720 hashes at most).
const LEGACY_PERMUTED: usize = 6;

/// Whether `test` holds for some order of `names[from..]` (in place: by
/// swaps, each put back before returning).
fn any_permutation(names: &mut [String], from: usize, test: &dyn Fn(&[String]) -> bool) -> bool {
    if from + 1 >= names.len() {
        return test(names);
    }
    for i in from..names.len() {
        names.swap(from, i);
        let found = any_permutation(names, from + 1, test);
        names.swap(from, i);
        if found {
            return true;
        }
    }
    false
}

/// The directory and its naming scheme.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

fn name(prefix: &str, parts: &[String], directory_url: &str, ext: &str) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.update(directory_url.as_bytes());
    format!("{prefix}-{}.{ext}", &hex::encode(h.finalize())[..32])
}

/// Whether `name` is one hookrelay writes in the state directory: an
/// account key, a certificate, the ledger of issued times (`PREFIX-HASH.EXT`,
/// see [`name`]), one being written (`.tmp`) or a damaged one set aside;
/// or the ledger as builds before its per-CA files kept it (`issued-times`).
fn is_ours(name: &str) -> bool {
    if matches!(name, "issued-times" | "issued-times.tmp") {
        return true;
    }
    let Some((prefix, rest)) = name.split_once('-') else {
        return false;
    };
    let (Some(hash), Some(ext)) = (rest.get(..32), rest.get(32..)) else {
        return false;
    };
    matches!(prefix, "account" | "cert" | "issued")
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(
            ext,
            ".der" | ".pem" | ".times" | ".tmp" | ".der.damaged" | ".pem.damaged"
        )
}

/// Why `dir` looks like another program's: it holds files, none of them
/// one hookrelay writes (a file of ours beside strays, an editor's copy or
/// a `.bak`, is hookrelay's directory; hidden files and `lost+found` are
/// not judged). Names one of them.
pub fn foreign(dir: &Path) -> Option<String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "lost+found")
        .collect();
    if names.iter().any(|n| is_ours(n)) {
        return None;
    }
    let first = names.first()?;
    Some(format!(
        "{} holds {first:?} and no file hookrelay writes: another program's directory? hookrelay keeps its ACME \
         state in `acme/` beside the store directory, so give store.path a parent of hookrelay's own (e.g. \
         store.path = \"/var/lib/hookrelay/data\", state in /var/lib/hookrelay/acme)",
        dir.display()
    ))
}

impl StateDir {
    /// Create the directory (0700) if needed; make its files the owner's
    /// only (0600) where they are not ([`Self::tighten`]).
    /// A directory that holds files hookrelay does not write is another
    /// program's (NixOS's `security.acme` keeps its certificates in
    /// `/var/lib/acme`, which `store.path = "/var/lib/hookrelay"` would
    /// name): refused, naming one, rather than made 0700 under it.
    pub fn open(dir: &Path) -> std::io::Result<StateDir> {
        if let Some(why) = foreign(dir) {
            return Err(std::io::Error::other(why));
        }
        crate::private_dir::create(dir)?;
        let state = StateDir { dir: dir.to_path_buf() };
        state.tighten();
        Ok(state)
    }

    /// Files here hold private keys (the account's, each certificate's):
    /// one that others may read (restored from a backup with `cp`, copied in
    /// by hand) would stay so until a renewal rewrites it, so it is made
    /// 0600 now, with a warning naming it (a warning too when that fails:
    /// the certificate is still served).
    fn tighten(&self) {
        use std::os::unix::fs::PermissionsExt;
        // The directory too: one made by hand or restored 0755 shows others
        // which domains and contacts have keys here.
        if let Ok(meta) = std::fs::metadata(&self.dir) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                match std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700)) {
                    Ok(()) => tracing::warn!(dir = %self.dir.display(), was = %format!("{mode:04o}"),
                        "the ACME state directory was open to others; made 0700"),
                    Err(e) => tracing::warn!(dir = %self.dir.display(), mode = %format!("{mode:04o}"), error = %e,
                        "the ACME state directory is open to others and cannot be made 0700"),
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let mode = meta.permissions().mode() & 0o777;
            if !meta.is_file() || mode & 0o077 == 0 {
                continue;
            }
            let path = entry.path();
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => tracing::warn!(file = %path.display(), was = %format!("{mode:04o}"),
                    "an ACME state file (it holds a private key) was readable by others; made 0600"),
                Err(e) => tracing::warn!(file = %path.display(), mode = %format!("{mode:04o}"), error = %e,
                    "an ACME state file (it holds a private key) is readable by others and cannot be made 0600"),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The certificate for these names (in any order and case) from this CA.
    pub fn cert_file(&self, domains: &[String], directory_url: &str) -> PathBuf {
        let mut names: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        self.dir.join(name("cert", &names, directory_url, "pem"))
    }

    /// The times of the certificates issued for these names (in any order
    /// and case) by this CA: the daily cap's ledger (`super::ledger`).
    pub fn issued_file(&self, domains: &[String], directory_url: &str) -> PathBuf {
        let mut names: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        self.dir.join(name("issued", &names, directory_url, "times"))
    }

    /// The name [`Self::cert_file`] had before the names were sorted: the
    /// domains as configured (lowercased by validation), in their order. A
    /// file under it is found at the first start after an upgrade.
    pub fn legacy_cert_file(&self, domains: &[String], directory_url: &str) -> PathBuf {
        self.dir.join(name("cert", domains, directory_url, "pem"))
    }

    /// Whether `path` is the file of a certificate for `names` (its SANs, in
    /// any order and case) from this CA, under its name or its legacy one: a
    /// cached certificate from this `directory_url`, not from another CA.
    ///
    /// The legacy name hashed the domains in the order they were configured
    /// then, which the certificate does not keep (CAs list SANs sorted), so
    /// it is looked for under every order of `names` (up to
    /// [`LEGACY_PERMUTED`] names), and beyond that under the SAN order, the
    /// sorted one and `configured`'s order (the domains configured now that
    /// the certificate names, first, then the rest in SAN or sorted order).
    pub fn is_from(&self, path: &Path, names: &[String], configured: &[String], directory_url: &str) -> bool {
        let mut names: Vec<String> = names.iter().map(|d| d.to_ascii_lowercase()).collect();
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        if path == self.cert_file(&names, directory_url) {
            return true;
        }
        let legacy = |order: &[String]| path == self.legacy_cert_file(order, directory_url);
        if names.len() <= LEGACY_PERMUTED {
            return any_permutation(&mut names, 0, &legacy);
        }
        let mut sorted = names.clone();
        sorted.sort();
        let first: Vec<String> = configured
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .filter(|d| names.contains(d))
            .collect();
        let then = |rest: &[String]| -> Vec<String> {
            first
                .iter()
                .chain(rest.iter().filter(|n| !first.contains(n)))
                .cloned()
                .collect()
        };
        legacy(&names) || legacy(&sorted) || legacy(&then(&names)) || legacy(&then(&sorted))
    }

    /// Every cached certificate file (`cert-*.pem`), whatever it was for:
    /// the candidates when the one for the configured names is missing.
    pub fn cert_files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if file.starts_with("cert-") && file.ends_with(".pem") {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    pub fn account_file(&self, contact: &[String], directory_url: &str) -> PathBuf {
        self.dir.join(name("account", contact, directory_url, "der"))
    }

    /// The file's bytes; `None` when it does not exist.
    pub fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replace `path` atomically with `bytes` (mode 0600).
    pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Whether `der` is an account key rustls-acme can sign with (PKCS#8 ECDSA P-256).
fn is_account_key(der: &[u8]) -> bool {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &ring::rand::SystemRandom::new()).is_ok()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("state directory task failed: {e}")))?
}

/// The cache handed to one rustls-acme order: it keeps the account key in the
/// state directory, never offers a cached certificate (the order exists because
/// a new one is wanted), and hands the issued bundle back through `issued`
/// before writing it, so a full disk cannot lose a certificate already issued.
pub struct OrderCache {
    pub dir: StateDir,
    pub issued: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait]
impl CertCache for OrderCache {
    type EC = std::io::Error;

    async fn load_cert(&self, _domains: &[String], _directory_url: &str) -> Result<Option<Vec<u8>>, Self::EC> {
        Ok(None)
    }

    async fn store_cert(&self, domains: &[String], directory_url: &str, cert: &[u8]) -> Result<(), Self::EC> {
        *self.issued.lock().unwrap_or_else(|e| e.into_inner()) = Some(cert.to_vec());
        let path = self.dir.cert_file(domains, directory_url);
        let bytes = cert.to_vec();
        blocking(move || StateDir::write(&path, &bytes)).await
    }
}

#[async_trait]
impl AccountCache for OrderCache {
    type EA = std::io::Error;

    async fn load_account(&self, contact: &[String], directory_url: &str) -> Result<Option<Vec<u8>>, Self::EA> {
        let path = self.dir.account_file(contact, directory_url);
        blocking(move || match StateDir::read(&path)? {
            Some(key) if !is_account_key(&key) => {
                // rustls-acme would fail every order on these bytes, for
                // ever: set them aside and register a new account.
                let aside = path.with_extension("der.damaged");
                std::fs::rename(&path, &aside)?;
                tracing::warn!(
                    file = %path.display(),
                    moved_to = %aside.display(),
                    bytes = key.len(),
                    "the ACME account key file is damaged (not a PKCS#8 P-256 key); set aside, registering a new account"
                );
                Ok(None)
            }
            other => Ok(other),
        })
        .await
    }

    async fn store_account(&self, contact: &[String], directory_url: &str, account: &[u8]) -> Result<(), Self::EA> {
        let path = self.dir.account_file(contact, directory_url);
        let bytes = account.to_vec();
        blocking(move || StateDir::write(&path, &bytes)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn state_files_and_the_directory_open_to_others_are_made_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("acme");
        StateDir::open(&dir).unwrap();
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        const X: &str = "0123456789abcdef0123456789abcdef";
        let (account, cert_x, cert_y) = (
            format!("account-{X}.der"),
            format!("cert-{X}.pem"),
            format!("issued-{X}.times"),
        );
        for (f, m) in [
            (account.as_str(), 0o644),
            (cert_x.as_str(), 0o640),
            (cert_y.as_str(), 0o600),
        ] {
            std::fs::write(dir.join(f), b"key").unwrap();
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(&dir).unwrap();
        for f in [&account, &cert_x, &cert_y] {
            assert_eq!(mode(f), 0o600, "{f}");
        }
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    }

    /// The review of stop 59: with `store.path = "/var/lib/hookrelay"` the
    /// state directory is `/var/lib/acme`, another program's certificates
    /// there: they were made 0600 and the directory 0700 under it.
    #[test]
    fn a_directory_holding_files_hookrelay_does_not_write_is_refused_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("acme");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("other.pem"), b"nginx's").unwrap();
        std::fs::set_permissions(dir.join("other.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let Err(e) = StateDir::open(&dir) else { panic!("opened") };
        assert!(
            e.to_string().contains("\"other.pem\"") && e.to_string().contains("store.path"),
            "{e}"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&dir.join("other.pem"))), (0o755, 0o644));
        // Hidden files and lost+found are not judged; the ledger of builds
        // before its per-CA files is hookrelay's; a file of hookrelay's
        // beside strays makes it hookrelay's directory.
        std::fs::write(dir.join(".nfs0001"), b"x").unwrap();
        std::fs::create_dir(dir.join("lost+found")).unwrap();
        std::fs::write(dir.join("issued-times"), b"x").unwrap();
        assert_eq!(foreign(&dir), None);
        std::fs::remove_file(dir.join("issued-times")).unwrap();
        std::fs::remove_file(dir.join("other.pem")).unwrap();
        assert_eq!(foreign(&dir), None, "only hidden files and lost+found");
        let ours = StateDir { dir: dir.clone() };
        for f in [
            ours.account_file(&names(&["mailto:a@b.t"]), "https://ca/dir"),
            ours.cert_file(&names(&["a.t"]), "https://ca/dir"),
        ] {
            std::fs::write(&f, b"x").unwrap();
            std::fs::write(f.with_extension("tmp"), b"x").unwrap();
        }
        StateDir::open(&dir).expect("hookrelay's own files");
        assert!(is_ours("account-0123456789abcdef0123456789abcdef.der.damaged"));
        assert!(!is_ours("cert-0123456789abcdef.pem") && !is_ours("account-x.der"));
        // A name cut inside a character at byte 32: not ours, and no panic.
        assert!(!is_ours(&format!("cert-{}\u{e9}.pem", "a".repeat(31))));
    }

    #[test]
    fn a_legacy_file_is_from_this_directory_whatever_the_sans_order() {
        let dir = StateDir {
            dir: PathBuf::from("/x"),
        };
        let ca = "https://ca/dir";
        // Few names: any order that made the file name.
        let file = dir.legacy_cert_file(&names(&["c.t", "a.t", "b.t"]), ca);
        assert!(dir.is_from(&file, &names(&["A.t", "b.t", "c.t"]), &[], ca));
        assert!(!dir.is_from(&file, &names(&["a.t", "b.t", "c.t"]), &[], "https://other/dir"));
        assert!(!dir.is_from(&file, &names(&["a.t", "b.t"]), &[], ca));
        // Many: the configured names' order first, then the rest sorted.
        let many = ["h.t", "a.t", "b.t", "c.t", "d.t", "e.t", "f.t", "g.t"];
        let sans = names(&["a.t", "b.t", "c.t", "d.t", "e.t", "f.t", "g.t", "h.t"]);
        let file = dir.legacy_cert_file(&names(&many), ca);
        assert!(dir.is_from(&file, &sans, &names(&["h.t", "a.t"]), ca));
        assert!(!dir.is_from(&file, &sans, &names(&["a.t", "h.t"]), ca));
        assert!(dir.is_from(&dir.cert_file(&sans, ca), &sans, &[], ca));
    }
}
