//! Durable storage: the only module that knows sled.
//!
//! One tree, keys prefixed by one byte so that related rows can be written in a
//! single atomic `sled::Batch`:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `E` | event id (16 B, ULID: time-ordered) | meta JSON length (4 B) + meta JSON + raw body |
//! | `D` | route, 0, SHA-256 of the dedupe key | event id |
//! | `J` | subscriber, 0, due ms (8 B BE), event id | schedule step (4 B) + attempt number (4 B) |
//! | `S` | event id, subscriber | final state JSON (delivered / dead / skipped) |
//! | `A` | event id, subscriber, 0, sequence (8 B) | attempt JSON |
//! | `X` | subscriber, 0, event id | dead letter JSON |
//!
//! Ingest writes `E` + `D` + one `J` per subscriber in one batch through a single
//! writer thread ([`Committer`]), which also makes dedupe race-free and flushes
//! once per batch of waiting requests (group commit). A job's `J` row is the only
//! thing delivery needs; jobs are scanned per subscriber in due-time order, so a
//! backlog lives on disk, not in memory.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An event id: a ULID, shown as `evt_<ULID>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub Ulid);

impl EventId {
    fn bytes(&self) -> [u8; 16] {
        self.0.to_bytes()
    }
    fn from_slice(b: &[u8]) -> Option<EventId> {
        let arr: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(EventId(Ulid::from_bytes(arr)))
    }
    /// When the event was received (ms since the epoch).
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "evt_{}", self.0)
    }
}

impl std::str::FromStr for EventId {
    type Err = ();
    /// Only the spelling [`Display`](std::fmt::Display) produces (any case):
    /// 26 base32 digits hold 130 bits, and the decoder drops the two that do
    /// not fit, so `8…` would otherwise name the event `0…`.
    fn from_str(s: &str) -> Result<Self, ()> {
        let u = s.strip_prefix("evt_").unwrap_or(s);
        let id = Ulid::from_string(u).map_err(|_| ())?;
        if !id.to_string().eq_ignore_ascii_case(u) {
            return Err(());
        }
        Ok(EventId(id))
    }
}

/// Everything kept about an event except its body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventMeta {
    pub route: String,
    pub received_ms: u64,
    pub source: String,
    pub content_type: Option<String>,
    /// The request headers worth keeping (never auth headers).
    pub headers: Vec<(String, String)>,
    /// The subscribers that had a job created at ingest.
    pub subscribers: Vec<String>,
    /// Hex SHA-256 of the dedupe key, so expiry can drop the dedupe row.
    pub dedupe: String,
    /// The dedupe key fell back to the body hash because a pointer was missing.
    #[serde(default)]
    pub dedupe_fallback: bool,
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub meta: EventMeta,
    pub body: Bytes,
}

/// A callback to store.
#[derive(Debug)]
pub struct NewEvent {
    pub meta: EventMeta,
    pub dedupe_hash: [u8; 32],
    pub body: Bytes,
}

/// What ingest gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub id: EventId,
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    #[error("store writer is not running")]
    WriterGone,
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("store cannot persist: {0}")]
    Unavailable(String),
    #[error("another hookrelay is using this store (its lock on {} is held); stop that one first", .0.display())]
    Locked(std::path::PathBuf),
}

/// A pending delivery of one event to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Job {
    /// The row key; identifies the job while it is in flight.
    pub key: Vec<u8>,
    pub subscriber: String,
    pub event: EventId,
    pub due_ms: u64,
    /// Position in the retry schedule (failures so far since the last replay).
    pub step: u32,
    /// Attempts made so far in total (across replays).
    pub attempts: u32,
}

/// One recorded delivery attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub at_ms: u64,
    pub duration_ms: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// The final state of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FinalState {
    Delivered,
    Dead,
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRecord {
    pub state: FinalState,
    pub at_ms: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A delivery that gave up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event: String,
    pub subscriber: String,
    pub at_ms: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// How a job ended this time.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered,
    /// Try again at this time.
    Retry {
        due_ms: u64,
    },
    Dead {
        error: String,
    },
    Skipped,
}

/// The durable store. Cheap to clone.
///
/// sled 0.34 keeps a sticky error after a failed write (e.g. a full disk), and
/// flushing or even dropping it afterwards can block for ever. So the store
/// refuses new events before the disk is full ([`Store::with_min_free`]), and a
/// write error marks it failed for good: the daemon then stops and lets its
/// supervisor restart it (sled recovers everything flushed on open).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Sled>,
    path: std::path::PathBuf,
    /// Set after a write error: every later write is refused.
    failed: Arc<std::sync::atomic::AtomicBool>,
    /// Refuse new events while the disk has less free space than this: sled
    /// 0.34 can hang in `flush()` once a write hits ENOSPC, so never get there.
    min_free: u64,
}

struct Sled {
    db: sled::Db,
    tree: sled::Tree,
}

fn open_sled(path: &Path, cache_bytes: u64) -> Result<Sled, StoreError> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .flush_every_ms(Some(1000))
        .open()
        .map_err(|e| match e {
            // sled 0.34 says so only in the message of an io::Error.
            sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock") => {
                StoreError::Locked(path.join("db"))
            }
            e => StoreError::Sled(e),
        })?;
    let tree = db.open_tree("hookrelay")?;
    Ok(Sled { db, tree })
}

const E: u8 = b'E';
const D: u8 = b'D';
const J: u8 = b'J';
const S: u8 = b'S';
const A: u8 = b'A';
const X: u8 = b'X';

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn event_key(id: EventId) -> Vec<u8> {
    key(&[&[E], &id.bytes()])
}
fn dedupe_key(route: &str, hash: &[u8]) -> Vec<u8> {
    key(&[&[D], route.as_bytes(), &[0], hash])
}
fn job_prefix(sub: &str) -> Vec<u8> {
    key(&[&[J], sub.as_bytes(), &[0]])
}
fn job_key(sub: &str, due_ms: u64, id: EventId) -> Vec<u8> {
    key(&[&[J], sub.as_bytes(), &[0], &due_ms.to_be_bytes(), &id.bytes()])
}
fn job_value(step: u32, attempts: u32) -> [u8; 8] {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&step.to_be_bytes());
    v[4..].copy_from_slice(&attempts.to_be_bytes());
    v
}
fn state_key(id: EventId, sub: &str) -> Vec<u8> {
    key(&[&[S], &id.bytes(), sub.as_bytes()])
}
fn attempt_prefix(id: EventId, sub: &str) -> Vec<u8> {
    key(&[&[A], &id.bytes(), sub.as_bytes(), &[0]])
}
fn dead_prefix(sub: &str) -> Vec<u8> {
    key(&[&[X], sub.as_bytes(), &[0]])
}
fn dead_key(sub: &str, id: EventId) -> Vec<u8> {
    key(&[&[X], sub.as_bytes(), &[0], &id.bytes()])
}

fn encode_event(meta: &EventMeta, body: &[u8]) -> Vec<u8> {
    let m = serde_json::to_vec(meta).expect("meta serializes");
    let mut v = Vec::with_capacity(4 + m.len() + body.len());
    v.extend_from_slice(&(m.len() as u32).to_be_bytes());
    v.extend_from_slice(&m);
    v.extend_from_slice(body);
    v
}

fn decode_event(id: EventId, v: &[u8]) -> Result<Event, StoreError> {
    let bad = || StoreError::Corrupt(format!("event {id}"));
    let len = u32::from_be_bytes(v.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
    let meta: EventMeta = serde_json::from_slice(v.get(4..4 + len).ok_or_else(bad)?).map_err(|_| bad())?;
    Ok(Event {
        id,
        meta,
        body: Bytes::copy_from_slice(&v[4 + len..]),
    })
}

fn decode_job(sub: &str, k: &[u8], v: &[u8]) -> Option<Job> {
    let rest = k.get(job_prefix(sub).len()..)?;
    let due_ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let event = EventId::from_slice(rest.get(8..)?)?;
    let step = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
    let attempts = u32::from_be_bytes(v.get(4..8)?.try_into().ok()?);
    Some(Job {
        key: k.to_vec(),
        subscriber: sub.to_string(),
        event,
        due_ms,
        step,
        attempts,
    })
}

impl Store {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let sled = open_sled(path, cache_bytes)?;
        Ok(Store {
            inner: Arc::new(sled),
            path: path.to_path_buf(),
            failed: Arc::default(),
            min_free: 0,
        })
    }

    /// Refuse new events (503) while the store's disk has less than `bytes` free.
    pub fn with_min_free(mut self, bytes: u64) -> Store {
        self.min_free = bytes;
        self
    }

    /// Whether the disk has room for more events; the reason when not.
    fn space_check(&self) -> Result<(), String> {
        if self.min_free == 0 {
            return Ok(());
        }
        match fs4::available_space(&self.path) {
            Ok(free) if free < self.min_free => Err(format!(
                "disk nearly full: {} MiB free under {}, store.min_free is {} MiB",
                free >> 20,
                self.path.display(),
                self.min_free >> 20
            )),
            _ => Ok(()),
        }
    }

    /// Whether a write error has made the store unusable until a restart.
    pub fn has_failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fail(&self, e: &StoreError) {
        if !self.failed.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!(error = %e, "store write failed; refusing new events until hookrelay is restarted");
        }
    }

    /// Write and flush a probe row: the store is writable.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        if self.has_failed() {
            return Err(StoreError::Unavailable("the store failed a write earlier".into()));
        }
        let s = &self.inner;
        s.tree.insert(b"Mprobe", &now_ms().to_be_bytes())?;
        s.db.flush()?;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        let s = &self.inner;
        s.db.flush()?;
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        let s = &self.inner;
        s.db.size_on_disk().unwrap_or(0)
    }

    /// Start the single writer thread that commits ingested events.
    /// `on_commit` is called with the subscribers of every new event once it is
    /// on disk (it wakes their delivery lanes), even if the request is gone.
    pub fn committer(&self, queue: usize, on_commit: OnCommit) -> Committer {
        let (tx, rx) = mpsc::channel(queue);
        let store = self.clone();
        let thread = std::thread::Builder::new()
            .name("hookrelay-writer".into())
            .spawn(move || store.writer_loop(rx, on_commit))
            .expect("spawn writer thread");
        Committer {
            tx,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        }
    }

    fn writer_loop(&self, mut rx: mpsc::Receiver<Msg>, on_commit: OnCommit) {
        const MAX_BATCH: usize = 512;
        let mut pending: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        let mut applies: Vec<(Ops, oneshot::Sender<Result<(), StoreError>>)> = Vec::new();
        let mut ids = ulid::Generator::new();
        let mut space_ok = true;
        let mut counting: Vec<Counting> = Vec::new();
        loop {
            // Counts advance a chunk at a time, only while nothing else waits.
            let first = if counting.is_empty() {
                match rx.blocking_recv() {
                    Some(m) => m,
                    None => break,
                }
            } else {
                match rx.try_recv() {
                    Ok(m) => m,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.count_step(&mut counting);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            };
            // A count or a stop ends the batch, so it sees exactly the writes before it.
            let take = |m: Msg, pending: &mut Vec<Pending>, applies: &mut Vec<_>| match m {
                Msg::Commit(p) => {
                    pending.push(p);
                    None
                }
                Msg::Apply(ops, reply) => {
                    applies.push((ops, reply));
                    None
                }
                other => Some(other),
            };
            let mut after = take(first, &mut pending, &mut applies);
            while after.is_none() && pending.len() + applies.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => after = take(m, &mut pending, &mut applies),
                    Err(_) => break,
                }
            }
            // Checked before every batch of events (one statvfs): sled must never hit a full disk.
            let refuse = if pending.is_empty() {
                None
            } else if self.has_failed() {
                Some("the store failed a write earlier; restart hookrelay".to_string())
            } else {
                let space = self.space_check();
                match (&space, space_ok) {
                    (Err(why), true) => tracing::error!("{why}; answering 503 until there is room"),
                    (Ok(()), false) => tracing::info!("disk space is back; accepting events again"),
                    _ => {}
                }
                space_ok = space.is_ok();
                space.err()
            };
            if let Some(why) = refuse {
                for p in pending.drain(..) {
                    let _ = p.reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
            if !pending.is_empty() || !applies.is_empty() {
                let extra: Vec<Ops> = applies.iter_mut().map(|(ops, _)| std::mem::take(ops)).collect();
                match self.commit_batch_with(&mut ids, pending.iter().map(|p| &p.event), extra) {
                    Ok(accepted) => {
                        for (p, a) in pending.drain(..).zip(accepted) {
                            if !a.duplicate {
                                // A job behind a running count's cursor is not seen by
                                // the scan: add it here (wakes are not counted yet).
                                for c in &counting {
                                    if p.event.meta.subscribers.contains(&c.subscriber)
                                        && c.is_behind(&job_key(&c.subscriber, p.event.meta.received_ms, a.id))
                                    {
                                        (c.add)(1);
                                    }
                                }
                                on_commit(&p.event.meta.subscribers);
                            }
                            let _ = p.reply.send(Ok(a));
                        }
                        for (_, reply) in applies.drain(..) {
                            let _ = reply.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        self.fail(&e);
                        let msg = e.to_string();
                        for p in pending.drain(..) {
                            let _ = p.reply.send(Err(StoreError::Unavailable(msg.clone())));
                        }
                        for (_, reply) in applies.drain(..) {
                            let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                        }
                    }
                }
            }
            match after {
                Some(Msg::Count { subscriber, add, done }) => counting.push(Counting {
                    scanned: None,
                    subscriber,
                    add,
                    done: Some(done),
                }),
                Some(Msg::Stop) => break,
                _ => {}
            }
        }
    }

    #[cfg(test)]
    fn commit_batch<'a>(&self, events: impl Iterator<Item = &'a NewEvent>) -> Result<Vec<Accepted>, StoreError> {
        self.commit_batch_with(&mut ulid::Generator::new(), events, Vec::new())
    }

    /// Dedupe, then write every new event with its jobs in one batch, then flush.
    /// Ids come from one monotonic generator, so they follow arrival order.
    fn commit_batch_with<'a>(
        &self,
        ids: &mut ulid::Generator,
        events: impl Iterator<Item = &'a NewEvent>,
        extra: Vec<Ops>,
    ) -> Result<Vec<Accepted>, StoreError> {
        let s = &self.inner;
        let mut batch = sled::Batch::default();
        let bookkeeping = extra.iter().any(|ops| !ops.is_empty());
        add_ops(&mut batch, extra.into_iter().flatten());
        let mut seen: HashMap<Vec<u8>, EventId> = HashMap::new();
        let mut out = Vec::new();
        let mut writes = 0;
        for ev in events {
            let dkey = dedupe_key(&ev.meta.route, &ev.dedupe_hash);
            if let Some(id) = seen.get(&dkey) {
                out.push(Accepted {
                    id: *id,
                    duplicate: true,
                });
                continue;
            }
            if let Some(v) = s.tree.get(&dkey)? {
                if let Some(id) = EventId::from_slice(&v) {
                    out.push(Accepted { id, duplicate: true });
                    continue;
                }
            }
            let at = UNIX_EPOCH + std::time::Duration::from_millis(ev.meta.received_ms);
            let id = EventId(
                ids.generate_from_datetime(at)
                    .unwrap_or_else(|_| Ulid::from_parts(ev.meta.received_ms, fastrand::u128(..))),
            );
            batch.insert(event_key(id), encode_event(&ev.meta, &ev.body));
            batch.insert(dkey.clone(), &id.bytes());
            for sub in &ev.meta.subscribers {
                batch.insert(job_key(sub, ev.meta.received_ms, id), &job_value(0, 0));
            }
            seen.insert(dkey, id);
            out.push(Accepted { id, duplicate: false });
            writes += 1;
        }
        if writes > 0 {
            s.tree.apply_batch(batch)?;
            s.db.flush()?;
        } else if bookkeeping {
            // Delivery outcomes need no flush of their own: at-least-once.
            s.tree.apply_batch(batch)?;
        }
        Ok(out)
    }

    /// Read one event.
    pub fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let s = &self.inner;
        match s.tree.get(event_key(id))? {
            Some(v) => Ok(Some(decode_event(id, &v)?)),
            None => Ok(None),
        }
    }

    /// Newest events first, optionally of one route, older than `before`.
    pub fn recent_events(
        &self,
        route: Option<&str>,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let s = &self.inner;
        let end = match before {
            Some(b) => event_key(b),
            None => vec![E + 1],
        };
        let mut out = Vec::new();
        for item in s.tree.range(vec![E]..end).rev() {
            let (k, v) = item?;
            let Some(id) = EventId::from_slice(&k[1..]) else {
                continue;
            };
            let ev = decode_event(id, &v)?;
            if route.is_some_and(|r| r != ev.meta.route) {
                continue;
            }
            out.push(ev);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Jobs of `sub` due at `now_ms`, in due order, skipping those in `busy`.
    pub fn due_jobs(
        &self,
        sub: &str,
        now_ms: u64,
        limit: usize,
        busy: &HashSet<Vec<u8>>,
    ) -> Result<Vec<Job>, StoreError> {
        let s = &self.inner;
        let mut out = Vec::new();
        for item in s.tree.scan_prefix(job_prefix(sub)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if busy.contains(k.as_ref()) {
                continue;
            }
            let Some(job) = decode_job(sub, &k, &v) else {
                continue;
            };
            if job.due_ms > now_ms {
                break;
            }
            out.push(job);
        }
        Ok(out)
    }

    /// The due time of the first job of `sub` not in `busy`.
    pub fn next_due(&self, sub: &str, busy: &HashSet<Vec<u8>>) -> Result<Option<u64>, StoreError> {
        let s = &self.inner;
        for item in s.tree.scan_prefix(job_prefix(sub)) {
            let (k, v) = item?;
            if busy.contains(k.as_ref()) {
                continue;
            }
            if let Some(job) = decode_job(sub, &k, &v) {
                return Ok(Some(job.due_ms));
            }
        }
        Ok(None)
    }

    /// Count the next chunk of each running backlog count; finish those done.
    fn count_step(&self, counting: &mut Vec<Counting>) {
        // ~20 ms of key scanning: the most a commit waits behind a count.
        const CHUNK: usize = 5_000;
        for c in counting.iter_mut() {
            let prefix = job_prefix(&c.subscriber);
            let start = match &c.scanned {
                Some(last) => key(&[last, &[0]]),
                None => prefix.clone(),
            };
            let mut end = prefix.clone();
            *end.last_mut().expect("prefix ends with 0") = 1;
            let mut n = 0;
            for k in self.inner.tree.range(start..end).keys().take(CHUNK) {
                match k {
                    Ok(k) => {
                        c.scanned = Some(k.to_vec());
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            (c.add)(n);
            if n < CHUNK {
                if let Some(done) = c.done.take() {
                    done();
                }
            }
        }
        counting.retain(|c| c.done.is_some());
    }

    /// Pending jobs of `sub` (reads only its small job rows).
    pub fn count_jobs(&self, sub: &str) -> usize {
        let s = &self.inner;
        s.tree.scan_prefix(job_prefix(sub)).keys().count()
    }

    /// The oldest pending job's event time (for "oldest pending age").
    pub fn oldest_job_event_ms(&self, sub: &str) -> Option<u64> {
        let s = &self.inner;
        s.tree
            .scan_prefix(job_prefix(sub))
            .filter_map(|r| r.ok())
            .filter_map(|(k, v)| decode_job(sub, &k, &v))
            .map(|j| j.event.timestamp_ms())
            .take(64)
            .min()
    }

    /// Every subscriber name that has stored jobs or dead letters (for reporting
    /// subscribers that were removed from the config). Reads one key per name.
    pub fn subscribers_with_rows(&self) -> Result<Vec<String>, StoreError> {
        let s = &self.inner;
        let mut names = Vec::new();
        for prefix in [J, X] {
            let mut from = vec![prefix];
            while let Some(item) = s.tree.range(from.clone()..vec![prefix + 1]).next() {
                let (k, _) = item?;
                let end = k[1..].iter().position(|b| *b == 0).map_or(k.len(), |p| p + 1);
                let name = String::from_utf8_lossy(&k[1..end]).to_string();
                if !names.contains(&name) {
                    names.push(name);
                }
                from = key(&[&k[..end], &[1]]);
            }
        }
        Ok(names)
    }

    /// Record an attempt's result directly (the daemon goes through
    /// [`Committer::finish`], which batches it with other writes).
    #[cfg(test)]
    fn finish(&self, job: &Job, attempt: Option<&Attempt>, outcome: &Outcome) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        add_ops(&mut batch, self.finish_ops(job, attempt, outcome)?);
        self.inner.tree.apply_batch(batch)?;
        Ok(())
    }

    /// The writes that record an attempt's result: the job row goes, and what
    /// follows from the outcome is written.
    fn finish_ops(&self, job: &Job, attempt: Option<&Attempt>, outcome: &Outcome) -> Result<Ops, StoreError> {
        let s = &self.inner;
        let mut batch = OpsBuilder::default();
        batch.remove(job.key.clone());
        let attempts = job.attempts + u32::from(attempt.is_some());
        if let Some(a) = attempt {
            let seq = s.db.generate_id()?;
            let k = key(&[&attempt_prefix(job.event, &job.subscriber), &seq.to_be_bytes()]);
            batch.insert(k, serde_json::to_vec(a).expect("serializes"));
        }
        let now = now_ms();
        let last_error = attempt.and_then(|a| a.error.clone().or_else(|| a.status.map(|s| format!("HTTP {s}"))));
        let state = |state: FinalState| StateRecord {
            state,
            at_ms: now,
            attempts,
            last_error: last_error.clone(),
        };
        match outcome {
            Outcome::Delivered => {
                batch.insert(
                    state_key(job.event, &job.subscriber),
                    serde_json::to_vec(&state(FinalState::Delivered)).expect("ser"),
                );
            }
            Outcome::Skipped => {
                batch.insert(
                    state_key(job.event, &job.subscriber),
                    serde_json::to_vec(&state(FinalState::Skipped)).expect("ser"),
                );
            }
            Outcome::Retry { due_ms } => {
                batch.insert(
                    job_key(&job.subscriber, *due_ms, job.event),
                    job_value(job.step + 1, attempts),
                );
            }
            Outcome::Dead { error } => {
                let mut st = state(FinalState::Dead);
                st.last_error = Some(error.clone());
                batch.insert(
                    state_key(job.event, &job.subscriber),
                    serde_json::to_vec(&st).expect("ser"),
                );
                let dl = DeadLetter {
                    event: job.event.to_string(),
                    subscriber: job.subscriber.clone(),
                    at_ms: now,
                    attempts,
                    last_error: Some(error.clone()),
                };
                batch.insert(
                    dead_key(&job.subscriber, job.event),
                    serde_json::to_vec(&dl).expect("ser"),
                );
            }
        }
        Ok(batch.0)
    }

    /// Final state of each subscriber of an event (None: still pending).
    pub fn state(&self, id: EventId, sub: &str) -> Result<Option<StateRecord>, StoreError> {
        let s = &self.inner;
        Ok(s.tree
            .get(state_key(id, sub))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Every recorded attempt of an event for one subscriber, oldest first.
    pub fn attempts(&self, id: EventId, sub: &str) -> Result<Vec<Attempt>, StoreError> {
        let s = &self.inner;
        let mut out = Vec::new();
        for item in s.tree.scan_prefix(attempt_prefix(id, sub)) {
            let (_, v) = item?;
            if let Ok(a) = serde_json::from_slice(&v) {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// How many dead letters `sub` has (reads keys only).
    pub fn count_dead_letters(&self, sub: &str) -> usize {
        self.inner.tree.scan_prefix(dead_prefix(sub)).keys().count()
    }

    /// Dead letters, optionally of one subscriber, up to `limit`.
    pub fn dead_letters(&self, sub: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let s = &self.inner;
        let prefix = match sub {
            Some(s) => dead_prefix(s),
            None => vec![X],
        };
        let mut out = Vec::new();
        for item in s.tree.scan_prefix(prefix).take(limit) {
            let (_, v) = item?;
            if let Ok(d) = serde_json::from_slice(&v) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Queue a fresh delivery of an event (all its subscribers, or one); returns
    /// the subscribers queued.
    pub fn replay_event(&self, id: EventId, only: Option<&str>) -> Result<Option<Vec<String>>, StoreError> {
        let s = &self.inner;
        let Some(ev) = self.event(id)? else {
            return Ok(None);
        };
        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut queued = Vec::new();
        for sub in &ev.meta.subscribers {
            if only.is_some_and(|o| o != sub) {
                continue;
            }
            let attempts = self.attempts(id, sub)?.len() as u32;
            batch.remove(state_key(id, sub));
            batch.remove(dead_key(sub, id));
            batch.insert(job_key(sub, now, id), &job_value(0, attempts));
            queued.push(sub.clone());
        }
        s.tree.apply_batch(batch)?;
        s.db.flush()?;
        Ok(Some(queued))
    }

    /// Re-queue dead letters (all, or one subscriber's); returns how many per subscriber.
    pub fn replay_dead_letters(&self, only: Option<&str>) -> Result<HashMap<String, usize>, StoreError> {
        let s = &self.inner;
        let prefix = match only {
            Some(s) => dead_prefix(s),
            None => vec![X],
        };
        let now = now_ms();
        let mut counts: HashMap<String, usize> = HashMap::new();
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in s.tree.scan_prefix(&prefix).take(1000) {
                let (k, v) = item?;
                let Ok(dl) = serde_json::from_slice::<DeadLetter>(&v) else {
                    batch.remove(k);
                    n += 1;
                    continue;
                };
                let Ok(id) = dl.event.parse::<EventId>() else {
                    continue;
                };
                batch.remove(k);
                batch.remove(state_key(id, &dl.subscriber));
                batch.insert(job_key(&dl.subscriber, now, id), &job_value(0, dl.attempts));
                *counts.entry(dl.subscriber).or_default() += 1;
                n += 1;
            }
            if n == 0 {
                break;
            }
            s.tree.apply_batch(batch)?;
        }
        s.db.flush()?;
        Ok(counts)
    }

    /// Remove up to `limit` events received before `cutoff_ms` whose deliveries
    /// are all final (dead ones: died before `cutoff_ms` too, so a dead letter
    /// is kept the whole retention), with their dedupe key, states, attempts and
    /// dead letters.
    /// Starts after `cursor`; returns the new cursor (None: reached the cutoff)
    /// and how many events were removed.
    pub fn sweep(
        &self,
        cutoff_ms: u64,
        cursor: Option<EventId>,
        limit: usize,
    ) -> Result<(Option<EventId>, usize), StoreError> {
        let s = &self.inner;
        let start = match cursor {
            Some(c) => key(&[&event_key(c), &[0]]),
            None => vec![E],
        };
        let mut removed = 0;
        let mut last = None;
        for item in s.tree.range(start..vec![E + 1]).take(limit) {
            let (k, v) = item?;
            let Some(id) = EventId::from_slice(&k[1..]) else {
                continue;
            };
            if id.timestamp_ms() >= cutoff_ms {
                return Ok((None, removed));
            }
            last = Some(id);
            let len = u32::from_be_bytes(v[..4].try_into().unwrap_or([0; 4])) as usize;
            let Ok(meta) = serde_json::from_slice::<EventMeta>(v.get(4..4 + len).unwrap_or(&[])) else {
                continue;
            };
            let mut all_final = true;
            for sub in &meta.subscribers {
                let expired = match s.tree.get(state_key(id, sub))? {
                    None => false,
                    Some(v) => serde_json::from_slice::<StateRecord>(&v)
                        .map_or(true, |st| st.state != FinalState::Dead || st.at_ms < cutoff_ms),
                };
                if !expired {
                    all_final = false;
                    break;
                }
            }
            if !all_final {
                continue;
            }
            let mut batch = sled::Batch::default();
            batch.remove(k);
            if let Ok(h) = hex::decode(&meta.dedupe) {
                let dk = dedupe_key(&meta.route, &h);
                // Only drop the dedupe row if it still points at this event.
                if s.tree.get(&dk)?.is_some_and(|v| v.as_ref() == id.bytes()) {
                    batch.remove(dk);
                }
            }
            for sub in &meta.subscribers {
                batch.remove(state_key(id, sub));
                batch.remove(dead_key(sub, id));
                for a in s.tree.scan_prefix(attempt_prefix(id, sub)).keys() {
                    batch.remove(a?);
                }
            }
            s.tree.apply_batch(batch)?;
            removed += 1;
        }
        Ok((last, removed))
    }
}

/// Writes to apply together: a key and its new value, or None to remove it.
type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn add_ops(batch: &mut sled::Batch, ops: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>) {
    for (k, v) in ops {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
}

#[derive(Default)]
struct OpsBuilder(Ops);

impl OpsBuilder {
    fn insert(&mut self, k: impl Into<Vec<u8>>, v: impl AsRef<[u8]>) {
        self.0.push((k.into(), Some(v.as_ref().to_vec())));
    }
    fn remove(&mut self, k: impl Into<Vec<u8>>) {
        self.0.push((k.into(), None));
    }
}

/// Adds to a subscriber's queue-depth counter (from the writer thread).
pub type CountAdd = Arc<dyn Fn(usize) + Send + Sync>;

/// A backlog count in progress on the writer thread.
struct Counting {
    subscriber: String,
    /// The last job key counted so far.
    scanned: Option<Vec<u8>>,
    add: CountAdd,
    done: Option<Box<dyn FnOnce() + Send>>,
}

impl Counting {
    fn is_behind(&self, key: &[u8]) -> bool {
        self.scanned.as_deref().is_some_and(|s| key <= s)
    }
}

/// Called by the writer thread after new events are durable.
pub type OnCommit = Arc<dyn Fn(&[String]) + Send + Sync>;

struct Pending {
    event: NewEvent,
    reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

// Stop is sent once; boxing every commit to shrink it is not worth an allocation.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Commit(Pending),
    /// Delivery bookkeeping, applied with the next batch (no flush of its own).
    Apply(Ops, oneshot::Sender<Result<(), StoreError>>),
    /// Count a subscriber's jobs, a chunk at a time between batches, on the
    /// writer thread; `add` gets each chunk and each job committed behind the
    /// count's cursor, `done` runs when the count is complete.
    Count {
        subscriber: String,
        add: CountAdd,
        done: Box<dyn FnOnce() + Send>,
    },
    /// Finish what is queued before this, then end the thread.
    Stop,
}

/// Hands events to the writer thread and waits until they are on disk.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Msg>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Committer {
    /// Store the event durably (or find its duplicate). Returns once flushed.
    pub async fn commit(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Commit(Pending { event, reply }))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Count `subscriber`'s jobs without stalling ingest: the writer counts a
    /// chunk at a time between batches and adds the jobs it commits behind the
    /// count's cursor itself; `done()` runs once the scan is complete. A
    /// counter fed by `add` (and by `on_commit` wakes after `done`) is exact.
    pub async fn count_jobs(
        &self,
        subscriber: &str,
        add: CountAdd,
        done: Box<dyn FnOnce() + Send>,
    ) -> Result<(), StoreError> {
        self.tx
            .send(Msg::Count {
                subscriber: subscriber.to_string(),
                add,
                done,
            })
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Record a delivery attempt's result with the writer's next batch; returns
    /// once it is applied (so the job cannot be picked up again before).
    pub async fn finish(
        &self,
        store: &Store,
        job: &Job,
        attempt: Option<&Attempt>,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        let ops = store.finish_ops(job, attempt, outcome)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Apply(ops, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Whether the writer thread is still running.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Commit what is queued, then stop the writer thread and wait for it.
    pub async fn stop(&self) {
        let _ = self.tx.send(Msg::Stop).await;
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

#[cfg(test)]
mod tests;
