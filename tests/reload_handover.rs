//! A subscriber stopped by a reload (removed, switched from push to pull,
//! moved to another route) with an attempt in flight: the attempt finishes
//! and is recorded (up to the subscriber's `timeout`), and whatever reads
//! the subscriber's work next (a pull lane, the push lane of its return)
//! starts after it, so the event is not delivered a second time. From
//! review 13, finding 3; removal also in cluster mode (the same lanes).

use crate::common;

use std::sync::Arc;
use std::time::Instant;

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

/// A subscriber whose first request is answered 200 after 1.5 s, the others at once.
async fn slow_first() -> Sub {
    Sub::start(Arc::new(|n, _| {
        if n == 0 {
            Behaviour::Slow(ms(1500))
        } else {
            Behaviour::Status(200)
        }
    }))
    .await
}

/// A push subscriber switched to pull while an attempt is in flight: the
/// README says its pending work "goes the new way", but the attempt the
/// subscriber received (and answered 200) is aborted unrecorded, and the same
/// event is handed out again by the pull API: delivered twice by a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_switching_push_to_pull_does_not_deliver_an_attempt_in_flight_again() {
    let dir = tempfile::tempdir().unwrap();
    let sub = slow_first().await;
    let base = TestConfig::new(dir.path());
    let h = start(
        &base
            .clone()
            .subscriber(Subscriber::new("s", sub.url()).timeout(secs(10))),
    )
    .await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("in-flight")).await;
    sub.wait_for(secs(5), "the attempt in flight", |r| r.len() == 1).await;
    let sent_at = Instant::now();
    base.clone().subscriber(Subscriber::pull("s", "s-token")).write();
    h.reload().await.expect("reload");
    // The subscriber answers 200 to the attempt it got.
    tokio::time::sleep(ms(1500).saturating_sub(sent_at.elapsed()) + ms(300)).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/s?wait=2s&max=10", Some("s-token"), Some("f1"), "").await;
    assert_eq!(s, StatusCode::OK, "{got}");
    let offered: Vec<String> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !offered.contains(&id),
        "event {id} was received by the push endpoint (answered 200) and is offered again by the pull API: {offered:?}"
    );
    h.shutdown().await;
}

/// Removed with an attempt in flight and put back before it is answered:
/// the answer is recorded (delivered) and the lane of its return does not
/// send the event again. A callback after the return still goes out.
async fn removing_and_re_adding_a_subscriber_does_not_deliver_an_attempt_in_flight_again(base: TestConfig) {
    let sub = slow_first().await;
    let with_s = base
        .clone()
        .subscriber(Subscriber::new("other", DOWN))
        .subscriber(Subscriber::new("s", sub.url()).timeout(secs(10)));
    let without_s = base.clone().subscriber(Subscriber::new("other", DOWN));
    let h = start(&with_s).await;
    let addr = h.ingest_addrs[0];
    let id = accepted(addr, &runway("in-flight")).await;
    sub.wait_for(secs(5), "the attempt in flight", |r| r.len() == 1).await;
    without_s.write();
    h.reload().await.expect("reload removing s");
    with_s.write();
    h.reload().await.expect("reload adding s back");
    let later = accepted(addr, &runway("after-return")).await;
    sub.wait_for(secs(10), "the callback after the return", |r| {
        r.iter().any(|x| x.header("webhook-id") == later)
    })
    .await;
    tokio::time::sleep(ms(500)).await;
    let seen = seen_ids(&sub);
    assert_eq!(
        seen.get(&id),
        Some(&1),
        "event {id} was answered 200 while s was removed and sent to s again when it came back: {seen:?}"
    );
    let v = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(5), |v| {
        row(&v["subscribers"], "name", "s")["state"] == "delivered"
    })
    .await;
    assert_eq!(row(&v["subscribers"], "name", "s")["state"], "delivered", "{v}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_and_re_adding_a_subscriber_does_not_deliver_an_attempt_in_flight_again_embedded() {
    let dir = tempfile::tempdir().unwrap();
    removing_and_re_adding_a_subscriber_does_not_deliver_an_attempt_in_flight_again(TestConfig::new(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_and_re_adding_a_subscriber_does_not_deliver_an_attempt_in_flight_again_in_cluster_mode() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    removing_and_re_adding_a_subscriber_does_not_deliver_an_attempt_in_flight_again(
        TestConfig::new(dir.path()).nats(nats.urls(), 1),
    )
    .await;
}
