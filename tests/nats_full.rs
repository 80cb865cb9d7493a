//! Cluster mode with JetStream's storage full (the servers' `max_file_store`
//! reached): every callback is answered `503`, and the relay must say it is
//! not ready for as long as that lasts, so that a balancer routing only to
//! ready relays stops sending it callbacks. Its store check asked NATS for
//! the account's info, which a full server still answers: `/readyz` said
//! ready again within a second of each refusal. It now writes (one small
//! row), and is ready again once JetStream has room.

use crate::common;

use async_nats::jetstream;
use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

/// A Runway callback for `task` carrying `pad` bytes more.
fn padded(task: &str, pad: usize) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&runway(task)).unwrap();
    v["data"]["pad"] = serde_json::Value::String("x".repeat(pad));
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_is_not_ready_while_jetstream_is_full_and_ready_once_it_has_room() {
    let nats = NatsCluster::start_with(1, "jetstream { store_dir: $STORE, max_file_store: 1MB }").await;
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let h = start(&nats.relay_with_one_subscriber(dir.path(), &sub.url())).await;
    let (addr, admin_addr) = (h.ingest_addrs[0], h.admin_addr);
    assert_eq!(admin(admin_addr, "GET", "/readyz").await.0, StatusCode::OK);

    // Fill it: 60 kB callbacks until one is refused.
    let mut stored = 0;
    let refused = loop {
        let (s, v) = callback(addr, &padded(&format!("fill-{stored}"), 60_000)).await;
        if s != StatusCode::OK {
            break (s, v);
        }
        stored += 1;
        assert!(stored < 40, "1 MB of JetStream took {stored} callbacks of 60 kB");
    };
    assert_eq!(refused.0, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.1);
    assert!(stored > 0, "nothing stored before JetStream was full");
    // Refused for want of room (not a write slower than its budget on a
    // loaded machine): JetStream takes no write of this test's either.
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let kv = js.get_key_value("hr_tasks").await.unwrap();
    let put = kv.put("test-full", bytes::Bytes::from_static(b"x")).await;
    assert!(put.is_err(), "JetStream took a write: the 503 was not for want of room");

    // Not ready, and it stays so: ten looks over 3 s (the store is checked
    // every second), no callback sent meanwhile.
    for i in 0..10 {
        let (s, body) = admin(admin_addr, "GET", "/readyz").await;
        assert_eq!(
            s,
            StatusCode::SERVICE_UNAVAILABLE,
            "look {i}: ready while JetStream is full: {body}"
        );
        tokio::time::sleep(ms(300)).await;
    }

    // Room again (the operator purges the route's stream): ready again
    // without a callback, and callbacks are taken.
    js.get_stream("HR_EV_t").await.unwrap().purge().await.unwrap();
    let deadline = std::time::Instant::now() + secs(10);
    while admin(admin_addr, "GET", "/readyz").await.0 != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "not ready again after the purge");
        tokio::time::sleep(ms(100)).await;
    }
    accepted(addr, &runway("after")).await;
    h.shutdown().await;
}
