//! A replay's mark: the delivery's result written due again (a replay
//! queuing it, with its message to follow) or, for a retry still pending
//! with the consumer, marked for the relay sending it (`replay_asked`),
//! over the revision the replay read. See [`super::replay`].

use bytes::Bytes;

use super::replay::PATIENCE;
use crate::store::nats::result_write::Write;
use crate::store::nats::{unavailable, NatsStore};
use crate::store::result::ResultRow;
use crate::store::{DeliveryState, StoreError};

/// What became of a mark.
pub(super) enum Marked {
    /// Stored: the result's new revision.
    Stored(u64),
    /// Another write came first.
    Moved,
    /// A try was not answered and the result moved since: the mark may
    /// have been stored (and written over) or not.
    Unknown,
}

impl NatsStore {
    /// A replay of the event that finds a retry pending with the consumer
    /// (waiting, or its attempt under way): the result marked — its
    /// schedule from the start, released, `replay_asked` — over the
    /// revision read, for the relay sending it to apply to the failure of
    /// work it read before (`Shared::write_outcome`): due at once, not a
    /// dead letter. A retry at step 0 is a replay's own (or has nothing to
    /// restart): left alone. False when the result moved before the mark.
    /// A try NATS did not answer is read back: the mark stored, marked; the
    /// result where it was, tried again (for [`PATIENCE`]); moved to
    /// anything else, unknown — the mark may have been stored and applied
    /// since (reading again could queue a delivery already made) or not —
    /// and the replay fails (`503`: ask again).
    pub(super) async fn mark_pending(&self, key: &str, row: &ResultRow, revision: u64) -> Result<bool, StoreError> {
        if !matches!(row.state, DeliveryState::Retrying { .. }) || row.step == 0 {
            return Ok(true);
        }
        let marked = ResultRow {
            step: 0,
            replay_asked: true,
            released: true,
            ..row.clone()
        };
        match self
            .mark(key, &marked, revision, tokio::time::Instant::now() + PATIENCE)
            .await?
        {
            Marked::Stored(_) => Ok(true),
            Marked::Moved => Ok(false),
            Marked::Unknown => {
                tracing::warn!(
                    key,
                    "a replay's mark of a pending delivery was not answered and its result moved since"
                );
                Err(unavailable(
                    "a replay's mark was not answered and the delivery's result changed since (delivered or retried meanwhile?); look at the event, then ask again if it still needs it",
                ))
            }
        }
    }

    /// Write `marked` over `revision`: stored (its new revision), or
    /// another write came first (another replay queued it), or, a try
    /// unanswered, the result moved to another row since. Tried again
    /// until `give_up` while NATS does not answer: a try whose answer was lost
    /// may have been stored (a leader change, an overloaded node), and only
    /// a later answer tells (a conflict then, with this very row stored, is
    /// that try's); given up unanswered, such a mark waits for `GRACE_MS` (30 s)
    /// before a replay looks for its message.
    pub(super) async fn mark(
        &self,
        key: &str,
        marked: &ResultRow,
        revision: u64,
        give_up: tokio::time::Instant,
    ) -> Result<Marked, StoreError> {
        let value = Bytes::from(serde_json::to_vec(marked).expect("serializes"));
        let first = match self.shared.try_write(key, value, revision).await {
            Ok(Some(mark)) => {
                self.shared.wrote(1);
                return Ok(Marked::Stored(mark));
            }
            // Another write came first.
            Ok(None) => return Ok(Marked::Moved),
            Err(e) => e,
        };
        tracing::debug!(key, error = %first, "a replay's mark not answered; trying again");
        let patience = give_up.saturating_duration_since(tokio::time::Instant::now());
        match self.shared.write_result(key, marked, revision, patience).await? {
            Write::Done(mark) => Ok(Marked::Stored(mark)),
            // This very row: the unanswered try, stored.
            Write::Moved(Some((stored, mark))) if stored == *marked => Ok(Marked::Stored(mark)),
            // The unanswered try may have been stored and written over since.
            Write::Moved(_) => Ok(Marked::Unknown),
        }
    }
}
