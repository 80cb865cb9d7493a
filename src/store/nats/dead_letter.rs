//! Publishing a dead letter in cluster mode: one message per delivery on
//! `HR_DL`, after its `dead` result is written. Idempotent, so that whoever
//! finds a `dead` result whose letter may not be stored (the publish failed,
//! the relay died before it) can publish it again: the letter's message id
//! names the result's revision, so a repeat within the stream's duplicate
//! window is dropped by JetStream, a later one replaces the letter (one
//! message per subject), and a later death of the same delivery (after a
//! replay: a new revision) is a new letter.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;

use super::{event, layout, unavailable, Shared};
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
        let mut headers = HeaderMap::new();
        headers.insert(event::NONCE, format!("{subject}.{revision}").as_str());
        let give_up = tokio::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(50);
        loop {
            let stored = match self
                .js
                .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => ack.await.map_err(unavailable),
                Err(e) => Err(unavailable(e)),
            };
            let e = match stored {
                Ok(ack) => {
                    if !ack.duplicate {
                        self.wrote(1);
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            if tokio::time::Instant::now() + pause >= give_up {
                return Err(e);
            }
            tracing::debug!(subject, error = %e, "dead letter not stored; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}
