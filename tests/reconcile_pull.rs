//! Expected tasks with a pull subscriber: a recovered result is offered with
//! `hookrelay-source: poll` among its headers, and a callback that
//! `verify = "fetch"` holds as unverified is never offered.

use crate::common;

use base64::Engine as _;
use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{submit_ok, tasks_config};
use common::*;
use hookrelay::provider::Product;
use serde_json::Value;

#[tokio::test]
async fn pull_messages_say_poll_and_never_carry_an_unverified_callback() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let route = Route::new("runway", "/hooks/runway")
        .allow_anyone()
        .preset("kie-runway")
        .provider(common::route::Provider::new(fake.api_key(), &fake.url()))
        .reconcile(common::tasks::fast_reconcile())
        .verify("fetch")
        .subscriber(Subscriber::pull("p", "pull-token"));
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;

    // A forged body for a task whose real callback was lost.
    let target = fake.create(Product::Runway, TaskPlan::success().lose(), None);
    fake.wait_until("the task to finish", secs(5), |f| f.is_finished(&target))
        .await;
    let mut forged = fake.final_callback(&target);
    forged["data"]["video_url"] = "https://evil.example/x.mp4".into();
    let (s, _, b) = post(
        addr,
        "/hooks/runway",
        &[("content-type", "application/json")],
        forged.to_string(),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let forged_id = serde_json::from_slice::<Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A submitted task whose callback is lost: recovered by polling.
    fake.plan_next(TaskPlan::success().lose());
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;

    let mut got: Vec<Value> = Vec::new();
    let end = tokio::time::Instant::now() + secs(15);
    while got.is_empty() && tokio::time::Instant::now() < end {
        let (s, _, v) = pull_call(addr, "GET", "/pull/p?wait=2s&max=10", Some("pull-token"), None, "").await;
        assert_eq!(s, 200, "{v}");
        got.extend(v["messages"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["headers"]["hookrelay-source"], "poll");
    let body = base64::engine::general_purpose::STANDARD
        .decode(m["body"].as_str().unwrap())
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["data"]["task_id"], id.as_str());

    let view = admin_until(h.admin_addr, &format!("/api/events/{forged_id}"), secs(5), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    assert!(
        view["subscribers"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("unverified: "),
        "{view}"
    );
    let (_, _, v) = pull_call(addr, "GET", "/pull/p?wait=500ms&max=10", Some("pull-token"), None, "").await;
    let again = v["messages"].as_array().cloned().unwrap_or_default();
    assert!(again.iter().all(|m| m["id"] != forged_id.as_str()), "{again:?}");
    h.shutdown().await;
}
