//! Expected tasks survive `kill -9` of the relay: a task registered through
//! the submit proxy, whose callback is lost while the relay is down, is
//! polled after the restart and its result delivered (marked `poll`).

use crate::common;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{submit_ok, task, task_route, task_until, tasks_config};
use common::*;

#[tokio::test]
async fn tasks_and_their_polls_resume_after_kill_9() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        task_route("runway", "kie-runway", &fake, &sub.url()).reconcile(Reconcile::new(secs(2), ms(200), secs(60)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let path = cfg.write();
    let mut bin = Bin::start(&path, &[]);
    // Lost while the relay is down: the provider gives up on its callback.
    fake.plan_next(TaskPlan::success().lose());
    let id = submit_ok(bin.admin, "runway", "/api/v1/runway/generate").await;
    assert_eq!(task(bin.admin, &id).await["state"], "waiting");
    bin.kill9();
    assert_eq!(fake.status_requests(&id), 0, "not polled before the kill");
    let bin = Bin::start(&path, &[]);
    let t = task_until(bin.admin, &id, "recovered", secs(15)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    let got = sub
        .wait_for(secs(10), "the recovered result", |all| all.len() == 1)
        .await;
    assert_eq!(got[0].header("hookrelay-source"), "poll");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["data"]["task_id"], id.as_str());
    assert_eq!(body, fake.final_callback(&id), "the product's callback shape");
}
