//! Free inodes on a disk: it can run out of them with bytes to spare (many
//! small files: the media archive, other programs), and then sled cannot
//! start (it writes a snapshot file at each open: "No space left on device"
//! with `df -h` at 1 %, a restart loop) and the media archive cannot make
//! its files (filesystem review, stop 73). The store and the local media
//! archive keep [`FLOOR`] inodes free wherever they keep `min_free` bytes.

use std::path::Path;

/// Inodes kept free: a start's snapshot file, the archive's temporary and
/// digest directories, with room for the operator's own.
pub const FLOOR: u64 = 64;

/// Free inodes for an unprivileged user under `path`; `None` where the
/// filesystem has no fixed number (btrfs reports none) or cannot be asked.
pub fn available(path: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    (s.f_files > 0).then_some(s.f_favail)
}

/// Why the disk holding `path` is short of inodes, if it is.
pub fn shortage(path: &Path) -> Option<String> {
    let free = available(path)?;
    (free < FLOOR).then(|| {
        format!(
            "disk out of inodes: {free} free under {} (fewer than {FLOOR}; `df -i` shows them, the bytes may be \
             to spare): remove files from that disk",
            path.display()
        )
    })
}

#[cfg(test)]
#[test]
fn a_disk_with_inodes_to_spare_is_not_short() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(shortage(dir.path()), None);
    assert_eq!(available(&dir.path().join("not there")), None);
}
