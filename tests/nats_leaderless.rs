//! Cluster mode while the results bucket has no leader (its replicas
//! electing one: a few seconds in which reads on the leader time out). A
//! message that comes again reads its delivery's result there: it waits,
//! handed back, and is sent once the bucket has a leader, with the next
//! attempt's number. An operator's replay reads there too, and is asked
//! again for up to 8 s before it answers `503`. The leader is taken away
//! by [`common::nats_leader`].

use crate::common;
use crate::nats_replica_lag::{dead_letters_within, failing_relay_with, relay_on};

use std::sync::Arc;
use std::time::Duration;

use common::nats::NatsCluster;
use common::nats_leader::{mappings, Leader};
use common::*;

const RESULTS: &str = "KV_hr_results";
/// Longer than a leader read's timeout (2 s): reads are asked again.
const AWAY: Duration = Duration::from_secs(5);

/// A retry due while the bucket has no leader is not sent (its attempts so
/// far cannot be read); it is sent once, as attempt 2, when it has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_for_the_results_bucket_to_have_a_leader() {
    let nats = NatsCluster::start_with(1, &mappings(RESULTS)).await;
    let leader = Leader::start(&nats.urls()[0], RESULTS).await;
    let sub = Sub::start(Arc::new(|i, _| Behaviour::Status(if i == 0 { 500 } else { 200 }))).await;
    let (_dir, h) = relay_on(&nats, Subscriber::new("s", sub.url())).await;
    leader.away();
    // A fresh event's first delivery reads nothing: it goes out, fails,
    // and its retry (due 100 ms later) needs the leader.
    let id = accepted_retrying(h.ingest_addrs[0], &runway("leaderless-retry")).await;
    sub.wait_for(secs(10), "the first attempt", |r| !r.is_empty()).await;
    tokio::time::sleep(AWAY).await;
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(
        (sub.count(), ev["subscribers"][0]["state"].as_str()),
        (1, Some("pending")),
        "the retry went on while the results bucket had no leader: {ev}"
    );
    leader.back();
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}");
    tokio::time::sleep(ms(500)).await;
    let attempts: Vec<String> = sub
        .all()
        .iter()
        .map(|r| r.header("hookrelay-attempt").to_string())
        .collect();
    assert_eq!(attempts, ["1", "2"], "{ev}");
    h.shutdown().await;
}

/// An operator's replay of a dead letter asked while the bucket has no
/// leader is answered once it has one (within 8 s) and sent. Before stop
/// 70 the read was tried once: `503`, and a replay of every dead letter
/// stopped part-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_asked_while_the_results_bucket_has_no_leader_is_queued() {
    let (nats, sub, _dir, h) = failing_relay_with(&mappings(RESULTS)).await;
    let leader = Leader::start(&nats.urls()[0], RESULTS).await;
    let ids = dead_letters_within(&h, "leaderless-replay", secs(30)).await;
    leader.away();
    let admin_addr = h.admin_addr;
    let path = format!("/api/events/{}/replay?subscriber=s&only=dead", ids[0]);
    let replay = tokio::spawn(async move { admin(admin_addr, "POST", &path).await });
    tokio::time::sleep(secs(3)).await;
    leader.back();
    let (s, v) = replay.await.unwrap();
    assert_eq!(
        (s, v["queued"].clone()),
        (http::StatusCode::OK, serde_json::json!(["s"])),
        "{v}"
    );
    sub.wait_for(secs(20), "the replay", |r| {
        r.iter().any(|r| r.header("hookrelay-attempt") == "4")
    })
    .await;
    h.shutdown().await;
}
