//! Replays, applied on the writer thread so they are ordered with the
//! results and cursor moves of the lanes: a finished delivery gets a due-index
//! row (due now, schedule from the start, history kept); a delivery still
//! waiting for a later retry is moved to now; one already due (being sent, or
//! about to be: an earlier replay, say) starts its schedule again and is
//! marked, the replay applied if an attempt under way fails; one not
//! attempted yet is left alone.
//! A replay of the event itself marks what it queues released (the result
//! row's flag, read with the work): a callback held as unverified is sent.

use std::collections::{BTreeMap, BTreeSet};

use super::codec;
use super::group_commit::{Batch, Writer};
use super::keys;
use crate::store::result::verdict_letter;
use crate::store::{DeadReplay, DeliveryState, EventId, Replayed, StoreError};

/// Dead letters re-queued per writer message (the caller loops).
pub(super) const DEAD_CHUNK: usize = 1000;

/// How far a replay of all dead letters got: the `X` key it goes on from,
/// and the last one that was there when it started (inclusive bounds).
#[derive(Debug)]
pub(super) struct DeadRange {
    next: Vec<u8>,
    last: Vec<u8>,
}

/// Whether a replay queues a delivery in `state` at `now_ms`: a finished
/// one, or one waiting for a later retry (moved to now). One due already
/// is left alone (its due row may be handed out), as is one never
/// attempted.
pub(crate) fn replay_queues(state: &DeliveryState, now_ms: u64) -> bool {
    match state {
        DeliveryState::Retrying { due_ms } | DeliveryState::AwaitingMedia { due_ms } => *due_ms > now_ms,
        DeliveryState::Pending => false,
        DeliveryState::Dead | DeliveryState::Delivered | DeliveryState::Skipped => true,
    }
}

/// Which replay asks (as in cluster mode's `Asked`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// One event's: what it queues is released.
    Event,
    /// One event's for a delivery that must be dead as it is applied
    /// (`only=dead`), released too.
    EventIfDead,
    /// The dead letters' (their loop reads the letters): not released.
    DeadLetter,
}

impl Writer {
    /// Queue `route`'s event `id` again for `sub`; whether anything was
    /// queued. A replay of the event itself releases what it queues: a
    /// callback held as unverified is delivered (kept in the result row it
    /// writes).
    fn replay_one(
        &mut self,
        b: &mut Batch<'_>,
        route: u32,
        id: EventId,
        sub: u32,
        now_ms: u64,
        asked: Asked,
    ) -> Result<bool, StoreError> {
        let released = asked != Asked::DeadLetter;
        let rkey = keys::result(id, sub);
        let Some(v) = b.get(&rkey)? else {
            // No result: still pending in the log (or being attempted).
            return Ok(false);
        };
        let mut row = codec::decode_result(&v).ok_or_else(|| StoreError::Corrupt(format!("result of {id}")))?;
        if asked == Asked::EventIfDead && row.state != DeliveryState::Dead {
            return Ok(false);
        }
        if !replay_queues(&row.state, now_ms) {
            // Due already, its due row may be handed out (a second one would
            // send it twice): left as it is, its retry schedule starts again
            // (for work not read yet), and the replay is marked, to be
            // applied to the failure of work read before it
            // (`Writer::add_record`): due at once, its schedule from the
            // start, the last of its schedule too; a replay of the event
            // releases it now. At step 0 it is a replay's own attempt (or one
            // not attempted yet): asking again adds nothing (a click twice
            // sends one attempt).
            if row.step != 0 && !matches!(row.state, DeliveryState::Pending) {
                row.step = 0;
                row.replay_asked = true;
                row.released |= released;
                b.put(rkey, codec::encode_result(&row));
            }
            return Ok(false);
        }
        match row.state {
            // (Pending is not queued: above.)
            DeliveryState::Pending | DeliveryState::Delivered | DeliveryState::Skipped => {}
            DeliveryState::Retrying { due_ms } | DeliveryState::AwaitingMedia { due_ms } => {
                self.del_due(b, sub, due_ms, id)?
            }
            DeliveryState::Dead => b.del(keys::dead(sub, id)),
        }
        self.put_due(b, route, sub, now_ms, id)?;
        row.replayed(now_ms, released);
        b.put(rkey, codec::encode_result(&row));
        Ok(true)
    }

    /// Replay one event to all its subscribers or one (`dead_only`: only a
    /// delivery that is dead as the replay is applied); None when there is
    /// no such event.
    pub(super) fn replay(
        &mut self,
        id: EventId,
        only: Option<&str>,
        dead_only: bool,
        now_ms: u64,
    ) -> Result<Option<Vec<Replayed>>, StoreError> {
        let tree = self.inner.tree.clone();
        let reg = super::read_lock(&self.inner.registry).clone();
        let mut found = None;
        for route in reg.route_numbers() {
            if let Some(v) = tree.get(keys::log(route, id))? {
                found = Some((
                    route,
                    codec::decode_header(&v)
                        .ok_or_else(|| StoreError::Corrupt(format!("event {id}")))?
                        .0,
                ));
                break;
            }
        }
        let Some((header_route, header)) = found else {
            return Ok(None);
        };
        let mut b = Batch::new(&tree);
        let mut out = Vec::new();
        let mut woken = Vec::new();
        for sub in header.subscribers {
            let name = reg.sub_name(sub).unwrap_or_default().to_string();
            // A subscriber removed from the config has no lane to send it.
            if only.is_some_and(|o| o != name) || !reg.route_subs(header_route).contains(&sub) {
                continue;
            }
            let asked = if dead_only { Asked::EventIfDead } else { Asked::Event };
            let queued = self.replay_one(&mut b, header_route, id, sub, now_ms, asked)?;
            if queued {
                woken.push(sub);
            }
            out.push(Replayed {
                subscriber: name,
                queued,
            });
        }
        self.commit(b)?;
        for sub in woken {
            self.inner.wake(sub);
        }
        Ok(Some(out))
    }

    /// Re-queue up to a chunk of dead letters of configured subscribers (all,
    /// or one), from `at` (None: a new replay of what is dead now); the
    /// counts and where the next step goes on. A subscriber removed from the
    /// config has no lane to send them: its dead letters stay listed.
    /// A verdict of `verify = "fetch"` on a route not in `checked` (one
    /// that no longer verifies) stays a dead letter (counted).
    pub(super) fn replay_dead(
        &mut self,
        only: Option<&str>,
        checked: &BTreeSet<String>,
        at: Option<DeadRange>,
        now_ms: u64,
    ) -> Result<(DeadReplay, Option<DeadRange>), StoreError> {
        let tree = self.inner.tree.clone();
        let reg = super::read_lock(&self.inner.registry).clone();
        let at = match at {
            Some(at) => at,
            // Nothing after the last letter now is part of this replay.
            None => match tree.scan_prefix([keys::X]).keys().next_back().transpose()? {
                Some(last) => DeadRange {
                    next: vec![keys::X],
                    last: last.to_vec(),
                },
                None => return Ok((DeadReplay::default(), None)),
            },
        };
        // In key order (subscriber number first), so one key says how far a
        // replay got: a letter that dies again behind it is not seen again.
        let configured: BTreeSet<u32> = reg
            .route_numbers()
            .into_iter()
            .flat_map(|r| reg.route_subs(r).to_vec())
            .filter(|s| only.is_none_or(|o| reg.sub_name(*s) == Some(o)))
            .collect();
        let mut b = Batch::new(&tree);
        let mut counts = BTreeMap::new();
        let mut verdicts_left = 0;
        let mut n = 0;
        let mut next = None;
        'subs: for sub in configured {
            let prefix = keys::dead_prefix(sub);
            let from = at.next.clone().max(prefix.clone());
            for item in tree.range(from..keys::prefix_end(&prefix)).keys() {
                let k = item?;
                if *k > *at.last {
                    break 'subs;
                }
                if n == DEAD_CHUNK {
                    next = Some(k.to_vec());
                    break 'subs;
                }
                n += 1;
                let (Some(id), Some(route)) = (keys::id_at_5(&k), reg.sub_route(sub)) else {
                    b.del(k.to_vec());
                    continue;
                };
                // A letter of a route the subscriber was moved from (its
                // event is in that route's log, its result says dead): that
                // route has no lane for it now; it stays listed, as a
                // removed subscriber's do.
                let dead = || -> Result<Option<crate::store::result::ResultRow>, StoreError> {
                    Ok(tree
                        .get(keys::result(id, sub))?
                        .and_then(|v| codec::decode_result(&v))
                        .filter(|r| r.state == DeliveryState::Dead))
                };
                if !tree.contains_key(keys::log(route, id))? && dead()?.is_some() {
                    continue;
                }
                // A verdict where no check holds it again: an unverified or
                // duplicate callback would be sent (stop 73's review).
                if !reg.route_name(route).is_some_and(|r| checked.contains(r))
                    && dead()?.is_some_and(|r| verdict_letter(r.last_error.as_deref()))
                {
                    verdicts_left += 1;
                    continue;
                }
                // Also drops a stray dead-letter row (unreadable, or whose result says otherwise).
                b.del(k.to_vec());
                if self.replay_one(&mut b, route, id, sub, now_ms, Asked::DeadLetter)? {
                    *counts
                        .entry(reg.sub_name(sub).unwrap_or_default().to_string())
                        .or_default() += 1;
                }
            }
        }
        self.commit(b)?;
        for name in counts.keys() {
            if let Some(sub) = reg.sub(name) {
                self.inner.wake(sub);
            }
        }
        let done = DeadReplay {
            requeued: counts,
            verdicts_left,
        };
        Ok((done, next.map(|next| DeadRange { next, last: at.last })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_queues_finished_deliveries_and_later_retries_only() {
        let now = 1_000_000;
        for s in [DeliveryState::Dead, DeliveryState::Delivered, DeliveryState::Skipped] {
            assert!(replay_queues(&s, now), "{s:?}");
        }
        assert!(!replay_queues(&DeliveryState::Pending, now));
        for later in [true, false] {
            let due_ms = if later { now + 1 } else { now };
            for s in [
                DeliveryState::Retrying { due_ms },
                DeliveryState::AwaitingMedia { due_ms },
            ] {
                assert_eq!(replay_queues(&s, now), later, "{s:?}");
            }
        }
    }
}
