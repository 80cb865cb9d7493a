//! Directories that hold callbacks, archived results or certificates are
//! created readable by their owner only (0700), whatever the umask: the store
//! keeps every callback body (signed media URLs are credentials), the media
//! archive the results, the ACME state a private key. A directory that exists
//! already keeps its mode (the operator's, or systemd's `StateDirectory=`).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Create `dir` and any missing parents with mode 0700.
pub fn create(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_directories_are_the_owners_only() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b");
        super::create(&dir).unwrap();
        for d in [t.path().join("a"), dir] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }
}
