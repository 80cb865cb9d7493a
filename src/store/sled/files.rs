//! The store's files as opened: a `store.path` removed or replaced while the
//! relay runs (`rm -rf`, a tmp cleaner, a restore over it) leaves sled
//! writing to a deleted file, its lock gone with it (a second relay could
//! open the path), and every callback taken from then on lost at the next
//! start. The relay looks every second and fails the store when it is gone
//! (crash review, stop 61).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Inner, SledStore};
use crate::store::StoreError;

/// The (device, inode) of `path/db`, if it can be read.
pub(super) fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path.join("db")).ok().map(|m| (m.dev(), m.ino()))
}

impl Inner {
    /// Why the files opened are not those at `store.path` any more, if so
    /// (a failed look for another reason, a permission, says nothing).
    fn files_gone(&self) -> Option<String> {
        let opened = self.files?;
        let db = self.path.join("db");
        match std::fs::metadata(&db) {
            Ok(m) if (m.dev(), m.ino()) == opened => None,
            Ok(_) => Some(format!("{} was replaced while hookrelay ran", db.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(format!("{} was removed while hookrelay ran", db.display()))
            }
            Err(_) => None,
        }
    }
}

impl SledStore {
    /// Fail the store when its files were removed or replaced: new callbacks
    /// are refused (503), the relay is not ready, the daemon exits for a
    /// restart, which opens what is at `store.path` then.
    pub fn check_files(&self) {
        if self.inner.has_failed() {
            return;
        }
        if let Some(why) = self.inner.files_gone() {
            self.inner.fail(&StoreError::Damaged(why));
        }
    }
}
