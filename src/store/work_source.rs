//! A subscriber's work as its lane sees it, whichever the backend: what is
//! due, what was done, whether work may still be started (cluster mode).

use super::{nats, sled, StoreError, Ticket, Work};

/// One subscriber's view of its work: fresh events from the log and waiting
/// work from the due index, merged by due time. Owned by the lane.
// One per lane, made once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum WorkSource {
    Sled(sled::Cursor),
    Nats(Box<nats::NatsCursor>),
}

impl WorkSource {
    /// Up to `max` pieces of work due at `now_ms`, oldest due first. Never hands
    /// out work that is handed out and not yet [`done`](Self::done).
    pub async fn take(&mut self, max: usize, now_ms: u64) -> Result<Vec<Work>, StoreError> {
        match self {
            WorkSource::Sled(c) => c.take(max, now_ms).await,
            WorkSource::Nats(c) => c.take(max, now_ms).await,
        }
    }

    /// The work behind `ticket` was recorded ([`Store::record`]): let it go.
    pub async fn done(&mut self, ticket: &Ticket) {
        match (self, ticket) {
            (WorkSource::Sled(c), Ticket::Sled(t)) => c.done(t).await,
            (WorkSource::Nats(c), Ticket::Nats(t)) => c.done(t).await,
            _ => {}
        }
    }

    /// The work behind `ticket` was dropped before it was sent (a reload's
    /// handover): in cluster mode its message goes back to NATS at once,
    /// its attempt number not spent. On one host the next cursor reads it
    /// again anyway (it was never done).
    pub async fn give_back(&mut self, ticket: &Ticket) {
        if let (WorkSource::Nats(c), Ticket::Nats(t)) = (self, ticket) {
            c.give_back(t).await;
        }
    }

    /// `ticket`'s work is still leased by a stopped pull lane of the
    /// subscriber (a reload's handover): hold it as handed out, so that it
    /// is not taken (nor the cursor moved past it) until it is
    /// [`settled_elsewhere`](Self::settled_elsewhere). Only the embedded
    /// store's cursor needs it (of this route's work only): in cluster mode
    /// the stopped lane's own cursor keeps holding the message at NATS.
    pub fn adopt(&mut self, ticket: &Ticket) {
        if let (WorkSource::Sled(c), Ticket::Sled(t)) = (self, ticket) {
            c.adopt(t);
        }
    }

    /// Work [`adopt`](Self::adopt)ed was recorded by the stopped pull lane
    /// that leased it: let it go. (In cluster mode that lane's own cursor
    /// lets it go.)
    pub async fn settled_elsewhere(&mut self, ticket: &Ticket) {
        if let (WorkSource::Sled(c), Ticket::Sled(t)) = (self, ticket) {
            c.let_go_adopted(t).await;
        }
    }

    /// What a pull lane stopped by a reload keeps while its leases last: in
    /// cluster mode its cursor (it goes on holding the leased messages at
    /// NATS, and lets each go once recorded); the embedded store's cursor is
    /// dropped (the subscriber's next lane holds the leased work instead,
    /// [`adopt`](Self::adopt), and moves the one stored position).
    pub fn kept_while_leased(self) -> Option<WorkSource> {
        match self {
            WorkSource::Sled(_) => None,
            nats @ WorkSource::Nats(_) => Some(nats),
        }
    }

    /// `ticket` is a second copy of work the lane holds (its earlier hand-out
    /// still being recorded): let the copy go, recording nothing; the work
    /// comes again once due and not held. Nothing to do in cluster mode (the
    /// copy is the same message, held once).
    pub fn ignore(&mut self, ticket: &Ticket) {
        if let (WorkSource::Sled(c), Ticket::Sled(t)) = (self, ticket) {
            c.ignore(t);
        }
    }

    /// Whether the work may be started now. Always for the embedded store; in
    /// cluster mode only while this relay still holds its message and NATS
    /// confirms it (otherwise another relay may have it, or its result could
    /// not be recorded): work that may not is let go, not sent.
    pub async fn confirm(&mut self, ticket: &Ticket) -> bool {
        match (self, ticket) {
            (WorkSource::Nats(c), Ticket::Nats(t)) => c.confirm(t).await,
            _ => true,
        }
    }

    /// The lane wants no work now (a pull lane without waiting pullers):
    /// a cluster cursor stops asking NATS and gives back what came.
    pub fn want_none(&mut self) {
        if let WorkSource::Nats(c) = self {
            c.want_none();
        }
    }

    /// The lane can start nothing now (a push lane whose circuit is not
    /// closed or whose slots are busy): a cluster cursor stops asking NATS
    /// and gives back at once everything that came and was not taken.
    pub fn give_back_all(&mut self) {
        if let WorkSource::Nats(c) = self {
            c.give_back_all();
        }
    }

    /// When the earliest known waiting work becomes due (ms), if any.
    pub fn next_due(&mut self) -> Option<u64> {
        match self {
            WorkSource::Sled(c) => c.next_due(),
            WorkSource::Nats(c) => c.next_due(),
        }
    }

    /// Resolves when new work may have arrived (a new event, a replay).
    pub fn signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        match self {
            WorkSource::Sled(c) => c.signal(),
            WorkSource::Nats(c) => c.signal(),
        }
    }

    /// Whether the backlog is counted apart from the lane (cluster mode:
    /// the consumer's, every second): the lane copies it on a timer, also
    /// while every slot is busy, or a depth NATS no longer confirms would
    /// stand until an attempt ends.
    pub fn counted_apart(&self) -> bool {
        matches!(self, WorkSource::Nats(_))
    }

    /// Pending deliveries, handed out ones included.
    pub fn depth(&self) -> u64 {
        match self {
            WorkSource::Sled(c) => c.depth(),
            WorkSource::Nats(c) => c.depth(),
        }
    }
}
