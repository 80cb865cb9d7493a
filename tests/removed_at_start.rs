//! A relay started with a config that no longer has a subscriber whose
//! deliveries are still pending in the store warns once, naming it, its
//! route and how many are kept (a reload logs its own line when it drops a
//! subscriber; a restart had nothing), also when its whole route is gone.
//! Embedded store and cluster mode.

use crate::common;

use std::sync::Arc;

use common::nats::NatsCluster;
use common::*;

/// What leaves the config at the restart: subscriber `x` of route `t`, or
/// the whole route `u` whose subscriber `x` is.
#[derive(Clone, Copy, PartialEq)]
enum Gone {
    Subscriber,
    Route,
}

async fn a_start_without_a_subscriber_with_pending_deliveries_warns(base: TestConfig, gone: Gone) {
    let ok = Sub::ok().await;
    // The first request is never answered: one delivery in flight, the
    // others never handed out (one at a time).
    let x = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::Hang,
        _ => Behaviour::Status(200),
    }))
    .await;
    let sub_x = Subscriber::new("x", x.url()).concurrency(1).timeout(secs(120));
    let without_x = base.subscriber(Subscriber::new("s", ok.url()));
    let (with_x, path, route) = match gone {
        Gone::Subscriber => (without_x.clone().subscriber(sub_x), "/hooks/t?token=tok", "t"),
        Gone::Route => {
            let u = Route::new("u", "/hooks/u").tokens(["tok"]).subscriber(sub_x);
            (without_x.clone().route(u), "/hooks/u?token=tok", "u")
        }
    };
    let h = start(&with_x).await;
    for i in 0..3 {
        let (status, v) = callback_at(h.ingest_addrs[0], path, &runway(&format!("before-{i}"))).await;
        assert_eq!(status.as_u16(), 200, "{v}");
    }
    x.wait_for(secs(10), "x's first attempt", |r| r.len() == 1).await;
    h.shutdown().await;

    // Restarted without x: one warning, with its route and its three deliveries.
    let bin = Bin::start(&without_x.write(), &[]);
    log_until(|| bin.log_text(), "pending=3", secs(20)).await;
    let log = bin.log_text();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("not in the config")).collect();
    assert_eq!(warned.len(), 1, "{log}");
    let route_field = format!("route={route}");
    for part in [
        "WARN",
        "subscriber=x",
        &route_field,
        "pending=3",
        "hookrelay subscribers",
    ] {
        assert!(warned[0].contains(part), "{part:?} missing: {}", warned[0]);
    }
    let v = admin_until(bin.admin, "/api/subscribers", secs(10), |v| {
        row(&v["subscribers"], "name", "x")["queue_depth"] == 3
    })
    .await;
    assert_eq!(row(&v["subscribers"], "name", "x")["state"], "removed", "{v}");
    assert_eq!(row(&v["subscribers"], "name", "x")["route"], route, "{v}");
    assert_eq!(x.count(), 1, "nothing sent to a subscriber no longer configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_a_subscriber_with_pending_deliveries_warns_embedded() {
    let dir = tempfile::tempdir().unwrap();
    a_start_without_a_subscriber_with_pending_deliveries_warns(TestConfig::new(dir.path()), Gone::Subscriber).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_a_subscriber_with_pending_deliveries_warns_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).nats(nats.urls(), 1);
    a_start_without_a_subscriber_with_pending_deliveries_warns(base, Gone::Subscriber).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_a_route_with_pending_deliveries_warns_embedded() {
    let dir = tempfile::tempdir().unwrap();
    a_start_without_a_subscriber_with_pending_deliveries_warns(TestConfig::new(dir.path()), Gone::Route).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_a_route_with_pending_deliveries_warns_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).nats(nats.urls(), 1);
    a_start_without_a_subscriber_with_pending_deliveries_warns(base, Gone::Route).await;
}
