//! [`MAX_LEASED`] bounds the leases of a subscriber also while an
//! acknowledgement is being recorded: its leases are out of the lease table
//! then, but put back if the record fails, so they count until it is done.
//! Before, a pull meanwhile was handed up to one acknowledgement's worth of
//! messages more, and the restored leases went past the bound.

use std::time::Duration;

use super::settle::panic_hook;
use super::test_relay::{accepted, call, ids, start};
use super::MAX_LEASED;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_put_back_after_a_failed_record_do_not_pass_the_bound() {
    let (_dir, relay) = start("bounded").await;
    let addr = relay.ingest_addrs[0];
    let mut stored = tokio::task::JoinSet::new();
    for i in 0..=MAX_LEASED {
        stored.spawn(async move { accepted(addr, &format!("t{i}")).await });
        if stored.len() >= 16 {
            stored.join_next().await.unwrap().unwrap();
        }
    }
    while stored.join_next().await.is_some() {}
    // Forwarder f1 leases as many as a subscriber may lease.
    let mut leased = Vec::new();
    while leased.len() < MAX_LEASED {
        let (s, got) = call(addr, "GET", "/pull/bounded?wait=1s&max=100", Some("f1"), "").await;
        assert_eq!(s, 200, "{got}");
        leased.extend(ids(&got));
    }
    assert_eq!(leased.len(), MAX_LEASED);

    // An acknowledgement of 100 of them whose record fails (after a moment).
    panic_hook::arm("bounded");
    let list: Vec<String> = leased[..100].iter().map(|id| format!("\"{id}\"")).collect();
    let ack = format!(r#"{{"ids":[{}]}}"#, list.join(","));
    let acking = tokio::spawn(async move { call(addr, "POST", "/pull/bounded/ack", Some("f1"), &ack).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Meanwhile another forwarder pulls: there is no room.
    let (s, got) = call(addr, "GET", "/pull/bounded?wait=300ms&max=100", Some("f2"), "").await;
    assert_eq!((s, ids(&got).len()), (200, 0), "handed out past the bound: {got}");
    let (s, got) = acking.await.unwrap();
    assert_eq!(s, 503, "{got}");
    let lane = relay.app.delivery.pull_lane("bounded").expect("the lane");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while lane.leased() < MAX_LEASED && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lane.leased(), MAX_LEASED, "the leases put back");
    relay.shutdown().await;
}
