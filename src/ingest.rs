//! Ingest: turns one provider request into an answer.
//!
//! Route by exact path, check method, source address, token, size, JSON and
//! provider signature, compute the dedupe key, then hand the event to the
//! store's writer and answer only once it is on disk. Every decision is logged
//! (with the token redacted) and counted; [`respond`] is the one place where
//! outcomes become HTTP status codes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};

use crate::app::{App, RouteState};
use crate::auth;
use crate::store::{Accepted, EventMeta, NewEvent};

/// How long a request waits for its event to be on disk before answering 503.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The most a body buffer starts with, whatever `Content-Length` says.
const INITIAL_BODY_BUFFER: u64 = 64 * 1024;

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
    Timeout,
    Unavailable,
}

/// The one mapping from outcome to HTTP answer.
pub fn respond(answer: &Answer) -> Response<Full<Bytes>> {
    let (status, body) = match answer {
        Answer::Accepted(a) => (
            StatusCode::OK,
            serde_json::json!({"id": a.id.to_string(), "duplicate": a.duplicate}),
        ),
        Answer::NotFound => (
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no route for this path"}),
        ),
        Answer::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, serde_json::json!({"error": "use POST"})),
        Answer::Forbidden => (
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "source address not allowed"}),
        ),
        Answer::Unauthorized(why) => (StatusCode::UNAUTHORIZED, serde_json::json!({"error": why})),
        Answer::TooLarge(max) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!({"error": format!("body larger than {max} bytes")}),
        ),
        Answer::BadRequest(why) => (StatusCode::BAD_REQUEST, serde_json::json!({"error": why})),
        Answer::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            serde_json::json!({"error": "request body not received in time"}),
        ),
        Answer::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "cannot store the callback right now; retry later"}),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    match answer {
        Answer::MethodNotAllowed => {
            h.insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        }
        // The rest of the body was not read: the connection cannot be reused.
        Answer::TooLarge(_) | Answer::Timeout => {
            h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        Answer::Unavailable => {
            h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        _ => {}
    }
    resp
}

/// Headers kept with the event (never credentials).
fn kept_headers(headers: &HeaderMap, route: &RouteState) -> Vec<(String, String)> {
    let sig_header = match &route.route.signature {
        Some(crate::config::Signature::HmacSha256 { header, .. }) => Some(header.as_str()),
        _ => None,
    };
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            matches!(k, "user-agent" | "content-type" | "x-forwarded-for")
                || k.starts_with("x-webhook-")
                || k.starts_with("webhook-")
                || Some(k) == sig_header
        })
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .take(32)
        .collect()
}

/// Handle one request on the public listener.
pub async fn handle<B>(app: Arc<App>, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let started = tokio::time::Instant::now();
    let live = app.live();
    // A cheap (shared-bytes) copy, redacted only when a refusal is logged.
    let uri = req.uri().clone();
    let logged_uri = || auth::redact_query(uri.path_and_query().map_or("/", |p| p.as_str()));
    let Some(route) = live.routes.get(uri.path()).cloned() else {
        app.metrics.ingest("", 404);
        tracing::info!(uri = %logged_uri(), peer = %peer.ip(), status = 404, "no route");
        return respond(&Answer::NotFound);
    };
    let source = auth::client_ip(peer.ip(), req.headers(), &live.config.server.trusted_proxies);
    let answer = check_and_store(&app, &live.config.server, &route, req, source, started).await;
    let status = respond(&answer);
    let code = status.status().as_u16();
    app.metrics.ingest(&route.route.name, code);
    let name = route.route.name.as_str();
    let took_us = started.elapsed().as_micros() as u64;
    match &answer {
        Answer::Accepted(a) => {
            if a.duplicate {
                app.metrics
                    .dedupe_hits
                    .get_or_create(&crate::metrics::RouteLabels {
                        route: name.to_string(),
                    })
                    .inc();
            }
            tracing::info!(route = name, source = %source, status = code, event = %a.id, duplicate = a.duplicate, us = took_us, "callback accepted");
        }
        Answer::Unauthorized(why) | Answer::BadRequest(why) => {
            tracing::info!(route = name, source = %source, status = code, reason = %why, uri = %logged_uri(), "callback refused");
        }
        _ => {
            tracing::info!(route = name, source = %source, status = code, uri = %logged_uri(), "callback refused")
        }
    }
    status
}

async fn check_and_store<B>(
    app: &App,
    server: &crate::config::ServerConfig,
    route: &RouteState,
    req: Request<B>,
    source: auth::Source,
    started: tokio::time::Instant,
) -> Answer
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let r = &route.route;
    if req.method() != Method::POST {
        return Answer::MethodNotAllowed;
    }
    if !auth::ip_allowed(source, &r.allow_ips) {
        return Answer::Forbidden;
    }
    if !r.tokens.is_empty() {
        let presented = auth::presented_tokens(req.uri().query(), req.headers());
        if !auth::token_matches(&presented, &r.tokens) {
            let why = if !presented.is_empty() {
                "wrong token"
            } else {
                "missing token"
            };
            return Answer::Unauthorized(why.into());
        }
    }
    let max = server.max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Answer::TooLarge(max);
    }
    let (parts, mut body) = req.into_parts();
    let deadline = started + server.read_timeout;
    // The declared length is only a claim: memory grows with what arrives.
    let mut buf = BytesMut::with_capacity(declared.map_or(4096, |n| n.min(INITIAL_BODY_BUFFER) as usize));
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Answer::Timeout,
            Ok(None) => break,
            Ok(Some(Err(e))) => return Answer::BadRequest(format!("error reading body: {e}")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > max {
                        return Answer::TooLarge(max);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    let body = buf.freeze();
    let json = if r.json {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => Some(v),
            Err(e) => return Answer::BadRequest(format!("body is not valid JSON: {e}")),
        }
    } else {
        None
    };
    if let Some(sig) = &r.signature {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Err(e) = auth::verify_signature(sig, &parts.headers, &body, json.as_ref(), now) {
            return Answer::Unauthorized(format!("bad provider signature: {e}"));
        }
    }
    let (hash, fallback) = dedupe_hash(&r.dedupe_key, json.as_ref(), &body);
    if fallback {
        app.metrics
            .dedupe_fallback
            .get_or_create(&crate::metrics::RouteLabels { route: r.name.clone() })
            .inc();
        if !route.fallback_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(route = %r.name, pointers = ?r.dedupe_key, "dedupe key field missing from a callback; using the body hash (logged once per route, counted in hookrelay_dedupe_fallback_total)");
        }
    }
    let meta = EventMeta {
        route: r.name.clone(),
        received_ms: crate::store::now_ms(),
        source: source.to_string(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: kept_headers(&parts.headers, route),
        subscribers: r.subscribers.iter().map(|s| s.name.clone()).collect(),
        dedupe: hex::encode(hash),
        dedupe_fallback: fallback,
    };
    // Never leave a provider waiting on a wedged disk: it gives up at 15 s.
    let commit = app.committer.commit(NewEvent {
        meta,
        dedupe_hash: hash,
        body,
    });
    let result = tokio::time::timeout(COMMIT_TIMEOUT, commit).await.unwrap_or_else(|_| {
        Err(crate::store::StoreError::Unavailable(
            "the store did not confirm the write in time".into(),
        ))
    });
    match result {
        Ok(a) => {
            app.store_ok.store(true, Ordering::Relaxed);
            Answer::Accepted(a)
        }
        Err(e) => {
            app.store_ok.store(false, Ordering::Relaxed);
            tracing::error!(route = %r.name, error = %e, "cannot persist callback; answering 503");
            Answer::Unavailable
        }
    }
}

/// SHA-256 over the values at the dedupe pointers (canonical JSON, separated),
/// or over the raw body when no pointers are set or one is missing.
/// Returns the hash and whether it fell back to the body.
pub fn dedupe_hash(pointers: &[String], json: Option<&serde_json::Value>, body: &[u8]) -> ([u8; 32], bool) {
    let body_hash = || Sha256::digest(body).into();
    if pointers.is_empty() {
        return (body_hash(), false);
    }
    let Some(json) = json else {
        return (body_hash(), true);
    };
    let mut h = Sha256::new();
    h.update(b"pointers\0");
    for p in pointers {
        match json.pointer(p) {
            Some(v) if !v.is_null() => {
                h.update(v.to_string().as_bytes());
                h.update([0x1f]);
            }
            _ => return (body_hash(), true),
        }
    }
    (h.finalize().into(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dedupe_key_uses_pointer_values_only() {
        let p = vec!["/data/task_id".to_string(), "/code".to_string()];
        let a = json!({"code": 200, "msg": "a", "data": {"task_id": "t1"}});
        let b = json!({"code": 200, "msg": "different", "data": {"task_id": "t1"}});
        let c = json!({"code": 500, "msg": "a", "data": {"task_id": "t1"}});
        let (ha, fa) = dedupe_hash(&p, Some(&a), b"x");
        let (hb, _) = dedupe_hash(&p, Some(&b), b"y");
        let (hc, _) = dedupe_hash(&p, Some(&c), b"x");
        assert!(!fa);
        assert_eq!(ha, hb);
        assert_ne!(ha, hc);
    }

    #[test]
    fn missing_pointer_falls_back_to_body_hash() {
        let p = vec!["/data/task_id".to_string()];
        let v = json!({"code": 200, "data": null});
        let (h, fallback) = dedupe_hash(&p, Some(&v), b"body");
        assert!(fallback);
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(b"body")));
    }

    #[test]
    fn string_and_number_values_differ() {
        let p = vec!["/id".to_string()];
        let (a, _) = dedupe_hash(&p, Some(&json!({"id": "1"})), b"");
        let (b, _) = dedupe_hash(&p, Some(&json!({"id": 1})), b"");
        assert_ne!(a, b);
    }
}
