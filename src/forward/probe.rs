//! Asking the relay whether it recorded a delivery made here whose
//! acknowledgement was never confirmed (its answer lost, or given up while
//! the relay was away past the lease and its lapse), when the id is offered
//! again for a later attempt. Recorded: that acknowledgement reached the
//! relay, so the offer is an operator's replay and is posted (taken as the
//! same message, it was acknowledged unsent: the replay lost). Not
//! recorded (the lease lapsed, a failed attempt, and this is the message
//! offered again): acknowledged again unsent, as before. No answer (the
//! relay away, its answer lost: asked again meanwhile): released, offered
//! again and asked about then; taken for "not recorded", it lost the
//! replay (5 of 53 questions whose answer a soak's proxy cut, stop 76).
//! Refused with the id named `unknown` (the relay's store not answering,
//! the record unreadable): asked again, then released, as unanswered.
//!
//! The question is the acknowledgement itself, sent again with the attempt
//! it was for: the relay leases the id now for the later attempt, so it
//! refuses it (`409`), naming it `delivered` when its history shows that
//! attempt acknowledged (`pull::delivered`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::{Relay, RelayError};
use super::unacked::Unacked;

/// The longest the question is asked for (again while the relay is away);
/// well within the stop's wait for deliveries in flight.
const ASK_LIMIT: Duration = Duration::from_secs(8);
/// The first pause before asking again (doubling, at most 1 s).
const AGAIN_AFTER: Duration = Duration::from_millis(100);

/// Whether the relay refused the question saying it cannot tell about
/// `id` now (its store not answering, the record unreadable): asked again,
/// then released like an unanswered one, never taken for "not recorded".
fn not_told(e: &RelayError, id: &str) -> bool {
    matches!(e, RelayError::NotLeased { unknown, .. } if unknown.iter().any(|u| u == id))
}

/// Whether `e` leaves the question unanswered: the relay away (or its
/// answer lost), or it cannot tell ([`not_told`]). Asked again, then
/// released.
fn unanswered(e: &RelayError, id: &str) -> bool {
    e.is_transient() || not_told(e, id)
}

/// What the relay said about an offer of a later attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Said {
    /// It recorded the delivery here (now confirmed in `unacked`): the
    /// offer is an operator's replay, to post.
    Replay,
    /// It did not (or cannot be asked: a relay before `attempts`): the
    /// message offered again, acknowledged unsent.
    Same,
    /// No answer within the limit: released, asked about at its next offer.
    Unknown,
}

/// Ask whether the relay recorded `id`'s delivery here for attempt
/// `delivered`, now that it offers it for `attempt` (see the module).
pub(super) async fn ask(
    relay: &Relay,
    unacked: &Unacked,
    id: &str,
    delivered: u32,
    attempt: u32,
    until: tokio::time::Instant,
) -> Said {
    let ids = [id.to_string()];
    let tried = BTreeMap::from([(id.to_string(), delivered)]);
    let limit = until.min(tokio::time::Instant::now() + ASK_LIMIT);
    let mut pause = AGAIN_AFTER;
    let last = loop {
        let asked = relay.ack(&ids, &[], &[], BTreeMap::new(), tried.clone());
        match tokio::time::timeout_at(limit, asked).await {
            Ok(Err(e)) if unanswered(&e, id) && tokio::time::Instant::now() + pause < limit => {
                tracing::debug!(event = %id, error = %e, "asking the relay again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Ok(answer) => break Some(answer),
            Err(_) => break None,
        }
    };
    match last {
        Some(Err(RelayError::NotLeased {
            delivered: recorded, ..
        })) if recorded.iter().any(|r| r == id) => {
            tracing::info!(event = %id, attempt, delivered,
                "offered again after the relay recorded its delivery here (the answer to that acknowledgement was \
                 lost): an operator's replay, posted");
            unacked.confirmed(&ids, &tried);
            Said::Replay
        }
        Some(Err(e)) if unanswered(&e, id) => {
            tracing::warn!(event = %id, attempt, delivered, error = %e,
                "the relay did not say whether it recorded this message's delivery here; releasing it (offered \
                 again, asked about then)");
            Said::Unknown
        }
        // Refused, not named: not recorded (its lease lapsed). Applied: an
        // earlier relay took the acknowledgement for the lease it holds now.
        Some(Err(RelayError::NotLeased { .. }) | Ok(_)) => {
            tracing::debug!(event = %id, attempt, delivered,
                "offered again with its delivery here not recorded: acknowledged again, not posted");
            Said::Same
        }
        Some(Err(e)) => {
            tracing::warn!(event = %id, attempt, delivered, error = %e,
                "the relay cannot say whether it recorded this message's delivery here; acknowledging it again \
                 unsent (were it an operator's replay, replay it again)");
            Said::Same
        }
        None => {
            tracing::warn!(event = %id, attempt, delivered,
                "the relay did not say in time whether it recorded this message's delivery here; releasing it \
                 (offered again, asked about then)");
            Said::Unknown
        }
    }
}
