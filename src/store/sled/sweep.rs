//! Retention: walks a route's log in id order and removes events received
//! before the cutoff whose every delivery is finished — a dead letter only
//! once it died before the cutoff too, so it stays `retention` after it gave
//! up — and whose media is archived or failed for good. Runs on the writer
//! thread in bounded steps between batches. Media rows and files have their
//! own retention ([`super::media_sweep`]).

use super::body_rows;
use super::codec;
use super::group_commit::{Batch, Writer};
use super::keys;
use crate::store::{DeliveryState, EventId, StoreError};

/// Log rows looked at per step.
const STEP: usize = 500;
/// Rows removed per step, at most (and one event's): large bodies have a
/// row per 4 KiB, and the step holds up ingest while it is applied.
const STEP_ROWS: usize = 8192;

impl Writer {
    /// One step over `route` from `from`; the next position (None: done) and
    /// how many events were removed.
    pub(super) fn sweep_step(
        &mut self,
        route: u32,
        from: Option<EventId>,
        cutoff_ms: u64,
    ) -> Result<(Option<EventId>, usize), StoreError> {
        let tree = self.inner.tree.clone();
        let start = keys::log(route, from.unwrap_or(EventId::ZERO));
        let mut b = Batch::new(&tree);
        let mut removed = 0;
        let mut last = None;
        let mut done = true;
        for (n, item) in tree.range(start..keys::log_end(route)).enumerate() {
            if n >= STEP || b.len() >= STEP_ROWS {
                done = false;
                break;
            }
            let (k, v) = item?;
            let Some(id) = keys::id_at_5(&k) else { continue };
            if id.timestamp_ms() >= cutoff_ms {
                break;
            }
            last = Some(id.next());
            let Some((h, at)) = codec::decode_header(&v) else {
                continue;
            };
            if !self.finished(&b, route, id, &h.subscribers, cutoff_ms)? || !self.event_media_final(&b, id)? {
                continue;
            }
            b.del(k.to_vec());
            for part in body_rows::part_keys(route, id, at) {
                b.del(part);
            }
            // The event's list of media goes; the URLs' rows stay for media
            // retention, which deletes their files.
            b.del(keys::event_media(id));
            let dkey = keys::dedupe(route, &h.dedupe);
            // Only drop the dedupe row if it still points at this event.
            if b.get(&dkey)?.is_some_and(|v| v == id.bytes()) {
                b.del(dkey);
            }
            for sub in &h.subscribers {
                b.del(keys::result(id, *sub));
                b.del(keys::dead(*sub, id));
            }
            removed += 1;
        }
        // Nothing to delete (a route with nothing old, or none left): no
        // commit, whose flush is a disk sync (one per route every sweep).
        if b.len() > 0 {
            self.commit(b)?;
        }
        Ok((if done { None } else { last }, removed))
    }

    /// Whether every delivery of the event is over for retention's purposes.
    fn finished(
        &self,
        b: &Batch<'_>,
        route: u32,
        id: EventId,
        subs: &[u32],
        cutoff_ms: u64,
    ) -> Result<bool, StoreError> {
        for sub in subs {
            // Not yet read or still being attempted.
            if self.cursors.get(&(route, *sub)).is_some_and(|c| id >= c.at) {
                return Ok(false);
            }
            let Some(v) = b.get(&keys::result(id, *sub))? else {
                continue;
            };
            let Some(row) = codec::decode_result(&v) else { continue };
            let over = match row.state {
                DeliveryState::Delivered | DeliveryState::Skipped => true,
                DeliveryState::Dead => row.at_ms < cutoff_ms,
                DeliveryState::Retrying { .. } | DeliveryState::AwaitingMedia { .. } | DeliveryState::Pending => false,
            };
            if !over {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
