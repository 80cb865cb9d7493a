//! Attempt numbers across a takeover in cluster mode: a relay killed during
//! a retry's attempt had recorded no result for it, and the relay that
//! takes the delivery over after `takeover` must not send the same
//! `hookrelay-attempt` number again (the attempt is recorded before it is
//! sent, as a first attempt is counted by NATS's hand-outs).

use crate::common;

use std::sync::Arc;

use common::nats::NatsCluster;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_taken_over_after_a_crash_is_sent_with_the_next_attempt_number() {
    let nats = NatsCluster::start(1).await;
    // Attempt 1 fails, attempt 2 is never answered (its relay dies), then 200.
    let sub = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::Status(500),
        1 => Behaviour::Hang,
        _ => Behaviour::Status(200),
    }))
    .await;
    let s = Subscriber::new("s", sub.url()).timeout(secs(60));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let mut first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("taken-over")).await;
    sub.wait_for(secs(10), "the retry's attempt", |r| r.len() == 2).await;
    first.kill9();

    let second = start(&cfg(d2.path())).await;
    let got = sub.wait_for(secs(20), "taken over", |r| r.len() == 3).await;
    let numbers: Vec<&str> = got.iter().map(|r| r.header("hookrelay-attempt")).collect();
    assert_eq!(numbers, ["1", "2", "3"], "attempt numbers as the subscriber saw them");
    assert!(got.iter().all(|r| r.header("webhook-id") == id));
    let ev = admin_until(second.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let d = &ev["subscribers"][0];
    assert_eq!(
        (&d["state"], &d["attempts_total"]),
        (&"delivered".into(), &3.into()),
        "{ev}"
    );
    second.shutdown().await;
}
