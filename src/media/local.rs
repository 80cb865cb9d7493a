//! The local media directory: content-addressed files, written atomically.
//!
//! Owns the on-disk layout (`ROOT/ab/abcdef…`, the SHA-256 in hex, sharded by
//! its first byte; partial files in `ROOT/tmp/ULID-OWNER.part`, removed only
//! when they are this relay's at start-up or stale, as relays may share the
//! directory), durable writes (temp
//! file, fsync, rename, fsync of the directory) and the room each download
//! reserves above the free-space floor (`super::room`); whether the
//! directory takes files now, in `checks`.
//! Does not own the callback store's own disk guard: this one only protects
//! it by refusing media writes early.
//!
//! Hashing and writing run on a blocking thread fed through a small bounded
//! channel, so the download and the disk work overlap and memory holds a few
//! chunks at most, whatever the file size.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

mod checks;

use super::failing::Failing;
use super::room::{Ledger, Reservation, STEP};
use super::storage::{DigestHold, DigestLocks, PutError, StoreError, Stored, StoredReader};

/// Chunks in flight between the download and the writer thread.
const CHANNEL_CHUNKS: usize = 16;
/// Write buffer of the writer thread: few, large writes.
const WRITE_BUFFER: usize = 1 << 20;
/// How often (in bytes written) the free-space floor is re-checked.
const SPACE_CHECK_EVERY: u64 = 8 << 20;
/// How far one download can take the disk below the floor before its
/// writer notices: the bytes between two checks, the write buffer not yet
/// on disk at a check, and the chunks in the channel. Downloads in flight
/// each may (each passed its check alone), so the floor of a media
/// directory on the embedded store's disk keeps this much per download
/// above `store.min_free` (see `super::settings`).
pub const OVERSHOOT_PER_DOWNLOAD: u64 = SPACE_CHECK_EVERY + (2 << 20);

/// A media directory.
#[derive(Clone, Debug)]
pub struct LocalStore {
    /// Absolute root, so stored locations stay valid whatever the working directory.
    root: Arc<PathBuf>,
    /// Bytes that must stay free on the media disk; writes stop before that.
    min_free: u64,
    /// Names this relay's partial files (`ULID-OWNER.part`): see [`owner_tag`].
    owner: Arc<str>,
    /// The room the directory's downloads in flight hold above `min_free`.
    room: Arc<Ledger>,
    /// Set when a file could not be written (a read-only or unmounted disk,
    /// permissions, an I/O error), and at opening: the next downloads first
    /// write a probe file, and wait without a try while that fails.
    failing: Arc<Failing>,
    /// The device the directory was on when opened (see `probe`).
    dev: u64,
    /// Held by the check running ([`super::MediaStore::check_ready`]) until
    /// its thread returns, which on a hung disk it may not do for hours.
    checking: Arc<tokio::sync::Mutex<()>>,
}

/// A download's reservation: grown by the download, drawn down by its writer.
type Shared = Arc<Mutex<Reservation>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Reservation> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

enum Msg {
    Data(Bytes),
    /// The source ended cleanly: make the file durable and visible.
    Finish,
}

/// How long a partial file must have gone unwritten to be taken for a
/// crashed download's: the download deadline (`media.timeout`) and a margin
/// for the fsync and rename that follow it.
pub fn stale_part_age(timeout: std::time::Duration) -> std::time::Duration {
    timeout + PART_MARGIN
}

/// Who writes a partial file: this host (its name) and this relay's
/// `store.path`, of which one process runs at a time. At start-up a relay
/// removes its own partial files at once (a crash's); those of other owners
/// (relays sharing the directory) only once stale. The host name comes from
/// `uname(2)`: the shipped unit's `ProcSubset=pid` hides
/// `/proc/sys/kernel/hostname` (every relay was then the empty host).
pub fn owner_tag(store_path: &Path) -> String {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy();
    let mut h = Sha256::new();
    h.update(host.trim().as_bytes());
    h.update([0]);
    h.update(store_path.as_os_str().as_encoded_bytes());
    hex::encode(&h.finalize()[..8])
}

/// See [`stale_part_age`].
const PART_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes the temp file unless the write succeeded.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl LocalStore {
    /// Open (creating) the directory, and remove the stale partial files a
    /// crash left (see [`LocalStore::remove_stale_parts`]).
    pub fn new(root: impl Into<PathBuf>, min_free: u64) -> Result<LocalStore, StoreError> {
        let stale = stale_part_age(super::FetchOptions::default().timeout);
        LocalStore::open_dir(root, min_free, &owner_tag(Path::new("")), Some(stale))
    }

    /// Open (creating) the directory, naming its partial files with `owner`;
    /// `clean` (at start-up): remove the partial files this owner left (its
    /// process is starting: none of them is in flight) and those of any
    /// owner not written to for that long (a crashed download's). Not the
    /// others: the directory may be shared by the relays of a cluster, whose
    /// downloads in flight would fail at their rename.
    pub fn open_dir(
        root: impl Into<PathBuf>,
        min_free: u64,
        owner: &str,
        clean: Option<std::time::Duration>,
    ) -> Result<LocalStore, StoreError> {
        let root = root.into();
        let tmp = root.join("tmp");
        crate::private_dir::create(&tmp).map_err(StoreError::io("create media directory", &tmp))?;
        let root = fs::canonicalize(&root).map_err(StoreError::io("resolve media directory", &root))?;
        let dev = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(&root)
                .map_err(StoreError::io("stat media directory", &root))?
                .dev()
        };
        let store = LocalStore {
            dev,
            root: Arc::new(root),
            min_free,
            owner: owner.into(),
            room: Arc::default(),
            // Probed at the first check (the start's): a directory that is
            // there but cannot be written is told before any download.
            failing: Arc::new(Failing::at_opening()),
            checking: Arc::default(),
        };
        if let Some(age) = clean {
            store.remove_parts(age, true);
        }
        Ok(store)
    }

    /// Remove the partial files (`tmp/*.part`) not modified for longer than
    /// `age` (blocking; returns how many went). A download in flight writes
    /// its file at least once before its deadline passes, so with `age`
    /// beyond the deadline (see [`stale_part_age`]) only a crashed
    /// download's file is old enough. Not this owner's: they are its
    /// downloads in flight (a crashed run's went at the start), which a
    /// step of the wall clock would make look old.
    pub fn remove_stale_parts(&self, age: std::time::Duration) -> usize {
        self.remove_parts(age, false)
    }

    /// [`LocalStore::remove_stale_parts`], and with `own` every file this
    /// store's owner wrote, whatever its age.
    fn remove_parts(&self, age: std::time::Duration, own: bool) -> usize {
        let mine = format!("-{}", self.owner);
        let tmp = self.root.join("tmp");
        let Ok(entries) = fs::read_dir(&tmp) else { return 0 };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "part") {
                continue;
            }
            let is_mine = path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.ends_with(&mine));
            if is_mine && !own {
                continue;
            }
            let stale = is_mine
                || entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|idle| idle > age));
            if stale && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The same directory with another free-space floor (a reload): unlike
    /// [`LocalStore::new`] it leaves the partial files of downloads in flight.
    pub fn with_min_free(&self, min_free: u64) -> LocalStore {
        LocalStore {
            root: self.root.clone(),
            min_free,
            owner: self.owner.clone(),
            room: self.room.clone(),
            failing: self.failing.clone(),
            dev: self.dev,
            checking: self.checking.clone(),
        }
    }

    /// The free-space floor in force.
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file with this (checked) digest lives.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2]).join(sha256)
    }

    /// Where the files are (the directory), whatever the other settings.
    pub fn location(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    pub fn describe(&self) -> String {
        format!(
            "local directory {} (min_free {} bytes)",
            self.root.display(),
            self.min_free
        )
    }

    pub(crate) async fn put_stream<S, E>(
        &self,
        mut stream: S,
        content_type: Option<&str>,
        size_hint: Option<u64>,
        locks: Option<&DigestLocks>,
    ) -> Result<(Stored, DigestHold), PutError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Send,
    {
        // The room for the announced size is taken before the first byte;
        // a chunked body's as it grows. Downloads in flight holding it are
        // a wait (`RoomHeld`), not a failure of this file.
        let reservation: Shared = Arc::new(Mutex::new(self.room.start()));
        if let Some(n) = size_hint {
            lock(&reservation).grow(&self.root, self.min_free, n, n)?;
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let (root, min_free, locks, owner) = (self.root.clone(), self.min_free, locks.cloned(), self.owner.clone());
        let res = reservation.clone();
        let writer = tokio::task::spawn_blocking(move || write_file(rx, &root, &owner, min_free, locks.as_ref(), &res));
        let (mut source_err, mut room_err, mut received) = (None, None, 0u64);
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    let short = received.saturating_sub(lock(&reservation).reserved());
                    if short > 0 {
                        let grown = lock(&reservation).grow(&self.root, self.min_free, STEP.max(short), short);
                        if let Err(e) = grown {
                            room_err = Some(e);
                            break;
                        }
                    }
                    if tx.send(Msg::Data(chunk)).await.is_err() {
                        break; // the writer failed; its error is below
                    }
                }
                Err(e) => {
                    source_err = Some(e);
                    break;
                }
            }
        }
        if source_err.is_none() && room_err.is_none() {
            let _ = tx.send(Msg::Finish).await;
        }
        drop(tx);
        let written = writer.await.map_err(|e| StoreError::Io {
            op: "write",
            path: self.root.to_path_buf(),
            source: std::io::Error::other(e),
        });
        if let Some(e) = source_err {
            return Err(PutError::Source(e));
        }
        if let Some(e) = room_err {
            return Err(PutError::Store(e));
        }
        // The directory failed (not the disk's floor, nor the download):
        // probed before the next download.
        let (sha256, size, path, hold) = written?.inspect_err(|e| {
            if matches!(e, StoreError::Io { .. }) {
                self.failing.note();
            }
        })?;
        let stored = Stored {
            location: path.display().to_string(),
            sha256,
            size,
            content_type: content_type.map(str::to_string),
        };
        Ok((stored, hold))
    }

    pub(crate) async fn open(&self, sha256: &str) -> Result<Option<StoredReader>, StoreError> {
        let path = self.path_of(sha256);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("open", &path)(e)),
        };
        let size = file.metadata().await.map_err(StoreError::io("stat", &path))?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 << 10).boxed();
        Ok(Some(StoredReader { size, stream }))
    }

    pub(crate) async fn delete(&self, sha256: &str) -> Result<bool, StoreError> {
        let path = self.path_of(sha256);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("remove", &path)(e)),
        }
    }
}

/// The writer thread: hash and write every chunk, then fsync, rename into
/// place and fsync the directory. Returns the digest, size and final path,
/// and the digest's lock in `locks` (taken before looking whether the file
/// is there already; see [`DigestLocks`]).
fn write_file(
    mut rx: mpsc::Receiver<Msg>,
    root: &Path,
    owner: &str,
    min_free: u64,
    locks: Option<&DigestLocks>,
    reservation: &Shared,
) -> Result<(String, u64, PathBuf, DigestHold), StoreError> {
    let tmp_path = root.join("tmp").join(format!("{}-{owner}.part", ulid::Ulid::new()));
    let file = fs::File::create(&tmp_path).map_err(StoreError::io("create", &tmp_path))?;
    let mut temp = TempFile(Some(tmp_path.clone()));
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    let (mut size, mut since_check, mut on_disk) = (0u64, 0u64, 0u64);
    loop {
        match rx.blocking_recv() {
            Some(Msg::Data(chunk)) => {
                hasher.update(&chunk);
                out.write_all(&chunk).map_err(StoreError::io("write", &tmp_path))?;
                size += chunk.len() as u64;
                // What left the buffer is on the disk: no longer reserved.
                let now = size - out.buffer().len() as u64;
                if now > on_disk {
                    lock(reservation).wrote(now - on_disk);
                    on_disk = now;
                }
                since_check += chunk.len() as u64;
                if since_check >= SPACE_CHECK_EVERY {
                    since_check = 0;
                    LocalStore::check_space(root, min_free)?;
                }
            }
            Some(Msg::Finish) => break,
            // The source failed or the put was cancelled: the temp file goes.
            None => {
                return Err(StoreError::Io {
                    op: "write",
                    path: tmp_path,
                    source: std::io::Error::other("source ended before the file was complete"),
                })
            }
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| StoreError::io("write", &tmp_path)(e.into_error()))?;
    lock(reservation).wrote(size - on_disk);
    file.sync_all().map_err(StoreError::io("fsync", &tmp_path))?;
    drop(file);

    let sha256 = hex::encode(hasher.finalize());
    let dir = root.join(&sha256[..2]);
    if !dir.exists() {
        fs::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
        sync_dir(root)?;
    }
    let path = dir.join(&sha256);
    let hold = locks.map(|l| l.blocking_hold(&sha256)).unwrap_or_default();
    if path.exists() {
        // The same bytes are already stored (content addressing): keep those.
        drop(temp);
    } else {
        fs::rename(&tmp_path, &path).map_err(StoreError::io("rename into", &path))?;
        temp.0 = None;
        sync_dir(&dir)?;
    }
    Ok((sha256, size, path, hold))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}
