//! Review 23 (operator surfaces): each test fails on the code it was written
//! against because of the defect its comment names.

use crate::common;

use std::time::Duration;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{task_route, tasks_config};
use common::*;
use hookrelay::provider::Product;

/// `hookrelay replay EVT --subscriber "$SUB"` with `$SUB` empty (a script's
/// unset variable) asks for one subscriber and names none: it must be refused,
/// not taken for "every subscriber" (the API drops empty parameters), which
/// sends the event again to subscribers that already have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_with_an_empty_subscriber_is_refused_not_sent_to_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Sub::ok().await, Sub::ok().await);
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("a", a.url()))
        .subscriber(Subscriber::new("b", b.url()));
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("empty-sub")).await;
    a.wait_for(Duration::from_secs(10), "a's delivery", |r| r.len() == 1).await;
    b.wait_for(Duration::from_secs(10), "b's delivery", |r| r.len() == 1).await;
    let base = format!("http://{}", h.admin_addr);
    let (ok, out, err) = cli_async(vec![
        "--admin".into(),
        base,
        "replay".into(),
        id.clone(),
        "--subscriber".into(),
        String::new(),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (na, nb) = (a.count(), b.count());
    h.shutdown().await;
    assert!(
        !ok && na == 1 && nb == 1,
        "an empty --subscriber was taken for every subscriber: exit ok={ok}, a got {na}, b got {nb} \
         deliveries of one event\nstdout: {out}\nstderr: {err}"
    );
}

/// The same at the API: `POST /api/dead-letters/replay?subscriber=` re-queues
/// every subscriber's dead letters, where the caller named one (empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_replay_with_an_empty_subscriber_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (x, _hx) = Sub::broken(Behaviour::Status(410)).await;
    let (y, _hy) = Sub::broken(Behaviour::Status(410)).await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("x", x.url()))
        .subscriber(Subscriber::new("y", y.url()));
    let h = start(&cfg).await;
    accepted(h.ingest_addrs[0], &runway("empty-dead")).await;
    let v = admin_until(h.admin_addr, "/api/dead-letters", secs(10), |v| v["total"] == 2).await;
    assert_eq!(v["total"], 2, "{v}");
    let (s, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay?subscriber=").await;
    h.shutdown().await;
    assert!(
        s.is_client_error(),
        "an empty subscriber was taken for every subscriber: {s} {v}"
    );
}

/// An operator's replay of an unverified callback to ONE subscriber (or to a
/// misspelt one, answered 404) releases the event for every subscriber and
/// for good: a later "replay all dead letters" delivers the forged body,
/// which the docs say is held again.
#[tokio::test]
async fn a_refused_replay_does_not_release_an_unverified_callback() {
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = task_route("runway", "kie-runway", &fake, &sub.url())
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![route]);
    let h = start(&cfg).await;
    let url = format!("http://{addr}/hooks/runway");
    let target = fake.create(Product::Runway, TaskPlan::success().lose(), Some(&url));
    fake.wait_until("the task to finish", secs(5), |f| f.is_finished(&target))
        .await;
    let mut forged = fake.final_callback(&target);
    forged["data"]["video_url"] = "https://evil.example/x.mp4".into();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = fake.sign(&target, ts).unwrap();
    let (s, _, b) = post(
        addr,
        "/hooks/runway",
        &[
            ("content-type", "application/json"),
            ("x-webhook-timestamp", &ts.to_string()),
            ("x-webhook-signature", &sig),
        ],
        forged.to_string(),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    assert!(
        view["subscribers"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .starts_with("unverified: "),
        "{view}"
    );
    // A typo: refused, nothing replayed.
    let (s, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay?subscriber=typo")).await;
    assert_eq!(s, 404, "{v}");
    // Later the operator re-queues the dead letters (say, after an outage).
    let (_, before) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    let held_at = before["dead_letters"][0]["at"].clone();
    tokio::time::sleep(ms(5)).await;
    let (s, _) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert_eq!(s, 200);
    admin_until(h.admin_addr, "/api/dead-letters", secs(5), |v| {
        v["dead_letters"][0]["event"] == id.as_str() && v["dead_letters"][0]["at"] != held_at
    })
    .await;
    tokio::time::sleep(ms(500)).await;
    let n = sub.count();
    h.shutdown().await;
    assert_eq!(n, 0, "the forged (unverified) callback was delivered after a refused replay");
}
