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
//! it is stored all the same, under a key of its own (the key and its body's
//! hash: the provider's retries of it are still duplicates), and verified on
//! its own: whichever agrees with the provider's record is delivered. An
//! event is vouched for once it was found to agree, or a delivery of it was
//! attempted (verification let it go, or an operator released it), or when
//! it is a polled result (the provider's own record); a callback with its
//! key is then a duplicate as on any route. The delivery states read are
//! the store's, so this holds across restarts, on either backend.

use sha2::{Digest, Sha256};

use crate::delivery::verify_gate::Verifier;
use crate::store::{Accepted, DeliveryState, EventView, NewEvent, Origin, Store, StoreError};

/// Append `event`; `verifier`: its route's, when it has `verify = "fetch"`.
pub async fn append(store: &Store, verifier: Option<&Verifier>, event: NewEvent) -> Result<Accepted, StoreError> {
    let Some(verifier) = verifier else {
        return store.append(event).await;
    };
    let first = store.append(event.clone()).await?;
    if !first.duplicate {
        return Ok(first);
    }
    let Some(owner) = store.event_view(first.id).await? else {
        return Ok(first);
    };
    if owner.event.body == event.body || verifier.agreed(first.id) || vouched(&owner) {
        return Ok(first);
    }
    let own = own_key(&event.dedupe_hash, &event.body);
    tracing::info!(route = %event.meta.route, owner = %first.id,
        "callback shares its dedupe key with an event not verified yet (or held as unverified) but differs from it; stored to be verified on its own");
    store
        .append(NewEvent {
            dedupe_hash: own,
            ..event
        })
        .await
}

/// Whether the event is the provider's own record (a polled result), or a
/// delivery of it was attempted (or made): it was let go by verification,
/// or released by an operator.
fn vouched(view: &EventView) -> bool {
    view.event.meta.origin == Origin::Poll
        || view
            .deliveries
            .iter()
            .any(|d| d.attempts > 0 || d.state == DeliveryState::Delivered)
}

/// The dedupe key of a callback contesting `key`: the key and its body.
fn own_key(key: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"contested\0");
    h.update(key);
    h.update(Sha256::digest(body));
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contesting_callback_is_keyed_by_the_key_and_its_body() {
        let (k, other) = ([1u8; 32], [2u8; 32]);
        assert_eq!(own_key(&k, b"a"), own_key(&k, b"a"), "its retries are duplicates");
        assert_ne!(own_key(&k, b"a"), own_key(&k, b"b"));
        assert_ne!(own_key(&k, b"a"), own_key(&other, b"a"));
        assert_ne!(own_key(&k, b"a"), k);
    }
}
