//! The embedded backend: one sled tree laid out as in [`keys`], written only
//! by the [`group_commit`] thread and read directly by lanes and the admin API.
//!
//! sled 0.34 keeps a sticky error after a failed write (e.g. a full disk), and
//! flushing or even dropping it afterwards can block for ever. So the store
//! refuses new events before the disk is full (`min_free`), and a write error
//! marks it failed for good: the daemon then exits and its supervisor restarts
//! it (sled recovers everything flushed).

mod abandoned;
mod append;
mod batch;
mod body_rows;
mod codec;
mod cursor;
mod dead_count;
mod due_cap;
pub use due_cap::BroughtIn;
mod due_route;
mod durable;
mod group_commit;
mod keys;
mod left_behind;
pub use left_behind::left_behind_warning;
mod files;
mod media;
mod media_codec;
mod media_query;
mod media_source;
mod media_sweep;
mod migrate;
mod migrate_notify;
mod open_db;
pub use open_db::{check_compression, foreign_entries};
mod probe;
pub use migrate::{Migrated, Opened};
mod query;
mod record;
mod registry;
mod replay;
mod result_codec;
mod room_watch;
mod schema;
mod space;
pub use space::floor_warning;
mod sweep;
mod task_codec;
mod task_query;
mod tasks;
mod topology;
mod writer_control;
mod writer_msg;
mod writer_state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, Notify};

pub use cursor::Cursor;
pub use group_commit::SledTicket;
pub use media_source::{MediaCursor, SledMediaTicket};

use super::{Accepted, Attempt, NewEvent, Options, Outcome, Replayed, StoreError, Topology};
use group_commit::{Msg, Record};
use registry::Registry;

/// The schema this version writes. 0.1 stores have none (tree `hookrelay`).
/// 3: bodies over 8 KiB in rows of their own ([`body_rows`]); a schema 2
/// store is one already (its rows are read as they are), its version row
/// is raised when it opens so that an older hookrelay refuses it.
const SCHEMA: u32 = 3;
/// The tree of schemas 2 and 3, and its number: a tree with a higher one
/// is a newer hookrelay's.
const TREE: &str = "hookrelay-v2";
const TREE_SCHEMA: u32 = 2;

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { at: Some(at), .. } => {
                StoreError::Damaged(format!("sled read corrupted data at {at:?} in its files"))
            }
            sled::Error::Corruption { at: None, .. } => StoreError::Damaged("sled read corrupted data".into()),
            e => StoreError::Engine(e.to_string()),
        }
    }
}

/// The sled store. Cheap to clone.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
    /// The writer thread's mailbox (`None` once closed).
    tx: mpsc::Sender<Msg>,
    writer: Arc<std::sync::Mutex<Option<group_commit::WriterThread>>>,
}

/// Tests: see `Inner::after_log_read`.
#[cfg(test)]
type LogReadHook = Box<dyn Fn(&sled::Tree, super::EventId) + Send>;

/// State shared by the writer, the lanes and the readers.
pub(super) struct Inner {
    db: sled::Db,
    /// The `db` file, synced after each flush an answer waits for ([`durable`]).
    db_file: std::fs::File,
    /// The newest blob file synced ([`durable`]).
    blobs_synced: AtomicU64,
    tree: sled::Tree,
    path: PathBuf,
    /// The `db` file opened (device, inode): removed or replaced under the
    /// running relay, its writes would go to a file no one will read again.
    files: Option<(u64, u64)>,
    /// Set after a write error: every later write is refused.
    failed: AtomicBool,
    /// Refuse new events while the disk has less free space than this.
    min_free: u64,
    /// What the looks at the free space found ([`room_watch::RoomWatch`]).
    room_watch: Mutex<room_watch::RoomWatch>,
    /// Tests: the writer panics at its next data batch.
    #[cfg(test)]
    panic_next_batch: AtomicBool,
    /// Tests: called by a cursor with each log row it has read, before it
    /// looks for the row's result (what another thread may do in between).
    #[cfg(test)]
    after_log_read: Mutex<Option<LogReadHook>>,
    /// Names ↔ numbers, and which subscribers each route has.
    registry: RwLock<Registry>,
    /// Per route: the next log sequence. Written by the writer after each
    /// commit, read by lanes to know their backlog.
    tails: RwLock<HashMap<u32, Arc<AtomicU64>>>,
    /// Per subscriber: how many `W` rows it has (waiting work, all routes).
    waiting: RwLock<HashMap<u32, Arc<AtomicU64>>>,
    /// Per (route, subscriber): how many of them belong to that route
    /// ([`due_route`]).
    waiting_at: RwLock<HashMap<(u32, u32), Arc<AtomicU64>>>,
    /// What this open found: a store to migrate from 0.1, a new one, or
    /// one in this layout (`hookrelay migrate` says which).
    opened: Opened,
    /// Per subscriber: its dead letters, kept by the writer once it has
    /// counted them after start (`None` until then: [`dead_count`]).
    dead_counts: RwLock<Option<HashMap<u32, u64>>>,
    /// Every cursor as the writer holds it after its last commit (exact; the
    /// stored rows are written lazily), for the admin views.
    cursors: RwLock<HashMap<(u32, u32), keys::CursorRow>>,
    /// Per subscriber: woken when work is added for it.
    signals: RwLock<HashMap<u32, Arc<Notify>>>,
    /// Woken when media work is added (the archiver waits on it).
    media_signal: Arc<Notify>,
    /// `A` rows: media URLs waiting for a try (published by the writer).
    media_queue: Arc<AtomicU64>,
    /// Rows written since start (for `hookrelay_store_writes_total`).
    pub(super) rows_written: AtomicU64,
    /// Batches applied since start.
    pub(super) batches: AtomicU64,
    /// The writer waits for its next message: everything it received is
    /// applied and answered ([`SledStore::writes_pending`]).
    pub(super) writer_idle: AtomicBool,
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn tail(&self, route: u32) -> Arc<AtomicU64> {
        if let Some(t) = read_lock(&self.tails).get(&route) {
            return t.clone();
        }
        write_lock(&self.tails).entry(route).or_default().clone()
    }
    fn waiting(&self, sub: u32) -> Arc<AtomicU64> {
        if let Some(t) = read_lock(&self.waiting).get(&sub) {
            return t.clone();
        }
        write_lock(&self.waiting).entry(sub).or_default().clone()
    }
    fn waiting_at(&self, route: u32, sub: u32) -> Arc<AtomicU64> {
        if let Some(t) = read_lock(&self.waiting_at).get(&(route, sub)) {
            return t.clone();
        }
        write_lock(&self.waiting_at).entry((route, sub)).or_default().clone()
    }
    /// `sub`'s dead letters: the writer's count, or the keys counted now
    /// while the writer has not finished counting them after start.
    fn dead_letters(&self, sub: u32) -> Result<u64, StoreError> {
        if let Some(counts) = read_lock(&self.dead_counts).as_ref() {
            return Ok(counts.get(&sub).copied().unwrap_or(0));
        }
        Ok(self.tree.scan_prefix(keys::dead_prefix(sub)).keys().count() as u64)
    }
    fn signal(&self, sub: u32) -> Arc<Notify> {
        if let Some(t) = read_lock(&self.signals).get(&sub) {
            return t.clone();
        }
        write_lock(&self.signals).entry(sub).or_default().clone()
    }
    fn wake(&self, sub: u32) {
        if let Some(n) = read_lock(&self.signals).get(&sub) {
            n.notify_one();
        }
    }
    fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
    fn fail(&self, e: &StoreError) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            match e {
                StoreError::Damaged(_) => tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "the store failed; refusing new events until hookrelay is restarted"
                ),
                _ => tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "store write failed; refusing new events until hookrelay is restarted"
                ),
            }
        }
    }

    /// A read that found the store's files damaged fails the store: new
    /// callbacks are refused (503) and the relay is not ready, instead of
    /// taking callbacks it may not be able to read back (crash review, stop 61).
    fn check_read<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e @ StoreError::Damaged(_)) = &r {
            self.fail(e);
        }
        r
    }
}

impl SledStore {
    /// Open the store: create it, or check its schema, migrating a 0.1 store.
    pub fn open(opts: &Options) -> Result<SledStore, StoreError> {
        let opened_before = open_db::opened_before(&opts.path);
        let db = open_db::open_db(opts)?;
        let (tree, opened) = schema::open_tree(&db, opts, opened_before)?;
        open_db::mark_opened(&opts.path);
        let db_file = durable::open(&opts.path)?;
        durable::sync_files(&opts.path);
        let registry = Registry::load(&tree)?;
        let inner = Arc::new(Inner {
            db,
            db_file,
            blobs_synced: AtomicU64::new(0),
            tree,
            // Absolute once, where the daemon started: shown by the status
            // (a relative `data` says nothing to its reader elsewhere).
            path: std::path::absolute(&opts.path).unwrap_or_else(|_| opts.path.clone()),
            files: files::identity(&opts.path),
            failed: AtomicBool::new(false),
            min_free: opts.min_free,
            room_watch: Mutex::new(room_watch::RoomWatch::new(std::time::Instant::now())),
            #[cfg(test)]
            panic_next_batch: AtomicBool::new(false),
            #[cfg(test)]
            after_log_read: Mutex::default(),
            registry: RwLock::new(registry),
            tails: RwLock::default(),
            waiting: RwLock::default(),
            waiting_at: RwLock::default(),
            dead_counts: RwLock::default(),
            opened,
            cursors: RwLock::default(),
            signals: RwLock::default(),
            media_signal: Arc::default(),
            media_queue: Arc::default(),
            rows_written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            writer_idle: AtomicBool::new(false),
        });
        let (tx, thread) = group_commit::start(inner.clone())?;
        Ok(SledStore {
            inner,
            tx,
            writer: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Msg) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Run a read on the blocking pool (admin scans must not stall async workers).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SledStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::Engine(format!("read task failed: {e}")))?
    }

    pub async fn register(&self, topology: &Topology) -> Result<(), StoreError> {
        let t = topology.clone();
        self.call(|reply| Msg::Register(t, reply)).await
    }

    /// At start-up: bring in due times further off than the subscribers'
    /// caps allow ([`due_cap`]); how many moved.
    pub async fn bring_in_due(&self, caps: crate::store::DueCaps) -> Result<BroughtIn, StoreError> {
        let now_ms = crate::clock::now_ms();
        self.call(|reply| Msg::BringInDue { caps, now_ms, reply }).await
    }

    pub async fn append(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        self.call(|reply| Msg::Append(Box::new(event), reply)).await
    }

    pub fn work_source(&self, subscriber: &str) -> Result<Cursor, StoreError> {
        Cursor::open(self.inner.clone(), self.tx.clone(), subscriber)
    }

    pub async fn record(
        &self,
        ticket: &SledTicket,
        attempt: Option<Attempt>,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let rec = Record {
            ticket: ticket.clone(),
            attempt,
            outcome,
            now_ms: crate::clock::now_ms(),
        };
        self.call(|reply| Msg::Record(Box::new(rec), reply)).await
    }

    pub async fn replay_event(
        &self,
        id: super::EventId,
        only: Option<String>,
        dead_only: bool,
    ) -> Result<Option<Vec<Replayed>>, StoreError> {
        self.call(|reply| Msg::Replay {
            id,
            only,
            dead_only,
            reply,
        })
        .await
    }

    pub async fn replay_dead_letters(
        &self,
        only: Option<String>,
        checked: std::collections::BTreeSet<String>,
    ) -> Result<crate::store::DeadReplay, StoreError> {
        // Step by step, each going on where the last stopped: a letter
        // replayed by one step that dies again before the next is not
        // replayed twice, nor counted twice.
        let mut total = crate::store::DeadReplay::default();
        let checked = std::sync::Arc::new(checked);
        let mut at = None;
        loop {
            let (only, checked) = (only.clone(), checked.clone());
            let (step, next) = self
                .call(|reply| Msg::ReplayDead {
                    only,
                    checked,
                    at,
                    reply,
                })
                .await?;
            for (k, v) in step.requeued {
                *total.requeued.entry(k).or_default() += v;
            }
            total.verdicts_left += step.verdicts_left;
            match next {
                Some(next) => at = Some(next),
                None => return Ok(total),
            }
        }
    }

    pub async fn sweep(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let routes = read_lock(&self.inner.registry).route_numbers();
        let mut removed = 0;
        for route in routes {
            let mut from = None;
            loop {
                let (next, n) = self
                    .call(|reply| Msg::Sweep {
                        route,
                        from,
                        cutoff_ms,
                        reply,
                    })
                    .await?;
                removed += n;
                match next {
                    Some(n) => from = Some(n),
                    None => break,
                }
                // Let ingest and delivery in between.
                tokio::task::yield_now().await;
            }
        }
        Ok(removed)
    }

    pub async fn check_writable(&self) -> Result<(), StoreError> {
        if self.has_failed() {
            return Err(StoreError::Unavailable(crate::store::FAILED_WRITE.into()));
        }
        self.call(Msg::Probe).await
    }

    pub fn has_failed(&self) -> bool {
        self.inner.has_failed()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    /// What opening it found: migrated from 0.1 (and what), new, or in
    /// this version's layout already.
    pub fn opened(&self) -> Opened {
        self.inner.opened
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Rows written since start.
    pub fn rows_written(&self) -> u64 {
        self.inner.rows_written.load(Ordering::Relaxed)
    }

    /// Batches applied since start.
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }

    /// Messages the writer has not finished yet: queued in its mailbox, plus
    /// one while it is applying a batch (or starting, or counting dead
    /// letters). A snapshot, for tests that hold tokio's paused clock until
    /// the store has caught up; 0 once closed.
    pub fn writes_pending(&self) -> usize {
        if self.tx.is_closed() {
            return 0;
        }
        let queued = self.tx.max_capacity() - self.tx.capacity();
        queued + usize::from(!self.inner.writer_idle.load(Ordering::SeqCst))
    }

    pub async fn close(&self) {
        let _ = self.tx.send(Msg::Stop).await;
        let thread = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            t.join().await;
        }
    }
}

#[cfg(test)]
mod body_rows_tests;
#[cfg(test)]
mod cursor_tests;
#[cfg(test)]
pub(crate) mod damage;
#[cfg(test)]
mod future_size_tests;
#[cfg(test)]
mod media_tests;
#[cfg(test)]
mod migrate_tests;
#[cfg(test)]
mod probe_tests;
#[cfg(test)]
mod query_tests;
#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod review12_tests;
#[cfg(test)]
mod task_corrupt_tests;
#[cfg(test)]
mod task_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod writer_panic_tests;
