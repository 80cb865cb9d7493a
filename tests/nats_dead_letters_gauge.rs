//! `hookrelay_dead_letters{subscriber}` in cluster mode: read from the
//! NATS store's count, it follows dead letters and their replay, and is
//! absent, not 0, while NATS is away (a 0 would clear an alert on letters
//! still kept); back with NATS.

use crate::common;

use std::sync::atomic::Ordering;

use common::nats::NatsCluster;
use common::*;

const KEY: &str = "hookrelay_dead_letters{subscriber=\"s\"}";

fn gauge(m: &[(String, f64)]) -> Option<f64> {
    m.iter().find(|(k, _)| k == KEY).map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_gauge_follows_the_cluster_store() {
    let mut nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (sub, healed) = Sub::broken(Behaviour::Status(410)).await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    for i in 0..2 {
        accepted(h.ingest_addrs[0], &runway(&format!("nats-dead-gauge-{i}"))).await;
    }
    metrics_until(h.admin_addr, secs(15), "two dead letters", |m| gauge(m) == Some(2.0)).await;
    // NATS away: absent, not 0.
    nats.kill9(0);
    metrics_until(h.admin_addr, secs(15), "the gauge absent while NATS is away", |m| {
        gauge(m).is_none()
    })
    .await;
    nats.restart(0).await;
    metrics_until(h.admin_addr, secs(20), "the gauge back with NATS", |m| {
        gauge(m) == Some(2.0)
    })
    .await;
    // Replayed to a subscriber that now answers: none left.
    healed.store(true, Ordering::SeqCst);
    let (status, v) = admin(h.admin_addr, "POST", "/api/dead-letters/replay?subscriber=s").await;
    assert!(status.is_success(), "{status} {v}");
    metrics_until(h.admin_addr, secs(15), "the letters replayed", |m| {
        gauge(m) == Some(0.0)
    })
    .await;
    h.shutdown().await;
}
