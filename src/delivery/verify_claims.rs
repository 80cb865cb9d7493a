//! One deliverable event per dedupe key on `verify = "fetch"` routes.
//!
//! Ingest stores a callback that contests a key not vouched for yet as an
//! event of its own, marked with the id of the event owning the key (see
//! `ingest::contested`): the owner and its contestants are one family. The
//! first event of a family that is let go (it agreed with the provider's
//! record, or it is a polled result) claims the family; every other event
//! of it is settled as a duplicate, however well it agrees, so a stranger's
//! short success form and the genuine callback are not both delivered.
//!
//! The claims are kept in memory for the last [`super::verify_gate`]
//! `REMEMBER` families, and read from the store when not known (after a
//! restart, on another cluster relay, after eviction, on a replay of all
//! dead letters), on either backend: an event already settled as a
//! duplicate stays one (only a replay of the event itself, which releases
//! it, sends it); one a delivery of which was attempted keeps its claim;
//! otherwise another member of its family — the owner and the events in
//! its contest places, found by their dedupe keys — that was let go (a
//! delivery attempted or made) or is a polled result holds the claim.
//! Left open: two relays letting two members go in the same instant,
//! before either recorded an attempt.

use std::sync::Mutex;

use crate::dedupe::DedupeKey;
use crate::ingest::contested::{self, slot_key, vouched, CONTESTING, CONTESTS};
use crate::store::{Event, EventId, EventView, Store};

use super::recent::Recent;

/// The event of a family that was let go, by family (the owner's id).
#[derive(Default)]
pub struct Claims {
    winners: Mutex<Recent<EventId, EventId>>,
}

/// Whether an event that was let go may be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It claimed its family (or had claimed it before).
    Won,
    /// Another event of its family claimed it first.
    DuplicateOf(EventId),
}

/// The owner of `event`'s key: the event it contests, or itself.
pub fn family(event: &Event) -> EventId {
    event
        .meta
        .headers
        .iter()
        .find(|(k, _)| k == CONTESTS)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(event.id)
}

impl Claims {
    /// Claim `event`'s family for it, unless another event of the family
    /// holds it (by this relay's memory, or by the store); `key`: its
    /// route's dedupe key (to find the family's contest places).
    pub async fn claim(&self, store: &Store, event: &Event, key: &DedupeKey) -> Claim {
        let family = family(event);
        if let Some(w) = self.lock().known.get(&family) {
            return decide(*w, event.id);
        }
        let held = held_by(store, event, family, key).await;
        let mut winners = self.lock();
        let winner = match winners.known.get(&family) {
            Some(w) => *w,
            None => {
                let w = held.unwrap_or(event.id);
                winners.insert(family, w);
                w
            }
        };
        decide(winner, event.id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent<EventId, EventId>> {
        self.winners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The event of `event`'s family holding its claim by the store, if not
/// `event` itself (None also when the store cannot tell: it claims).
async fn held_by(store: &Store, event: &Event, family: EventId, key: &DedupeKey) -> Option<EventId> {
    let own = store.event_view(event.id).await.ok().flatten();
    if let Some(own) = &own {
        // Settled a duplicate (one subscriber's delivery may have been
        // released and sent since: the others stay duplicates).
        if let Some(of) = own
            .deliveries
            .iter()
            .find_map(|d| duplicate_of(d.last_error.as_deref()?))
        {
            return Some(of);
        }
        if went(own) {
            return None;
        }
    }
    let owner = if family == event.id {
        own?
    } else {
        store.event_view(family).await.ok().flatten()?
    };
    if family != event.id && vouched(&owner) {
        return Some(family);
    }
    let json = serde_json::from_slice::<serde_json::Value>(&owner.event.body).ok();
    // `verify = "fetch"` needs a preset, whose key the body gives: never the
    // message id's (a header this look-up does not have).
    debug_assert!(!matches!(key, crate::dedupe::DedupeKey::MessageId));
    let (owned, _) = key.hash(json.as_ref(), &owner.event.body, None);
    let mut held = None;
    for slot in 0..=CONTESTING {
        let Ok(Some(id)) = store.event_by_dedupe(&event.meta.route, slot_key(&owned, slot)).await else {
            continue;
        };
        if id == event.id || held.is_some_and(|h| h < id) {
            continue;
        }
        if matches!(store.event_view(id).await, Ok(Some(v)) if vouched(&v)) {
            held = Some(id);
        }
    }
    held
}

/// Whether a delivery of the event was attempted (or made).
fn went(view: &EventView) -> bool {
    view.deliveries.iter().any(contested::went)
}

/// The event a delivery was settled a duplicate of, by its dead letter's
/// error ([`super::verify_gate::Check::outcome`]).
fn duplicate_of(error: &str) -> Option<EventId> {
    error.strip_prefix("duplicate: ")?.split(',').next()?.parse().ok()
}

fn decide(winner: EventId, id: EventId) -> Claim {
    if winner == id {
        Claim::Won
    } else {
        Claim::DuplicateOf(winner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_a_family_wins() {
        let id = |n: u64| EventId::from_parts(n, 0);
        assert_eq!(decide(id(1), id(1)), Claim::Won);
        assert_eq!(decide(id(1), id(2)), Claim::DuplicateOf(id(1)));
    }

    #[test]
    fn a_duplicate_dead_letter_names_the_event_that_went() {
        let of = EventId::from_parts(7, 0);
        let error =
            format!("duplicate: {of}, an event of the same dedupe key, agreed with the provider's record first");
        assert_eq!(duplicate_of(&error), Some(of));
        assert_eq!(duplicate_of(&format!("unverified: duplicate: {of}")), None);
    }
}
