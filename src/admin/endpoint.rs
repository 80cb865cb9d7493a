//! The admin API's endpoints in one table: what a path names, the methods
//! each takes (any other is answered `405` with `Allow`, before the guard's
//! checks) and the query parameters it takes. The router matches on
//! [`Endpoint`], so an endpoint added without its methods does not build.

use http::{header, Method, StatusCode};

use super::{error, Reply};

/// An admin endpoint, named by its path's percent-decoded segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint<'a> {
    Healthz,
    Readyz,
    Metrics,
    /// The console's files (`/ui`, `/ui/…`).
    Ui,
    Status,
    Events,
    Event(&'a str),
    Replay(&'a str),
    DeadLetters,
    ReplayDead,
    Subscribers,
    Media,
    MediaFile(&'a str),
    /// POST: the event's failed media URLs archived again.
    RetryMedia(&'a str),
    /// GET lists the expected tasks, POST registers one.
    Tasks,
    Task(&'a str),
    Submit(&'a str),
}

impl<'a> Endpoint<'a> {
    /// The endpoint a path's segments name, if any.
    pub(super) fn of(segments: &[&'a str]) -> Option<Endpoint<'a>> {
        Some(match *segments {
            ["healthz"] => Endpoint::Healthz,
            ["readyz"] => Endpoint::Readyz,
            ["metrics"] => Endpoint::Metrics,
            ["ui", ..] => Endpoint::Ui,
            ["api", "status"] => Endpoint::Status,
            ["api", "events"] => Endpoint::Events,
            ["api", "events", id] => Endpoint::Event(id),
            ["api", "events", id, "replay"] => Endpoint::Replay(id),
            ["api", "events", id, "media", "retry"] => Endpoint::RetryMedia(id),
            ["api", "dead-letters"] => Endpoint::DeadLetters,
            ["api", "dead-letters", "replay"] => Endpoint::ReplayDead,
            ["api", "subscribers"] => Endpoint::Subscribers,
            ["api", "media"] => Endpoint::Media,
            ["api", "media", sha256] => Endpoint::MediaFile(sha256),
            ["api", "tasks"] => Endpoint::Tasks,
            ["api", "tasks", id] => Endpoint::Task(id),
            ["api", "routes", route, "submit"] => Endpoint::Submit(route),
            _ => return None,
        })
    }

    /// The methods it takes, as `Allow` lists them.
    pub(super) fn allowed(self) -> &'static str {
        match self {
            Endpoint::Healthz
            | Endpoint::Readyz
            | Endpoint::Metrics
            | Endpoint::Ui
            | Endpoint::Status
            | Endpoint::Events
            | Endpoint::Event(_)
            | Endpoint::DeadLetters
            | Endpoint::Subscribers
            | Endpoint::Media
            | Endpoint::MediaFile(_)
            | Endpoint::Task(_) => "GET, HEAD",
            Endpoint::Replay(_) | Endpoint::ReplayDead | Endpoint::RetryMedia(_) | Endpoint::Submit(_) => "POST",
            Endpoint::Tasks => "GET, HEAD, POST",
        }
    }

    /// Whether it takes `method` (HEAD already read as GET).
    pub(super) fn takes(self, method: &Method) -> bool {
        self.allowed().split(", ").any(|m| m == method.as_str())
    }

    /// The query parameters it takes with `method`; `None` for what is not
    /// checked (`/metrics`, whose scrapers may add their own; the health
    /// checks and the console's files).
    pub(super) fn parameters(self, method: &Method) -> Option<&'static [&'static str]> {
        Some(match self {
            Endpoint::Healthz | Endpoint::Readyz | Endpoint::Metrics | Endpoint::Ui => return None,
            Endpoint::Events => &["route", "status", "task", "before", "limit"],
            Endpoint::Replay(_) => &["subscriber", "only"],
            Endpoint::ReplayDead => &["subscriber"],
            Endpoint::DeadLetters => &["subscriber", "limit"],
            Endpoint::Media => &["event", "limit"],
            Endpoint::Tasks if method == Method::POST => &[],
            Endpoint::Tasks => &["route", "state", "limit"],
            Endpoint::Task(_) => &["route"],
            Endpoint::Submit(_) => &["endpoint"],
            Endpoint::Status
            | Endpoint::Subscribers
            | Endpoint::Event(_)
            | Endpoint::MediaFile(_)
            | Endpoint::RetryMedia(_) => &[],
        })
    }
}

/// `405` for an endpoint asked with a method it does not take, with the
/// methods it does (RFC 9110 §15.5.6: a `405` names them in `Allow`).
pub(super) fn not_allowed(allow: &'static str) -> Reply {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed here (allowed: {allow})"),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}
