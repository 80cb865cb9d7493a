//! `/api/events` (filters: route, status, `task` = part of the task id),
//! `/api/events/{id}` (with its media), replay, and dead letters.

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{json, Value};

use super::{internal, rfc3339, ApiResult, Query};
use crate::config::Signature;
use crate::state::App;
use crate::store::{Event, EventFilter, EventId, EventQuery, TaskOf};

pub(super) fn parse_id(id: &str) -> Result<EventId, (StatusCode, String)> {
    id.parse()
        .map_err(|_| (StatusCode::BAD_REQUEST, format!("invalid event id {id:?}")))
}

fn source(ev: &Event) -> String {
    ev.meta
        .source
        .map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
}

/// Where each route's task id is: the `kie` signature's pointer when one is
/// configured, else the provider's usual places.
fn task_pointers(app: &App) -> HashMap<String, Vec<String>> {
    app.live()
        .config
        .routes
        .iter()
        .map(|r| {
            let p = match &r.signature {
                Some(Signature::Kie { task_id, .. }) => task_id.clone(),
                _ => Vec::new(),
            };
            (r.name.clone(), p)
        })
        .collect()
}

/// The task id in an event's body, if it is JSON and has one; one longer
/// than [`TASK_ID_SHOWN`] bytes cut there, with `…` (no provider's is: the
/// field is whatever the poster sent, and a listing of 10,000 events with a
/// megabyte each ran to gigabytes).
fn task_of(pointers: &HashMap<String, Vec<String>>, ev: &Event) -> Option<String> {
    let json: Value = serde_json::from_slice(&ev.body).ok()?;
    let pointers = pointers.get(&ev.meta.route).map_or(&[][..], Vec::as_slice);
    crate::auth::task_id(Some(&json), pointers).map(shown)
}

/// The most of a task id a listing or an event view shows (the longest the
/// relay sends the provider).
pub(super) const TASK_ID_SHOWN: usize = 256;

/// `task` cut to [`TASK_ID_SHOWN`] bytes (at a character's start), with `…`.
fn shown(mut task: String) -> String {
    if task.len() > TASK_ID_SHOWN {
        let mut end = TASK_ID_SHOWN;
        while !task.is_char_boundary(end) {
            end -= 1;
        }
        task.truncate(end);
        task.push('…');
    }
    task
}

/// The task id of each listed event, taken while the store's scan has its
/// body (a listing keeps none).
fn task_of_listed(pointers: &Arc<HashMap<String, Vec<String>>>) -> TaskOf {
    let pointers = pointers.clone();
    TaskOf(Arc::new(move |ev: &Event| task_of(&pointers, ev)))
}

/// `task=`: events whose task id contains the text, case-insensitively.
fn task_filter(pointers: &Arc<HashMap<String, Vec<String>>>, text: &str) -> EventFilter {
    let (pointers, needle) = (pointers.clone(), text.to_lowercase());
    EventFilter(Arc::new(move |ev: &Event| {
        task_of(&pointers, ev).is_some_and(|t| t.to_lowercase().contains(&needle))
    }))
}

pub(super) async fn list(app: &App, q: &Query) -> ApiResult {
    let limit = q.limit(50)?;
    let before = q.get("before").map(parse_id).transpose()?;
    let status = q.get("status");
    if let Some(s) = status {
        if !matches!(s, "pending" | "delivered" | "dead" | "undelivered") {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("invalid status {s:?}: use pending, delivered, dead or undelivered"),
            ));
        }
    }
    let pointers = Arc::new(task_pointers(app));
    // One more than asked: whether more match (older ones, past `limit`).
    let page = app
        .store
        .recent_events(EventQuery {
            route: q.get("route").map(str::to_string),
            status: status.map(str::to_string),
            before,
            matching: q.get("task").map(|t| task_filter(&pointers, t)),
            task_of: Some(task_of_listed(&pointers)),
            limit: limit + 1,
        })
        .await
        .map_err(internal)?;
    let mut views = page.events;
    // A scan cut short (cluster mode) leaves older events unlooked at: more.
    let more = views.len() > limit || page.cut_at.is_some();
    views.truncate(limit);
    // No body is held here: the store took each one's size and task id
    // while it had it ([`crate::store::ListedEvent`]).
    let events: Vec<Value> = views
        .iter()
        .map(|l| {
            let v = &l.view;
            json!({
                "id": v.event.id.to_string(),
                "route": v.event.meta.route,
                "task_id": l.task_id,
                "received_at": rfc3339(v.event.meta.received_ms),
                "source": source(&v.event),
                "size": l.size,
                "status": v.status(),
                "subscribers": v.deliveries.iter().map(|d| json!({"name": d.subscriber, "state": d.state.name()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    // `more`: older events match too (or, past a cut scan, may); `next_before` lists them (`before=`).
    let next_before = match (views.len() == limit, page.cut_at) {
        _ if !more => None,
        (false, Some(cut)) => Some(cut.to_string()),
        _ => views.last().map(|l| l.view.event.id.to_string()),
    };
    // `cut`: the walk stopped before the log's oldest (the store's budget of
    // events left out): older ones may match, and `limit` does not reach them.
    let answer = json!({ "events": events, "more": more, "cut": page.cut_at.is_some(), "next_before": next_before });
    let warning = super::unknown_names(app, q.get("route"), None);
    Ok(super::with_warning(answer, warning))
}

/// The event `id` names with its deliveries, or the answer that says why not
/// (`400` for an id that is not one, `404` for one the store does not have).
async fn view_of(app: &App, id: &str) -> Result<(EventId, crate::store::EventView), (StatusCode, String)> {
    let id = parse_id(id)?;
    let v = app
        .store
        .event_view(id)
        .await
        .map_err(internal)?
        .ok_or((StatusCode::NOT_FOUND, format!("no event {id}")))?;
    Ok((id, v))
}

pub(super) async fn show(app: &App, id: &str) -> ApiResult {
    let (id, v) = view_of(app, id).await?;
    let ev = &v.event;
    let subs: Vec<Value> = v
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "name": d.subscriber,
                "state": d.state.name(),
                "waiting_for_media": matches!(d.state, crate::store::DeliveryState::AwaitingMedia { .. }),
                "last_error": d.last_error,
                "held_unverified": d.held,
                "attempts_total": d.attempts,
                "attempts": d.history.iter().map(|a| json!({
                    "attempt": a.attempt,
                    "at": rfc3339(a.at_ms),
                    "duration_ms": a.duration_ms,
                    "status": a.status,
                    "error": a.error,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let shown = tokens_hidden(app, ev.body.clone());
    let (body, encoding) = match std::str::from_utf8(&shown) {
        Ok(s) => (Value::String(s.to_string()), "utf-8"),
        Err(_) => {
            use base64::Engine;
            (
                Value::String(base64::engine::general_purpose::STANDARD.encode(&shown)),
                "base64",
            )
        }
    };
    Ok(json!({
        "id": ev.id.to_string(),
        "route": ev.meta.route,
        "task_id": task_of(&task_pointers(app), ev),
        "received_at": rfc3339(ev.meta.received_ms),
        "source": source(ev),
        "origin": match ev.meta.origin { crate::store::Origin::Callback => "callback", crate::store::Origin::Poll => "poll" },
        "content_type": ev.meta.content_type,
        "headers": ev.meta.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "dedupe_fallback": ev.meta.dedupe_fallback,
        "status": v.status(),
        "body": body,
        "body_encoding": encoding,
        "subscribers": subs,
        "media": super::media::of_event(app, id).await?,
        "task": super::tasks::task_of_event(app, ev).await,
    }))
}

/// A callback's body as the event view shows it: every route's token
/// `<redacted>`, in every form a provider may quote it (a provider may quote
/// the callback URL it was given, token and all: kie's Market records quote
/// the whole create request), and the value of any `token` URL parameter in
/// it (a token rotated out of the configuration since the callback came, or
/// one too short to be looked for). Subscribers get the body as it came.
fn tokens_hidden(app: &App, mut body: bytes::Bytes) -> bytes::Bytes {
    for route in &app.live().config.routes {
        for token in &route.tokens {
            body = crate::auth::redact_secret(body, token);
        }
    }
    crate::auth::hide_token_params(body)
}

/// `dead_only` (`only=dead`, with a subscriber): queued only if that
/// delivery is dead as the store writes the replay (a check before it left
/// room for a replay of all dead letters between the two).
pub(super) async fn replay(app: &App, id: &str, sub: Option<&str>, dead_only: bool) -> ApiResult {
    let id = parse_id(id)?;
    // An operator's replay delivers a callback held as unverified, to the
    // subscribers it queues the event for and to no other: the store marks
    // each delivery it queues released, with the work (whichever relay
    // takes it, after a restart too); a refused or failed replay queues
    // nothing and releases nothing.
    let (store, only) = (app.store.clone(), sub.map(str::to_string));
    let result = to_the_end(app, "a replay", async move {
        match only {
            Some(sub) if dead_only => store.replay_dead_delivery(id, sub).await,
            only => store.replay_event(id, only).await,
        }
    })
    .await?
    .ok_or((StatusCode::NOT_FOUND, format!("no event {id}")))?;
    if let (true, Some(s), Some(r)) = (dead_only, sub, result.first()) {
        if !r.queued {
            return Err(not_dead(app, id, s).await);
        }
    }
    if let Some(s) = sub {
        if result.is_empty() {
            // A subscriber removed from the configuration is left out (no lane
            // would send it): say that rather than that the event never had it.
            let live = app.live();
            let now_on = live
                .config
                .routes
                .iter()
                .find(|r| r.subscribers.iter().any(|c| c.name == s))
                .map(|r| r.name.clone());
            let came_on = app.store.event(id).await.map_err(internal)?.map(|e| e.meta.route);
            let why = match (now_on, came_on) {
                (None, _) => {
                    format!("no subscriber {s:?} in the configuration (a removed subscriber is not replayed to)")
                }
                // A subscriber has no lane on another route: it is not
                // replayed that route's events (one moved since neither).
                (Some(now), Some(came)) if now != came => format!(
                    "event {id} came on route {came:?}, and subscriber {s:?} is on route {now:?}: a subscriber \
                     is replayed its own route's events only (one moved from {came:?} is not replayed its old \
                     route's events)"
                ),
                _ => format!("event {id} has no subscriber {s:?}"),
            };
            return Err((StatusCode::NOT_FOUND, why));
        }
    }
    // A subscriber whose filter does not match the event skips it again:
    // say so rather than that it was queued.
    let event = app.store.event(id).await.map_err(internal)?;
    let live = app.live();
    let filtered = |name: &str| {
        let sub = live.config.subscribers().find(|c| c.name == name);
        matches!((sub, &event), (Some(s), Some(e)) if !crate::delivery::attempt::filter_matches(s, e))
    };
    let names = |pick: &dyn Fn(&crate::store::Replayed) -> bool| -> Vec<&str> {
        result
            .iter()
            .filter(|r| pick(r))
            .map(|r| r.subscriber.as_str())
            .collect()
    };
    let queued = names(&|r| r.queued && !filtered(&r.subscriber));
    let skipped = names(&|r| r.queued && filtered(&r.subscriber));
    let pending = names(&|r| !r.queued);
    tracing::info!(event = %id, subscribers = ?queued, "replay requested");
    Ok(json!({ "id": id.to_string(), "queued": queued, "filtered": skipped, "already_pending": pending }))
}

/// `only=dead` found the delivery not dead (a console row, a script's list
/// shown a while ago: a replay of all dead letters delivered it meanwhile,
/// and a replay of the event sent it twice: console review, stop 66): `409`,
/// with its state now.
async fn not_dead(app: &App, id: EventId, sub: &str) -> (StatusCode, String) {
    let state = match view_of(app, &id.to_string()).await {
        Ok((_, v)) => v
            .deliveries
            .iter()
            .find(|d| d.subscriber == sub)
            .map(|d| d.state.name()),
        Err(_) => None,
    };
    let now = state.map(|s| format!(" (it is {s})")).unwrap_or_default();
    (
        StatusCode::CONFLICT,
        format!("the delivery of event {id} to {sub:?} is not dead any more{now}: nothing replayed"),
    )
}

pub(super) async fn dead_letters(app: &App, q: &Query) -> ApiResult {
    let limit = q.limit(100)?;
    let page = app
        .store
        .dead_letters(q.get("subscriber").map(str::to_string), limit)
        .await
        .map_err(internal)?;
    let answer = json!({
        "total": page.total,
        "dead_letters": page.letters.iter().map(|d| json!({
            "event": d.event.to_string(),
            "subscriber": d.subscriber,
            "at": rfc3339(d.at_ms),
            "attempts": d.attempts,
            "last_error": d.last_error,
        })).collect::<Vec<_>>()
    });
    Ok(super::with_warning(
        answer,
        super::unknown_names(app, None, q.get("subscriber")),
    ))
}

pub(super) async fn replay_dead(app: &App, sub: Option<&str>) -> ApiResult {
    let checked = app
        .live()
        .config
        .routes
        .iter()
        .filter(|r| r.verify == crate::config::Verify::Fetch)
        .map(|r| r.name.clone())
        .collect();
    // A typo must not read as "nothing to replay": only a configured
    // subscriber has a lane that would deliver what is re-queued.
    if let Some(s) = sub {
        if !app.live().config.subscribers().any(|c| c.name == s) {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no subscriber {s:?} in the configuration"),
            ));
        }
    }
    let (store, only) = (app.store.clone(), sub.map(str::to_string));
    let (total, done) = to_the_end(app, "a replay of dead letters", async move {
        let done = store.replay_dead_letters(only.clone(), checked).await?;
        let total: usize = done.requeued.values().sum();
        // Logged here: the count is known even to a caller that gave up.
        tracing::info!(
            subscriber = only.as_deref().unwrap_or("*"),
            requeued = total,
            verdicts_left = done.verdicts_left,
            "dead letters replayed"
        );
        Ok((total, done))
    })
    .await?;
    let answer = json!({
        "requeued": total,
        "by_subscriber": done.requeued,
        "verdicts_left": done.verdicts_left,
    });
    let left = (done.verdicts_left > 0).then(|| {
        format!(
            "{} dead letters held by verify = \"fetch\" (unverified or duplicate callbacks) on routes that no longer verify were left: replayed, no check would hold them; replay an event itself to send it",
            done.verdicts_left
        )
    });
    Ok(super::with_warning(answer, left))
}

/// Run a replay to its end even when its caller goes away meanwhile (hyper
/// drops a request's handler when its connection closes, and the CLI gives
/// up after a while): a replay of many dead letters cut off in cluster
/// mode, between a delivery's mark and its message, left it pending with
/// nothing to send it until a later replay.
/// A failure is logged there, as its caller may be gone. A stop waits for
/// it (`App::operator_work`) before it closes the store.
pub(super) async fn to_the_end<T: Send + 'static>(
    app: &App,
    what: &'static str,
    work: impl std::future::Future<Output = Result<T, crate::store::StoreError>> + Send + 'static,
) -> Result<T, (StatusCode, String)> {
    let logged = async move {
        let r = work.await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "{what} failed (what it did before is kept; asking again does the rest)");
        }
        r
    };
    match app.operator_work.spawn(logged).await {
        Ok(r) => r.map_err(internal),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{what} stopped: {e}"))),
    }
}
