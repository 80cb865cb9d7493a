//! Expected tasks and the reconciler: which results the relay is owed, and
//! fetching the ones whose callback never came.
//!
//! Owns: reading a callback's task (its id and whether it is the last one,
//! from the route's preset), the reconciler task (polls each due task, at
//! most [`CONCURRENCY`] at a time, on the schedule the store keeps so it
//! survives a restart), turning a terminal record into an event of the
//! route (origin `poll`, the product's callback shape, the route's dedupe
//! key), and the submit proxy. Does not own the provider's API or shapes
//! ([`crate::provider`]), the task rows ([`crate::store`]) nor verification
//! of callbacks ([`crate::delivery`]'s verify gate).
//!
//! Sub-modules: [`poll`] (one task: ask, then settle, reschedule or give
//! up), [`recover`] (record → event), [`submit`] (the submit proxy's call).

pub mod in_flight;
pub mod poll;
pub mod recover;
pub mod submit;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{watch, Semaphore};

use crate::config::Route;
use crate::state::App;
use crate::store::{NewTask, StoreError, Task, TaskMark};

/// Status calls in flight at once (the client paces per key and per task on top).
pub const CONCURRENCY: usize = 8;
/// The schedule is read at least this often (a registration wakes it sooner).
const IDLE: Duration = Duration::from_secs(1);
/// …and at most this often, so tasks whose poll is in flight are not re-read in a loop.
const MIN_WAIT: Duration = Duration::from_millis(50);
/// Tasks read from the schedule per round.
const BATCH: usize = 256;

/// What a callback body says about its route's expected task: the task id
/// where the preset says it is, and whether it is the task's last callback.
pub fn task_mark(route: &Route, json: &Value) -> Option<TaskMark> {
    let preset = route.preset?;
    let task_id = preset.task_id_of(json)?;
    Some(TaskMark {
        task_id,
        terminal: preset.is_terminal(json),
        provider_state: None,
        if_new: false,
    })
}

/// The reconciler (ends when `stop` turns true, or when aborted). Polls in
/// flight end with it; one cut short is polled again after the restart (its
/// schedule row is still there).
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut polls = in_flight::Polls::default();
    let mut reconciling: HashSet<String> = HashSet::new();
    loop {
        for task in polls.reap() {
            poll::panicked(&app, &task).await;
        }
        schedule_new_routes(&app, &mut reconciling).await;
        let now = crate::clock::now_ms();
        let wait = match app.store.due_tasks(now, BATCH).await {
            Ok((due, next)) => {
                for task in due {
                    if polls.polling(&task) {
                        continue;
                    }
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (app, polled) = (app.clone(), task.clone());
                    polls.spawn(task, async move {
                        poll::poll(&app, polled).await;
                        drop(permit);
                    });
                }
                next.map_or(IDLE, |n| Duration::from_millis(n.saturating_sub(now)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the poll schedule of expected tasks");
                IDLE
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait.clamp(MIN_WAIT, IDLE)) => {}
            _ = app.tasks_wake.notified() => {}
        }
    }
}

/// How long after its registration a task of `route` is first polled; None
/// when the route does not reconcile (no `reconcile`, or no product to ask).
pub fn first_poll_after(route: &Route) -> Option<Duration> {
    route.product()?;
    Some(route.reconcile?.after)
}

/// Routes that start reconciling (at start, or added by a reload) get their
/// open tasks registered while they did not reconcile scheduled for a poll,
/// once per process: `done` holds the routes whose tasks are scheduled.
async fn schedule_new_routes(app: &App, done: &mut HashSet<String>) {
    let live = app.live();
    let now: Vec<(String, Duration)> = live
        .config
        .routes
        .iter()
        .filter_map(|r| Some((r.name.clone(), first_poll_after(r)?)))
        .collect();
    done.retain(|name| now.iter().any(|(r, _)| r == name));
    let new: Vec<(String, Duration)> = now.into_iter().filter(|(r, _)| !done.contains(r)).collect();
    if new.is_empty() {
        return;
    }
    match app.store.schedule_tasks(&new).await {
        Ok(n) => {
            if n > 0 {
                tracing::info!(
                    tasks = n,
                    "tasks registered before their route reconciled are scheduled for a poll"
                );
            }
            done.extend(new.into_iter().map(|(r, _)| r));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot schedule the tasks of routes that started reconciling; trying again")
        }
    }
}

/// Register an expected task of `route` (the submit proxy, `POST /api/tasks`),
/// polled from `after` on when the route reconciles as the config says now.
/// A reload adding `reconcile` while it registers (the reconciler may have
/// scheduled the route's tasks just before this one was written) is caught by
/// looking at the config again once it is written.
pub async fn expect(app: &App, route: &str, task_id: String) -> Result<Task, StoreError> {
    let after = || {
        app.live()
            .config
            .routes
            .iter()
            .find(|r| r.name == route)
            .and_then(first_poll_after)
    };
    let terminal_keys = app
        .live()
        .config
        .routes
        .iter()
        .find(|r| r.name == route)
        // On a route that verifies by fetch, a stored callback may be a
        // forgery held as unverified: it does not settle the task; its poll does.
        .filter(|r| r.verify != crate::config::Verify::Fetch)
        .map(|r| r.dedupe_key.terminal_hashes(r.preset.as_ref(), &task_id))
        .unwrap_or_default();
    let now = crate::clock::now_ms();
    let task = app
        .store
        .register_task(NewTask {
            route: route.to_string(),
            task_id,
            now_ms: now,
            first_poll_ms: after().map(|a| now + a.as_millis() as u64),
            terminal_keys,
        })
        .await?;
    app.tasks_wake.notify_one();
    if task.next_poll_ms.is_some() || task.state.is_final() {
        return Ok(task);
    }
    let Some(a) = after() else { return Ok(task) };
    // Rare (a reload raced this registration): the task is recorded either
    // way, so a failure here is logged, not answered.
    if let Err(e) = app.store.schedule_tasks(&[(route.to_string(), a)]).await {
        tracing::warn!(route, task_id = %task.task_id, error = %e,
            "cannot schedule a task registered while its route started reconciling; a restart will");
        return Ok(task);
    }
    Ok(app
        .store
        .task(Some(route.to_string()), task.task_id.clone())
        .await
        .ok()
        .flatten()
        .unwrap_or(task))
}

/// `every`, ±20 %, so tasks registered together do not poll together.
pub fn jittered(every: Duration) -> Duration {
    every.mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// The longest an expected task of a route reconciling with `rc` can wait
/// for its next poll: its first poll's `after`, `every` jittered (+20 %), or
/// the provider's longest pause (back-off or `Retry-After` cap).
pub fn longest_wait(rc: &crate::config::Reconcile) -> Duration {
    rc.after
        .max(rc.every.mul_f64(1.2))
        .max(crate::provider::BackoffPolicy::default().longest())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(preset: &str) -> Route {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[[routes]]\nname = \"r\"\npath = \"/r\"\nallow_anyone = true\n{preset}\n\
             [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/\"\n"
        );
        crate::Config::parse(std::path::Path::new("t.toml"), &text)
            .unwrap()
            .routes
            .remove(0)
    }

    #[test]
    fn the_preset_says_which_callback_ends_its_task() {
        let suno = route("preset = \"kie-suno\"");
        let stage = |t: &str| json!({"code": 200, "data": {"task_id": "s1", "callbackType": t}});
        for (t, terminal) in [("text", false), ("first", false), ("complete", true), ("error", true)] {
            let m = task_mark(&suno, &stage(t)).unwrap();
            assert_eq!((m.task_id.as_str(), m.terminal), ("s1", terminal), "{t}");
        }
        let aleph = route("preset = \"kie-aleph\"");
        let m = task_mark(&aleph, &json!({"code": 400, "taskId": "a1", "data": null})).unwrap();
        assert_eq!((m.task_id.as_str(), m.terminal), ("a1", true));
        assert!(task_mark(&aleph, &json!({"code": 200})).is_none(), "no task id");
        assert!(
            task_mark(&route(""), &json!({"data": {"task_id": "x"}})).is_none(),
            "no preset"
        );
    }

    #[test]
    fn polls_are_spread_around_every() {
        let every = Duration::from_secs(30);
        let spread: Vec<Duration> = (0..200).map(|_| jittered(every)).collect();
        assert!(spread
            .iter()
            .all(|d| *d >= every.mul_f64(0.8) && *d <= every.mul_f64(1.2)));
        assert!(spread.iter().any(|d| *d < every) && spread.iter().any(|d| *d > every));
    }
}
