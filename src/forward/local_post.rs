//! One message posted to the local service ([`deliver`]): how it ended,
//! for the acker, and the rest of the local answer, read after.

use super::acker::{End, Finished};
use super::client::{Answer, Local};
use super::status::Status;
use crate::pull::wire;

/// POST one message locally: how it ended, and the rest of the local
/// service's answer, to read after the outcome went to the acker.
pub(super) async fn deliver(
    local: &Local,
    status: &Status,
    m: wire::Message,
    keep_until: tokio::time::Instant,
) -> (Finished, Option<Answer>) {
    status.started();
    let started = tokio::time::Instant::now();
    let (result, rest) = match local.post(&m).await {
        Ok(a) => (Ok(a.status), Some(a)),
        Err(e) => (Err(e), None),
    };
    status.finished(&m.id, m.attempt, &result, started.elapsed());
    let (end, local) = match result.as_ref().is_ok_and(|s| s.is_success()) {
        true => (End::Delivered, None),
        false => {
            let mut local = wire::LocalAnswer::of(&result);
            local.retry_after_ms = rest
                .as_ref()
                .and_then(|a| a.retry_after)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            (End::HandBack, Some(local))
        }
    };
    let finished = Finished {
        end,
        id: m.id,
        local,
        keep_until,
        attempt: m.attempt,
    };
    (finished, rest)
}
