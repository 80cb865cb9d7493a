//! A subscriber removed from the config while some of its deliveries were
//! never made keeps them (listed as `removed` with their count, nothing sent
//! to it meanwhile) and gets them when it comes back, once each; the
//! callbacks that arrived while it was away were never its own and are not
//! sent to it. Embedded store and cluster mode.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use common::nats::NatsCluster;
use common::*;

/// The state of `sub`'s delivery of event `id`, `None` when the event was
/// not fanned out to it.
async fn state(admin_addr: std::net::SocketAddr, id: &str, sub: &str) -> Option<String> {
    let (_, v) = admin(admin_addr, "GET", &format!("/api/events/{id}")).await;
    v["subscribers"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .find(|s| s["name"] == sub)
        .map(|s| s["state"].as_str().unwrap_or_default().to_string())
}

async fn a_removed_subscriber_gets_its_pending_deliveries_when_it_comes_back(base: TestConfig) {
    let ok = Sub::ok().await;
    // The first request is never answered: one delivery in flight until
    // x's timeout (5 s; a failed attempt, kept as a retry, and x's return
    // waits for it), the others never handed out (one at a time).
    let x = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::Hang,
        _ => Behaviour::Status(200),
    }))
    .await;
    let with_x = base
        .clone()
        .subscriber(Subscriber::new("s", ok.url()))
        .subscriber(Subscriber::new("x", x.url()).concurrency(1).timeout(secs(5)));
    let without_x = base.subscriber(Subscriber::new("s", ok.url()));
    let h = start(&with_x).await;
    let mut pending = Vec::new();
    for i in 0..3 {
        pending.push(accepted(h.ingest_addrs[0], &runway(&format!("before-{i}"))).await);
    }
    ok.wait_for(secs(10), "s's deliveries", |r| r.len() == 3).await;
    x.wait_for(secs(10), "x's first attempt", |r| r.len() == 1).await;

    // x leaves with its attempt in flight and two deliveries never made.
    without_x.write();
    h.reload().await.unwrap();
    let v = admin_until(h.admin_addr, "/api/subscribers", secs(10), |v| {
        v["subscribers"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == "x"))
            .is_some_and(|x| x["queue_depth"] == 3)
    })
    .await;
    let r = row(&v["subscribers"], "name", "x");
    assert_eq!((&r["state"], &r["queue_depth"]), (&"removed".into(), &3.into()), "{v}");
    // A callback while it is away is s's alone, and not counted for x.
    let away = accepted(h.ingest_addrs[0], &runway("while-away")).await;
    ok.wait_for(secs(10), "s's delivery of the later callback", |r| r.len() == 4)
        .await;
    assert_eq!(state(h.admin_addr, &away, "x").await, None);
    let (_, v) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_eq!(row(&v["subscribers"], "name", "x")["queue_depth"], 3, "{v}");
    assert_eq!(x.count(), 1, "nothing sent to a subscriber no longer configured");

    // Back: its three deliveries go out; the callback from while it was
    // away does not. A callback after its return comes after them (one at
    // a time), so once it arrived nothing else is on its way.
    with_x.write();
    h.reload().await.unwrap();
    let back = accepted(h.ingest_addrs[0], &runway("after-return")).await;
    x.wait_for(secs(20), "x's pending deliveries and the later one", |_| {
        let seen = seen_ids(&x);
        pending.iter().chain([&back]).all(|id| seen.contains_key(id))
    })
    .await;
    for id in pending.iter().chain([&back]) {
        let v = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
            row(&v["subscribers"], "name", "x")["state"] == "delivered"
        })
        .await;
        assert_eq!(row(&v["subscribers"], "name", "x")["state"], "delivered", "{v}");
    }
    let seen: HashMap<String, usize> = seen_ids(&x);
    assert_eq!(
        seen.get(&away),
        None,
        "the callback from while it was away was sent to it"
    );
    // The attempt in flight when it left failed (timed out) and is sent
    // again, once; the others once each.
    for id in &pending[1..] {
        assert_eq!(seen.get(id), Some(&1), "{id}: {seen:?}");
    }
    assert_eq!(seen.get(&pending[0]), Some(&2), "{seen:?}");
    let (_, v) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_ne!(row(&v["subscribers"], "name", "x")["state"], "removed", "{v}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_subscriber_gets_its_pending_deliveries_when_it_comes_back_embedded() {
    let dir = tempfile::tempdir().unwrap();
    a_removed_subscriber_gets_its_pending_deliveries_when_it_comes_back(TestConfig::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_subscriber_gets_its_pending_deliveries_when_it_comes_back_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    a_removed_subscriber_gets_its_pending_deliveries_when_it_comes_back(
        TestConfig::new(dir.path()).nats(nats.urls(), 1),
    )
    .await;
}
