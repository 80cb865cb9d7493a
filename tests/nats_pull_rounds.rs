//! Pull offers name their round of delivery in cluster mode (`round`): the
//! same on every offer of an event's delivery, whichever relay makes it
//! (here a relay paused past `takeover`, and another handing the message
//! out for a later attempt), and another for an operator's replay. By it
//! `hookrelay forward` tells the message handed out again from a replay
//! without asking (a relay that lost its hold applying the earlier
//! attempt's acknowledgement late made the later offer look like a replay:
//! posted twice; pause soak, stop 77). The round is the delivery's replay
//! round, read with the work on the results bucket's leader: a replay's
//! message redelivered after a newer replay (its acknowledgement lost)
//! carries the newer round, not its own (review of stop 78). The embedded
//! store names none.

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

/// Long-poll `addr` as forwarder `fwd`: the one message's id, attempt and round.
async fn pull_one(addr: std::net::SocketAddr) -> (String, u64, Option<String>) {
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=30s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(s, StatusCode::OK, "{got}");
    let m = &got["messages"][0];
    assert_eq!(m["headers"]["hookrelay-attempt"], m["attempt"].to_string(), "{got}");
    (
        m["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {got}"))
            .to_string(),
        m["attempt"].as_u64().unwrap(),
        m["round"].as_str().map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_handed_out_again_keeps_its_round_and_a_replay_has_another() {
    let nats = NatsCluster::start(1).await;
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(60));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1);
    let first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("rounds")).await;
    let (got, attempt, round) = pull_one(first.addr).await;
    assert_eq!((got.as_str(), attempt), (id.as_str(), 1));
    let round = round.expect("cluster mode names the round");
    assert_eq!(round, "0", "a fresh delivery's round");
    // Paused past `takeover` (5 s): NATS hands the message to the second
    // relay, which offers it for a later attempt in the same round.
    first.signal("STOP");
    let second = start(&cfg(d2.path())).await;
    let a2 = second.ingest_addrs[0];
    let again = pull_one(a2).await;
    first.signal("CONT");
    assert_eq!(
        again,
        (id.clone(), 2, Some(round.clone())),
        "the same message, the same round"
    );
    let body = format!(r#"{{"ids": ["{id}"], "attempts": {{"{id}": 2}}}}"#);
    let (s, _, v) = pull_call(a2, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // An operator's replay: another round.
    let (s, v) = admin(second.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (got, attempt, replayed) = pull_one(a2).await;
    assert_eq!((got.as_str(), attempt), (id.as_str(), 3));
    assert_eq!(replayed.as_deref(), Some("1"), "a replay is another round");
    second.shutdown().await;
}

#[tokio::test]
async fn the_embedded_store_names_no_round() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", TOKEN))).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("no-round")).await;
    assert_eq!(pull_one(addr).await, (id, 1, None));
    h.shutdown().await;
}
