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

/// A TCP proxy to `upstream` that can be switched off (refuses new
/// connections, cuts the ones it carries), as in `forward_acks`.
async fn switchable_proxy(upstream: SocketAddr) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (on_tx, on_rx) = tokio::sync::watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let mut on = on_rx.clone();
            if !*on.borrow() {
                drop(c);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                    _ = on.wait_for(|v| !*v) => {}
                }
            });
        }
    });
    (addr, on_tx)
}

/// Finding 3. A message whose lease ran out while the local service still
/// had it is leased to this forwarder again (the pump skips the new offer:
/// "the running one's answer settles the new lease"), but the answer keeps
/// the deadline of the *first* pull (`keep_until` in `active`). The relay
/// is away for a moment when the service answers, inside the second lease:
/// the acker gives the acknowledgement up at its first failure (the first
/// lease and its lapse are over), the second lease runs out too (another
/// failed attempt) and the message is delivered to the service again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_for_a_message_leased_again_is_kept_until_the_new_lease_is_over() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let token = "r32-pull-token";
    // Lease 3 s, retry after 2 s: lease 1 [0, 3], lapse to 5, lease 2 [5, 8].
    let h = start(
        &TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", token).lease(secs(3)).retry([secs(2); 5])),
    )
    .await;
    let (proxy, on) = switchable_proxy(h.ingest_addrs[0]).await;
    let first_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let f = first_at.clone();
    let arrived = Arc::new(AtomicBool::new(false));
    let a = arrived.clone();
    // The first delivery takes 7 s (answered inside lease 2), later ones none.
    let local = Local::start(Arc::new(move |_, seen| {
        if seen == 0 {
            f.lock().unwrap().get_or_insert_with(Instant::now);
            a.store(true, Ordering::SeqCst);
            (200, Duration::from_secs(7))
        } else {
            (200, Duration::ZERO)
        }
    }))
    .await;
    let fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), token, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("r32-relet")).await;
    let deadline = Instant::now() + secs(20);
    while !arrived.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "never delivered: {}", fwd.log_text());
        tokio::time::sleep(ms(10)).await;
    }
    let t0 = first_at.lock().unwrap().unwrap();
    // Away from 6.6 s to 7.6 s: the answer (7 s) finds the relay away, lease 2 still live.
    tokio::time::sleep_until((t0 + ms(6600)).into()).await;
    on.send_replace(false);
    tokio::time::sleep_until((t0 + ms(7600)).into()).await;
    on.send_replace(true);
    // Past lease 2, its lapse and one more retry delay.
    tokio::time::sleep_until((t0 + secs(14)).into()).await;
    let got: Vec<u32> = local
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.id == id)
        .map(|g| g.attempt)
        .collect();
    let log: Vec<String> = fwd
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("acknowledg") || l.contains("lease"))
        .cloned()
        .collect();
    h.shutdown().await;
    assert_eq!(
        got.len(),
        1,
        "the service answered 200 once inside the forwarder's second lease, yet got the message again \
         (attempts {got:?}): the acknowledgement was given up by the first lease's deadline; log: {log:#?}"
    );
}
