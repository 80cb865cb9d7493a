//! A result recovered by polling and the real callback are one result
//! whatever the details the record cannot know: a failure is a duplicate of
//! a failure whatever its code (the record says 400 or nothing, the late
//! callback 500), a market callback in the short shape docs.kie.ai shows
//! (`{code, msg, data: {taskId}}`, no `state`) settles its task and is a
//! duplicate of the polled record (stored first, it settles a task
//! registered after it, which is then never polled); a success record without
//! its result URLs is not an end (the callback carrying them is delivered);
//! the task view shows the provider's final state of a task a poll settled,
//! and a refused API key does not read "giving up" while the task keeps
//! polling; on a route that verifies by fetch, a callback held as
//! unverified does not settle its task (the task is polled, its result
//! delivered), and a poll keeps asking after a transient `code: 400` or a
//! gateway's 404 page.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{register, signed_verify_route, submit_ok, task, task_route, task_until, tasks_config};
use common::*;
use hookrelay::provider::Product;
use serde_json::{json, Value};

/// POST a callback to `/hooks/{route}`: the relay's answer (`duplicate`, `id`).
async fn send(addr: SocketAddr, route: &str, body: &Value) -> Value {
    let (s, v) = callback_at(addr, &format!("/hooks/{route}"), &body.to_string()).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn registered(admin_addr: SocketAddr, route: &str, id: &str) {
    let (s, t) = register(admin_addr, route, id).await;
    assert_eq!(s, 200, "{t}");
}

/// Wait (up to 10 s) until the task's record was asked for `n` times; the
/// caller then asserts what the task is.
async fn polled(fake: &FakeProvider, id: &str, n: usize) {
    let end = tokio::time::Instant::now() + secs(10);
    while fake.status_requests(id) < n && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(20)).await;
    }
}

fn runway_failure(id: &str, code: i64, msg: &str) -> Value {
    json!({"code": code, "msg": msg, "data": {"task_id": id, "video_id": "", "video_url": "", "image_url": ""}})
}

#[tokio::test]
async fn a_failure_callback_with_another_code_is_a_duplicate_of_the_polled_failure() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&cfg).await;
    // The record's failCode: the documented 400, null, and the old page's "".
    for (n, fail_code) in [json!(400), Value::Null, json!("")].into_iter().enumerate() {
        let id = format!("rD{n}");
        fake.set_record(
            Product::Runway,
            &id,
            json!({"taskId": id, "state": "fail", "videoInfo": null, "failCode": fail_code,
                   "failMsg": "Inappropriate content detected.", "expireFlag": 0}),
        );
        registered(h.admin_addr, "runway", &id).await;
        let t = task_until(h.admin_addr, &id, "recovered", secs(10)).await;
        assert_eq!(t["state"], "recovered", "{t}");
        assert_eq!(t["provider_state"], "fail", "the task view shows the final state: {t}");
        let got = sub
            .wait_for(secs(10), "the recovered failure", |all| all.len() == n + 1)
            .await;
        let polled: Value = serde_json::from_slice(&got[n].body).unwrap();
        assert_eq!(polled["code"], 400, "{polled}");
        // The provider's own failure callback comes late, with code 500.
        let a = send(addr, "runway", &runway_failure(&id, 500, "Internal error")).await;
        assert_eq!(a["duplicate"], true, "{id}: {a}");
        assert_eq!(a["id"], t["event"], "{id}: the polled event's id");
    }
    // The other order: the failure callback (500) is stored first, then the
    // task is registered: settled by the stored callback, never polled.
    let id = "rE";
    let first = send(addr, "runway", &runway_failure(id, 500, "Internal error")).await;
    assert_eq!(first["duplicate"], false, "{first}");
    fake.set_record(
        Product::Runway,
        id,
        json!({"taskId": id, "state": "fail", "videoInfo": null, "failCode": 400, "failMsg": "x"}),
    );
    registered(h.admin_addr, "runway", id).await;
    let t = task(h.admin_addr, id).await;
    assert_eq!(t["state"], "called_back", "settled by the stored failure: {t}");
    assert_eq!(t["event"], first["id"]);
    // The failure callback's delivery is made on its own time: wait for it,
    // then give a second one the time to show.
    sub.wait_for(secs(10), "the failure callback's delivery", |all| all.len() >= 4)
        .await;
    tokio::time::sleep(ms(500)).await;
    assert_eq!(sub.count(), 4, "one delivery per task");
    let m = metrics(h.admin_addr).await;
    assert!(
        m.iter()
            .all(|(k, v)| k != "hookrelay_dedupe_fallback_total{route=\"runway\"}" || *v == 0.0),
        "no callback fell back to the body hash"
    );
    h.shutdown().await;
}

/// The market callback docs.kie.ai shows, without `state`.
fn market_short(id: &str, ok: bool) -> Value {
    match ok {
        true => json!({"code": 200, "msg": "Playground task completed successfully.", "data": {"taskId": id}}),
        false => json!({"code": 501, "msg": "Playground task failed.", "data": {"taskId": id}}),
    }
}

fn market_record(id: &str, ok: bool) -> Value {
    match ok {
        true => json!({"taskId": id, "model": "grok-imagine/text-to-video", "state": "success",
            "resultJson": "{\"resultUrls\":[\"https://files.invalid/v.mp4\"]}", "failCode": null, "failMsg": ""}),
        false => json!({"taskId": id, "model": "grok-imagine/text-to-video", "state": "fail",
            "resultJson": "", "failCode": "500", "failMsg": "Internal error"}),
    }
}

#[tokio::test]
async fn a_market_callback_without_state_settles_its_task_and_dedupes_with_polling() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) = tasks_config(dir.path(), vec![task_route("market", "kie-market", &fake, &sub.url())]);
    let h = start(&cfg).await;
    let mut delivered = 0;
    for ok in [true, false] {
        // Polled first, then the short callback: a duplicate.
        let id = format!("mA-{ok}");
        fake.set_record(Product::Market, &id, market_record(&id, ok));
        registered(h.admin_addr, "market", &id).await;
        let t = task_until(h.admin_addr, &id, "recovered", secs(10)).await;
        assert_eq!(t["state"], "recovered", "{t}");
        let a = send(addr, "market", &market_short(&id, ok)).await;
        assert_eq!((&a["duplicate"], &a["id"]), (&json!(true), &t["event"]), "{id}: {a}");
        delivered += 1;

        // The short callback first: it settles the task, which is not polled.
        let id = format!("mB-{ok}");
        fake.set_record(Product::Market, &id, market_record(&id, ok));
        registered(h.admin_addr, "market", &id).await;
        let a = send(addr, "market", &market_short(&id, ok)).await;
        assert_eq!(a["duplicate"], false, "{a}");
        let t = task(h.admin_addr, &id).await;
        assert_eq!(t["state"], "called_back", "the callback ended the task: {t}");
        delivered += 1;

        // The short callback before the task is registered: the
        // registration finds it and the task is not polled.
        let id = format!("mC-{ok}");
        let a = send(addr, "market", &market_short(&id, ok)).await;
        assert_eq!(a["duplicate"], false, "{a}");
        fake.set_record(Product::Market, &id, market_record(&id, ok));
        registered(h.admin_addr, "market", &id).await;
        let t = task(h.admin_addr, &id).await;
        assert_eq!(t["state"], "called_back", "{t}");
        assert_eq!(t["event"], a["id"], "settled by the callback's event");
        delivered += 1;
    }
    sub.wait_for(secs(10), "one delivery per task", |all| all.len() >= delivered)
        .await;
    tokio::time::sleep(ms(800)).await;
    assert_eq!(sub.count(), delivered, "one delivery per task");
    for ok in [true, false] {
        for id in [format!("mB-{ok}"), format!("mC-{ok}")] {
            assert_eq!(fake.status_requests(&id), 0, "{id}: a settled task is not polled");
        }
    }
    let m = metrics(h.admin_addr).await;
    assert!(
        m.iter()
            .all(|(k, v)| k != "hookrelay_dedupe_fallback_total{route=\"market\"}" || *v == 0.0),
        "no callback fell back to the body hash"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_success_record_without_its_result_urls_is_polled_again() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) = tasks_config(dir.path(), vec![task_route("runway", "kie-runway", &fake, &sub.url())]);
    let h = start(&cfg).await;
    let lagging = |id: &str, info: Value| json!({"taskId": id, "state": "success", "videoInfo": info, "expireFlag": 0});
    let video = |id: &str| format!("https://files.invalid/{id}/video.mp4");
    // The record lags behind: the real callback, carrying the URLs, is delivered.
    fake.set_record(Product::Runway, "rS", lagging("rS", Value::Null));
    registered(h.admin_addr, "runway", "rS").await;
    polled(&fake, "rS", 3).await;
    let t = task(h.admin_addr, "rS").await;
    assert_eq!(t["state"], "polling", "{t}");
    assert_eq!(t["provider_state"], "success (no result yet)", "{t}");
    assert_eq!(sub.count(), 0, "nothing made of a record without its result");
    let real = json!({"code": 200, "msg": "All generated successfully.", "data": {"task_id": "rS",
        "video_id": "v1", "video_url": video("rS"), "image_url": "https://files.invalid/rS/cover.png"}});
    let a = send(addr, "runway", &real).await;
    assert_eq!(a["duplicate"], false, "{a}");
    let got = sub.wait_for(secs(10), "the real callback", |all| all.len() == 1).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["data"]["video_url"], video("rS"));
    assert_eq!(task(h.admin_addr, "rS").await["state"], "called_back");

    // No callback comes: once the record has the video, it is recovered with it.
    let empty = json!({"videoId": "v2", "taskId": "rT", "videoUrl": "", "imageUrl": ""});
    fake.set_record(Product::Runway, "rT", lagging("rT", empty));
    registered(h.admin_addr, "runway", "rT").await;
    polled(&fake, "rT", 2).await;
    assert_eq!(task(h.admin_addr, "rT").await["state"], "polling");
    let full = json!({"videoId": "v2", "taskId": "rT", "videoUrl": video("rT"), "imageUrl": ""});
    fake.set_record(Product::Runway, "rT", lagging("rT", full));
    let t = task_until(h.admin_addr, "rT", "recovered", secs(10)).await;
    assert_eq!(t["state"], "recovered", "{t}");
    assert_eq!(
        t["provider_state"], "success",
        "the final state, not the last poll's: {t}"
    );
    let got = sub
        .wait_for(secs(10), "the recovered result", |all| all.len() == 2)
        .await;
    let body: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(body["data"]["video_url"], video("rT"), "{body}");
    h.shutdown().await;
}

/// A refused key keeps its tasks polling (not given up, `last_error` says
/// so), and shows in the log at its first refused poll, not at every poll
/// of every open task (three tasks, three polls each: one line; it was
/// nine, and with a thousand open tasks ~33 lines a second). The longer
/// intervals that follow: `failure_log`'s unit test. From review 48,
/// media finding 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_keeps_polling_and_is_logged_once_not_at_every_poll() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url())
        .provider(common::route::Provider::new("not-the-key", &fake.url()));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let bin = Bin::start(&cfg.write(), &[]);
    for id in ["rL1", "rL2", "rL3"] {
        fake.set_record(Product::Runway, id, json!({"taskId": id, "state": "generating"}));
        registered(bin.admin, "runway", id).await;
    }
    for id in ["rL1", "rL2", "rL3"] {
        polled(&fake, id, 3).await;
        assert!(fake.status_requests(id) >= 3, "{id} not polled three times");
    }
    let t = task(bin.admin, "rL1").await;
    assert_eq!(t["state"], "polling", "{t}");
    let error = t["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("unauthorized (code 401"), "{t}");
    assert!(!error.contains("giving up"), "the task is not given up: {error}");
    assert!(error.contains("until the key or account is fixed"), "{error}");
    let log = bin.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("check provider.api_key")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("ERROR") && lines[0].contains("401"), "{log}");
    assert!(!log.contains("not-the-key"), "the key is not logged");
}

/// On a route that both reconciles and verifies by fetch, a
/// terminal callback that the verifier later holds as `unverified` (the
/// provider's record disagrees: a forged body with a replayed signature)
/// still settles the expected task as `called_back` at ingest. The task is
/// then never polled, so when the provider's genuine callback is lost the
/// relay never recovers the result it is owed: the subscriber gets nothing,
/// although the verifier itself fetched the terminal record.
/// Once recovered, the task says so (`recovered`, its event the polled
/// result), not `called_back` by the forgery it contested.
#[tokio::test]
async fn an_unverified_callback_does_not_settle_the_task_it_names() {
    unverified_callback_first(None).await;
}

/// The test above on either store (`nats`: cluster mode).
pub async fn unverified_callback_first(nats: Option<&crate::common::nats::NatsCluster>) {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = signed_verify_route(&fake, &sub.url())
        // First poll 2 s after registration: the forged callback comes first.
        .reconcile(Reconcile::new(secs(2), ms(200), secs(60)));
    let (mut cfg, addr) = tasks_config(dir.path(), vec![route]);
    if let Some(nats) = nats {
        cfg = cfg.nats(nats.urls(), 1);
    }
    let h = start(&cfg).await;

    // The provider's genuine callback for this task is lost.
    fake.plan_next(TaskPlan::success().lose());
    let task_id = submit_ok(h.admin_addr, "runway", "/api/v1/runway/generate").await;
    let genuine = fake.final_callback(&task_id);
    let mut forged = genuine.clone();
    forged["data"]["video_url"] = "https://evil.example/x.mp4".into();
    let id = fake.post_signed(addr, "/hooks/runway", &task_id, &forged).await;

    // The forged body is held as unverified (never delivered)...
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(15), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    assert_eq!(view["subscribers"][0]["state"], "dead", "{view}");
    // ...so the genuine result must still come: the task is owed a result.
    let end = tokio::time::Instant::now() + secs(15);
    while sub.count() == 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(100)).await;
    }
    let got = sub.all();
    let t = task(h.admin_addr, &task_id).await;
    assert!(
        !got.is_empty(),
        "the task was settled by a callback the verifier rejected and never polled \
         (status requests: {}); task: {t}",
        fake.status_requests(&task_id)
    );
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["data"]["video_url"], genuine["data"]["video_url"], "{body}");
    let t = task_until(h.admin_addr, &task_id, "recovered", secs(5)).await;
    assert_eq!(
        t["state"], "recovered",
        "the result came by polling, not by the forged callback: {t}"
    );
    assert_ne!(t["event"], Value::from(id.clone()), "the task names the forgery: {t}");
    assert_eq!(t["polls"], 1, "one poll counted once: {t}");
    h.shutdown().await;
}

/// A provider stand-in on loopback answering each status request in turn
/// with the next of `answers` (the last one repeats), HTTP 200, one request
/// per connection; how many status requests it got.
async fn scripted_provider(answers: Vec<Value>) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    scripted_http(
        answers
            .into_iter()
            .map(|v| (200, "application/json", v.to_string()))
            .collect(),
    )
    .await
}

/// As [`scripted_provider`], with each answer's HTTP status, content type
/// and body (the last one again once they run out).
pub(crate) async fn scripted_http(
    answers: Vec<(u16, &'static str, String)>,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let (status, ctype, answer) = answers[n.min(answers.len() - 1)].clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (addr, asked)
}

/// A `code: 400` status answer (in Veo's record-info code enum: the
/// transient "1080P is processing", provider-polling.md) does not give the
/// task up: it is polled again and its result recovered.
#[tokio::test]
async fn a_transient_400_from_the_status_endpoint_does_not_give_the_task_up() {
    let id = "veo-r36-1";
    let processing =
        json!({"code": 400, "msg": "1080P is processing. It should be ready in 1-2 minutes.", "data": null});
    let done = veo_success(id);
    let (provider, asked) = scripted_provider(vec![processing, done]).await;
    recovered_despite(provider, &asked, id, "one transient 400").await;
}

/// An HTTP 404 whose body is not the provider's JSON envelope (a gateway's
/// or load balancer's page while the API is redeployed) is not the provider
/// saying "no such task": the task is polled again and its result recovered.
#[tokio::test]
async fn a_gateway_404_page_does_not_give_the_task_up() {
    let id = "veo-r36-2";
    let done = veo_success(id);
    let (provider, asked) = scripted_http(vec![
        (
            404,
            "text/html",
            "<html><body><h1>404 Not Found</h1>nginx</body></html>".into(),
        ),
        (200, "application/json", done.to_string()),
    ])
    .await;
    recovered_despite(provider, &asked, id, "one HTML 404 from a gateway").await;
}

/// Veo's record-info answer for task `id`: succeeded, with its result URL.
fn veo_success(id: &str) -> Value {
    json!({"code": 200, "msg": "success", "data": {"taskId": id, "paramJson": "{}", "successFlag": 1,
        "fallbackFlag": false, "errorCode": null, "errorMessage": null, "createTime": "2025-01-01 00:00:00",
        "response": {"taskId": id, "resultUrls": ["https://files.example/v.mp4"], "originUrls": [], "resolution": "1080p"}}})
}

/// Task `id`, registered on a `kie-veo` route that reconciles against the
/// status endpoint at `provider`, is recovered within 10 s (one delivery,
/// state `recovered`) although the endpoint's first answer was `what`.
async fn recovered_despite(provider: SocketAddr, asked: &std::sync::atomic::AtomicUsize, id: &str, what: &str) {
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = Route::new("veo", "/hooks/veo")
        .allow_anyone()
        .preset("kie-veo")
        .provider(Provider::new("r36-key", &format!("http://{provider}")))
        .reconcile(Reconcile::new(ms(300), ms(300), secs(60)))
        .subscriber(Subscriber::new("veo-sub", sub.url()));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let (s, v) = common::tasks::register(h.admin_addr, "veo", id).await;
    assert!(s.is_success(), "{s} {v}");
    let end = tokio::time::Instant::now() + secs(10);
    while sub.count() == 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(100)).await;
    }
    let t = task(h.admin_addr, id).await;
    assert_eq!(
        (sub.count(), &t["state"]),
        (1, &Value::from("recovered")),
        "{what} ended the task (status requests: {}): {t}",
        asked.load(std::sync::atomic::Ordering::SeqCst)
    );
    h.shutdown().await;
}
