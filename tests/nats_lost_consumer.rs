//! Cluster mode when a subscriber's consumer is gone while its stream stays
//! (deleted by hand): its lanes do not wait for a restart, and a consumer
//! created after an event naming its subscriber was stored (by another
//! relay) still hands that event out — and never one it settled before.

use crate::common;

use async_nats::jetstream;
use common::nats::NatsCluster;
use common::*;

/// Publish an event for subscriber `s` on route `t` as another relay does.
async fn publish_as_another_relay(js: &jetstream::Context, name: &str) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Hr-Subs", "s");
    headers.insert("Hr-Src", "-");
    headers.insert("Hr-Time", "1700000000000");
    headers.insert("Nats-Msg-Id", format!("nonce-{name}").as_str());
    let subject = format!("hr.ev.t.{}", "cd".repeat(16));
    let body = bytes::Bytes::from(runway(name));
    js.publish_with_headers(subject, headers, body)
        .await
        .unwrap()
        .await
        .unwrap();
}

fn bodies(sub: &Sub) -> Vec<String> {
    sub.all()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_consumer_is_created_again_without_a_restart_and_sends_nothing_twice() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    for name in ["one", "two"] {
        accepted(h.ingest_addrs[0], &runway(name)).await;
    }
    sub.wait_for(secs(10), "the first deliveries", |r| r.len() == 2).await;
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    js.get_stream("HR_EV_t")
        .await
        .unwrap()
        .delete_consumer("sub_s")
        .await
        .unwrap();
    accepted(h.ingest_addrs[0], &runway("three")).await;
    sub.wait_for(secs(10), "the delivery after the consumer was lost", |r| r.len() >= 3)
        .await;
    // What the lost consumer had settled comes again from the new one: only settled.
    tokio::time::sleep(secs(2)).await;
    let seen = bodies(&sub);
    assert_eq!(seen.len(), 3, "a delivery was sent twice: {seen:?}");
    let info = js
        .get_stream("HR_EV_t")
        .await
        .unwrap()
        .consumer_info("sub_s")
        .await
        .unwrap();
    assert_eq!(info.num_pending + info.num_ack_pending as u64, 0, "{info:?}");
    h.shutdown().await;
}

/// A relay that finds the stream but not its subscriber's consumer (lost
/// while no relay ran, here) starts it at the first message: the event
/// another relay stored meanwhile is delivered, the one settled before is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_created_on_an_existing_stream_does_not_skip_what_another_relay_stored() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::slow_at(0, ms(300)).await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let before = accepted(h.ingest_addrs[0], &runway("before")).await;
    sub.wait_for(secs(10), "the first delivery", |r| r.len() == 1).await;
    // Stopped once it is recorded: a stop abandons attempts in flight.
    until_delivered(h.admin_addr, &before, "s").await;
    h.shutdown().await;
    let js = jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    js.get_stream("HR_EV_t")
        .await
        .unwrap()
        .delete_consumer("sub_s")
        .await
        .unwrap();
    publish_as_another_relay(&js, "from-the-other-relay").await;
    let h = start(&cfg).await;
    sub.wait_for(secs(10), "the other relay's event", |r| {
        r.iter()
            .any(|x| String::from_utf8_lossy(&x.body).contains("from-the-other-relay"))
    })
    .await;
    tokio::time::sleep(secs(2)).await;
    let seen = bodies(&sub);
    assert_eq!(seen.len(), 2, "{seen:?}");
    h.shutdown().await;
}
