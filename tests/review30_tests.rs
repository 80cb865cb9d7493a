//! Review 30: pull subscribers / `hookrelay forward`, and the web console and
//! admin API. Each test proves one finding of /work/notes/review30.md and
//! fails on the code as reviewed.

use crate::common;

use crate::common::browser;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::sync::watch;

const TOKEN: &str = "r30-pull-token";

/// A TCP proxy to `upstream` that can be switched off: while off it refuses
/// every new connection (accepts and drops it) and cuts the ones it carries,
/// as a network outage between the forwarder and the relay would.
async fn switchable_proxy(upstream: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (on_tx, on_rx) = watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let mut on = on_rx.clone();
            if !*on.borrow() {
                drop(c);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                    _ = on.wait_for(|v| !*v) => {}
                }
            });
        }
    });
    (addr, on_tx)
}

/// Finding 1. The forwarder's acker gives a delivered message's
/// acknowledgement up after MAX_TRIES (about a minute of back-off), however
/// long the lease still runs. After a relay outage of a little over a minute
/// (the relay itself alive, its lease of 10 minutes still open) the message
/// the private service answered 200 stays leased, and is offered again when
/// the lease runs out: a duplicate, and a failed attempt recorded for a
/// delivery that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r30_a_delivered_message_is_acknowledged_after_an_outage_shorter_than_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        &TestConfig::new(dir.path()).subscriber(
            Subscriber::pull("laptop", TOKEN)
                .lease(Duration::from_secs(600))
                .retry([secs(1); 5]),
        ),
    )
    .await;
    let (proxy, on) = switchable_proxy(h.ingest_addrs[0]).await;
    let arrived = Arc::new(AtomicBool::new(false));
    let a = arrived.clone();
    // The private service takes 2 s, then answers 200.
    let local = Local::start(Arc::new(move |_, _| {
        a.store(true, Ordering::SeqCst);
        (200, Duration::from_secs(2))
    }))
    .await;
    let fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), TOKEN, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("r30-outage")).await;
    let deadline = Instant::now() + secs(20);
    while !arrived.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the message never reached the local service: {}", fwd.log_text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The network between the forwarder and the relay goes away while the
    // local service works on the message.
    on.send_replace(false);
    local
        .wait_for(secs(10), "the local 200", |g| g.iter().any(|g| g.id == id))
        .await;
    // Wait for the forwarder to give the acknowledgement up (or 150 s).
    let deadline = Instant::now() + secs(150);
    while !fwd.log_text().contains("acknowledgement given up") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gave_up_after = fwd.log_text().contains("acknowledgement given up");
    // The network comes back, well within the 10 minute lease.
    on.send_replace(true);
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(30), |ev| {
        ev["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let log: Vec<String> = fwd
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("acknowledg"))
        .cloned()
        .collect();
    assert_eq!(
        ev["subscribers"][0]["state"], "delivered",
        "the local service answered 200 and the relay came back within the lease, yet the message is still \
         leased (it will be offered again when the lease runs out); forwarder gave up: {gave_up_after}; \
         forwarder log: {log:#?}\nevent: {ev}"
    );
}

/// Finding 2 (API). `/api/events` (and, reasoned, `/api/tasks`) answer `limit` rows
/// and nothing that says more match: no total, no cursor for the next page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r30_the_events_list_says_when_rows_are_left_out() {
    let (_dir, sub, h) = daemon::with_ok_subscriber().await;
    for i in 0..3 {
        accepted(h.ingest_addrs[0], &runway(&format!("r30-page-{i}"))).await;
    }
    sub.wait_for(secs(10), "3 deliveries", |r| r.len() == 3).await;
    let (s, v) = admin(h.admin_addr, "GET", "/api/events?limit=2").await;
    assert_eq!(s, http::StatusCode::OK);
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
    let says_more = ["total", "more", "next", "next_before", "truncated"]
        .iter()
        .any(|k| v.get(*k).is_some());
    assert!(
        says_more,
        "3 events match, 2 are listed, and the answer does not say that any were left out \
         (no total, no cursor): {}",
        serde_json::to_string(&v.as_object().unwrap().keys().collect::<Vec<_>>()).unwrap()
    );
}

/// Finding 2 (console) and finding 3: in a real Chromium, the Events page
/// shows the newest 100 of 105 events with nothing that says others exist
/// or a way to see them; the Subscribers page does not show a pull
/// subscriber's last pull (design: "the console shows pull subscribers
/// like the others (backlog, in flight = leased, last pull)").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r30_the_console_says_rows_are_left_out_and_shows_the_last_pull() {
    let _ = browser::chromium();
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60))),
    )
    .await;
    for i in 0..105 {
        accepted(h.ingest_addrs[0], &runway(&format!("r30-console-{i}"))).await;
    }
    // One pull, so the relay has a last pull to show.
    let (s, _, _) = request(
        h.ingest_addrs[0],
        None,
        "GET",
        "/pull/laptop?wait=0&max=1",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Default::default(),
    )
    .await;
    assert_eq!(s, http::StatusCode::OK);
    let env = [("ADMIN_URL", format!("http://{}", h.admin_addr))];
    browser::run_script("review30.mjs", &env, secs(90), "REVIEW30 OK").await;
}

/// Finding 4. Behind a TLS-terminating reverse proxy (the way to reach the
/// console by a host name, with `admin.token` set), the console's replay
/// is refused as cross-site: the browser's `Origin` is
/// `https://admin.example.com` and the proxy passes `Host:
/// admin.example.com`, which the guard reads as port 80 against the
/// origin's 443. The browser itself says `Sec-Fetch-Site: same-origin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r30_the_consoles_replay_works_behind_an_https_reverse_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .admin_token("r30-admin-token"),
    )
    .await;
    let id = accepted(h.ingest_addrs[0], &runway("r30-proxy")).await;
    sub.wait_for(secs(10), "the delivery", |r| r.len() == 1).await;
    // What Chromium sends for the console's fetch(…, {method: 'POST'}) on
    // https://admin.example.com/ui, as the proxy passes it on.
    let (s, b) = raw_post(
        h.admin_addr,
        &format!("/api/events/{id}/replay"),
        &[
            ("host", "admin.example.com"),
            ("origin", "https://admin.example.com"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("authorization", "Bearer r30-admin-token"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(
        s,
        http::StatusCode::OK,
        "the console's own replay, same-origin over the proxy's https, was refused: {}",
        String::from_utf8_lossy(&b)
    );
}

/// POST `{}` to `path` with exactly `headers` (the common client adds its
/// own `Host`, and the guard reads the first).
async fn raw_post(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (http::StatusCode, bytes::Bytes) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder().method("POST").uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}"))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}
