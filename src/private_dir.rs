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

/// What to do about a directory the relay cannot write (`e` from creating
/// or opening it), appended to its error: under the shipped unit only the
/// `StateDirectory` is writable and the dynamic user owns nothing else, so a
/// store or ACME state moved elsewhere failed with a bare "Read-only file
/// system" (packaging review, stop 62). Empty for other errors.
pub fn unwritable_hint(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
            " (under the shipped systemd unit only /var/lib/hookrelay is writable, and the service's \
             dynamic user owns nothing else: keep store.path under it, e.g. /var/lib/hookrelay/data, \
             mounting another disk there if it must be elsewhere; see systemd/README.md)"
        }
        _ => "",
    }
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

    #[test]
    fn an_unwritable_directory_says_where_the_unit_writes() {
        use std::io::{Error, ErrorKind};
        for kind in [ErrorKind::ReadOnlyFilesystem, ErrorKind::PermissionDenied] {
            assert!(super::unwritable_hint(&Error::from(kind)).contains("/var/lib/hookrelay"));
        }
        assert_eq!(super::unwritable_hint(&Error::from(ErrorKind::NotFound)), "");
    }
}
