//! Every way a callback can end, and the one place where an outcome becomes
//! an HTTP answer (status, body, headers).

use std::borrow::Cow;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

use crate::store::Accepted;

/// Every way a callback can end.
#[derive(Debug)]
pub enum Answer {
    Accepted(Accepted),
    NotFound,
    MethodNotAllowed,
    Forbidden,
    Unauthorized(String),
    TooLarge(usize),
    BadRequest(String),
    /// The body has a `Content-Encoding` other than `identity` (not read).
    UnsupportedEncoding,
    /// The body has a `Transfer-Encoding` other than `chunked` (not read).
    UnsupportedTransferCoding,
    Timeout,
    Unavailable,
    /// The store has no room for this callback above `store.min_free`
    /// (`StoreError::NoRoom`): 503 with `Retry-After`, logged as a refusal
    /// (rate-limited); the store stays ready for smaller ones. Why.
    NoRoom(String),
    /// Requests not yet authenticated would hold more than `server.max_body_memory`.
    Busy,
    /// A reload changed the request's route while the callback was received
    /// or stored — renamed or removed it, or replaced all of its subscribers —
    /// or (cluster mode) none of its subscribers has a NATS consumer yet:
    /// not stored (503 with `Retry-After`); the retry lands on the route in
    /// force (or 404). Not given when the route in force after the reload
    /// took it (see `moved::route_in_force`).
    RouteChanged,
}

impl Answer {
    /// What a refusal's answer says in its `error` (and its log line's
    /// `reason`); None for an accepted callback.
    pub fn error(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            Answer::Accepted(_) => return None,
            Answer::NotFound => "no route for this path".into(),
            Answer::MethodNotAllowed => "use POST".into(),
            Answer::Forbidden => "source address not allowed".into(),
            Answer::Unauthorized(why) | Answer::BadRequest(why) => why.as_str().into(),
            Answer::TooLarge(max) => format!("body larger than {max} bytes").into(),
            Answer::UnsupportedEncoding => "Content-Encoding not supported; send the body uncompressed".into(),
            Answer::UnsupportedTransferCoding => {
                "Transfer-Encoding other than chunked not supported; send the body uncompressed".into()
            }
            Answer::Timeout => "request body not received in time".into(),
            Answer::Unavailable => "cannot store the callback right now; retry later".into(),
            Answer::NoRoom(_) => "the relay's disk is nearly full; retry later".into(),
            Answer::Busy => "too many request bodies are being received at once; retry later".into(),
            Answer::RouteChanged => "the configuration changed while the callback was received; retry".into(),
        })
    }
}

/// The one mapping from outcome to HTTP answer.
pub fn respond(answer: &Answer) -> Response<Full<Bytes>> {
    let status = match answer {
        Answer::Accepted(_) => StatusCode::OK,
        Answer::NotFound => StatusCode::NOT_FOUND,
        Answer::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Answer::Forbidden => StatusCode::FORBIDDEN,
        Answer::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Answer::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Answer::BadRequest(_) => StatusCode::BAD_REQUEST,
        Answer::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Answer::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
        Answer::Timeout => StatusCode::REQUEST_TIMEOUT,
        Answer::Unavailable | Answer::NoRoom(_) | Answer::Busy | Answer::RouteChanged => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let body = match (answer, answer.error()) {
        (Answer::Accepted(a), _) => serde_json::json!({"id": a.id.to_string(), "duplicate": a.duplicate}),
        (_, error) => serde_json::json!({ "error": error.unwrap_or_default() }),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    match answer {
        // Not kept either (see below): a `GET` a provider sends to check
        // the URL costs it a new connection; a stranger held a slot idle
        // for 60 s with each (change review, stop 67).
        Answer::MethodNotAllowed => {
            h.insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        // A stranger's (no route, an address or token refused): the
        // connection is not kept for its next request. A 401 earned the
        // idle allowance (`server.idle_timeout`, 60 s): 4,100 requests a
        // minute without credentials held every connection slot, and
        // providers' callbacks waited (resources review, stop 67). A
        // provider is not refused so; a scanner reconnects for each try.
        Answer::NotFound | Answer::Forbidden | Answer::Unauthorized(_) => {
            h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        // The rest of the body was not read: the connection cannot be reused.
        Answer::TooLarge(_) | Answer::Timeout | Answer::UnsupportedTransferCoding => {
            h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        Answer::UnsupportedEncoding => {
            h.insert(header::ACCEPT_ENCODING, header::HeaderValue::from_static("identity"));
            h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        Answer::Busy => {
            h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        Answer::Unavailable | Answer::NoRoom(_) => {
            h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        Answer::RouteChanged => {
            h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        _ => {}
    }
    resp
}
