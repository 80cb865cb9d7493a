//! A relay whose circuit to a subscriber is open leaves the subscriber's
//! work to the relays that can reach it: its lane asks NATS for nothing
//! while it can start nothing (the circuit open, or half-open with its probe
//! waiting for an attempt still in flight), and gives back at once what the
//! pull requests it had out before the circuit opened still bring in,
//! instead of holding it until its probe can go.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;

use common::nats::NatsCluster;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_circuit_is_open_leaves_the_work_to_the_others() {
    let nats = NatsCluster::start(1).await;
    // What relay A reaches: the first request hangs (until the 30 s
    // timeout, longer than the test), the others fail at once.
    let broken = Sub::start(Arc::new(|n, _| {
        if n == 0 {
            Behaviour::Hang
        } else {
            Behaviour::Status(500)
        }
    }))
    .await;
    // What relay B reaches: the subscriber itself.
    let good = Sub::ok().await;
    // The same subscriber on both relays; only where it is reached differs.
    // A failed delivery is retried after 30 s (not within the test).
    let s = |url: String| {
        Subscriber::new("s", url)
            .concurrency(4)
            .circuit_threshold(1)
            .timeout(secs(30))
            .retry([secs(30)])
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path, url: String| TestConfig::new(dir).subscriber(s(url)).nats(nats.urls(), 1);
    let a = start(&cfg(da.path(), broken.url())).await;
    // A's first delivery hangs, its second fails: the circuit opens, and its
    // probe waits for the hanging attempt.
    accepted(a.ingest_addrs[0], &runway("hangs")).await;
    broken.wait_for(secs(10), "the hanging attempt", |r| r.len() == 1).await;
    accepted(a.ingest_addrs[0], &runway("fails")).await;
    broken.wait_for(secs(10), "the failing attempt", |r| r.len() == 2).await;
    let subs = admin_until(a.admin_addr, "/api/subscribers", secs(20), |v| {
        row(&v["subscribers"], "name", "s")["state"] != "closed"
    })
    .await;
    assert_ne!(row(&subs["subscribers"], "name", "s")["state"], "closed", "{subs}");
    // New work comes while the pull request A had out before its circuit
    // opened (for the two free slots it had then) is still waiting at NATS
    // (up to 5 s): A gets some of it, and cannot start any.
    let mut want = HashSet::new();
    for i in 0..8 {
        want.insert(accepted(a.ingest_addrs[0], &runway(&format!("meanwhile-{i}"))).await);
    }
    let b = start(&cfg(db.path(), good.url())).await;
    // B delivers all of them at once: none is held by A (whose circuit
    // stays open or half-open for the 30 s of its hanging attempt).
    let missing = || {
        let seen = seen_ids(&good);
        want.iter()
            .filter(|id| !seen.contains_key(*id))
            .cloned()
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + secs(4);
    while !missing().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(ms(20)).await;
    }
    let missing = missing();
    assert!(
        missing.is_empty(),
        "{} of {} not delivered by B within 4 s (held by A, which cannot start them): {missing:?}",
        missing.len(),
        want.len()
    );
    assert_eq!(broken.count(), 2, "A sent nothing more");
    a.shutdown().await;
    b.shutdown().await;
}
