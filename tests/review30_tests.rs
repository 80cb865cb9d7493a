//! Review 30: pull subscribers / `hookrelay forward`, and the web console and
//! admin API. Each test proves one finding of /work/notes/review30.md and
//! fails on the code as reviewed.

use crate::common;

use crate::common::browser;

use std::net::SocketAddr;

use common::*;

const TOKEN: &str = "r30-pull-token";

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
