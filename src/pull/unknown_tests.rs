//! A refused acknowledgement whose delivery record the relay cannot read
//! (its result row torn) is named `unknown` in the `409`, not left out:
//! left out, a forwarder asking whether to post a later attempt took it
//! for "not recorded" and acknowledged an operator's replay unsent (stop
//! 76's Left). The event's admin view says the record is unreadable (it
//! showed the delivery pending, never attempted).

use crate::delivery::pull::test_relay::{accepted, call, ids, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_whose_record_is_unreadable_is_named_unknown() {
    let (dir, relay) = start("laptop").await;
    let addr = relay.ingest_addrs[0];
    let id = accepted(addr, "torn").await;
    let (_, got) = call(addr, "GET", "/pull/laptop?wait=5s", Some("f1"), "").await;
    assert_eq!(ids(&got), std::slice::from_ref(&id), "{got}");
    let ack = format!(r#"{{"ids": ["{id}"], "attempts": {{"{id}": 1}}}}"#);
    let (s, got) = call(addr, "POST", "/pull/laptop/ack", Some("f1"), &ack).await;
    assert_eq!(s, 200, "{got}");
    // Sent again (its answer lost): named delivered while the record reads.
    let (s, got) = call(addr, "POST", "/pull/laptop/ack", Some("f1"), &ack).await;
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!((s, &v["delivered"]), (409, &serde_json::json!([id])), "{got}");
    relay.shutdown().await;

    let torn = crate::store::sled::damage::tear_result_rows(&dir.path().join("store"), id.parse().unwrap());
    assert_eq!(torn, 1);
    let config = crate::Config::load(&dir.path().join("config.toml")).expect("config");
    let relay = crate::start(config).await.expect("starts again");
    let addr = relay.ingest_addrs[0];
    let (s, got) = call(addr, "POST", "/pull/laptop/ack", Some("f1"), &ack).await;
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(s, 409, "{got}");
    assert_eq!(v["not_leased"], serde_json::json!([id]), "{got}");
    assert_eq!(
        v["unknown"],
        serde_json::json!([id]),
        "not known, so not 'not recorded': {got}"
    );
    assert_eq!(v.get("delivered"), None, "{got}");

    let (s, got) = call(relay.admin_addr, "GET", &format!("/api/events/{id}"), None, "").await;
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(s, 200, "{got}");
    let laptop = &v["subscribers"][0];
    assert!(
        laptop["last_error"].as_str().is_some_and(|e| e.contains("unreadable")),
        "{laptop}"
    );
    relay.shutdown().await;
}
