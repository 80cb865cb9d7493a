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

mod due_caps;
mod event_id;
mod media;
pub mod nats;
pub mod prefill;
pub mod result;
pub mod sled;
mod tasks;
mod types;
mod work_source;

use std::path::PathBuf;

pub use due_caps::{DueCap, DueCaps};
pub use event_id::EventId;
pub use media::*;
pub use tasks::*;
pub use types::*;
pub use work_source::WorkSource;

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
    /// Drop rows hookrelay 0.1 wrote to the store after it was migrated
    /// (`hookrelay migrate --discard-0.1-rows`); otherwise such a store is
    /// refused.
    pub discard_v1_rows: bool,
}

impl Options {
    /// The store options a config asks for.
    pub fn of(config: &crate::config::Config) -> Options {
        Options {
            path: config.store.path.clone(),
            cache_bytes: config.store.cache_bytes,
            min_free: config.store.min_free,
            compression: config.store.compression,
            discard_v1_rows: false,
        }
    }
}

/// The durable store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sled(sled::SledStore),
    Nats(nats::NatsStore),
}

/// Dispatch a call to the backend in use.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sled($s) => $e,
            Backend::Nats($s) => $e,
        }
    };
}

// After `each!`, which it uses.
mod media_calls;

impl Store {
    /// Open (or create, or migrate from 0.1) the embedded store.
    pub fn open_sled(opts: &Options) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sled(sled::SledStore::open(opts)?),
        })
    }

    /// What opening the embedded store found (`None`: the NATS backend).
    pub fn opened(&self) -> Option<sled::Opened> {
        match &self.backend {
            Backend::Sled(s) => Some(s.opened()),
            _ => None,
        }
    }

    /// Connect to a NATS JetStream cluster (in the background if it is away).
    pub async fn open_nats(
        cfg: &crate::config::NatsConfig,
        retention: std::time::Duration,
        max_body: usize,
    ) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Nats(nats::NatsStore::open(cfg, retention, max_body).await?),
        })
    }

    /// The backend a config asks for.
    pub async fn open(config: &crate::config::Config) -> Result<Store, StoreError> {
        match &config.store.backend {
            crate::config::StoreBackend::Sled => Store::open_sled(&Options::of(config)),
            crate::config::StoreBackend::Nats(n) => {
                Store::open_nats(n, config.store.retention, config.server.max_body).await
            }
        }
    }

    /// Make the configured routes and subscribers known. A subscriber seen for
    /// the first time starts at the tail of its route's log.
    pub async fn register(&self, topology: &Topology) -> Result<(), StoreError> {
        each!(self, s => s.register(topology).await)
    }

    /// At start-up (embedded store): a due time stored by a previous run
    /// further off than now plus its cap (the run's anchored clock was
    /// stepped, or the config's waits were shortened) is brought in to now
    /// plus the cap, and a task poll or media retry written "later than
    /// now" keeps its wait, counted from now; how many moved. The cluster
    /// backend bounds this as it hands work out (`nats/early.rs`).
    pub async fn bring_in_due(&self, caps: DueCaps) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(s) => Ok(s.bring_in_due(caps).await?.moved),
            Backend::Nats(_) => Ok(0),
        }
    }

    /// Store a callback durably, or find the event it duplicates. Returns once
    /// the event is on disk.
    pub async fn append(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.append(event).await,
            // The cluster's append is a large future (~10–20 KB): boxed, so
            // that every ingest request on one host does not carry it.
            Backend::Nats(s) => Box::pin(s.append(event)).await,
        }
    }

    /// The work of one subscriber (its lane owns it).
    pub fn work_source(&self, subscriber: &str) -> Result<WorkSource, StoreError> {
        match &self.backend {
            Backend::Sled(s) => Ok(WorkSource::Sled(s.work_source(subscriber)?)),
            Backend::Nats(s) => Ok(WorkSource::Nats(Box::new(s.work_source(subscriber)?))),
        }
    }

    /// Record an attempt and what follows from it. Returns once applied: the
    /// same work is not handed out again before.
    pub async fn record(&self, ticket: &Ticket, attempt: Option<Attempt>, outcome: Outcome) -> Result<(), StoreError> {
        match (&self.backend, ticket) {
            (Backend::Sled(s), Ticket::Sled(t)) => s.record(t, attempt, outcome).await,
            // Boxed: a large future every delivery on one host would carry.
            (Backend::Nats(s), Ticket::Nats(t)) => Box::pin(s.record(t, attempt, outcome)).await,
            _ => Err(StoreError::Corrupt("work from another backend".into())),
        }
    }

    /// [`record`](Self::record), for work the caller keeps if the record
    /// fails, to record it again (a pull lease put back for the
    /// acknowledgement sent again): in cluster mode its message stays held
    /// (renewed at NATS, offered by no other relay) instead of being let go.
    pub async fn record_kept(
        &self,
        ticket: &Ticket,
        attempt: Option<Attempt>,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        match (&self.backend, ticket) {
            (Backend::Nats(s), Ticket::Nats(t)) => s.record_kept(t, attempt, outcome).await,
            _ => self.record(ticket, attempt, outcome).await,
        }
    }

    /// How long recording an answered attempt ([`Store::record`]) may take
    /// at most, by the store's own patience: one host writes at once (a
    /// local group commit); in cluster mode the result write is tried again
    /// while its bucket has no leader (see [`nats::RECORD_PATIENCE`]). A
    /// reload's handover waits this long for an attempt that got its
    /// answer: cut off earlier, it would be sent again.
    pub fn record_patience(&self) -> std::time::Duration {
        match &self.backend {
            Backend::Sled(_) => std::time::Duration::from_secs(2),
            Backend::Nats(_) => nats::RECORD_PATIENCE,
        }
    }

    /// Right before attempt `number` is sent (see
    /// [`nats::NatsStore::begin_attempt`]); nothing to do on one host.
    pub async fn begin_attempt(&self, ticket: &Ticket, number: u32) -> Result<(), StoreError> {
        match ticket {
            Ticket::Nats(t) => match &self.backend {
                Backend::Nats(s) => Box::pin(s.begin_attempt(t, number)).await,
                Backend::Sled(_) => Err(StoreError::Corrupt("work from another backend".into())),
            },
            _ => Ok(()),
        }
    }

    pub async fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.event(id)).await,
            Backend::Nats(s) => Box::pin(s.event(id)).await,
        }
    }

    /// One event with the state of each of its deliveries.
    pub async fn event_view(&self, id: EventId) -> Result<Option<EventView>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.event_view(id)).await,
            // Boxed: ingest awaits it on `verify = "fetch"` routes.
            Backend::Nats(s) => Box::pin(s.event_view(id)).await,
        }
    }

    /// The id of the event stored under dedupe key `hash` on `route`.
    pub async fn event_by_dedupe(&self, route: &str, hash: [u8; 32]) -> Result<Option<EventId>, StoreError> {
        let route = route.to_string();
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.event_by_dedupe(&route, &hash)).await,
            Backend::Nats(s) => Box::pin(s.event_by_dedupe(&route, hash)).await,
        }
    }

    /// Newest events first.
    pub async fn recent_events(&self, q: EventQuery) -> Result<EventPage, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.recent_events(&q)).await,
            Backend::Nats(s) => s.recent_events(q).await,
        }
    }

    /// The newest `limit` dead letters (all subscribers', or one's), and how many there are.
    pub async fn dead_letters(&self, subscriber: Option<String>, limit: usize) -> Result<DeadLetterPage, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.dead_letters(subscriber.as_deref(), limit)).await,
            Backend::Nats(s) => s.dead_letters(subscriber, limit).await,
        }
    }

    /// Deliver an event again (to all its subscribers, or one). None: no
    /// such event. Each delivery it queues is released (a callback held as
    /// unverified is sent: [`result::ResultRow::released`]), unlike one
    /// [`Self::replay_dead_letters`] queues.
    pub async fn replay_event(&self, id: EventId, only: Option<String>) -> Result<Option<Vec<Replayed>>, StoreError> {
        each!(self, s => s.replay_event(id, only, false).await)
    }

    /// [`Self::replay_event`] for one subscriber, queued only if that
    /// delivery is a dead letter when the replay is written (the check and
    /// the replay are one step: a replay of all dead letters between them
    /// cannot make it send twice). `queued: false` when it was not dead.
    pub async fn replay_dead_delivery(&self, id: EventId, sub: String) -> Result<Option<Vec<Replayed>>, StoreError> {
        each!(self, s => s.replay_event(id, Some(sub), true).await)
    }

    /// Re-queue dead letters (all, or one subscriber's); how many per
    /// subscriber. `checked`: the routes that verify now (`verify =
    /// "fetch"`); on others, a letter verification wrote stays dead
    /// ([`DeadReplay::verdicts_left`]): queued, no check would hold it again.
    pub async fn replay_dead_letters(
        &self,
        only: Option<String>,
        checked: std::collections::BTreeSet<String>,
    ) -> Result<DeadReplay, StoreError> {
        each!(self, s => s.replay_dead_letters(only, checked).await)
    }

    /// Backlog, oldest pending age and dead letters of every subscriber the store
    /// knows (configured or not); one host: a subscriber moved to another
    /// route with work still pending on its old one has an entry for each.
    pub async fn subscriber_stats(&self) -> Result<Vec<SubscriberStats>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(|s| s.subscriber_stats(true)).await,
            Backend::Nats(s) => s.subscriber_stats(true).await,
        }
    }

    /// Remove what retention allows: events received before `cutoff_ms` whose
    /// deliveries are all finished (dead letters: died before `cutoff_ms`).
    /// Works in bounded steps; returns how many events were removed.
    pub async fn sweep(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        each!(self, s => s.sweep(cutoff_ms).await)
    }

    /// Whether the store is in a state to take events (sled: always; NATS:
    /// reachable and set up). The app keeps readiness in step with it.
    pub fn needs_health_checks(&self) -> bool {
        matches!(self.backend, Backend::Nats(_))
    }

    /// Whether other relays share this store (cluster mode).
    pub fn is_clustered(&self) -> bool {
        matches!(self.backend, Backend::Nats(_))
    }

    /// Ask the other relays of the cluster on `topic`, handing each answer
    /// to `answer` as it comes until it returns true (heard enough) or
    /// `wait` is over (on a single host nobody answers: returns at once).
    pub async fn ask_peers(
        &self,
        topic: &str,
        body: bytes::Bytes,
        wait: std::time::Duration,
        answer: &mut (dyn FnMut(bytes::Bytes) -> bool + Send),
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Nats(s) => s.ask_peers(topic, body, wait, answer).await,
        }
    }

    /// What the other relays ask on `topic` (None on a single host).
    pub fn peer_inbox(&self, topic: &str) -> Option<PeerInbox> {
        match &self.backend {
            Backend::Sled(_) => None,
            Backend::Nats(s) => Some(s.peer_inbox(topic)),
        }
    }

    /// Write and flush a probe: the store can persist.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        each!(self, s => s.check_writable().await)
    }

    /// Why the relay has no room for callbacks on the embedded store's disk
    /// (below `store.min_free`), if it has none. `lacking`: it had none at
    /// the last look; then room is back only with a margin above the floor
    /// ([`sled::SledStore::low_space`]), so that a disk hovering at the
    /// floor does not flip readiness (and log it) at every look.
    pub fn low_space(&self, lacking: bool) -> Option<String> {
        match &self.backend {
            Backend::Sled(s) => s.low_space(lacking),
            Backend::Nats(_) => None,
        }
    }

    /// At start: an embedded store whose files are damaged where the lanes
    /// of the configured subscribers read first is refused.
    pub async fn check_first_reads(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.check_first_reads().await,
            Backend::Nats(_) => Ok(()),
        }
    }

    /// Fail an embedded store whose files were removed or replaced while it
    /// ran (looked at every second).
    pub fn check_files(&self) {
        if let Backend::Sled(s) = &self.backend {
            s.check_files();
        }
    }

    /// A write failed: the store refuses everything until a restart.
    pub fn has_failed(&self) -> bool {
        match &self.backend {
            Backend::Sled(s) => s.has_failed(),
            // A NATS client recovers by itself: nothing sticky to restart for.
            Backend::Nats(_) => false,
        }
    }

    /// (writes, batches applied) since start. Writes: rows on one host;
    /// in cluster mode the messages JetStream stored for this relay
    /// (events, results, replays, dead letters, media and task rows and
    /// work; no batches: 0).
    pub fn write_counts(&self) -> (u64, u64) {
        match &self.backend {
            Backend::Sled(s) => (s.rows_written(), s.batches()),
            Backend::Nats(s) => (s.writes(), 0),
        }
    }

    /// Store writes not finished yet ([`sled::SledStore::writes_pending`]).
    /// Cluster mode does not count them: 0.
    pub fn writes_pending(&self) -> usize {
        match &self.backend {
            Backend::Sled(s) => s.writes_pending(),
            Backend::Nats(_) => 0,
        }
    }

    /// What the store holds: on one host its size on disk; in cluster mode
    /// the messages and bytes of the cluster's hookrelay streams and buckets
    /// in JetStream (one copy). An error when NATS cannot be read now.
    pub async fn size(&self) -> Result<StoreSize, StoreError> {
        match &self.backend {
            Backend::Sled(s) => Ok(StoreSize {
                bytes: s.size_on_disk(),
                messages: None,
            }),
            Backend::Nats(s) => s.size().await.map(|(messages, bytes)| StoreSize {
                bytes,
                messages: Some(messages),
            }),
        }
    }

    /// Which engine holds the data, and where (a directory, a server): for
    /// the status API.
    pub fn describe(&self) -> (&'static str, String) {
        match &self.backend {
            // Absolute (`SledStore::open`): a config read as `-c config.toml`
            // names it relative to where the daemon started.
            Backend::Sled(s) => ("sled", s.path().display().to_string()),
            Backend::Nats(s) => ("nats", s.describe()),
        }
    }

    /// Commit what is queued, stop the writer and flush.
    pub async fn close(&self) {
        each!(self, s => s.close().await)
    }
}
