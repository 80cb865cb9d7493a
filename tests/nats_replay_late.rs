//! A dead-letter replay while NATS answers late (a leader being elected, an
//! overloaded node): the write that marks a delivery due again is stored,
//! its answer comes after the relay's 2 s request timeout. The replay gave
//! up at once and answered `503`, leaving a mark no message carried: every
//! replay asked again within the next 30 s (the grace a marking replay gets
//! for its message) queued nothing and the letter stayed listed (CI failed
//! on it: a node killed during a replay). The replay now asks again for a
//! while, learns its mark was stored, and publishes its message.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::nats::NatsCluster;
use common::slow_proxy::latency_proxy_watching;
use common::*;

/// The answers NATS sends in the 3 s after the relay's first write to the
/// results bucket once `armed` come 2.5 s late (past the relay's 2 s
/// request timeout): the answer to that write, and (before the mend) to the
/// read the relay made at once to see whether it was stored.
async fn late_after_a_result_write(nats: &NatsCluster, armed: Arc<AtomicBool>) -> String {
    let upstream = nats.url(0).trim_start_matches("nats://").parse().unwrap();
    let (proxy, _) = latency_proxy_watching(upstream, move |sent: &[u8], latency: &Arc<AtomicU64>| {
        let write = sent.windows(20).any(|w| w == b"HPUB $KV.hr_results.");
        if write && armed.swap(false, Ordering::SeqCst) {
            latency.store(2_500, Ordering::SeqCst);
            let latency = latency.clone();
            tokio::spawn(async move {
                tokio::time::sleep(secs(3)).await;
                latency.store(0, Ordering::SeqCst);
            });
        }
    })
    .await;
    format!("nats://{proxy}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replays_mark_stored_with_its_answer_late_is_carried_by_that_replay() {
    let nats = NatsCluster::start(1).await;
    let armed = Arc::new(AtomicBool::new(false));
    let url = late_after_a_result_write(&nats, armed.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (sub, healthy) = Sub::broken(Behaviour::Status(410)).await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(vec![url], 1);
    let h = start(&cfg).await;
    accepted(h.ingest_addrs[0], &runway("late-mark")).await;
    let dl = admin_until(h.admin_addr, "/api/dead-letters", secs(20), |v| v["total"] == 1).await;
    assert_eq!(dl["total"], 1, "{dl}");
    healthy.store(true, Ordering::SeqCst);

    armed.store(true, Ordering::SeqCst);
    let (status, answer) = admin(h.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert!(!armed.load(Ordering::SeqCst), "the replay wrote no result");
    assert_eq!(
        (status.as_u16(), &answer["requeued"]),
        (200, &serde_json::json!(1)),
        "the replay gave up on a mark NATS stored: {answer}"
    );
    sub.wait_for(secs(15), "the replayed delivery", |r| r.len() == 2).await;
    let dl = admin_until(h.admin_addr, "/api/dead-letters", secs(10), |v| v["total"] == 0).await;
    assert_eq!(dl["total"], 0, "{dl}");
    tokio::time::sleep(secs(1)).await;
    assert_eq!(sub.count(), 2, "one refused attempt, one delivery");
    h.shutdown().await;
}
