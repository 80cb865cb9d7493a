//! An acknowledgement applied to the lane's leases ([`State::apply`]):
//! which ids are this request's to settle (its token, its attempt), which
//! are leased here for a later attempt (refused without asking the other
//! relays), and the records of the ones claimed.

use std::collections::HashSet;

use super::super::leases::Lapse;
use super::super::settle::{self, Settled};
use super::super::{AckError, AckRequest, Applied};
use super::State;
use crate::store::EventId;

impl State {
    pub(super) fn apply(&mut self, a: AckRequest) {
        let mut ids: Vec<_> = a.lists.all().copied().collect();
        // Not held for this request: handed out under another token than
        // the one it acknowledges under, or leased now for another attempt
        // than the one it answers (its lease ran out while the answer was
        // on its way, and it was offered again: not that attempt's to settle).
        // The attempt the request names and the one leased now, per id.
        let attempts = |id: &EventId| (a.lists.attempts.get(id).copied(), self.leases.attempt(id));
        let not_ours: Vec<EventId> = ids
            .iter()
            .filter(|id| {
                let other_token = a.under.is_some_and(|under| self.leases.token_gen(id) != Some(under));
                let other_attempt = matches!(attempts(id), (Some(said), Some(now)) if said != now);
                other_token || other_attempt
            })
            .copied()
            .collect();
        let later_here: Vec<EventId> = not_ours
            .iter()
            .filter(|id| matches!(attempts(id), (Some(said), Some(now)) if said < now))
            .copied()
            .collect();
        if !not_ours.is_empty() {
            if !a.partial {
                let _ = a.reply.send(Err(AckError::NotLeased(not_ours)));
                return;
            }
            let not_ours: HashSet<EventId> = not_ours.into_iter().collect();
            ids.retain(|id| !not_ours.contains(id));
        }
        let (claimed, not_held) = if a.partial {
            let (claimed, _) = self.leases.claim_held(&a.holder, &ids, a.arrived);
            let taken: HashSet<EventId> = claimed.iter().map(|(l, _)| l.offer.id).collect();
            // In the order given, those under another token included.
            let not_held = a.lists.all().filter(|id| !taken.contains(id)).copied().collect();
            (claimed, not_held)
        } else {
            match self.leases.claim(&a.holder, &ids, a.arrived) {
                Ok(c) => (c, Vec::new()),
                Err(bad) => {
                    let _ = a.reply.send(Err(AckError::NotLeased(bad)));
                    return;
                }
            }
        };
        if claimed.is_empty() {
            let summary = Default::default();
            let _ = a.reply.send(Ok(Applied {
                summary,
                not_held,
                later_here,
            }));
            return;
        }
        let sub = self.lane.subscriber();
        let acked: HashSet<_> = a.lists.ack.iter().collect();
        let released: HashSet<_> = a.lists.release.iter().collect();
        let items: Vec<Settled> = claimed
            .iter()
            .map(|(l, lapsed)| {
                let (work, number) = (l.offer.item.work.clone(), l.offer.attempt);
                if acked.contains(&work.event.id) {
                    settle::acknowledged(work, number, l.at_ms)
                } else if released.contains(&work.event.id) {
                    match lapsed {
                        None => settle::released(work),
                        // Its lease ran out before the release: that expiry
                        // was a failed attempt (a release only keeps the
                        // retry step of a live lease), recorded now with the
                        // due time it got then.
                        Some(Lapse { due_ms, .. }) => {
                            settle::expired(work, number, l.at_ms, l.length, &sub, Some(*due_ms))
                        }
                    }
                } else {
                    let local = a.lists.local.get(&work.event.id);
                    settle::handed_back(work, number, l.at_ms, &sub, local)
                }
            })
            .collect();
        // Kept until the record is done: put back if it fails.
        self.acking.extend(claimed.into_iter().map(|c| (c.0.offer.id, c)));
        let reply = a.reply;
        let reply = super::super::Reply::new(move |r| {
            let _ = reply.send(r.map(|summary| Applied {
                summary,
                not_held,
                later_here,
            }));
        });
        self.settle(items, Some(reply));
    }
}
