//! A replay queued in cluster mode, made by hand: the two writes
//! `replay_one` makes (used as `common::nats_replay::…`), for tests that
//! need them at a moment, or from a clock, the admin API cannot give.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::nats::NatsCluster;
use super::*;

/// A relay on `nats` with one subscriber `a`, one callback (`body`'s Runway
/// form) accepted and delivered to it: the relay, the subscriber, the
/// event's admin path, a JetStream context and route `t`'s stream.
pub async fn one_delivered(
    nats: &NatsCluster,
    dir: &Path,
    body: &str,
) -> (
    hookrelay::Handle,
    Sub,
    String,
    async_nats::jetstream::Context,
    async_nats::jetstream::stream::Stream,
) {
    let a = Sub::ok().await;
    let urls = nats.urls();
    let cfg = TestConfig::new(dir)
        .subscriber(Subscriber::new("a", a.url()))
        .nats(urls.clone(), 1);
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway(body)).await;
    let path = format!("/api/events/{id}");
    until_delivered(h.admin_addr, &id, "a").await;
    assert_eq!(a.count(), 1);
    let js = async_nats::jetstream::new(async_nats::connect(urls[0].as_str()).await.unwrap());
    let stream = js.get_stream("HR_EV_t").await.unwrap();
    (h, a, path, js, stream)
}

/// This host's clock, in ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The two writes `replay_one` makes for delivery (t, `seq`, a) at a relay
/// whose clock reads `ahead_ms` ahead: the result marked due at its now
/// (over the revision read), then the replay message.
pub async fn replay_by_hand(js: &async_nats::jetstream::Context, seq: u64, ahead_ms: u64) {
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
