//! Relays' clocks differ (by little with NTP, by anything without): a due
//! time one relay wrote is read by another. A replay is never early (it is
//! due when it was queued, whatever the queuing relay's clock said), and a
//! retry is handed back at most for its own scheduled delay, never for the
//! clock difference (unit tests of `early` in src/store/nats/source.rs).
//! From review 29, finding 3.

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
    let a = Sub::ok().await;
    let urls = nats.urls();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("a", a.url()))
        .nats(urls.clone(), 1);
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("skewed")).await;
    let path = format!("/api/events/{id}");
    admin_until(h.admin_addr, &path, secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(a.count(), 1);

    let js = async_nats::jetstream::new(async_nats::connect(urls[0].as_str()).await.unwrap());
    let mut stream = js.get_stream("HR_EV_t").await.unwrap();
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
