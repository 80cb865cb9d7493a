//! An acknowledgement that came while its lease was live is applied, also
//! when the lane gets to it after the lease's deadline: on the last step of
//! the retry schedule an expiry is a dead letter, and the forwarder, which
//! answered in time, got `409` for a message its local service had.
//! Here it waits behind the record of an earlier acknowledgement of the same
//! message (sent twice, the first one's record failing after the deadline).
//! The daemon runs in-process on port 0 with its embedded store; requests go
//! over real sockets.

use std::time::Duration;

use super::settle::panic_hook;
use super::test_relay::{accepted, call, ids, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_that_came_in_time_applies_on_the_last_step() {
    let (_dir, relay) = start_with("lastly", "1s", r#"retry = ["1s"]"#).await;
    let addr = relay.ingest_addrs[0];
    let id = accepted(addr, "a").await;
    // The first attempt is handed back: the next one is the last.
    let (s, got) = call(addr, "GET", "/pull/lastly?wait=5s", Some("f1"), "").await;
    assert_eq!((s, ids(&got)), (200, vec![id.clone()]), "{got}");
    let (s, got) = call(
        addr,
        "POST",
        "/pull/lastly/ack",
        Some("f1"),
        &format!(r#"{{"retry":["{id}"]}}"#),
    )
    .await;
    assert_eq!(s, 200, "{got}");
    let (s, got) = call(addr, "GET", "/pull/lastly?wait=5s", Some("f1"), "").await;
    assert_eq!((s, ids(&got)), (200, vec![id.clone()]), "{got}");
    assert!(got.contains(r#""attempt":2"#), "{got}");

    // Its acknowledgement's record fails after the lease's deadline; the
    // same acknowledgement sent meanwhile, in time, waits for that record.
    panic_hook::arm_after("lastly", Duration::from_millis(1500));
    let ack = format!(r#"{{"ids":["{id}"]}}"#);
    let send = |ack: String| {
        tokio::spawn(async move {
            let answer = call(addr, "POST", "/pull/lastly/ack", Some("f1"), &ack);
            tokio::time::timeout(Duration::from_secs(10), answer).await
        })
    };
    let first = send(ack.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = send(ack.clone());
    let (s, got) = first.await.unwrap().expect("the acknowledgement is answered");
    assert_eq!(s, 503, "{got}");
    let (s, got) = second
        .await
        .unwrap()
        .expect("the acknowledgement that waited is answered");
    assert_eq!(s, 200, "came in time, refused: {got}");
    assert!(got.contains(r#""acknowledged":1"#), "{got}");
    assert!(got.contains(r#""dead":0"#), "{got}");
    // Delivered, not a dead letter.
    let (s, got) = call(addr, "POST", "/pull/lastly/ack", Some("f1"), &ack).await;
    assert_eq!(s, 409, "{got}");
    let admin = relay.admin_addr;
    let (s, got) = call(admin, "GET", "/api/dead-letters", None, "").await;
    assert_eq!(s, 200, "{got}");
    assert!(!got.contains(&id), "a dead letter: {got}");
    relay.shutdown().await;
}
