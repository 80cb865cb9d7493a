//! Whether the local media directory takes files now: its disk above
//! `min_free` (bytes, and inodes: [`crate::disk_room`]), on the disk it was
//! opened on, and, after a write failed, a probe that does what a write
//! does. Owns the checks a download asks before it starts; not the writes
//! (`super`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use super::LocalStore;
use crate::media::storage::StoreError;

impl LocalStore {
    /// Whether the directory takes files now: the media disk has more than
    /// `min_free` free and, since a write failed (or the directory was
    /// opened), a probe file could be written (a download checks before it
    /// starts: no GET while it cannot keep the file). An `Unavailable`
    /// error when the probe fails.
    pub fn check_room(&self) -> Result<(), StoreError> {
        // The directory gone (a disk unmounted from under it), a disk
        // failing: the store cannot take files, not a low disk.
        Self::check_space(&self.root, self.min_free).map_err(|e| match e {
            StoreError::Io { op, path, source } => StoreError::Unavailable {
                store: self.describe(),
                error: format!("{op} {}: {source}", path.display()),
            },
            e => e,
        })?;
        self.check_disk()?;
        if self.failing.is_failing() {
            self.failing.probe(|| self.probe())?;
        }
        Ok(())
    }

    /// The lock a check holds while it runs: one at a time.
    pub(crate) fn checking(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.checking.clone()
    }

    /// The directory is on the disk it was opened on: a media directory
    /// that is itself a mount point stays there, empty, when its disk is
    /// unmounted, and files written would land on the disk beneath it
    /// (hidden when the disk is mounted again).
    fn check_disk(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let moved = match fs::metadata(&*self.root) {
            Ok(m) if m.dev() != self.dev => Err(std::io::Error::other(format!(
                "it is on another disk than when hookrelay opened it (device {} then, {} now): a disk unmounted from \
                 under it, or mounted there since hookrelay started (restart hookrelay to use the directory as it is now)",
                self.dev,
                m.dev()
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        moved.map_err(|e| StoreError::Unavailable {
            store: self.describe(),
            error: format!("{}: {e}", self.root.display()),
        })
    }

    /// Do what a download's write does, with a small file: write and fsync
    /// it where downloads write theirs (`tmp/`, made again if it went: a
    /// cleaner of temporary directories; not the directory itself, which a
    /// disk not mounted any more takes with it), make a directory beside
    /// the digests' and rename the file into it; then remove both. Writing
    /// the file alone passed while every download failed making its digest's
    /// directory (the directory not writable, one inode left): each failure
    /// used a try and the URLs failed for good (filesystem review, stop 73).
    fn probe(&self) -> Result<(), StoreError> {
        let tmp = self.root.join("tmp");
        let path = tmp.join(format!("{}-{}.part", ulid::Ulid::new(), self.owner));
        // One per relay, made again at each probe (one a crash left is reused).
        let dir = self.root.join(format!(".probe-{}", self.owner));
        let moved = dir.join("probe");
        let clear = || {
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(&moved);
            let _ = fs::remove_dir(&dir);
        };
        clear();
        let made = match fs::DirBuilder::new().mode(0o700).create(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        };
        let written = made
            .and_then(|()| {
                fs::File::create(&path).and_then(|mut f| f.write_all(b"hookrelay").and_then(|()| f.sync_all()))
            })
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
            .and_then(|()| {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| format!("cannot make a directory in {}: {e}", self.root.display()))
            })
            .and_then(|()| {
                fs::rename(&path, &moved).map_err(|e| format!("cannot move a file into {}: {e}", dir.display()))
            });
        clear();
        written.map_err(|error| StoreError::Unavailable {
            store: self.describe(),
            error,
        })
    }

    pub(super) fn check_space(root: &Path, min_free: u64) -> Result<(), StoreError> {
        if let Some(why) = (min_free > 0).then(|| crate::disk_room::media_shortage(root)).flatten() {
            return Err(StoreError::Unavailable {
                store: format!("local directory {}", root.display()),
                error: why,
            });
        }
        let available = fs4::available_space(root).map_err(StoreError::io("statvfs", root))?;
        if available < min_free {
            return Err(StoreError::LowSpace {
                path: root.to_path_buf(),
                available,
                min_free,
            });
        }
        Ok(())
    }
}
