//! Group commit: the one thread that writes the sled tree.
//!
//! Everything that changes the store arrives here as a message: appended
//! events, delivery results, cursor moves, replays, registration, retention.
//! Waiting messages are applied together as one `sled::Batch`; when the batch
//! holds new events it is flushed before any of their requests is answered
//! (one flush for many requests). Delivery results are flushed with their
//! batch as well, so a crash re-sends only what was in flight; they yield to
//! new events when the writer is saturated. Being the only writer also makes
//! dedupe race-free.
//!
//! This file owns the thread and how its messages ([`super::writer_msg`])
//! are batched; what a batch writes is in the writer's other files:
//! [`super::batch`] (the rows of
//! one batch), [`super::append`] (an event), [`super::record`] (a finished
//! delivery, the due index and the counters), [`super::topology`]
//! (registration), [`super::writer_state`] (the state read back at start),
//! [`super::writer_control`] (the control messages, one at a time between
//! batches), [`super::dead_count`] (the dead-letter counts it keeps).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use ulid::Ulid;

use super::abandoned::Abandoned;
pub(super) use super::batch::Batch;
use super::keys::CursorRow;
use super::media::{MediaBook, MediaRecord};
use super::Inner;
use crate::store::{EventId, StoreError};

/// Events in one batch at most.
const MAX_APPENDS: usize = 512;
/// Bookkeeping messages in one batch at most…
const MAX_BOOKS: usize = 1024;
/// …and while more events wait than one batch takes.
const BOOKS_UNDER_LOAD: usize = 64;

/// How long bookkeeping may wait for company when it comes in a trickle.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);
/// Fewer queued bookkeeping messages than this count as a trickle.
const LINGER_BELOW: usize = 64;
/// While batches never stop coming, dead letters left from before the start
/// are still counted a step at a time this often ([`super::dead_count`]).
const COUNT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

pub use super::writer_msg::SledTicket;
pub(super) use super::writer_msg::{Append, Msg, Record, Reply, Source};

/// The writer's own state: authoritative counters and cursors.
pub(super) struct Writer {
    pub inner: Arc<Inner>,
    /// The last event id handed out: ids only grow, even if the clock goes back.
    pub(super) last_id: Ulid,
    pub cursors: HashMap<(u32, u32), CursorRow>,
    pub(super) dirty_cursors: HashSet<(u32, u32)>,
    /// Cursors whose row this batch must write ([`super::record`]).
    pub(super) due_cursors: HashSet<(u32, u32)>,
    /// Cursors changed since they were last published to the admin views
    /// (marked wherever a cursor changes in memory).
    pub(super) moved: HashSet<(u32, u32)>,
    /// Next log sequence per route.
    pub tails: HashMap<u32, u64>,
    pub(super) dirty_tails: HashSet<u32>,
    /// Each route's tail as its `seq` row last had it: a full commit writes
    /// only those that moved since (it wrote every route ever registered, a
    /// row each per commit: after thousands of routes had come and gone by
    /// reloads, the retention sweep's commit per route kept an idle relay
    /// busy; resource review, stop 62).
    pub(super) tails_written: HashMap<u32, u64>,
    /// `W` rows per subscriber.
    pub waiting: HashMap<u32, u64>,
    pub(super) dirty_waiting: HashSet<u32>,
    /// `W` rows per (route, subscriber) ([`super::due_route`]; not stored).
    pub(super) waiting_at: HashMap<(u32, u32), u64>,
    pub(super) dirty_waiting_at: HashSet<(u32, u32)>,
    /// Whether the last space check passed (to log changes once).
    pub(super) space_ok: bool,
    /// Media work waiting, and whom this batch wakes ([`super::media`]).
    pub media: MediaBook,
    /// Dead letters per subscriber ([`super::dead_count`]).
    pub(super) dead: super::dead_count::DeadCount,
}

/// The writer's thread: a blocking task of the runtime when there is one (so a
/// test's paused clock does not auto-advance while the writer works), a plain
/// thread otherwise (offline tools).
pub(super) enum WriterThread {
    Task(tokio::task::JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

impl WriterThread {
    pub async fn join(self) {
        match self {
            WriterThread::Task(t) => {
                let _ = t.await;
            }
            WriterThread::Thread(t) => {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        }
    }
}

/// Start the writer; its mailbox and its thread.
pub(super) fn start(inner: Arc<Inner>) -> Result<(mpsc::Sender<Msg>, WriterThread), StoreError> {
    let w = Writer::load(inner)?;
    let (tx, rx) = mpsc::channel(4096);
    let thread = match tokio::runtime::Handle::try_current() {
        Ok(rt) => WriterThread::Task(rt.spawn_blocking(move || w.run(rx))),
        Err(_) => WriterThread::Thread(
            std::thread::Builder::new()
                .name("hookrelay-writer".into())
                .spawn(move || w.run(rx))
                .map_err(|e| StoreError::Engine(format!("cannot start the writer thread: {e}")))?,
        ),
    };
    Ok((tx, thread))
}

/// Marks the store failed if the writer thread ends in a panic: every write
/// would wait for an answer that never comes, so the health check must see it
/// (the daemon then exits to be restarted) rather than answer `503` forever.
struct FailOnPanic(Arc<Inner>);

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .fail(&StoreError::Engine("the store's writer stopped on a panic".into()));
        }
    }
}

enum Book {
    Record(Box<Record>, Reply<()>),
    Media(Box<MediaRecord>, Reply<()>),
    VerifiedMedia(Box<super::media::VerifiedMedia>, Reply<()>),
    Task(Box<super::tasks::TaskOp>, Reply<Option<crate::store::Task>>),
    Cursor {
        route: u32,
        sub: u32,
        at: EventId,
        seq: u64,
    },
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let _failed_on_panic = FailOnPanic(self.inner.clone());
        let mut appends: VecDeque<Append> = VecDeque::new();
        let mut abandoned = Abandoned::default();
        let mut books: VecDeque<Book> = VecDeque::new();
        let mut controls: VecDeque<Msg> = VecDeque::new();
        let mut stopping = false;
        let mut last_count = std::time::Instant::now();
        loop {
            if appends.is_empty() && books.is_empty() && controls.is_empty() {
                if stopping {
                    break;
                }
                // Idle: count dead letters left from before the start.
                if self.dead.pending() {
                    self.count_dead();
                    while let Ok(m) = rx.try_recv() {
                        sort(m, &mut appends, &mut books, &mut controls);
                    }
                    continue;
                }
                self.inner.writer_idle.store(true, Ordering::SeqCst);
                let next = rx.blocking_recv();
                self.inner.writer_idle.store(false, Ordering::SeqCst);
                match next {
                    Some(m) => sort(m, &mut appends, &mut books, &mut controls),
                    None => break,
                }
            }
            while let Ok(m) = rx.try_recv() {
                sort(m, &mut appends, &mut books, &mut controls);
            }
            // A batch costs sled a log buffer whatever its size: let a trickle
            // of bookkeeping gather for a moment (events never wait for this).
            if appends.is_empty() && controls.is_empty() && !books.is_empty() && books.len() < LINGER_BELOW {
                std::thread::sleep(LINGER);
                while let Ok(m) = rx.try_recv() {
                    sort(m, &mut appends, &mut books, &mut controls);
                }
            }
            abandoned.prune(&mut appends);
            if !appends.is_empty() || !books.is_empty() {
                let budget = if appends.len() > MAX_APPENDS {
                    BOOKS_UNDER_LOAD
                } else {
                    MAX_BOOKS
                };
                let a: Vec<_> = appends.drain(..appends.len().min(MAX_APPENDS)).collect();
                let b: Vec<_> = books.drain(..books.len().min(budget)).collect();
                self.data_batch(a, b);
                // Never idle: a step now and then all the same.
                if self.dead.pending() && last_count.elapsed() >= COUNT_EVERY {
                    self.count_dead();
                    last_count = std::time::Instant::now();
                }
            }
            // Control messages one at a time, between data batches; a stop
            // waits until everything queued before it is written.
            if let Some(c) = controls.pop_front() {
                if matches!(c, Msg::Stop) {
                    stopping = true;
                } else {
                    self.control(c);
                }
            }
        }
        if !self.inner.has_failed() {
            // The lazily written cursor and sequence rows, then the flush.
            let tree = self.inner.tree.clone();
            let _ = self.commit(Batch::new(&tree));
        }
    }

    fn data_batch(&mut self, mut appends: Vec<Append>, books: Vec<Book>) {
        #[cfg(test)]
        if self.inner.panic_next_batch.swap(false, Ordering::SeqCst) {
            panic!("the test asked the writer to panic");
        }
        let (mut room, mut under_floor) = (None, None);
        if !appends.is_empty() {
            match self.refusal() {
                Ok(r) => room = r,
                // Under the floor a duplicate still gets its `200` (no event
                // stored, its task settled: `duplicate_of`); a new event
                // gets this refusal.
                Err(e @ StoreError::NoRoom(_)) => under_floor = Some(e),
                Err(e) => {
                    for (_, reply) in appends.drain(..) {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        let tree = self.inner.tree.clone();
        let mut b = Batch::new(&tree);
        let mut accepted = Vec::with_capacity(appends.len());
        let mut seen: HashMap<Vec<u8>, EventId> = HashMap::new();
        let mut routes_with_news: HashSet<u32> = HashSet::new();
        for (ev, _) in &appends {
            let r = match &under_floor {
                Some(e) => self.duplicate_of(&mut b, ev).ok_or_else(|| e.clone()),
                None => self.add_event(&mut b, ev, &mut seen, &mut routes_with_news, &mut room),
            };
            accepted.push(r);
        }
        let mut recorded = Vec::with_capacity(books.len());
        let mut task_ops = Vec::new();
        for book in books {
            match book {
                Book::Record(rec, reply) => {
                    let r = self.add_record(&mut b, &rec);
                    recorded.push((reply, r));
                }
                Book::Media(rec, reply) => {
                    let r = self.add_media_record(&mut b, &rec);
                    recorded.push((reply, r));
                }
                Book::VerifiedMedia(v, reply) => {
                    let r = self.add_verified_media(&mut b, &v);
                    recorded.push((reply, r));
                }
                Book::Task(op, reply) => {
                    let r = self.task_op(&mut b, &op);
                    task_ops.push((reply, r));
                }
                Book::Cursor { route, sub, at, seq } => self.move_cursor(route, sub, at, seq),
            }
        }
        self.write_counters(&mut b, false);
        let rows = b.len() as u64;
        // New events are flushed before they are acknowledged; results too, so
        // that after a crash only deliveries still in flight are sent again.
        let durable = !routes_with_news.is_empty() || !recorded.is_empty() || !task_ops.is_empty();
        // The counts change as the rows become visible (before the flush),
        // so a reader listing the rows finds them counted.
        let result = self.dead.changes(&tree, &b).and_then(|dead| {
            b.apply()?;
            self.count_changed(dead);
            Ok(())
        });
        // Synced to the disk (not only written to the kernel) when it holds
        // what a `200` or a created task promises; results alone are not: a
        // power cut may lose the last second's (sled syncs its log every
        // second), and their deliveries are sent again, as after any crash
        // with deliveries in flight (a sync per batch of results would add
        // a disk flush to each cycle of a backlog's drain, which is bound
        // by its commits: BENCHMARKS.md, stop 45).
        let promised = !routes_with_news.is_empty() || !task_ops.is_empty();
        let result = result.and_then(|()| {
            match (durable, promised) {
                (true, true) => self.inner.flush_durably()?,
                (true, false) => self.inner.db.flush().map(drop)?,
                _ => {}
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if rows > 0 {
                    self.inner.rows_written.fetch_add(rows, Ordering::Relaxed);
                    self.inner.batches.fetch_add(1, Ordering::Relaxed);
                }
                self.publish_counters();
                for ((_, reply), a) in appends.into_iter().zip(accepted) {
                    let _ = reply.send(a);
                }
                for (reply, r) in recorded {
                    let _ = reply.send(r);
                }
                for (reply, r) in task_ops {
                    let _ = reply.send(r);
                }
                let registry = super::read_lock(&self.inner.registry);
                for route in routes_with_news {
                    for sub in registry.route_subs(route) {
                        self.inner.wake(*sub);
                    }
                }
                drop(registry);
                self.wake_after_commit();
            }
            Err(e) => {
                self.media.forget();
                self.inner.fail(&e);
                let msg = e.to_string();
                for (_, reply) in appends {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
                for (reply, _) in recorded {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
                for (reply, _) in task_ops {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// Why new events cannot be taken now (checked once per batch).
    /// The room above `store.min_free` when events can be taken (`None`: no
    /// bound), else why not: the store failed, or the disk is under the
    /// floor (`NoRoom`: the store is sound, the space watcher makes the
    /// relay not ready).
    fn refusal(&mut self) -> Result<Option<u64>, StoreError> {
        if self.inner.has_failed() {
            return Err(StoreError::Unavailable(crate::store::FAILED_WRITE.into()));
        }
        let space = self.inner.space_check();
        // At debug: a disk at the floor with traffic crosses it at every
        // few batches; the space watcher logs the want of room and its end
        // once each (`crate::readiness`), the refused callbacks are logged
        // rate-limited by ingest.
        match (&space, self.space_ok) {
            (Err(why), true) => tracing::debug!("{why}; answering 503 until there is room"),
            (Ok(_), false) => tracing::debug!("disk space is back; accepting events again"),
            _ => {}
        }
        self.space_ok = space.is_ok();
        space.map_err(StoreError::NoRoom)
    }

    /// Apply a control batch and flush it.
    pub fn commit(&mut self, mut b: Batch<'_>) -> Result<(), StoreError> {
        if self.inner.has_failed() {
            return Err(StoreError::Unavailable(crate::store::FAILED_WRITE.into()));
        }
        self.write_counters(&mut b, true);
        let rows = b.len() as u64;
        let r = self.dead.changes(&self.inner.tree, &b).and_then(|dead| {
            b.apply()?;
            self.count_changed(dead);
            self.inner.flush_durably()?;
            Ok(())
        });
        match r {
            Ok(()) => {
                self.inner.rows_written.fetch_add(rows, Ordering::Relaxed);
                self.inner.batches.fetch_add(1, Ordering::Relaxed);
                self.publish_counters();
                self.wake_after_commit();
                Ok(())
            }
            Err(e) => {
                self.inner.fail(&e);
                self.media.forget();
                Err(e)
            }
        }
    }
}

fn sort(m: Msg, appends: &mut VecDeque<Append>, books: &mut VecDeque<Book>, controls: &mut VecDeque<Msg>) {
    match m {
        Msg::Append(ev, reply) => appends.push_back((ev, reply)),
        Msg::Record(rec, reply) => books.push_back(Book::Record(rec, reply)),
        Msg::MediaRecord(rec, reply) => books.push_back(Book::Media(rec, reply)),
        Msg::VerifiedMedia(v, reply) => books.push_back(Book::VerifiedMedia(v, reply)),
        Msg::Task(op, reply) => books.push_back(Book::Task(op, reply)),
        Msg::Cursor { route, sub, at, seq } => books.push_back(Book::Cursor { route, sub, at, seq }),
        other => controls.push_back(other),
    }
}
