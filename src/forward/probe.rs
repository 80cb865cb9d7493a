//! Asking the relay whether it recorded a delivery made here whose
//! acknowledgement was never confirmed (its answer lost, or given up while
//! the relay was away past the lease and its lapse), when the id is offered
//! again for a later attempt. Recorded: that acknowledgement reached the
//! relay, so the offer is an operator's replay and is posted (taken as the
//! same message, it was acknowledged unsent: the replay lost). Not
//! recorded (the lease lapsed, a failed attempt, and this is the message
//! offered again): acknowledged again unsent, as before.
//!
//! The question is the acknowledgement itself, sent again with the attempt
//! it was for: the relay leases the id now for the later attempt, so it
//! refuses it (`409`), naming it `delivered` when its history shows that
//! attempt acknowledged (`pull::delivered`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::{Relay, RelayError};
use super::unacked::Unacked;

/// The longest the question waits for its answer (the offer then is taken
/// as the same message: acknowledged again unsent); well within the stop's
/// wait for deliveries in flight.
const ASK_LIMIT: Duration = Duration::from_secs(5);

/// Whether the relay recorded `id`'s delivery here for attempt `delivered`
/// (then confirmed in `unacked`): its offer for `attempt` is a replay.
pub(super) async fn replayed(
    relay: &Relay,
    unacked: &Unacked,
    id: &str,
    delivered: u32,
    attempt: u32,
    until: tokio::time::Instant,
) -> bool {
    let ids = [id.to_string()];
    let tried = BTreeMap::from([(id.to_string(), delivered)]);
    let limit = until.min(tokio::time::Instant::now() + ASK_LIMIT);
    let asked = relay.ack(&ids, &[], &[], BTreeMap::new(), tried.clone());
    match tokio::time::timeout_at(limit, asked).await {
        Ok(Err(RelayError::NotLeased {
            delivered: recorded, ..
        })) if recorded.iter().any(|r| r == id) => {
            tracing::info!(event = %id, attempt, delivered,
                "offered again after the relay recorded its delivery here (the answer to that acknowledgement was \
                 lost): an operator's replay, posted");
            unacked.confirmed(&ids, &tried);
            true
        }
        // Refused, not named: not recorded (its lease lapsed). Applied: an
        // earlier relay took the acknowledgement for the lease it holds now.
        Ok(Err(RelayError::NotLeased { .. }) | Ok(_)) => {
            tracing::debug!(event = %id, attempt, delivered,
                "offered again with its delivery here not recorded: acknowledged again, not posted");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(event = %id, attempt, delivered, error = %e,
                "the relay could not say whether it recorded this message's delivery here; acknowledging it again \
                 unsent (were it an operator's replay, replay it again)");
            false
        }
        Err(_) => {
            tracing::warn!(event = %id, attempt, delivered,
                "the relay did not say in time whether it recorded this message's delivery here; acknowledging it \
                 again unsent (were it an operator's replay, replay it again)");
            false
        }
    }
}
