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

/// A relay with the admin token and a 1 s `read_timeout`.
async fn relay(dir: &std::path::Path) -> hookrelay::Handle {
    let cfg = TestConfig::new(dir)
        .admin_token(TOKEN)
        .read_timeout(secs(1))
        .subscriber(Subscriber::new("s", DOWN));
    start(&cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_admin_body_is_answered_408_at_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let h = relay(dir.path()).await;
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
    let h = relay(dir.path()).await;
    for path in ["/api/dead-letters/replay", "/api/events/evt_unknown/replay"] {
        let (got, closed) = trickle(h.admin_addr, path).await;
        assert!(got.starts_with("HTTP/1.1 "), "{path}: {got:?} (closed: {closed:?})");
        let closed = closed.unwrap_or_else(|| panic!("{path}: the connection was held: {got}"));
        assert!(closed < secs(3), "{path}: closed after {closed:?}, read_timeout is 1 s");
    }
    h.shutdown().await;
}

/// Over HTTP/2 too: a trickling body is answered `408` at `read_timeout`
/// (its stream ends; the connection serves other requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_admin_body_over_http2_is_answered_408_at_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let h = relay(dir.path()).await;
    let tcp = tokio::net::TcpStream::connect(h.admin_addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let auth = format!("Bearer {TOKEN}");
    for path in ["/api/tasks", "/api/routes/t/submit?endpoint=/x"] {
        let mut client = client.clone().ready().await.unwrap();
        let req = http::Request::post(format!("http://{}{path}", h.admin_addr))
            .header("authorization", auth.as_str())
            .header("content-type", "application/json")
            .header("content-length", "100")
            .body(())
            .unwrap();
        let (answer, mut stream) = client.send_request(req, false).unwrap();
        let t0 = Instant::now();
        let trickler = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.send_data(bytes::Bytes::from_static(b" "), false).is_err() {
                    break;
                }
            }
        });
        let answer = tokio::time::timeout(secs(3), answer)
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within 3 s"))
            .unwrap();
        let took = t0.elapsed();
        assert_eq!(answer.status(), http::StatusCode::REQUEST_TIMEOUT, "{path}");
        assert!(took >= Duration::from_millis(900), "{path}: answered after {took:?}");
        let mut body = answer.into_body();
        let mut text = Vec::new();
        while let Some(Ok(piece)) = body.data().await {
            text.extend_from_slice(&piece);
        }
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("server.read_timeout"), "{path}: {text}");
        trickler.abort();
    }
    // The connection still serves requests.
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("http://{}/api/status", h.admin_addr))
        .header("authorization", auth.as_str())
        .body(())
        .unwrap();
    let (answer, _) = client.send_request(req, true).unwrap();
    let answer = tokio::time::timeout(secs(3), answer).await.unwrap().unwrap();
    assert_eq!(answer.status(), http::StatusCode::OK);
    h.shutdown().await;
}
