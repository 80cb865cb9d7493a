//! One delivery attempt: filter, wait for the event's media (`after_archive`
//! subscribers), sign, POST the provider's body byte for byte, classify the
//! answer, decide what follows (delivered, retry, dead letter), record it in
//! the store, count and log it; then read the rest of the answer (so its
//! connection can be reused) — never before the record.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::client::{HttpClient, SendError};
use super::media_gate::{self, Gate};
use super::retry::{classify, Verdict};
use super::{ATTEMPT_HEADER, USER_AGENT};
use crate::clock;
use crate::config::Subscriber;
use crate::error_chain::error_chain;
use crate::metrics::Metrics;
use crate::store::{Attempt, Event, Origin, Outcome, Store, Work};

/// Marks a delivery of a result the relay fetched by polling (its callback never came).
pub const SOURCE_HEADER: &str = "hookrelay-source";

/// Bytes of a subscriber's answer read (so the connection can be reused).
const MAX_RESPONSE: usize = 64 * 1024;

/// Whether an attempt counts for or against the subscriber's health (circuit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Good,
    Bad,
    /// Not a statement about the subscriber (filtered out, event gone).
    Neutral,
}

/// What one attempt needs; cloned per attempt from the lane.
pub(super) struct Attempter {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub sub: Arc<Subscriber>,
    pub client: HttpClient,
    /// Callbacks of `verify = "fetch"` routes are checked at the provider first.
    pub verifier: Arc<super::verify_gate::Verifier>,
    /// Whether it may still send (a reload's handover may drop it before).
    pub phase: Arc<super::handover::Phase>,
    /// Which of the subscriber's failures are logged at `warn`.
    pub failures: Arc<crate::failure_log::FailureLog>,
}

/// Whether a callback passes the subscriber's filter (push and pull alike).
pub fn filter_matches(sub: &Subscriber, event: &Event) -> bool {
    if sub.filter.is_empty() {
        return true;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&event.body) else {
        return false;
    };
    sub.filter.iter().all(|(ptr, want)| json.pointer(ptr) == Some(want))
}

impl Attempter {
    /// Run one attempt and record it. The health signal, and whether the
    /// result was recorded (if not, the store is failing: the work stays
    /// handed out until the restart that follows, then is sent again).
    pub async fn run(self, work: Work) -> (Health, bool) {
        let sub = &self.sub;
        let id = work.event.id;
        if !filter_matches(sub, &work.event) {
            self.metrics.delivery(&sub.name, "skipped");
            tracing::info!(subscriber = %sub.name, event = %id, outcome = "skipped", "filter did not match");
            let recorded = self.record(&work, None, Outcome::Skipped).await;
            return (Health::Neutral, recorded);
        }
        let check = self
            .verifier
            .check(
                &self.store,
                &work.event,
                work.released,
                (work.attempts > 0).then_some(sub.name.as_str()),
            )
            .await;
        if let Some(outcome) = check.outcome(&self.metrics, &sub.name, &work.event) {
            let recorded = self.record(&work, None, outcome).await;
            return (Health::Neutral, recorded);
        }
        let media = if sub.after_archive {
            match media_gate::check(&self.store, &sub.name, id).await {
                Gate::Go(header) => Some(header),
                Gate::Wait { due_ms } => {
                    let recorded = self.record(&work, None, Outcome::Defer { due_ms }).await;
                    return (Health::Neutral, recorded);
                }
            }
        } else {
            None
        };
        let number = work.attempts + 1;
        // Committed to sending before its number is spent: a handover that
        // drops it finds the number unspent (and gives its work back).
        if !self.phase.send(sub.timeout) {
            tracing::debug!(subscriber = %sub.name, event = %id, attempt = number,
                "attempt not sent: a reload stopped its lane before it was sent");
            return (Health::Neutral, false);
        }
        if let Err(e) = self.store.begin_attempt(&work.ticket, number).await {
            // Another relay may have it now, or NATS is away: not sent.
            tracing::debug!(subscriber = %sub.name, event = %id, attempt = number, error = %e,
                "attempt not started: its number could not be recorded");
            return (Health::Neutral, false);
        }
        // Its send's deadline counts from the send, not from the numbering.
        self.phase.sending(sub.timeout);
        let started = tokio::time::Instant::now();
        let at_ms = clock::now_ms();
        let result = self.send(&work.event, number, media).await;
        // Answered: a handover now waits for the record as long as the store
        // may take (cut off, the event would be sent again).
        self.phase.recording(self.store.record_patience());
        let elapsed = started.elapsed();
        self.metrics
            .attempt_seconds
            .get_or_create(&self.metrics.sub(&sub.name))
            .observe(elapsed.as_secs_f64());
        let (status, error, verdict, rest) = match result {
            Ok(answer) => (
                Some(answer.status.as_u16()),
                None,
                classify(answer.status, answer.retry_after.as_ref(), clock::time_of_day()),
                Some((answer.body, answer.deadline)),
            ),
            Err(e) => (None, Some(e.to_string()), Verdict::Retry { after: None }, None),
        };
        let attempt = Attempt {
            attempt: number,
            at_ms,
            duration_ms: elapsed.as_millis() as u64,
            status,
            error: error.clone(),
        };
        let describe = || error.clone().unwrap_or_else(|| format!("HTTP {}", status.unwrap_or(0)));
        let (outcome, health) = match verdict {
            Verdict::Delivered => (Outcome::Delivered, Health::Good),
            Verdict::Gone => (
                Outcome::Dead {
                    error: "HTTP 410 Gone: the subscriber wants no more attempts of this delivery".into(),
                },
                Health::Good,
            ),
            Verdict::Retry { after } => match sub.retry.next_delay(work.step, after) {
                None => (Outcome::Dead { error: describe() }, Health::Bad),
                Some(delay) => (
                    Outcome::Retry {
                        due_ms: clock::now_ms() + delay.as_millis() as u64,
                    },
                    Health::Bad,
                ),
            },
        };
        let label = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
            Outcome::Skipped | Outcome::Gone | Outcome::Defer { .. } => "skipped",
        };
        self.metrics.delivery(&sub.name, label);
        match &outcome {
            Outcome::Retry { due_ms } => {
                let retry_in_ms = due_ms.saturating_sub(clock::now_ms());
                match self.failures.failed() {
                    Some(w) => tracing::warn!(
                        subscriber = %sub.name, event = %id, attempt = number, status, error = %describe(),
                        retry_in_ms, failed_since_last_warning = w.quiet,
                        next_warning_in_s = w.next_in.as_secs(), "delivery failed; will retry"
                    ),
                    None => tracing::debug!(
                        subscriber = %sub.name, event = %id, attempt = number, status, error = error.as_deref(),
                        retry_in_ms, "delivery failed; will retry"
                    ),
                }
            }
            Outcome::Dead { error } => tracing::warn!(
                subscriber = %sub.name, event = %id, attempt = number, outcome = "dead", error = %error, "delivery gave up"
            ),
            _ => {
                if matches!(outcome, Outcome::Delivered) {
                    self.failures.succeeded();
                }
                tracing::info!(
                    subscriber = %sub.name, event = %id, attempt = number, status, ms = elapsed.as_millis() as u64,
                    outcome = label, "delivered"
                )
            }
        }
        let recorded = self.record(&work, Some(attempt), outcome).await;
        // Only now the rest of the answer: a body that is slow to come (or
        // never ends) must not hold back the record of an answer we have,
        // or a stop meanwhile would send the delivery again.
        if let Some((body, deadline)) = rest {
            drain(body, deadline).await;
        }
        (health, recorded)
    }

    async fn record(&self, work: &Work, attempt: Option<Attempt>, outcome: Outcome) -> bool {
        match self.store.record(&work.ticket, attempt, outcome).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(subscriber = %self.sub.name, event = %work.event.id, error = %e,
                    "cannot record the delivery outcome; it will be sent again after a restart (cluster mode: by any relay after store.nats.takeover)");
                false
            }
        }
    }

    /// POST the event; the answer's status, `Retry-After` and body not read
    /// yet, or why there is none.
    async fn send(&self, event: &Event, attempt: u32, media: Option<HeaderValue>) -> Result<Answer, SendError> {
        let sub = &self.sub;
        let id = event.id.to_string();
        let ts = clock::now_secs();
        let Some(url) = sub.url() else {
            return Err(SendError::Build("a pull subscriber is never pushed to".into()));
        };
        let mut req = Request::post(url.clone())
            .header(http::header::USER_AGENT, USER_AGENT)
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header(ATTEMPT_HEADER, attempt.to_string());
        if let Some(m) = media {
            req = req.header(media_gate::MEDIA_HEADER, m);
        }
        if event.meta.origin == Origin::Poll {
            req = req.header(SOURCE_HEADER, "poll");
        }
        if let Some(ct) = &event.meta.content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        if !sub.keys.is_empty() {
            req = req.header(
                "webhook-signature",
                crate::auth::standard_webhooks_signature(&sub.keys, &id, ts, &event.body),
            );
        }
        // hyper sends no length for an empty body; a POST should have one
        // (RFC 9110 §8.6: some front ends answer it `411 Length Required`).
        if event.body.is_empty() {
            req = req.header(http::header::CONTENT_LENGTH, 0);
        }
        let mut req = req
            .body(Full::new(event.body.clone()))
            .map_err(|e| SendError::Build(e.to_string()))?;
        // Configured headers replace ours (e.g. user-agent); reserved ones cannot be configured.
        for (k, v) in &sub.headers {
            req.headers_mut().insert(k, v.clone());
        }
        let deadline = tokio::time::Instant::now() + sub.timeout;
        // An answer that came while this process was paused is read, not
        // taken for a timeout.
        let resp = match crate::clock::pauses::timeout_at(deadline, self.client.request(req)).await {
            Err(_) => return Err(SendError::Timeout(sub.timeout)),
            Ok(Err(e)) => {
                // Named, so a dead letter says which host could not be reached
                // (the URL holds no credentials: they became a header).
                let to = url.authority().map_or_else(String::new, |a| format!("{a}: "));
                return Err(SendError::Connection(format!("{to}{}", error_chain(&e))));
            }
            Ok(Ok(resp)) => resp,
        };
        // The status decides the outcome; the body is read after it is recorded.
        Ok(Answer {
            status: resp.status(),
            retry_after: resp.headers().get(http::header::RETRY_AFTER).cloned(),
            body: resp.into_body(),
            deadline,
        })
    }
}

/// A subscriber's answer: what decides the outcome, and the rest.
struct Answer {
    status: StatusCode,
    retry_after: Option<HeaderValue>,
    body: Incoming,
    /// The attempt's deadline, which bounds reading the body too.
    deadline: tokio::time::Instant,
}

/// Read (and drop) the rest of an answer, bounded in size and by the
/// attempt's deadline, only so that its connection can be reused.
async fn drain(mut body: Incoming, deadline: tokio::time::Instant) {
    let read_all = async {
        let mut read = 0usize;
        while let Some(Ok(f)) = body.frame().await {
            read += f.data_ref().map_or(0, |d| d.len());
            if read > MAX_RESPONSE {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read_all).await;
}

/// How long a lane waits before reading again after the store failed a read.
pub(super) const READ_ERROR_PAUSE: Duration = Duration::from_secs(1);
