//! Due times from a previous run brought in at start-up.
//!
//! The scheduling clock is anchored per process ([`crate::clock`]): a due
//! time written by a previous run is in that run's anchored time, which a
//! wall-clock step during that run left off from the wall clock by the
//! step. After a restart a retry could then wait its delay plus the step.
//!
//! - **Deliveries:** nothing the relay schedules waits longer than the
//!   subscriber's [`DueCap`] (its retry schedule's longest delay, its
//!   `Retry-After` cap, a provider look-up's longest wait; for an
//!   `after_archive` delivery waiting for media, the media re-check), so a
//!   due row further off than now plus that cap is brought in to now plus
//!   the cap, with its result row. Only rows past now plus the cap are read:
//!   a start with no clock step reads (almost) nothing of a retry backlog.
//! - **Task polls and media retries:** their rows say when they were written
//!   (a task's `updated_ms`, a URL's `at_ms`). One written later than now
//!   was written by a stepped clock: it keeps its wait, counted from now
//!   (its times move back by the step); one further off than its cap
//!   ([`DueCaps`]) is brought in to the cap. Their rows due after now are
//!   read: open tasks and pending downloads, not the delivery backlog.
//!
//! Rows are read, and moved in one committed batch, [`CHUNK`] at a time,
//! from the key after the last one read (a moved row goes below where the
//! walk is, so it is not met again; a crash half-way leaves the rest for
//! the next start). The cluster backend bounds the same skew as it hands
//! work out (`nats/early.rs`).

use std::collections::HashMap;

use super::codec;
use super::group_commit::{Batch, Writer};
use super::keys;
use super::media_codec;
use super::task_codec as tc;
use crate::store::{DeliveryState, DueCap, DueCaps, MediaState, StoreError};

/// Rows read, and at most moved in one batch, per step (small in tests so
/// that they cross steps).
const CHUNK: usize = if cfg!(test) { 3 } else { 1000 };

/// What the start-up check did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroughtIn {
    /// Rows brought in.
    pub moved: usize,
    /// Schedule rows read to find them.
    pub read: usize,
}

/// The key just after `k`: where the next chunk starts.
fn after(k: &[u8]) -> Vec<u8> {
    let mut next = k.to_vec();
    next.push(0);
    next
}

impl Writer {
    /// Bring in the due rows further off than `caps` allow at `now_ms`.
    pub(super) fn bring_in_due(&mut self, caps: &DueCaps, now_ms: u64) -> Result<BroughtIn, StoreError> {
        let mut n = BroughtIn::default();
        for cap in &caps.subscribers {
            self.bring_in_deliveries(cap, now_ms, &mut n)?;
        }
        self.bring_in_tasks(&caps.tasks, now_ms, &mut n)?;
        self.bring_in_media(caps.media_ms, now_ms, &mut n)?;
        Ok(n)
    }

    /// Up to [`CHUNK`] rows from `from` (inclusive) to `end`.
    fn chunk(&self, from: &[u8], end: &[u8], n: &mut BroughtIn) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        let rows = self
            .inner
            .tree
            .range(from.to_vec()..end.to_vec())
            .take(CHUNK)
            .collect::<Result<Vec<_>, _>>()?;
        n.read += rows.len();
        Ok(rows)
    }

    /// Walk the rows from `from` to `end` a [`CHUNK`] at a time: `stage`
    /// stages a row's move into the chunk's batch (true if it did), and each
    /// chunk's moves are committed together. Returns the rows moved.
    fn move_chunks(
        &mut self,
        mut from: Vec<u8>,
        end: &[u8],
        n: &mut BroughtIn,
        mut stage: impl FnMut(&mut Self, &mut Batch<'_>, &sled::IVec, &sled::IVec) -> Result<bool, StoreError>,
    ) -> Result<usize, StoreError> {
        let tree = self.inner.tree.clone();
        let mut moved = 0;
        loop {
            let rows = self.chunk(&from, end, n)?;
            let Some((last, _)) = rows.last() else { break };
            from = after(last);
            let full = rows.len() == CHUNK;
            let mut b = Batch::new(&tree);
            let mut staged = 0;
            for (k, v) in &rows {
                if stage(self, &mut b, k, v)? {
                    staged += 1;
                }
            }
            if staged > 0 {
                self.commit(b)?;
                moved += staged;
                n.moved += staged;
            }
            if !full {
                break;
            }
        }
        Ok(moved)
    }

    fn bring_in_deliveries(&mut self, cap: &DueCap, now_ms: u64, n: &mut BroughtIn) -> Result<(), StoreError> {
        let tree = self.inner.tree.clone();
        let Some(sub) = super::read_lock(&self.inner.registry).sub(&cap.subscriber) else {
            return Ok(());
        };
        let prefix = keys::due_prefix(sub);
        let end = keys::prefix_end(&prefix);
        let media_ms = cap.media_ms.unwrap_or(cap.retry_ms);
        let nearest = now_ms.saturating_add(cap.retry_ms.min(media_ms));
        let mut from = prefix.clone();
        from.extend_from_slice(&nearest.saturating_add(1).to_be_bytes());
        let moved = self.move_chunks(from, &end, n, |w, b, k, v| {
            let (Some((due, id)), Some(route)) = (keys::parse_due(k), keys::due_route(v)) else {
                return Ok(false);
            };
            let rkey = keys::result(id, sub);
            let row = tree.get(&rkey)?.and_then(|r| codec::decode_result(&r));
            let limit = match row.as_ref().map(|r| &r.state) {
                Some(DeliveryState::AwaitingMedia { .. }) => now_ms.saturating_add(media_ms),
                _ => now_ms.saturating_add(cap.retry_ms),
            };
            if due <= limit {
                return Ok(false);
            }
            w.del_due(b, sub, due, id)?;
            w.put_due(b, route, sub, limit, id)?;
            if let Some(mut row) = row {
                match &mut row.state {
                    DeliveryState::Retrying { due_ms } | DeliveryState::AwaitingMedia { due_ms } if *due_ms == due => {
                        *due_ms = limit;
                        b.put(rkey, codec::encode_result(&row));
                    }
                    _ => {}
                }
            }
            Ok(true)
        })?;
        if moved > 0 {
            tracing::warn!(subscriber = %cap.subscriber, deliveries = moved, retry_cap_ms = cap.retry_ms,
                "deliveries due later than the subscriber's current longest wait (a clock step during the previous \
                 run, or a shortened retry/max_retry_after); brought in to now plus that wait");
            self.inner.wake(sub);
        }
        Ok(())
    }

    /// Task polls (`P` rows, by time, across routes): only routes in `caps`
    /// (they reconcile) are looked at.
    fn bring_in_tasks(&mut self, caps: &[(String, u64)], now_ms: u64, n: &mut BroughtIn) -> Result<(), StoreError> {
        let tree = self.inner.tree.clone();
        let caps: HashMap<u32, (String, u64)> = {
            let reg = super::read_lock(&self.inner.registry);
            caps.iter()
                .filter_map(|(name, ms)| Some((reg.route(name)?, (name.clone(), *ms))))
                .collect()
        };
        if caps.is_empty() {
            return Ok(());
        }
        let mut from = vec![tc::P];
        from.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        let end = keys::prefix_end(&[tc::P]);
        let moved = self.move_chunks(from, &end, n, |_, b, k, _| {
            let Some((due, route, id)) = tc::parse_task_due(k) else {
                return Ok(false);
            };
            let Some((name, cap)) = caps.get(&route) else {
                return Ok(false);
            };
            let tkey = tc::task(route, &id);
            let Some(mut task) = tree.get(&tkey)?.and_then(|v| tc::decode(&v, name, &id)) else {
                return Ok(false);
            };
            if task.next_poll_ms != Some(due) {
                return Ok(false);
            }
            // Written later than now: its clock was stepped back by the
            // difference at least; its times move back by it.
            let step = task.updated_ms.saturating_sub(now_ms);
            let limit = due.saturating_sub(step).min(now_ms.saturating_add(*cap));
            if limit >= due {
                return Ok(false);
            }
            task.registered_ms = task.registered_ms.saturating_sub(step);
            task.updated_ms -= step;
            task.next_poll_ms = Some(limit);
            b.del(k.to_vec());
            b.put(tc::task_due(limit, route, &id), Vec::new());
            b.put(tkey, tc::encode(&task));
            Ok(true)
        })?;
        if moved > 0 {
            tracing::warn!(
                tasks = moved,
                "expected tasks' polls due later than their schedule allows (a clock step during the previous run, \
                 or a shortened reconcile schedule); brought in"
            );
        }
        Ok(())
    }

    /// Media retries (`A` rows, by time).
    fn bring_in_media(&mut self, cap: u64, now_ms: u64, n: &mut BroughtIn) -> Result<(), StoreError> {
        let tree = self.inner.tree.clone();
        let mut from = vec![keys::A];
        from.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        let end = keys::prefix_end(&[keys::A]);
        let moved = self.move_chunks(from, &end, n, |w, b, k, _| {
            let Some((due, hash)) = keys::parse_timed(k) else {
                return Ok(false);
            };
            let mkey = keys::media(&hash);
            let Some(mut row) = tree.get(&mkey)?.and_then(|v| media_codec::decode_media(&v)) else {
                return Ok(false);
            };
            if !matches!(row.state, MediaState::Pending { due_ms } if due_ms == due) {
                return Ok(false);
            }
            let step = row.at_ms.saturating_sub(now_ms);
            let limit = due.saturating_sub(step).min(now_ms.saturating_add(cap));
            if limit >= due {
                return Ok(false);
            }
            row.at_ms -= step;
            row.state = MediaState::Pending { due_ms: limit };
            w.del_media_due(b, due, &hash)?;
            w.put_media_due(b, limit, &hash)?;
            b.put(mkey, media_codec::encode_media(&row));
            Ok(true)
        })?;
        if moved > 0 {
            tracing::warn!(
                downloads = moved,
                "media downloads due later than their retry schedule allows (a clock step during the previous run, \
                 or a shortened media.retry); brought in"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::tests::{attempt, event, open, sled};
    use crate::store::Outcome;

    /// A backlog of retries within the subscriber's longest wait is not
    /// read at start-up (only rows past now plus the cap are); rows past it
    /// are brought in across several chunks, and a second start reads none.
    #[tokio::test]
    async fn a_start_reads_no_retry_backlog_within_the_longest_wait_and_moves_the_rest_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &["a"]).await;
        let now = crate::clock::now_ms();
        let (hour, backlog, late) = (3_600_000, 4 * CHUNK, 2 * CHUNK + 1);
        for i in 0..backlog + late {
            store.append(event(&format!("t{i}"), &["a"], now)).await.unwrap();
        }
        let mut src = store.work_source("a").unwrap();
        let works = src.take(backlog + late, now).await.unwrap();
        assert_eq!(works.len(), backlog + late);
        for (i, w) in works.iter().enumerate() {
            // Within the cap (an hour), or a day out (a stepped clock's).
            let due = if i < backlog {
                now + hour / 2 + i as u64
            } else {
                now + 24 * hour + i as u64
            };
            store
                .record(&w.ticket, Some(attempt(1, 500, now)), Outcome::Retry { due_ms: due })
                .await
                .unwrap();
            src.done(&w.ticket).await;
        }
        let caps = DueCaps {
            subscribers: vec![DueCap {
                subscriber: "a".into(),
                retry_ms: hour,
                media_ms: None,
            }],
            tasks: Vec::new(),
            media_ms: hour,
        };
        let n = sled(&store).bring_in_due(caps.clone()).await.unwrap();
        assert_eq!(
            n,
            BroughtIn {
                moved: late,
                read: late
            },
            "only the rows past the cap are read"
        );
        let n = sled(&store).bring_in_due(caps).await.unwrap();
        assert_eq!(n, BroughtIn { moved: 0, read: 0 }, "a second start reads nothing");
        assert_eq!(src.depth(), (backlog + late) as u64, "counts stay balanced");
        let at = now + 2 * hour;
        assert_eq!(src.take(backlog + late + 1, at).await.unwrap().len(), backlog + late);
        store.close().await;
    }
}
