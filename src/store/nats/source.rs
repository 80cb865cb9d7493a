//! A subscriber's work in cluster mode: its durable pull consumer, shared by
//! the lanes of every relay (the consumer never hands one message to two of
//! them while it is unacknowledged). Fresh events and replays come as
//! messages; a retry is the same message, NAKed with its delay. A cursor
//! takes from NATS only as much as its lane asks for (free attempt slots,
//! waiting pullers); the pulling and the holding of messages are
//! [`super::follow`]'s, and a lane confirms a message is still this relay's
//! ([`NatsCursor::confirm`]) right before it sends it.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::Acker;

use async_nats::jetstream::AckKind;
use tokio::sync::Notify;

use super::early::early_at;
use super::follow::{Follow, Follower, Held, Received};
use super::result_write::Write;
use super::{event, layout, Shared};
use crate::store::result::ResultRow;
use crate::store::{DeliveryState, StoreError, Ticket, Work};

/// The NATS backend's handle on one piece of work.
#[derive(Clone)]
pub struct NatsTicket {
    pub(super) route: String,
    pub(super) sub: String,
    /// The event's sequence in its route's stream.
    pub(super) event_seq: u64,
    /// The sequence of the message handed out (the event's, or a replay's).
    pub(super) message_seq: u64,
    /// Settles the message (any relay could, with its reply subject).
    pub(super) acker: Arc<Acker>,
    /// The delivery's result as this relay last read (with the work: none
    /// for a fresh event's first delivery) or wrote it, and its revision in
    /// the bucket (0: none). Results are written only over it.
    pub(super) known: Arc<Mutex<(Option<ResultRow>, u64)>>,
    /// The lane's held messages: a record that failed lets go of this one,
    /// so that it comes again after `takeover`.
    pub(super) held: Held,
    /// Attempts made before this hand-out (from the result, or NATS's count
    /// of hand-outs when there is none): what work given back unsent keeps.
    pub(super) attempts_before: u32,
    /// The step of its retry schedule read with it: a replay's mark, which
    /// restarts the step, is applied to the failure of work read before it
    /// (`Shared::write_outcome`), also once `begin_attempt` took the mark in.
    pub(super) read_step: u32,
    /// Its replay round read with it ([`ResultRow::replays`]): what a pull
    /// offer names as its `round`.
    pub(super) read_round: u32,
}

impl NatsTicket {
    /// The delivery's replay round, as read with the work (on the bucket's
    /// leader; 0 for a fresh event's first delivery, which has none).
    pub fn round(&self) -> u32 {
        self.read_round
    }

    /// The result as last read or written here, and its revision.
    pub(super) fn known(&self) -> (Option<ResultRow>, u64) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This relay wrote the result: `row` at `revision` now.
    pub(super) fn wrote(&self, row: ResultRow, revision: u64) {
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = (Some(row), revision);
    }

    /// Stop renewing the message: NATS hands it out again after `takeover`.
    pub(super) fn let_go(&self) {
        super::follow::release(&self.held, self.message_seq);
    }
}

impl std::fmt::Debug for NatsTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NatsTicket({}.{}.{})", self.route, self.message_seq, self.sub)
    }
}
impl PartialEq for NatsTicket {
    fn eq(&self, o: &Self) -> bool {
        (self.message_seq, &self.sub, &self.route) == (o.message_seq, &o.sub, &o.route)
    }
}
impl Eq for NatsTicket {}
impl Hash for NatsTicket {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.message_seq, &self.sub, &self.route).hash(h)
    }
}

/// How long a replay whose event could not be read waits before it comes
/// again: the first time; doubled with each hand-out, up to [`REREAD_MAX`].
const REREAD: Duration = Duration::from_secs(1);
/// The longest wait between two reads of a replay's event.
const REREAD_MAX: Duration = Duration::from_secs(30);

/// The wait before the `delivered`-th hand-out of a message whose event or
/// result could not be read comes again: a long outage (a leader election, degraded
/// replicas) costs each queued replay a read every 30 s, not every second.
fn reread_delay(delivered: u32) -> Duration {
    REREAD
        .saturating_mul(1u32 << delivered.saturating_sub(1).min(5))
        .min(REREAD_MAX)
}

/// How long work dropped unsent waits for its empty result to be written
/// before it is only let go (the handover waits for it).
const GIVE_BACK_PATIENCE: Duration = Duration::from_secs(2);

pub struct NatsCursor {
    shared: Arc<Shared>,
    route: String,
    sub: String,
    /// The consumer's messages, taken as the lane asks and held while this
    /// relay works on them (a lease, a rate limit) so they do not go to
    /// another relay.
    follower: Follower,
}

impl NatsCursor {
    pub(super) fn open(shared: Arc<Shared>, route: String, sub: String) -> NatsCursor {
        let follow = Follow::Subscriber {
            route: route.clone(),
            sub: sub.clone(),
        };
        NatsCursor {
            follower: Follower::on_demand(shared.clone(), follow, Arc::default()),
            shared,
            route,
            sub,
        }
    }

    pub fn signal(&self) -> Arc<Notify> {
        self.follower.signal.clone()
    }

    /// The consumer's backlog; `u64::MAX` (the lanes' "unknown") while
    /// NATS has not confirmed it for a while (away, or every node frozen).
    pub fn depth(&self) -> u64 {
        self.follower.depth_known().unwrap_or(u64::MAX)
    }

    /// Up to `max` messages that arrived; the rest of `max` is asked of
    /// NATS (and wakes the lane when it comes). What the lane asked for
    /// before and no longer wants goes back to NATS.
    pub async fn take(&mut self, max: usize, _now_ms: u64) -> Result<Vec<Work>, StoreError> {
        let mut out = Vec::new();
        let mut failed = None;
        while out.len() < max {
            let Some(r) = self.follower.next() else { break };
            let seq = r.seq;
            match self.work(r).await {
                Ok(Some(w)) => out.push(w),
                Ok(None) => {}
                Err(e) => {
                    // It comes again after `takeover`.
                    self.release(seq);
                    failed = Some(e);
                    break;
                }
            }
        }
        self.follower.want(max - out.len());
        match failed {
            // Work already taken is held: hand it out, the error comes next time.
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// The lane wants nothing now (no puller waits): ask NATS for nothing,
    /// and give back what came.
    pub fn want_none(&mut self) {
        self.follower.want(0);
    }

    /// The lane can start nothing now: ask NATS for nothing, and give back
    /// at once everything that came (another relay may start it now).
    pub fn give_back_all(&mut self) {
        self.follower.want_nothing_now();
    }

    /// Whether the work may be sent now: this relay still holds its message
    /// (NATS has not handed it to another relay meanwhile) and NATS confirms
    /// it, so the result can be recorded. Otherwise it is let go, not sent.
    pub async fn confirm(&mut self, ticket: &NatsTicket) -> bool {
        let ok = super::hold::confirm(&self.follower.held, ticket.message_seq, self.follower.takeover.get()).await;
        if !ok {
            tracing::debug!(subscriber = %self.sub, message = ticket.message_seq, "not sent: no longer held, or NATS did not confirm it");
            self.release(ticket.message_seq);
        }
        ok
    }

    fn release(&self, seq: u64) {
        self.follower.release(seq);
    }

    /// A message as work, or None when there is nothing to send (then it is
    /// settled here): not for this subscriber, its event gone, or already
    /// settled by a relay whose acknowledgement was lost.
    async fn work(&self, r: Received) -> Result<Option<Work>, StoreError> {
        let Received {
            message: msg,
            acker,
            seq: message_seq,
            delivered,
            rewound,
        } = r;
        let stream = self.shared.stream(&self.route)?;
        let replay = layout::is_replay(msg.subject.as_str());
        let (event, event_seq) = if replay {
            // A replay: the payload names the event.
            let seq: u64 = std::str::from_utf8(&msg.payload)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let read = match seq {
                0 => Ok(None),
                _ => super::event_read::event_message(&stream, seq).await,
            };
            match read {
                Ok(Some(e)) => (
                    event::decode(&self.route, seq, layout::millis(e.time), &e.headers, e.payload),
                    seq,
                ),
                // Its event is gone (expired, or the payload names none):
                // nothing to send, ever.
                Ok(None) => {
                    self.release(message_seq);
                    let _ = acker.ack_with(AckKind::Term).await;
                    return Ok(None);
                }
                // Not read now (no replica answers direct gets for a
                // moment: a leader change, a node restarting; a timeout;
                // the connection): the replay comes again, unsent.
                Err(e) => {
                    tracing::debug!(subscriber = %self.sub, event_seq = seq, error = %e,
                        "a replay's event could not be read: handed back");
                    self.release(message_seq);
                    let _ = acker.ack_with(AckKind::Nak(Some(reread_delay(delivered)))).await;
                    return Ok(None);
                }
            }
        } else {
            let headers = msg.headers.clone().unwrap_or_default();
            if !event::subscribers(&headers).contains(&self.sub) {
                // Not fanned out to this subscriber (it joined later, or left).
                self.release(message_seq);
                let _ = acker.ack_with(AckKind::Ack).await;
                return Ok(None);
            }
            let stored = event::time_ms(&headers).unwrap_or_else(crate::clock::now_ms);
            (
                event::decode(&self.route, message_seq, stored, &headers, msg.payload.clone()),
                message_seq,
            )
        };
        // A fresh event's first delivery: nothing to read. Otherwise the
        // attempts so far, and the step of the retry schedule, are in its
        // result (not NATS's delivered count, which also counts messages
        // given back unsent: a lane's circuit opening, a media wait, a
        // forwarder gone).
        let (row, revision) = if delivered == 1 && !replay && !rewound {
            (None, 0)
        } else {
            let key = layout::result_key(&self.route, event_seq, &self.sub);
            // Read on the bucket's leader, which holds every write its quorum
            // acknowledged; a direct get may come from a replica that has not
            // applied the latest ones. There a replay read the delivery's old
            // final result and was acknowledged unsent (about 1 in 100 at
            // three relays and three nodes: cluster soak, stop 68); a message
            // that comes again (a retry, a relay gone before acknowledging)
            // could read a delivery another relay finished as still due, and
            // one read "not found" stalled retries for seconds
            // (`nats_replica_lag`). Fresh events' first deliveries read
            // nothing.
            let read = match self.shared.result_on_leader(&key).await {
                Ok(read) => read,
                // A row that cannot be read is the lane's error, as before.
                Err(e @ StoreError::Corrupt(_)) => return Err(e),
                // Handed back, and the lane told (its error line, its pause
                // before the next take): the messages after this one are not
                // read in this take, each waiting for an answer that does
                // not come. A replay comes again ever later (up to 30 s) as
                // when its event cannot be read; other messages after 1 s,
                // whatever their count of hand-outs.
                Err(e) => {
                    self.release(message_seq);
                    let delay = if replay { reread_delay(delivered) } else { REREAD };
                    let _ = acker.ack_with(AckKind::Nak(Some(delay))).await;
                    return Err(e);
                }
            };
            match read {
                Some((r, revision)) => (Some(r), revision),
                None => (None, 0),
            }
        };
        // Settled before, and the acknowledgement did not arrive. A replay
        // too: queuing one marks the delivery due again before its message
        // is published, so a final result here (read on the leader) is this
        // replay's own.
        let settle = match row.as_ref().map(|r| &r.state) {
            Some(DeliveryState::Delivered | DeliveryState::Skipped) => Some(AckKind::Ack),
            Some(DeliveryState::Dead) => Some(AckKind::Term),
            _ => None,
        };
        if let (Some(AckKind::Term), Some(row)) = (settle, row.as_ref()) {
            // Its dead letter may not be stored (the publish failed, the relay
            // died before it): published again (idempotent) before the
            // message is terminated; else the message comes again.
            let delivery = (self.route.as_str(), event_seq, self.sub.as_str());
            if let Err(e) = self
                .shared
                .publish_dead_letter(delivery, row, revision, Duration::ZERO)
                .await
            {
                tracing::warn!(subscriber = %self.sub, event_seq, error = %e,
                    "a dead delivery's letter could not be published; it is tried again after `takeover`");
                self.release(message_seq);
                return Ok(None);
            }
        }
        // The event's own message for a delivery an operator's replay has
        // queued again: the replay's message carries it. Only a finished
        // delivery is replayed, and the message that finished it has nothing
        // left to carry; it comes again when its relay died before
        // acknowledging it (after `takeover`), or from a consumer created
        // again.
        let settle = match row.as_ref() {
            Some(r) if settle.is_none() && !replay && r.replays > 0 => Some(AckKind::Ack),
            _ => settle,
        };
        if let Some(kind) = settle {
            self.release(message_seq);
            let _ = acker.ack_with(kind).await;
            return Ok(None);
        }
        if let Some((delay, rewrite)) = row.as_ref().and_then(|r| early_at(r, crate::clock::now_ms())) {
            // A retry handed out before it is due: back, unsent, for the rest
            // of its delay; the first time its due time is rewritten by this
            // relay's clock (see [`super::early`]). Not written (another
            // relay moved the result, NATS did not answer): handed back all
            // the same, and looked at again next time.
            if let Some(rewrite) = rewrite {
                let key = layout::result_key(&self.route, event_seq, &self.sub);
                if let Err(e) = self.shared.write_result(&key, &rewrite, revision, Duration::ZERO).await {
                    tracing::debug!(subscriber = %self.sub, event_seq, error = %e,
                        "an early retry's due time was not rewritten by this relay's clock");
                }
            }
            tracing::debug!(subscriber = %self.sub, event_seq, delay_ms = delay.as_millis() as u64,
                "a retry came before it is due: handed back until then");
            self.release(message_seq);
            let _ = acker.ack_with(AckKind::Nak(Some(delay))).await;
            return Ok(None);
        }
        let step = row.as_ref().map_or(0, |r| r.step);
        // Without a result, an attempt may still have been made (a relay
        // that died during it): the attempt number counts the deliveries.
        let attempts = row.as_ref().map_or(delivered - 1, |r| r.attempts);
        let released = row.as_ref().is_some_and(|r| r.released);
        let read_round = row.as_ref().map_or(0, |r| r.replays);
        Ok(Some(Work {
            event,
            step,
            attempts,
            released,
            ticket: Ticket::Nats(NatsTicket {
                route: self.route.clone(),
                sub: self.sub.clone(),
                event_seq,
                message_seq,
                acker,
                known: Arc::new(Mutex::new((row, revision))),
                held: self.follower.held.clone(),
                attempts_before: attempts,
                read_step: step,
                read_round,
            }),
        }))
    }

    /// The message was settled in `record`: stop holding it.
    pub async fn done(&mut self, ticket: &NatsTicket) {
        self.release(ticket.message_seq);
    }

    /// Work dropped before it was sent (a reload's handover): back to NATS
    /// at once, for any relay, its attempt number not spent. A first
    /// delivery is numbered by NATS's count of hand-outs unless it has a
    /// result, so an empty one (no attempt) is written first. If that
    /// cannot be written, or another relay wrote one meanwhile, the message
    /// is only let go: it comes again after `takeover`. Nothing is done for
    /// a message this relay no longer holds (another relay took it over:
    /// handing it out again would send it beside that relay's attempt).
    pub async fn give_back(&mut self, t: &NatsTicket) {
        if !self.confirm(t).await {
            return;
        }
        if t.known().0.is_none() {
            let key = layout::result_key(&t.route, t.event_seq, &t.sub);
            // The hand-outs before this one stay counted (a relay that died
            // during one may have sent it), marked as hand-outs: none is
            // known to have begun an attempt (`ResultRow::handed_out`).
            let row = ResultRow {
                attempts: t.attempts_before,
                handed_out: t.attempts_before > 0,
                ..ResultRow::new(crate::clock::now_ms())
            };
            let written = self.shared.write_result(&key, &row, 0, GIVE_BACK_PATIENCE).await;
            match written {
                Ok(Write::Done(_)) => {}
                // This very row: the answer to an earlier try was lost.
                Ok(Write::Moved(Some((now, _)))) if now == row => {}
                Ok(Write::Moved(_)) | Err(_) => {
                    tracing::debug!(subscriber = %self.sub, message = t.message_seq,
                        "work dropped unsent is let go: its empty result could not be written");
                    self.release(t.message_seq);
                    return;
                }
            }
        }
        self.release(t.message_seq);
        let _ = t.acker.ack_with(AckKind::Nak(None)).await;
    }

    /// Waiting work lives in NATS and the prefetch wakes the lane; a look
    /// every second keeps its depth (counted by another task) current.
    pub fn next_due(&mut self) -> Option<u64> {
        Some(crate::clock::now_ms() + 1000)
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
