//! The writer's side of appending an event: its id (time-ordered, never
//! going back), dedupe against the batch and the tree, the log and dedupe
//! rows, the event's media work, and settling its expected task — all in
//! the batch that answers the request. Part of the writer
//! ([`super::group_commit`]).

use std::collections::{HashMap, HashSet};

use ulid::Ulid;

use super::batch::Batch;
use super::body_rows;
use super::codec::{Header, HeaderMeta};
use super::group_commit::Writer;
use super::keys;
use crate::store::{Accepted, EventId, NewEvent, StoreError};

impl Writer {
    fn next_id(&mut self, ms: u64) -> EventId {
        let candidate = Ulid::from_parts(ms, fastrand::u128(..));
        let id = if candidate.timestamp_ms() > self.last_id.timestamp_ms() {
            candidate
        } else {
            self.last_id.increment().unwrap_or(candidate)
        };
        self.last_id = id;
        EventId(id)
    }

    /// Dedupe, add the event's rows, settle its expected task.
    pub(super) fn add_event(
        &mut self,
        b: &mut Batch<'_>,
        ev: &NewEvent,
        seen: &mut HashMap<Vec<u8>, EventId>,
        news: &mut HashSet<u32>,
        room: &mut Option<u64>,
    ) -> Result<Accepted, StoreError> {
        let accepted = self.add_log_rows(b, ev, seen, news, room)?;
        if ev.task.is_some() {
            let (route, _) = self.numbers(b, &ev.meta.route, &[]);
            self.settle_task(b, route, ev, accepted);
        }
        Ok(accepted)
    }

    /// Settle `ev`'s expected task, if it names one, with the event it was
    /// `accepted` as (stored now, or the one it duplicates).
    fn settle_task(&mut self, b: &mut Batch<'_>, route: u32, ev: &NewEvent, accepted: Accepted) {
        let Some(mark) = &ev.task else {
            return;
        };
        // The event's rows are in this batch: once it is flushed the
        // answer is its id, whatever became of its task (a poll settles it).
        if let Err(e) = self.mark_task(b, route, mark, ev.meta.origin, accepted, ev.meta.received_ms) {
            tracing::error!(route = %ev.meta.route, task_id = %mark.task_id, error = %e,
                "event stored, but its expected task could not be marked; its next poll settles it");
        }
    }

    /// Dedupe, then add the event's log and dedupe rows; a new event spends
    /// its share of `room`, the bytes left above `store.min_free` in this
    /// batch (`None`: no bound).
    fn add_log_rows(
        &mut self,
        b: &mut Batch<'_>,
        ev: &NewEvent,
        seen: &mut HashMap<Vec<u8>, EventId>,
        news: &mut HashSet<u32>,
        room: &mut Option<u64>,
    ) -> Result<Accepted, StoreError> {
        let (route, mut subs) = self.numbers(b, &ev.meta.route, &ev.meta.subscribers);
        // The request read its config before a reload removed one of these
        // subscribers from the route: its log there has ended (`end`), so
        // the event is not for it, as every view and its return agree.
        subs.retain(|s| self.cursors.get(&(route, *s)).is_none_or(|c| c.end == 0));
        // None left (the route renamed or removed, or all its subscribers
        // replaced, since the request read its config): refused, not stored
        // for nobody. A duplicate of an event already stored is still found.
        let gone = subs.is_empty() && !ev.meta.subscribers.is_empty();
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&ev.dedupe_hash[..16]);
        let dkey = keys::dedupe(route, &hash);
        if let Some(a) = lookup_duplicate(b, &dkey, seen)? {
            return Ok(a);
        }
        if gone {
            return Err(StoreError::RouteChanged(ev.meta.route.clone()));
        }
        // Only now: a duplicate writes no rows, and keeps its `200`.
        spend(room, ev)?;
        let id = self.next_id(ev.meta.received_ms);
        if !ev.media.is_empty() {
            if ev.media_after_verify {
                // The deferral, visible on the event: an `E` row naming no
                // URL (no work), filled by the verdict, or by a delivery once
                // a reload turned `verify` off ([`super::SledStore::media_deferred`]).
                b.put(
                    keys::event_media(id),
                    super::media_codec::encode_event_media(route, &[]),
                );
            } else {
                self.add_event_media(b, route, id, &ev.media, ev.meta.received_ms)?;
            }
        }
        // The sequence only once nothing can fail: no gap in the log.
        let tail = self.tails.entry(route).or_insert(1);
        let seq = *tail;
        *tail += 1;
        self.dirty_tails.insert(route);
        let header = Header {
            seq,
            meta: HeaderMeta::from_meta(&ev.meta),
            subscribers: subs,
            dedupe: hash,
        };
        for (k, v) in body_rows::event_rows(route, id, &header, &ev.body) {
            b.put(k, v);
        }
        b.put(dkey.clone(), id.bytes().to_vec());
        seen.insert(dkey, id);
        news.insert(route);
        Ok(Accepted { id, duplicate: false })
    }

    /// The event already stored that `ev` duplicates, if any, with no
    /// event rows written (under `store.min_free`, where new events are
    /// refused: a provider's resend still gets its `200`); its expected task
    /// is settled as above the floor (a small row, like a poll's update: a
    /// reconciler's result duplicating a stored callback settles its task
    /// so, or it would be polled again every round). A route this store
    /// has not numbered has no events; a failed read is no answer. (No
    /// event of such a batch is new, so none is looked up among its own.)
    pub(super) fn duplicate_of(&mut self, b: &mut Batch<'_>, ev: &NewEvent) -> Option<Accepted> {
        let route = super::read_lock(&self.inner.registry).route(&ev.meta.route)?;
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&ev.dedupe_hash[..16]);
        let dkey = keys::dedupe(route, &hash);
        let accepted = lookup_duplicate(b, &dkey, &HashMap::new()).ok().flatten()?;
        self.settle_task(b, route, ev, accepted);
        Some(accepted)
    }

    /// Route and subscriber numbers for an event, allocating unknown names.
    pub(super) fn numbers(&mut self, b: &mut Batch<'_>, route: &str, subs: &[String]) -> (u32, Vec<u32>) {
        {
            let reg = super::read_lock(&self.inner.registry);
            if let Some(r) = reg.route(route) {
                let nos: Option<Vec<u32>> = subs.iter().map(|s| reg.sub(s)).collect();
                if let Some(nos) = nos {
                    return (r, nos);
                }
            }
        }
        let mut rows = Vec::new();
        let mut reg = super::write_lock(&self.inner.registry);
        let r = reg.route_or_new(route, &mut rows);
        let nos = subs.iter().map(|s| reg.sub_or_new(s, r, &mut rows).0).collect();
        for (k, v) in rows {
            b.put(k, v);
        }
        (r, nos)
    }
}

/// What an event may take on disk before sled compacts: its body and rows
/// written to the log, and once more when their pages are rewritten.
fn disk_cost(ev: &NewEvent) -> u64 {
    2 * (ev.body.len() as u64 + 1024)
}

/// The event stored under the dedupe row `dkey`, in this batch (`seen`)
/// or the tree.
fn lookup_duplicate(
    b: &mut Batch<'_>,
    dkey: &[u8],
    seen: &HashMap<Vec<u8>, EventId>,
) -> Result<Option<Accepted>, StoreError> {
    if let Some(id) = seen.get(dkey) {
        return Ok(Some(Accepted {
            id: *id,
            duplicate: true,
        }));
    }
    Ok(b.get(dkey)?
        .and_then(|v| EventId::from_slice(&v))
        .map(|id| Accepted { id, duplicate: true }))
}

/// Take `ev`'s share of `room`. The floor is checked once per batch, and a
/// batch can hold hundreds of large bodies: those past the room wait for the
/// provider's retry.
fn spend(room: &mut Option<u64>, ev: &NewEvent) -> Result<(), StoreError> {
    let Some(left) = room.as_mut() else {
        return Ok(());
    };
    let cost = disk_cost(ev);
    if cost > *left {
        return Err(StoreError::NoRoom(format!(
            "disk nearly full: this callback would take the store under store.min_free ({} MiB free above it)",
            *left >> 20
        )));
    }
    *left -= cost;
    Ok(())
}
