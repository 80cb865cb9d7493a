//! A subscriber removed from the config keeps its dead letters: "replay all"
//! re-queues only those of configured subscribers (a removed one has no lane
//! that would send them; they used to vanish from the list as "requeued"),
//! and an event replay leaves it out. Embedded store and cluster mode.

use crate::common;

use std::time::Duration;

use common::nats::NatsCluster;
use common::*;

async fn a_removed_subscriber_keeps_its_dead_letters(base: TestConfig) {
    let ok = Sub::ok().await;
    let gone = Sub::always(Behaviour::Status(410)).await;
    let failing = Sub::always(Behaviour::Status(500)).await;
    let both = base
        .clone()
        .subscriber(Subscriber::new("s", ok.url()))
        .subscriber(Subscriber::new("gone", gone.url()))
        .subscriber(Subscriber::new("failing", failing.url()).retry([Duration::from_secs(120)]));
    let h = start(&both).await;
    let id = accepted(h.ingest_addrs[0], &runway("removed")).await;
    let dead = admin_until(h.admin_addr, "/api/dead-letters", Duration::from_secs(10), |v| {
        v["dead_letters"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    assert_eq!(dead["dead_letters"][0]["subscriber"], "gone", "{dead}");
    ok.wait_for(Duration::from_secs(10), "the delivery", |r| r.len() == 1)
        .await;
    // Its outcome recorded (a delivery still being sent is not replayed again).
    let view = admin_until(
        h.admin_addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(10),
        |v| row(&v["subscribers"], "name", "s")["state"] == "delivered",
    )
    .await;
    assert_eq!(row(&view["subscribers"], "name", "s")["state"], "delivered", "{view}");
    failing
        .wait_for(Duration::from_secs(10), "the failing attempt", |r| r.len() == 1)
        .await;
    admin_until(
        h.admin_addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(10),
        |v| row(&v["subscribers"], "name", "failing")["attempts_total"] == 1,
    )
    .await;
    // `gone` and `failing` leave the config: they are listed as removed,
    // one with its dead letter, the other with its delivery waiting for a retry.
    base.subscriber(Subscriber::new("s", ok.url())).write();
    h.reload().await.unwrap();
    let (status, v) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_eq!(status.as_u16(), 200, "{v}");
    assert_eq!(v["subscribers"].as_array().unwrap().len(), 3, "{v}");
    let g = row(&v["subscribers"], "name", "gone");
    assert_eq!(
        (&g["state"], &g["dead_letters"], &g["queue_depth"]),
        (&"removed".into(), &1.into(), &0.into()),
        "{v}"
    );
    let f = row(&v["subscribers"], "name", "failing");
    assert_eq!(
        (&f["state"], &f["dead_letters"], &f["queue_depth"]),
        (&"removed".into(), &0.into(), &1.into()),
        "{v}"
    );
    assert!(f["oldest_pending_seconds"].is_u64(), "{v}");
    // Callbacks after the change are not theirs.
    accepted(h.ingest_addrs[0], &runway("after-removal")).await;
    ok.wait_for(Duration::from_secs(10), "the later delivery", |r| r.len() == 2)
        .await;
    let (_, v) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_eq!(row(&v["subscribers"], "name", "gone")["queue_depth"], 0, "{v}");
    assert_eq!(row(&v["subscribers"], "name", "failing")["queue_depth"], 1, "{v}");
    let (status, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert_eq!(
        (status.as_u16(), &v["requeued"]),
        (200, &serde_json::Value::from(0)),
        "{v}"
    );
    let (_, v) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(v["dead_letters"][0]["subscriber"], "gone", "still listed: {v}");
    let (_, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(v["queued"], serde_json::json!(["s"]), "{v}");
    ok.wait_for(Duration::from_secs(10), "the replay", |r| r.len() == 3)
        .await;
    assert_eq!(gone.count(), 1, "nothing more for the removed subscriber");
    let (status, v) = admin(
        h.admin_addr,
        "POST",
        &format!("/api/events/{id}/replay?subscriber=gone"),
    )
    .await;
    assert_eq!(status.as_u16(), 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no subscriber \"gone\" in the configuration"),
        "{v}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_subscriber_keeps_its_dead_letters_embedded() {
    let dir = tempfile::tempdir().unwrap();
    a_removed_subscriber_keeps_its_dead_letters(TestConfig::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_subscriber_keeps_its_dead_letters_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    a_removed_subscriber_keeps_its_dead_letters(TestConfig::new(dir.path()).nats(nats.urls(), 1)).await;
}
