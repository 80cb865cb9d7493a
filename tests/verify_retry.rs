//! `verify = "fetch"`: a callback verified before its first attempt is not
//! asked about again for its retries. The verdicts live in memory: after a
//! restart (or 10,000 newer events) a retry asked the provider again, and a
//! record that had changed meanwhile (the task aged out, its URLs signed
//! anew) held a genuine callback, already attempted, as unverified.
//! From review 58, delivery finding 2.

use crate::common;

use std::sync::Arc;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::subscriber::Behaviour;
use common::tasks::{task_route, tasks_config};
use common::*;
use hookrelay::provider::Product;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_restart_is_not_verified_again() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    // The first attempt fails; the retry succeeds.
    let sub = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::Status(503),
        _ => Behaviour::Status(200),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url()).verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let cfg = cfg.delivery_retry([secs(3), secs(3)]);
    let h = start(&cfg).await;
    let task = fake.create(
        Product::Runway,
        TaskPlan::success(),
        Some(&format!("http://{addr}/hooks/runway")),
    );
    sub.wait_for(secs(15), "the first attempt", |all| all.len() == 1).await;
    let asked = fake.status_requests(&task);
    assert!(asked >= 1, "it was checked at the provider");
    h.shutdown().await;

    // The provider's record is gone (the task aged out) when the retry is due.
    fake.expire(&task);
    let h = start(&cfg).await;
    let got = sub.wait_for(secs(15), "the retry", |all| all.len() == 2).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    let (_, dead) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(dead["dead_letters"].as_array().map(Vec::len), Some(0), "{dead}");
    h.shutdown().await;
}
