//! Due times from a previous run brought in at start-up.
//!
//! The scheduling clock is anchored per process ([`crate::clock`]): a due
//! time written by a previous run is in that run's anchored time, which a
//! wall-clock step during that run left off from the wall clock by the
//! step. After a restart a retry could then wait its delay plus the step.
//! Nothing the relay schedules waits longer than the subscriber's
//! [`DueCap`] (its retry schedule's longest delay, its `Retry-After` cap, a
//! provider look-up's longest wait; for an `after_archive` delivery waiting
//! for media, the media re-check), so at start-up a due row further off
//! than now plus that cap is brought in to now plus the cap, with its
//! result row. The cluster backend bounds the same skew as it hands work
//! out (`nats/early.rs`).

use super::codec;
use super::group_commit::{Batch, Writer};
use super::keys;
use crate::store::{DeliveryState, DueCap, StoreError};

impl Writer {
    /// Bring in the due rows of `caps`' subscribers that are further off
    /// than `now_ms` plus their cap; how many moved.
    pub(super) fn bring_in_due(&mut self, caps: &[DueCap], now_ms: u64) -> Result<usize, StoreError> {
        let tree = self.inner.tree.clone();
        let reg = super::read_lock(&self.inner.registry).clone();
        let mut b = Batch::new(&tree);
        let mut moved = 0;
        let mut woken = Vec::new();
        for cap in caps {
            let Some(sub) = reg.sub(&cap.subscriber) else { continue };
            let prefix = keys::due_prefix(sub);
            let nearest = now_ms.saturating_add(cap.retry_ms.min(cap.media_ms));
            let mut start = prefix.clone();
            start.extend_from_slice(&nearest.saturating_add(1).to_be_bytes());
            let rows: Vec<_> = tree
                .range(start..keys::prefix_end(&prefix))
                .collect::<Result<Vec<_>, _>>()?;
            let before = moved;
            for (k, v) in rows {
                let (Some((due, id)), Some(route)) = (keys::parse_due(&k), keys::due_route(&v)) else {
                    continue;
                };
                let rkey = keys::result(id, sub);
                let row = tree.get(&rkey)?.and_then(|r| codec::decode_result(&r));
                let limit = match row.as_ref().map(|r| &r.state) {
                    Some(DeliveryState::AwaitingMedia { .. }) => now_ms.saturating_add(cap.media_ms),
                    _ => now_ms.saturating_add(cap.retry_ms),
                };
                if due <= limit {
                    continue;
                }
                self.del_due(&mut b, sub, due, id)?;
                self.put_due(&mut b, route, sub, limit, id)?;
                if let Some(mut row) = row {
                    match &mut row.state {
                        DeliveryState::Retrying { due_ms } | DeliveryState::AwaitingMedia { due_ms }
                            if *due_ms == due =>
                        {
                            *due_ms = limit;
                            b.put(rkey, codec::encode_result(&row));
                        }
                        _ => {}
                    }
                }
                moved += 1;
            }
            if moved > before {
                tracing::warn!(subscriber = %cap.subscriber, deliveries = moved - before,
                    retry_cap_ms = cap.retry_ms,
                    "deliveries due later than the relay could have scheduled them (the wall clock was stepped \
                     while the previous run had them waiting); brought in to now plus the longest wait");
                woken.push(sub);
            }
        }
        if moved > 0 {
            self.commit(b)?;
            for sub in woken {
                self.inner.wake(sub);
            }
        }
        Ok(moved)
    }
}
