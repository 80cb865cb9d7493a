//! A failed media URL tried again in cluster mode (an operator's retry of an
//! event's failed URLs, or a new callback naming one): a new work message
//! (its own de-duplication id, so one sent within the two minutes of the
//! first is not dropped), then the URL's row made pending again naming that
//! message, written only if the row is still the failed one read.
//!
//! An archiver may take the message before the row names it: the message
//! names the failure it retries (the failed row's time), and an archiver
//! finding the row still at that failure makes it pending itself
//! ([`Shared::adopt_retry`]); whichever write comes second finds the row
//! pending and leaves it. So a relay stopped between the message and the
//! row leaves the retry done, not lost, and a message left over from an
//! earlier failure (two retries at once) starts no second round.

use super::media::{MediaRow, RowState, WorkMessage};
use super::{event, layout, NatsStore, Shared};
use crate::store::{EventId, StoreError};

impl NatsStore {
    /// Each failed media URL of the event due again now, from the start of
    /// the retry schedule (its tries so far still counted); how many. None
    /// when the event is unknown or named no media.
    pub async fn retry_media(&self, id: EventId) -> Result<Option<usize>, StoreError> {
        let Some((route, _, headers)) = self.find_headers(id).await? else {
            return Ok(None);
        };
        let Some(urls) = event::media(&headers) else {
            return Ok(None);
        };
        // Its media waits for the callback's verification: not the archive's yet.
        if self.media_deferred(id).await? {
            return Ok(None);
        }
        let mut retried = 0;
        for url in urls {
            if self.shared.retry_url(&layout::media_hash(&url), &route).await? {
                retried += 1;
            }
        }
        Ok(Some(retried))
    }
}

/// Whether a work message asking to retry the failure recorded at
/// `retry_of` is one for this row: it is still that failure. A message
/// published against an earlier failure (the loser of two retries, its
/// winner's round over since) is not, whatever its sequence.
pub(super) fn is_retry(row: &MediaRow, retry_of: Option<u64>) -> bool {
    matches!(row.state, RowState::Failed { .. }) && retry_of == Some(row.at_ms)
}

impl Shared {
    /// One URL due again if its row says failed; false when it does not
    /// (pending, stored, no row yet, or made pending meanwhile by another
    /// retry or a new callback).
    pub(super) async fn retry_url(&self, hash: &str, route: &str) -> Result<bool, StoreError> {
        let Some((row, revision)) = self.media_row(hash).await? else {
            return Ok(false);
        };
        if !matches!(row.state, RowState::Failed { .. }) {
            return Ok(false);
        }
        let msg = WorkMessage {
            url: row.url.clone(),
            route: route.to_string(),
            retry_of: Some(row.at_ms),
        };
        let nonce = format!("{hash}.retry.{}", crate::clock::now_ms());
        let seq = self.publish_work(layout::media_subject(hash), &nonce, &msg).await?;
        if self.adopt_retry(hash, row, revision, seq, Some(route)).await?.is_some() {
            return Ok(true);
        }
        // Another write got in first: an archiver that took the message
        // already (then the row names it), or another retry.
        Ok(self.media_row(hash).await?.is_some_and(|(r, _)| r.work == seq))
    }

    /// The failed `row` (at `revision`) made pending now for work message
    /// `seq`, from the start of the retry schedule, with its new revision;
    /// None when the row changed since it was read. `route`: the route of
    /// the event that asked for the retry, whose provider key refreshes the
    /// URL if it expired (the route that named it first may have none).
    pub(super) async fn adopt_retry(
        &self,
        hash: &str,
        mut row: MediaRow,
        revision: u64,
        seq: u64,
        route: Option<&str>,
    ) -> Result<Option<(MediaRow, u64)>, StoreError> {
        let now = crate::clock::now_ms();
        if let Some(route) = route {
            row.route = route.to_string();
        }
        row.work = seq;
        row.state = RowState::Pending { due_ms: now };
        row.step = 0;
        row.at_ms = now;
        Ok(self
            .update_media_row(hash, &row, revision)
            .await?
            .map(|revision| (row, revision)))
    }
}
