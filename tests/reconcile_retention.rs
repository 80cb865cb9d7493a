//! Retention never drops an expected task that is still open: with
//! `store.retention` shorter than the route's `give_up`, a task the provider
//! is still generating survives the sweeps, keeps being polled and is
//! recovered when the provider finishes; it goes the retention after it
//! settled. A task nobody polls (its route does not reconcile) still goes
//! the retention after its registration. On tokio's paused clock, moved with
//! `advance` (the store's writer is a blocking task, so time moves only when
//! the test moves it).

use crate::common;

use std::time::Duration;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{register, submit_ok, task, task_route, tasks_config};
use common::*;
use http::StatusCode;

/// Move time to `at` after `t0` in one-second steps, letting the daemon `h`
/// settle after each.
async fn advance_to(h: &hookrelay::Handle, t0: tokio::time::Instant, at: Duration) {
    while t0.elapsed() < at {
        tokio::time::advance(secs(1).min(at - t0.elapsed())).await;
        settle(h).await;
    }
}

async fn task_status(h: &hookrelay::Handle, id: &str) -> StatusCode {
    admin(h.admin_addr, "GET", &format!("/api/tasks/{id}")).await.0
}

/// The task's status once a sweep that should remove it has had its store
/// work done: the sweep runs on a blocking thread, in real time, so it may
/// still be writing when the clock has passed it (under a loaded machine);
/// wait for it (up to ~50 s of real time: its writes are fsynced, slow on
/// a busy disk) without moving the clock on to the next sweep.
async fn gone_after_sweep(h: &hookrelay::Handle, id: &str) -> StatusCode {
    let mut status = task_status(h, id).await;
    for _ in 0..2000 {
        if status == StatusCode::NOT_FOUND {
            break;
        }
        settle(h).await;
        status = task_status(h, id).await;
    }
    status
}

#[tokio::test(start_paused = true)]
async fn an_open_task_outlives_the_retention_until_it_is_recovered() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let polled =
        task_route("runway", "kie-runway", &fake, &sub.url()).reconcile(Reconcile::new(secs(5), secs(5), secs(600)));
    let unpolled = task_route("plain", "kie-runway", &fake, &sub.url()).without_reconcile();
    let (cfg, _) = tasks_config(dir.path(), vec![polled, unpolled]);
    // Sweeps run 10 s after the start, then every minute.
    let h = start(&cfg.retention(secs(60))).await;
    let t0 = tokio::time::Instant::now();
    // The provider is still generating, and its callback will never come.
    fake.plan_next(TaskPlan::success().manual());
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    let (s, v) = register(h.admin_addr, "plain", "never-polled").await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The sweep at 70 s has both registered before its cutoff.
    advance_to(&h, t0, secs(75)).await;
    assert_eq!(
        gone_after_sweep(&h, "never-polled").await,
        StatusCode::NOT_FOUND,
        "a task nobody polls goes the retention after its registration"
    );
    let t = task(h.admin_addr, &id).await;
    assert_eq!(t["state"], "polling", "{t}");
    let polls = fake.status_requests(&id);
    assert!(polls >= 10, "polled {polls} times in 75 s");

    // Polling goes on, and the provider's result is fetched when it is there.
    advance_to(&h, t0, secs(85)).await;
    assert!(fake.status_requests(&id) > polls, "still polled after the sweep");
    let stages = fake.stage_count(&id);
    fake.set_stage(&id, stages);
    advance_to(&h, t0, secs(95)).await;
    let t = task(h.admin_addr, &id).await;
    assert_eq!(t["state"], "recovered", "{t}");
    sub.wait_for(secs(10), "the recovered result", |all| all.len() == 1)
        .await;
    assert_eq!(sub.all()[0].header("hookrelay-source"), "poll");

    // Settled at about 90 s: kept by the sweep at 130 s (cutoff 70 s), gone
    // after the one at 190 s (cutoff 130 s).
    advance_to(&h, t0, secs(135)).await;
    assert_eq!(task_status(&h, &id).await, StatusCode::OK);
    advance_to(&h, t0, secs(195)).await;
    assert_eq!(
        gone_after_sweep(&h, &id).await,
        StatusCode::NOT_FOUND,
        "kept after the sweep at 190 s"
    );
    h.shutdown().await;
}
