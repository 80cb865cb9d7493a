//! `hookrelay forward` stopped (SIGTERM) while the local service's answer is
//! still coming: the status decides, so a `2xx` whose body is slow is
//! acknowledged at once, not cut off at the stop and released (which would
//! send the message to the service again: delivered twice by our fault);
//! and the stop's acknowledgements get through a relay away for a moment;
//! a hang-up (its terminal or ssh session closed) stops it the same way.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "stop-pull-token";

/// A local service answering `200` after `delay`; whether a message arrived.
async fn answering_200_after(delay: Duration) -> (Local, Arc<AtomicBool>) {
    let arrived = Arc::new(AtomicBool::new(false));
    let a = arrived.clone();
    let local = Local::start(Arc::new(move |_, _| {
        a.store(true, Ordering::SeqCst);
        (200, delay)
    }))
    .await;
    (local, arrived)
}

/// A relay with pull subscriber `laptop` (a 60 s lease, an hour's retry).
async fn relay(dir: &std::path::Path) -> hookrelay::Handle {
    start(&TestConfig::new(dir).subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60)).retry([secs(3600)]))).await
}

/// The local service answers `200` at once, then dribbles its body (a byte
/// every 50 ms of 2,000) over the forwarder's 30 s `--timeout`; the forwarder
/// is stopped meanwhile. The message is delivered (not released, not
/// offered again), and the stop does not wait for the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_whose_body_is_slow_is_acknowledged_before_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let h = relay(dir.path()).await;
    let local = RawSub::start(|_| RawAnswer::Drip {
        head: b"HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n",
        bytes: 2000,
        every: Duration::from_millis(50),
    })
    .await;
    let mut fwd = Forwarder::start(
        dir.path(),
        &pull_url(h.ingest_addrs[0], "laptop"),
        &local.url(),
        TOKEN,
        &["--timeout", "30s"],
    );
    let id = accepted(h.ingest_addrs[0], &runway("slowbody")).await;
    let deadline = Instant::now() + secs(15);
    while local.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "never reached the local service: {}",
            fwd.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The status line is out; the body is coming.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    assert_eq!(fwd.term(secs(20)), Some(0), "{}", fwd.log_text());
    let took = t0.elapsed();
    let ev = event_view(h.admin_addr, &id).await;
    assert_eq!(
        ev["subscribers"][0]["state"],
        "delivered",
        "the service answered 200 before the stop, yet the message is to be sent again: {ev}\n{}",
        fwd.log_text()
    );
    assert!(took < secs(5), "the stop waited {took:?} for the body");
    assert_eq!(local.count(), 1);
}

/// The relay is out of reach for a moment (restarting, a network blip) when
/// the forwarder is stopped right after its local service answered `200`:
/// the stop keeps trying to acknowledge for what the deliveries left of
/// their grace (up to 15 s in all, inside the unit's `TimeoutStopSec=20s`),
/// not only 5 s, so the message is not offered again (a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_acknowledges_through_a_short_relay_outage() {
    let dir = tempfile::tempdir().unwrap();
    let h = relay(dir.path()).await;
    let (proxy, on) = crate::forward_acks::switchable_proxy(h.ingest_addrs[0]).await;
    let (local, arrived) = answering_200_after(Duration::from_millis(500)).await;
    let mut fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), TOKEN, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("blip")).await;
    fwd.until_local_has_it(&arrived, secs(15)).await;
    // The relay goes out of reach while the service works; it answers 200.
    on.send_replace(false);
    local
        .wait_for(secs(10), "the local 200", |g| g.iter().any(|g| g.id == id))
        .await;
    // Stopped now; the relay is back 6 s later.
    let back = tokio::spawn(async move {
        tokio::time::sleep(secs(6)).await;
        on.send_replace(true);
        on
    });
    let code = tokio::task::spawn_blocking(move || {
        let code = fwd.term(secs(25));
        (code, fwd.log_text())
    })
    .await
    .unwrap();
    let _on = back.await.unwrap();
    assert_eq!(code.0, Some(0), "{}", code.1);
    let ev = event_view(h.admin_addr, &id).await;
    assert_eq!(
        ev["subscribers"][0]["state"], "delivered",
        "answered 200 before the stop, the relay back within the stop's grace, yet not acknowledged: {ev}\n{}",
        code.1
    );
}

/// A second SIGTERM (or Ctrl-C) while the stop waits for a slow local
/// delivery stops at once (it was ignored: the stop took its whole grace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = relay(dir.path()).await;
    let (local, arrived) = answering_200_after(Duration::from_secs(20)).await;
    let mut fwd = Forwarder::start(
        dir.path(),
        &pull_url(h.ingest_addrs[0], "laptop"),
        &local.url(),
        TOKEN,
        &["--timeout", "30s"],
    );
    accepted(h.ingest_addrs[0], &runway("second-signal")).await;
    fwd.until_local_has_it(&arrived, secs(15)).await;
    fwd.signal_term();
    let log = || fwd.log_text();
    let deadline = Instant::now() + secs(5);
    while !log().contains("a second signal stops at once") {
        assert!(Instant::now() < deadline, "{}", log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One within a second of the first is taken for the same one, sent twice.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t0 = Instant::now();
    let code = tokio::task::spawn_blocking(move || (fwd.term(secs(5)), fwd.log_text()))
        .await
        .unwrap();
    assert_eq!(code.0, Some(143), "128 + SIGTERM: {}", code.1);
    assert!(t0.elapsed() < secs(3), "{:?}", t0.elapsed());
    assert!(code.1.contains("stopping at once"), "{}", code.1);
}

/// SIGHUP (the terminal or ssh session `hookrelay forward` ran in closed)
/// stops it like SIGTERM: the delivery in progress finishes and is
/// acknowledged, exit `0`. It ended at once (exit 129, the default), and
/// the message stayed leased until its lease ran out, then went to the
/// local service again. From review 58, forward finding 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_stops_it_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let h = relay(dir.path()).await;
    let (local, arrived) = answering_200_after(Duration::from_secs(1)).await;
    let mut fwd = Forwarder::start(
        dir.path(),
        &pull_url(h.ingest_addrs[0], "laptop"),
        &local.url(),
        TOKEN,
        &[],
    );
    let id = accepted(h.ingest_addrs[0], &runway("hang-up")).await;
    fwd.until_local_has_it(&arrived, secs(15)).await;
    fwd.signal("HUP");
    let code = tokio::task::spawn_blocking(move || (fwd.wait(secs(15)), fwd.log_text()))
        .await
        .unwrap();
    assert_eq!(code.0, Some(0), "{}", code.1);
    let ev = event_view(h.admin_addr, &id).await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}\n{}", code.1);
    assert_eq!(local.all().len(), 1);
}

/// Run by `nohup` (SIGHUP ignored, to survive a logout), it stays ignored:
/// a hang-up leaves it running. Handling SIGHUP replaced `nohup`'s ignore,
/// and a logout stopped it (exit `0`, which `Restart=on-failure` does not
/// restart). From the review of stop 58's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_nohup_a_hang_up_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let h = relay(dir.path()).await;
    let (local, arrived) = answering_200_after(Duration::ZERO).await;
    let mut fwd = Forwarder::start_nohup(dir.path(), &pull_url(h.ingest_addrs[0], "laptop"), &local.url(), TOKEN);
    accepted(h.ingest_addrs[0], &runway("nohup-1")).await;
    fwd.until_local_has_it(&arrived, secs(15)).await;
    fwd.signal("HUP");
    tokio::time::sleep(ms(500)).await;
    assert!(fwd.running(), "a hang-up stopped it under nohup: {}", fwd.log_text());
    // Still forwarding.
    let id = accepted(h.ingest_addrs[0], &runway("nohup-2")).await;
    local
        .wait_for(secs(15), "the second message", |g| g.iter().any(|g| g.id == id))
        .await;
    assert_eq!(fwd.term(secs(15)), Some(0), "{}", fwd.log_text());
}
