//! Cluster mode: a relay that lost its hold on a pull lease's message
//! (paused past `takeover`) while NATS handed the message to another relay,
//! which leased it for a later attempt. The forwarder's acknowledgement of
//! the earlier attempt, reaching the first relay once it runs again, was
//! applied there and answered 200: told so, `hookrelay forward` took the
//! later attempt's offer for an operator's replay and posted it again (a
//! duplicate; stop 76's Left). It is refused now (the relay asks the
//! others first: the one leasing it for a later attempt says so), and the
//! later attempt's acknowledgement is what records the delivery, counted in
//! its record. With no other relay holding it (a NATS outage), it is still
//! applied: `review42_tests`.

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_lost_its_hold_refuses_an_acknowledgement_of_the_earlier_attempt() {
    let nats = NatsCluster::start(1).await;
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(60));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1);
    let first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("lost-hold")).await;
    let pull = |addr: std::net::SocketAddr| async move {
        let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=30s", Some(TOKEN), Some("fwd"), "").await;
        assert_eq!(s, StatusCode::OK, "{got}");
        (got["messages"][0]["id"].clone(), got["messages"][0]["attempt"].as_u64())
    };
    assert_eq!(pull(first.addr).await, (id.as_str().into(), Some(1)));
    // Paused past `takeover` (5 s): NATS hands the message to the second.
    first.signal("STOP");
    let second = start(&cfg(d2.path())).await;
    let a2 = second.ingest_addrs[0];
    assert_eq!(pull(a2).await, (id.as_str().into(), Some(2)));
    first.signal("CONT");

    let ack = |n: u32| format!(r#"{{"ids": ["{id}"], "attempts": {{"{id}": {n}}}}}"#);
    let (s, _, v) = pull_call(
        first.addr,
        "POST",
        "/pull/laptop/ack",
        Some(TOKEN),
        Some("fwd"),
        &ack(1),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "applied by a relay that no longer holds the message: {v}; relay 1's log:\n{}",
        first.log_text()
    );
    assert_eq!(v.get("delivered"), None, "{v}");
    let (s, _, v) = pull_call(a2, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack(2)).await;
    assert_eq!((s, v["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let view = admin_expect(
        second.admin_addr,
        &format!("/api/events/{id}"),
        secs(10),
        "the later attempt recorded",
        |v| v["subscribers"][0]["state"] == "delivered",
    )
    .await;
    assert_eq!(view["subscribers"][0]["attempts_total"], 2, "{view}");
    second.shutdown().await;
}
