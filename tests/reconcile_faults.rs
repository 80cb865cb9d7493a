//! What a poll past `give_up` may conclude, and what `verify = "fetch"` may
//! conclude from one look-up, when the answer says nothing about the task:
//! - a result fetched while the store refuses new events (its disk under
//!   `store.min_free`) was given up with the result in hand, for good;
//! - a provider 502 (a gateway's page) at the poll past `give_up` gave the
//!   task up unasked, as a 429 no longer does;
//! - a gateway's bare 404 page held a genuine callback as unverified ("the
//!   provider has no record"), though only the provider's own envelope says so.

use crate::common;
use crate::reconcile_outcomes::scripted_http;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{submit_ok, task, task_route, task_until, tasks_config};
use common::*;
use serde_json::json;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn a_result_the_store_refuses_past_give_up_is_not_given_up() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        task_route("runway", "kie-runway", &fake, &sub.url()).reconcile(Reconcile::new(secs(1), ms(200), ms(1500)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    fake.plan_next(TaskPlan::success().manual());
    let id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    h.shutdown().await;
    fake.set_stage(&id, fake.stage_count(&id));
    tokio::time::sleep(ms(1700)).await;
    // Back past `give_up`, with no room for new events: polled, not stored.
    let h = start(&cfg.clone().min_free(u64::MAX / 4)).await;
    let deadline = std::time::Instant::now() + secs(10);
    let t = loop {
        let t = task(h.admin_addr, &id).await;
        if t["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot store the result"))
        {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "not polled: {t}");
        tokio::time::sleep(ms(100)).await;
    };
    assert_eq!(t["state"], "polling", "{t}");
    h.shutdown().await;
    // Room again: the result is recovered and delivered.
    let h = start(&cfg).await;
    task_until(h.admin_addr, &id, "recovered", secs(10)).await;
    sub.wait_for(secs(10), "the recovered result", |r| r.len() == 1).await;
    h.shutdown().await;
}

/// Veo's record of a finished task `id`.
fn veo_record(id: &str) -> String {
    json!({"code": 200, "msg": "success", "data": {"taskId": id, "successFlag": 1,
        "response": {"taskId": id, "resultUrls": ["https://files.example/v.mp4"]}}})
    .to_string()
}

fn veo_route(provider: std::net::SocketAddr, sub: &Sub) -> Route {
    Route::new("veo", "/hooks/veo")
        .allow_anyone()
        .preset("kie-veo")
        .provider(Provider::new("fault-test-key", &format!("http://{provider}")))
        .subscriber(Subscriber::new("veo-sub", sub.url()))
}

#[tokio::test]
async fn a_502_at_the_poll_past_give_up_does_not_give_the_task_up() {
    let id = "veo-fault-502";
    let page = || {
        (
            502u16,
            "text/html",
            "<html><body>502 Bad Gateway</body></html>".to_string(),
        )
    };
    let (provider, asked) = scripted_http(vec![page(), page(), (200, "application/json", veo_record(id))]).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = veo_route(provider, &sub).reconcile(Reconcile::new(ms(300), ms(300), ms(450)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let (s, v) = common::tasks::register(h.admin_addr, "veo", id).await;
    assert!(s.is_success(), "{s} {v}");
    // Past `give_up` after the second 502: asked again after its back-off.
    let t = task_until(h.admin_addr, id, "recovered", secs(30)).await;
    assert!(asked.load(Ordering::SeqCst) >= 3, "{t}");
    sub.wait_for(secs(10), "the recovered result", |r| r.len() == 1).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_gateway_404_page_does_not_hold_a_genuine_callback() {
    let id = "veo-fault-404";
    let (provider, asked) = scripted_http(vec![
        (
            404,
            "text/html",
            "<html><body><h1>404 Not Found</h1>nginx</body></html>".into(),
        ),
        (200, "application/json", veo_record(id)),
    ])
    .await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) = tasks_config(dir.path(), vec![veo_route(provider, &sub).verify("fetch")]);
    let h = start(&cfg).await;
    let cb = json!({"code": 200, "msg": "Veo3.1 video generated successfully.",
        "data": {"taskId": id, "info": {"resultUrls": ["https://files.example/v.mp4"]}}});
    let (s, v) = callback_at(addr, "/hooks/veo", &cb.to_string()).await;
    assert_eq!(s, 200, "{v}");
    sub.wait_for(secs(40), "the genuine callback, once the provider answers", |r| {
        r.len() == 1
    })
    .await;
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    let m = metrics(h.admin_addr).await;
    assert_eq!(
        m.iter()
            .find(|(k, _)| k.starts_with("hookrelay_unverified_total"))
            .map(|(_, v)| *v),
        None,
        "counted as unverified"
    );
    h.shutdown().await;
}
