//! Expected tasks on the admin API: `POST /api/tasks` (register),
//! `GET /api/tasks?route=&state=&limit=`, `GET /api/tasks/{task_id}?route=`,
//! and the submit proxy `POST /api/routes/{route}/submit?endpoint=…` (its
//! answer is the provider's, unchanged). The task state of an event is
//! shown by the event view ([`task_of_event`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{full, internal, rfc3339, ApiResult, Query, Reply};
use crate::state::App;
use crate::store::{Event, Task, TaskQuery, TaskState};

/// The JSON form of a task (API and CLI).
pub fn task_json(t: &Task) -> Value {
    json!({
        "route": t.route,
        "task_id": t.task_id,
        "state": t.state.as_str(),
        "registered_at": rfc3339(t.registered_ms),
        "updated_at": rfc3339(t.updated_ms),
        "next_poll_at": t.next_poll_ms.map(rfc3339),
        "polls": t.polls,
        "provider_state": t.provider_state,
        "last_error": t.last_error,
        "event": t.event.map(|e| e.to_string()),
    })
}

pub(super) async fn list(app: &App, q: &Query) -> ApiResult {
    let state = q
        .get("state")
        .map(|s| s.parse::<TaskState>())
        .transpose()
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let limit = q.limit(100)?;
    // One more than asked: whether more match than `limit` lists.
    let mut tasks = app
        .store
        .tasks(TaskQuery {
            route: q.get("route").map(str::to_string),
            state,
            limit: limit + 1,
        })
        .await
        .map_err(internal)?;
    let more = tasks.len() > limit;
    tasks.truncate(limit);
    let answer = json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>(), "more": more });
    let warning = super::unknown_names(app, q.get("route"), None);
    Ok(super::with_warning(answer, warning))
}

pub(super) async fn show(app: &App, task_id: &str, q: &Query) -> ApiResult {
    let t = app
        .store
        .task(q.get("route").map(str::to_string), task_id.to_string())
        .await
        .map_err(internal)?
        .ok_or((StatusCode::NOT_FOUND, format!("no expected task {task_id:?}")))?;
    Ok(task_json(&t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    route: String,
    task_id: String,
}

/// Register a task whose callback is expected (its create call went to the
/// provider some other way than the submit proxy).
pub(super) async fn register(app: &App, body: &[u8]) -> ApiResult {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let r: Register = serde_json::from_slice(body)
        .map_err(|e| bad(format!("expected {{\"route\": \"…\", \"task_id\": \"…\"}}: {e}")))?;
    if !crate::provider::usable_task_id(&r.task_id) {
        return Err(bad(
            "task_id must be 1 to 256 bytes, none of them control characters".into()
        ));
    }
    let live = app.live();
    let route = live
        .config
        .routes
        .iter()
        .find(|x| x.name == r.route)
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no route {:?}", r.route)))?;
    if route.preset.is_none() {
        return Err(bad(format!(
            "route {:?} has no provider preset: its callbacks cannot be matched with tasks",
            r.route
        )));
    }
    let task = crate::reconcile::expect(app, &route.name, r.task_id)
        .await
        .map_err(internal)?;
    Ok(task_json(&task))
}

/// The submit proxy: the provider's answer (status, content type, bytes) as it came.
pub(super) async fn submit(app: &Arc<App>, route: &str, q: &Query, body: Bytes) -> Result<Reply, (StatusCode, String)> {
    let endpoint = q.get("endpoint").ok_or((
        StatusCode::BAD_REQUEST,
        "endpoint=… is required (e.g. /api/v1/runway/generate)".into(),
    ))?;
    // Checked, and its turn in the key's create pacing waited for, here: a
    // caller that goes away meanwhile (hyper drops a request's handler when
    // its connection closes) sends nothing. Once sent, it runs to its end
    // whether or not anyone still waits for the answer: a create the
    // provider took is a task it bills, recorded as expected. A stop waits
    // for it (`App::operator_work`); none is sent once the stop began.
    let ready = crate::reconcile::submit::prepare(app, route, endpoint, body).await?;
    if !app.serving.load(std::sync::atomic::Ordering::Acquire) {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "hookrelay is stopping: the create call was not sent".into(),
        ));
    }
    let a = app.clone();
    let work = async move { crate::reconcile::submit::send(&a, ready).await };
    let done = app
        .operator_work
        .spawn(work)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("the submit stopped: {e}")))??;
    let a = done.answer;
    let mut r = http::Response::new(full(a.body));
    *r.status_mut() = a.http_status;
    if let Some(ct) = a.content_type {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    if let Some(t) = done.task {
        if let Ok(v) = header::HeaderValue::from_str(t.state.as_str()) {
            r.headers_mut().insert("hookrelay-task-state", v);
        }
    } else if a.task_id.is_some() {
        r.headers_mut()
            .insert("hookrelay-task-state", header::HeaderValue::from_static("unregistered"));
    }
    Ok(r)
}

/// The expected task an event settles or belongs to, for the event view.
pub(super) async fn task_of_event(app: &App, ev: &Event) -> Option<Value> {
    let live = app.live();
    let route = live.config.routes.iter().find(|r| r.name == ev.meta.route)?;
    let json: Value = serde_json::from_slice(&ev.body).ok()?;
    let mark = crate::reconcile::task_mark(route, &json)?;
    let t = app.store.task(Some(route.name.clone()), mark.task_id).await.ok()??;
    Some(task_json(&t))
}
