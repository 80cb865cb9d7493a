//! A shutdown with a message leased to a forwarder whose local service has
//! it: the listeners stay open for the acknowledgement within the grace
//! (pulls get nothing more), and the delivery is recorded. The lease was
//! forgotten at once and the listeners closed: the acknowledgement found
//! no relay, and after the restart a new forwarder, or the subscriber
//! switched to push, sent it a second time (chaos soak, stop 67).

use std::time::Duration;

use super::test_relay::{accepted, call, ids, start, start_with_server};

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

/// The grace is one for the whole stop: a lease nobody acknowledges holds
/// the stop for the grace, and the listeners' drain of a request still in
/// flight then ends with it, not a grace later. The drain began its own
/// grace when told: a stop took twice the grace, and the supervisor
/// abandoned it (change review, stop 67).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_left_unacknowledged_and_a_slow_request_hold_the_stop_one_grace() {
    use tokio::io::AsyncWriteExt;
    let (_dir, relay) = start_with_server("shutdown_grace = \"2s\"", "p", "60s", "").await;
    let addr = relay.ingest_addrs[0];
    let id = accepted(addr, "a").await;
    let (s, got) = call(addr, "GET", "/pull/p?wait=5s", Some("f1"), "").await;
    assert_eq!((s, ids(&got)), (200, vec![id]), "{got}");
    let began = tokio::time::Instant::now();
    let stopping = tokio::spawn(relay.shutdown());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A callback whose body is still coming when the grace ends.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("still listening");
    slow.write_all(b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the stop ended")
        .unwrap();
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(3200),
        "the stop took {took:?} with a grace of 2 s"
    );
    drop(slow);
}
