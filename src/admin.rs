//! Admin API (localhost by default): health, readiness, Prometheus metrics and
//! the JSON API for events, attempts, dead letters, replay and subscribers.
//! When `admin.token` is set every path but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::app::App;
use crate::store::{Event, EventId, FinalState};

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(&body).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, json!({"error": msg.into()}))
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

/// RFC 3339 time with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn query(req: &Request<impl Sized>) -> Vec<(String, String)> {
    req.uri().query().map_or_else(Vec::new, |q| {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    })
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Handle one admin request.
pub async fn handle<B>(app: Arc<App>, req: Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method.clone(), path.as_str()) {
        (Method::GET, "/healthz") => return text(StatusCode::OK, "text/plain", "ok\n".into()),
        (Method::GET, "/readyz") => {
            return if app.ready() {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n".into())
            }
        }
        _ => {}
    }
    let live = app.live();
    if let Some(token) = &live.config.admin.token {
        let presented = crate::auth::presented_tokens(None, req.headers());
        if !crate::auth::token_matches(&presented, std::slice::from_ref(token)) {
            return error(
                StatusCode::UNAUTHORIZED,
                "admin token missing or wrong (Authorization: Bearer ...)",
            );
        }
    }
    let q = query(&req);
    // Listings, replays and metrics read (and scan) the store: on the blocking
    // pool, never on the workers that serve callbacks.
    tokio::task::spawn_blocking(move || dispatch(&app, method, &path, &q))
        .await
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "the admin request failed"))
}

/// An authenticated admin request (blocking: reads the store).
fn dispatch(app: &App, method: Method, path: &str, q: &[(String, String)]) -> Response<Full<Bytes>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (method, segments.as_slice()) {
        (Method::GET, ["metrics"]) => {
            return text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics(app))
        }
        (Method::GET, ["api", "events"]) => list_events(app, q),
        (Method::GET, ["api", "events", id]) => show_event(app, id),
        (Method::POST, ["api", "events", id, "replay"]) => replay_event(app, id, param(q, "subscriber")),
        (Method::GET, ["api", "dead-letters"]) => dead_letters(app, q),
        (Method::POST, ["api", "dead-letters", "replay"]) => replay_dead(app, param(q, "subscriber")),
        (Method::GET, ["api", "subscribers"]) => subscribers(app),
        (
            _,
            ["metrics"] | ["api", "events"] | ["api", "events", _] | ["api", "dead-letters"] | ["api", "subscribers"],
        )
        | (_, ["api", "events", _, "replay"] | ["api", "dead-letters", "replay"]) => {
            Err((StatusCode::METHOD_NOT_ALLOWED, "method not allowed here".to_string()))
        }
        _ => Err((StatusCode::NOT_FOUND, format!("no admin endpoint {path}"))),
    };
    match result {
        Ok(v) => reply(StatusCode::OK, v),
        Err((status, msg)) => error(status, msg),
    }
}

type ApiResult = Result<Value, (StatusCode, String)>;

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn parse_id(id: &str) -> Result<EventId, (StatusCode, String)> {
    id.parse()
        .map_err(|_| (StatusCode::BAD_REQUEST, format!("invalid event id {id:?}")))
}

fn limit(q: &[(String, String)], default: usize) -> Result<usize, (StatusCode, String)> {
    match param(q, "limit") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or((StatusCode::BAD_REQUEST, format!("invalid limit {v:?}: use 1 to 10000"))),
    }
}

/// Each subscriber of an event with its final state (None: pending).
type States = Vec<(String, Option<crate::store::StateRecord>)>;

/// Per-subscriber state of an event: pending, delivered, dead or skipped.
fn states(app: &App, ev: &Event) -> Result<States, (StatusCode, String)> {
    ev.meta
        .subscribers
        .iter()
        .map(|s| Ok((s.clone(), app.store.state(ev.id, s).map_err(internal)?)))
        .collect()
}

fn state_name(s: &Option<crate::store::StateRecord>) -> &'static str {
    match s.as_ref().map(|r| &r.state) {
        None => "pending",
        Some(FinalState::Delivered) => "delivered",
        Some(FinalState::Dead) => "dead",
        Some(FinalState::Skipped) => "skipped",
    }
}

/// One word for the event as a whole.
fn overall(states: &States) -> &'static str {
    let names: Vec<&str> = states.iter().map(|(_, s)| state_name(s)).collect();
    if names.contains(&"dead") {
        "dead"
    } else if names.contains(&"pending") {
        "pending"
    } else {
        "delivered"
    }
}

fn list_events(app: &App, q: &[(String, String)]) -> ApiResult {
    let limit = limit(q, 50)?;
    let before = param(q, "before").map(parse_id).transpose()?;
    let status = param(q, "status");
    if let Some(s) = status {
        if !matches!(s, "pending" | "delivered" | "dead") {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("invalid status {s:?}: use pending, delivered or dead"),
            ));
        }
    }
    let mut out = Vec::new();
    let mut cursor = before;
    // Page through the store until `limit` events pass the status filter.
    loop {
        let page = app
            .store
            .recent_events(param(q, "route"), cursor, limit.max(100))
            .map_err(internal)?;
        let exhausted = page.len() < limit.max(100);
        for ev in &page {
            cursor = Some(ev.id);
            let st = states(app, ev)?;
            let word = overall(&st);
            if status.is_some_and(|s| s != word) {
                continue;
            }
            out.push(json!({
                "id": ev.id.to_string(),
                "route": ev.meta.route,
                "received_at": rfc3339(ev.meta.received_ms),
                "source": ev.meta.source,
                "size": ev.body.len(),
                "status": word,
                "subscribers": st.iter().map(|(n, s)| json!({"name": n, "state": state_name(s)})).collect::<Vec<_>>(),
            }));
            if out.len() >= limit {
                break;
            }
        }
        if out.len() >= limit || exhausted {
            break;
        }
    }
    Ok(json!({ "events": out }))
}

fn show_event(app: &App, id: &str) -> ApiResult {
    let id = parse_id(id)?;
    let ev = app
        .store
        .event(id)
        .map_err(internal)?
        .ok_or((StatusCode::NOT_FOUND, format!("no event {id}")))?;
    let st = states(app, &ev)?;
    let mut subs = Vec::new();
    for (name, s) in &st {
        let attempts = app.store.attempts(id, name).map_err(internal)?;
        subs.push(json!({
            "name": name,
            "state": state_name(s),
            "last_error": s.as_ref().and_then(|r| r.last_error.clone()),
            "attempts": attempts.iter().map(|a| json!({
                "attempt": a.attempt,
                "at": rfc3339(a.at_ms),
                "duration_ms": a.duration_ms,
                "status": a.status,
                "error": a.error,
            })).collect::<Vec<_>>(),
        }));
    }
    let (body, encoding) = match std::str::from_utf8(&ev.body) {
        Ok(s) => (Value::String(s.to_string()), "utf-8"),
        Err(_) => {
            use base64::Engine;
            (
                Value::String(base64::engine::general_purpose::STANDARD.encode(&ev.body)),
                "base64",
            )
        }
    };
    Ok(json!({
        "id": ev.id.to_string(),
        "route": ev.meta.route,
        "received_at": rfc3339(ev.meta.received_ms),
        "source": ev.meta.source,
        "content_type": ev.meta.content_type,
        "headers": ev.meta.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "dedupe_fallback": ev.meta.dedupe_fallback,
        "status": overall(&st),
        "body": body,
        "body_encoding": encoding,
        "subscribers": subs,
    }))
}

fn replay_event(app: &App, id: &str, sub: Option<&str>) -> ApiResult {
    let id = parse_id(id)?;
    let queued = app
        .store
        .replay_event(id, sub)
        .map_err(internal)?
        .ok_or((StatusCode::NOT_FOUND, format!("no event {id}")))?;
    if let Some(s) = sub {
        if queued.is_empty() {
            return Err((StatusCode::NOT_FOUND, format!("event {id} has no subscriber {s:?}")));
        }
    }
    let counts = queued.iter().map(|s| (s.clone(), 1)).collect();
    app.delivery.queued(&counts);
    tracing::info!(event = %id, subscribers = ?queued, "replay requested");
    Ok(json!({ "id": id.to_string(), "queued": queued }))
}

fn dead_letters(app: &App, q: &[(String, String)]) -> ApiResult {
    let limit = limit(q, 100)?;
    let list = app
        .store
        .dead_letters(param(q, "subscriber"), limit)
        .map_err(internal)?;
    Ok(json!({
        "dead_letters": list.iter().map(|d| json!({
            "event": d.event,
            "subscriber": d.subscriber,
            "at": rfc3339(d.at_ms),
            "attempts": d.attempts,
            "last_error": d.last_error,
        })).collect::<Vec<_>>()
    }))
}

fn replay_dead(app: &App, sub: Option<&str>) -> ApiResult {
    let counts = app.store.replay_dead_letters(sub).map_err(internal)?;
    app.delivery.queued(&counts);
    let total: usize = counts.values().sum();
    tracing::info!(
        subscriber = sub.unwrap_or("*"),
        requeued = total,
        "dead letters replayed"
    );
    Ok(json!({ "requeued": total, "by_subscriber": counts }))
}

fn subscribers(app: &App) -> ApiResult {
    let live = app.live();
    let mut out = Vec::new();
    let now = crate::store::now_ms();
    for lane in app.delivery.lanes() {
        let s = lane.subscriber();
        let oldest = app.store.oldest_job_event_ms(&s.name);
        out.push(json!({
            "name": s.name,
            "route": s.route,
            "url": s.url.to_string(),
            "state": lane.circuit(),
            "queue_depth": lane.queue_depth(),
            "in_flight": lane.in_flight(),
            "oldest_pending_seconds": oldest.map(|t| now.saturating_sub(t) / 1000),
            "dead_letters": app.store.count_dead_letters(&s.name),
        }));
    }
    // Subscribers removed from the config whose jobs are kept.
    let configured: Vec<String> = live
        .config
        .routes
        .iter()
        .flat_map(|r| r.subscribers.iter().map(|s| s.name.clone()))
        .collect();
    for name in app.store.subscribers_with_rows().map_err(internal)? {
        if configured.contains(&name) {
            continue;
        }
        out.push(json!({
            "name": name,
            "route": null,
            "url": null,
            "state": "removed",
            "queue_depth": app.store.count_jobs(&name),
            "in_flight": 0,
            "oldest_pending_seconds": app.store.oldest_job_event_ms(&name).map(|t| now.saturating_sub(t) / 1000),
            "dead_letters": app.store.count_dead_letters(&name),
        }));
    }
    Ok(json!({ "subscribers": out }))
}

fn metrics(app: &App) -> String {
    let m = &app.metrics;
    let now = crate::store::now_ms();
    for lane in app.delivery.lanes() {
        let name = lane.subscriber().name.clone();
        let labels = m.sub(&name);
        m.queue_depth.get_or_create(&labels).set(lane.queue_depth());
        let age = app
            .store
            .oldest_job_event_ms(&name)
            .map_or(0, |t| now.saturating_sub(t) / 1000);
        m.oldest_pending_seconds.get_or_create(&labels).set(age as i64);
    }
    m.store_bytes.set(app.store.size_on_disk() as i64);
    m.encode()
}
