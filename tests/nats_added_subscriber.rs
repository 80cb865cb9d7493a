//! A subscriber a reload adds in cluster mode gets every event answered
//! `200` with it in its fan-out, also when its consumer cannot be created at
//! that moment (any JetStream hiccup: a request timing out, no leader; here
//! a consumer of the same name that cannot be updated stands in for it):
//! its consumer, created later at the tail of the log, must not skip events
//! already fanned out to it. So the fan-out to it starts once its consumer
//! exists, and every event that names it reaches it. From review 29,
//! finding 1.

use crate::common;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use common::nats::NatsCluster;
use common::*;

/// The state of `sub`'s delivery in an event's view, if the event is fanned
/// out to it.
fn state_of(view: &serde_json::Value, sub: &str) -> Option<String> {
    view["subscribers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == sub)
        .map(|s| s["state"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_subscriber_whose_consumer_came_late_gets_every_event_fanned_out_to_it() {
    let nats = NatsCluster::start(1).await;
    let (s1, s2) = (Sub::ok().await, Sub::ok().await);
    let dir = tempfile::tempdir().unwrap();
    let urls = nats.urls();
    let base = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s1", s1.url()))
        .nats(urls.clone(), 1);
    let h = start(&base).await;
    accepted(h.ingest_addrs[0], &runway("before")).await;
    s1.wait_for(secs(10), "s1's first event", |r| r.len() == 1).await;

    // The fault: creating s2's consumer fails for now.
    let stream = block_consumer(&urls[0], "s2").await;

    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s1", s1.url()))
        .subscriber(Subscriber::new("s2", s2.url()))
        .nats(urls.clone(), 1)
        .write();
    let reloaded = h.reload().await;
    assert!(reloaded.is_ok(), "the reload was refused: {reloaded:?}");
    // Accepted while s2 has no consumer.
    let mut ids = vec![accepted(h.ingest_addrs[0], &runway("meanwhile")).await];

    // The hiccup is over: the relay's set-up, tried again, creates s2's consumer.
    stream.delete_consumer("sub_s2").await.unwrap();
    let deadline = std::time::Instant::now() + secs(20);
    loop {
        if let Ok(info) = stream.consumer_info("sub_s2").await {
            if info.config.deliver_policy == DeliverPolicy::All {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "s2's consumer was never created");
        tokio::time::sleep(ms(200)).await;
    }
    // From now on (once the set-up finished) events are fanned out to s2.
    let deadline = std::time::Instant::now() + secs(20);
    loop {
        let id = accepted(h.ingest_addrs[0], &runway(&format!("after {}", ids.len()))).await;
        let (_, view) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
        ids.push(id);
        if state_of(&view, "s2").is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event is fanned out to s2: {view}"
        );
        tokio::time::sleep(ms(200)).await;
    }

    // Every event answered 200 with s2 in its fan-out reaches s2.
    let mut for_s2 = 0;
    for id in &ids {
        let path = format!("/api/events/{id}");
        let first = admin_until(h.admin_addr, &path, secs(1), |_| true).await;
        if state_of(&first, "s2").is_none() {
            continue;
        }
        for_s2 += 1;
        let view = admin_until(h.admin_addr, &path, secs(15), |v| {
            state_of(v, "s2").as_deref() == Some("delivered")
        })
        .await;
        assert_eq!(
            state_of(&view, "s2").as_deref(),
            Some("delivered"),
            "an event answered 200 with s2 in its fan-out was never delivered to s2: {view}"
        );
    }
    assert_eq!(s2.count(), for_s2, "s2 got events not fanned out to it, or twice");
    h.shutdown().await;
}

/// A reload adds `s2` and `s3`; `s3`'s consumer cannot be created (a
/// consumer of the same name that cannot be updated, as above), `s2`'s is
/// created. The fan-out to `s2` starts once its consumer exists: `s3`'s
/// fault does not cut it off (the filter asks whether this subscriber's
/// consumer exists, not whether the whole set-up finished). From review 31,
/// finding 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_subscriber_whose_consumer_exists_is_fanned_out_to_despite_another_ones_fault() {
    let nats = NatsCluster::start(1).await;
    let (s1, s2, s3) = (Sub::ok().await, Sub::ok().await, Sub::ok().await);
    let dir = tempfile::tempdir().unwrap();
    let urls = nats.urls();
    let base = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s1", s1.url()))
        .nats(urls.clone(), 1);
    let h = start(&base).await;
    accepted(h.ingest_addrs[0], &runway("before")).await;
    s1.wait_for(secs(10), "s1's first event", |r| r.len() == 1).await;

    // The fault, for s3 only: its consumer cannot be created.
    let stream = block_consumer(&urls[0], "s3").await;

    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s1", s1.url()))
        .subscriber(Subscriber::new("s2", s2.url()))
        .subscriber(Subscriber::new("s3", s3.url()))
        .nats(urls.clone(), 1)
        .write();
    let reloaded = h.reload().await;
    assert!(reloaded.is_ok(), "the reload was refused: {reloaded:?}");

    // s2's consumer is there (created by the reload's set-up).
    let deadline = std::time::Instant::now() + secs(20);
    loop {
        if let Ok(info) = stream.consumer_info("sub_s2").await {
            if info.config.deliver_policy == DeliverPolicy::All {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "s2's consumer was never created");
        tokio::time::sleep(ms(200)).await;
    }
    // Events stored from now on, for 8 s (the background set-up retries
    // every 5 s at most): none names s2.
    let until = std::time::Instant::now() + secs(8);
    let mut views = Vec::new();
    while std::time::Instant::now() < until {
        let id = accepted(h.ingest_addrs[0], &runway(&format!("after {}", views.len()))).await;
        let (_, view) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
        if state_of(&view, "s2").is_some() {
            h.shutdown().await;
            return;
        }
        views.push(view);
        tokio::time::sleep(ms(500)).await;
    }
    let last = views.last().cloned().unwrap_or_default();
    h.shutdown().await;
    panic!(
        "{} events stored after s2's consumer was created, none fanned out to s2 (s2 got {}): {last}",
        views.len(),
        s2.count()
    );
}

/// Make creating subscriber `name`'s consumer on route `t` fail: a consumer
/// of that name with other settings is there already. Returns the route's
/// stream (to lift the fault and watch the consumers).
async fn block_consumer(url: &str, name: &str) -> async_nats::jetstream::stream::Stream {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let stream = js.get_stream("HR_EV_t").await.unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some(format!("sub_{name}")),
            ack_policy: AckPolicy::Explicit,
            ack_wait: secs(5),
            // Not where a relay's consumer starts: it cannot be updated to one.
            deliver_policy: DeliverPolicy::Last,
            filter_subject: format!("hr.rp.t.{name}"),
            ..Default::default()
        })
        .await
        .unwrap();
    stream
}

/// A reload that replaces ALL of a route's subscribers (`s1` → `s2`) while
/// `s2`'s consumer cannot be created yet: a callback then has no subscriber
/// with a consumer, and stored now it would be for nobody (`s2`'s consumer,
/// created later at the log's tail, would never see it). It is refused for
/// a retry (`503`), and the retry once the consumer exists is stored and
/// reaches `s2`. From review 41, finding 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_whose_only_subscriber_has_no_consumer_yet_is_refused_for_a_retry_not_stored_for_nobody() {
    let nats = NatsCluster::start(1).await;
    let (s1, s2) = (Sub::ok().await, Sub::ok().await);
    let dir = tempfile::tempdir().unwrap();
    let urls = nats.urls();
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s1", s1.url()))
            .nats(urls.clone(), 1),
    )
    .await;
    accepted(h.ingest_addrs[0], &runway("before")).await;
    s1.wait_for(secs(10), "s1's first event", |r| r.len() == 1).await;

    let stream = block_consumer(&urls[0], "s2").await;
    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s2", s2.url()))
        .nats(urls.clone(), 1)
        .write();
    let reloaded = h.reload().await;
    assert!(reloaded.is_ok(), "the reload was refused: {reloaded:?}");
    let (status, v) = callback(h.ingest_addrs[0], &runway("meanwhile")).await;
    assert_eq!(
        status,
        http::StatusCode::SERVICE_UNAVAILABLE,
        "a callback whose only subscriber has no consumer was not refused: {v}"
    );
    // A retry of a callback already stored is found a duplicate first (as
    // on sled), not refused. From review 41, finding 5.
    let (status, v) = callback(h.ingest_addrs[0], &runway("before")).await;
    assert_eq!(
        (status, &v["duplicate"]),
        (http::StatusCode::OK, &serde_json::json!(true)),
        "{v}"
    );

    // The hiccup is over: the set-up, tried again, creates s2's consumer,
    // and the provider's retry is stored and reaches s2.
    stream.delete_consumer("sub_s2").await.unwrap();
    let deadline = std::time::Instant::now() + secs(20);
    loop {
        let (status, v) = callback(h.ingest_addrs[0], &runway("meanwhile")).await;
        if status == http::StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retry is still refused: {status} {v}"
        );
        tokio::time::sleep(ms(200)).await;
    }
    s2.wait_for(secs(20), "the retried callback", |r| {
        r.iter().any(|r| String::from_utf8_lossy(&r.body).contains("meanwhile"))
    })
    .await;
    h.shutdown().await;
}
