//! Review 32: findings in the `f30` and `rel34` merges, each a test that
//! fails on the code as merged.

use crate::common;

use std::net::SocketAddr;

use common::nats::NatsCluster;
use common::*;

/// One raw HTTP/1.1 request with exactly this `Host` and these headers; the status and body.
async fn send(addr: SocketAddr, method: &str, path: &str, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let answer = raw(addr, req.as_bytes()).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    (status, body.to_string())
}

/// Finding 1. A `Host` without a port is one request, on one port: port 80
/// over http (a browser on `http://admin.example.com/`) or 443 over https
/// (behind the proxy). `origin_matches` now takes the default port of
/// whatever scheme the *Origin* names, so `http://admin.example.com` and
/// `https://admin.example.com` both match the same `Host`: one of them is
/// necessarily another origin (a page of the other scheme), accepted
/// whenever the browser sends no `Sec-Fetch-Site` (before 5784ddc..HEAD only
/// the http origin matched a portless Host, as the listener speaks http).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portless_host_matches_origins_of_both_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .admin_token("r32-token")
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("r32-guard")).await;
    sub.wait_for(secs(10), "the delivery", |r| r.len() == 1).await;
    let path = format!("/api/events/{id}/replay");
    let host = "admin.example.com";
    let bearer = ("authorization", "Bearer r32-token");
    let json = ("content-type", "application/json");
    let mut accepted_origins = Vec::new();
    for origin in ["http://admin.example.com", "https://admin.example.com"] {
        // No Sec-Fetch-Site: a browser without Fetch Metadata (older Safari, embedded webviews).
        let (status, body) = send(h.admin_addr, "POST", &path, host, &[bearer, json, ("origin", origin)]).await;
        if status != 403 {
            accepted_origins.push(origin);
        } else {
            assert!(body.contains("cross-site"), "{body}");
        }
        tokio::time::sleep(ms(300)).await;
    }
    h.shutdown().await;
    assert!(
        accepted_origins.len() < 2,
        "one Host (no port: one scheme, one port) matched both {accepted_origins:?}: the scheme the request \
         arrived on is never checked, so a page of the other scheme on the same host passes the Origin check"
    );
}

/// Finding 2. Cluster mode: `/api/events` scans at most `SCAN_LIMIT`
/// (10 000) messages of a route from its top, so with a filter (`task=`) an
/// event that matches below that is left out — and the list now says
/// `more: false` (the console: "No events match." / "showing the oldest N
/// events that match"), a claim that the older pages are complete. One host
/// lists it. `more` (and `next_before`) must say the scan was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_events_list_says_no_more_though_a_matching_event_lies_past_the_scan() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let wanted = accepted_retrying(addr, &runway("r32-needle")).await;
    // 10 001 newer events of other tasks, 32 at a time.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n > 10_000 {
                    break;
                }
                accepted_retrying(addr, &runway(&format!("hay-{n}"))).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let (s, v) = admin(h.admin_addr, "GET", "/api/events?task=r32-needle&limit=5").await;
    h.shutdown().await;
    assert_eq!(s, 200, "{v}");
    let listed = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["id"] == wanted.as_str());
    assert!(
        listed || v["more"] == true,
        "event {wanted} matches task=r32-needle but is neither listed nor announced by `more`: {v}"
    );
}
