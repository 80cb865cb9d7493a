//! An admin API request body that trickles in (a client with the token
//! sending a byte now and then, never silent for `read_timeout`) does not
//! hold its connection: `POST /api/tasks` and the submit proxy answer `408`
//! once the body is not whole `read_timeout` after the request began, and
//! close the connection, as the callback listeners do. A replay reads no
//! body: it is answered at once and a trickling body does not hold it.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "adm-slow-body-token-8e1f";

/// Send `path`'s header (a 100-byte body announced), then a byte every
/// 200 ms; what came back, and when the connection was closed (`None`: not
/// within 6 s).
async fn trickle(addr: std::net::SocketAddr, path: &str) -> (String, Option<Duration>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
        wr
    });
    let mut got = Vec::new();
    let mut closed = None;
    let mut buf = [0u8; 4096];
    while t0.elapsed() < Duration::from_secs(6) {
        match tokio::time::timeout(Duration::from_millis(100), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(t0.elapsed());
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    writer.abort();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_admin_body_is_answered_408_at_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .admin_token(TOKEN)
        .read_timeout(secs(1))
        .subscriber(Subscriber::new("s", DOWN));
    let h = start(&cfg).await;
    for path in ["/api/tasks", "/api/routes/t/submit?endpoint=/x"] {
        let (got, closed) = trickle(h.admin_addr, path).await;
        assert!(got.starts_with("HTTP/1.1 408"), "{path}: {got:?} (closed: {closed:?})");
        assert!(got.to_ascii_lowercase().contains("connection: close"), "{path}: {got}");
        let closed = closed.unwrap_or_else(|| panic!("{path}: the connection was held: {got}"));
        assert!(
            closed >= Duration::from_millis(900) && closed < secs(3),
            "{path}: closed after {closed:?}, read_timeout is 1 s"
        );
    }
    // The daemon still answers.
    let auth = format!("Bearer {TOKEN}");
    let (s, _, _) = request(
        h.admin_addr,
        None,
        "GET",
        "/api/status",
        &[("authorization", auth.as_str())],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(s, http::StatusCode::OK);
    h.shutdown().await;
}

/// A replay reads no body: it is answered at once, and a body trickling in
/// after it does not hold the connection past `read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_a_trickling_body_does_not_hold_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .admin_token(TOKEN)
        .read_timeout(secs(1))
        .subscriber(Subscriber::new("s", DOWN));
    let h = start(&cfg).await;
    for path in ["/api/dead-letters/replay", "/api/events/evt_unknown/replay"] {
        let (got, closed) = trickle(h.admin_addr, path).await;
        assert!(got.starts_with("HTTP/1.1 "), "{path}: {got:?} (closed: {closed:?})");
        let closed = closed.unwrap_or_else(|| panic!("{path}: the connection was held: {got}"));
        assert!(closed < secs(3), "{path}: closed after {closed:?}, read_timeout is 1 s");
    }
    h.shutdown().await;
}
