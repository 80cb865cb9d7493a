//! Admin API (localhost by default): health, readiness, Prometheus metrics,
//! the JSON API for the daemon's status, events, attempts, dead letters,
//! replay, subscribers, archived media (including the stored files
//! themselves, streamed), expected tasks and the submit proxy, and the web
//! console (`/ui`, its client).
//! When `admin.token` is set every path but `/healthz`, `/readyz` and the
//! console's files needs `Authorization: Bearer <token>`. Every request but
//! the health checks passes `guard` (DNS rebinding, cross-site requests); a
//! client sending wrong tokens is slowed down there too (`429`).
//! HEAD is answered as GET, without the body.
//! Store scans run on the blocking pool (the store does that), never on the
//! workers that serve callbacks.

mod endpoint;
mod events;
mod guard;
mod media;
mod metrics;
mod status;
mod subscribers;
pub(crate) mod task_figures;
mod tasks;
mod ui;

pub(crate) use guard::WrongTokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::state::App;
use endpoint::Endpoint;

/// Answers are small JSON documents, or a stored media file streamed.
pub(crate) type AdminBody = UnsyncBoxBody<Bytes, std::io::Error>;
pub(crate) type Reply = Response<AdminBody>;

fn full(b: impl Into<Bytes>) -> AdminBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}
/// A JSON answer, or the status and message of a refusal.
type ApiResult = Result<Value, (StatusCode, String)>;

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut r = Response::new(full(serde_json::to_vec_pretty(&body).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: impl Into<String>) -> Reply {
    reply(status, json!({"error": msg.into()}))
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

/// RFC 3339 time with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The query parameters of a request, decoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn of(req: &Request<impl Sized>) -> Query {
        Query(req.uri().query().map_or_else(Vec::new, |q| {
            form_urlencoded::parse(q.as_bytes()).into_owned().collect()
        }))
    }

    /// A non-empty parameter.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A parameter as given, empty or not (None: absent). For those that
    /// narrow a state-changing request, where an empty one (a script's
    /// unset variable) must be refused, not taken for "absent".
    fn given(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The subscriber a state-changing request is limited to: None when the
    /// parameter is absent (every subscriber). Present, it must name one
    /// subscriber: empty (`?subscriber=`, a script's unset variable),
    /// blank, not a name, or given twice is refused, never taken for
    /// "every subscriber".
    fn subscriber(&self) -> Result<Option<&str>, (StatusCode, String)> {
        let mut given = self
            .0
            .iter()
            .filter(|(k, _)| k == "subscriber")
            .map(|(_, v)| v.as_str());
        let Some(v) = given.next() else { return Ok(None) };
        let bad = |why: String| Err((StatusCode::BAD_REQUEST, why));
        if given.next().is_some() {
            return bad("subscriber is given more than once: name one subscriber (leave it out for all)".into());
        }
        if v.trim().is_empty() {
            return bad(format!(
                "subscriber must not be empty (got {v:?}): name one subscriber, or leave the parameter out for all"
            ));
        }
        if !crate::config::valid_name(v) {
            return bad(format!(
                "invalid subscriber {v:?}: a subscriber name is 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(Some(v))
    }

    /// Refuse a parameter the endpoint does not take: a misspelt one
    /// (`?subscribers=`, `?state=` for `status`) ignored would widen the
    /// request (a replay to every subscriber, a list unfiltered).
    /// A parameter given twice is refused too: only one of them would be
    /// used (`?status=dead&status=pending` is no "either").
    fn only(&self, known: &[&str]) -> Result<(), (StatusCode, String)> {
        let mut seen = std::collections::HashSet::new();
        if let Some((k, _)) = self.0.iter().find(|(k, _)| !seen.insert(k.as_str())) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("parameter {k:?} is given more than once: give it once"),
            ));
        }
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some((k, _)) => Err((
                StatusCode::BAD_REQUEST,
                match known {
                    [] => format!("unknown parameter {k:?}: this endpoint takes none"),
                    _ => format!("unknown parameter {k:?}: this endpoint takes {}", known.join(", ")),
                },
            )),
        }
    }

    fn limit(&self, default: usize) -> Result<usize, (StatusCode, String)> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or((StatusCode::BAD_REQUEST, format!("invalid limit {v:?}: use 1 to 10000"))),
        }
    }
}

/// A store error as the admin API answers it: the store out of reach (NATS
/// away) or its disk too full is a `503` to retry, anything else a `500`.
fn internal(e: crate::store::StoreError) -> (StatusCode, String) {
    match e {
        crate::store::StoreError::Unavailable(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store cannot be reached right now ({why}); try again"),
        ),
        crate::store::StoreError::NoRoom(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}; try again")),
        e => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Request bodies the admin API reads (task registration, the submit proxy).
const MAX_ADMIN_BODY: usize = 1 << 20;

/// The request body, up to [`MAX_ADMIN_BODY`], whole by `deadline` (the
/// request's start plus `server.read_timeout`, as a callback's body): a
/// client sending a byte now and then would otherwise hold its connection
/// (and the request's state) for as long as it liked.
async fn body<B>(req: Request<B>, deadline: tokio::time::Instant) -> Result<Bytes, Reply>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use crate::ingest::Answer;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let b = Box::pin(
        req.into_body()
            .map_err(Into::<Box<dyn std::error::Error + Send + Sync>>::into),
    );
    let (status, msg) = match crate::ingest::read_body(b, declared, MAX_ADMIN_BODY, None, deadline).await {
        Ok((b, _)) => return Ok(b),
        Err(Answer::TooLarge(_)) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} MiB", MAX_ADMIN_BODY >> 20),
        ),
        Err(Answer::Timeout) => (
            StatusCode::REQUEST_TIMEOUT,
            "request body not received within server.read_timeout".to_string(),
        ),
        Err(Answer::BadRequest(why)) => (StatusCode::BAD_REQUEST, format!("cannot read the request body: {why}")),
        Err(_) => (StatusCode::BAD_REQUEST, "cannot read the request body".to_string()),
    };
    // The rest of the body is not read: the connection cannot carry another request.
    let mut r = error(status, msg);
    r.headers_mut()
        .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    Err(r)
}

/// Handle one admin request from `peer`.
pub async fn handle<B>(app: Arc<App>, req: Request<B>, peer: SocketAddr) -> Reply
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let head = req.method() == Method::HEAD;
    let mut r = answer(app, req, peer).await;
    ui::harden(&mut r);
    if head {
        without_body(&mut r);
    }
    r
}

/// A HEAD answer: the GET answer's status and headers (its length among
/// them, when known), no body.
fn without_body(r: &mut Reply) {
    use hyper::body::Body as _;
    if let Some(n) = r.body().size_hint().exact() {
        r.headers_mut().entry(header::CONTENT_LENGTH).or_insert(n.into());
    }
    *r.body_mut() = full(Bytes::new());
}

/// The path's segments, each percent-decoded (an id may hold a space, `:`
/// or `/`, sent as `%20`, `%3A`, `%2F`); `None` when one does not decode to
/// UTF-8.
fn segments(path: &str) -> Option<Vec<String>> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect()
}

async fn answer<B>(app: Arc<App>, req: Request<B>, peer: SocketAddr) -> Reply
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    // HEAD is answered as GET (`handle` leaves the body out).
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => {
            return match app.not_ready_because() {
                None => text(StatusCode::OK, "text/plain", "ready\n".into()),
                Some(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {why}\n"),
                ),
            }
        }
        _ => {}
    }
    // The path decoded once; `None` when a segment is not UTF-8 (answered
    // `400` once the token is checked).
    let decoded = segments(&path);
    let segments: Vec<&str> = decoded.iter().flatten().map(String::as_str).collect();
    let endpoint = decoded.as_ref().and_then(|_| Endpoint::of(&segments));
    // Before the guard's checks: a wrong method is answered as such, not as
    // a request lacking its content type.
    if let Some(e) = endpoint.filter(|e| !e.takes(&method)) {
        return endpoint::not_allowed(e.allowed());
    }
    // A body's deadline: the read_timeout in force when its request starts.
    let deadline = tokio::time::Instant::now() + app.live().config.server.read_timeout;
    let token = app.live().config.admin.token.clone();
    if let Err((status, msg)) = guard::check(&req, token.is_some()) {
        return error(status, msg);
    }
    if ui::is_ui(&path) {
        // Other methods were answered 405 above.
        return ui::serve(&path);
    }
    if let Some(token) = &token {
        let presented = crate::auth::presented_tokens(None, req.headers());
        if !crate::auth::token_matches(&presented, std::slice::from_ref(token)) {
            if let Err(wait) = app.wrong_admin_tokens.count(peer.ip()) {
                let (status, msg) = guard::too_many_guesses(wait);
                let mut r = error(status, msg);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, guard::retry_after(wait).into());
                return r;
            }
            return error(
                StatusCode::UNAUTHORIZED,
                "admin token missing or wrong (Authorization: Bearer ...)",
            );
        }
    }
    let q = Query::of(&req);
    if decoded.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the path {path} is not percent-encoded UTF-8"),
        );
    }
    let Some(endpoint) = endpoint else {
        return error(StatusCode::NOT_FOUND, format!("no admin endpoint {path}"));
    };
    if let Some(known) = endpoint.parameters(&method) {
        if let Err((status, msg)) = q.only(known) {
            return error(status, msg);
        }
    }
    // Every method here is one the endpoint takes (others were answered
    // 405 above).
    let result = match endpoint {
        Endpoint::Tasks if method == Method::POST => {
            let b = match body(req, deadline).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            tasks::register(&app, &b).await
        }
        Endpoint::Submit(route) => {
            let b = match body(req, deadline).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            return tasks::submit(&app, route, &q, b)
                .await
                .unwrap_or_else(|(status, msg)| error(status, msg));
        }
        Endpoint::Metrics => {
            return text(
                StatusCode::OK,
                // What prometheus-client writes: OpenMetrics text.
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics::render(&app).await,
            );
        }
        Endpoint::Status => status::status(&app).await,
        Endpoint::Events => events::list(&app, &q).await,
        Endpoint::Event(id) => events::show(&app, id).await,
        // `only=` empty is refused (below), not taken for no `only`: that
        // would replay a delivery that succeeded.
        Endpoint::Replay(id) => match (q.subscriber(), q.given("only")) {
            (Ok(sub), None) => events::replay(&app, id, sub, false).await,
            (Ok(Some(sub)), Some("dead")) => events::replay(&app, id, Some(sub), true).await,
            (Ok(None), Some("dead")) => Err((
                StatusCode::BAD_REQUEST,
                "only=dead needs a subscriber: name the delivery that must still be dead".into(),
            )),
            (Ok(_), Some(other)) => Err((
                StatusCode::BAD_REQUEST,
                format!("only takes \"dead\" (with a subscriber), not {other:?}"),
            )),
            (Err(e), _) => Err(e),
        },
        Endpoint::DeadLetters => events::dead_letters(&app, &q).await,
        Endpoint::ReplayDead => match q.subscriber() {
            Ok(sub) => events::replay_dead(&app, sub).await,
            Err(e) => Err(e),
        },
        Endpoint::Subscribers => subscribers::list(&app).await,
        Endpoint::Media => media::list(&app, &q).await,
        Endpoint::MediaFile(sha256) => return media::file(&app, sha256).await,
        Endpoint::RetryMedia(id) => media::retry(&app, id).await,
        Endpoint::Tasks => tasks::list(&app, &q).await,
        Endpoint::Task(id) => tasks::show(&app, id, &q).await,
        // The health checks and the console's files are answered above at
        // their own paths; written otherwise (`/healthz/`, `/%75i`): none.
        Endpoint::Healthz | Endpoint::Readyz | Endpoint::Ui => {
            Err((StatusCode::NOT_FOUND, format!("no admin endpoint {path}")))
        }
    };
    match result {
        Ok(v) => reply(StatusCode::OK, v),
        Err((status, msg)) => error(status, msg),
    }
}

/// A filter naming a route or subscriber the configuration does not have
/// (a typo, or one removed whose rows are still listed): said alongside the
/// answer, which may well be empty for that reason.
fn unknown_names(app: &App, route: Option<&str>, subscriber: Option<&str>) -> Option<String> {
    let live = app.live();
    let mut missing = Vec::new();
    if let Some(r) = route.filter(|r| !live.config.routes.iter().any(|c| c.name == *r)) {
        missing.push(format!("route {r:?}"));
    }
    if let Some(s) = subscriber.filter(|s| !live.config.subscribers().any(|c| c.name == *s)) {
        missing.push(format!("subscriber {s:?}"));
    }
    (!missing.is_empty()).then(|| format!("no {} in the configuration", missing.join(" and no ")))
}

/// Add the [`unknown_names`] warning to an answer, if there is one.
fn with_warning(mut v: Value, warning: Option<String>) -> Value {
    if let (Some(w), Some(o)) = (warning, v.as_object_mut()) {
        o.insert("warning".into(), Value::String(w));
    }
    v
}
