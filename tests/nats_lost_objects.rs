//! Cluster mode when the cluster loses the relay's objects while it runs: a
//! route's stream (with its consumers) or the results bucket deleted (by
//! hand, or a NATS node restarted without its JetStream storage). Ingest
//! answers `503` while they are missing, never `200` for a callback it did
//! not store, and the relay sets them up again by itself: no restart.

use crate::common;

use async_nats::jetstream;
use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

/// One NATS node, a relay with subscriber `s`, one event delivered.
async fn relay(nats: &NatsCluster, dir: &std::path::Path, sub: &Sub) -> hookrelay::Handle {
    let cfg = TestConfig::new(dir)
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    accepted(h.ingest_addrs[0], &runway("before")).await;
    sub.wait_for(secs(10), "the first delivery", |r| r.len() == 1).await;
    h
}

/// Posts `name` until it is accepted (only `503` meanwhile), within `limit`.
async fn accepted_within(addr: std::net::SocketAddr, name: &str, limit: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let (s, v) = callback(addr, &runway(name)).await;
        if s == StatusCode::OK {
            return v["id"].as_str().unwrap().to_string();
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert!(std::time::Instant::now() < deadline, "still refused: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_route_stream_is_set_up_again_without_a_restart() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = relay(&nats, dir.path(), &sub).await;
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    js.delete_stream("HR_EV_t").await.unwrap();
    accepted_within(h.ingest_addrs[0], "after", secs(10)).await;
    sub.wait_for(secs(10), "the delivery after", |r| r.len() == 2).await;
    assert_eq!(admin(h.admin_addr, "GET", "/readyz").await.0, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_results_bucket_is_set_up_again_without_a_restart() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = relay(&nats, dir.path(), &sub).await;
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    js.delete_key_value("hr_results").await.unwrap();
    let id = accepted_within(h.ingest_addrs[0], "after", secs(10)).await;
    sub.wait_for(secs(10), "the delivery after", |r| r.len() == 2).await;
    until_delivered(h.admin_addr, &id, "s").await;
    h.shutdown().await;
}

/// Another relay (here: a client publishing as one) stores an event in the
/// stream this relay has just created again, before this relay created the
/// consumers: they start at the stream's first message, so it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_before_the_consumers_were_created_again_is_delivered() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = relay(&nats, dir.path(), &sub).await;
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    js.delete_stream("HR_EV_t").await.unwrap();
    // The other relay's append: tried until the stream exists again.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Hr-Subs", "s");
    headers.insert("Hr-Src", "-");
    headers.insert("Hr-Time", "1700000000000");
    headers.insert("Nats-Msg-Id", "other-relays-nonce");
    let deadline = std::time::Instant::now() + secs(10);
    loop {
        let body = bytes::Bytes::from(runway("from-the-other-relay"));
        let subject = format!("hr.ev.t.{}", "ab".repeat(16));
        if let Ok(ack) = js.publish_with_headers(subject, headers.clone(), body).await {
            if ack.await.is_ok() {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the stream was not set up again");
    }
    sub.wait_for(secs(10), "the other relay's event", |r| {
        r.iter()
            .any(|x| String::from_utf8_lossy(&x.body).contains("from-the-other-relay"))
    })
    .await;
    h.shutdown().await;
}

/// A stream set up again starts its sequences past the old events' results:
/// the new event's retry is sent, not taken for the old event's `delivered`
/// (its sequence's result) and only acknowledged — a `200` never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_in_a_stream_set_up_again_is_not_taken_for_an_old_events_result() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (sub, healthy) = Sub::broken(Behaviour::Status(500)).await;
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    accepted(h.ingest_addrs[0], &runway("before")).await;
    sub.wait_for(secs(10), "first", |r| r.len() == 1).await;
    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    js.delete_stream("HR_EV_t").await.unwrap();
    let deadline = std::time::Instant::now() + secs(10);
    loop {
        let (s, _) = callback(h.ingest_addrs[0], &runway("after")).await;
        if s == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(ms(200)).await;
    }
    // Its first attempt refused (and maybe a retry too, on a slow machine)...
    let refused = sub
        .wait_for(secs(10), "refused first attempt", |r| r.len() >= 2)
        .await
        .len();
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    // ...it is tried again, not left failed.
    sub.wait_for(secs(10), "the retry", |r| r.len() > refused).await;
    h.shutdown().await;
}

/// A first attempt in flight when the stream is lost has no result yet, so
/// the stream set up again started at its sequence. The attempt's result
/// (`200`), written when the subscriber answers, was taken for the new event
/// that got that sequence: its view showed the lost event's attempt, and
/// when its own first attempt failed it was never retried (its result said
/// "delivered"). Streams now start at their creation time's sequence
/// (`lost.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_attempt_in_flight_when_the_stream_is_lost_does_not_settle_a_new_event() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::start(std::sync::Arc::new(|n, _| match n {
        0 => Behaviour::Slow(secs(3)),
        1 => Behaviour::Status(500),
        _ => Behaviour::Status(200),
    }))
    .await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()).timeout(secs(10)).retry([secs(1)]))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    accepted(h.ingest_addrs[0], &runway("in-flight")).await;
    sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    js.delete_stream("HR_EV_t").await.unwrap();
    // The stream is set up again (within a second), then the attempt answered
    // 200 writes the lost event's result.
    let results = js.get_key_value("hr_results").await.unwrap();
    let deadline = std::time::Instant::now() + secs(10);
    loop {
        use futures_util::TryStreamExt;
        let keys: Vec<String> = results.keys().await.unwrap().try_collect().await.unwrap();
        if !keys.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the lost event's result");
        tokio::time::sleep(ms(100)).await;
    }
    let id = accepted_within(h.ingest_addrs[0], "after-the-loss", secs(10)).await;
    sub.wait_for(secs(15), "the new event sent, then retried", |r| {
        r.iter()
            .filter(|x| String::from_utf8_lossy(&x.body).contains("after-the-loss"))
            .count()
            == 2
    })
    .await;
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let attempts = ev["subscribers"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "only the new event's own attempts: {ev}");
    assert_eq!(attempts[0]["status"], 500, "{ev}");
    h.shutdown().await;
}
