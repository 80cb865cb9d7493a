//! `hookrelay forward` stopped (SIGTERM) while the local service's answer is
//! still coming: the status decides, so a `2xx` whose body is slow is
//! acknowledged at once, not cut off at the stop and released (which would
//! send the message to the service again: delivered twice by our fault).

use crate::common;

use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "stop-pull-token";

/// The local service answers `200` at once, then dribbles its body (a byte
/// every 50 ms of 2,000) over the forwarder's 30 s `--timeout`; the forwarder
/// is stopped meanwhile. The message is delivered (not released, not
/// offered again), and the stop does not wait for the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_whose_body_is_slow_is_acknowledged_before_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        &TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60)).retry([secs(3600)])),
    )
    .await;
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
