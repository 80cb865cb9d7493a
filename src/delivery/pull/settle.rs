//! What a pull subscriber's answer means, recorded in the store: an
//! acknowledgement is a delivery, a hand-back and a lease that ran out follow
//! the subscriber's retry schedule (a dead letter once it is exhausted), a
//! release is offered again at once, a filtered-out message is
//! skipped, a message whose media is not archived yet (`after_archive`) is
//! deferred. Records are written concurrently; the lane lets the work go
//! (`WorkSource::done`) only for those that were recorded, and puts the
//! leases of an acknowledgement it could not record back as they were.

use std::sync::Arc;
use std::time::Duration;

use super::{AckError, AckSummary, LocalAnswer};
use crate::clock;
use crate::config::Subscriber;
use crate::delivery::retry::{classify, Verdict};
use crate::metrics::Metrics;
use crate::store::{Attempt, EventId, Outcome, Store, Ticket, Work};

/// The error text of a hand-back in the attempt history.
pub const HANDED_BACK: &str = "handed back by the pull client";
/// The error text of a lease that ran out (the lease follows it).
pub const LEASE_EXPIRED: &str = "lease expired: no answer from the pull client";

/// One message's result, ready to record.
pub(super) struct Settled {
    pub ticket: Ticket,
    pub event: EventId,
    pub attempt: Option<Attempt>,
    pub outcome: Outcome,
    /// What ended the hand-out, when it was not the client's answer (for the
    /// count and the log line; the outcome alone does not tell).
    pub cause: Cause,
}

/// What ended a hand-out besides an acknowledgement or a hand-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// The client's answer, or no hand-out at all (filtered, deferred, held).
    Answer,
    /// Handed back unfinished by a forwarder that stopped (a retry without
    /// an attempt, like a verifier's wait, but counted and logged as such).
    Released,
    /// The lease ran out without an answer: a failed attempt.
    Expired,
    /// The provider's record decided it before any hand-out (`verify =
    /// "fetch"`: wait, held, duplicate): the verifier counted and logged it;
    /// not a delivery outcome, as for push subscribers.
    Verify,
}

/// The attempt of a hand-out that ended now: the local service's HTTP status
/// when the forwarder said it (the relay did not make the request); a
/// hand-back says so in `error`.
fn attempt(number: u32, at_ms: u64, status: Option<u16>, error: Option<String>) -> Attempt {
    let now = clock::now_ms();
    Attempt {
        attempt: number,
        at_ms,
        duration_ms: now.saturating_sub(at_ms),
        status,
        error,
    }
}

pub(super) fn acknowledged(work: Work, number: u32, at_ms: u64) -> Settled {
    Settled {
        ticket: work.ticket,
        event: work.event.id,
        attempt: Some(attempt(number, at_ms, None, None)),
        outcome: Outcome::Delivered,
        cause: Cause::Answer,
    }
}

/// Handed back, with what the local service answered when the forwarder
/// said it (`the local service answered HTTP 503` after the hand-back text).
pub(super) fn handed_back(
    work: Work,
    number: u32,
    at_ms: u64,
    sub: &Subscriber,
    local: Option<&LocalAnswer>,
) -> Settled {
    let error = match local {
        Some(l) => format!("{HANDED_BACK}: {}", l.describe()),
        None => HANDED_BACK.to_string(),
    };
    let status = local.and_then(|l| l.status);
    // As a push subscriber's answer counts (`retry::classify`): `410` ends
    // the delivery, a `Retry-After` lengthens the wait (capped by
    // `max_retry_after`; the forwarder read it where it counts).
    let verdict = status
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .map(|s| classify(s, None, clock::time_of_day()));
    if verdict == Some(Verdict::Gone) {
        return Settled {
            ticket: work.ticket,
            event: work.event.id,
            attempt: Some(attempt(number, at_ms, status, Some(error))),
            outcome: Outcome::Dead {
                error: "HTTP 410 Gone: the local service wants no more deliveries of it".into(),
            },
            cause: Cause::Answer,
        };
    }
    let after = local.and_then(|l| l.retry_after_ms).map(Duration::from_millis);
    failed(work, number, at_ms, sub, status, error, Cause::Answer, after)
}

/// The lease ran out before an answer (the forwarder died, its service is
/// slower than the lease, the network went away): a failed attempt, like a
/// push delivery's timeout, so a message no delivery ever finishes within
/// the lease ends as a dead letter instead of being offered forever.
/// `due`: when the retry is due, if the lease lapsed first (the delay was
/// chosen when it ran out).
pub(super) fn expired(
    work: Work,
    number: u32,
    at_ms: u64,
    lease: Duration,
    sub: &Subscriber,
    due: Option<u64>,
) -> Settled {
    let error = format!("{LEASE_EXPIRED} within {}", humantime::format_duration(lease));
    let mut s = failed(work, number, at_ms, sub, None, error, Cause::Expired, None);
    if let (Some(at), Outcome::Retry { due_ms }) = (due, &mut s.outcome) {
        *due_ms = at;
    }
    s
}

/// A failed attempt: the retry schedule's next step (no sooner than
/// `retry_after`, capped), or a dead letter once it is exhausted.
#[allow(clippy::too_many_arguments)]
fn failed(
    work: Work,
    number: u32,
    at_ms: u64,
    sub: &Subscriber,
    status: Option<u16>,
    error: String,
    cause: Cause,
    retry_after: Option<Duration>,
) -> Settled {
    let outcome = match sub.retry.next_delay(work.step, retry_after) {
        Some(delay) => Outcome::Retry {
            due_ms: clock::now_ms() + delay.as_millis() as u64,
        },
        None => Outcome::Dead {
            error: format!("{error}; retry schedule exhausted"),
        },
    };
    Settled {
        ticket: work.ticket,
        event: work.event.id,
        attempt: Some(attempt(number, at_ms, status, Some(error))),
        outcome,
        cause,
    }
}

/// Not finished: the forwarder stopped while its service had it. Offered
/// again at once: a retry without an attempt, which keeps its step of the
/// retry schedule (a restart of the private side is not a failure of the
/// delivery). Only for a live lease: one released after it ran out is
/// recorded as the expiry it is ([`expired`]).
pub(super) fn released(work: Work) -> Settled {
    Settled {
        ticket: work.ticket,
        event: work.event.id,
        attempt: None,
        outcome: Outcome::Retry {
            due_ms: clock::now_ms(),
        },
        cause: Cause::Released,
    }
}

pub(super) fn skipped(work: Work) -> Settled {
    Settled {
        ticket: work.ticket,
        event: work.event.id,
        attempt: None,
        outcome: Outcome::Skipped,
        cause: Cause::Answer,
    }
}

/// Not handed out yet: the event's media is still being archived. No
/// attempt; offered once the media is done (or looked at again at `due_ms`).
pub(super) fn deferred(work: Work, due_ms: u64) -> Settled {
    Settled {
        ticket: work.ticket,
        event: work.event.id,
        attempt: None,
        outcome: Outcome::Defer { due_ms },
        cause: Cause::Answer,
    }
}

/// The `hookrelay_deliveries_total` outcome; None for a deferral (not an
/// outcome of the delivery: it is still to come).
fn label(outcome: &Outcome, cause: Cause) -> Option<&'static str> {
    if cause == Cause::Verify {
        return None;
    }
    match outcome {
        Outcome::Delivered => Some("delivered"),
        Outcome::Retry { .. } if cause == Cause::Released => Some("released"),
        Outcome::Retry { .. } if cause == Cause::Expired => Some("expired"),
        Outcome::Retry { .. } => Some("retry"),
        Outcome::Dead { .. } => Some("dead"),
        Outcome::Skipped | Outcome::Gone => Some("skipped"),
        Outcome::Defer { .. } => None,
    }
}

/// Record every result (concurrently), count and log them, answer the
/// acknowledgement (if one asked) once all are written. Each ticket (with
/// its event) and whether it was recorded.
pub(super) async fn record(
    store: Store,
    metrics: Arc<Metrics>,
    subscriber: String,
    items: Vec<Settled>,
    reply: Option<super::Reply>,
) -> Vec<(Ticket, EventId, bool)> {
    #[cfg(test)]
    if reply.is_some() {
        panic_hook::maybe_panic(&subscriber).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    // An acknowledgement's leases are put back if their record fails: their
    // messages stay held (in cluster mode, at NATS) for it sent again.
    let kept = reply.is_some();
    for (i, s) in items.iter().enumerate() {
        let store = store.clone();
        let (ticket, attempt, outcome) = (s.ticket.clone(), s.attempt.clone(), s.outcome.clone());
        tasks.spawn(async move {
            let recorded = match kept {
                true => store.record_kept(&ticket, attempt, outcome).await,
                false => store.record(&ticket, attempt, outcome).await,
            };
            (i, recorded)
        });
    }
    let mut ok = vec![false; items.len()];
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, Ok(()))) => ok[i] = true,
            Ok((_, Err(e))) => failure = Some(e.to_string()),
            Err(e) => failure = Some(e.to_string()),
        }
    }
    let mut summary = AckSummary::default();
    for (s, recorded) in items.iter().zip(&ok) {
        if !recorded {
            continue;
        }
        let counted = label(&s.outcome, s.cause);
        let l = counted.unwrap_or("deferred");
        if counted.is_some() {
            metrics.delivery(&subscriber, l);
        }
        let number = s.attempt.as_ref().map_or(0, |a| a.attempt);
        if s.cause == Cause::Verify {
            // The verifier logged it.
            continue;
        }
        match &s.outcome {
            Outcome::Delivered => {
                summary.acknowledged += 1;
                tracing::info!(subscriber = %subscriber, event = %s.event, attempt = number, outcome = l, "delivered (acknowledged by the pull client)");
            }
            Outcome::Retry { .. } if s.cause == Cause::Released => {
                summary.retried += 1;
                tracing::info!(subscriber = %subscriber, event = %s.event,
                    "released by the pull client (not delivered: it stopped, or had no free slot for it); offering it again");
            }
            Outcome::Retry { .. } if s.cause == Cause::Expired => {
                // Counted for a release that came after its lease ran out:
                // offered again after the retry delay, like a hand-back.
                summary.retried += 1;
                tracing::debug!(subscriber = %subscriber, event = %s.event, attempt = number,
                    "lease expired without an answer from the pull client; offering it again");
            }
            Outcome::Retry { due_ms } => {
                summary.retried += 1;
                tracing::debug!(subscriber = %subscriber, event = %s.event, attempt = number,
                    retry_in_ms = due_ms.saturating_sub(clock::now_ms()), "handed back; will offer again");
            }
            Outcome::Dead { error } => {
                summary.dead += 1;
                tracing::warn!(subscriber = %subscriber, event = %s.event, attempt = number, outcome = l, error = %error, "delivery gave up");
            }
            Outcome::Skipped | Outcome::Gone => {
                tracing::info!(subscriber = %subscriber, event = %s.event, outcome = "skipped", "filter did not match");
            }
            // media_gate logged it.
            Outcome::Defer { .. } => {}
        }
    }
    match &failure {
        // The lane puts the leases back (`State::recorded`): the `503` says to send it again.
        Some(e) if reply.is_some() => tracing::error!(subscriber = %subscriber, error = %e,
            "cannot record a pull acknowledgement; its leases are kept, for the acknowledgement sent again"),
        Some(e) => tracing::error!(subscriber = %subscriber, error = %e,
            "cannot record a pull outcome; the message will be offered again after a restart"),
        None => {}
    }
    if let Some(reply) = reply {
        reply.send(match failure {
            None => Ok(summary),
            Some(e) => Err(AckError::Store(e)),
        });
    }
    items
        .into_iter()
        .zip(ok)
        .map(|(s, ok)| (s.ticket, s.event, ok))
        .collect()
}

/// Tests make the next acknowledgement record of a subscriber panic.
#[cfg(test)]
pub(super) mod panic_hook {
    use std::sync::Mutex;

    use std::time::Duration;

    static NEXT: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

    /// The next record of an acknowledgement for `subscriber` panics after
    /// 800 ms.
    pub fn arm(subscriber: &str) {
        arm_after(subscriber, Duration::from_millis(800));
    }

    /// The next record of an acknowledgement for `subscriber` panics after `delay`.
    pub fn arm_after(subscriber: &str, delay: Duration) {
        NEXT.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((subscriber.to_string(), delay));
    }

    /// Panics after a moment (so that another acknowledgement can come
    /// meanwhile) if armed for `subscriber`.
    pub(super) async fn maybe_panic(subscriber: &str) {
        let armed = {
            let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
            let i = next.iter().position(|(s, _)| s == subscriber);
            i.map(|i| next.remove(i).1)
        };
        if let Some(delay) = armed {
            tokio::time::sleep(delay).await;
            panic!("test: the record task of {subscriber} panics");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_release_is_counted_as_released() {
        // A verifier's wait is a retry without an attempt too: not a release.
        let retry = Outcome::Retry { due_ms: 1 };
        assert_eq!(label(&retry, Cause::Answer), Some("retry"));
        assert_eq!(label(&retry, Cause::Released), Some("released"));
        assert_eq!(label(&retry, Cause::Expired), Some("expired"));
        let dead = Outcome::Dead { error: String::new() };
        assert_eq!(
            label(&dead, Cause::Expired),
            Some("dead"),
            "the last one is a dead letter"
        );
    }
}
