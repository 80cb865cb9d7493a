//! Cluster mode: an operator's replay of a callback held as unverified
//! (`verify = "fetch"`) at one relay releases it for every relay: the
//! release is stored with the replayed delivery, so the relay that takes
//! the delivery (or its retry) sends it rather than holding it again.

use crate::common;

use crate::verify_fetch::forge_after_a_lost_callback;
use common::nats::NatsCluster;
use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{task_route, tasks_config};
use common::*;

/// A relay on `nats` whose route `runway` verifies its callbacks at `fake`
/// and delivers to `sub` (one retry, after 3 s); and its ingest address.
fn relay(
    dir: &std::path::Path,
    nats: &NatsCluster,
    fake: &FakeProvider,
    sub: &Sub,
) -> (TestConfig, std::net::SocketAddr) {
    let route = task_route("runway", "kie-runway", fake, &sub.url())
        .without_reconcile()
        .signature(Signature::kie("fake-hmac-key"))
        .verify("fetch");
    let (cfg, addr) = tasks_config(dir, vec![route]);
    (cfg.nats(nats.urls(), 1).delivery_retry([secs(3)]), addr)
}

/// Replayed at relay A while the subscriber is down; A stops; relay B
/// takes the replayed delivery's retry and sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_accepted_at_one_relay_is_sent_by_another() {
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let (sub, healthy) = Sub::broken(Behaviour::Status(503)).await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cfg_a, addr_a) = relay(d1.path(), &nats, &fake, &sub);
    let a = start(&cfg_a).await;
    let b = start(&relay(d2.path(), &nats, &fake, &sub).0).await;
    let id = forge_after_a_lost_callback(&fake, addr_a, &format!("http://{addr_a}/hooks/runway")).await;
    let path = format!("/api/events/{id}");
    let held = admin_until(a.admin_addr, &path, secs(30), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    assert_eq!(held["subscribers"][0]["state"], "dead", "{held}");
    assert_eq!(sub.count(), 0, "held, not sent");

    // Accepted at A: sent once (by either relay; the subscriber fails).
    let (s, replay) = admin(a.admin_addr, "POST", &format!("{path}/replay")).await;
    assert_eq!(s, 200, "{replay}");
    assert_eq!(replay["queued"], serde_json::json!(["runway-sub"]), "{replay}");
    let first = tokio::time::timeout(secs(10), async {
        while sub.count() == 0 {
            tokio::time::sleep(ms(50)).await;
        }
    })
    .await
    .is_ok();
    let (_, view) = admin(b.admin_addr, "GET", &path).await;
    assert!(
        first,
        "the replayed delivery was held again: {}",
        view["subscribers"][0]
    );

    // A stops; its retry is B's to take: sent, not held again.
    a.shutdown().await;
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = tokio::time::timeout(secs(20), async {
        while sub.count() < 2 {
            tokio::time::sleep(ms(50)).await;
        }
    })
    .await
    .is_ok();
    let (_, after) = admin(b.admin_addr, "GET", &path).await;
    assert!(
        sent,
        "relay B held the replayed delivery again: {}",
        after["subscribers"][0]
    );
    assert!(String::from_utf8_lossy(&sub.all()[1].body).contains("evil.example"));
    admin_until(b.admin_addr, &path, secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    b.shutdown().await;
}

/// An event replay whose message was never stored (its publish and the undo
/// of its mark failed, or its relay died between them) leaves a mark with
/// the release and no message. A later replay of the dead letters publishes
/// that mark's message: it releases nothing (the replay that set the flag
/// did not queue), so the forged callback is held again, not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_replay_that_did_not_queue_releases_nothing_for_a_later_dead_letter_replay() {
    use futures_util::StreamExt;
    let nats = NatsCluster::start(1).await;
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) = relay(dir.path(), &nats, &fake, &sub);
    let h = start(&cfg).await;
    let id = forge_after_a_lost_callback(&fake, addr, &format!("http://{addr}/hooks/runway")).await;
    let path = format!("/api/events/{id}");
    // Held as unverified: dead. (A generous wait: a loaded machine can stall
    // a test for many seconds, and the steps below need this state.)
    let held = admin_until(h.admin_addr, &path, secs(30), |v| {
        v["subscribers"][0]["state"] == "dead"
    })
    .await;
    assert_eq!(held["subscribers"][0]["state"], "dead", "{held}");
    // Its dead letter is published after its result row is written: listed
    // before the replay below looks for it (a loaded machine showed the row
    // dead, the letter not yet published, and the replay found nothing).
    let listed = admin_until(h.admin_addr, "/api/dead-letters", secs(30), |d| {
        d["dead_letters"]
            .as_array()
            .is_some_and(|a| a.iter().any(|l| l["event"] == id.as_str()))
    })
    .await;
    assert!(
        listed["dead_letters"].as_array().is_some_and(|a| !a.is_empty()),
        "{listed}"
    );
    // The event replay's mark, left without its message, its grace over.
    let js = async_nats::jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let kv = js.get_key_value("hr_results").await.unwrap();
    let keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    let key = keys
        .iter()
        .find(|k| k.starts_with("runway.") && k.ends_with(".runway-sub"))
        .expect("the delivery's result row");
    let entry = kv.entry(key.as_str()).await.unwrap().unwrap();
    let mut row: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    let marked_at = common::nats_replay::now_ms() - 31_000;
    row["state"] = serde_json::json!({ "retrying": { "due_ms": marked_at } });
    row["step"] = 0.into();
    row["at_ms"] = marked_at.into();
    row["replays"] = (row["replays"].as_u64().unwrap_or(0) + 1).into();
    row["released"] = true.into();
    kv.update(key.as_str(), serde_json::to_vec(&row).unwrap().into(), entry.revision)
        .await
        .unwrap();
    let (s, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["requeued"], 1, "the mark's message is published: {v}");
    // Pending (the mark) until a lane takes it: held (dead) or sent (delivered).
    let view = admin_until(h.admin_addr, &path, secs(30), |v| {
        matches!(v["subscribers"][0]["state"].as_str(), Some("dead" | "delivered"))
    })
    .await;
    h.shutdown().await;
    let state = view["subscribers"][0]["state"].as_str().unwrap_or_default().to_string();
    assert!(
        state == "dead" || state == "delivered",
        "no lane took the mark's message: {view}"
    );
    assert_eq!(
        sub.count(),
        0,
        "the forged callback was sent on a release no replay that queued gave: {}",
        view["subscribers"][0]
    );
}
