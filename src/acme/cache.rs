//! The ACME state directory: the account key and the current certificate
//! bundle (key + chain), one file each, named after a hash of what they belong
//! to (contact and directory URL; the domains, sorted and lowercased, and
//! the directory URL). A certificate for other names is only a stand-in,
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

impl StateDir {
    /// Create the directory (0700) if needed.
    pub fn open(dir: &Path) -> std::io::Result<StateDir> {
        crate::private_dir::create(dir)?;
        Ok(StateDir { dir: dir.to_path_buf() })
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

    /// The name [`Self::cert_file`] had before the names were sorted: the
    /// domains as configured (lowercased by validation), in their order. A
    /// file under it is found at the first start after an upgrade.
    pub fn legacy_cert_file(&self, domains: &[String], directory_url: &str) -> PathBuf {
        self.dir.join(name("cert", domains, directory_url, "pem"))
    }

    /// Whether `path` is the file of a certificate for `names` from this CA
    /// (under its name or its legacy one): a cached certificate from this
    /// `directory_url`, not from another CA.
    pub fn is_from(&self, path: &Path, names: &[String], directory_url: &str) -> bool {
        path == self.cert_file(names, directory_url) || path == self.legacy_cert_file(names, directory_url)
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
        blocking(move || StateDir::read(&path)).await
    }

    async fn store_account(&self, contact: &[String], directory_url: &str, account: &[u8]) -> Result<(), Self::EA> {
        let path = self.dir.account_file(contact, directory_url);
        let bytes = account.to_vec();
        blocking(move || StateDir::write(&path, &bytes)).await
    }
}
