//! Free room on a disk, in bytes and in inodes, from one `statvfs`. A disk
//! can run out of inodes with bytes to spare (many small files: the media
//! archive, other programs), and then sled cannot start (it writes a
//! snapshot file at each open: "No space left on device" with `df -h` at
//! 1 %, a restart loop) and the media archive cannot make its files
//! (filesystem review, stop 73). The store keeps [`FLOOR`] inodes free and
//! the local media archive [`MEDIA_FLOOR`] wherever they keep `min_free`
//! bytes.

use std::path::Path;

/// Inodes kept free: a start's snapshot file, the archive's temporary and
/// digest directories, with room for the operator's own.
pub const FLOOR: u64 = 64;

/// The media archive's floor: the store's and room for 32 downloads in
/// flight (a part file and a digest directory each) above it, so that on a
/// disk it shares with the store, downloads that passed their check never
/// take the store under its floor (review of the change).
pub const MEDIA_FLOOR: u64 = FLOOR + 64;

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

/// Why the disk holding `path` is short of inodes for the store, if it is.
pub fn shortage(path: &Path) -> Option<String> {
    inode_shortage(path, look(path).ok()?)
}

/// Why the disk holding `path` is short of inodes for the media archive.
pub fn media_shortage(path: &Path) -> Option<String> {
    shortage_under(path, look(path).ok()?, MEDIA_FLOOR)
}

/// Why `room` (under `path`) is short of inodes for the store, if it is.
pub fn inode_shortage(path: &Path, room: Room) -> Option<String> {
    shortage_under(path, room, FLOOR)
}

fn shortage_under(path: &Path, room: Room, floor: u64) -> Option<String> {
    let free = room.inodes?;
    (free < floor).then(|| {
        format!(
            "disk out of inodes: {free} free under {} (fewer than {floor}; `df -i` shows them, the bytes may be \
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
    let other = fs4::available_space(dir.path()).unwrap();
    assert!(room.bytes.abs_diff(other) < 64 << 20, "{} against {other}", room.bytes);
    let short = |inodes| inode_shortage(dir.path(), Room { bytes: 0, inodes });
    assert!(short(Some(FLOOR - 1)).is_some_and(|w| w.contains("out of inodes")));
    assert_eq!(short(Some(FLOOR)), None);
    assert_eq!(short(None), None);
}
