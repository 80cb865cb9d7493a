//! Relays' clocks differ (by little with NTP, by anything without): a due
//! time one relay wrote is read by another. A replay is never early (it is
//! due when it was queued, whatever the queuing relay's clock said), and a
//! retry is handed back at most for its own scheduled delay, never for the
//! clock difference (unit tests in src/store/nats/early.rs), and at most
//! once by that much: its due time is then rewritten by the clock of the
//! relay that handed it back. From review 29, finding 3, and review 31,
//! finding 1.

use crate::common;

use std::time::Duration;

use common::nats::NatsCluster;
use common::*;

/// A replay queued at a relay whose clock is ahead (here by 60 s: the test
/// makes that relay's two writes, the mark with `due = at = its now` and
/// the replay message) is sent at once by a relay with the right time, not
/// handed back until its clock reaches the mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_queued_by_a_relay_whose_clock_is_ahead_is_sent_at_once() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, a, path, js, mut stream) = common::nats_replay::one_delivered(&nats, dir.path(), "skewed").await;

    let seq = stream.info().await.unwrap().state.last_sequence;
    // What `replay_one` writes at a relay whose clock reads 60 s ahead.
    common::nats_replay::replay_by_hand(&js, seq, 60_000).await;
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

/// A retry scheduled (3 s) by a relay whose clock is 30 s ahead (the test
/// rewrites the result as that relay would have written it: `at` and `due`
/// 30 s on) is sent after one more delay at most, not after the skew: the
/// first early hand-back rewrites its due time by this relay's clock, so it
/// is due when it comes again. From review 31, finding 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_scheduled_by_a_relay_whose_clock_is_ahead_waits_one_more_delay_at_most() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Sub::start(std::sync::Arc::new(|n, _| {
        Behaviour::Status(if n == 0 { 500 } else { 200 })
    }))
    .await;
    let urls = nats.urls();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("a", a.url()).retry([secs(3)]).circuit_threshold(100))
        .nats(urls.clone(), 1);
    let h = start(&cfg).await;
    accepted(h.ingest_addrs[0], &runway("skewed retry")).await;

    // The retry's result (written after the failed attempt), rewritten as a
    // relay 30 s ahead wrote it.
    let js = async_nats::jetstream::new(async_nats::connect(urls[0].as_str()).await.unwrap());
    let mut stream = js.get_stream("HR_EV_t").await.unwrap();
    let seq = stream.info().await.unwrap().state.last_sequence;
    let kv = js.get_key_value("hr_results").await.unwrap();
    let key = format!("t.{seq}.a");
    let deadline = std::time::Instant::now() + secs(10);
    let (entry, mut row, due) = loop {
        if let Some(entry) = kv.entry(key.as_str()).await.unwrap() {
            let row: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
            if let Some(due) = row["state"]["retrying"]["due_ms"].as_u64() {
                break (entry, row, due);
            }
        }
        assert!(std::time::Instant::now() < deadline, "no retry scheduled");
        tokio::time::sleep(ms(50)).await;
    };
    let first = a.all()[0].at;
    row["state"]["retrying"]["due_ms"] = (due + 30_000).into();
    row["at_ms"] = (row["at_ms"].as_u64().unwrap() + 30_000).into();
    kv.update(key.as_str(), serde_json::to_vec(&row).unwrap().into(), entry.revision)
        .await
        .unwrap();

    let got = a.wait_for(secs(40), "the retry", |r| r.len() == 2).await;
    let waited = got[1].at - first;
    assert!(
        waited < secs(20),
        "a retry of 3 s scheduled by a relay 30 s ahead waited {waited:?} (one more delay at most: 6 s)"
    );
    h.shutdown().await;
}
