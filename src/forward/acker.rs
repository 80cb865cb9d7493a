//! Acknowledgements: every finished message (delivered locally, or to hand
//! back) comes here; whatever has gathered while the previous request was
//! on its way goes to the relay as one `POST …/ack`. While the relay is away
//! the batch is kept and sent again with back-off (it grows meanwhile). Ids
//! the relay no longer leases to us (expired, or the relay restarted) are
//! dropped from the batch: the relay offers those messages again, with the
//! same id.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::backoff::Backoff;
use super::client::{Relay, RelayError};
use crate::pull::wire::MAX_ACK_IDS;
use http::StatusCode;

/// A message the local service answered, or that was cut off.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: String,
    pub end: End,
}

/// How a message ended here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// 2xx: acknowledge.
    Delivered,
    /// Any other answer, or none: hand back (the retry schedule's next step).
    HandBack,
    /// Cut off because the forwarder stops: released, offered again at once
    /// without using a retry step.
    Release,
}

/// Tries of one batch before it is given up (the relay re-offers it when the
/// leases expire): about a minute of back-off.
const MAX_TRIES: u32 = 12;

/// Run until the sender side is closed and everything received was sent (or given up).
pub async fn run(relay: Arc<Relay>, mut rx: mpsc::Receiver<Finished>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    // A relay older than the `release` list refuses it (400, unknown field):
    // from then on releases go as hand-backs, as that relay expects.
    let mut hand_back_releases = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut tries = 0;
        loop {
            while batch.len() < MAX_ACK_IDS {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            // A message offered again (its lease had expired) may have finished twice: the last word counts.
            let mut seen = HashSet::new();
            batch.reverse();
            batch.retain(|f| seen.insert(f.id.clone()));
            batch.reverse();
            let list =
                |end: End| -> Vec<String> { batch.iter().filter(|f| f.end == end).map(|f| f.id.clone()).collect() };
            let (ids, mut retry, mut release) = (list(End::Delivered), list(End::HandBack), list(End::Release));
            if hand_back_releases {
                retry.append(&mut release);
            }
            match relay.ack(&ids, &retry, &release).await {
                Ok(a) => {
                    tracing::debug!(
                        acknowledged = a.acknowledged,
                        retried = a.retried,
                        dead = a.dead,
                        "acknowledged"
                    );
                    backoff.reset();
                    break;
                }
                Err(RelayError::NotLeased(late)) => {
                    tracing::warn!(ids = ?late, "these leases ended before the acknowledgement (expired, or the relay \
                        restarted); the relay will offer them again with the same id");
                    batch.retain(|f| !late.contains(&f.id));
                    if batch.is_empty() {
                        break;
                    }
                }
                Err(RelayError::Status(StatusCode::BAD_REQUEST, why))
                    if !release.is_empty() && why.contains("release") =>
                {
                    tracing::warn!(
                        "the relay does not know released messages (an older version): handing them back instead"
                    );
                    hand_back_releases = true;
                }
                Err(e) if e.is_transient() && tries < MAX_TRIES => {
                    tries += 1;
                    let wait = backoff.next_delay();
                    tracing::debug!(error = %e, retry_in_ms = wait.as_millis() as u64, "acknowledgement not delivered; trying again");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, ids = ?ids, retry = ?retry,
                        "acknowledgement given up; the relay will offer these messages again when their leases expire");
                    break;
                }
            }
        }
    }
}
