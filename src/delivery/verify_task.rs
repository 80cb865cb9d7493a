//! A verified callback settles its expected task. On a `verify = "fetch"`
//! route a callback does not settle its task when it is stored (it may be a
//! forgery held as unverified: `ingest`), so its task was settled only by
//! its poll: with `reconcile` off it stayed `waiting` after its callback was
//! delivered, and one whose route stopped reconciling counted as `gave_up`
//! (combined-features review, stop 73). Once the callback agrees with the
//! provider's record and is let go, it settles the task as a stored callback
//! does on another route: `called_back`, no poll to come.

use serde_json::Value;

use crate::config::Route;
use crate::store::{Event, Store, TaskUpdate};

/// Settle the expected task `event` (whose body is `body`) is the final
/// callback of, if one is registered and open (or given up). A failure is
/// logged: the task's poll settles it, when its route reconciles.
pub(super) async fn settle(store: &Store, route: &Route, event: &Event, body: &Value) {
    let Some(mark) = crate::reconcile::task_mark(route, body).filter(|m| m.terminal) else {
        return;
    };
    // A read first: most callbacks have no task registered (no write then).
    let task = match store.task(Some(route.name.clone()), mark.task_id.clone()).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(route = %route.name, task_id = %mark.task_id, error = %e,
                "cannot read the task of a verified callback; its poll settles it");
            return;
        }
    };
    let update = TaskUpdate::Verified { event: event.id };
    if !update.applies_to(task.state) {
        return;
    }
    if let Err(e) = store.update_task(&route.name, &mark.task_id, update).await {
        tracing::warn!(route = %route.name, task_id = %mark.task_id, error = %e,
            "cannot mark the task of a verified callback called back; its poll settles it");
    }
}
