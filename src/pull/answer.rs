//! Every way a pull API request can end, and the one place where an outcome
//! becomes an HTTP answer. An unknown subscriber and a wrong token get the
//! same answer (status, body, headers), so the API does not tell which
//! subscriber names exist.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::wire;

#[derive(Debug)]
pub enum PullAnswer {
    Messages(wire::Messages),
    Acked(wire::Acked),
    /// Not a pull API path (`/pull/{subscriber}` or `/pull/{subscriber}/ack`).
    NotFound,
    /// The method this path takes.
    MethodNotAllowed(&'static str),
    /// No such pull subscriber, or the token is missing or wrong
    /// (`token_sent`: one was presented; for the log, not the answer).
    Unauthorized {
        token_sent: bool,
    },
    BadRequest(String),
    TooLarge(usize),
    Timeout,
    /// Some ids are not leased to the caller; nothing was changed, or
    /// (`applied`) the others were applied, as said. `recorded`: those of
    /// them acknowledged as delivered that the store records delivered, and
    /// those it cannot tell about.
    NotLeased {
        ids: Vec<String>,
        applied: Option<wire::Acked>,
        recorded: super::delivered::Recorded,
    },
    /// Shutting down, or the store cannot record: try again shortly.
    Unavailable(String),
}

impl PullAnswer {
    pub fn status(&self) -> StatusCode {
        match self {
            PullAnswer::Messages(_) | PullAnswer::Acked(_) => StatusCode::OK,
            PullAnswer::NotFound => StatusCode::NOT_FOUND,
            PullAnswer::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            PullAnswer::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            PullAnswer::BadRequest(_) => StatusCode::BAD_REQUEST,
            PullAnswer::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PullAnswer::Timeout => StatusCode::REQUEST_TIMEOUT,
            PullAnswer::NotLeased { .. } => StatusCode::CONFLICT,
            PullAnswer::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The one mapping from outcome to HTTP answer.
pub fn respond(answer: &PullAnswer) -> Response<Full<Bytes>> {
    // Messages are encoded straight to bytes: through a `Value` an answer of
    // up to `ANSWER_BUDGET` was held three times (messages, value, text).
    let body = match answer {
        PullAnswer::Messages(m) => return finish(answer, serde_json::to_vec(m).unwrap_or_default()),
        PullAnswer::Acked(a) => serde_json::to_value(a).unwrap_or_default(),
        PullAnswer::NotFound => {
            json!({"error": "not a pull API path: GET /pull/{subscriber} or POST /pull/{subscriber}/ack"})
        }
        PullAnswer::MethodNotAllowed(m) => json!({ "error": format!("use {m} on this path") }),
        PullAnswer::Unauthorized { .. } => {
            json!({"error": "unknown pull subscriber or wrong token (Authorization: Bearer <the subscriber's pull token>)"})
        }
        PullAnswer::BadRequest(why) => json!({ "error": why }),
        PullAnswer::TooLarge(max) => json!({ "error": format!("body larger than {max} bytes") }),
        PullAnswer::Timeout => json!({"error": "request body not received in time"}),
        PullAnswer::NotLeased { ids, applied, recorded } => serde_json::to_value(wire::NotLeased {
            error: match applied {
                None => {
                    "these ids are not leased to you (never handed out, another forwarder's, expired or already \
                         acknowledged); nothing was changed: send the others again without them"
                }
                Some(_) => {
                    "these ids are not leased to you by any relay (never handed out, another forwarder's, \
                            expired or already acknowledged); the others were applied (see applied): do not send \
                            them again"
                }
            }
            .into(),
            not_leased: ids.clone(),
            applied: applied.clone(),
            delivered: recorded.delivered.clone(),
            unknown: recorded.unknown.clone(),
        })
        .unwrap_or_default(),
        PullAnswer::Unavailable(why) => json!({ "error": why }),
    };
    finish(answer, body.to_string().into_bytes())
}

/// The answer with its encoded `body`: status and headers.
fn finish(answer: &PullAnswer, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = answer.status();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match answer {
        PullAnswer::MethodNotAllowed(m) => {
            h.insert(header::ALLOW, HeaderValue::from_static(m));
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // Not kept for a next request: a stranger held a connection slot
        // for the idle allowance with each (see `ingest::answer`).
        PullAnswer::Unauthorized { .. } => {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        PullAnswer::NotFound => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // The rest of the body was not read: the connection cannot be reused.
        PullAnswer::TooLarge(_) | PullAnswer::Timeout => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        PullAnswer::Unavailable(_) => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    resp
}
