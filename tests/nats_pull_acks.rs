//! Pull acknowledgements in cluster mode when one forwarder's leases are
//! split over relays (it pulled through several: a balancer, a reconnect).
//! Each relay applies the part of an acknowledgement it leases to that
//! forwarder and asks the others for the rest; the answer is 200 when
//! everything was applied, else 409 naming only the ids no relay leases to
//! it (with what the rest did).

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

/// One NATS node and two relays in cluster mode serving the pull
/// subscriber `laptop` (its token [`TOKEN`]).
pub(crate) struct TwoRelays {
    pub(crate) _nats: NatsCluster,
    pub(crate) _dirs: [tempfile::TempDir; 2],
    pub(crate) r1: hookrelay::Handle,
    pub(crate) r2: hookrelay::Handle,
}

pub(crate) async fn two_relays(laptop: Subscriber) -> TwoRelays {
    let nats = NatsCluster::start(1).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1);
    let r1 = start(&cfg(dirs[0].path())).await;
    let r2 = start(&cfg(dirs[1].path())).await;
    TwoRelays {
        _nats: nats,
        _dirs: dirs,
        r1,
        r2,
    }
}

/// A forwarder behind a balancer pulls through two relays; both of its
/// local deliveries succeed and its acknowledgements, which finish
/// together, go to one relay in one request (as `hookrelay forward`
/// batches them). That relay applies the lease it holds and has the other
/// relay apply the other: 200, both delivered once (review 19, finding 1:
/// it answered 409 naming the other relay's id, which the forwarder
/// dropped, so the delivered message was sent again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_acknowledgement_of_leases_held_by_two_relays_is_applied() {
    let TwoRelays { _nats, _dirs, r1, r2 } = two_relays(Subscriber::pull("laptop", TOKEN).lease(secs(30))).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let id1 = accepted(a1, &runway("split-1")).await;
    let (s, _, got) = pull_call(a1, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(
        (s, got["messages"][0]["id"].as_str()),
        (StatusCode::OK, Some(id1.as_str())),
        "{got}"
    );
    let id2 = accepted(a2, &runway("split-2")).await;
    let (s, _, got) = pull_call(a2, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(
        (s, got["messages"][0]["id"].as_str()),
        (StatusCode::OK, Some(id2.as_str())),
        "{got}"
    );
    // Both delivered locally: one acknowledgement, through the first relay.
    let ack = format!(r#"{{"ids": ["{id1}", "{id2}"]}}"#);
    let (s, _, v) = pull_call(a1, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    assert_eq!(
        (s, v["acknowledged"].as_u64()),
        (StatusCode::OK, Some(2)),
        "both ids are leased to this forwarder (one at each relay), yet the relay refused: {v}"
    );
    for id in [&id1, &id2] {
        let ev = admin_until(r2.admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
            v["subscribers"][0]["state"] == "delivered"
        })
        .await;
        assert_eq!(
            (&ev["subscribers"][0]["state"], &ev["subscribers"][0]["attempts_total"]),
            (&serde_json::json!("delivered"), &serde_json::json!(1)),
            "{ev}"
        );
    }
    // Applied once: acknowledging again is refused, through either relay.
    let (s, _, v) = pull_call(a2, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    assert_eq!(
        (s, v["not_leased"].as_array().map(Vec::len)),
        (StatusCode::CONFLICT, Some(2)),
        "{v}"
    );
    assert!(v.get("applied").is_none(), "nothing was changed: {v}");
    r1.shutdown().await;
    r2.shutdown().await;
}

/// Through another relay, a batch in which one lease is over (its lapse
/// too): the holder applies the live one and names the other, and the 409
/// names only the id no relay leases, saying the rest was applied (review
/// 19, finding 1: the holder stayed silent and the 409 named every id, so
/// the forwarder dropped the acknowledgement of the delivered one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_another_relay_a_409_names_only_the_ids_not_leased() {
    // Leases of 12 s: the quick one, pulled 6 s after the slow one, is the
    // one handed out (the slow one still leased however slow this machine),
    // and its lease still runs ~6 s after the slow one's lapse (100 ms) is over.
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(12)).retry([ms(100); 3]);
    let TwoRelays { _nats, _dirs, r1, r2 } = two_relays(laptop).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let slow = accepted(a1, &runway("slow-one")).await;
    let (_, _, got) = pull_call(a1, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(got["messages"][0]["id"].as_str(), Some(slow.as_str()), "{got}");
    tokio::time::sleep(secs(6)).await;
    let quick = accepted(a1, &runway("quick-one")).await;
    let (_, _, got) = pull_call(a1, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(got["messages"][0]["id"].as_str(), Some(quick.as_str()), "{got}");
    // The slow one's lease (and its short lapse) is over, ~2.9 s ago; the
    // quick one's runs ~3 s more.
    tokio::time::sleep(secs(9)).await;
    let ack = format!(r#"{{"ids": ["{slow}", "{quick}"]}}"#);
    let (s, _, v) = pull_call(a2, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        v["not_leased"],
        serde_json::json!([slow]),
        "the quick one is still leased to this forwarder (at the other relay), yet the 409 names it too, so the \
         forwarder drops its acknowledgement: {v}"
    );
    assert_eq!(v["applied"]["acknowledged"], 1, "the rest was applied: {v}");
    let ev = admin_until(r1.admin_addr, &format!("/api/events/{quick}"), secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}");
    r1.shutdown().await;
    r2.shutdown().await;
}

/// Three relays: a forwarder's leases are at the first two, and one
/// request through the third acknowledges one and hands the other back.
/// Each holder applies its part; the third merges both answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_at_two_other_relays_are_applied_through_a_third() {
    let nats = NatsCluster::start(1).await;
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let laptop = Subscriber::pull("laptop", TOKEN).lease(secs(30)).retry([secs(60)]);
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(laptop.clone()).nats(nats.urls(), 1);
    let mut relays = Vec::new();
    for d in &dirs {
        relays.push(start(&cfg(d.path())).await);
    }
    let addrs: Vec<_> = relays.iter().map(|r| r.ingest_addrs[0]).collect();
    let mut ids = Vec::new();
    for (i, addr) in addrs[..2].iter().enumerate() {
        let id = accepted(*addr, &runway(&format!("three-{i}"))).await;
        let (_, _, got) = pull_call(
            *addr,
            "GET",
            "/pull/laptop?wait=10s&max=1",
            Some(TOKEN),
            Some("fwd"),
            "",
        )
        .await;
        assert_eq!(got["messages"][0]["id"].as_str(), Some(id.as_str()), "{got}");
        ids.push(id);
    }
    let ack = format!(r#"{{"ids": ["{}"], "retry": ["{}"]}}"#, ids[0], ids[1]);
    let (s, _, v) = pull_call(addrs[2], "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    assert_eq!(
        (s, v["acknowledged"].as_u64(), v["retried"].as_u64()),
        (StatusCode::OK, Some(1), Some(1)),
        "{v}"
    );
    let (s, _, v) = pull_call(addrs[2], "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    assert_eq!(s, StatusCode::CONFLICT, "applied once: {v}");
    for r in relays {
        r.shutdown().await;
    }
}

/// In cluster mode the token of a stopped (retiring) pull lane does not
/// open the subscriber's *current* leases. A reload moves `p` to route u and
/// rotates its token (the old one leaked). The stopped lane still takes the
/// old token for its own leases; review 20 (finding 3) found that its `ack`
/// then asked the other relays for the ids it does not hold, and a peer
/// request carries no token: the new lane (here the same relay, through
/// NATS) applied the acknowledgement of a lease handed out under the new
/// token, so whoever had the old token and a forwarder's id could mark
/// undelivered messages delivered. A lane a reload stopped never asks the
/// other relays now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_token_cannot_acknowledge_leases_handed_out_under_the_new_one_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let moved = Move::new(
        TestConfig::new(dir.path()).nats(nats.urls(), 1),
        Subscriber::pull("p", "leaked-token").lease(secs(60)),
        Subscriber::pull("p", "new-token").lease(secs(60)),
    )
    .await;
    // A lease under the leaked token, then moved to route u with a new token.
    let (h, _) = moved.lease_then_move("leaked-token").await;
    let addr = h.ingest_addrs[0];
    let fresh = accepted_at(addr, "/hooks/u?token=tok", &runway("new-lane")).await;
    assert_hands_out(addr, "/pull/p?wait=10s&max=5", "new-token", "f1", &fresh).await;
    // The leaked token acknowledges the lease handed out under the new one.
    let body = format!(r#"{{"ids": ["{fresh}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/p/ack", Some("leaked-token"), Some("f1"), &body).await;
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{fresh}")).await;
    let p = row(&ev["subscribers"], "name", "p");
    // The forwarder that holds it with the new token still acknowledges it.
    let (s2, _, v2) = pull_call(addr, "POST", "/pull/p/ack", Some("new-token"), Some("f1"), &body).await;
    h.shutdown().await;
    assert_eq!(
        (s.as_u16(), p["state"].as_str()),
        (409, Some("pending")),
        "the old token acknowledged a lease issued under the new one: {s} {v}; the event: {p}"
    );
    assert_eq!((s2.as_u16(), v2["acknowledged"].as_u64()), (200, Some(1)), "{v2}");
}

/// In cluster mode, `hookrelay forward` offered an operator's replay of a
/// message it delivered, whose acknowledgement it never saw confirmed, asks
/// the relay holding the replay's lease whether its attempt was recorded
/// (the acknowledgement again, with that attempt). The relay leases the id
/// for the later attempt: no other relay can lease it for the earlier one,
/// so it answers at once, naming the id delivered from the shared history,
/// and leaves the replay's lease to its own answer. It asked the other
/// relays first and waited out their silence (5 s: a forwarder's question
/// with a lease of 2 s or less always ran out; review of stop 76's change).
/// Through another relay (a balancer without sticky sessions) the one
/// leasing it says so at once: the asker waited 5 s for an answer that
/// never came, the forwarder gave up and released the offer, round after
/// round (second review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asked_about_an_earlier_attempt_of_a_lease_it_holds_a_relay_answers_at_once() {
    let TwoRelays { _nats, _dirs, r1, r2 } = two_relays(Subscriber::pull("laptop", TOKEN).lease(secs(30))).await;
    let (a1, a2) = (r1.ingest_addrs[0], r2.ingest_addrs[0]);
    let id = accepted(a1, &runway("asked-again")).await;
    let pull = |attempt: u64| {
        let id = id.clone();
        async move {
            let (_, _, got) = pull_call(a1, "GET", "/pull/laptop?wait=10s&max=1", Some(TOKEN), Some("fwd"), "").await;
            assert_eq!(got["messages"][0]["id"].as_str(), Some(id.as_str()), "{got}");
            assert_eq!(got["messages"][0]["attempt"].as_u64(), Some(attempt), "{got}");
        }
    };
    let ack_through = |through: std::net::SocketAddr, n: u32| {
        let body = format!(r#"{{"ids": ["{id}"], "attempts": {{"{id}": {n}}}}}"#);
        async move {
            let asked = std::time::Instant::now();
            let (s, _, v) = pull_call(through, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &body).await;
            (s, v, asked.elapsed())
        }
    };
    let ack = |n: u32| ack_through(a1, n);
    pull(1).await;
    let (s, v, _) = ack(1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    admin_expect(
        r2.admin_addr,
        &format!("/api/events/{id}"),
        secs(20),
        "the delivery recorded",
        |v| v["subscribers"][0]["state"] == "delivered",
    )
    .await;
    let (s, v) = admin(r2.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    pull(2).await;
    for through in [a1, a2] {
        let (s, v, took) = ack_through(through, 1).await;
        assert_eq!(
            (s, &v["delivered"]),
            (StatusCode::CONFLICT, &serde_json::json!([id])),
            "{v}"
        );
        assert!(
            took < secs(4),
            "answered after {took:?} through {through} (r1 {a1}): it waited for the other relays"
        );
    }
    let (s, v, _) = ack(2).await;
    assert_eq!(
        (s, v["acknowledged"].as_u64()),
        (StatusCode::OK, Some(1)),
        "the replay's own answer: {v}"
    );
    r1.shutdown().await;
    r2.shutdown().await;
}
