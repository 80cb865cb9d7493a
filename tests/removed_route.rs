//! A route removed from the config (the relay restarted without it) keeps
//! what its subscribers had not been sent: listed as `removed` with their
//! count, nothing sent meanwhile, its path answering `404`; when the route
//! comes back, its subscribers get them, once each (the attempt in flight at
//! the restart again: at-least-once). In cluster mode the route's stream and
//! consumers stay in NATS. Embedded store and cluster mode.

use crate::common;

use std::sync::Arc;

use common::nats::NatsCluster;
use common::*;

async fn a_removed_route_keeps_its_pending_deliveries_until_it_comes_back(base: TestConfig) {
    let ok = Sub::ok().await;
    // The first request is never answered: one delivery in flight at the
    // restart, the others never handed out (one at a time).
    let y = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::Hang,
        _ => Behaviour::Status(200),
    }))
    .await;
    let base = base.shutdown_grace(secs(1)).subscriber(Subscriber::new("s", ok.url()));
    let route_u = Route::new("u", "/hooks/u")
        .tokens(["tok"])
        .dedupe_key(["/data/task_id"])
        .subscriber(Subscriber::new("y", y.url()).concurrency(1).timeout(secs(120)));
    let with_u = base.clone().route(route_u);
    let post_u = |h: &hookrelay::Handle, tag: &str| {
        let addr = h.ingest_addrs[0];
        let body = runway(tag);
        async move { callback_at(addr, "/hooks/u?token=tok", &body).await }
    };
    let h = start(&with_u).await;
    let mut pending = Vec::new();
    for i in 0..3 {
        let (status, v) = post_u(&h, &format!("u-{i}")).await;
        assert_eq!(status.as_u16(), 200, "{v}");
        pending.push(v["id"].as_str().unwrap().to_string());
    }
    y.wait_for(secs(10), "y's first attempt", |r| r.len() == 1).await;
    h.shutdown().await;

    // Restarted without route u.
    let h = start(&base).await;
    let v = admin_until(h.admin_addr, "/api/subscribers", secs(20), |v| {
        v["subscribers"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == "y"))
            .is_some_and(|y| y["queue_depth"] == 3)
    })
    .await;
    let r = row(&v["subscribers"], "name", "y");
    assert_eq!((&r["state"], &r["queue_depth"]), (&"removed".into(), &3.into()), "{v}");
    let (status, v) = post_u(&h, "u-away").await;
    assert_eq!(status.as_u16(), 404, "{v}");
    accepted(h.ingest_addrs[0], &runway("t-away")).await;
    ok.wait_for(secs(10), "route t's delivery", |r| r.len() == 1).await;
    let v = event_view(h.admin_addr, &pending[1]).await;
    assert!(v["subscribers"].is_array(), "{v}");
    assert_eq!(row(&v["subscribers"], "name", "y")["state"], "pending", "{v}");
    assert_eq!(y.count(), 1, "nothing sent for a route no longer configured");
    // Its events are still listed, with the route's name or without.
    for path in ["/api/events?limit=10", "/api/events?route=u"] {
        let (_, v) = admin(h.admin_addr, "GET", path).await;
        let listed: Vec<&str> = v["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {v}"))
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        assert!(pending.iter().all(|id| listed.contains(&id.as_str())), "{path}: {v}");
    }
    // A name no route can have (a typo) lists nothing, as for any unknown route.
    let (status, v) = admin(h.admin_addr, "GET", "/api/events?route=u.x%20y").await;
    assert_eq!(status.as_u16(), 200, "{v}");
    assert_eq!(v["events"], serde_json::json!([]), "{v}");
    h.shutdown().await;

    // Back: its deliveries go out.
    let h = start(&with_u).await;
    y.wait_for(secs(20), "y's pending deliveries", |_| {
        let seen = seen_ids(&y);
        pending.iter().all(|id| seen.contains_key(id))
    })
    .await;
    for id in &pending {
        let v = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
            row(&v["subscribers"], "name", "y")["state"] == "delivered"
        })
        .await;
        assert_eq!(row(&v["subscribers"], "name", "y")["state"], "delivered", "{v}");
    }
    let seen = seen_ids(&y);
    assert_eq!(seen.get(&pending[0]), Some(&2), "{seen:?}");
    for id in &pending[1..] {
        assert_eq!(seen.get(id), Some(&1), "{id}: {seen:?}");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_route_keeps_its_pending_deliveries_until_it_comes_back_embedded() {
    let dir = tempfile::tempdir().unwrap();
    a_removed_route_keeps_its_pending_deliveries_until_it_comes_back(TestConfig::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_route_keeps_its_pending_deliveries_until_it_comes_back_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    a_removed_route_keeps_its_pending_deliveries_until_it_comes_back(TestConfig::new(dir.path()).nats(nats.urls(), 1))
        .await;
}
