//! Publishing a dead letter in cluster mode: one message per delivery on
//! `HR_DL`, after its `dead` result is written. Idempotent, so that whoever
//! finds a `dead` result whose letter may not be stored (the publish failed,
//! the relay died before it) can publish it again: the letter's message id
//! names the result's revision, so a repeat within the stream's duplicate
//! window is dropped by JetStream, a later one replaces the letter (one
//! message per subject), and a later death of the same delivery (after a
//! replay: a new revision) is a new letter.

use std::time::Duration;

use bytes::Bytes;

use super::{layout, Shared};
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
        self.publish_stored(&subject, &id, body, give_up).await
    }
}
