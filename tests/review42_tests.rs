//! Review 42: `hookrelay forward` and the pull API under faults.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "laptop-pull-token";

/// A private service that answers `200` at once (status line and headers)
/// and then takes its time over the rest of its answer (a chunked body,
/// finished after `body_after`). Counts the requests it received.
async fn slow_body_service(body_after: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Read the head and the whole body (content-length).
                loop {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n2\r\nok\r\n",
                    )
                    .await;
                tokio::time::sleep(body_after).await;
                let _ = s.write_all(b"0\r\n\r\n").await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (addr, seen)
}

/// The local service answered `200`; only the rest of its answer (read only
/// so the connection can be reused) came after `--timeout`. The status
/// decides, as for a push delivery: the message is acknowledged, not handed
/// back and sent to the service a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_2xx_whose_body_is_slow_is_acknowledged_not_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(30)).retry([ms(200); 5]))
        .write();
    let relay = Bin::start(&path, &[]);
    let (local, seen) = slow_body_service(secs(4)).await;
    let _fwd = Forwarder::start(
        dir.path(),
        &pull_url(relay.addr, "laptop"),
        &format!("http://{local}/hook"),
        TOKEN,
        &["--timeout", "1s"],
    );
    let ids = send_spaced(relay.addr, "slow-body", 1, Duration::ZERO).await;
    let ev = admin_until(relay.admin, &format!("/api/events/{}", ids[0]), secs(15), |ev| {
        ev["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let d = &ev["subscribers"][0];
    assert_eq!(d["state"], "delivered", "{ev}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the local service answered 200 and got the message again: {ev}"
    );
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{ev}");
}

/// Cluster mode, one relay: NATS goes away (kill -9) for `outage` while a
/// forwarder holds a lease, then comes back. The forwarder's
/// acknowledgement after that is applied (the message is not offered
/// again), and a long-poll gets the callbacks stored after NATS is back.
async fn lease_across_outage(outage: Duration) {
    use http::StatusCode;
    let (mut nats, _dir, r, first) = one_lease_held_in_cluster("before-outage").await;
    let addr = r.ingest_addrs[0];
    nats.kill9(0);
    tokio::time::sleep(outage).await;
    nats.restart(0).await;
    // Back: the acknowledgement of the lease held across the outage is applied.
    let body = format!(r#"{{"ids":["{first}"]}}"#);
    let deadline = tokio::time::Instant::now() + secs(20);
    let (s, got) = loop {
        let (s, _, got) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &body).await;
        if s != StatusCode::SERVICE_UNAVAILABLE || tokio::time::Instant::now() > deadline {
            break (s, got);
        }
        tokio::time::sleep(ms(200)).await;
    };
    assert_eq!(s, StatusCode::OK, "{got}");
    let second = accepted_retrying(addr, &runway("after-outage")).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=20s", Some(TOKEN), Some("f1"), "").await;
    assert_eq!(s, StatusCode::OK, "{got}");
    let ids: Vec<&str> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second.as_str()], "{got}");
    // Nothing more: the acknowledged one is not offered again.
    let (_, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=8s", Some(TOKEN), Some("f2"), "").await;
    assert_eq!(got["messages"].as_array().map(Vec::len), Some(0), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_lease_and_the_long_poll_survive_a_short_nats_outage() {
    lease_across_outage(secs(2)).await;
}

/// Longer than `takeover` (5 s in the tests): NATS may hand the leased
/// message out again once it is back; this relay, the only one, still
/// holds it and must not offer it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_lease_held_across_a_nats_outage_longer_than_takeover_is_not_offered_twice() {
    lease_across_outage(secs(9)).await;
}

/// Finding 3: an acknowledgement whose record fails (cluster mode: NATS
/// killed, the result write given up after 10 s) is answered `503`, and its
/// leases are kept as they were: the same acknowledgement sent again (here
/// once while the first is still being recorded, as a forwarder whose
/// request timed out does, then after NATS is back) applies, and the
/// message is not offered again. Before the fix the lease was gone with the
/// failed record: the second acknowledgement got `409` (and the forwarder
/// drops it on `409`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_that_could_not_be_recorded_keeps_its_lease_for_the_retry() {
    use http::StatusCode;
    let (mut nats, _dir, r, first) = one_lease_held_in_cluster("acked-in-outage").await;
    let addr = r.ingest_addrs[0];
    nats.kill9(0);
    let body = format!(r#"{{"ids":["{first}"]}}"#);
    let ack = |body: String| async move {
        let started = tokio::time::Instant::now();
        let (s, _, got) = pull_call(addr, "POST", "/pull/laptop/ack", Some(TOKEN), Some("f1"), &body).await;
        (s, got, started.elapsed())
    };
    let a = tokio::spawn(ack(body.clone()));
    // The same acknowledgement again while the first one's record is being tried.
    tokio::time::sleep(secs(7)).await;
    let b = tokio::spawn(ack(body.clone()));
    let (s, got, took) = a.await.unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{got} after {took:?}");
    eprintln!("first acknowledgement: {s} after {took:?}: {got}");
    nats.restart(0).await;
    // Waited for the first one's record, then applied to the lease put back
    // (200), or its own record failed too while NATS came back (503): never
    // refused as not leased.
    let (s, got, took) = b.await.unwrap();
    eprintln!("second acknowledgement: {s} after {took:?}: {got}");
    assert_ne!(
        s,
        StatusCode::CONFLICT,
        "the lease was lost with the failed record: {got}"
    );
    let (s, got) = match s {
        StatusCode::SERVICE_UNAVAILABLE => {
            let deadline = tokio::time::Instant::now() + secs(30);
            loop {
                let (s, got, _) = ack(body.clone()).await;
                if s != StatusCode::SERVICE_UNAVAILABLE || tokio::time::Instant::now() > deadline {
                    break (s, got);
                }
                tokio::time::sleep(ms(200)).await;
            }
        }
        _ => (s, got),
    };
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["acknowledged"], 1, "{got}");
    // Acknowledged once: not offered again, also after `takeover` (5 s).
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=8s", Some(TOKEN), Some("f2"), "").await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["messages"].as_array().map(Vec::len), Some(0), "{got}");
    let (s, got, _) = ack(body).await;
    assert_eq!(s, StatusCode::CONFLICT, "acknowledged already: {got}");
}

/// The relay restarted cleanly (SIGTERM, started again on the same port)
/// while `hookrelay forward` has a long-poll open: the forwarder does not
/// stop (the stopping relay answers 503, not a refusal), and delivers what
/// arrives after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_outlives_a_clean_relay_restart_during_its_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(30)).retry([ms(200); 5]))
        .listen(format!("127.0.0.1:{port}"))
        .write();
    let relay1 = Bin::start(&path, &[]);
    let local = Local::ok().await;
    let mut fwd = Forwarder::start(
        dir.path(),
        &format!("http://127.0.0.1:{port}/pull/laptop"),
        &local.url(),
        TOKEN,
        &[],
    );
    let first = send_spaced(relay1.addr, "before-restart", 1, Duration::ZERO).await;
    local.wait_all(secs(15), &first).await;
    // Its next long-poll is open now.
    tokio::time::sleep(ms(500)).await;
    relay1.signal("TERM");
    let (_, _) = relay1.exit().await;
    let relay2 = Bin::start(&path, &[]);
    let after = send_spaced(relay2.addr, "after-restart", 3, Duration::ZERO).await;
    local.wait_all(secs(20), &after).await;
    assert!(
        fwd.child.try_wait().unwrap().is_none(),
        "the forwarder stopped: {}",
        fwd.log_text()
    );
}

/// Cluster mode, one relay on one NATS node: a pull subscriber `laptop`
/// (lease 60 s) holds the lease of the one callback stored (`key`), taken by
/// forwarder `f1`. The NATS cluster, the store's directory, the relay and
/// the callback's id.
async fn one_lease_held_in_cluster(
    key: &str,
) -> (common::nats::NatsCluster, tempfile::TempDir, hookrelay::Handle, String) {
    let nats = common::nats::NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60)))
        .nats(nats.urls(), 1);
    let r = start(&cfg).await;
    let addr = r.ingest_addrs[0];
    let first = accepted(addr, &runway(key)).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=10s", Some(TOKEN), Some("f1"), "").await;
    assert_eq!(s, http::StatusCode::OK, "{got}");
    assert_eq!(got["messages"][0]["id"], first.as_str(), "{got}");
    (nats, dir, r, first)
}
