//! Reads of the files a config names that block (a FIFO nobody writes to, a
//! file on a stalled mount): which file each reading thread is on, so that
//! a reload that gives up on its read names that file, not only the config
//! ([`reading_on`]); and the reads a reload gave up on while they stay
//! blocked ([`mark_blocked`]), so that a later read of the same file fails
//! at once instead of blocking one more thread on it, unless the file was
//! replaced since (a FIFO swapped for a plain file is read again). Only
//! reading threads look at files (`stat`): never the daemon's signal loop.

use std::collections::HashMap;
use std::io::Error;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::ThreadId;

/// A file's device and inode: which file a path named when it was read.
type FileId = (u64, u64);

/// A read under way: the file, and its identity once looked at (None while
/// that `stat` itself has not answered).
type UnderWay = (PathBuf, Option<FileId>);

/// Each reading thread's read under way.
static READING: Mutex<Option<HashMap<ThreadId, UnderWay>>> = Mutex::new(None);

/// Reads a reload gave up on, by thread, while they stay blocked.
static BLOCKED: Mutex<Option<HashMap<ThreadId, UnderWay>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The file `thread` is reading now, if any.
pub fn reading_on(thread: ThreadId) -> Option<PathBuf> {
    lock(&READING)
        .as_ref()
        .and_then(|m| m.get(&thread))
        .map(|(p, _)| p.clone())
}

/// `thread`'s read, given up on: later reads of its file fail at once
/// while it stays blocked and the file is the same.
pub fn mark_blocked(thread: ThreadId) {
    // Under READING's lock, as the read's end takes both: a read ending now
    // leaves no entry behind.
    let reading = lock(&READING);
    if let Some(read) = reading.as_ref().and_then(|m| m.get(&thread)) {
        lock(&BLOCKED)
            .get_or_insert_with(HashMap::new)
            .insert(thread, read.clone());
    }
}

/// Notes the current thread's read of a file until dropped.
pub(super) struct Reading;

impl Reading {
    /// The read of `path` begins: refused when a read given up on is still
    /// blocked on the same file (or on a path whose `stat` never answered).
    pub(super) fn of(path: &Path) -> std::io::Result<Reading> {
        let me = std::thread::current().id();
        lock(&READING)
            .get_or_insert_with(HashMap::new)
            .insert(me, (path.to_path_buf(), None));
        let guard = Reading;
        let blocked: Vec<Option<FileId>> = lock(&BLOCKED)
            .as_ref()
            .map(|m| m.values().filter(|(p, _)| p == path).map(|(_, id)| *id).collect())
            .unwrap_or_default();
        let id = file_id(path);
        if let Some(m) = lock(&READING).as_mut() {
            if let Some(entry) = m.get_mut(&me) {
                entry.1 = id;
            }
        }
        if blocked.iter().any(|b| b.is_none() || *b == id) {
            return Err(Error::other(
                "an earlier reload's read of this file is still blocked (a FIFO nobody writes to, or a stalled \
                 disk or mount?): it is read again once that read ends or the file is replaced",
            ));
        }
        Ok(guard)
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        let me = std::thread::current().id();
        let mut reading = lock(&READING);
        if let Some(m) = reading.as_mut() {
            m.remove(&me);
        }
        if let Some(m) = lock(&BLOCKED).as_mut() {
            m.remove(&me);
        }
    }
}
