//! `/api/media?event=ID` (an event's media URLs and their states),
//! `POST /api/events/{id}/media/retry` (its failed URLs archived again),
//! `/api/media` (the archive at a glance: queue, recent results, waiting
//! URLs) and `/api/media/{sha256}` (a stored file, streamed). URLs are shown
//! without their query string: a signed URL's query is a credential.

use http::{header, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use serde_json::{json, Value};

use super::{error, internal, rfc3339, ApiResult, Query, Reply};
use crate::media::shown;
use crate::state::App;
use crate::store::{EventId, MediaItem, MediaState};

/// One media URL for the admin API (the `hookrelay-media` fields, plus tries).
pub(super) fn item(i: &MediaItem) -> Value {
    let mut v = crate::delivery::media_gate::item_json(i);
    v["url"] = Value::String(shown(&i.url));
    v["attempts"] = json!(i.attempts);
    v["at"] = json!(rfc3339(i.at_ms));
    if let MediaState::Pending { due_ms } = i.state {
        v["next_try_at"] = json!(rfc3339(due_ms));
    }
    v
}

/// The media of one event, `[]` when it named none.
pub(super) async fn of_event(app: &App, id: EventId) -> Result<Vec<Value>, (StatusCode, String)> {
    let items = app.store.event_media(id).await.map_err(internal)?.unwrap_or_default();
    Ok(items.iter().map(item).collect())
}

pub(super) async fn list(app: &App, q: &Query) -> ApiResult {
    if let Some(id) = q.get("event") {
        let id: EventId = id
            .parse()
            .map_err(|_| (StatusCode::BAD_REQUEST, format!("invalid event id {id:?}")))?;
        if app.store.event(id).await.map_err(internal)?.is_none() {
            return Err((StatusCode::NOT_FOUND, format!("no event {id}")));
        }
        return Ok(json!({ "event": id.to_string(), "media": of_event(app, id).await? }));
    }
    let limit = q.limit(20)?;
    let (recent, waiting) = app.store.recent_media(limit).await.map_err(internal)?;
    Ok(json!({
        "store": app.media.settings().store.describe(),
        "queue_depth": app.store.media_queue(),
        "in_flight": app.media.in_flight(),
        "recent": recent.iter().map(item).collect::<Vec<_>>(),
        "waiting": waiting.iter().map(item).collect::<Vec<_>>(),
    }))
}

/// `POST /api/events/{id}/media/retry`: the event's failed media URLs
/// archived again, from the start of `media.retry` (their deliveries are
/// not sent again by this: a replay of the event sends them once the
/// media is final).
pub(super) async fn retry(app: &App, id: &str) -> ApiResult {
    let id = super::events::parse_id(id)?;
    if app.store.event(id).await.map_err(internal)?.is_none() {
        return Err((StatusCode::NOT_FOUND, format!("no event {id}")));
    }
    let store = app.store.clone();
    let Some(retried) =
        super::events::to_the_end(app, "a media retry", async move { store.retry_media(id).await }).await?
    else {
        return Err((
            StatusCode::CONFLICT,
            format!(
                "event {id} has no media in the archive: it named no media URL, \
                 or its route archives media only once the callback is verified (not yet)"
            ),
        ));
    };
    tracing::info!(event = %id, retried, "media retry requested");
    Ok(json!({ "event": id.to_string(), "retried": retried, "media": of_event(app, id).await? }))
}

/// The stored bytes of a file, streamed with its content type and length.
pub(super) async fn file(app: &App, sha256: &str) -> Reply {
    if crate::media::storage::check_digest(sha256).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "not a SHA-256 digest: use the 64 lower-case hex characters of a stored file",
        );
    }
    let known = match app.store.media_file(sha256.to_string()).await {
        Ok(Some(f)) => f,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no stored file {sha256}")),
        Err(e) => {
            let (status, why) = super::internal(e);
            return error(status, why);
        }
    };
    let reader = match app.media.settings().store.open(sha256).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("file {sha256} is recorded but missing from the media store"),
            )
        }
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("cannot read the media store: {e}")),
    };
    let frames = futures_util::StreamExt::map(reader.stream, |r| r.map(hyper::body::Frame::data));
    let mut resp = http::Response::new(StreamBody::new(frames).boxed_unsync());
    let h = resp.headers_mut();
    let ct = served_type(known.content_type.as_deref());
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(&ct).unwrap_or(header::HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(reader.size));
    // The bytes and their type come from whoever served the file: a browser
    // downloads them rather than rendering them on the admin origin (an
    // archived `text/html` would otherwise show there), in a sandbox if it
    // renders anyway.
    h.insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_str(&format!("attachment; filename=\"{sha256}\"")).expect("hex digits"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    resp
}

/// The type a stored file is sent with: its essence alone (`type/subtype`,
/// lower case), or `application/octet-stream` when it has none or a page of
/// the admin origin would run it as its own script (`<script src>`, a
/// module, a worker: the console's `script-src 'self'` lets it, and
/// `nosniff` only stops other types) or apply it as its style sheet
/// (`style-src 'self'`). The type comes from whoever served the file; so
/// the admin origin never hosts outside code that its
/// Content-Security-Policy would trust. Parameters are dropped: a list of
/// types (`text/plain; a="\"", text/javascript`) is read by a browser up
/// to its last type, and quoting read otherwise here let one through
/// (console review, stop 79). The JavaScript MIME types are the WHATWG MIME
/// Sniffing list.
fn served_type(content_type: Option<&str>) -> String {
    const OPAQUE: &str = "application/octet-stream";
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let well_formed = essence.split_once('/').is_some_and(|(t, sub)| token(t) && token(sub));
    const ACTIVE: &[&str] = &[
        "application/ecmascript",
        "application/javascript",
        "application/x-ecmascript",
        "application/x-javascript",
        "text/ecmascript",
        "text/javascript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
        "text/jscript",
        "text/livescript",
        "text/x-ecmascript",
        "text/x-javascript",
        "text/css",
    ];
    if !well_formed || ACTIVE.contains(&essence.as_str()) {
        return OPAQUE.into();
    }
    essence
}

#[cfg(test)]
mod tests {
    use super::served_type;

    #[test]
    fn a_file_is_sent_with_its_type_alone_and_never_as_script_or_style() {
        let t = |ct: &str| served_type(Some(ct));
        assert_eq!(t("text/plain, text/javascript"), "application/octet-stream");
        assert_eq!(t("text/plain; a=\"x\", text/javascript"), "text/plain");
        // A browser reads the escaped quote as quoted and takes the last type.
        assert_eq!(t("text/plain; a=\"\\\"\", text/javascript"), "text/plain");
        assert_eq!(t("Text/JavaScript; charset=utf-8"), "application/octet-stream");
        assert_eq!(t("text/css"), "application/octet-stream");
        assert_eq!(t("video/mp4; codecs=\"avc1.640028, mp4a.40.2\""), "video/mp4");
        assert_eq!(t("image/png"), "image/png");
        assert_eq!(t("nonsense"), "application/octet-stream");
        assert_eq!(served_type(None), "application/octet-stream");
    }
}
