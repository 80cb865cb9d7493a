//! The values that cross the store seam, whatever the backend.

use std::net::IpAddr;

use super::EventId;
use bytes::Bytes;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// POSTed by the provider.
    #[default]
    Callback,
    /// Recovered by polling the provider's status endpoint.
    Poll,
}

/// Everything kept about an event except its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub route: String,
    pub received_ms: u64,
    /// The client address as ingest determined it; None when unknown (a
    /// trusted proxy sent an unparsable `X-Forwarded-For`).
    pub source: Option<IpAddr>,
    pub content_type: Option<String>,
    /// The request headers worth keeping (never credentials).
    pub headers: Vec<(String, String)>,
    /// The subscribers the event was fanned out to at ingest.
    pub subscribers: Vec<String>,
    /// The dedupe key fell back to the body hash because a pointer was missing.
    pub dedupe_fallback: bool,
    pub origin: Origin,
}

/// A callback to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub meta: EventMeta,
    pub dedupe_hash: [u8; 32],
    pub body: Bytes,
    /// The media URLs the route's pointers found in the body: their archive
    /// work is written with the event, in the same atomic write.
    pub media: Vec<String>,
    /// A callback not yet known to be genuine (`verify = "fetch"`): `media`
    /// stays with the event (the order `after_archive` shows it in) but its
    /// archive work is written only once the callback is verified
    /// ([`super::Store::add_verified_media`]), so a forged one makes the
    /// relay download nothing.
    pub media_after_verify: bool,
    /// The route's task id in the body (routes with a preset): settles the
    /// expected task, if one is registered, in the same atomic write.
    pub task: Option<super::TaskMark>,
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub meta: EventMeta,
    pub body: Bytes,
}

/// What ingest gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub id: EventId,
    pub duplicate: bool,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    /// 1 for the first try.
    pub attempt: u32,
    pub at_ms: u64,
    pub duration_ms: u64,
    /// The subscriber's status, when it answered (for a pull subscriber's
    /// hand-back: the private service's, as its forwarder said).
    pub status: Option<u16>,
    /// Why there is no status (connection error, timeout), or a pull
    /// client's hand-back or lease that ran out (with or without a status).
    /// Neither status nor error: a pull client acknowledged it.
    pub error: Option<String>,
}

/// Where one event's delivery to one subscriber stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not attempted yet, or being attempted.
    Pending,
    /// Waiting for its next attempt.
    Retrying {
        due_ms: u64,
    },
    /// An `after_archive` delivery waiting for the event's media (no attempt
    /// made, none counted); looked at again at `due_ms` at the latest.
    AwaitingMedia {
        due_ms: u64,
    },
    Delivered,
    /// Gave up (schedule exhausted or `410`); replayable.
    Dead,
    /// The subscriber's filter did not match.
    Skipped,
}

impl DeliveryState {
    pub fn name(&self) -> &'static str {
        match self {
            DeliveryState::Pending | DeliveryState::Retrying { .. } | DeliveryState::AwaitingMedia { .. } => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Skipped => "skipped",
        }
    }
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            DeliveryState::Delivered | DeliveryState::Dead | DeliveryState::Skipped
        )
    }
}

/// How an attempt ended, as far as the store is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time. Recorded with an attempt, it moves one step
    /// along the subscriber's retry schedule; without one (a callback waiting
    /// for its verification at the provider) it keeps its step.
    Retry {
        due_ms: u64,
    },
    Dead {
        error: String,
    },
    Skipped,
    /// The event no longer exists (retention removed it): forget the work.
    Gone,
    /// Not attempted: an `after_archive` delivery whose media is not all
    /// archived yet. Parked without counting an attempt or a step of the
    /// schedule; due again when the event's media is done, or at `due_ms`
    /// at the latest.
    Defer {
        due_ms: u64,
    },
}

/// A delivery's state with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subscriber: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// Position in the retry schedule (failures since the last replay).
    pub step: u32,
    /// When the state was set (ms).
    pub at_ms: u64,
    /// The most recent attempts, oldest first.
    pub history: Vec<Attempt>,
    pub last_error: Option<String>,
    /// Held as `unverified` once, and why (see [`super::result::ResultRow::held`]).
    pub held: Option<String>,
    /// Its count of attempts is of hand-outs none of which is known to have
    /// begun one (see [`super::result::ResultRow::handed_out`]).
    pub handed_out: bool,
    /// Its stored result could not be read (a torn row): state and history
    /// are unknown, shown as not attempted with an error saying so.
    pub unreadable: bool,
}

/// An event with the state of each delivery.
#[derive(Debug, Clone)]
pub struct EventView {
    pub event: Event,
    pub deliveries: Vec<Delivery>,
}

impl EventView {
    /// One word for the event as a whole: dead, pending or delivered; or
    /// undelivered when it was stored for no subscriber at all — only events
    /// stored by older versions (a request whose route's subscribers a
    /// reload ended while it was received): the store now refuses such an
    /// event ([`StoreError::RouteChanged`]).
    pub fn status(&self) -> &'static str {
        let names: Vec<&str> = self.deliveries.iter().map(|d| d.state.name()).collect();
        if names.is_empty() {
            "undelivered"
        } else if names.contains(&"dead") {
            "dead"
        } else if names.contains(&"pending") {
            "pending"
        } else {
            "delivered"
        }
    }
}

/// A filter for [`super::Store::recent_events`].
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub route: Option<String>,
    /// Only events whose overall status is this (pending, delivered, dead).
    pub status: Option<String>,
    /// Only events older than this one.
    pub before: Option<EventId>,
    /// Only events this predicate accepts (the console's task id search);
    /// applied while scanning, so `limit` counts events that match.
    pub matching: Option<EventFilter>,
    /// The task id of an event, taken from its body while the scan has it
    /// (listed events keep no body): [`ListedEvent::task_id`].
    pub task_of: Option<TaskOf>,
    pub limit: usize,
}

/// An event as a listing holds it: its view without what the list does not
/// show, so a page's memory does not grow with the bodies (each up to
/// `server.max_body`, a page up to 10 000 events). Left out: the body (its
/// size and task id are taken while the scan has it, one event at a time),
/// the request headers and each delivery's attempt history and last error.
/// One event in full is [`super::Store::event_view`].
#[derive(Debug, Clone)]
pub struct ListedEvent {
    /// The event's view; its body and headers are empty, and its deliveries'
    /// histories and last errors.
    pub view: EventView,
    /// The body's length in bytes.
    pub size: usize,
    /// The task id [`EventQuery::task_of`] found in the body.
    pub task_id: Option<String>,
}

impl ListedEvent {
    /// `view` as listed by `q`: what the list shows of the body taken, the
    /// rest dropped.
    pub fn of(mut view: EventView, q: &EventQuery) -> ListedEvent {
        let size = view.event.body.len();
        let task_id = q.task_of.as_ref().and_then(|f| (f.0)(&view.event));
        view.event.body = Bytes::new();
        view.event.meta.headers = Vec::new();
        for d in &mut view.deliveries {
            d.history = Vec::new();
            d.last_error = None;
        }
        ListedEvent { view, size, task_id }
    }
}

/// What [`super::Store::recent_events`] found: newest first, and where a
/// bounded scan stopped (cluster mode looks at 10 000 messages of a route
/// at most).
#[derive(Debug, Default)]
pub struct EventPage {
    pub events: Vec<ListedEvent>,
    /// Set when a route's scan stopped before its oldest message: `events`
    /// holds only events at or newer than this id, and older ones, not
    /// looked at, may match (list them with `before` = this id).
    pub cut_at: Option<EventId>,
}

/// A predicate on stored events for [`EventQuery::matching`].
#[derive(Clone)]
pub struct EventFilter(pub std::sync::Arc<dyn Fn(&Event) -> bool + Send + Sync>);

impl std::fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventFilter(..)")
    }
}

/// What [`TaskOf`] calls: an event's task id, if its body has one.
pub type TaskOfFn = dyn Fn(&Event) -> Option<String> + Send + Sync;

/// An event's task id, for [`EventQuery::task_of`].
#[derive(Clone)]
pub struct TaskOf(pub std::sync::Arc<TaskOfFn>);

impl std::fmt::Debug for TaskOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskOf(..)")
    }
}

/// A delivery that gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub event: EventId,
    pub subscriber: String,
    pub at_ms: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl DeadLetter {
    /// The order dead letters are listed in, by both backends: newest event
    /// first, then by subscriber.
    pub fn newest_first(a: &Self, b: &Self) -> std::cmp::Ordering {
        b.event.cmp(&a.event).then_with(|| a.subscriber.cmp(&b.subscriber))
    }
}

/// Dead letters newest first, up to a limit, and how many there are in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterPage {
    pub letters: Vec<DeadLetter>,
    pub total: u64,
}

/// What a replay did for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub subscriber: String,
    /// False when the delivery was still pending: nothing to do.
    pub queued: bool,
}

/// What a replay of dead letters did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeadReplay {
    /// Re-queued, per subscriber.
    pub requeued: std::collections::BTreeMap<String, usize>,
    /// Left dead: letters `verify = "fetch"` wrote (its verdicts,
    /// [`super::result::verdict_letter`]) on a route that no longer verifies,
    /// where no check would hold them again: only a replay of the event
    /// itself sends one.
    pub verdicts_left: usize,
}

/// A subscriber as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStats {
    pub name: String,
    /// The route these deliveries are of (`None` when only its dead letters
    /// are left). A subscriber moved to another route with work still
    /// pending on its old one has a row for each route.
    pub route: Option<String>,
    /// Pending deliveries (fresh events not yet read + waiting retries).
    pub backlog: u64,
    /// Receipt time of the oldest pending event.
    pub oldest_pending_ms: Option<u64>,
    pub dead_letters: u64,
}

/// One piece of delivery work.
#[derive(Debug, Clone)]
pub struct Work {
    pub event: Event,
    /// Position in the retry schedule (failures since the last replay).
    pub step: u32,
    /// Attempts made so far (the next one is `attempts + 1`).
    pub attempts: u32,
    /// An operator's replay of the event released it for this subscriber
    /// ([`super::result::ResultRow::released`]): read with the work, from
    /// its result.
    pub released: bool,
    pub ticket: Ticket,
}

/// The backend's handle on a piece of work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ticket {
    Sled(super::sled::SledTicket),
    Nats(super::nats::NatsTicket),
}

impl Ticket {
    /// Which round of delivery the work is, where the store can tell: in
    /// cluster mode the delivery's replay round read with it on the
    /// bucket's leader (the same on every hand-out of the delivery,
    /// whichever relay and whichever message hands it out; one more for
    /// each replay of a finished delivery). None on the embedded store.
    pub fn round(&self) -> Option<u32> {
        match self {
            Ticket::Sled(_) => None,
            Ticket::Nats(t) => Some(t.round()),
        }
    }
}

/// Why an embedded store that failed a write refuses everything until a
/// restart (sled cannot recover in-process).
pub const FAILED_WRITE: &str =
    "the store failed a write earlier, or found its files damaged (see the log); restart hookrelay";

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Engine(String),
    #[error("store writer is not running")]
    WriterGone,
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The embedded store's files are damaged (sled read data that fails its
    /// checks): what it holds cannot all be read; the store is failed.
    #[error("the store's files are damaged ({0}); restore it from a backup, or move it aside to start empty")]
    Damaged(String),
    #[error("store cannot persist: {0}")]
    Unavailable(String),
    /// The store cannot be used by this build with these settings, and no
    /// restart changes that (another version's or program's data, a
    /// compression switch, cluster settings that differ): the start exits 2.
    #[error("{0}")]
    Incompatible(String),
    /// Another process holds the embedded store's lock: a start may succeed
    /// once it lets go (exit 1, restarted).
    #[error("{0}")]
    InUse(String),
    /// The embedded store's directory or a file sled writes cannot be
    /// written by the relay's user (a restore made as root): no restart
    /// mends it (exit 2).
    #[error("{0}")]
    Unwritable(String),
    #[error("unknown subscriber {0:?}")]
    UnknownSubscriber(String),
    /// The event is larger than the store takes (NATS `max_payload`): the
    /// largest body it takes.
    #[error("the store takes at most {0} bytes per event")]
    TooLarge(usize),
    /// A reload since the event's request read its config left none of the
    /// event's subscribers on its route (renamed, removed, all replaced):
    /// stored, it would be nobody's. Judged against the topology the store
    /// holds, when it appends (ingest answers 503 for a retry).
    #[error("a reload left none of the event's subscribers on route {0:?}")]
    RouteChanged(String),
    /// The embedded store's disk has no room for this event above
    /// `store.min_free` (it is under the floor, or the event would take it
    /// there: each event of a batch spends its share of the room above it).
    /// The store is sound: ingest answers 503 for the provider's retry, and
    /// readiness follows the floor (the space watcher). Why.
    #[error("{0}")]
    NoRoom(String),
}

/// A request another relay of the cluster made (see [`Store::ask_peers`]).
///
/// [`Store::ask_peers`]: super::Store::ask_peers
pub struct PeerRequest {
    pub body: bytes::Bytes,
    /// Send Some to answer, None (or drop) to stay silent.
    pub answer: tokio::sync::oneshot::Sender<Option<bytes::Bytes>>,
}

/// The requests other relays make on one topic; stops listening when dropped.
pub struct PeerInbox {
    pub rx: tokio::sync::mpsc::Receiver<PeerRequest>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Drop for PeerInbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the store holds ([`Store::size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSize {
    /// sled: on disk; NATS: stream bytes in JetStream, one copy.
    pub bytes: u64,
    /// NATS only: messages in the streams and buckets.
    pub messages: Option<u64>,
}

/// Routes and the subscribers of each, as configured (names only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub routes: Vec<(String, Vec<String>)>,
}

impl Topology {
    /// Routes and their subscribers, by name, as a config names them.
    pub fn of(config: &crate::config::Config) -> Topology {
        Topology {
            routes: config
                .routes
                .iter()
                .map(|r| (r.name.clone(), r.subscribers.iter().map(|s| s.name.clone()).collect()))
                .collect(),
        }
    }
}
