//! Review 32: findings in the `f30` and `rel34` merges, each a test that
//! fails on the code as merged.

use crate::common;

use common::nats::NatsCluster;
use common::*;

/// Finding 2. Cluster mode: `/api/events` scans at most `SCAN_LIMIT`
/// (10 000) messages of a route from its top, so with a filter (`task=`) an
/// event that matches below that is left out — and the list now says
/// `more: false` (the console: "No events match." / "showing the oldest N
/// events that match"), a claim that the older pages are complete. One host
/// lists it. `more` (and `next_before`) must say the scan was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_events_list_says_no_more_though_a_matching_event_lies_past_the_scan() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let wanted = accepted_retrying(addr, &runway("r32-needle")).await;
    // 10 001 newer events of other tasks, 32 at a time.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n > 10_000 {
                    break;
                }
                accepted_retrying(addr, &runway(&format!("hay-{n}"))).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let (s, v) = admin(h.admin_addr, "GET", "/api/events?task=r32-needle&limit=5").await;
    h.shutdown().await;
    assert_eq!(s, 200, "{v}");
    let listed = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["id"] == wanted.as_str());
    assert!(
        listed || v["more"] == true,
        "event {wanted} matches task=r32-needle but is neither listed nor announced by `more`: {v}"
    );
}
