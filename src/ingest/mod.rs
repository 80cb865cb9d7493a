//! Ingest: turns one provider request into an answer.
//!
//! Route by exact path, check method, source address, token, size, JSON and
//! provider signature, compute the dedupe key, then hand the event to the
//! store's writer and answer only once it is on disk. Every decision is logged
//! (with the token redacted) and counted; [`respond`] ([`answer`]) is the one
//! place where outcomes become HTTP status codes. Paths under `/pull/` that
//! are not a route go to the pull API ([`crate::pull`]).

mod answer;
mod body;
mod budget;
pub mod contested;
pub mod duplicates;
mod moved;
pub mod refused;
mod repeated_keys;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response};
use http_body_util::Full;

use refused::{RefusedBy, RefusedLog, RefusedSummary};

pub use answer::{respond, Answer};
pub(crate) use body::read as read_body;
pub use budget::{BodyBudget, BodyLease, Client};
pub use contested::append as append_contested;

use crate::auth;
use crate::state::{App, Live, Refusal, RouteState};
use crate::store::{EventMeta, NewEvent, Origin};

/// Media URLs archived per callback at most, and the longest URL taken: a
/// hostile body cannot make one event cost unbounded rows.
const MAX_MEDIA_URLS: usize = 64;
const MAX_MEDIA_URL_LEN: usize = 8 << 10;

/// The media URLs the route's pointers find in the body (bounded; the rest
/// are logged and left out).
pub(crate) fn media_urls(route: &crate::config::Route, json: Option<&serde_json::Value>) -> Vec<String> {
    let Some(json) = json.filter(|_| !route.media.is_empty()) else {
        return Vec::new();
    };
    let mut urls = crate::media::media_urls(&route.media, json);
    let found = urls.len();
    urls.retain(|u| u.len() <= MAX_MEDIA_URL_LEN);
    urls.truncate(MAX_MEDIA_URLS);
    if urls.len() < found {
        tracing::warn!(route = %route.name, found, kept = urls.len(),
            "callback names more (or longer) media URLs than archived per callback ({MAX_MEDIA_URLS} of up to 8 KiB); the rest are not archived");
    }
    urls
}

/// How long a request waits for its event to be on disk before answering 503.
pub const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
            // `x-forwarded-for` only reaches here from a trusted proxy.
            matches!(k, "user-agent" | "content-type" | "x-forwarded-for")
                || k.starts_with("x-webhook-")
                || k.starts_with("webhook-")
                || Some(k) == sig_header
        })
        .filter_map(|(k, v)| {
            let value = match crate::auth::looks_secret(k.as_str()) {
                true => "REDACTED".to_string(),
                false => v.to_str().ok()?.to_string(),
            };
            Some((k.as_str().to_string(), value))
        })
        .take(32)
        .collect()
}

/// Handle one request on the public listener.
pub async fn handle<B>(app: Arc<App>, mut req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let started = tokio::time::Instant::now();
    let live = app.live();
    // A cheap (shared-bytes) copy, redacted only when a refusal is logged.
    let uri = req.uri().clone();
    // Every query value goes (a provider may send its key as `?key=`, `?sig=`).
    let logged_uri = || auth::redact_query_values(uri.path_and_query().map_or("/", |p| p.as_str()));
    let Some(route) = live.routes.get(uri.path()).cloned() else {
        if crate::pull::is_pull_path(uri.path()) {
            return crate::pull::handle(app, req, peer).await;
        }
        app.metrics.ingest("", 404);
        let shown = auth::loggable_unknown_path(uri.path_and_query().map_or("/", |p| p.as_str()));
        let log = app.request_refused(RefusedBy::NoRoute);
        log_refused_summary(&log);
        if log.first {
            tracing::info!(uri = %shown, peer = %peer.ip(), status = 404,
                "no route (requests to no route: this line at most once every {}s, the others at debug and summed up)",
                refused::REFUSED_REQUESTS_SUMMARY_MS / 1000)
        } else {
            tracing::debug!(uri = %shown, peer = %peer.ip(), status = 404, "no route")
        }
        return respond(&Answer::NotFound);
    };
    let source = auth::client_ip(peer.ip(), req.headers(), &live.config.server.trusted_proxies);
    if !auth::via_trusted_proxy(peer.ip(), &live.config.server.trusted_proxies) {
        // The sender's own claim of who it is: not kept with the event,
        // where it would be shown beside the real source it belies.
        req.headers_mut().remove("x-forwarded-for");
    }
    let mut stored = Stored::default();
    let answer = check_and_store(&app, &live, &route, req, source, started, &mut stored).await;
    let status = respond(&answer);
    let code = status.status().as_u16();
    // A callback stored on the route that replaced its own during a reload
    // is counted and logged under that route's name.
    let name = stored.on.as_deref().unwrap_or(route.route.name.as_str());
    app.metrics.ingest(name, code);
    let took_us = started.elapsed().as_micros() as u64;
    match &answer {
        Answer::Accepted(a) => {
            // A duplicate is counted, and logged in full only as each route's
            // first few of a window ([`duplicates`]).
            let full = !a.duplicate || {
                app.metrics
                    .dedupe_hits
                    .get_or_create(&crate::metrics::RouteLabels {
                        route: name.to_string(),
                    })
                    .inc();
                let line = app.duplicate_accepted(name, &source.to_string());
                if let Some(summary) = &line.summary {
                    summary.log();
                }
                line.full
            };
            match full {
                true => {
                    tracing::info!(route = name, source = %source, status = code, event = %a.id, duplicate = a.duplicate, us = took_us, "callback accepted")
                }
                false => {
                    tracing::debug!(route = name, source = %source, status = code, event = %a.id, duplicate = a.duplicate, us = took_us, "callback accepted")
                }
            }
        }
        // The store's own refusals (unavailable, a reload's new topology,
        // larger than it takes) are logged where they are given: here one
        // line at debug.
        _ if stored.logged => {
            tracing::debug!(route = %name, source = %source, status = code, uri = %logged_uri(), "callback refused")
        }
        // What a stranger controls (a wrong token or signature, a bad body,
        // a slow or oversized one…): rate-limited, summed up.
        refused => {
            // The answer's own text; the disk's state for a want of room.
            let why = match refused {
                Answer::NoRoom(why) => why.as_str().into(),
                other => other.error().unwrap_or_default(),
            };
            let why: &str = &why;
            // Refusals for want of disk room are a kind of their own: a
            // stranger's probes of the route never hide them.
            let disk = matches!(refused, Answer::NoRoom(_)).then(|| crate::ingest::refused::disk_kind(name));
            let log = app.request_refused(RefusedBy::Route {
                name: disk.as_deref().unwrap_or(name),
                status: code,
                reason: why,
            });
            log_refused_summary(&log);
            if log.first && disk.is_some() {
                // The operator's to act on, not a stranger's doing.
                tracing::warn!(route = %name, source = %source, status = code, reason = %why, uri = %logged_uri(),
                    "callback refused (this route's refusals: this line at most once every {}s, the others at debug and summed up)",
                    refused::REFUSED_REQUESTS_SUMMARY_MS / 1000)
            } else if log.first {
                tracing::info!(route = %name, source = %source, status = code, reason = %why, uri = %logged_uri(),
                    "callback refused (this route's refusals: this line at most once every {}s, the others at debug and summed up)",
                    refused::REFUSED_REQUESTS_SUMMARY_MS / 1000)
            } else {
                tracing::debug!(route = %name, source = %source, status = code, reason = %why, uri = %logged_uri(), "callback refused")
            }
        }
    }
    status
}

/// The warning that sums up refused requests, when one is due: how many,
/// how many to no route, and each route's by status with its last reason
/// (refused pull requests count here too, as `pull:<name>`).
pub(crate) fn log_refused_summary(log: &RefusedLog) {
    if let Some(summary) = &log.summary {
        let RefusedSummary {
            refused,
            no_route,
            secs,
            ..
        } = summary;
        let by_route = if summary.routes.is_empty() {
            String::new()
        } else {
            format!("; refused by {summary}")
        };
        tracing::warn!(
            refused,
            no_route,
            "{refused} requests refused in the last {secs}s ({no_route} of them to a path with no route{by_route}); \
             each is logged at debug"
        );
    }
}

/// What [`check_and_store`] tells besides its answer.
#[derive(Default)]
struct Stored {
    /// The route the callback was stored on when not the request's own (the
    /// one that replaced it during a reload).
    on: Option<String>,
    /// The answer is the store's refusal (or a reload's, a route changed),
    /// logged where it was given.
    logged: bool,
}

async fn check_and_store<B>(
    app: &App,
    live: &Arc<Live>,
    route: &RouteState,
    req: Request<B>,
    source: auth::Source,
    started: tokio::time::Instant,
    stored: &mut Stored,
) -> Answer
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let server = &live.config.server;
    let r = &route.route;
    if req.method() != Method::POST {
        return Answer::MethodNotAllowed;
    }
    if !auth::ip_allowed(source, &r.allow_ips) {
        return Answer::Forbidden;
    }
    if !r.tokens.is_empty() {
        let presented = auth::presented_tokens(req.uri().query(), req.headers());
        if !auth::digest_matches(&presented, &r.token_digests) {
            let why = if !presented.is_empty() {
                "wrong token"
            } else {
                "missing token"
            };
            return Answer::Unauthorized(why.into());
        }
    }
    if let Some(refused) = body::coding_refused(req.headers()) {
        return refused;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Requests not authenticated before their body is read (signature
    // routes, routes without a token) share `max_body_memory`, each client
    // a part of it: their headers and their bodies, held until the answer.
    let lease = match r.tokens.is_empty() {
        true => {
            let mut l = app.bodies.lease(budget::Client::of(match source {
                auth::Source::Known(ip) => Some(ip),
                auth::Source::Unknown => None,
            }));
            if !l.grow(budget::header_bytes(req.headers())) {
                return Answer::Busy;
            }
            Some(l)
        }
        false => None,
    };
    let (parts, body) = req.into_parts();
    let (mut body, _lease) =
        match body::read(body, declared, server.max_body, lease, started + server.read_timeout).await {
            Ok(b) => b,
            Err(answer) => return answer,
        };
    // A signature over the raw body is checked before the body is parsed (a
    // stranger's JSON costs several times its size); kie's names the task id
    // inside it, so that one is checked after.
    let over_json = matches!(r.signature, Some(crate::config::Signature::Kie { .. }));
    if let Some(sig) = r.signature.as_ref().filter(|_| !over_json) {
        if let Err(e) = auth::verify_signature(sig, &parts.headers, &body, None, crate::clock::now_secs()) {
            return Answer::Unauthorized(format!("bad provider signature: {e}"));
        }
    }
    let json = if r.json {
        body = body::without_bom(body);
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(_) if (over_json || r.verify == crate::config::Verify::Fetch) && repeated_keys::repeats_a_key(&body) => {
                return Answer::BadRequest(
                    "body names a key twice in one object: its readers may take different values, and this \
                     route's checks read them"
                        .into(),
                )
            }
            Ok(v) => Some(v),
            Err(e) => return Answer::BadRequest(format!("body is not valid JSON: {e}")),
        }
    } else {
        None
    };
    if let Some(sig) = r.signature.as_ref().filter(|_| over_json) {
        if let Err(e) = auth::verify_signature(sig, &parts.headers, &body, json.as_ref(), crate::clock::now_secs()) {
            return Answer::Unauthorized(format!("bad provider signature: {e}"));
        }
    }
    // Read only for the key that uses it.
    let message_id = matches!(r.dedupe_key, crate::dedupe::DedupeKey::MessageId)
        .then(|| parts.headers.get("webhook-id").and_then(|v| v.to_str().ok()))
        .flatten();
    let (hash, fallback) = r.dedupe_key.hash(json.as_ref(), &body, message_id);
    if fallback {
        app.metrics
            .dedupe_fallback
            .get_or_create(&crate::metrics::RouteLabels { route: r.name.clone() })
            .inc();
        if !route.fallback_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(route = %r.name, key = %r.dedupe_key, "dedupe key field missing from a callback; using the body hash (logged once per route, counted in hookrelay_dedupe_fallback_total)");
        }
    }
    let received_ms = crate::clock::now_ms();
    // The event as `rs` stores it (`rs` is the request's route, or the one
    // that replaced it during a reload and takes callbacks like it).
    let store_on = |rs: &RouteState, limit: std::time::Duration| {
        let r = &rs.route;
        let mut headers = kept_headers(&parts.headers, rs);
        if r.verify == crate::config::Verify::Fetch {
            headers.push((contested::VERIFIED_BY.to_string(), "fetch".to_string()));
        }
        let meta = EventMeta {
            route: r.name.clone(),
            received_ms,
            source: match source {
                auth::Source::Known(ip) => Some(ip),
                auth::Source::Unknown => None,
            },
            content_type: body::content_type(&parts.headers),
            headers,
            subscribers: r.subscribers.iter().map(|s| s.name.clone()).collect(),
            dedupe_fallback: fallback,
            origin: Origin::Callback,
        };
        let media = media_urls(r, json.as_ref());
        let verifier = (r.verify == crate::config::Verify::Fetch).then(|| app.delivery.verifier());
        // On a route that verifies by fetch, a callback is not known to be
        // genuine when it is stored: it does not settle its expected task (a
        // forged one held as unverified would leave the task's result lost,
        // never polled). The task is settled by its poll: the provider's record
        // duplicates the verified callback (`called_back`) or is recovered.
        // Nor is its media downloaded before it is verified (a forged one
        // would choose what the relay fetches): the verifier writes that work.
        let task = match verifier {
            Some(_) => None,
            None => json.as_ref().and_then(|j| crate::reconcile::task_mark(r, j)),
        };
        let event = NewEvent {
            meta,
            dedupe_hash: hash,
            body: body.clone(),
            media,
            media_after_verify: verifier.is_some(),
            task,
        };
        // A key held by a callback verification held is contested still once
        // `verify` is off (there is none without a preset's key).
        let held_keys = contested::keys_held(r);
        let store = &app.store;
        let commit = async move {
            match verifier {
                Some(_) => contested::append(store, verifier, event).await,
                None if held_keys => contested::append_unchecked(store, app.delivery.verifier(), event).await,
                None => store.append(event).await,
            }
        };
        async move {
            // Never leave a provider waiting on a wedged disk: it gives up at 15 s.
            tokio::time::timeout(limit, commit).await.unwrap_or_else(|_| {
                Err(crate::store::StoreError::Unavailable(
                    "the store did not confirm the write in time".into(),
                ))
            })
        }
    };
    // A reload while the body arrived may have renamed or removed the route
    // (its subscribers moved or gone), or replaced all of its subscribers:
    // stored as the request began, the event would be nobody's. Or it
    // changed the route's checks (a token revoked): the request passed the
    // old ones. The provider's retry finds the route in force.
    let mut in_force = None;
    match moved::in_force(app, live, route) {
        moved::InForce::Current => {}
        moved::InForce::Reloaded(now) => in_force = Some(now),
        moved::InForce::ChecksChanged => {
            tracing::warn!(route = %r.name,
                "a reload changed how the route checks callbacks (tokens, allowed addresses, signature, …) while this callback was received; answering 503 so that the provider's retry is checked by the route in force");
            stored.logged = true;
            return Answer::RouteChanged;
        }
        moved::InForce::Moved { alike } => {
            if alike {
                if let Some(id) = Box::pin(moved::stored_already(app, r, hash, &body)).await {
                    return Answer::Accepted(crate::store::Accepted { id, duplicate: true });
                }
            }
            tracing::warn!(route = %r.name,
                "a reload renamed or removed the route, or replaced all of its subscribers, while this callback was received; answering 503 so that the provider retries on the current configuration");
            stored.logged = true;
            return Answer::RouteChanged;
        }
    }
    let mut result = store_on(in_force.as_deref().unwrap_or(route), COMMIT_TIMEOUT).await;
    if matches!(result, Err(crate::store::StoreError::RouteChanged(_))) {
        // The store saw a reload's topology before this relay swapped its
        // config (cluster mode: NATS set-up may take seconds, and the
        // provider's retries, `Retry-After: 1`, would land in the same gap):
        // wait for the swap, and store it once on the route now in force.
        if let Some((now, left)) = moved::route_in_force(app, live, route, started).await {
            result = store_on(&now, left).await;
            if result.is_ok() {
                stored.on = Some(now.route.name.clone());
                tracing::info!(route = %r.name, now = %now.route.name,
                    "a reload changed the route while this callback was stored; stored on the route now in force for it");
            }
        }
    }
    stored.logged = result.is_err();
    match result {
        Ok(a) => {
            app.store_took_write();
            Answer::Accepted(a)
        }
        Err(crate::store::StoreError::RouteChanged(_)) => {
            // The store saw the reload's topology before this relay swapped
            // its config (cluster mode: NATS set-up may take seconds).
            tracing::warn!(route = %r.name,
                "a reload renamed or removed the route, or replaced all of its subscribers, while this callback was stored; answering 503 so that the provider retries on the current configuration");
            Answer::RouteChanged
        }
        Err(crate::store::StoreError::TooLarge(max)) => {
            tracing::warn!(route = %r.name, max, "callback larger than the store takes; answering 413");
            Answer::TooLarge(max)
        }
        Err(crate::store::StoreError::NoRoom(why)) => {
            // Not a store failure: smaller callbacks are still taken. The
            // space watcher makes the relay not ready within a second, until
            // the room this one needed is back. Logged with the route's
            // refusals (rate-limited): many may come at once.
            stored.logged = false;
            Answer::NoRoom(why)
        }
        Err(e) => {
            app.set_store_state(Some(e.to_string()));
            match app.store_refused_callback() {
                Refusal::First => tracing::error!(route = %r.name, error = %e,
                    "cannot persist callback; answering 503 (while the store stays unavailable, further refusals are logged at debug and summed up every {}s)",
                    crate::state::REFUSAL_SUMMARY_MS / 1000),
                Refusal::Counted => {
                    tracing::debug!(route = %r.name, error = %e, "cannot persist callback; answering 503")
                }
                Refusal::Summary { refused, secs } => tracing::warn!(error = %e,
                    "{refused} callbacks refused in the last {secs}s while the store is unavailable (answered 503)"),
            }
            Answer::Unavailable
        }
    }
}
