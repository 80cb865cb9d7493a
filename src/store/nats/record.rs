//! A finished delivery in cluster mode: its result written to the results
//! bucket (confirmed) before the message is settled — acknowledged, NAKed
//! with the retry's delay, or terminated after its dead letter is published.

use std::time::Duration;

use async_nats::jetstream::AckKind;

use super::result_write::{Recorded, Write, RESULT_PATIENCE};
use super::{layout, unavailable, NatsStore, NatsTicket};
use crate::store::result::ResultRow;
use crate::store::{Attempt, DeliveryState, Outcome, StoreError};

/// How soon an `after_archive` delivery waiting for media is looked at again.
const DEFER_RECHECK: Duration = Duration::from_secs(2);

impl NatsStore {
    /// Record the attempt, then settle the message: ack, NAK with the
    /// retry's delay, or (a dead letter written first) terminate it. The
    /// result is written (and confirmed) first: a lost acknowledgement makes
    /// the message come again, and whoever gets it sees the result and only
    /// settles it.
    pub async fn record(&self, t: &NatsTicket, attempt: Option<Attempt>, outcome: Outcome) -> Result<(), StoreError> {
        let result = self.settle(t, attempt, outcome).await;
        if result.is_err() {
            t.let_go();
        }
        result
    }

    /// [`record`](Self::record) for work its caller keeps when the record
    /// fails (a pull lease put back for the acknowledgement sent again): the
    /// message stays held, renewed at NATS, so that no other relay hands it
    /// out meanwhile. Let go once recorded later, or when the relay stops.
    pub async fn record_kept(
        &self,
        t: &NatsTicket,
        attempt: Option<Attempt>,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        self.settle(t, attempt, outcome).await
    }

    /// Before attempt `number` of a delivery that has a result (a retry, a
    /// replay, one taken over): count the attempt in it, so that a relay
    /// taking the delivery over after this one died during the attempt
    /// sends the next number, not this one again. Written only if the
    /// result is still the one read with the work (else another relay wrote
    /// it meanwhile: this copy is not sent, and let go). A first attempt
    /// needs no write: NATS's count of hand-outs numbers it. A message handed
    /// out again with no result (its relay died during the attempt, or could
    /// not write the result) gets one first: while results cannot be written
    /// (the bucket or JetStream full) such a message is not sent — it was
    /// sent again at each hand-out after `takeover`, without end.
    pub async fn begin_attempt(&self, t: &NatsTicket, number: u32) -> Result<(), StoreError> {
        let (known, revision) = t.known();
        let mut row = match known {
            Some(r) if r.attempts < number => r,
            Some(_) => return Ok(()),
            None if number <= 1 => return Ok(()),
            None => ResultRow::new(crate::clock::now_ms()),
        };
        row.attempts = number;
        row.handed_out = false;
        let key = layout::result_key(&t.route, t.event_seq, &t.sub);
        let written = match self.shared.write_result(&key, &row, revision, RESULT_PATIENCE).await {
            Ok(Write::Done(revision)) => {
                t.wrote(row, revision);
                return Ok(());
            }
            // An operator's replay marked it since it was read (its step
            // restarted, released, nothing else changed): the attempt goes
            // on, numbered over the marked result, the mark applied to its
            // failure (`read_step`).
            Ok(Write::Moved(Some((stored, at)))) if marked_only(&row, &stored) => {
                let marked = ResultRow {
                    attempts: number,
                    ..stored
                };
                match self.shared.write_result(&key, &marked, at, RESULT_PATIENCE).await {
                    Ok(Write::Done(revision)) => {
                        t.wrote(marked, revision);
                        return Ok(());
                    }
                    Ok(Write::Moved(_)) => unavailable("another relay wrote this delivery's result meanwhile"),
                    Err(e) => e,
                }
            }
            // Also when it now says just this: the relay that took the
            // delivery over may have begun the same attempt.
            Ok(Write::Moved(_)) => {
                tracing::debug!(
                    key,
                    "another relay wrote this delivery's result meanwhile: not sent here"
                );
                unavailable("another relay wrote this delivery's result meanwhile")
            }
            Err(e) => {
                tracing::warn!(key, error = %e,
                    "a retry's attempt number could not be recorded for {}s; not sent now, it comes again after `takeover`",
                    RESULT_PATIENCE.as_secs());
                e
            }
        };
        t.let_go();
        Err(written)
    }

    async fn settle(&self, t: &NatsTicket, attempt: Option<Attempt>, outcome: Outcome) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        let key = layout::result_key(&t.route, t.event_seq, &t.sub);
        let known = t.known();
        let parked = known
            .0
            .as_ref()
            .is_some_and(|r| matches!(r.state, DeliveryState::AwaitingMedia { .. }));
        // A parked delivery looked at again is still parked: nothing to write.
        let unchanged = parked && matches!(outcome, Outcome::Defer { .. });
        if outcome == Outcome::Gone {
            return t.acker.ack().await.map_err(unavailable);
        }
        let (written, replayed) = match unchanged {
            true => (None, false),
            false => match self
                .shared
                .write_outcome(&key, known, t.read_step, attempt.as_ref(), &outcome, now)
                .await?
            {
                Recorded::Mine(row, revision, replayed) => (Some((row, revision)), replayed),
                Recorded::Theirs => {
                    // Another relay has the message now (or settled it).
                    t.let_go();
                    return Ok(());
                }
                Recorded::Revived => {
                    t.let_go();
                    let letter = self.shared.last_letter(&t.route, &t.sub, t.event_seq).await;
                    self.shared.drop_letter(&t.route, &t.sub, t.event_seq, letter).await;
                    return Ok(());
                }
            },
        };
        // An operator's replay asked during the attempt: due again at once.
        let outcome = match replayed {
            true => {
                tracing::info!(route = %t.route, subscriber = %t.sub, seq = t.event_seq,
                    "{}", crate::store::result::DUE_AGAIN_FOR_REPLAY);
                Outcome::Retry { due_ms: now }
            }
            false => outcome,
        };
        match &outcome {
            Outcome::Delivered | Outcome::Skipped | Outcome::Gone => t.acker.ack().await.map_err(unavailable),
            Outcome::Retry { due_ms } => nak(t, until(*due_ms)).await,
            // Nothing tells this relay when another one archives the media:
            // look again soon, however late `due_ms` is.
            Outcome::Defer { due_ms } => nak(t, until(*due_ms).min(DEFER_RECHECK)).await,
            Outcome::Dead { .. } => {
                let (row, revision) = written.expect("a dead outcome is written");
                let delivery = (t.route.as_str(), t.event_seq, t.sub.as_str());
                self.shared
                    .publish_dead_letter(delivery, &row, revision, RESULT_PATIENCE)
                    .await?;
                t.acker.double_ack_with(AckKind::Term).await.map_err(unavailable)
            }
        }
    }
}

/// From now (when the NAK is sent, after the result was written) to `due_ms`.
fn until(due_ms: u64) -> Duration {
    Duration::from_millis(due_ms.saturating_sub(crate::clock::now_ms()))
}

/// Hand the message back, to come again after `delay`.
async fn nak(t: &NatsTicket, delay: Duration) -> Result<(), StoreError> {
    t.acker
        .double_ack_with(AckKind::Nak(Some(delay)))
        .await
        .map_err(unavailable)
}

/// Whether `stored` is `ours` (with this attempt counted) as a replay's
/// mark left it: the step restarted, `replay_asked` and the release set,
/// nothing else changed.
fn marked_only(ours: &ResultRow, stored: &ResultRow) -> bool {
    stored.replay_asked
        && *stored
            == ResultRow {
                step: 0,
                replay_asked: true,
                released: true,
                attempts: stored.attempts,
                ..ours.clone()
            }
        && stored.attempts < ours.attempts
}
