//! Group commit: the one thread that writes the sled tree.
//!
//! Everything that changes the store arrives here as a message: appended
//! events, delivery results, cursor moves, replays, registration, retention.
//! Waiting messages are applied together as one `sled::Batch`; when the batch
//! holds new events it is flushed before any of their requests is answered
//! (one flush for many requests). Delivery results are flushed with their
//! batch as well, so a crash re-sends only what was in flight; they yield to
//! new events when the writer is
//! saturated. Being the only writer also makes dedupe race-free.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

use super::codec::{self, Header, HeaderMeta, ResultRow};
use super::keys::{self, CursorRow};
use super::media::{MediaBook, MediaRecord};
use super::media_sweep::MediaSweepStep;
use super::Inner;
use crate::store::{Accepted, Attempt, DeliveryState, EventId, NewEvent, Outcome, Replayed, StoreError, Topology};

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

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Where a piece of work came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Source {
    /// Read from the route's log at this sequence.
    Log { seq: u64 },
    /// Read from the due index (its `W` row has this due time).
    Due { due_ms: u64 },
}

/// The sled backend's handle on one piece of work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SledTicket {
    pub(super) route: u32,
    pub(super) sub: u32,
    pub(super) event: EventId,
    pub(super) source: Source,
}

/// An attempt's result to record.
pub(super) struct Record {
    pub ticket: SledTicket,
    pub attempt: Option<Attempt>,
    pub outcome: Outcome,
    pub now_ms: u64,
}

pub(super) enum Msg {
    Append(Box<NewEvent>, Reply<Accepted>),
    Record(Box<Record>, Reply<()>),
    /// An archive try's result ([`super::media`]).
    MediaRecord(Box<MediaRecord>, Reply<()>),
    /// A lane's cursor moved (it never moves back); no answer.
    Cursor {
        route: u32,
        sub: u32,
        at: EventId,
        seq: u64,
    },
    Register(Topology, Reply<()>),
    Replay {
        id: EventId,
        only: Option<String>,
        now_ms: u64,
        reply: Reply<Option<Vec<Replayed>>>,
    },
    /// Re-queue up to a chunk of dead letters; answers the counts and whether more remain.
    ReplayDead {
        only: Option<String>,
        now_ms: u64,
        reply: Reply<(BTreeMap<String, usize>, bool)>,
    },
    /// One bounded retention step over a route's log.
    Sweep {
        route: u32,
        from: Option<EventId>,
        cutoff_ms: u64,
        reply: Reply<(Option<EventId>, usize)>,
    },
    /// One bounded media-retention step ([`super::media_sweep`]).
    MediaSweep {
        from: Option<Vec<u8>>,
        cutoff_ms: u64,
        reply: Reply<MediaSweepStep>,
    },
    /// Register a task or record a poll ([`super::tasks`]); batched like `Record`.
    Task(Box<super::tasks::TaskOp>, Reply<Option<crate::store::Task>>),
    /// One bounded task-retention step: (removed, more remain).
    TaskSweep {
        cutoff_ms: u64,
        reply: Reply<(usize, bool)>,
    },
    Probe(Reply<()>),
    Stop,
}

/// The rows one batch writes, readable before they are applied.
pub(super) struct Batch<'a> {
    tree: &'a sled::Tree,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Batch<'a> {
    pub fn new(tree: &'a sled::Tree) -> Self {
        Batch {
            tree,
            writes: BTreeMap::new(),
        }
    }
    pub fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(k) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(k)?.map(|v| v.to_vec())),
        }
    }
    pub fn put(&mut self, k: Vec<u8>, v: impl Into<Vec<u8>>) {
        self.writes.insert(k, Some(v.into()));
    }
    pub fn del(&mut self, k: Vec<u8>) {
        self.writes.insert(k, None);
    }
    pub fn len(&self) -> usize {
        self.writes.len()
    }
    fn apply(self) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let mut b = sled::Batch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.tree.apply_batch(b)?;
        Ok(())
    }
}

/// The writer's own state: authoritative counters and cursors.
pub(super) struct Writer {
    pub inner: Arc<Inner>,
    /// The last event id handed out: ids only grow, even if the clock goes back.
    last_id: Ulid,
    pub cursors: HashMap<(u32, u32), CursorRow>,
    dirty_cursors: HashSet<(u32, u32)>,
    /// Next log sequence per route.
    pub tails: HashMap<u32, u64>,
    dirty_tails: HashSet<u32>,
    /// `W` rows per subscriber.
    pub waiting: HashMap<u32, u64>,
    dirty_waiting: HashSet<u32>,
    /// Whether the last space check passed (to log changes once).
    space_ok: bool,
    /// Media work waiting, and whom this batch wakes ([`super::media`]).
    pub media: MediaBook,
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

enum Book {
    Record(Box<Record>, Reply<()>),
    Media(Box<MediaRecord>, Reply<()>),
    Task(Box<super::tasks::TaskOp>, Reply<Option<crate::store::Task>>),
    Cursor {
        route: u32,
        sub: u32,
        at: EventId,
        seq: u64,
    },
}

impl Writer {
    fn load(inner: Arc<Inner>) -> Result<Writer, StoreError> {
        let tree = &inner.tree;
        let mut cursors = HashMap::new();
        for item in tree.scan_prefix([keys::C]) {
            let (k, v) = item?;
            let (Some(r), Some(s)) = (k.get(1..5), k.get(5..9)) else {
                continue;
            };
            let key = (
                u32::from_be_bytes(r.try_into().unwrap_or_default()),
                u32::from_be_bytes(s.try_into().unwrap_or_default()),
            );
            if let Some(c) = CursorRow::decode(&v) {
                cursors.insert(key, c);
            }
        }
        let mut tails = HashMap::new();
        let mut last_id = Ulid::nil();
        for route in super::read_lock(&inner.registry).route_numbers() {
            let stored = tree.get(keys::seq(route))?.map(|v| keys::u64_value(&v));
            let last = tree
                .range(keys::log_prefix(route)..keys::log_end(route))
                .next_back()
                .transpose()?;
            let mut next = stored.unwrap_or(1);
            if let Some((k, v)) = last {
                if let Some(id) = keys::id_at_5(&k) {
                    last_id = last_id.max(id.0);
                }
                if let Some((h, _)) = codec::decode_header(&v) {
                    next = next.max(h.seq + 1);
                }
            }
            tails.insert(route, next);
            inner.tail(route).store(next, Ordering::Relaxed);
        }
        let mut waiting = HashMap::new();
        for item in tree.scan_prefix([keys::K]) {
            let (k, v) = item?;
            if let Some(s) = k.get(1..5).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) {
                let n = keys::u64_value(&v);
                waiting.insert(s, n);
                inner.waiting(s).store(n, Ordering::Relaxed);
            }
        }
        let media = MediaBook::load(&inner, tree)?;
        Ok(Writer {
            inner,
            last_id,
            cursors,
            dirty_cursors: HashSet::new(),
            tails,
            dirty_tails: HashSet::new(),
            waiting,
            dirty_waiting: HashSet::new(),
            space_ok: true,
            media,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut appends: VecDeque<(Box<NewEvent>, Reply<Accepted>)> = VecDeque::new();
        let mut books: VecDeque<Book> = VecDeque::new();
        let mut controls: VecDeque<Msg> = VecDeque::new();
        let mut stopping = false;
        loop {
            if appends.is_empty() && books.is_empty() && controls.is_empty() {
                if stopping {
                    break;
                }
                match rx.blocking_recv() {
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
            if !appends.is_empty() || !books.is_empty() {
                let budget = if appends.len() > MAX_APPENDS {
                    BOOKS_UNDER_LOAD
                } else {
                    MAX_BOOKS
                };
                let a: Vec<_> = appends.drain(..appends.len().min(MAX_APPENDS)).collect();
                let b: Vec<_> = books.drain(..books.len().min(budget)).collect();
                self.data_batch(a, b);
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
            let _ = self.inner.db.flush();
        }
    }

    fn data_batch(&mut self, mut appends: Vec<(Box<NewEvent>, Reply<Accepted>)>, books: Vec<Book>) {
        if !appends.is_empty() {
            if let Some(why) = self.refusal() {
                for (_, reply) in appends.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
        }
        let tree = self.inner.tree.clone();
        let mut b = Batch::new(&tree);
        let mut accepted = Vec::with_capacity(appends.len());
        let mut seen: HashMap<Vec<u8>, EventId> = HashMap::new();
        let mut routes_with_news: HashSet<u32> = HashSet::new();
        for (ev, _) in &appends {
            let r = self.add_event(&mut b, ev, &mut seen, &mut routes_with_news);
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
                Book::Task(op, reply) => {
                    let r = self.task_op(&mut b, &op);
                    task_ops.push((reply, r));
                }
                Book::Cursor { route, sub, at, seq } => self.move_cursor(route, sub, at, seq),
            }
        }
        self.write_counters(&mut b);
        let rows = b.len() as u64;
        // New events are flushed before they are acknowledged; results too, so
        // that after a crash only deliveries still in flight are sent again.
        let durable = !routes_with_news.is_empty() || !recorded.is_empty() || !task_ops.is_empty();
        let result = b.apply().and_then(|()| {
            if durable {
                self.inner.db.flush()?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.inner.rows_written.fetch_add(rows, Ordering::Relaxed);
                self.inner.batches.fetch_add(1, Ordering::Relaxed);
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
    fn refusal(&mut self) -> Option<String> {
        if self.inner.has_failed() {
            return Some("the store failed a write earlier; restart hookrelay".into());
        }
        let space = self.inner.space_check();
        match (&space, self.space_ok) {
            (Err(why), true) => tracing::error!("{why}; answering 503 until there is room"),
            (Ok(()), false) => tracing::info!("disk space is back; accepting events again"),
            _ => {}
        }
        self.space_ok = space.is_ok();
        space.err()
    }

    fn next_id(&mut self, ms: u64) -> EventId {
        let candidate = Ulid::from_parts(ms, fastrand::u128(..));
        let id = if candidate.timestamp_ms() > self.last_id.timestamp_ms() {
            candidate
        } else {
            self.last_id.increment().unwrap_or(candidate)
        };
        self.last_id = id;
        EventId(id)
    }

    /// Dedupe, add the event's rows, settle its expected task.
    fn add_event(
        &mut self,
        b: &mut Batch<'_>,
        ev: &NewEvent,
        seen: &mut HashMap<Vec<u8>, EventId>,
        news: &mut HashSet<u32>,
    ) -> Result<Accepted, StoreError> {
        let accepted = self.add_log_rows(b, ev, seen, news)?;
        if let Some(mark) = &ev.task {
            let (route, _) = self.numbers(b, &ev.meta.route, &[]);
            self.mark_task(b, route, mark, ev.meta.origin, accepted, ev.meta.received_ms)?;
        }
        Ok(accepted)
    }

    /// Dedupe, then add the event's log and dedupe rows.
    fn add_log_rows(
        &mut self,
        b: &mut Batch<'_>,
        ev: &NewEvent,
        seen: &mut HashMap<Vec<u8>, EventId>,
        news: &mut HashSet<u32>,
    ) -> Result<Accepted, StoreError> {
        let (route, subs) = self.numbers(b, &ev.meta.route, &ev.meta.subscribers);
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&ev.dedupe_hash[..16]);
        let dkey = keys::dedupe(route, &hash);
        if let Some(id) = seen.get(&dkey) {
            return Ok(Accepted {
                id: *id,
                duplicate: true,
            });
        }
        if let Some(v) = b.get(&dkey)? {
            if let Some(id) = EventId::from_slice(&v) {
                return Ok(Accepted { id, duplicate: true });
            }
        }
        let id = self.next_id(ev.meta.received_ms);
        let tail = self.tails.entry(route).or_insert(1);
        let seq = *tail;
        *tail += 1;
        self.dirty_tails.insert(route);
        let header = Header {
            seq,
            meta: HeaderMeta::from_meta(&ev.meta),
            subscribers: subs,
            dedupe: hash,
        };
        if !ev.media.is_empty() {
            self.add_event_media(b, route, id, &ev.media, ev.meta.received_ms)?;
        }
        b.put(keys::log(route, id), codec::encode_event(&header, &ev.body));
        b.put(dkey.clone(), id.bytes().to_vec());
        seen.insert(dkey, id);
        news.insert(route);
        Ok(Accepted { id, duplicate: false })
    }

    /// Route and subscriber numbers for an event, allocating unknown names.
    pub(super) fn numbers(&mut self, b: &mut Batch<'_>, route: &str, subs: &[String]) -> (u32, Vec<u32>) {
        {
            let reg = super::read_lock(&self.inner.registry);
            if let Some(r) = reg.route(route) {
                let nos: Option<Vec<u32>> = subs.iter().map(|s| reg.sub(s)).collect();
                if let Some(nos) = nos {
                    return (r, nos);
                }
            }
        }
        let mut rows = Vec::new();
        let mut reg = super::write_lock(&self.inner.registry);
        let r = reg.route_or_new(route, &mut rows);
        let nos = subs.iter().map(|s| reg.sub_or_new(s, r, &mut rows).0).collect();
        for (k, v) in rows {
            b.put(k, v);
        }
        (r, nos)
    }

    pub fn put_due(&mut self, b: &mut Batch<'_>, sub: u32, due_ms: u64, id: EventId) -> Result<(), StoreError> {
        let k = keys::due(sub, due_ms, id);
        if b.get(&k)?.is_none() {
            *self.waiting.entry(sub).or_default() += 1;
            self.dirty_waiting.insert(sub);
        }
        b.put(k, Vec::new());
        Ok(())
    }

    pub fn del_due(&mut self, b: &mut Batch<'_>, sub: u32, due_ms: u64, id: EventId) -> Result<(), StoreError> {
        let k = keys::due(sub, due_ms, id);
        if b.get(&k)?.is_some() {
            let n = self.waiting.entry(sub).or_default();
            *n = n.saturating_sub(1);
            self.dirty_waiting.insert(sub);
        }
        b.del(k);
        Ok(())
    }

    /// Record an attempt: the result row, the due index, the dead letter.
    fn add_record(&mut self, b: &mut Batch<'_>, rec: &Record) -> Result<(), StoreError> {
        let t = &rec.ticket;
        match t.source {
            Source::Due { due_ms } => self.del_due(b, t.sub, due_ms, t.event)?,
            Source::Log { .. } => {
                // A restart re-checks results only up to the high-water mark.
                if let Some(c) = self.cursors.get_mut(&(t.route, t.sub)) {
                    if t.event > c.high_water {
                        c.high_water = t.event;
                        self.dirty_cursors.insert((t.route, t.sub));
                    }
                }
            }
        }
        if rec.outcome == Outcome::Gone {
            return Ok(());
        }
        let rkey = keys::result(t.event, t.sub);
        let mut row = match b.get(&rkey)? {
            Some(v) => codec::decode_result(&v).ok_or_else(|| StoreError::Corrupt(format!("result of {}", t.event)))?,
            None => ResultRow {
                state: DeliveryState::Pending,
                attempts: 0,
                step: 0,
                at_ms: rec.now_ms,
                history: Vec::new(),
                last_error: None,
            },
        };
        if let Some(a) = &rec.attempt {
            row.attempts = row.attempts.max(a.attempt);
            // A delivery has no error, also when a pull client acknowledged it (no status).
            let failed = rec.outcome != Outcome::Delivered && a.status.is_none_or(|s| !(200..300).contains(&s));
            row.last_error = failed.then(|| {
                a.error
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {}", a.status.unwrap_or(0)))
            });
            row.history.push(a.clone());
            if row.history.len() > codec::HISTORY {
                row.history.remove(0);
            }
        }
        // Work parked under another due time (a media wake or a replay moved
        // it while this try was in flight): one `W` row per delivery at most.
        if let DeliveryState::Retrying { due_ms: d } | DeliveryState::AwaitingMedia { due_ms: d } = row.state {
            if t.source != (Source::Due { due_ms: d }) {
                self.del_due(b, t.sub, d, t.event)?;
            }
        }
        row.at_ms = rec.now_ms;
        match &rec.outcome {
            Outcome::Delivered => row.state = DeliveryState::Delivered,
            Outcome::Skipped => row.state = DeliveryState::Skipped,
            Outcome::Retry { due_ms } => {
                row.state = DeliveryState::Retrying { due_ms: *due_ms };
                if rec.attempt.is_some() {
                    row.step += 1;
                }
                self.put_due(b, t.sub, *due_ms, t.event)?;
            }
            Outcome::Dead { error } => {
                row.state = DeliveryState::Dead;
                row.last_error = Some(error.clone());
                b.put(keys::dead(t.sub, t.event), rec.now_ms.to_be_bytes().to_vec());
            }
            Outcome::Defer { due_ms } => self.park(b, t, &mut row, *due_ms, rec.now_ms)?,
            Outcome::Gone => {}
        }
        b.put(rkey, codec::encode_result(&row));
        Ok(())
    }

    fn move_cursor(&mut self, route: u32, sub: u32, at: EventId, seq: u64) {
        if let Some(c) = self.cursors.get_mut(&(route, sub)) {
            if at > c.at {
                c.at = at;
                c.seq = seq;
                self.dirty_cursors.insert((route, sub));
            }
        }
    }

    /// The cursor, sequence and count rows changed by this batch (once each).
    pub fn write_counters(&mut self, b: &mut Batch<'_>) {
        for key in self.dirty_cursors.drain() {
            if let Some(c) = self.cursors.get(&key) {
                b.put(keys::cursor(key.0, key.1), c.encode().to_vec());
            }
        }
        for route in &self.dirty_tails {
            b.put(keys::seq(*route), self.tails[route].to_be_bytes().to_vec());
        }
        for sub in &self.dirty_waiting {
            b.put(keys::count(*sub), self.waiting[sub].to_be_bytes().to_vec());
        }
        self.media.write_count(b);
    }

    /// Make the new counters visible to lanes once they are written.
    pub fn publish_counters(&mut self) {
        for route in self.dirty_tails.drain() {
            self.inner.tail(route).store(self.tails[&route], Ordering::Relaxed);
        }
        for sub in self.dirty_waiting.drain() {
            self.inner.waiting(sub).store(self.waiting[&sub], Ordering::Relaxed);
        }
        self.media.publish(&self.inner);
    }

    /// Apply a control batch and flush it.
    pub fn commit(&mut self, mut b: Batch<'_>) -> Result<(), StoreError> {
        if self.inner.has_failed() {
            return Err(StoreError::Unavailable(
                "the store failed a write earlier; restart hookrelay".into(),
            ));
        }
        self.write_counters(&mut b);
        let rows = b.len() as u64;
        let r = b.apply().and_then(|()| Ok(self.inner.db.flush().map(|_| ())?));
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

    fn control(&mut self, m: Msg) {
        match m {
            Msg::Register(t, reply) => {
                let _ = reply.send(self.register(&t));
            }
            Msg::Replay {
                id,
                only,
                now_ms,
                reply,
            } => {
                let _ = reply.send(self.replay(id, only.as_deref(), now_ms));
            }
            Msg::ReplayDead { only, now_ms, reply } => {
                let _ = reply.send(self.replay_dead(only.as_deref(), now_ms));
            }
            Msg::Sweep {
                route,
                from,
                cutoff_ms,
                reply,
            } => {
                let _ = reply.send(self.sweep_step(route, from, cutoff_ms));
            }
            Msg::MediaSweep { from, cutoff_ms, reply } => {
                let _ = reply.send(self.media_sweep_step(from, cutoff_ms));
            }
            Msg::TaskSweep { cutoff_ms, reply } => {
                let _ = reply.send(self.task_sweep_step(cutoff_ms));
            }
            Msg::Probe(reply) => {
                let tree = self.inner.tree.clone();
                let mut b = Batch::new(&tree);
                b.put(b"Vprobe".to_vec(), Vec::new());
                let _ = reply.send(self.commit(b));
            }
            Msg::Append(..)
            | Msg::Record(..)
            | Msg::MediaRecord(..)
            | Msg::Task(..)
            | Msg::Cursor { .. }
            | Msg::Stop => {}
        }
    }

    /// Number the configured routes and subscribers; a subscriber new to its
    /// route starts at the tail of the route's log.
    fn register(&mut self, t: &Topology) -> Result<(), StoreError> {
        let tree = self.inner.tree.clone();
        let mut b = Batch::new(&tree);
        let mut rows = Vec::new();
        let mut configured = HashMap::new();
        {
            let mut reg = super::write_lock(&self.inner.registry);
            let before: Vec<(u32, u32)> = reg
                .route_numbers()
                .into_iter()
                .flat_map(|r| reg.route_subs(r).iter().map(move |s| (r, *s)).collect::<Vec<_>>())
                .collect();
            for (route_name, subs) in &t.routes {
                let route = reg.route_or_new(route_name, &mut rows);
                let mut list = Vec::new();
                for s in subs {
                    let (sub, _) = reg.sub_or_new(s, route, &mut rows);
                    list.push(sub);
                    match self.cursors.get_mut(&(route, sub)) {
                        Some(c) if c.end > 0 => {
                            // Back in the config: its log goes on from here.
                            c.end = 0;
                            self.dirty_cursors.insert((route, sub));
                        }
                        Some(_) => {}
                        None => {
                            let at = tree
                                .range(keys::log_prefix(route)..keys::log_end(route))
                                .next_back()
                                .transpose()?
                                .and_then(|(k, _)| keys::id_at_5(&k))
                                .map_or(EventId::ZERO, |id| id.next());
                            let seq = *self.tails.entry(route).or_insert(1);
                            let c = CursorRow {
                                at,
                                seq,
                                high_water: EventId::ZERO,
                                end: 0,
                            };
                            self.cursors.insert((route, sub), c);
                            self.dirty_cursors.insert((route, sub));
                        }
                    }
                }
                configured.insert(route, list);
            }
            // Removed from the config: no later event is meant for them.
            for (route, sub) in before {
                if configured.get(&route).is_some_and(|l: &Vec<u32>| l.contains(&sub)) {
                    continue;
                }
                let tail = *self.tails.entry(route).or_insert(1);
                if let Some(c) = self.cursors.get_mut(&(route, sub)) {
                    if c.end == 0 {
                        c.end = tail;
                        self.dirty_cursors.insert((route, sub));
                    }
                }
            }
            reg.set_configured(configured);
        }
        for (k, v) in rows {
            b.put(k, v);
        }
        self.commit(b)
    }
}

fn sort(
    m: Msg,
    appends: &mut VecDeque<(Box<NewEvent>, Reply<Accepted>)>,
    books: &mut VecDeque<Book>,
    controls: &mut VecDeque<Msg>,
) {
    match m {
        Msg::Append(ev, reply) => appends.push_back((ev, reply)),
        Msg::Record(rec, reply) => books.push_back(Book::Record(rec, reply)),
        Msg::MediaRecord(rec, reply) => books.push_back(Book::Media(rec, reply)),
        Msg::Task(op, reply) => books.push_back(Book::Task(op, reply)),
        Msg::Cursor { route, sub, at, seq } => books.push_back(Book::Cursor { route, sub, at, seq }),
        other => controls.push_back(other),
    }
}
