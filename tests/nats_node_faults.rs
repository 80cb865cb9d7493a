//! Cluster mode when a NATS node dies (`kill -9`) in the middle of an
//! operator's work: a replay of dead letters. No delivery is lost, none is
//! sent twice, and the relay goes on without a restart.

use crate::common;

use std::collections::HashMap;

use async_nats::jetstream;
use common::nats::NatsCluster;
use common::*;

fn body_name(i: usize) -> String {
    format!("dl-{i:02}-x")
}

/// How many requests the subscriber got per event.
fn per_event(sub: &Sub, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in sub.all() {
        let body = String::from_utf8_lossy(&r.body).to_string();
        for i in 0..n {
            if body.contains(&body_name(i)) {
                *seen.entry(body_name(i)).or_default() += 1;
            }
        }
    }
    seen
}

/// The index of the node leading `stream`.
async fn leader(js: &jetstream::Context, stream: &str) -> usize {
    let mut s = js.get_stream(stream).await.unwrap();
    let info = s.info().await.unwrap();
    let name = info.cluster.as_ref().and_then(|c| c.leader.clone()).unwrap();
    name.trim_start_matches('n').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_a_dead_letter_replay_loses_nothing_and_sends_nothing_twice() {
    const N: usize = 12;
    let mut nats = NatsCluster::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let (sub, healthy) = Sub::broken(Behaviour::Status(410)).await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 3);
    let h = start(&cfg).await;
    for i in 0..N {
        accepted_retrying(h.ingest_addrs[0], &runway(&body_name(i))).await;
    }
    admin_until(h.admin_addr, "/api/dead-letters", secs(20), |v| {
        v["total"].as_u64() == Some(N as u64)
    })
    .await;
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let js = jetstream::new(async_nats::connect(nats.urls()[2].as_str()).await.unwrap());
    let victim = leader(&js, "KV_hr_results").await;
    let admin_addr = h.admin_addr;
    let replay = tokio::spawn(async move { admin(admin_addr, "POST", "/api/dead-letters/replay").await });
    tokio::time::sleep(ms(5)).await;
    nats.kill9(victim);
    let first = replay.await.unwrap();
    // Asked again until every letter is replayed (a 503 meanwhile is fine).
    // A mark its replay gave up on unanswered (NATS away for longer than
    // the replay's 8 s) may still have been stored: a replay queues it only
    // after the 30 s grace its own replay gets.
    let deadline = std::time::Instant::now() + secs(45);
    loop {
        let (_, v) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
        if v["total"].as_u64() == Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "letters left: {v} (first answer {first:?})"
        );
        let _ = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
        tokio::time::sleep(ms(300)).await;
    }
    sub.wait_for(secs(30), "every event delivered after the replay", |_| {
        let seen = per_event(&sub, N);
        (0..N).all(|i| seen.get(&body_name(i)).copied().unwrap_or(0) >= 2)
    })
    .await;
    nats.restart(victim).await;
    tokio::time::sleep(secs(2)).await;
    let seen = per_event(&sub, N);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 2).collect();
    assert!(twice.is_empty(), "one refused attempt and one delivery each: {twice:?}");
    // The relay serves on: a new callback is delivered.
    accepted_retrying(h.ingest_addrs[0], &runway(&body_name(N))).await;
    sub.wait_for(secs(10), "a callback after the fault", |_| {
        per_event(&sub, N + 1).contains_key(&body_name(N))
    })
    .await;
    h.shutdown().await;
}
