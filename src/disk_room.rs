//! Free room on a disk, in bytes and in inodes, from one `statvfs`. A disk
//! can run out of inodes with bytes to spare (many small files: the media
//! archive, other programs), and then sled cannot start (it writes a
//! snapshot file at each open: "No space left on device" with `df -h` at
//! 1 %, a restart loop) and the media archive cannot make its files
//! (filesystem review, stop 73). The store and the local media archive keep
//! [`FLOOR`] inodes free wherever they keep `min_free` bytes.

use std::path::Path;

/// Inodes kept free: a start's snapshot file, the archive's temporary and
/// digest directories, with room for the operator's own.
pub const FLOOR: u64 = 64;

/// The room under `path` an unprivileged user has.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub bytes: u64,
    /// `None` where the filesystem has no fixed number of inodes (btrfs
    /// reports none).
    pub inodes: Option<u64>,
}

/// The room on the disk holding `path`.
pub fn look(path: &Path) -> std::io::Result<Room> {
    let s = rustix::fs::statvfs(path)?;
    Ok(Room {
        bytes: s.f_bavail.saturating_mul(s.f_frsize),
        inodes: (s.f_files > 0).then_some(s.f_favail),
    })
}

/// Free inodes under `path`; `None` where there is no fixed number or the
/// disk cannot be asked.
pub fn available(path: &Path) -> Option<u64> {
    look(path).ok()?.inodes
}

/// Why the disk holding `path` is short of inodes, if it is.
pub fn shortage(path: &Path) -> Option<String> {
    inode_shortage(path, look(path).ok()?)
}

/// Why `room` (under `path`) is short of inodes, if it is.
pub fn inode_shortage(path: &Path, room: Room) -> Option<String> {
    let free = room.inodes?;
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
    let room = look(dir.path()).unwrap();
    assert_eq!(room.bytes, fs4::available_space(dir.path()).unwrap());
}
