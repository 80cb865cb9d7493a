//! One poll of one expected task: ask the provider for the task's record,
//! then settle it (a terminal record becomes an event, see
//! [`super::recover`]), reschedule it (`every`, jittered, longer when the
//! provider asks for a pause: 429, 455, 5xx; also after a `code: 400` or an
//! answer that is not the provider's JSON) or give it up: `give_up` passed,
//! or what ends a task (see `ends_the_task`) — in the provider's own JSON
//! envelope `code` 404/422 (it no longer knows the task), 501/531 (the
//! generation failed) or 451 (an input was blocked), or a task id the client
//! refuses to send. The same statuses as a bare HTTP answer are transient.
//!
//! A wrong key or an account problem (401, 402, 505) is not the task's
//! fault: the task keeps its schedule (and `give_up`) while the operator
//! fixes the key; the first such poll logs the error, then less and less
//! often while it lasts (see [`crate::failure_log`]).

use std::time::Duration;

use crate::provider::{Action, ErrorKind};
use crate::state::App;
use crate::store::{Task, TaskUpdate};

/// Poll `task` once and record what followed.
pub async fn poll(app: &App, task: Task) {
    let live = app.live();
    let now = crate::clock::now_ms();
    let route = live.config.routes.iter().find(|r| r.name == task.route);
    let (route, rc, product) = match route.and_then(|r| Some((r, r.reconcile?, r.product()?))) {
        Some(x) => x,
        None => {
            let why = "the route no longer reconciles tasks (route, preset or reconcile removed from the config)";
            settle(app, &task, TaskUpdate::GaveUp { error: why.into() }).await;
            return;
        }
    };
    let Some(client) = app.media.settings().providers.get(&route.name).cloned() else {
        let why = "the route has no provider key";
        settle(app, &task, TaskUpdate::GaveUp { error: why.into() }).await;
        return;
    };
    let deadline = task.registered_ms.saturating_add(rc.give_up.as_millis() as u64);
    let next = |at_least: Duration| now + super::jittered(rc.every).max(at_least).as_millis() as u64;
    // The call was not answered with the record: the key is paused or paced
    // (a 429, a 455, or the relay's own pause or pacing, the call then never
    // sent), or the provider's side failed (a 5xx, a gateway's page, no
    // connection, no answer in time): that says nothing about the task.
    let mut held_back = false;
    // The result was fetched but the store did not take it (no room under
    // `store.min_free`, a store away): never given up while that lasts.
    let mut in_hand = false;
    let answer = client.record(product, &task.task_id).await;
    if answer.is_ok() {
        client.refusals().succeeded();
    }
    let update = match answer {
        Ok(record) if record.stage().is_terminal() => {
            app.metrics.task_poll(&route.name, "terminal");
            let mut stored = super::recover::append(app, route, &record).await;
            if stored.as_ref().is_err_and(route_changed) {
                // A reload changed the route's topology since this poll read
                // the config (cluster mode: while it sets NATS up): stored
                // once more on the route in force, after the swap (bounded),
                // rather than rescheduled — at `give_up` that would give the
                // task up with its result fetched and not stored.
                let now_live = app
                    .live_after_reload(&live, RELOAD_WAIT)
                    .await
                    .unwrap_or_else(|| app.live());
                if let Some(now_route) = now_live.config.routes.iter().find(|r| r.name == task.route) {
                    stored = super::recover::append(app, now_route, &record).await;
                }
            }
            match stored {
                Ok(_) => return,
                Err(e) => {
                    // Only while the store cannot take it for now: a record
                    // too large for it, or a corrupt store, never will.
                    in_hand = store_refused_for_now(&e);
                    tracing::error!(route = %route.name, task_id = %task.task_id, error = %e,
                        "cannot store a recovered result; polling again");
                    TaskUpdate::Polled {
                        next_poll_ms: next(Duration::ZERO),
                        provider_state: Some(record.state().to_string()),
                        error: Some(format!("cannot store the result: {e}")),
                    }
                }
            }
        }
        Ok(record) => {
            app.metrics.task_poll(&route.name, "running");
            tracing::debug!(route = %route.name, task_id = %task.task_id, state = record.state(), "task still running");
            TaskUpdate::Polled {
                next_poll_ms: next(Duration::ZERO),
                provider_state: Some(record.state().to_string()),
                error: None,
            }
        }
        Err(e) => {
            app.metrics.task_poll(&route.name, e.kind.as_str());
            held_back = e.says_nothing_of_the_task();
            let account = matches!(
                e.kind,
                ErrorKind::Unauthorized | ErrorKind::NoCredits | ErrorKind::Disabled
            );
            match e.action {
                Action::GiveUp if !account && ends_the_task(&e) => {
                    tracing::warn!(route = %route.name, task_id = %task.task_id, error = %e, "giving up on the task");
                    TaskUpdate::GaveUp { error: e.to_string() }
                }
                action => {
                    let pause = match action {
                        Action::RetryLater { after } => after,
                        Action::GiveUp => Duration::ZERO,
                    };
                    // The client gives up on the call; the task is not given
                    // up: it keeps its schedule while the key is fixed.
                    let error = if account {
                        let error = format!(
                            "{}; polled again on its schedule until the key or account is fixed (or give_up)",
                            e.cause()
                        );
                        // Once, then less and less often while it lasts
                        // (each open task's polls would flood the log).
                        match client.refusals().failed() {
                            Some(w) => tracing::error!(route = %route.name, task_id = %task.task_id, error = %error,
                                refused_since_last_error = w.quiet, next_error_in_s = w.next_in.as_secs(),
                                "the provider refused the route's API key or account; check provider.api_key"),
                            None => tracing::debug!(route = %route.name, task_id = %task.task_id, error = %error,
                                "the provider refused the route's API key or account; check provider.api_key"),
                        }
                        error
                    } else {
                        tracing::info!(route = %route.name, task_id = %task.task_id, error = %e, "poll failed; will retry");
                        e.to_string()
                    };
                    TaskUpdate::Polled {
                        next_poll_ms: next(pause),
                        provider_state: None,
                        error: Some(error),
                    }
                }
            }
        }
    };
    // Past `give_up` a poll held back by the key's pause or the provider's
    // failure is not the task's last: it is asked once the pause is over
    // (for at most the longest pause past `give_up`, so this ends), else one
    // 429 or 502 after a restart or an outage gave up every due task unasked.
    // A result in hand the store did not take is asked for until it does.
    let grace = crate::provider::BackoffPolicy::default().longest().as_millis() as u64;
    let asked_or_too_late = !in_hand && (!held_back || now >= deadline.saturating_add(grace));
    let update = match update {
        TaskUpdate::Polled {
            error, provider_state, ..
        } if now >= deadline && asked_or_too_late => {
            let last = error.or(provider_state.map(|s| format!("provider state {s}")));
            TaskUpdate::GaveUp {
                error: format!(
                    "no result within give_up ({}){}",
                    humantime::format_duration(rc.give_up),
                    last.map(|l| format!("; last: {l}")).unwrap_or_default()
                ),
            }
        }
        u => u,
    };
    if let TaskUpdate::GaveUp { error } = &update {
        tracing::warn!(route = %route.name, task_id = %task.task_id, error = %error, "expected task given up");
    }
    settle(app, &task, update).await;
}

/// A poll of `task` panicked (a defect): recorded as a failed poll, the
/// task asked again after `every` — or given up once past `give_up`, as a
/// poll that keeps panicking would otherwise keep it open for ever.
pub async fn panicked(app: &App, task: &Task) {
    let error = "the poll panicked (a defect of the relay: please report it with the log)".to_string();
    tracing::error!(route = %task.route, task_id = %task.task_id, "{error}");
    let live = app.live();
    let rc = live
        .config
        .routes
        .iter()
        .find(|r| r.name == task.route)
        .and_then(|r| r.reconcile);
    let now = crate::clock::now_ms();
    let update = match rc {
        Some(rc) if now < task.registered_ms.saturating_add(rc.give_up.as_millis() as u64) => TaskUpdate::Polled {
            next_poll_ms: now + super::jittered(rc.every).as_millis() as u64,
            provider_state: None,
            error: Some(error),
        },
        _ => TaskUpdate::GaveUp { error },
    };
    settle(app, task, update).await;
}

/// How long a result the store refused for a reload's new topology waits
/// for that reload to swap the config before it is stored again (once).
const RELOAD_WAIT: Duration = Duration::from_secs(5);

/// The store refused a write for a reason that passes: no room under
/// `store.min_free`, the store away, a reload changing the route.
fn store_refused_for_now(e: &anyhow::Error) -> bool {
    use crate::store::StoreError;
    matches!(
        e.downcast_ref::<StoreError>(),
        Some(StoreError::NoRoom(_) | StoreError::Unavailable(_) | StoreError::RouteChanged(_))
    )
}

/// The store refused the event for a reload's new topology.
fn route_changed(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<crate::store::StoreError>(),
        Some(crate::store::StoreError::RouteChanged(_))
    )
}

/// Whether a refused status call means the task will never have a result
/// to fetch. Exactly these: in the provider's own JSON envelope, `code` 404
/// or 422 (no such task: record null, older than 14 days, bad id), 501 or
/// 531 (the generation failed), 451 (an input could not be fetched); or a
/// task id the client refuses to send (invalid input). Anything else is
/// polled again on the schedule until `give_up`: a `code: 400` (Veo's
/// transient "1080P is processing"), another code, or any of those statuses
/// as a bare HTTP answer that is not the provider's JSON (a gateway's page
/// while the API is redeployed).
fn ends_the_task(e: &crate::provider::ProviderError) -> bool {
    match e.kind {
        ErrorKind::NotFound | ErrorKind::Rejected | ErrorKind::GenerationFailed | ErrorKind::SourceBlocked => {
            e.code.is_some()
        }
        ErrorKind::InvalidInput => true,
        _ => false,
    }
}

async fn settle(app: &App, task: &Task, update: TaskUpdate) {
    if let Err(e) = app.store.update_task(&task.route, &task.task_id, update).await {
        tracing::error!(route = %task.route, task_id = %task.task_id, error = %e,
            "cannot record the poll of an expected task; it is polled again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderError;

    fn refused(kind: ErrorKind, code: Option<i64>, http: u16) -> ProviderError {
        ProviderError {
            kind,
            action: Action::GiveUp,
            code,
            http_status: Some(http),
            call: "record-info".into(),
            message: "refused".into(),
        }
    }

    #[test]
    fn only_the_providers_own_answers_and_a_refused_id_end_a_task() {
        for (kind, code) in [
            (ErrorKind::NotFound, 404),
            (ErrorKind::Rejected, 422),
            (ErrorKind::GenerationFailed, 501),
            (ErrorKind::GenerationFailed, 531),
            (ErrorKind::SourceBlocked, 451),
        ] {
            assert!(ends_the_task(&refused(kind, Some(code), 200)), "{kind:?} {code}");
            assert!(
                !ends_the_task(&refused(kind, None, code as u16)),
                "bare HTTP {code} ended the task"
            );
        }
        let mut bad_id = refused(ErrorKind::InvalidInput, None, 0);
        bad_id.http_status = None;
        assert!(ends_the_task(&bad_id));
        assert!(!ends_the_task(&refused(ErrorKind::BadRequest, Some(400), 200)));
    }
}
