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
/// snapshot it wrote, hookrelay's marks) and the directory's entries, so a
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
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_file() {
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
    /// disk when this returns (`Ok`).
    pub(super) fn flush_durably(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.db_file
            .sync_data()
            .map_err(|e| StoreError::from(sled::Error::Io(e)))
    }
}
