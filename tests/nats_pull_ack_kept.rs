//! Cluster mode, two relays: an acknowledgement whose record failed (`503`)
//! keeps its lease at the relay that handed the message out, and that relay
//! keeps holding the message at NATS meanwhile (src/store/nats/record.rs
//! `record_kept`), so no other relay hands it out again before the
//! acknowledgement sent again is recorded: the message is not sent twice.

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

/// The results bucket's stream (where an outcome is written first).
/// The results bucket takes no writes while a forwarder acknowledges a
/// message leased by relay 1 (its record fails after its patience: `503`).
/// Relay 1 keeps holding the message at NATS, so a forwarder long-polling
/// relay 2 gets nothing for longer than `takeover` (5 s) after that, and the
/// acknowledgement sent again to relay 1 applies. Before the fix the failed
/// record let the message go: NATS handed it to relay 2 after `takeover`,
/// which sent it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_that_could_not_be_recorded_keeps_the_message_from_other_relays() {
    let nats = NatsCluster::start(1).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(60));
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1);
    let r1 = start(&cfg(dirs[0].path())).await;
    let r2 = start(&cfg(dirs[1].path())).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let id = accepted(a1, &runway("kept-hold")).await;
    assert_hands_out(a1, "/pull/laptop?wait=10s", TOKEN, "f1", &id).await;

    // The results bucket refuses writes ("no responders"), as while its
    // stream elects a leader.
    let away = common::nats::ResultsAway::start(nats.urls()[0].as_str()).await;
    let ack = format!(r#"{{"ids":["{id}"]}}"#);
    let (s, _, got) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{got}");
    away.back().await;

    // Longer than `takeover`: another relay's forwarder gets nothing.
    let (s, _, got) = pull_call(a2, "GET", "/pull/laptop?wait=12s", Some(TOKEN), Some("f2"), "").await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(
        got["messages"].as_array().map(Vec::len),
        Some(0),
        "relay 2 handed out the message whose acknowledgement relay 1 still takes: {got}"
    );
    // The acknowledgement sent again applies, once.
    let (s, _, got) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &ack).await;
    assert_eq!(
        (s, &got["acknowledged"]),
        (StatusCode::OK, &serde_json::json!(1)),
        "{got}"
    );
    let ev = admin_until(r1.admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(ev["subscribers"][0]["attempts_total"], 1, "{ev}");
    r1.shutdown().await;
    r2.shutdown().await;
}
