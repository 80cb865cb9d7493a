//! Review 33: hostile review of the f28 merge (0c3e418): the contested dedupe
//! path on `verify = "fetch"` routes, the per-call wall clock, the start
//! order. Every test here fails on 0c3e418. Run:
//! `cargo test --test suite review33_tests::`.

use crate::common;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{task_route, tasks_config};
use common::*;
use hookrelay::provider::Product;
use http::StatusCode;
use serde_json::{json, Value};

async fn send(addr: std::net::SocketAddr, path: &str, body: &Value) -> Value {
    let (s, _, b) = post(addr, path, &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

/// Finding 1. A Market task still running; someone who knows its task id
/// (an `allow_anyone` route; on a `kie`-signed route any earlier signature of
/// the task replayed) posts the documented short success form
/// `{code: 200, msg, data: {taskId}}`. It waits for the record to end. The
/// provider's genuine final callback then arrives: before f28 it was a
/// duplicate; now it is "contesting" and stored under key + body hash. Both
/// agree with the record (the short form names no URL, so it agrees with
/// any success), so the subscriber gets the task's success twice, one of
/// them the stranger's body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_success_form_sent_first_and_the_genuine_callback_are_both_delivered() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("market", "kie-market", &fake, &sub.url()).verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/market");
    // waiting / queuing / generating, 2 s each: the final callback at ~6 s.
    let task = fake.create(Product::Market, TaskPlan::success().step(secs(2)), Some(&url));
    let short = json!({"code": 200, "msg": "done (a stranger's)", "data": {"taskId": task}});
    let a = send(addr, "/hooks/market", &short).await;
    assert_eq!(a["duplicate"], false, "{a}");
    fake.wait_until("the genuine final callback", secs(20), |f| {
        f.callbacks(&task).iter().any(|c| c.kind == "final" && c.delivered())
    })
    .await;
    // The short form is asked about again every 10 s (LAGGING): give it time.
    tokio::time::sleep(secs(14)).await;
    let got = sub.all();
    h.shutdown().await;
    let bodies: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        got.len(),
        1,
        "one task, one success: delivered {} times: {bodies:#?}",
        got.len()
    );
}

/// Finding 2. While a task runs, every distinct body posted under its key
/// is stored as a new event (and each costs a call to the provider's API):
/// before f28 the second and later ones were duplicates. One replayed
/// `kie` signature (or an `allow_anyone` route) and a task id are enough:
/// 200 posts make 200 events, 200 provider look-ups, and, once the task
/// ends, up to 200 `unverified:` dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_forged_bodies_for_one_key_are_not_each_stored_and_looked_up() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url()).verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    // Runs for minutes: the first forged body waits for the record to end.
    let task = fake.create(Product::Runway, TaskPlan::success().step(secs(120)).lose(), None);
    let mut fresh = std::collections::HashSet::new();
    for i in 0..200 {
        let body = json!({"code": 200, "msg": "All generated successfully.",
            "data": {"task_id": task, "video_id": "v", "video_url": format!("https://evil.example/{i}.mp4"), "image_url": ""}});
        let a = send(addr, "/hooks/runway", &body).await;
        if a["duplicate"] == false {
            fresh.insert(a["id"].as_str().unwrap().to_string());
        }
    }
    // Each is asked about again every 10 s (LAGGING) while the task runs.
    tokio::time::sleep(secs(12)).await;
    let lookups = fake.status_requests(&task);
    h.shutdown().await;
    assert!(
        fresh.len() <= 4 && lookups <= 8,
        "one task key, 200 forged bodies: {} events stored, {lookups} provider look-ups in the 12 s after",
        fresh.len()
    );
}

/// Finding 3. Progress stages are verified only by the URLs they name: a
/// Suno `first` callback naming no track agrees with any record of the
/// task. Posted (a replayed `text` signature carries it) before the
/// genuine `first`, it is delivered at once, so it is "vouched for", and
/// the genuine `first` (with the first track's stream URLs) is then a
/// duplicate and never delivered: review 28 finding 1, still open for
/// every stage before the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_progress_callback_sent_first_does_not_replace_the_genuine_one() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("suno", "kie-suno", &fake, &sub.url()).verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/suno");
    // `text` at ~3 s, `first` at ~6 s, `complete` at ~9 s.
    let task = fake.create(Product::Suno, TaskPlan::success().step(secs(3)), Some(&url));
    let forged = json!({"code": 200, "msg": "first track ready (forged)",
        "data": {"callbackType": "first", "task_id": task, "data": []}});
    let a = send(addr, "/hooks/suno", &forged).await;
    assert_eq!(a["duplicate"], false, "{a}");
    fake.wait_until("the genuine complete callback", secs(20), |f| {
        f.callbacks(&task).iter().any(|c| c.kind == "final" && c.delivered())
    })
    .await;
    tokio::time::sleep(secs(2)).await;
    let firsts: Vec<Value> = sub
        .all()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap_or_default())
        .filter(|v| v["data"]["callbackType"] == "first")
        .collect();
    h.shutdown().await;
    assert!(
        firsts.iter().any(|v| v["msg"] != "first track ready (forged)"),
        "the genuine `first` callback was answered as a duplicate of the forged one and never delivered; \
         delivered `first`: {firsts:#?}"
    );
}

/// A provider API stand-in: answers the n-th request (0-based) with
/// `answer(n)` as a JSON body (HTTP 200), one request per connection.
async fn scripted_provider(
    answer: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = count.clone();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = answer(i).to_string();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (base, count)
}

/// Finding 5. A record query answered `code: 400` is now held as
/// `unverified` at once (f28: "refused as a request ... asking again cannot
/// help"). But 400 is in Veo's documented poll code enum and is the
/// documented code of "1080P is processing" (provider-polling.md): a
/// transient answer. A genuine Veo callback checked while the record query
/// says 400 is held (a dead letter) instead of asked about again; before
/// f28 it was asked again and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_callback_checked_while_the_provider_answers_400_is_asked_again_not_held() {
    let task = "veo-400-1";
    let video = "https://files.invalid/veo-400-1/video.mp4";
    let (base, asked) = scripted_provider(move |n| {
        if n == 0 {
            json!({"code": 400, "msg": "1080P is processing. It should be ready in 1-2 minutes.", "data": null})
        } else {
            json!({"code": 200, "msg": "success", "data": {"taskId": task, "successFlag": 1,
                "response": {"taskId": task, "resultUrls": [video], "resolution": "1080p"}}})
        }
    })
    .await;
    let sub = Sub::ok().await;
    let other = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", other.url()))
        .route(
            Route::new("veo", "/hooks/veo")
                .allow_anyone()
                .preset("kie-veo")
                .provider(common::route::Provider::new("k", &base))
                .verify("fetch")
                .subscriber(Subscriber::new("w", sub.url())),
        );
    let h = start(&cfg).await;
    let genuine = json!({"code": 200, "msg": "Veo3.1 video generated successfully.",
        "data": {"taskId": task, "fallbackFlag": false, "info": {"resultUrls": [video], "resolution": "1080p"}}});
    let a = send(h.ingest_addrs[0], "/hooks/veo", &genuine).await;
    let id = a["id"].as_str().unwrap().to_string();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < secs(25) && sub.count() == 0 {
        tokio::time::sleep(ms(250)).await;
    }
    let (_, v) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    let state = v["subscribers"].clone();
    let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
    h.shutdown().await;
    assert_eq!(
        sub.count(),
        1,
        "the genuine callback was not delivered (record asked {asked} times): {state}"
    );
}
