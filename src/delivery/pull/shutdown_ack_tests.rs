//! A shutdown with a message leased to a forwarder whose local service has
//! it: the listeners stay open for the acknowledgement within the grace
//! (pulls get nothing more), and the delivery is recorded. The lease was
//! forgotten at once and the listeners closed: the acknowledgement found
//! no relay, and after the restart a new forwarder, or the subscriber
//! switched to push, sent it a second time (chaos soak, stop 67).

use std::time::Duration;

use super::test_relay::{accepted, call, ids, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_during_a_shutdown_is_recorded_and_nothing_sent_again() {
    let (dir, relay) = start("p").await;
    let addr = relay.ingest_addrs[0];
    let id = accepted(addr, "a").await;
    let (s, got) = call(addr, "GET", "/pull/p?wait=5s", Some("f1"), "").await;
    assert_eq!((s, ids(&got)), (200, vec![id.clone()]), "{got}");
    // The relay is told to stop while the forwarder's service has it.
    let stopping = tokio::spawn(relay.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !stopping.is_finished(),
        "the stop waits for the lease's acknowledgement"
    );
    let (s, got) = call(addr, "GET", "/pull/p?wait=1s", Some("f2"), "").await;
    assert_eq!(s, 503, "nothing more is handed out: {got}");
    let ack = format!(r#"{{"ids":["{id}"]}}"#);
    let (s, got) = call(addr, "POST", "/pull/p/ack", Some("f1"), &ack).await;
    assert_eq!(s, 200, "{got}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the stop ends once nothing is leased")
        .unwrap();
    // Started again on the same store: the message was delivered.
    let config = crate::Config::load(&dir.path().join("config.toml")).expect("config");
    let relay = crate::start(config).await.expect("starts again");
    let (s, got) = call(relay.ingest_addrs[0], "GET", "/pull/p?wait=1s", Some("f3"), "").await;
    assert_eq!((s, ids(&got)), (200, Vec::<String>::new()), "not offered again: {got}");
    relay.shutdown().await;
}
