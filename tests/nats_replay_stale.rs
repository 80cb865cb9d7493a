//! Cluster mode: a relay recorded a delivery and died before acknowledging
//! its message; an operator replayed the event before NATS handed that
//! message out again (after `takeover`). The replay's message carries the
//! delivery; the event's own message, back while the replay's attempt ran,
//! was sent as well — the callback twice, by our fault. A message of the
//! event itself that finds its delivery queued again by a replay is stale
//! (only a finished delivery is replayed) and is settled unsent. The dead
//! relay's leftover (its result, its message not acknowledged) is made by
//! hand (`NatsCluster::put_last_result`).

use crate::common;

use std::sync::Arc;

use common::nats::NatsCluster;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_message_back_after_a_replay_is_not_sent_again() {
    let nats = NatsCluster::start(1).await;
    // The first attempt hangs (its relay dies); the replay's takes 10 s,
    // so the event's own message comes back (5 s) while it runs.
    let sub = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::Hang,
        1 => Behaviour::Slow(secs(10)),
        _ => Behaviour::Status(200),
    }))
    .await;
    let s = Subscriber::new("s", sub.url()).timeout(secs(60));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let mut first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("stale-original")).await;
    sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;

    // What the first relay's result write leaves (delivered); it dies
    // before acknowledging the message.
    nats.put_last_result(|now_ms| {
        serde_json::json!({
            "state": "delivered", "attempts": 1, "step": 0, "at_ms": now_ms, "history": [], "last_error": null,
        })
    })
    .await;
    first.kill9();

    let second = start(&cfg(d2.path())).await;
    let (st, v) = admin(second.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(st, http::StatusCode::OK, "{v}");
    assert_eq!(v["queued"], serde_json::json!(["s"]), "{v}");
    let got = sub.wait_for(secs(10), "the replay's attempt", |r| r.len() == 2).await;
    assert_eq!(got[1].header("webhook-id"), id);
    // The replay's attempt answers 10 s after it began; the event's own
    // message came back after 5 s.
    until_delivered(second.admin_addr, &id, "s").await;
    tokio::time::sleep(secs(2)).await;
    assert_eq!(sub.count(), 2, "the first attempt and the replay's, nothing more");
    second.shutdown().await;
}
