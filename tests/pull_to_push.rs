//! A pull subscriber switched to push by a reload while its forwarder
//! leases messages (review 19, finding 2; the mirror of review 13's push to
//! pull handover, tests/reload_handover.rs). The stopped pull lane keeps
//! answering its forwarders' acknowledgements of what they lease, under the
//! token those leases were issued with, until each lease (and its lapse) is
//! over; the push lane sends fresh work at once but not the leased
//! messages: one acknowledged is delivered, one whose lease runs out is
//! pushed as the next attempt. Embedded store and cluster mode (the same
//! lanes; in cluster mode the stopped lane's cursor keeps holding the
//! leased messages at NATS).

use crate::common;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

/// `base` with pull subscriber laptop (`TOKEN`, 30 s leases).
fn laptop_pulling(base: &TestConfig) -> TestConfig {
    base.clone()
        .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(30)))
}

/// Leased, then the subscriber is switched to push; the forwarder's
/// acknowledgement within the lease is applied and the push lane never
/// sends the message, while a callback arriving after the switch is pushed.
async fn switching_pull_to_push_does_not_deliver_a_leased_message_again(base: TestConfig) {
    let sub = Sub::ok().await;
    let pulled = laptop_pulling(&base);
    let h = start(&pulled).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("switched")).await;
    assert_hands_out(addr, "/pull/laptop?wait=5s&max=1", TOKEN, "fwd", &id).await;
    // The operator opens an inbound route and switches the subscriber to push.
    base.clone().subscriber(Subscriber::new("laptop", sub.url())).write();
    h.reload().await.unwrap();
    // Fresh work flows to the push lane at once.
    let fresh = accepted(addr, &runway("after-switch")).await;
    sub.wait_for(secs(10), "the callback after the switch", |r| {
        r.iter().any(|x| x.header("webhook-id") == fresh)
    })
    .await;
    // The forwarder's local delivery answers 2xx a moment later, well within the lease.
    let ack = format!(r#"{{"ids": ["{id}"]}}"#);
    let (ack_status, _, ack_answer) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    // Pulling is over: only acknowledgements of the leases still count.
    let (pull_status, _, _) = pull_call(addr, "GET", "/pull/laptop?wait=0", Some(TOKEN), Some("fwd"), "").await;
    tokio::time::sleep(secs(3)).await;
    let pushed = sub.all().iter().filter(|r| r.header("webhook-id") == id).count();
    let v = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(5), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    h.shutdown().await;
    assert_eq!(
        pushed, 0,
        "the message was delivered by the forwarder within its 30 s lease (its acknowledgement answered \
         {ack_status} {ack_answer}) and the push lane sent it again after the reload"
    );
    assert_eq!(
        (ack_status, ack_answer["acknowledged"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{ack_answer}"
    );
    assert_eq!(
        pull_status,
        StatusCode::UNAUTHORIZED,
        "no pull API for a push subscriber"
    );
    assert_eq!(v["subscribers"][0]["state"], "delivered", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_pull_to_push_does_not_deliver_a_leased_message_again_embedded() {
    let dir = tempfile::tempdir().unwrap();
    switching_pull_to_push_does_not_deliver_a_leased_message_again(TestConfig::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_pull_to_push_does_not_deliver_a_leased_message_again_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    switching_pull_to_push_does_not_deliver_a_leased_message_again(TestConfig::new(dir.path()).nats(nats.urls(), 1))
        .await;
}

/// A lease that runs out after the switch is a failed attempt (as it would
/// be for a pull subscriber): once its lapse is over the push lane sends
/// the message as the next attempt, not before the lease ends.
async fn a_lease_running_out_after_a_switch_to_push_is_pushed_as_the_next_attempt(base: TestConfig) {
    let sub = Sub::ok().await;
    let lease = secs(3);
    let h = start(
        &base
            .clone()
            .subscriber(Subscriber::pull("laptop", TOKEN).lease(lease).retry([secs(1)])),
    )
    .await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("runs-out")).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=1", Some(TOKEN), Some("fwd"), "").await;
    let leased_at = std::time::Instant::now();
    assert_eq!(
        (s, got["messages"][0]["attempt"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{got}"
    );
    base.clone()
        .subscriber(Subscriber::new("laptop", sub.url()).retry([secs(1)]))
        .write();
    h.reload().await.unwrap();
    // The forwarder never answers.
    sub.wait_for(secs(15), "the pushed delivery after the lease ran out", |r| {
        r.iter().any(|x| x.header("webhook-id") == id)
    })
    .await;
    let pushed_after = leased_at.elapsed();
    let got = sub.all();
    let attempts: Vec<String> = got
        .iter()
        .filter(|r| r.header("webhook-id") == id)
        .map(|r| r.header("hookrelay-attempt").to_string())
        .collect();
    let v = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(5), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    h.shutdown().await;
    assert!(
        pushed_after >= lease,
        "pushed {pushed_after:?} after the hand-out, within its {lease:?} lease"
    );
    assert_eq!(attempts, vec!["2".to_string()], "the expired lease was attempt 1");
    assert_eq!(v["subscribers"][0]["attempts_total"], 2, "{v}");
    assert_eq!(v["subscribers"][0]["state"], "delivered", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_running_out_after_a_switch_to_push_is_pushed_as_the_next_attempt_embedded() {
    let dir = tempfile::tempdir().unwrap();
    a_lease_running_out_after_a_switch_to_push_is_pushed_as_the_next_attempt(TestConfig::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_running_out_after_a_switch_to_push_is_pushed_as_the_next_attempt_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    a_lease_running_out_after_a_switch_to_push_is_pushed_as_the_next_attempt(
        TestConfig::new(dir.path()).nats(nats.urls(), 1),
    )
    .await;
}

/// With `hookrelay forward`: the subscriber is switched to push while the
/// forwarder's local service is answering a message. The forwarder's next
/// pull is refused (no pull API any more) and it stops, letting the local
/// delivery finish and acknowledging it under its token: the relay records
/// it delivered and the push lane never sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_delivering_during_a_switch_to_push_has_its_delivery_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path());
    let h = start(&laptop_pulling(&base)).await;
    let addr = h.ingest_addrs[0];
    let local = common::forward::Local::start(std::sync::Arc::new(|_, _| (200, secs(2)))).await;
    let mut fwd = common::forward::Forwarder::start(
        dir.path(),
        &common::forward::pull_url(addr, "laptop"),
        &local.url(),
        TOKEN,
        &["--timeout", "10s"],
    );
    let id = accepted(addr, &runway("being-delivered")).await;
    admin_until(h.admin_addr, "/api/subscribers", secs(10), |v| {
        row(&v["subscribers"], "name", "laptop")["in_flight"] == 1
    })
    .await;
    base.clone().subscriber(Subscriber::new("laptop", sub.url())).write();
    h.reload().await.unwrap();
    fwd.wait(secs(20));
    let v = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(5), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    tokio::time::sleep(secs(1)).await;
    let pushed = sub.all().iter().filter(|r| r.header("webhook-id") == id).count();
    let delivered_locally = local.all().iter().filter(|g| g.id == id).count();
    h.shutdown().await;
    assert_eq!((delivered_locally, pushed), (1, 0), "forwarder log: {}", fwd.log_text());
    assert_eq!(v["subscribers"][0]["state"], "delivered", "{v}");
    assert_eq!(v["subscribers"][0]["attempts_total"], 1, "{v}");
}

/// Switched pull → push → pull while the forwarder leases messages: the
/// stopped first pull lane still holds those leases, the new pull lane
/// hands out fresh work to the same forwarder, and one acknowledgement
/// names messages of both. The batch is split over the lanes (each applies
/// what it leases): `200`, nothing offered or pushed again. While it is
/// split, an id nobody holds any more is refused alone, with what the
/// others did (`applied`), as in cluster mode.
async fn an_acknowledgement_of_leases_of_a_stopped_and_the_current_pull_lane_applies_both(
    base: TestConfig,
    clustered: bool,
) {
    let sub = Sub::ok().await;
    let pulled = laptop_pulling(&base);
    let h = start(&pulled).await;
    let addr = h.ingest_addrs[0];
    let old = [
        accepted(addr, &runway("before-the-switches")).await,
        accepted(addr, &runway("before-the-switches-2")).await,
    ];
    let pull_all = |want: Vec<String>| async move {
        let mut leased = Vec::new();
        for _ in 0..10 {
            let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=10", Some(TOKEN), Some("fwd"), "").await;
            assert_eq!(s, StatusCode::OK, "{got}");
            let ids = got["messages"].as_array().unwrap().iter();
            leased.extend(ids.map(|m| m["id"].as_str().unwrap().to_string()));
            if leased.len() >= want.len() {
                break;
            }
        }
        leased.sort();
        let mut want = want;
        want.sort();
        assert_eq!(leased, want);
    };
    // A pull answers with what is ready (in cluster mode the consumer may
    // hand the second message a moment after the first): pulled until both.
    let mut first: Vec<String> = Vec::new();
    for _ in 0..10 {
        let max = 2 - first.len();
        let (s, _, got) = pull_call(
            addr,
            "GET",
            &format!("/pull/laptop?wait=5s&max={max}"),
            Some(TOKEN),
            Some("fwd"),
            "",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{got}");
        let ids = got["messages"].as_array().unwrap().iter();
        first.extend(ids.map(|m| m["id"].as_str().unwrap().to_string()));
        if first.len() >= 2 {
            break;
        }
    }
    assert_eq!(first, old, "the two stored before the switches, in order");
    base.clone().subscriber(Subscriber::new("laptop", sub.url())).write();
    h.reload().await.unwrap();
    pulled.write();
    h.reload().await.unwrap();
    let new = [
        accepted(addr, &runway("after-the-switches")).await,
        accepted(addr, &runway("after-the-switches-2")).await,
    ];
    // The new lane hands out the fresh work only (the old leases are held).
    pull_all(new.to_vec()).await;
    // The forwarder delivered one message leased before the switches and
    // one leased after them: one acknowledgement.
    let ack = format!(r#"{{"ids": ["{}", "{}"]}}"#, old[0], new[0]);
    let (ack_status, _, ack_answer) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    // One already acknowledged (sent again) and one leased: the leased one applies.
    let ack = format!(r#"{{"ids": ["{}", "{}"]}}"#, new[1], new[0]);
    let (rest_status, _, rest_answer) =
        pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    // The last lease of the stopped lane, alone.
    let ack = format!(r#"{{"ids": ["{}"]}}"#, old[1]);
    let (last_status, _, last_answer) =
        pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    let delivered = |v: &serde_json::Value| v["subscribers"][0]["state"] == "delivered";
    let mut states = Vec::new();
    for id in old.iter().chain(&new) {
        let v = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(5), delivered).await;
        states.push(v["subscribers"][0].clone());
    }
    let (s, _, offered) = pull_call(addr, "GET", "/pull/laptop?wait=1s&max=10", Some(TOKEN), Some("fwd"), "").await;
    let pushed = sub.all().len();
    h.shutdown().await;
    assert_eq!(
        (ack_status, ack_answer["acknowledged"].as_u64()),
        (StatusCode::OK, Some(2)),
        "one leased by the stopped lane, one by the current lane: {ack_answer}"
    );
    assert_eq!(rest_status, StatusCode::CONFLICT, "{rest_answer}");
    assert_eq!(rest_answer["not_leased"], serde_json::json!([new[0]]), "{rest_answer}");
    assert_eq!(rest_answer["applied"]["acknowledged"], 1, "{rest_answer}");
    assert_eq!(
        (last_status, last_answer["acknowledged"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{last_answer}"
    );
    for st in &states {
        // Delivered once: one attempt recorded. Its number may be 2 in
        // cluster mode, where a message a lane prefetched and gave back
        // (a lane stopped by the switches) counts a hand-out (a Left item:
        // the numbering, not a second delivery; seen twice in CI runs).
        assert_eq!(st["state"], "delivered", "{st}");
        assert_eq!(st["attempts"].as_array().map(Vec::len), Some(1), "{st}");
        let total = st["attempts_total"].as_u64().unwrap_or(0);
        assert!(total == 1 || (clustered && total == 2), "{st}");
    }
    assert_eq!(
        (s, offered["messages"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0)),
        "{offered}"
    );
    assert_eq!(pushed, 0, "nothing was pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_of_leases_of_a_stopped_and_the_current_pull_lane_applies_both_embedded() {
    let dir = tempfile::tempdir().unwrap();
    an_acknowledgement_of_leases_of_a_stopped_and_the_current_pull_lane_applies_both(
        TestConfig::new(dir.path()),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_of_leases_of_a_stopped_and_the_current_pull_lane_applies_both_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    an_acknowledgement_of_leases_of_a_stopped_and_the_current_pull_lane_applies_both(
        TestConfig::new(dir.path()).nats(nats.urls(), 1),
        true,
    )
    .await;
}

/// The leases a stopped pull lane still serves are shown: in `leased` of the
/// subscriber's row (push after the switch; pull again after switching
/// back, with its new lane's leases, also in `in_flight`) and in
/// `hookrelay_pull_leased`, until they are acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leases_of_a_stopped_pull_lane_are_shown_in_the_listing_and_the_gauge() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path());
    let pulled = laptop_pulling(&base);
    let h = start(&pulled).await;
    let (addr, admin_addr) = (h.ingest_addrs[0], h.admin_addr);
    let old = [
        accepted(addr, &runway("leased-1")).await,
        accepted(addr, &runway("leased-2")).await,
    ];
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=5s&max=2", Some(TOKEN), Some("fwd"), "").await;
    assert_eq!(
        (s, got["messages"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2)),
        "{got}"
    );
    let gauge = "hookrelay_pull_leased{subscriber=\"laptop\"}";
    let laptop = |v: &serde_json::Value| row(&v["subscribers"], "name", "laptop");
    base.clone().subscriber(Subscriber::new("laptop", sub.url())).write();
    h.reload().await.unwrap();
    let pushed = admin_until(admin_addr, "/api/subscribers", secs(5), |v| laptop(v)["leased"] == 2).await;
    let pushed_gauge = metrics(admin_addr).await;
    pulled.write();
    h.reload().await.unwrap();
    let fresh = accepted(addr, &runway("fresh")).await;
    assert_hands_out(addr, "/pull/laptop?wait=5s&max=10", TOKEN, "fwd", &fresh).await;
    let pulling = admin_until(admin_addr, "/api/subscribers", secs(5), |v| laptop(v)["leased"] == 3).await;
    let pulling_gauge = metrics(admin_addr).await;
    let ack = format!(r#"{{"ids": ["{}", "{}", "{fresh}"]}}"#, old[0], old[1]);
    let (ack_status, _, ack_answer) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("fwd"), &ack).await;
    let done = admin_until(admin_addr, "/api/subscribers", secs(5), |v| laptop(v)["leased"] == 0).await;
    let done_gauge = metrics(admin_addr).await;
    h.shutdown().await;
    let pushed = laptop(&pushed);
    assert_eq!(
        (&pushed["kind"], &pushed["leased"]),
        (&"push".into(), &2.into()),
        "{pushed}"
    );
    assert_eq!(sample(&pushed_gauge, gauge), 2.0);
    let pulling = laptop(&pulling);
    assert_eq!(
        (&pulling["kind"], &pulling["leased"], &pulling["in_flight"]),
        (&"pull".into(), &3.into(), &3.into()),
        "{pulling}"
    );
    assert_eq!(sample(&pulling_gauge, gauge), 3.0);
    assert_eq!(
        (ack_status, ack_answer["acknowledged"].as_u64()),
        (StatusCode::OK, Some(3)),
        "{ack_answer}"
    );
    let done = laptop(&done);
    assert_eq!((&done["leased"], &done["in_flight"]), (&0.into(), &0.into()), "{done}");
    assert_eq!(sample(&done_gauge, gauge), 0.0);
}

/// `p` (token "p-token", 60 s leases) moved from route t to route u.
async fn p_moved(dir: &std::path::Path) -> Move {
    let p = || Subscriber::pull("p", "p-token").lease(secs(60));
    Move::new(TestConfig::new(dir), p(), p()).await
}

/// A forwarder's acknowledgement batch holding a lease of the lane a reload
/// stopped (the subscriber moved to another route) and a lease of its new
/// lane is applied whole (review 20, finding 1: it was refused with 409
/// naming the stopped lane's id, which the forwarder then dropped, and the
/// delivered message was sent again when its lease ran out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_batch_spanning_a_stopped_lane_and_the_new_one_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let moved = p_moved(dir.path()).await;
    let (h, old) = moved.lease_then_move("p-token").await;
    let addr = h.ingest_addrs[0];
    let fresh = accepted_at(addr, "/hooks/u?token=tok", &runway("new-lane")).await;
    assert_hands_out(addr, "/pull/p?wait=10s&max=5", "p-token", "f1", &fresh).await;

    // Both delivered by the forwarder: one acknowledgement batch.
    let body = format!(r#"{{"ids": ["{old}", "{fresh}"]}}"#);
    let (s, _, v) = pull_call(addr, "POST", "/pull/p/ack", Some("p-token"), Some("f1"), &body).await;
    h.shutdown().await;
    assert_eq!(
        (s.as_u16(), v["acknowledged"].as_u64()),
        (200, Some(2)),
        "both ids are leased to f1 (one by the stopped lane, one by the new one), yet: {v}"
    );
}

/// A pull subscriber moved to another route while its forwarder leases a
/// message: the stopped lane's one lease is listed once, on the
/// subscriber's pull row, not also on the `removed` row of its old route
/// (review 21: 2 leases were shown for 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_subscribers_stopped_lease_is_listed_once() {
    let dir = tempfile::tempdir().unwrap();
    let moved = p_moved(dir.path()).await;
    let (h, _) = moved.lease_then_move("p-token").await;
    let rows_of_p = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == "p")
            .cloned()
            .collect()
    };
    // Wait for the listing to show the old route's row.
    let v = admin_until(h.admin_addr, "/api/subscribers", secs(5), |v| rows_of_p(v).len() >= 2).await;
    h.shutdown().await;
    let rows = rows_of_p(&v);
    let total: u64 = rows.iter().map(|r| r["leased"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 1, "one message is leased, yet the rows of p show: {rows:?}");
}
