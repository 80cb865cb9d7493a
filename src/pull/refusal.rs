//! A refused pull request in the log, as a refused callback is: the first
//! of its kind in a while at info with its reason, the rest at debug and
//! summed up (`ingest::refused`), so a stranger cannot flood the log.

use super::PullAnswer;
use crate::auth;
use crate::state::App;

/// Log a refused pull request as refused callbacks are: the first of its
/// kind in a while at info, the rest at debug and summed up, so a stranger
/// does not control the log's volume. A known pull subscriber's refusals
/// are their own kind (`pull/<name>`); a path naming none counts with the
/// paths no route matches, and is shown as they are (it may carry a token
/// where the name goes, `/pull/<token>`).
pub(super) fn log(app: &App, path: &str, source: &auth::Source, status: u16, answer: &PullAnswer) {
    let known = super::parse_path(path)
        .filter(|(name, _)| app.delivery.pull_lane(name).is_some())
        .map(|(name, _)| crate::ingest::refused::pull_kind(name));
    // Escaped (`?`): a reason can quote what the client sent (serde names an
    // unknown JSON key raw, and a key may hold a newline).
    let why = match answer {
        PullAnswer::BadRequest(why) | PullAnswer::Unavailable(why) => format!("{why:?}"),
        // As ingest tells them apart (the answer does not: `401` either way).
        PullAnswer::Unauthorized { .. } if known.is_none() => "no such pull subscriber".into(),
        PullAnswer::Unauthorized { token_sent: true } => "wrong token".into(),
        PullAnswer::Unauthorized { token_sent: false } => "missing token".into(),
        PullAnswer::NotFound => "not a pull API path".into(),
        PullAnswer::MethodNotAllowed(m) => format!("method not allowed (only {m})"),
        PullAnswer::TooLarge(n) => format!("body over {n} bytes"),
        PullAnswer::Timeout => "body not received in time".into(),
        PullAnswer::NotLeased { ids, .. } => format!("{} ids not leased to this forwarder", ids.len()),
        PullAnswer::Messages(_) | PullAnswer::Acked(_) => String::new(),
    };
    let (by, shown) = match &known {
        Some(kind) => (
            crate::ingest::refused::RefusedBy::Route {
                name: kind,
                status,
                reason: &why,
            },
            path.to_string(),
        ),
        None => (
            crate::ingest::refused::RefusedBy::NoRoute,
            auth::loggable_unknown_path(path),
        ),
    };
    let log = app.request_refused(by);
    crate::ingest::log_refused_summary(&log);
    if log.first {
        tracing::info!(path = %shown, source = %source, status, reason = %why,
            "pull request refused (refusals of this kind: this line at most once every {}s, the others at debug and summed up)",
            crate::ingest::refused::REFUSED_REQUESTS_SUMMARY_MS / 1000)
    } else {
        tracing::debug!(path = %shown, source = %source, status, reason = %why, "pull request refused")
    }
}
