//! A finished delivery in cluster mode: its result written to the results
//! bucket (confirmed) before the message is settled — acknowledged, NAKed
//! with the retry's delay, or terminated after its dead letter is published.

use std::time::Duration;

use async_nats::jetstream::kv::UpdateErrorKind;
use async_nats::jetstream::AckKind;
use bytes::Bytes;

use super::{layout, unavailable, NatsStore, NatsTicket};
use crate::store::result::ResultRow;
use crate::store::{Attempt, DeliveryState, Outcome, StoreError};

/// How soon an `after_archive` delivery waiting for media is looked at again.
const DEFER_RECHECK: Duration = Duration::from_secs(2);
/// How long a result is tried again while its bucket has no leader (a node
/// died: writes fail for up to about 4 s). The message stays held meanwhile;
/// given up, it comes again after `takeover` and is sent again. Not capped by
/// `takeover`: if the hold is lost meanwhile and another relay sends the
/// event again, a late result here says the same (it was delivered), and
/// giving up early would make that repeat certain.
const RESULT_PATIENCE: Duration = Duration::from_secs(10);

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

    /// Before attempt `number` of a delivery that has a result (a retry, a
    /// replay, one taken over): count the attempt in it, so that a relay
    /// taking the delivery over after this one died during the attempt
    /// sends the next number, not this one again. Written only if the
    /// result is still the one read with the work (else another relay wrote
    /// it meanwhile: this copy is not sent, and let go). A first attempt
    /// needs no write: NATS's count of hand-outs numbers it.
    pub async fn begin_attempt(&self, t: &NatsTicket, number: u32) -> Result<(), StoreError> {
        let Some(row) = t.row.as_ref().filter(|r| r.attempts < number) else {
            return Ok(());
        };
        let mut row = row.clone();
        row.attempts = number;
        let key = layout::result_key(&t.route, t.event_seq, &t.sub);
        let value = Bytes::from(serde_json::to_vec(&row).expect("serializes"));
        let written = self.update_result_patiently(&key, value, t.revision).await;
        match written {
            Ok(()) => self.shared.wrote(1),
            Err(_) => t.let_go(),
        }
        written
    }

    /// Write a result over revision `revision`, trying again (with a growing
    /// pause) for [`RESULT_PATIENCE`] while NATS does not answer (a bucket
    /// leader change fails writes for about 4 s: retries due then would wait
    /// a whole `takeover`); at once when another relay wrote it meanwhile.
    async fn update_result_patiently(&self, key: &str, value: Bytes, revision: u64) -> Result<(), StoreError> {
        let give_up = tokio::time::Instant::now() + RESULT_PATIENCE;
        let mut pause = Duration::from_millis(50);
        loop {
            let e = match self.shared.results() {
                Ok(bucket) => match bucket.update(key, value.clone(), revision).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                        tracing::debug!(
                            key,
                            "another relay wrote this delivery's result meanwhile: not sent here"
                        );
                        return Err(unavailable(e));
                    }
                    Err(e) => unavailable(e),
                },
                Err(e) => e,
            };
            if tokio::time::Instant::now() + pause >= give_up {
                tracing::warn!(key, error = %e,
                    "a retry's attempt number could not be recorded for {}s; not sent now, it comes again after `takeover`",
                    RESULT_PATIENCE.as_secs());
                return Err(e);
            }
            tracing::debug!(key, error = %e, "attempt number not written; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Write a result, trying again (with a growing pause) for
    /// [`RESULT_PATIENCE`]: the delivery was made, and a result not written
    /// means the subscriber gets it again.
    async fn put_result_patiently(&self, key: &str, row: &ResultRow) -> Result<(), StoreError> {
        let give_up = tokio::time::Instant::now() + RESULT_PATIENCE;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.shared.put_result(key, row).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + pause >= give_up => return Err(e),
                Err(e) => {
                    tracing::debug!(key, error = %e, "result not written; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn settle(&self, t: &NatsTicket, attempt: Option<Attempt>, outcome: Outcome) -> Result<(), StoreError> {
        let s = &self.shared;
        let now = crate::clock::now_ms();
        let key = layout::result_key(&t.route, t.event_seq, &t.sub);
        let mut row = t.row.clone().unwrap_or_else(|| ResultRow::new(now));
        let parked = matches!(row.state, DeliveryState::AwaitingMedia { .. });
        row.apply(attempt.as_ref(), &outcome, now);
        // A parked delivery looked at again is still parked: nothing to write.
        let unchanged = parked && matches!(outcome, Outcome::Defer { .. });
        if outcome != Outcome::Gone && !unchanged {
            self.put_result_patiently(&key, &row).await?;
        }
        match &outcome {
            Outcome::Delivered | Outcome::Skipped | Outcome::Gone => {
                return t.acker.ack().await.map_err(unavailable);
            }
            Outcome::Retry { due_ms } => nak(t, until(*due_ms)).await,
            // Nothing tells this relay when another one archives the media:
            // look again soon, however late `due_ms` is.
            Outcome::Defer { due_ms } => nak(t, until(*due_ms).min(DEFER_RECHECK)).await,
            Outcome::Dead { .. } => {
                let body = Bytes::from(serde_json::to_vec(&row).expect("serializes"));
                let subject = layout::dead_subject(&t.route, &t.sub, t.event_seq);
                s.js.publish(subject, body)
                    .await
                    .map_err(unavailable)?
                    .await
                    .map_err(unavailable)?;
                s.wrote(1);
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
