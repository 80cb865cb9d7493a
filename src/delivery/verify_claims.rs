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
//! `REMEMBER` families, and read from the store when not known: a
//! contestant whose owner was already let go (a delivery of it attempted,
//! before a restart too, on either backend) is a duplicate.

use std::sync::Mutex;

use crate::ingest::contested::{vouched, CONTESTS};
use crate::store::{Event, EventId, Store};

use super::verify_gate::Recent;

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
    /// holds it (by this relay's memory, or by the store: its owner let go).
    pub async fn claim(&self, store: &Store, event: &Event) -> Claim {
        let family = family(event);
        if let Some(w) = self.lock().known.get(&family) {
            return decide(*w, event.id);
        }
        let owner_went =
            family != event.id && matches!(store.event_view(family).await, Ok(Some(owner)) if vouched(&owner));
        let mut winners = self.lock();
        let winner = match winners.known.get(&family) {
            Some(w) => *w,
            None => {
                let w = if owner_went { family } else { event.id };
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
}
