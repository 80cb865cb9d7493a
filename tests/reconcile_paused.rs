//! A task whose `give_up` passed while the relay could not ask (down, or the
//! key paused after the provider's 429) is asked before it is given up: a
//! poll the key's pause (or the relay's own pacing) kept from being sent, or
//! one the provider refused with 429, is not the task's last word. Before,
//! the first poll after `give_up` gave the task up whatever became of its
//! call, so after a restart (or a reload adding `reconcile`) one 429 gave up
//! every due task the pause then kept unsent, their results at the provider
//! never fetched.

use crate::common;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{submit_ok, task_route, task_until, tasks_config};
use common::*;

#[tokio::test]
async fn tasks_past_give_up_are_asked_after_the_keys_pause_not_given_up_unasked() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        task_route("runway", "kie-runway", &fake, &sub.url()).reconcile(Reconcile::new(secs(1), ms(200), ms(1500)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        // Manual: no callback is sent; the result is only at the provider.
        fake.plan_next(TaskPlan::success().manual());
        ids.push(submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await);
    }
    h.shutdown().await;
    for id in &ids {
        assert_eq!(fake.status_requests(id), 0, "not polled before the stop");
        fake.set_stage(id, fake.stage_count(id));
    }
    // Down past every task's give_up; the first status call after the
    // restart is answered 429 (the key pauses 2 s).
    tokio::time::sleep(ms(1700)).await;
    fake.rate_limit(1);
    let h = start(&cfg).await;
    let mut left = Vec::new();
    for id in &ids {
        let t = task_until(h.admin_addr, id, "recovered", secs(15)).await;
        if t["state"] != "recovered" {
            left.push(t);
        }
    }
    assert!(
        left.is_empty(),
        "{} of {} not recovered: {left:#?}",
        left.len(),
        ids.len()
    );
    sub.wait_for(secs(5), "every result", |all| all.len() == ids.len())
        .await;
    h.shutdown().await;
}
