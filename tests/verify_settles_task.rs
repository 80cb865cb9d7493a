//! On a `verify = "fetch"` route a callback settles its expected task once
//! it agrees with the provider's record, not only the task's poll: with
//! `reconcile` off, a task whose callback was verified and delivered stayed
//! `waiting` (combined-features review, stop 73).

use crate::common;

use common::nats::NatsCluster;
use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{signed_verify_route, submit_ok, task_until, tasks_config};
use common::*;

#[tokio::test]
async fn a_verified_callback_settles_its_task_without_a_poll() {
    verified_callback_settles_its_task(None).await;
}

/// The same in cluster mode.
#[tokio::test]
async fn a_verified_callback_settles_its_task_in_cluster_mode_too() {
    let nats = NatsCluster::start(1).await;
    verified_callback_settles_its_task(Some(&nats)).await;
}

async fn verified_callback_settles_its_task(nats: Option<&NatsCluster>) {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = signed_verify_route(&fake, &sub.url()).without_reconcile();
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let cfg = match nats {
        Some(n) => cfg.nats(n.urls(), 1),
        None => cfg,
    };
    let h = start(&cfg).await;
    let task = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    sub.wait_for(secs(20), "the verified callback", |all| all.len() == 1)
        .await;
    assert!(fake.status_requests(&task) >= 1, "it was checked at the provider");
    let t = task_until(h.admin_addr, &task, "called_back", secs(10)).await;
    h.shutdown().await;
    assert_eq!(
        (&t["state"], &t["next_poll_at"], &t["polls"]),
        (&"called_back".into(), &serde_json::Value::Null, &0.into()),
        "{t}"
    );
}

/// A callback stored while its route verified and sent once a reload turned
/// `verify` off settles its task too (review of stop 74's mend: it stayed
/// `waiting`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_sent_once_verify_is_off_settles_its_task() {
    let common::tasks::LostTask {
        fake,
        sub,
        dir,
        addr,
        h,
        task,
    } = common::tasks::LostTask::start().await;
    let route = |verify: bool| common::tasks::signed_runway(&fake, &sub.url(), verify);
    fake.rate_limit(1_000_000);
    fake.post_signed(addr, "/hooks/runway", &task, &fake.final_callback(&task))
        .await;
    fake.wait_until("the look-up to be refused", secs(10), |f| f.status_requests(&task) >= 1)
        .await;
    common::tasks::config_at(dir.path(), addr, route(false)).write();
    h.reload().await.expect("reload");
    fake.rate_limit(0);
    sub.wait_for(secs(30), "the callback, sent unchecked", |all| all.len() == 1)
        .await;
    let t = task_until(h.admin_addr, &task, "called_back", secs(10)).await;
    h.shutdown().await;
    assert_eq!(t["state"], "called_back", "{t}");
}
