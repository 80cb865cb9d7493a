//! Review 29 (cluster mode on NATS JetStream): failing tests that prove the
//! findings in /work/notes/review29.md. Faults are injected through the
//! JetStream API (deterministic), not by timing kills.

use crate::common;

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use common::nats::NatsCluster;
use common::*;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The two writes `replay_one` makes for delivery (t, `seq`, a) at a relay
/// whose clock reads `ahead_ms` ahead: the result marked due at its now
/// (over the revision read), then the replay message.
async fn replay_by_hand(js: &async_nats::jetstream::Context, seq: u64, ahead_ms: u64) {
    let kv = js.get_key_value("hr_results").await.unwrap();
    let key = format!("t.{seq}.a");
    let entry = kv.entry(key.as_str()).await.unwrap().expect("a result row");
    let mut row: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    let its_now = now_ms() + ahead_ms;
    row["state"] = serde_json::json!({ "retrying": { "due_ms": its_now } });
    row["step"] = 0.into();
    row["at_ms"] = its_now.into();
    row["replays"] = (row["replays"].as_u64().unwrap_or(0) + 1).into();
    let mark = kv
        .update(key.as_str(), serde_json::to_vec(&row).unwrap().into(), entry.revision)
        .await
        .unwrap();
    let msg = async_nats::jetstream::message::PublishMessage::build()
        .payload(seq.to_string().into())
        .message_id(format!("rp.t.{seq}.a.{mark}"));
    js.send_publish("hr.rp.t.a", msg).await.unwrap().await.unwrap();
}

/// Finding 1. A reload adds subscriber s2 to route t. Its consumer cannot be
/// created at that moment (any JetStream hiccup: a timeout, no leader; here
/// a consumer of the same name that cannot be updated stands in for it), so
/// `register` logs the failure, keeps the new topology and lets the reload
/// go on: the relay's ingest fans new events out to s2 (they are answered
/// 200 with s2 in their headers) while no consumer for s2 exists. When the
/// background set-up creates the consumer, it is created with
/// `DeliverPolicy::New`: every event accepted meanwhile is never delivered
/// to s2, and its view says `pending` for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r29_events_accepted_before_an_added_subscribers_consumer_exists_reach_it() {
    let nats = NatsCluster::start(1).await;
    let (s1, s2) = (Sub::ok().await, Sub::ok().await);
    let dir = tempfile::tempdir().unwrap();
    let urls = nats.urls();
    let base = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s1", s1.url()))
        .nats(urls.clone(), 1);
    let h = start(&base).await;
    let first = accepted(h.ingest_addrs[0], &runway("before")).await;
    s1.wait_for(secs(10), "s1's first event", |r| r.len() == 1).await;

    // The fault: creating s2's consumer fails for now.
    let js = async_nats::jetstream::new(async_nats::connect(urls[0].as_str()).await.unwrap());
    let stream = js.get_stream("HR_EV_t").await.unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("sub_s2".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: secs(5),
            deliver_policy: DeliverPolicy::All,
            filter_subject: "hr.rp.t.s2".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s1", s1.url()))
        .subscriber(Subscriber::new("s2", s2.url()))
        .nats(urls.clone(), 1)
        .write();
    let reloaded = h.reload().await;
    assert!(reloaded.is_ok(), "the reload was refused: {reloaded:?}");
    // Accepted with s2 in its fan-out while s2 has no consumer.
    let id = accepted(h.ingest_addrs[0], &runway("meanwhile")).await;
    assert_ne!(id, first);
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(5), |v| {
        v["subscribers"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(ev["subscribers"].as_array().map(Vec::len), Some(2), "not fanned out to s2: {ev}");

    // The hiccup is over: the relay's set-up, tried again, creates s2's consumer.
    stream.delete_consumer("sub_s2").await.unwrap();
    let deadline = std::time::Instant::now() + secs(20);
    loop {
        if let Ok(info) = stream.consumer_info("sub_s2").await {
            if info.config.deliver_policy == DeliverPolicy::New {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "s2's consumer was never created");
        tokio::time::sleep(ms(200)).await;
    }
    tokio::time::sleep(secs(8)).await;
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(1), |_| false).await;
    assert_eq!(
        s2.count(),
        1,
        "an event answered 200 with s2 in its fan-out was never delivered to s2; its view: {ev}"
    );
    h.shutdown().await;
}

/// Finding 2. A replay message whose event cannot be read for a moment
/// (`direct_get` fails: the stream's replicas do not answer direct gets for
/// a moment; here `allow_direct` is switched off for 3 s) is terminated as
/// if its event had expired. The replay was queued (the call answered
/// `queued`), the delivery's row keeps the replay's mark (`retrying`,
/// shown `pending`) and nothing sends it ever again (only a replay asked
/// again would notice). The replay's writes are made by hand: the admin
/// API's replay reads the event itself first (so it must be queued just
/// before the hiccup, by this relay or another).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r29_a_replay_whose_event_read_failed_once_is_still_sent() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Sub::ok().await;
    let urls = nats.urls();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("a", a.url()))
        .nats(urls.clone(), 1);
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("replayed")).await;
    let path = format!("/api/events/{id}");
    admin_until(h.admin_addr, &path, secs(10), |v| v["subscribers"][0]["state"] == "delivered").await;
    assert_eq!(a.count(), 1);

    let js = async_nats::jetstream::new(async_nats::connect(urls[0].as_str()).await.unwrap());
    let mut stream = js.get_stream("HR_EV_t").await.unwrap();
    let original = stream.info().await.unwrap().config.clone();
    let seq = stream.info().await.unwrap().state.last_sequence;
    let mut no_direct = original.clone();
    no_direct.allow_direct = false;
    js.update_stream(&no_direct).await.unwrap();
    // The replay's two writes (as `replay_one` makes them, at any relay,
    // just before the hiccup): the API's own replay reads the event first,
    // so it is made by hand here.
    replay_by_hand(&js, seq, 0).await;
    tokio::time::sleep(secs(3)).await;
    js.update_stream(&original).await.unwrap();

    let ev = admin_until(h.admin_addr, &path, secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered" && v["subscribers"][0]["attempts_total"] == 2
    })
    .await;
    // The replay's message is settled (terminated), not waiting anywhere.
    let info = stream.consumer_info("sub_a").await.unwrap();
    let gone = info.num_pending == 0 && info.num_ack_pending == 0;
    assert_eq!(
        a.count(),
        2,
        "the queued replay was never sent (its message settled unsent: {gone}); the delivery now: {ev}"
    );
    h.shutdown().await;
}

/// Finding 3. Relays compare due times written by other relays with their
/// own clocks. A replay queued at a relay whose clock is ahead (here by
/// 60 s: the test makes that relay's two writes, the mark with
/// `due = at = its now` and the replay message) is handed back by a relay
/// with the right time until its clock reaches the mark (`source.rs`
/// `early`): the replay waits out the skew. The same holds for every retry
/// such a relay schedules, once its NAK is lost or another relay has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r29_a_replay_queued_by_a_relay_whose_clock_is_ahead_is_sent_at_once() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Sub::ok().await;
    let urls = nats.urls();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("a", a.url()))
        .nats(urls.clone(), 1);
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("skewed")).await;
    let path = format!("/api/events/{id}");
    admin_until(h.admin_addr, &path, secs(10), |v| v["subscribers"][0]["state"] == "delivered").await;
    assert_eq!(a.count(), 1);

    let js = async_nats::jetstream::new(async_nats::connect(urls[0].as_str()).await.unwrap());
    let mut stream = js.get_stream("HR_EV_t").await.unwrap();
    let seq = stream.info().await.unwrap().state.last_sequence;
    // What `replay_one` writes at a relay whose clock reads 60 s ahead.
    replay_by_hand(&js, seq, 60_000).await;
    let queued = std::time::Instant::now();

    let deadline = queued + secs(15);
    while a.count() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(ms(100)).await;
    }
    let ev = admin_until(h.admin_addr, &path, secs(1), |_| false).await;
    assert_eq!(
        a.count(),
        2,
        "a replay queued by a relay 60 s ahead was not sent within {:?}: {ev}",
        Duration::from_secs(15)
    );
    h.shutdown().await;
}
