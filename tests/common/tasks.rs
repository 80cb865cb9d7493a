//! Expected tasks: a relay on a fixed port whose routes start from a `kie-…`
//! preset, call the fake provider and reconcile fast (`server.public_url`
//! names that port, so the fake's callbacks reach the relay), the submit
//! proxy, and reading tasks back from the admin API.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::client::{admin, request};
use super::config::{ms, secs, TestConfig};
use super::ports::free_port;
use super::provider::FakeProvider;
use super::route::{Provider, Reconcile, Route, Subscriber};

/// Reconcile settings for tests: first poll after 300 ms, then every 200 ms.
pub fn fast_reconcile() -> Reconcile {
    Reconcile::new(ms(300), ms(200), secs(60))
}

/// Route `name` at `/hooks/name` (no token: `allow_anyone`) with `preset`,
/// the fake's key and URL, and one subscriber `name-sub` at `sub_url`.
pub fn task_route(name: &str, preset: &str, fake: &FakeProvider, sub_url: &str) -> Route {
    Route::new(name, &format!("/hooks/{name}"))
        .allow_anyone()
        .preset(preset)
        .provider(Provider::new(fake.api_key(), &fake.url()))
        .reconcile(fast_reconcile())
        .subscriber(Subscriber::new(&format!("{name}-sub"), sub_url))
}

/// A `runway` route that checks the kie signature (`fake-hmac-key`) and
/// verifies each callback against the provider's record (`verify = "fetch"`).
pub fn signed_verify_route(fake: &FakeProvider, sub_url: &str) -> Route {
    task_route("runway", "kie-runway", fake, sub_url)
        .signature(super::route::Signature::kie("fake-hmac-key"))
        .verify("fetch")
}

/// `route` with `verify = "fetch"` when `verify`, else as it is (the two
/// sides of a reload turning verification on or off).
pub fn verifying(route: Route, verify: bool) -> Route {
    if verify {
        route.verify("fetch")
    } else {
        route
    }
}

/// Route `runway` (`kie-runway`, the kie signature `fake-hmac-key`, no
/// `reconcile`) to `sub_url`, verifying by fetch when `verify`.
pub fn signed_runway(fake: &FakeProvider, sub_url: &str, verify: bool) -> Route {
    let r = task_route("runway", "kie-runway", fake, sub_url)
        .signature(super::route::Signature::kie("fake-hmac-key"))
        .without_reconcile();
    verifying(r, verify)
}

/// A config with `routes` (replacing route `t`), listening on a fixed port
/// that `server.public_url` names.
pub fn tasks_config(dir: &Path, routes: Vec<Route>) -> (TestConfig, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut routes = routes.into_iter();
    let first = routes.next().expect("at least one route");
    let mut cfg = config_at(dir, addr, first);
    for r in routes {
        cfg = cfg.route(r);
    }
    (cfg, addr)
}

/// A config listening on `addr`, which `server.public_url` names, with
/// `route` in place of route `t`.
pub fn config_at(dir: &Path, addr: SocketAddr, route: Route) -> TestConfig {
    TestConfig::new(dir)
        .listen(addr)
        .edit_route("t", |_| route)
        .public_url(format!("http://{addr}"))
}

/// Route `runway` (`kie-runway`, `verify = "fetch"`, subscriber `DOWN`)
/// whose calls to the provider go to `via` (a slow proxy to `fake`, say).
pub fn fetch_verified_route(fake: &FakeProvider, via: SocketAddr) -> Route {
    task_route("runway", "kie-runway", fake, super::subscriber::DOWN)
        .provider(Provider::new(fake.api_key(), &format!("http://{via}")))
        .verify("fetch")
}

/// Route `runway` (`kie-runway`, open, no reconcile) whose callbacks are
/// checked at `provider` (`verify = "fetch"`), with no subscriber yet.
pub fn verified_runway(fake: &FakeProvider, provider: &str) -> Route {
    Route::new("runway", "/hooks/runway")
        .allow_anyone()
        .preset("kie-runway")
        .provider(Provider::new(fake.api_key(), provider))
        .verify("fetch")
}

/// `POST /api/routes/{route}/submit?endpoint=…`: status, headers and the answer's bytes.
pub async fn submit(
    admin_addr: SocketAddr,
    route: &str,
    endpoint: &str,
    body: &Value,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let path = format!("/api/routes/{route}/submit?endpoint={endpoint}");
    request(
        admin_addr,
        None,
        "POST",
        &path,
        &[("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await
}

/// [`submit`] of a Runway create call on route `runway`, in a task of its
/// own (the test holds the provider's answer meanwhile, or drops the call).
pub fn submit_in_background(admin_addr: SocketAddr) -> tokio::task::JoinHandle<(StatusCode, http::HeaderMap, Bytes)> {
    tokio::spawn(async move {
        submit(
            admin_addr,
            "runway",
            "/api/v1/runway/generate",
            &serde_json::json!({"prompt": "a cat"}),
        )
        .await
    })
}

/// Submit a create call that must succeed; the task id the provider gave.
pub async fn submit_ok(admin_addr: SocketAddr, route: &str, endpoint: &str) -> String {
    let (s, _, b) = submit(admin_addr, route, endpoint, &serde_json::json!({"prompt": "a cat"})).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    v["data"]["taskId"].as_str().expect("task id in the answer").to_string()
}

/// `GET /api/tasks?…` rows.
pub async fn task_list(admin_addr: SocketAddr, query: &str) -> Vec<Value> {
    let (s, v) = admin(admin_addr, "GET", &format!("/api/tasks?limit=1000&{query}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["tasks"].as_array().cloned().unwrap_or_default()
}

/// One task (`GET /api/tasks/{id}`).
pub async fn task(admin_addr: SocketAddr, task_id: &str) -> Value {
    let (s, v) = admin(admin_addr, "GET", &format!("/api/tasks/{task_id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// Wait until the task is in `state`; the task either way (the caller asserts).
pub async fn task_until(admin_addr: SocketAddr, task_id: &str, state: &str, limit: Duration) -> Value {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let t = task(admin_addr, task_id).await;
        if t["state"] == state || tokio::time::Instant::now() > end {
            return t;
        }
        tokio::time::sleep(ms(20)).await;
    }
}

/// A relay whose route `runway` verifies ([`signed_runway`]), started on
/// its own store, with a Runway task finished at its fake provider whose
/// callback was lost, registered as expected.
pub struct LostTask {
    pub fake: FakeProvider,
    pub sub: super::subscriber::Sub,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub h: hookrelay::Handle,
    pub task: String,
}

impl LostTask {
    pub async fn start() -> LostTask {
        Self::start_with(None).await
    }

    /// In cluster mode on `nats`, or with the embedded store (None).
    pub async fn start_with(nats: Option<&super::nats::NatsCluster>) -> LostTask {
        let fake = FakeProvider::start(super::provider::FakeOptions::default()).await;
        let sub = super::subscriber::Sub::ok().await;
        let dir = tempfile::tempdir().unwrap();
        let (cfg, addr) = tasks_config(dir.path(), vec![signed_runway(&fake, &sub.url(), true)]);
        let h = super::daemon::start(&on_store(cfg, nats)).await;
        let task = fake.create(
            hookrelay::provider::Product::Runway,
            super::provider::TaskPlan::success().lose(),
            None,
        );
        fake.wait_until("the task to finish", secs(5), |f| f.is_finished(&task))
            .await;
        let (s, v) = register(h.admin_addr, "runway", &task).await;
        assert!(s.is_success(), "{s} {v}");
        LostTask {
            fake,
            sub,
            dir,
            addr,
            h,
            task,
        }
    }
}

impl LostTask {
    /// A forged final callback of the task (its video at `evil_url`),
    /// signed, posted, and held as unverified: its event id.
    pub async fn held_forgery(&self, evil_url: &str) -> String {
        let mut forged = self.fake.final_callback(&self.task);
        forged["data"]["video_url"] = evil_url.into();
        let id = self
            .fake
            .post_signed(self.addr, "/hooks/runway", &self.task, &forged)
            .await;
        super::client::admin_expect(self.h.admin_addr, &format!("/api/events/{id}"), secs(10), "held", |v| {
            v.to_string().contains("unverified: ")
        })
        .await;
        id
    }
}

/// `POST /api/tasks` `{"route", "task_id"}`.
pub async fn register(admin_addr: SocketAddr, route: &str, task_id: &str) -> (StatusCode, Value) {
    let body = serde_json::json!({"route": route, "task_id": task_id});
    let (s, _, b) = request(
        admin_addr,
        None,
        "POST",
        "/api/tasks",
        &[("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// A task registered while its route did not reconcile is polled once a
/// reload adds `reconcile`: `cfg` (from [`tasks_config`], embedded or
/// cluster store) has route `runway` as [`task_route`] makes it, and its
/// `reconcile` is taken out for the start and put back by the reload. The
/// lost callback's result is recovered and delivered to `sub`; a task its
/// callback settled meanwhile is not polled.
pub async fn a_task_from_before_reconcile_is_polled_once_it_is_added(
    cfg: TestConfig,
    fake: &FakeProvider,
    sub: &super::subscriber::Sub,
) {
    use super::provider::TaskPlan;
    let reconciling = cfg.edit_route("runway", |r| r.reconcile(fast_reconcile()));
    let without = reconciling.clone().edit_route("runway", Route::without_reconcile);
    let h = super::daemon::start(&without).await;
    fake.plan_next(TaskPlan::success().lose());
    let lost = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    let called = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    let t = task_until(h.admin_addr, &called, "called_back", secs(10)).await;
    assert_eq!(t["state"], "called_back", "{t}");
    let t = task(h.admin_addr, &lost).await;
    assert_eq!(
        (&t["state"], &t["next_poll_at"]),
        (&Value::from("waiting"), &Value::Null),
        "{t}"
    );
    reconciling.write();
    h.reload().await.unwrap();
    let t = task_until(h.admin_addr, &lost, "recovered", secs(10)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    let got = sub
        .wait_for(secs(10), "the callback and the recovered result", |all| all.len() == 2)
        .await;
    assert_eq!(got[1].header("hookrelay-source"), "poll");
    assert_eq!(fake.status_requests(&called), 0, "a settled task is not polled");
    h.shutdown().await;
}

/// A task registered after its final callback was stored (the submit proxy
/// registers once the create answer is back, so a fast failure callback can
/// come first; or `POST /api/tasks` for a task whose callback came) is
/// `called_back` by that event at once, not `waiting`, and never polled. The
/// relay's route `runway` (preset `kie-runway`) reconciles with `cfg`.
pub async fn a_task_registered_after_its_callback_is_called_back(
    cfg: TestConfig,
    fake: &FakeProvider,
    sub: &super::subscriber::Sub,
) {
    let h = super::daemon::start(&cfg).await;
    let body = serde_json::json!({"code": 400, "msg": "bad prompt",
        "data": {"task_id": "early-1", "video_id": "", "video_url": "", "image_url": ""}});
    let (s, _, b) = super::client::post(
        h.ingest_addrs[0],
        "/hooks/runway",
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    sub.wait_for(secs(10), "the callback", |all| !all.is_empty()).await;
    let (s, v) = register(h.admin_addr, "runway", "early-1").await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(v["state"], "called_back", "the registration's answer: {v}");
    let t = task(h.admin_addr, "early-1").await;
    assert_eq!(
        (&t["state"], &t["next_poll_at"]),
        (&Value::from("called_back"), &Value::Null),
        "the task's final callback was stored before it was registered: {t}"
    );
    let (_, events) = admin(h.admin_addr, "GET", "/api/events?route=runway").await;
    assert_eq!(
        t["event"], events["events"][0]["id"],
        "settled by the stored callback: {events}"
    );
    tokio::time::sleep(ms(800)).await;
    assert_eq!(fake.status_requests("early-1"), 0, "a settled task is not polled");
    assert_eq!(sub.count(), 1, "delivered once");
    h.shutdown().await;
}

/// `cfg` in cluster mode on `nats` (one replica), or as it is (None).
pub fn on_store(cfg: TestConfig, nats: Option<&super::nats::NatsCluster>) -> TestConfig {
    match nats {
        Some(n) => cfg.nats(n.urls(), 1),
        None => cfg,
    }
}
