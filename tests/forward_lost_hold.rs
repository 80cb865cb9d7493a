//! Cluster mode, the real `hookrelay forward` between two relays: relay A
//! leases a message to the forwarder, which posts it; A is paused past
//! `takeover` before the acknowledgement reaches it; the forwarder, moved
//! to relay B (a balancer), is offered the message again by B for attempt
//! 2; A, running again, applies attempt 1's acknowledgement and answers
//! `200`. Told attempt 1 was confirmed, the forwarder took B's offer for an
//! operator's replay and posted it a second time (pause soak, stop 77).
//! The offer names the same round now: acknowledged unsent.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::nats::NatsCluster;
use common::*;

const TOKEN: &str = "laptop-pull-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_applying_a_late_acknowledgement_does_not_make_the_forwarder_post_twice() {
    let nats = NatsCluster::start(1).await;
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(60));
    let (d1, d2, fd) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1);
    let a = Bin::start(&cfg(d1.path()).write(), &[]);
    let b = start(&cfg(d2.path())).await;
    // The local service holds its first answer 4 s: A is paused meanwhile
    // (its acknowledgement then reaches A only once A runs again).
    let arrived = Arc::new(AtomicBool::new(false));
    let seen = arrived.clone();
    let local = Local::start(Arc::new(move |_, n| {
        if n == 0 {
            seen.store(true, Ordering::SeqCst);
            return (200, ms(4000));
        }
        (200, ms(0))
    }))
    .await;
    let (proxy, switch) = switching_proxy(a.addr, b.ingest_addrs[0]).await;
    let fwd = Forwarder::start(fd.path(), &pull_url(proxy, "laptop"), &local.url(), TOKEN, &[]);
    let id = accepted(a.addr, &runway("lost-hold")).await;
    let until = std::time::Instant::now() + secs(20);
    while !arrived.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < until, "never posted:\n{}", fwd.log_text());
        tokio::time::sleep(ms(10)).await;
    }
    a.signal("STOP");
    switch.switch();
    // B hands the message out again once A's hold ran out (`takeover`, 5 s):
    // leased to the forwarder, or already acknowledged there.
    let handed_out = async {
        loop {
            let (_, subs) = admin(b.admin_addr, "GET", "/api/subscribers").await;
            let list = subs
                .as_array()
                .or(subs["subscribers"].as_array())
                .cloned()
                .unwrap_or_default();
            let leased = list.iter().any(|s| s["leased"].as_u64().unwrap_or(0) > 0);
            let (_, ev) = admin(b.admin_addr, "GET", &format!("/api/events/{id}")).await;
            let sub = &ev["subscribers"][0];
            // A machine so slow that A took the acknowledgement before its
            // pause: the sequence did not happen (still posted once, below).
            let settled_at_a = sub["state"] == "delivered" && sub["attempts_total"] == 1;
            if leased || sub["attempts_total"].as_u64().unwrap_or(0) >= 2 || settled_at_a {
                return;
            }
            tokio::time::sleep(ms(100)).await;
        }
    };
    tokio::time::timeout(secs(20), handed_out)
        .await
        .unwrap_or_else(|_| panic!("B never handed the message out:\n{}", fwd.log_text()));
    a.signal("CONT");
    // A applies attempt 1's acknowledgement; attempt 2's settles at B.
    admin_expect(b.admin_addr, &format!("/api/events/{id}"), secs(30), "delivered", |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    tokio::time::sleep(ms(1500)).await;
    let posts = local.counts().get(&id).copied().unwrap_or(0);
    assert_eq!(posts, 1, "posted {posts} times:\n{}", fwd.log_text());
    b.shutdown().await;
}
