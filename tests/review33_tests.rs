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
