//! Reads and replays in cluster mode answer like one host: `GET /api/events`
//! applies `task=` and `status=` while scanning (so `limit` counts matches),
//! and two replays of one delivery asked of two relays at the same moment
//! queue it once.

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_filtered_by_task_and_status_before_the_limit() {
    let nats = NatsCluster::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    // Tasks named dead-* are gone at the subscriber (410: a dead letter at once).
    let sub = Sub::start(std::sync::Arc::new(|_, r: &Received| {
        match String::from_utf8_lossy(&r.body).contains("dead-") {
            true => Behaviour::Status(410),
            false => Behaviour::Status(200),
        }
    }))
    .await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 3);
    let h = start(&cfg).await;
    let a = h.admin_addr;
    let mut dead = Vec::new();
    for i in 0..3 {
        dead.push(accepted(h.ingest_addrs[0], &runway(&format!("dead-{i}"))).await);
    }
    for i in 0..12 {
        accepted(h.ingest_addrs[0], &runway(&format!("fine-{i}"))).await;
    }
    sub.wait_for(secs(20), "every delivery", |r| r.len() >= 15).await;
    let v = admin_until(a, "/api/events?status=dead&limit=10", secs(10), |v| {
        v["events"].as_array().is_some_and(|e| e.len() == 3)
    })
    .await;
    let mut got = event_ids(&v);
    got.sort();
    assert_eq!(got, dead, "the dead events behind 12 newer ones: {v}");
    let (_, v) = admin(a, "GET", "/api/events?status=dead&limit=2").await;
    assert_eq!(event_ids(&v), vec![dead[2].clone(), dead[1].clone()], "{v}");
    let (s, v) = admin(a, "GET", "/api/events?task=DEAD-1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(event_ids(&v), vec![dead[1].clone()], "{v}");
    let (_, v) = admin(a, "GET", "/api/events?task=no-such-task&limit=2").await;
    assert!(event_ids(&v).is_empty(), "{v}");
    let (_, v) = admin(a, "GET", "/api/events?task=fine-&status=delivered&limit=4").await;
    assert_eq!(event_ids(&v).len(), 4, "{v}");
    // Paging with before= goes on below the page.
    let last = event_ids(&v).pop().unwrap();
    let (_, v) = admin(a, "GET", &format!("/api/events?task=fine-&limit=20&before={last}")).await;
    assert_eq!(event_ids(&v).len(), 8, "{v}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_asked_of_two_relays_at_once_queue_one_delivery() {
    let nats = NatsCluster::start(3).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let sub = Sub::ok().await;
    let cfg = |d: &std::path::Path| {
        TestConfig::new(d)
            .subscriber(Subscriber::new("s", sub.url()))
            .nats(nats.urls(), 3)
    };
    let (r1, r2) = (start(&cfg(dirs[0].path())).await, start(&cfg(dirs[1].path())).await);
    let id = accepted(r1.ingest_addrs[0], &runway("replayed")).await;
    sub.wait_for(secs(10), "the delivery", |r| r.len() == 1).await;
    let path = format!("/api/events/{id}/replay?subscriber=s");
    for round in 1..=5 {
        admin_until(r1.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
            v["subscribers"][0]["state"] == "delivered"
        })
        .await;
        let (p1, p2) = (path.clone(), path.clone());
        let (a, b) = tokio::join!(
            tokio::spawn(async move { admin(r1.admin_addr, "POST", &p1).await }),
            tokio::spawn(async move { admin(r2.admin_addr, "POST", &p2).await })
        );
        let queued: usize = [a.unwrap(), b.unwrap()]
            .iter()
            .map(|(s, v)| {
                assert_eq!(*s, StatusCode::OK, "{v}");
                v["queued"].as_array().map_or(0, Vec::len)
            })
            .sum();
        assert_eq!(queued, 1, "round {round}: one of the two replays queues it");
        sub.wait_for(secs(10), "the replay", |r| r.len() == round + 1).await;
    }
    tokio::time::sleep(secs(1)).await;
    assert_eq!(sub.count(), 6, "each replay sent once");
    r1.shutdown().await;
    r2.shutdown().await;
}
