//! What makes a flush durable: sled's `flush` writes its log with
//! `sync_file_range`, which persists neither the `db` file's new size and
//! blocks nor the disk's write cache (only sled's background `sync_all`,
//! once a second, does: sled issues 1351 and 1452). A power cut, or a disk
//! error that turns ext4 read-only, lost callbacks already answered `200`
//! (86 of 86 in a block-level snapshot taken right after their answers) and
//! left stores sled could not open (filesystem review, stop 73). So each
//! flush an answer waits for is followed by `fdatasync` of the `db` file,
//! through a handle of its own; the store's small files (sled's `conf`,
//! hookrelay's marks) and its directory are synced once at each open.

use std::fs::File;
use std::path::Path;

use super::Inner;
use crate::store::StoreError;

/// The `db` file, opened to sync it (a read handle: `fdatasync` persists
/// the file whatever handle asks).
pub(super) fn open(path: &Path) -> Result<File, StoreError> {
    File::open(path.join("db")).map_err(|e| StoreError::from(sled::Error::Io(e)))
}

/// Sync what an open created or changed besides the log (sled's `conf`, the
/// snapshot it wrote, its blob files and their directory, hookrelay's
/// marks) and the directory's entries, so a
/// power cut after a store's first start does not leave them empty (sled
/// then warns of a corrupt configuration). A failure is logged: the log's
/// own syncs are what an answer waits for.
pub(super) fn sync_files(path: &Path) {
    let sync = |p: &Path| File::open(p).and_then(|f| f.sync_all());
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(store = %path.display(), error = %e, "cannot sync the store's files");
            return;
        }
    };
    let blobs = path.join("blobs");
    let blob_entries = std::fs::read_dir(&blobs).into_iter().flatten().flatten();
    for entry in entries.flatten().chain(blob_entries) {
        let p = entry.path();
        if p.is_file() || p == blobs {
            if let Err(e) = sync(&p) {
                tracing::warn!(file = %p.display(), error = %e, "cannot sync a store file");
            }
        }
    }
    if let Err(e) = sync(path) {
        tracing::warn!(store = %path.display(), error = %e, "cannot sync the store directory");
    }
}

impl Inner {
    /// Flush sled's log and sync the `db` file: what is written is on the
    /// disk when this returns (`Ok`). The blob files sled wrote since the
    /// last time (a page over 128 KiB is written to a file of its own in
    /// `blobs/`, unsynced, the log pointing at it) are synced first, with
    /// their directory: a log entry on the disk naming a blob that is not
    /// stopped sled's recovery there, losing what followed it (review of the
    /// change).
    pub(super) fn flush_durably(&self) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::from(sled::Error::Io(e));
        self.db.flush()?;
        self.sync_new_blobs().map_err(io)?;
        self.db_file.sync_data().map_err(io)
    }

    /// Sync the blob files named after the newest one synced so far (sled
    /// names them by their log position), and `blobs/` when there were any.
    fn sync_new_blobs(&self) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let dir = self.path.join("blobs");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let synced = self.blobs_synced.load(Ordering::Relaxed);
        let mut newest = synced;
        for entry in entries {
            let entry = entry?;
            let Some(n) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if n > synced {
                File::open(entry.path())?.sync_data()?;
                newest = newest.max(n);
            }
        }
        if newest > synced {
            File::open(&dir)?.sync_all()?;
            self.blobs_synced.store(newest, Ordering::Relaxed);
        }
        Ok(())
    }
}
