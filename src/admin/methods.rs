//! Which methods each admin endpoint takes, and the `405` (with `Allow`)
//! for any other, answered before the guard's checks.

use http::{header, StatusCode};

use super::{error, Reply};

/// The methods an admin endpoint takes (`None`: no such endpoint).
pub(super) fn allowed(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["healthz"]
        | ["readyz"]
        | ["metrics"]
        | ["api", "status"]
        | ["api", "events"]
        | ["api", "events", _]
        | ["api", "dead-letters"]
        | ["api", "subscribers"]
        | ["api", "media"]
        | ["api", "media", _]
        | ["api", "tasks", _]
        | ["ui", ..] => Some("GET, HEAD"),
        ["api", "events", _, "replay"] | ["api", "dead-letters", "replay"] | ["api", "routes", _, "submit"] => {
            Some("POST")
        }
        ["api", "tasks"] => Some("GET, HEAD, POST"),
        _ => None,
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
