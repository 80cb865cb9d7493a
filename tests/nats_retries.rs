//! A delivery's place in the retry schedule in cluster mode: only failed
//! attempts move it. NATS's count of hand-outs is not the step: it also
//! counts every time the message went back unsent (an `after_archive`
//! delivery waiting for its media, looked at again every 2 s; a lane whose
//! circuit opened; a relay that stopped), so a delivery that waited would
//! become a dead letter after its first real failure. And a retry's due
//! time: a retry whose delay (a NAK) was lost is not sent before it.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::files::FileServer;
use common::nats::NatsCluster;
use common::*;

/// How long the video takes to finish downloading: the delivery waits for
/// it, handed back to NATS every 2 s (three times or more).
const SLOW: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_media_uses_up_no_retry_step() {
    let nats = NatsCluster::start(1).await;
    let files = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let (_, video_url) = files.slow_video("/k/slow.mp4", SLOW);
    // The first attempt fails, the next one succeeds.
    let sub = Sub::start(Arc::new(|n, _| Behaviour::Status(if n == 0 { 500 } else { 200 }))).await;
    let (dir, archive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The test schedule: two retries (100 ms, 200 ms), then a dead letter.
    let cfg = after_archive_on_nats(dir.path(), archive.path(), &sub.url(), nats.urls());
    let h = start(&cfg).await;
    let posted = Instant::now();
    let body = runway_media("task-waits", &video_url, "").to_string();
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body).await;

    let first = sub.wait_for(secs(20), "the first attempt", |r| !r.is_empty()).await;
    assert!(
        first[0].at - posted >= SLOW - ms(500),
        "the delivery waited for the video (handed back to NATS meanwhile)"
    );
    assert_eq!(first[0].header("hookrelay-attempt"), "1", "waiting spent no attempt");
    // One failed attempt: a retry (step 1 of 2), not a dead letter.
    let path = format!("/api/events/{id}");
    let ev = admin_until(h.admin_addr, &path, secs(10), |v| {
        v["subscribers"][0]["attempts_total"].as_u64() >= Some(1)
    })
    .await;
    assert_ne!(
        ev["subscribers"][0]["state"], "dead",
        "a dead letter after one failed attempt: {ev}"
    );
    let got = sub.wait_for(secs(5), "the retry", |r| r.len() == 2).await;
    assert_eq!(got[1].header("webhook-id"), got[0].header("webhook-id"));
    assert_eq!(got[1].header("hookrelay-attempt"), "2");
    let ev = admin_until(h.admin_addr, &path, secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let d = &ev["subscribers"][0];
    assert_eq!(
        (d["state"].as_str(), d["attempts_total"].as_u64()),
        (Some("delivered"), Some(2)),
        "{ev}"
    );
    let statuses: Vec<_> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![500, 200], "{ev}");
    h.shutdown().await;
}

/// A retry's delay is a NAK after its result is written: a relay that dies
/// between the two (or whose NAK NATS never takes) leaves the message to
/// come again after `takeover`, long before the retry is due. The relay
/// that gets it hands it back until then, and sends it once it is due,
/// with the next attempt number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_nak_was_lost_is_not_sent_before_it_is_due() {
    let nats = NatsCluster::start(1).await;
    // The first attempt is never answered (its relay dies), the retry gets 200.
    let sub = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::Hang,
        _ => Behaviour::Status(200),
    }))
    .await;
    let s = Subscriber::new("s", sub.url()).timeout(secs(60));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let mut first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("nak-lost")).await;
    sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;

    // What the first attempt's result write leaves (a 503, its retry due
    // in 15 s); the relay dies before its NAK. Its due time counted from
    // before the write (which reads `now_ms` first, then takes a few round
    // trips to NATS).
    let due = Instant::now() + DUE_IN;
    nats.put_last_result(|now_ms| {
        serde_json::json!({
            "state": { "retrying": { "due_ms": now_ms + DUE_IN.as_millis() as u64 } },
            "attempts": 1, "step": 1, "at_ms": now_ms, "history": [], "last_error": "HTTP 503",
        })
    })
    .await;
    first.kill9();

    // NATS hands the message out again after `takeover` (5 s), 10 s early.
    let second = start(&cfg(d2.path())).await;
    let got = sub.wait_for(secs(30), "the retry", |r| r.len() == 2).await;
    assert!(
        got[1].at + ms(100) >= due,
        "the retry was sent {:?} before it was due",
        due - got[1].at
    );
    assert_eq!(got[1].header("webhook-id"), id);
    assert_eq!(got[1].header("hookrelay-attempt"), "2");
    let ev = admin_until(second.admin_addr, &format!("/api/events/{id}"), secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(ev["subscribers"][0]["attempts_total"], 2, "{ev}");
    tokio::time::sleep(secs(2)).await;
    assert_eq!(sub.count(), 2, "sent once more");
    second.shutdown().await;
}

/// When the retry whose NAK was lost is due: well after `takeover`.
const DUE_IN: Duration = Duration::from_secs(15);
