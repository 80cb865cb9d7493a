//! A reload that moves a pull subscriber to another route and rotates its
//! token while its forwarder leases a message: the lane the reload stopped
//! takes the acknowledgement of that lease with the token it was handed out
//! under, and with the subscriber's current token too (as the running lane
//! takes the current token for leases handed out under an earlier one, and
//! as the other relays' stopped lanes take it in cluster mode, asked by the
//! relay that received it). An earlier token still opens nothing else
//! (tests/nats_pull_acks.rs).

use crate::common;

use common::moved::Move;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_token_acknowledges_a_lease_of_a_lane_stopped_by_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let moved = Move::new(
        TestConfig::new(dir.path()),
        Subscriber::pull("p", "old-token").lease(secs(60)),
        Subscriber::pull("p", "new-token").lease(secs(60)),
    )
    .await;
    let (h, old) = moved.lease_then_move("old-token").await;
    let addr = h.ingest_addrs[0];
    let body = format!(r#"{{"ids": ["{old}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/p/ack", Some("new-token"), Some("f1"), &body).await;
    assert_eq!(
        (s.as_u16(), v["acknowledged"].as_u64()),
        (200, Some(1)),
        "the subscriber's current token did not acknowledge its stopped lane's lease: {v}"
    );
    let ev = admin_until(h.admin_addr, &format!("/api/events/{old}"), secs(5), |v| {
        row(&v["subscribers"], "name", "p")["state"] == "delivered"
    })
    .await;
    let p = row(&ev["subscribers"], "name", "p");
    assert_eq!(
        (&p["state"], &p["attempts_total"]),
        (&"delivered".into(), &1.into()),
        "{ev}"
    );
    h.shutdown().await;
}
