//! What an answer from the provider means for the caller: go on, retry later
//! (with a back-off hint), or give up. The body `code` counts; the HTTP status
//! is only used when the body is not the provider's JSON envelope, and for the
//! documented HTTP-level 429.
//!
//! Owns the code table, the back-off policy and the error type. Does not send
//! requests nor keep back-off state (see [`super::client`]).

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::loose::{int_at, message};

/// Why a call did not produce a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400: the request itself was refused (bad JSON, missing taskId, policy).
    BadRequest,
    /// 401: missing or invalid API key. Every call will fail until it is fixed.
    Unauthorized,
    /// 402: the account has no credits left.
    NoCredits,
    /// 404: no such task (or endpoint).
    NotFound,
    /// 422: record null, older than 14 days, bad task id, a URL kie did not make.
    Rejected,
    /// 422 "record status is not success": the task exists but has no result yet.
    NotReady,
    /// 451: the provider could not fetch an input (the task failed for good).
    SourceBlocked,
    /// 501 / 531 as an API answer: the generation failed.
    GenerationFailed,
    /// 505: the feature is disabled for this account.
    Disabled,
    /// 429: rate limited (rejected, not queued).
    RateLimited,
    /// 455: maintenance.
    Maintenance,
    /// 500, 550 (queue full), other 5xx, 408: the provider's side, transient.
    ServerError,
    /// Connection refused, reset, DNS, TLS: nothing (usable) came back.
    Network,
    /// No complete answer within the client's timeout.
    Timeout,
    /// An answer that is not the documented envelope, or a record that does not fit.
    BadAnswer,
    /// Our own pacing (per key / per task) would have had to wait too long.
    LocalLimit,
    /// A create call was sent but no answer came: the task may exist, so
    /// sending it again could start (and bill) a second one.
    OutcomeUnknown,
    /// The caller's input cannot be sent (endpoint path, body not a JSON object).
    InvalidInput,
    /// Any other 4xx code: the same call will not succeed later.
    Other,
}

impl ErrorKind {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::NotReady
                | ErrorKind::RateLimited
                | ErrorKind::Maintenance
                | ErrorKind::ServerError
                | ErrorKind::Network
                | ErrorKind::Timeout
                | ErrorKind::BadAnswer
                | ErrorKind::LocalLimit
        )
    }

    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NoCredits => "no_credits",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Rejected => "rejected",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::SourceBlocked => "source_blocked",
            ErrorKind::GenerationFailed => "generation_failed",
            ErrorKind::Disabled => "disabled",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Maintenance => "maintenance",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Network => "network",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadAnswer => "bad_answer",
            ErrorKind::LocalLimit => "local_limit",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind for an answer code (body `code`, or the HTTP status when the body
/// is not an envelope); `None` for 200. `msg` separates the 422 meanings.
pub fn kind_for_code(code: i64, msg: &str) -> Option<ErrorKind> {
    Some(match code {
        200 => return None,
        400 => ErrorKind::BadRequest,
        401 | 403 => ErrorKind::Unauthorized,
        402 => ErrorKind::NoCredits,
        404 => ErrorKind::NotFound,
        422 if msg.to_ascii_lowercase().contains("not success") => ErrorKind::NotReady,
        422 => ErrorKind::Rejected,
        429 => ErrorKind::RateLimited,
        451 => ErrorKind::SourceBlocked,
        455 => ErrorKind::Maintenance,
        501 | 531 => ErrorKind::GenerationFailed,
        505 => ErrorKind::Disabled,
        408 | 500..=599 => ErrorKind::ServerError,
        _ => ErrorKind::Other,
    })
}

/// What the caller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Try the same call again, not before `after`.
    RetryLater { after: Duration },
    /// The same call will not succeed; stop (or escalate to an operator).
    GiveUp,
}

/// Exponential back-off: `base`, doubled for each consecutive failure, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `n`th consecutive failure (n ≥ 1).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Back-off per kind of trouble; the defaults follow the provider's advice
/// (429 is "rejected, not queued"; 455 is maintenance, minutes not seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// 429: the whole key pauses for this long (or the `Retry-After`, if longer).
    pub rate_limited: Backoff,
    /// 455: the whole key pauses.
    pub maintenance: Backoff,
    /// 5xx, network, timeouts, odd answers: only the failed call waits.
    pub transient: Backoff,
    /// Upper bound for a `Retry-After` the provider sends.
    pub max_retry_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            rate_limited: Backoff {
                base: Duration::from_secs(2),
                max: Duration::from_secs(300),
            },
            maintenance: Backoff {
                base: Duration::from_secs(60),
                max: Duration::from_secs(900),
            },
            transient: Backoff {
                base: Duration::from_secs(5),
                max: Duration::from_secs(300),
            },
            max_retry_after: Duration::from_secs(600),
        }
    }
}

impl BackoffPolicy {
    /// The longest one wait can be: the longest back-off, or the
    /// `Retry-After` cap if that is longer.
    pub fn longest(&self) -> Duration {
        [
            self.rate_limited.max,
            self.maintenance.max,
            self.transient.max,
            self.max_retry_after,
        ]
        .into_iter()
        .max()
        .unwrap_or_default()
    }

    /// The back-off for `kind` after `n` consecutive failures; `None` when the
    /// kind is not retryable.
    pub fn delay(&self, kind: ErrorKind, n: u32) -> Option<Duration> {
        if !kind.is_retryable() {
            return None;
        }
        Some(match kind {
            ErrorKind::RateLimited => self.rate_limited.delay(n),
            ErrorKind::Maintenance => self.maintenance.delay(n),
            _ => self.transient.delay(n),
        })
    }
}

/// A failed provider call. Holds no secret: the API key only ever travels in
/// a request header, and the target is a path, not a URL with credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub action: Action,
    /// The body `code`, when the provider answered with its envelope.
    pub code: Option<i64>,
    /// The HTTP status, when an answer came back at all.
    pub http_status: Option<u16>,
    /// `GET /api/v1/veo/record-info`, `POST /api/v1/common/download-url`, …
    pub call: String,
    /// The provider's `msg` or the transport error, cut to a readable length.
    pub message: String,
}

impl ProviderError {
    /// The provider itself said it has no such task: `404` or `422` in its
    /// own JSON envelope (a bare page with that status is a gateway's, and
    /// says nothing of the task).
    pub fn no_such_task(&self) -> bool {
        matches!(self.kind, ErrorKind::NotFound | ErrorKind::Rejected) && self.code.is_some()
    }

    /// The call brought no word on the task: the key paused or paced (the
    /// call maybe never sent), the provider's side failed (a 5xx, no
    /// connection, no answer in time, an unreadable answer), or a gateway's
    /// bare `404`/`422` page. Not "not ready yet", which is the task's word.
    pub fn says_nothing_of_the_task(&self) -> bool {
        (self.kind.is_retryable() && self.kind != ErrorKind::NotReady)
            || (matches!(self.kind, ErrorKind::NotFound | ErrorKind::Rejected) && !self.no_such_task())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.action, Action::RetryLater { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self.action {
            Action::RetryLater { after } => Some(after),
            Action::GiveUp => None,
        }
    }

    /// What happened, without what the client advises next (`; giving up`,
    /// `; retry in …`): for a caller that does something else.
    pub fn cause(&self) -> String {
        let mut out = format!("{}: {}", self.call, self.kind);
        match (self.code, self.http_status) {
            (Some(c), Some(s)) => out.push_str(&format!(" (code {c}, HTTP {s})")),
            (None, Some(s)) => out.push_str(&format!(" (HTTP {s})")),
            _ => {}
        }
        if !self.message.is_empty() {
            out.push_str(&format!(": {}", self.message));
        }
        out
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cause())?;
        match self.action {
            Action::RetryLater { after } => write!(f, "; retry in {}", humantime::format_duration(whole(after))),
            Action::GiveUp => f.write_str("; giving up"),
        }
    }
}

impl std::error::Error for ProviderError {}

/// A wait as people read it: whole seconds (whole milliseconds under one).
fn whole(d: Duration) -> Duration {
    if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs() + u64::from(d.subsec_millis() >= 500))
    } else {
        Duration::from_millis(d.as_millis() as u64)
    }
}

/// What went wrong with one call, before the back-off state turns it into a
/// [`ProviderError`] with an [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: ErrorKind,
    pub code: Option<i64>,
    pub http_status: Option<u16>,
    pub message: String,
    /// The provider's `Retry-After`, when it sent one.
    pub hint: Option<Duration>,
}

impl Fault {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Fault {
        Fault {
            kind,
            code: None,
            http_status: None,
            message: message.into(),
            hint: None,
        }
    }
}

/// Read an answer: the envelope's `data` when the body `code` is 200, else
/// the fault. An HTTP 429 is a rejection whatever the body says; a body that
/// is not the envelope is judged by its HTTP status.
pub fn read_answer(http_status: u16, hint: Option<Duration>, body: &[u8]) -> Result<Value, Fault> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let envelope = parsed.as_ref().and_then(|v| int_at(v, "/code").map(|c| (c, v)));
    let fault = |kind, code, message: &str| Fault {
        kind,
        code,
        http_status: Some(http_status),
        message: message.to_string(),
        hint,
    };
    match envelope {
        _ if http_status == 429 => {
            let msg = envelope.and_then(|(_, v)| message(v)).unwrap_or("too many requests");
            Err(fault(ErrorKind::RateLimited, envelope.map(|e| e.0), msg))
        }
        Some((200, v)) => Ok(v.get("data").cloned().unwrap_or(Value::Null)),
        Some((code, v)) => {
            let msg = message(v).unwrap_or("");
            Err(fault(
                kind_for_code(code, msg).unwrap_or(ErrorKind::Other),
                Some(code),
                msg,
            ))
        }
        None => {
            let kind = match kind_for_code(i64::from(http_status), "") {
                Some(k) if !(200..300).contains(&http_status) => k,
                _ => ErrorKind::BadAnswer,
            };
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            Err(fault(kind, None, &format!("not the provider's JSON envelope: {text}")))
        }
    }
}

/// Cut a provider message or transport error to a length fit for logs.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests;
