//! The store seam: everything ingest, delivery, admin and retention ask of
//! durable storage, with one backend per engine behind it. Only the backend
//! modules know their engine (sled here; NATS JetStream in cluster mode).
//!
//! The model ("the log and its cursors"): each route has a log of events in
//! id (time) order; appending an event and its dedupe key is one atomic,
//! durable write, whatever the number of subscribers. Each subscriber reads
//! its route's log through a [`WorkSource`] (a cursor), plus a due-time index
//! for work that has to wait (retries, `Retry-After`, replays). Every finished
//! attempt leaves one result per event and subscriber.
//!
//! Media archive work lives here too: appending an event whose route found
//! media URLs writes one row per URL (shared by every event naming it, so it
//! is fetched once) in the same atomic write; the archiver reads due URLs
//! through a [`MediaSource`] and records each try; an `after_archive`
//! delivery is parked ([`Outcome::Defer`]) until its event's media is done.

mod media;
pub mod prefill;
pub mod sled;
mod tasks;
mod types;

use std::path::PathBuf;

pub use media::*;
pub use tasks::*;
pub use types::*;

/// How to open the store (from the `[store]` section).
#[derive(Debug, Clone)]
pub struct Options {
    pub path: PathBuf,
    /// sled page cache in bytes.
    pub cache_bytes: u64,
    /// Refuse new events while the disk has less free space than this.
    pub min_free: u64,
    /// zstd compression of rows; fixed when the store is created.
    pub compression: bool,
}

/// The durable store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sled(sled::SledStore),
}

/// Routes and the subscribers of each, as configured (names only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub routes: Vec<(String, Vec<String>)>,
}

impl Store {
    /// Open (or create, or migrate from 0.1) the embedded store.
    pub fn open_sled(opts: &Options) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sled(sled::SledStore::open(opts)?),
        })
    }

    /// Make the configured routes and subscribers known. A subscriber seen for
    /// the first time starts at the tail of its route's log.
    pub async fn register(&self, topology: &Topology) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.register(topology).await,
        }
    }

    /// Store a callback durably, or find the event it duplicates. Returns once
    /// the event is on disk.
    pub async fn append(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.append(event).await,
        }
    }

    /// The work of one subscriber (its lane owns it).
    pub fn work_source(&self, subscriber: &str) -> Result<WorkSource, StoreError> {
        match &self.backend {
            Backend::Sled(s) => Ok(WorkSource::Sled(s.work_source(subscriber)?)),
        }
    }

    /// Record an attempt and what follows from it. Returns once applied: the
    /// same work is not handed out again before.
    pub async fn record(&self, ticket: &Ticket, attempt: Option<Attempt>, outcome: Outcome) -> Result<(), StoreError> {
        match (&self.backend, ticket) {
            (Backend::Sled(s), Ticket::Sled(t)) => s.record(t, attempt, outcome).await,
        }
    }

    pub async fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.event(id)).await,
        }
    }

    /// One event with the state of each of its deliveries.
    pub async fn event_view(&self, id: EventId) -> Result<Option<EventView>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.event_view(id)).await,
        }
    }

    /// Newest events first.
    pub async fn recent_events(&self, q: EventQuery) -> Result<Vec<EventView>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.recent_events(&q)).await,
        }
    }

    pub async fn dead_letters(&self, subscriber: Option<String>, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.dead_letters(subscriber.as_deref(), limit)).await,
        }
    }

    /// Deliver an event again (to all its subscribers, or one). None: no such event.
    pub async fn replay_event(&self, id: EventId, only: Option<String>) -> Result<Option<Vec<Replayed>>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.replay_event(id, only).await,
        }
    }

    /// Re-queue dead letters (all, or one subscriber's); how many per subscriber.
    pub async fn replay_dead_letters(
        &self,
        only: Option<String>,
    ) -> Result<std::collections::BTreeMap<String, usize>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.replay_dead_letters(only).await,
        }
    }

    /// Backlog, oldest pending age and dead letters of every subscriber the store
    /// knows (configured or not).
    pub async fn subscriber_stats(&self) -> Result<Vec<SubscriberStats>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(|s| s.subscriber_stats()).await,
        }
    }

    /// Remove what retention allows: events received before `cutoff_ms` whose
    /// deliveries are all finished (dead letters: died before `cutoff_ms`).
    /// Works in bounded steps; returns how many events were removed.
    pub async fn sweep(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.sweep(cutoff_ms).await,
        }
    }

    /// The archiver's view of the media work (one per daemon).
    pub fn media_source(&self) -> MediaSource {
        match &self.backend {
            Backend::Sled(s) => MediaSource::Sled(s.media_source()),
        }
    }

    /// Record an archive try. Returns once applied; an event whose media is
    /// now all final has its waiting deliveries made due.
    pub async fn record_media(&self, ticket: &MediaTicket, outcome: MediaOutcome) -> Result<(), StoreError> {
        match (&self.backend, ticket) {
            (Backend::Sled(s), MediaTicket::Sled(t)) => s.record_media(t, outcome).await,
        }
    }

    /// The media of an event, in the order its pointers found them; None when
    /// it named none. Asked before every `after_archive` delivery (sled: a
    /// few point reads, fine on the async workers).
    pub async fn event_media(&self, id: EventId) -> Result<Option<Vec<MediaItem>>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.event_media(id),
        }
    }

    /// A stored file by its SHA-256 (lower-case hex), while a URL refers to it.
    pub async fn media_file(&self, sha256: String) -> Result<Option<MediaFile>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.media_file(&sha256)).await,
        }
    }

    /// The most recently finished media URLs (newest first) and the ones
    /// waiting for a try, up to `limit` each.
    pub async fn recent_media(&self, limit: usize) -> Result<(Vec<MediaItem>, Vec<MediaItem>), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.recent_media(limit)).await,
        }
    }

    /// Media retention: forget the URLs that became final before `cutoff_ms`.
    /// Returns how many, and the digests of files no URL refers to any more
    /// (the caller deletes them). Works in bounded steps.
    pub async fn sweep_media(&self, cutoff_ms: u64) -> Result<(usize, Vec<String>), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.sweep_media(cutoff_ms).await,
        }
    }

    /// Media URLs waiting for a try.
    pub fn media_queue(&self) -> u64 {
        match &self.backend {
            Backend::Sled(s) => s.media_queue(),
        }
    }

    /// Write and flush a probe: the store can persist.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.check_writable().await,
        }
    }

    /// A write failed: the store refuses everything until a restart.
    pub fn has_failed(&self) -> bool {
        match &self.backend {
            Backend::Sled(s) => s.has_failed(),
        }
    }

    /// (rows written, batches applied) since start.
    pub fn write_counts(&self) -> (u64, u64) {
        match &self.backend {
            Backend::Sled(s) => (s.rows_written(), s.batches()),
        }
    }

    pub fn size_on_disk(&self) -> u64 {
        match &self.backend {
            Backend::Sled(s) => s.size_on_disk(),
        }
    }

    /// Which engine holds the data, and where (a directory, a server): for
    /// the status API.
    pub fn describe(&self) -> (&'static str, String) {
        match &self.backend {
            Backend::Sled(s) => ("sled", s.path().display().to_string()),
        }
    }

    /// Commit what is queued, stop the writer and flush.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sled(s) => s.close().await,
        }
    }
}

/// One subscriber's view of its work: fresh events from the log and waiting
/// work from the due index, merged by due time. Owned by the lane.
pub enum WorkSource {
    Sled(sled::Cursor),
}

impl WorkSource {
    /// Up to `max` pieces of work due at `now_ms`, oldest due first. Never hands
    /// out work that is handed out and not yet [`done`](Self::done).
    pub async fn take(&mut self, max: usize, now_ms: u64) -> Result<Vec<Work>, StoreError> {
        match self {
            WorkSource::Sled(c) => c.take(max, now_ms).await,
        }
    }

    /// The work behind `ticket` was recorded ([`Store::record`]): let it go.
    pub async fn done(&mut self, ticket: &Ticket) {
        match (self, ticket) {
            (WorkSource::Sled(c), Ticket::Sled(t)) => c.done(t).await,
        }
    }

    /// When the earliest known waiting work becomes due (ms), if any.
    pub fn next_due(&mut self) -> Option<u64> {
        match self {
            WorkSource::Sled(c) => c.next_due(),
        }
    }

    /// Resolves when new work may have arrived (a new event, a replay).
    pub fn signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        match self {
            WorkSource::Sled(c) => c.signal(),
        }
    }

    /// Pending deliveries, handed out ones included.
    pub fn depth(&self) -> u64 {
        match self {
            WorkSource::Sled(c) => c.depth(),
        }
    }
}
