//! Publishing a dead letter in cluster mode: one message per delivery on
//! `HR_DL`, after its `dead` result is written. Idempotent, so that whoever
//! finds a `dead` result whose letter may not be stored (the publish failed,
//! the relay died before it) can publish it again: the letter's message id
//! names the result's revision, so a repeat within the stream's duplicate
//! window is dropped by JetStream, a later one replaces the letter (one
//! message per subject), and a later death of the same delivery (after a
//! replay: a new revision) is a new letter.

use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;

use super::{layout, unavailable, Shared};
use crate::store::result::ResultRow;
use crate::store::StoreError;

impl Shared {
    /// Publish the dead letter of delivery (`route`, `seq`, `sub`) whose
    /// `dead` result is `row` at `revision`; tried again for `patience`
    /// (zero: once) while JetStream does not store it.
    pub(super) async fn publish_dead_letter(
        &self,
        (route, seq, sub): (&str, u64, &str),
        row: &ResultRow,
        revision: u64,
        patience: Duration,
    ) -> Result<(), StoreError> {
        let subject = layout::dead_subject(route, sub, seq);
        let body = Bytes::from(serde_json::to_vec(row).expect("serializes"));
        let id = format!("{subject}.{revision}");
        let give_up = tokio::time::Instant::now() + patience;
        self.publish_stored(&subject, &id, body, give_up).await?;
        // A relay that lost its hold may have made it `delivered` meanwhile
        // (its attempt delivered after all), and looked for the letter to
        // drop before it was stored: dropped here then. Read after the
        // letter is stored, as that relay looks for it after its write, so
        // one of the two sees the other's.
        let key = layout::result_key(route, seq, sub);
        if let Ok(Some((now, _))) = self.result_on_leader(&key).await {
            if now.state == crate::store::DeliveryState::Delivered {
                let letter = self.last_letter(route, sub, seq).await;
                self.drop_letter(route, sub, seq, letter).await;
            }
        }
        Ok(())
    }

    /// The sequence of the newest dead letter of event `seq` to `sub`, if
    /// there is one (None too when NATS does not answer: it stays listed).
    pub(super) async fn last_letter(&self, route: &str, sub: &str, seq: u64) -> Option<u64> {
        let last = async {
            let dl = self.js.get_stream(layout::DEAD).await.map_err(unavailable)?;
            match dl
                .get_last_raw_message_by_subject(&layout::dead_subject(route, sub, seq))
                .await
            {
                Ok(m) => Ok(Some(m.sequence)),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(unavailable(e)),
            }
        };
        last.await.unwrap_or_else(|e: StoreError| {
            tracing::warn!(route, subscriber = sub, seq, error = %e, "a dead letter whose delivery is no longer dead stays listed for now (a dead-letter replay drops it without sending it)");
            None
        })
    }

    /// Purge the dead letter of event `seq` to `sub` (queued again, or
    /// delivered after all) up to sequence `letter`: one of its dying again since is
    /// kept. Left listed when NATS refuses: a later dead-letter replay drops
    /// it without sending it again (its delivery is no longer dead).
    pub(super) async fn drop_letter(&self, route: &str, sub: &str, seq: u64, letter: Option<u64>) {
        let Some(letter) = letter else { return };
        let purged = async {
            let dl = self.js.get_stream(layout::DEAD).await.map_err(unavailable)?;
            dl.purge()
                .filter(layout::dead_subject(route, sub, seq))
                .sequence(letter + 1)
                .await
                .map_err(unavailable)
        };
        if let Err(e) = purged.await {
            tracing::warn!(route, subscriber = sub, seq, error = %e, "a dead letter whose delivery is no longer dead stays listed for now (a dead-letter replay drops it without sending it)");
        }
    }
}
