//! The pull API on the public listener: how a private service with no
//! inbound route fetches its messages (through the relay's TLS).
//!
//! - `GET /pull/{subscriber}?wait=30s&max=10` long-polls: it answers as soon
//!   as there is work, or with an empty list after `wait`; each message is
//!   leased to the caller and carries a fresh Standard Webhooks signature;
//! - `POST /pull/{subscriber}/ack` `{"ids": […], "retry": […]}` acknowledges
//!   or hands back messages leased to the caller (all or nothing on one
//!   host with one lane; split per lane and per relay otherwise, see
//!   [`crate::delivery::pull::ack_across`]).
//!
//! Both need `Authorization: Bearer <the subscriber's pull token>`; a token
//! opens its own subscriber only. Ingest dispatches here for paths under
//! `/pull/` that are not a configured route. Leases, the store and the retry
//! schedule are the pull lane's ([`crate::delivery::pull`]); this module parses,
//! authenticates, signs and answers ([`answer`]); a refused request is
//! logged by `refusal`.

pub mod answer;
mod delivered;
mod refusal;
#[cfg(test)]
mod unknown_tests;
pub mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response};
use http_body_util::Full;

pub use answer::{respond, PullAnswer};

use crate::auth::{self, Secret};
use crate::config::PULL_PREFIX;
use crate::delivery::attempt::SOURCE_HEADER;
use crate::delivery::media_gate::MEDIA_HEADER;
use crate::delivery::pull::{AckError, AckLists, Handout, PullLane};
use crate::delivery::ATTEMPT_HEADER;
use crate::state::App;
use crate::store::EventId;

/// What a request asks of a subscriber's pull API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Pull,
    Ack,
}

/// Whether `path` is for the pull API (routes configured at such paths win).
pub fn is_pull_path(path: &str) -> bool {
    path.starts_with(PULL_PREFIX)
}

/// `/pull/{name}` or `/pull/{name}/ack`.
fn parse_path(path: &str) -> Option<(&str, Op)> {
    let rest = path.strip_prefix(PULL_PREFIX)?;
    let (name, op) = match rest.split_once('/') {
        None => (rest, Op::Pull),
        Some((name, "ack")) => (name, Op::Ack),
        Some(_) => return None,
    };
    (!name.is_empty()).then_some((name, op))
}

/// Handle one request under `/pull/`.
pub async fn handle<B>(app: Arc<App>, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let started = tokio::time::Instant::now();
    let live = app.live();
    let source = auth::client_ip(peer.ip(), req.headers(), &live.config.server.trusted_proxies);
    let path = req.uri().path().to_string();
    let answer = match parse_path(&path) {
        None => PullAnswer::NotFound,
        Some((name, op)) => serve(&app, &live.config.server, name, op, req, source, started).await,
    };
    let status = answer.status().as_u16();
    match &answer {
        PullAnswer::Messages(m) => {
            tracing::debug!(path = %path, source = %source, messages = m.messages.len(), "pull answered")
        }
        PullAnswer::Acked(a) => tracing::debug!(path = %path, source = %source, acknowledged = a.acknowledged,
            retried = a.retried, dead = a.dead, "pull acknowledgement recorded"),
        refused => refusal::log(&app, &path, &source, status, refused),
    }
    respond(&answer)
}

async fn serve<B>(
    app: &App,
    server: &crate::config::ServerConfig,
    name: &str,
    op: Op,
    req: Request<B>,
    source: auth::Source,
    started: tokio::time::Instant,
) -> PullAnswer
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    match (op, req.method()) {
        (Op::Pull, &Method::GET) | (Op::Ack, &Method::POST) => {}
        (Op::Pull, _) => return PullAnswer::MethodNotAllowed("GET"),
        (Op::Ack, _) => return PullAnswer::MethodNotAllowed("POST"),
    }
    // A pull is leased under the token generation it is authorized with.
    let (lanes, token_gen) = match op {
        Op::Pull => match authorized(app, name, req.headers()) {
            Some((l, gen)) => (vec![(l, None)], gen),
            None => (Vec::new(), 0),
        },
        Op::Ack => (authorized_for_acks(app, name, req.headers()), 0),
    };
    let Some((lane, _)) = lanes.first().cloned() else {
        // A stopping relay has let go of its pull lanes while connections
        // opened before still bring requests: that is not a wrong token
        // (`hookrelay forward` exits on a 401), try again after the restart.
        if !app.serving.load(std::sync::atomic::Ordering::Relaxed) {
            return PullAnswer::Unavailable("the relay is shutting down; try again".into());
        }
        let token_sent = !auth::presented_tokens(None, req.headers()).is_empty();
        return PullAnswer::Unauthorized { token_sent };
    };
    let holder = match forwarder_id(req.headers()) {
        Ok(h) => h,
        Err(why) => return PullAnswer::BadRequest(why),
    };
    let ip = match source {
        auth::Source::Known(ip) => Some(ip),
        auth::Source::Unknown => None,
    };
    match op {
        Op::Pull => pull(app, &lane, holder, token_gen, req.uri().query(), ip).await,
        Op::Ack => {
            let limit = server.max_body.min(wire::MAX_ACK_BODY);
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let deadline = started + server.read_timeout;
            // Authenticated by the pull token already: no shared budget.
            let body = match crate::ingest::read_body(req.into_body(), declared, limit, None, deadline).await {
                Ok((b, _)) => b,
                Err(crate::ingest::Answer::TooLarge(n)) => return PullAnswer::TooLarge(n),
                Err(crate::ingest::Answer::Timeout) => return PullAnswer::Timeout,
                Err(crate::ingest::Answer::BadRequest(why)) => return PullAnswer::BadRequest(why),
                Err(_) => return PullAnswer::BadRequest("cannot read the body".into()),
            };
            ack(app, &lanes, holder, &body).await
        }
    }
}

/// The subscriber's lane if `name` is a pull subscriber and the bearer token
/// is its token, with that token's generation. Unknown names are compared
/// against a stand-in token, so both refusals take the same path.
fn authorized(app: &App, name: &str, headers: &HeaderMap) -> Option<(Arc<PullLane>, u64)> {
    static STAND_IN: OnceLock<Secret> = OnceLock::new();
    let presented = auth::presented_tokens(None, headers);
    let lane = app.delivery.pull_lane(name);
    let (token, gen) = lane.as_ref().map_or((None, 0), |l| l.current_token());
    let ok = match token {
        Some(t) => auth::token_matches(&presented, std::slice::from_ref(&t)),
        None => {
            // NUL bytes cannot be sent in a header: this never matches.
            let stand_in = STAND_IN.get_or_init(|| Secret::new([0u8; 32]));
            let _ = auth::token_matches(&presented, std::slice::from_ref(stand_in));
            false
        }
    };
    lane.filter(|_| ok).map(|l| (l, gen))
}

/// The lanes that may take an acknowledgement for subscriber `name`, each
/// with the earlier token generation it was presented under (`None`: any
/// lease of the holder): its pull lane if the bearer token is its token, or
/// an earlier one of its tokens that leases handed out under it still need;
/// then its pull lanes stopped by a reload that still serve their leases:
/// all of them with the subscriber's current token (as its running lane
/// takes it for leases handed out under earlier tokens, and as the other
/// relays' stopped lanes take it when this relay asks them), else each by
/// *its* tokens. So a reload that rotates the token, or switches the
/// subscriber to push, does not make its forwarders' acknowledgements of
/// what they lease fail; an earlier token acknowledges only the leases
/// handed out under it and opens nothing else.
fn authorized_for_acks(app: &App, name: &str, headers: &HeaderMap) -> Vec<(Arc<PullLane>, Option<u64>)> {
    let presented = auth::presented_tokens(None, headers);
    let by_token = |lane: Arc<PullLane>| {
        let token = lane.subscriber().pull().map(|p| p.token.clone());
        if token.is_some_and(|t| auth::token_matches(&presented, std::slice::from_ref(&t))) {
            return Some((lane, None));
        }
        let earlier = lane.earlier_token(&presented);
        earlier.map(|g| (lane, Some(g)))
    };
    let (mut lanes, current): (Vec<_>, bool) = match authorized(app, name, headers) {
        Some((lane, _)) => (vec![(lane, None)], true),
        None => (
            app.delivery.pull_lane(name).and_then(by_token).into_iter().collect(),
            false,
        ),
    };
    let stopped = app.delivery.retiring_pull_lanes(name).into_iter();
    match current {
        true => lanes.extend(stopped.map(|lane| (lane, None))),
        false => lanes.extend(stopped.filter_map(by_token)),
    }
    lanes
}

/// The `hookrelay-forwarder` header: who holds the leases handed out.
fn forwarder_id(headers: &HeaderMap) -> Result<String, String> {
    let Some(v) = headers.get(wire::FORWARDER_HEADER) else {
        return Ok(String::new());
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= wire::MAX_FORWARDER_ID && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(s.to_string())
        }
        _ => Err(format!(
            "invalid {} header: 1 to {} visible ASCII characters",
            wire::FORWARDER_HEADER,
            wire::MAX_FORWARDER_ID
        )),
    }
}

/// The answer when the subscriber's lane stopped under a request: the relay
/// stops, or a reload removed the subscriber (or made it another one: push,
/// another route), which a forwarder learns from its next request.
fn lane_stopped(app: &App, name: &str, then: &str) -> PullAnswer {
    if !app.serving.load(std::sync::atomic::Ordering::Relaxed) {
        return PullAnswer::Unavailable(format!("the relay is shutting down; {then} shortly"));
    }
    PullAnswer::Unavailable(format!(
        "pull subscriber {name:?} was removed or changed by a configuration reload during this request; {then} \
         (an answer 401 then means it is no longer a pull subscriber with this token)"
    ))
}

async fn pull(
    app: &App,
    lane: &PullLane,
    holder: String,
    token_gen: u64,
    query: Option<&str>,
    ip: Option<std::net::IpAddr>,
) -> PullAnswer {
    let params = match wire::parse_params(query) {
        Ok(p) => p,
        Err(why) => return PullAnswer::BadRequest(why),
    };
    let handouts = match lane.pull(holder, token_gen, params.max, params.wait, ip).await {
        Ok(h) => h,
        Err(_) => return lane_stopped(app, &lane.subscriber().name, "pull again"),
    };
    let sub = lane.subscriber();
    let messages = handouts.iter().map(|h| message(&sub.keys, h)).collect();
    let lease_ms = sub.pull().map(|p| p.lease.as_millis() as u64);
    PullAnswer::Messages(wire::Messages { messages, lease_ms })
}

/// A message as handed out, signed now (Standard Webhooks) like a push delivery.
fn message(keys: &[Secret], h: &Handout) -> wire::Message {
    let ev = &h.event;
    let id = ev.id.to_string();
    let ts = crate::clock::now_secs();
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("webhook-id".to_string(), id.clone());
    headers.insert("webhook-timestamp".to_string(), ts.to_string());
    if !keys.is_empty() {
        headers.insert(
            "webhook-signature".to_string(),
            auth::standard_webhooks_signature(keys, &id, ts, &ev.body),
        );
    }
    if let Some(ct) = &ev.meta.content_type {
        headers.insert("content-type".to_string(), ct.clone());
    }
    headers.insert(ATTEMPT_HEADER.to_string(), h.attempt.to_string());
    if let Some(media) = h.media.as_ref().and_then(|v| v.to_str().ok()) {
        headers.insert(MEDIA_HEADER.to_string(), media.to_string());
    }
    if ev.meta.origin == crate::store::Origin::Poll {
        headers.insert(SOURCE_HEADER.to_string(), "poll".to_string());
    }
    wire::Message {
        id,
        route: ev.meta.route.clone(),
        attempt: h.attempt,
        headers,
        body: B64.encode(&ev.body),
        round: h.round.map(|r| r.to_string()),
    }
}

async fn ack(app: &App, lanes: &[(Arc<PullLane>, Option<u64>)], holder: String, body: &[u8]) -> PullAnswer {
    let parsed: wire::Ack = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return PullAnswer::BadRequest(format!(
                "invalid acknowledgement: {e} (expected {{\"ids\": [\"evt_…\"], \"retry\": [\"evt_…\"], \"release\": [\"evt_…\"], \"local\": {{\"evt_…\": {{\"status\": 503}}}}, \"attempts\": {{\"evt_…\": 1}}}})"
            ))
        }
    };
    let total = parsed.ids.len() + parsed.retry.len() + parsed.release.len();
    if total == 0 {
        return PullAnswer::BadRequest("nothing to acknowledge: give ids and/or retry".into());
    }
    if total > wire::MAX_ACK_IDS {
        return PullAnswer::BadRequest(format!("too many ids: at most {} at once", wire::MAX_ACK_IDS));
    }
    let mut seen = std::collections::HashSet::new();
    let mut parse = |list: &[String]| -> Result<Vec<EventId>, String> {
        list.iter()
            .map(|s| {
                let id: EventId = s.parse().map_err(|_| format!("invalid id {s:?}"))?;
                if !seen.insert(id) {
                    return Err(format!("id {s:?} is given twice"));
                }
                Ok(id)
            })
            .collect()
    };
    let mut lists = match (parse(&parsed.ids), parse(&parsed.retry), parse(&parsed.release)) {
        (Ok(ack), Ok(retry), Ok(release)) => AckLists {
            ack,
            retry,
            release,
            local: Default::default(),
            attempts: Default::default(),
        },
        (Err(why), _, _) | (_, Err(why), _) | (_, _, Err(why)) => return PullAnswer::BadRequest(why),
    };
    // An attempt number is for an id of the lists.
    for (s, n) in parsed.attempts {
        let shown: String = s.chars().take(40).collect();
        match s.parse::<EventId>() {
            Ok(id) if seen.contains(&id) => {
                lists.attempts.insert(id, n);
            }
            _ => return PullAnswer::BadRequest(format!("attempts[{shown:?}]: not an id of ids, retry or release")),
        }
    }
    // What the local service answered is advisory: an entry that cannot be
    // used is left out and named, and the acknowledgement stands.
    let mut warnings = Vec::new();
    for (s, answer) in parsed.local {
        let shown: String = s.chars().take(40).collect();
        let id = match s.parse::<EventId>() {
            Ok(id) if lists.retry.contains(&id) => id,
            Ok(_) => {
                warnings.push(format!("local[{shown:?}]: not in retry; left out"));
                continue;
            }
            Err(_) => {
                warnings.push(format!("local[{shown:?}]: invalid id; left out"));
                continue;
            }
        };
        match answer.check() {
            Ok(()) => {
                lists.local.insert(id, answer);
            }
            Err(why) => warnings.push(format!("local[{shown:?}]: {why}; left out")),
        }
    }
    let (acked, attempts) = (lists.ack.clone(), lists.attempts.clone());
    let subscriber = lanes
        .first()
        .map(|(l, _)| l.subscriber().name.clone())
        .unwrap_or_default();
    // The subscriber's lane first, then its lanes stopped by a reload: one
    // forwarder may hold leases of several (see `ack_across`).
    let answer = crate::delivery::pull::ack_across(lanes, holder, lists).await;
    match answer {
        Ok(s) => PullAnswer::Acked(wire::Acked {
            acknowledged: s.acknowledged,
            retried: s.retried,
            dead: s.dead,
            warnings,
        }),
        Err(AckError::NotLeased(bad)) => PullAnswer::NotLeased {
            ids: bad.iter().map(|id| id.to_string()).collect(),
            applied: None,
            recorded: delivered::recorded_delivered(app, &subscriber, &bad, &acked, &attempts).await,
        },
        Err(AckError::NotLeasedRestApplied { not_leased, applied }) => PullAnswer::NotLeased {
            ids: not_leased.iter().map(|id| id.to_string()).collect(),
            applied: Some(wire::Acked {
                acknowledged: applied.acknowledged,
                retried: applied.retried,
                dead: applied.dead,
                warnings,
            }),
            recorded: delivered::recorded_delivered(app, &subscriber, &not_leased, &acked, &attempts).await,
        },
        Err(AckError::Store(why)) => PullAnswer::Unavailable(format!(
            "cannot record the acknowledgement ({why}); the leases are kept: send it again"
        )),
        Err(AckError::Stopped) => lane_stopped(app, &subscriber, "acknowledge again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/pull/laptop"), Some(("laptop", Op::Pull)));
        assert_eq!(parse_path("/pull/laptop/ack"), Some(("laptop", Op::Ack)));
        for bad in ["/pull/", "/pull//ack", "/pull/a/b", "/pull/a/ack/x", "/hooks/x"] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
        // The paths check-config keeps free of routes are the ones served here.
        let [p, a] = crate::config::PullSettings::api_paths("laptop");
        assert_eq!(parse_path(&p), Some(("laptop", Op::Pull)));
        assert_eq!(parse_path(&a), Some(("laptop", Op::Ack)));
    }
}
