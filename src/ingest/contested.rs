//! Dedupe on `verify = "fetch"` routes: a callback that has not been vouched
//! for does not own its dedupe key.
//!
//! Ingest stores a callback before it is verified, so a forged callback
//! arriving first (a replayed `kie` signature carries any body; a route
//! without a signature, any stranger's) would take the key of the genuine
//! one, which would then be answered as a duplicate and dropped while the
//! forged one is held. So on these routes a callback whose key is taken by
//! an event that is not vouched for — waiting for its verification (no
//! delivery attempted) or held as unverified — and whose body differs from
//! it is stored all the same, under a key of its own (the key and a place
//! number, at most [`CONTESTING`] places; the provider's retries of it find
//! it in its place and are duplicates), marked with the owner's id, and
//! verified on its own. Of the events of one key, the first that agrees with
//! the provider's record claims the key and is delivered; the others are
//! settled as duplicates (`verify_gate`). An event is vouched for once it
//! was found to agree, or a delivery of it was attempted (verification let
//! it go, or an operator released it), or when it is a polled result (the
//! provider's own record); a callback with its key is then a duplicate as on
//! any route. The delivery states read are the store's, so this holds
//! across restarts, on either backend.

use sha2::{Digest, Sha256};

use crate::delivery::verify_gate::Verifier;
use crate::store::{Accepted, Delivery, DeliveryState, EventId, EventView, NewEvent, Origin, Store, StoreError};

/// The kept header a contesting event carries: the id of the event owning
/// its key (shown with the event; never sent on). Verification lets one
/// event of the key go (see `verify_gate`'s claims).
pub const CONTESTS: &str = "hookrelay-contests";

/// The kept header of a callback stored while its route verified (`fetch`):
/// a reload that turns `verify` off leaves its verdicts and its family's
/// claim in force (`delivery::verify_off`), after a restart too. Shown with
/// the event; never sent on.
pub const VERIFIED_BY: &str = "hookrelay-verify";

/// Contesting callbacks stored per key, beside its owner (so at most four
/// events per key): beyond that a different body is answered as a
/// duplicate, so forged bodies cannot make storage or provider look-ups
/// grow. A polled result has a place of its own.
pub const CONTESTING: u8 = 3;

/// Append `event`; `verifier`: its route's, when it has `verify = "fetch"`.
pub async fn append(store: &Store, verifier: Option<&Verifier>, event: NewEvent) -> Result<Accepted, StoreError> {
    match verifier {
        Some(verifier) => append_as(store, verifier, true, event).await,
        None => store.append(event).await,
    }
}

/// Append `event` of a route that does not verify (with a dedupe key a
/// callback's body gives): its key is owned as on any route, but one held
/// by a callback that verification held as `unverified` (stored while the
/// route verified, before a reload turned `verify` off) is contested still,
/// as it was: the genuine callback coming then was answered as a duplicate
/// of the forgery and dropped, its task settled by it (review of stop 74's
/// mend). The cost on such routes: a duplicate reads its key's owner.
pub async fn append_unchecked(store: &Store, verifier: &Verifier, event: NewEvent) -> Result<Accepted, StoreError> {
    append_as(store, verifier, false, event).await
}

/// Whether a key of `route` may be held by a callback verification held
/// (a preset's key, taken from the body): there is none with the message
/// id's key.
pub fn keys_held(route: &crate::config::Route) -> bool {
    route.preset.is_some() && !matches!(route.dedupe_key, crate::dedupe::DedupeKey::MessageId)
}

/// On a route that does not verify (with a preset's key): whether a
/// callback with `body` is the duplicate of `owner`, the event holding its
/// key, as [`append_unchecked`] answers it: not when `owner` is a callback
/// held as `unverified` with another body (stored while the route
/// verified). For a look-up of its own (a reload renaming the route while
/// the callback was received): one that cannot be read is not taken as a
/// duplicate (the caller asks for a retry).
pub async fn duplicate_unchecked(store: &Store, verifier: &Verifier, owner: EventId, body: &[u8]) -> bool {
    if !owner_stored_verifying(store, verifier, owner).await {
        return true;
    }
    match store.event_view(owner).await {
        Ok(Some(view)) => view.event.body == body || vouched(&view) || !held_unverified(&view, verifier),
        Ok(None) => true,
        Err(e) => {
            tracing::warn!(event = %owner, error = %e,
                "cannot read the event a callback may duplicate; asking for a retry");
            false
        }
    }
}

/// Whether `owner` was held as `unverified` (by this relay's memory, or a
/// delivery's result).
fn held_unverified(owner: &EventView, verifier: &Verifier) -> bool {
    verifier.disagreed(owner.event.id) || crate::delivery::verify_off::held_reason(owner).is_some()
}

/// On a route that does not verify, whether the owner of a duplicate's key
/// was stored while it did ([`Verifier::stored_while_verifying`]): its row
/// read alone (a duplicate on a route that never verified costs that read).
/// One that cannot be read is taken as not: the duplicate is answered as on
/// any route.
async fn owner_stored_verifying(store: &Store, verifier: &Verifier, owner: EventId) -> bool {
    match store.event(owner).await {
        Ok(Some(ev)) => verifier.stored_while_verifying(&ev),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(event = %owner, error = %e,
                "cannot read the event a callback duplicates; answered as its duplicate");
            false
        }
    }
}

/// [`append`] on a route that verifies (`verifying`), else
/// [`append_unchecked`].
async fn append_as(
    store: &Store,
    verifier: &Verifier,
    verifying: bool,
    event: NewEvent,
) -> Result<Accepted, StoreError> {
    // A duplicate does not settle a polled result's task in this write: its
    // key's owner may be a forgery, and only the write below, that stores
    // the result beside it, may settle it. Settled by that owner here, a
    // relay stopped before that write left the task settled by the forgery,
    // never polled again; open, it is polled again.
    let mut first_write = event.clone();
    if let Some(mark) = first_write.task.as_mut() {
        mark.if_new = true;
    }
    // Boxed: every callback of a preset's route comes here, and a future
    // as large as the store's and the rest's together is moved on each
    // poll (`store::sled::future_size_tests`).
    let first = Box::pin(store.append(first_write)).await?;
    #[cfg(test)]
    if STOP_AFTER_FIRST_WRITE.with(|s| s.take()) {
        return Err(StoreError::Unavailable(
            "test: the relay stopped after the first write".into(),
        ));
    }
    if !first.duplicate {
        return Ok(first);
    }
    Box::pin(after_duplicate(store, verifier, verifying, event, first)).await
}

/// [`append_as`] once the first write found `event`'s key taken by `first`:
/// its duplicate, or a callback stored beside it.
async fn after_duplicate(
    store: &Store,
    verifier: &Verifier,
    verifying: bool,
    event: NewEvent,
    first: Accepted,
) -> Result<Accepted, StoreError> {
    if !verifying && !owner_stored_verifying(store, verifier, first.id).await {
        // As on any route; a failed settlement leaves the task to its poll.
        return Ok(settled_by_owner(store, event, first).await.unwrap_or_else(|e| {
            tracing::warn!(event = %first.id, error = %e,
                "cannot settle the task of a duplicate callback; its poll settles it");
            first
        }));
    }
    let Some(owner) = store.event_view(first.id).await? else {
        return settled_by_owner(store, event, first).await;
    };
    let owned = owner.event.body == event.body
        || vouched(&owner)
        || if verifying {
            verifier.agreed(first.id)
        } else {
            !held_unverified(&owner, verifier)
        };
    if owned {
        return settled_by_owner(store, event, first).await;
    }
    let key = event.dedupe_hash;
    let mut contesting = event.clone();
    contesting
        .meta
        .headers
        .push((CONTESTS.to_string(), first.id.to_string()));
    let slots = match contesting.meta.origin {
        Origin::Poll => 0..=0,
        _ => 1..=CONTESTING,
    };
    for slot in slots {
        let slotted = NewEvent {
            dedupe_hash: slot_key(&key, slot),
            ..contesting.clone()
        };
        // Settling only if stored: a duplicate of another body in the
        // place (a second forgery) must not settle the task (review of
        // stop 74's mend); a retry of this one is settled below.
        let mut write = slotted.clone();
        if let Some(mark) = write.task.as_mut() {
            mark.if_new = true;
        }
        let placed = store.append(write).await?;
        if !placed.duplicate {
            tracing::info!(route = %contesting.meta.route, owner = %first.id, event = %placed.id,
                "callback shares its dedupe key with an event not verified yet (or held as unverified) but differs from it; stored to be verified on its own");
            return Ok(placed);
        }
        match store.event_view(placed.id).await? {
            Some(v) if v.event.body != contesting.body => continue,
            // A retry of that contesting callback (or it is gone): its
            // task is settled by it.
            _ => return settled_by_owner(store, slotted, placed).await,
        }
    }
    if verifier.first_overflow(first.id) {
        tracing::warn!(route = %contesting.meta.route, owner = %first.id, stored = CONTESTING,
            "more callbacks with different bodies for one dedupe key than are kept: answered as duplicates (forged bodies?)");
    }
    // Not settled by a held owner once `verify` is off: its poll settles it.
    if !verifying {
        return Ok(first);
    }
    settled_by_owner(store, event, first).await
}

/// `event` is a duplicate of `first`, the owner of its key: its task (a
/// polled result's), which the first write left open, is settled by the
/// owner (appended again: a duplicate again, written with the settlement).
async fn settled_by_owner(store: &Store, event: NewEvent, first: Accepted) -> Result<Accepted, StoreError> {
    // Only a final callback settles a task (`TaskMark::settles`).
    if !event.task.as_ref().is_some_and(|m| m.terminal) {
        return Ok(first);
    }
    store.append(event).await
}

#[cfg(test)]
thread_local! {
    /// Tests: the next [`append`] on this thread stops after its first
    /// write, as a relay killed there would (the crash window between the
    /// writes of a contested append).
    pub(crate) static STOP_AFTER_FIRST_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the event is the provider's own record (a polled result), or a
/// delivery of it was attempted (or made): it was let go by verification,
/// or released by an operator.
pub fn vouched(view: &EventView) -> bool {
    view.event.meta.origin == Origin::Poll || view.deliveries.iter().any(went)
}

/// Whether an attempt of the delivery was begun (cluster mode counts one
/// before sending it, so its history may not hold it yet) or it was
/// delivered. A count of hand-outs none of which is known to have begun
/// one is not (`ResultRow::handed_out`).
pub fn went(d: &Delivery) -> bool {
    (d.attempts > 0 && !d.handed_out) || d.state == DeliveryState::Delivered
}

/// The dedupe key of the `slot`-th callback contesting `key`.
pub fn slot_key(key: &[u8; 32], slot: u8) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"contested\0");
    h.update(key);
    h.update([slot]);
    h.finalize().into()
}

#[cfg(test)]
#[path = "contested_tests.rs"]
pub(crate) mod crash_tests;

#[cfg(test)]
#[path = "contested_give_back_tests.rs"]
mod give_back_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contesting_callback_is_keyed_by_the_key_and_its_place() {
        let (k, other) = ([1u8; 32], [2u8; 32]);
        assert_eq!(slot_key(&k, 1), slot_key(&k, 1));
        assert_ne!(slot_key(&k, 1), slot_key(&k, 2));
        assert_ne!(slot_key(&k, 1), slot_key(&other, 1));
        assert_ne!(slot_key(&k, 1), k);
    }
}
