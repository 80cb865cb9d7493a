//! The messages the sled writer ([`super::group_commit`]) takes, and the
//! handles they carry: a piece of work's ticket and where it came from, an
//! attempt's result to record. Each reply is a oneshot answered once the
//! message's batch is written (or at once for a cursor move, which has none).

use tokio::sync::oneshot;

use super::media::MediaRecord;
use super::media_sweep::MediaSweepStep;
use crate::store::{Accepted, Attempt, EventId, NewEvent, Outcome, Replayed, StoreError, Topology};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
/// A queued event and whom to answer.
pub(super) type Append = (Box<crate::store::NewEvent>, Reply<crate::store::Accepted>);

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
    /// The step of its retry schedule read with it (0 for work not read
    /// from a result): a replay that finds the delivery due resets the step
    /// and marks it, and work read with a step before that is applied the
    /// replay when it fails (work read after it is the replay's own).
    pub(super) read_step: u32,
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
    /// The media work of a callback verified after it was stored.
    VerifiedMedia(Box<super::media::VerifiedMedia>, Reply<()>),
    /// A lane's cursor moved (it never moves back); no answer.
    Cursor {
        route: u32,
        sub: u32,
        at: EventId,
        seq: u64,
    },
    Register(Topology, Reply<()>),
    /// Replay one event (the writer takes the time as it applies it).
    Replay {
        id: EventId,
        only: Option<String>,
        /// Only a delivery dead as the writer applies it (`only=dead`).
        dead_only: bool,
        reply: Reply<Option<Vec<Replayed>>>,
    },
    /// An operator's retry of an event's failed media URLs ([`super::media`]).
    RetryMedia {
        id: EventId,
        reply: Reply<Option<usize>>,
    },
    /// Re-queue up to a chunk of dead letters from `at` (None: start a
    /// replay); answers the counts and where the next step goes on, if any.
    ReplayDead {
        only: Option<String>,
        /// The routes that verify now (their verdict letters are re-queued).
        checked: std::sync::Arc<std::collections::BTreeSet<String>>,
        at: Option<super::replay::DeadRange>,
        reply: Reply<(crate::store::DeadReplay, Option<super::replay::DeadRange>)>,
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
    /// Media retention settled these released files ([`super::media_sweep`]).
    MediaReleased {
        digests: Vec<[u8; 32]>,
        reply: Reply<()>,
    },
    /// Register a task or record a poll ([`super::tasks`]); batched like `Record`.
    Task(Box<super::tasks::TaskOp>, Reply<Option<crate::store::Task>>),
    /// One bounded task-retention step from `from`: (removed, where to go on).
    TaskSweep {
        cutoff_ms: u64,
        from: Option<Vec<u8>>,
        reply: Reply<(usize, Option<Vec<u8>>)>,
    },
    /// One bounded step giving a route's unscheduled open tasks their
    /// first poll ([`super::tasks`]): (scheduled, where to go on).
    TaskSchedule {
        route: String,
        after_ms: u64,
        now_ms: u64,
        from: Option<Vec<u8>>,
        reply: Reply<(usize, Option<Vec<u8>>)>,
    },
    /// At start-up: due rows further off than each subscriber's cap
    /// brought in ([`super::due_cap`]); how many.
    BringInDue {
        caps: crate::store::DueCaps,
        now_ms: u64,
        reply: Reply<super::BroughtIn>,
    },
    Probe(Reply<()>),
    Stop,
}
