//! An acknowledgement that came while its lease was live is applied, also
//! when the lane gets to it after the lease's deadline: on the last step of
//! the retry schedule an expiry is a dead letter, and the forwarder, which
//! answered in time, got `409` for a message its local service had.
//! Here it waits behind the record of an earlier acknowledgement of the same
//! message (sent twice, the first one's record failing after the deadline).
//! And one that came just after that deadline still counts, for one more
//! lease, before the message is a dead letter.
//! The daemon runs in-process on port 0 with its embedded store; requests go
//! over real sockets.

use std::time::Duration;

use super::settle::panic_hook;
use super::test_relay::{accepted, call, ids, sent_one_after_the_other, sent_twice, start_with};

/// Subscriber `name` (lease 1 s, one retry step) with one message handed
/// to forwarder `f1` for its last attempt: the relay and the message's id.
async fn on_its_last_step(name: &str) -> (tempfile::TempDir, crate::Handle, String) {
    let (dir, relay) = start_with(name, "1s", r#"retry = ["1s"]"#).await;
    let addr = relay.ingest_addrs[0];
    let id = accepted(addr, "a").await;
    let pull = format!("/pull/{name}?wait=5s");
    // The first attempt is handed back: the next one is the last.
    let (s, got) = call(addr, "GET", &pull, Some("f1"), "").await;
    assert_eq!((s, ids(&got)), (200, vec![id.clone()]), "{got}");
    let ack = format!("/pull/{name}/ack");
    let (s, got) = call(addr, "POST", &ack, Some("f1"), &format!(r#"{{"retry":["{id}"]}}"#)).await;
    assert_eq!(s, 200, "{got}");
    let (s, got) = call(addr, "GET", &pull, Some("f1"), "").await;
    assert_eq!((s, ids(&got)), (200, vec![id.clone()]), "{got}");
    assert!(got.contains(r#""attempt":2"#), "{got}");
    (dir, relay, id)
}

/// The dead letters the admin API lists.
async fn dead_letters(relay: &crate::Handle) -> String {
    let (s, got) = call(relay.admin_addr, "GET", "/api/dead-letters", None, "").await;
    assert_eq!(s, 200, "{got}");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_that_came_in_time_applies_on_the_last_step() {
    let (_dir, relay, id) = on_its_last_step("lastly").await;
    let addr = relay.ingest_addrs[0];

    // Its acknowledgement's record fails after the lease's deadline; the
    // same acknowledgement sent meanwhile, in time, waits for that record.
    panic_hook::arm_after("lastly", Duration::from_millis(1500));
    let ack = format!(r#"{{"ids":["{id}"]}}"#);
    let ((s, got), second) = sent_twice(addr, "lastly", &ack).await;
    assert_eq!(s, 503, "{got}");
    let (s, got) = second;
    assert_eq!(s, 200, "came in time, refused: {got}");
    assert!(got.contains(r#""acknowledged":1"#), "{got}");
    assert!(got.contains(r#""dead":0"#), "{got}");
    // Delivered, not a dead letter.
    let (s, got) = call(addr, "POST", "/pull/lastly/ack", Some("f1"), &ack).await;
    assert_eq!(s, 409, "{got}");
    let got = dead_letters(&relay).await;
    assert!(!got.contains(&id), "a dead letter: {got}");
    relay.shutdown().await;
}

/// The same with a release waiting (the forwarder stopping): it applies to
/// the lease as it was when it came, live, so the message is offered again
/// with no step used. Judged when the lane got to it, the lease had run out
/// and the release of an expired lease on the last step made it a dead
/// letter (the last step's lapse alone does not cover a release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_came_in_time_applies_on_the_last_step() {
    let (_dir, relay, id) = on_its_last_step("releasing").await;
    let addr = relay.ingest_addrs[0];
    panic_hook::arm_after("releasing", Duration::from_millis(1500));
    let ack = format!(r#"{{"ids":["{id}"]}}"#);
    let release = format!(r#"{{"release":["{id}"]}}"#);
    let ((s, got), (s2, got2)) = sent_one_after_the_other(addr, "releasing", &ack, &release).await;
    assert_eq!(s, 503, "{got}");
    assert_eq!(s2, 200, "came in time, refused: {got2}");
    assert!(
        got2.contains(r#""retried":1"#) && got2.contains(r#""dead":0"#),
        "{got2}"
    );
    let (s, got) = call(addr, "GET", "/pull/releasing?wait=5s", Some("f1"), "").await;
    assert_eq!((s, ids(&got)), (200, vec![id.clone()]), "{got}");
    assert!(got.contains(r#""attempt":2"#), "{got}");
    let got = dead_letters(&relay).await;
    assert!(!got.contains(&id), "a dead letter: {got}");
    relay.shutdown().await;
}

/// On the last step, an acknowledgement that comes just after the lease
/// ran out still counts (it was a `409` and a dead letter at once, the
/// local service having it); with none, the message is a dead letter one
/// lease later. From review 58, forward finding 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_just_after_the_last_lease_counts() {
    let (_dir, relay, id) = on_its_last_step("just_late").await;
    let addr = relay.ingest_addrs[0];
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let ack = format!(r#"{{"ids":["{id}"]}}"#);
    let (s, got) = call(addr, "POST", "/pull/just_late/ack", Some("f1"), &ack).await;
    assert_eq!(s, 200, "late by a moment, refused: {got}");
    assert!(got.contains(r#""acknowledged":1"#), "{got}");
    let got = dead_letters(&relay).await;
    assert!(!got.contains(&id), "a dead letter: {got}");
    relay.shutdown().await;

    // Never acknowledged: a dead letter once the lapse is over.
    let (_dir, relay, id) = on_its_last_step("never").await;
    let t0 = tokio::time::Instant::now();
    loop {
        let got = dead_letters(&relay).await;
        if got.contains(&id) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "never a dead letter: {got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t0.elapsed() >= Duration::from_millis(1500), "{:?}", t0.elapsed());
    relay.shutdown().await;
}
