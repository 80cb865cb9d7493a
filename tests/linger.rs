//! A client that writes an oversized body whole, without `Expect:
//! 100-continue`, reads the relay's `413` (route and admin API), not a
//! connection reset: the relay drains what it still sends before closing.
//! The drain is bounded: a client that keeps sending fast is cut after
//! `LINGER_BYTES`, a slow one after `LINGER_TIME` (2 s, in real time: on
//! tokio's paused clock the drain's reads of a loopback socket were not
//! woken), each on a real listener (`server::serve`) on loopback.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "linger-admin-token-0123456789abcdef";

/// Write `head` and a 4 MiB body whole (a write error is kept, not fatal),
/// then read the answer until the relay closes.
async fn send_whole(addr: std::net::SocketAddr, head: &str) -> (std::io::Result<()>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 4 << 20));
    let wrote = tokio::time::timeout(Duration::from_secs(10), s.write_all(&bytes))
        .await
        .expect("the body written (or refused) within 10 s");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the answer and the close within 10 s");
    let text = String::from_utf8_lossy(&got).into_owned();
    (wrote.and(read.map(|_| ())), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_large_written_whole_gets_its_413_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .max_body(64 * 1024)
        .admin_token(TOKEN)
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let (ingest, admin) = (h.ingest_addrs[0], h.admin_addr);
    let len = 4 << 20;
    for i in 0..5 {
        let head = format!(
            "POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        );
        let (io, text) = send_whole(ingest, &head).await;
        assert!(text.starts_with("HTTP/1.1 413"), "route, try {i}: {io:?} {text:?}");
        assert!(io.is_ok(), "route, try {i}: {io:?} {text:?}");
        let head = format!(
            "POST /api/tasks HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        );
        let (io, text) = send_whole(admin, &head).await;
        assert!(text.starts_with("HTTP/1.1 413"), "admin, try {i}: {io:?} {text:?}");
        assert!(io.is_ok(), "admin, try {i}: {io:?} {text:?}");
    }
    h.shutdown().await;
}

/// A listener whose every answer is `413`, given before reading any body;
/// `grace`: its shutdown grace. Its address, its stop switch, its task.
async fn refusing_server(
    grace: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    use hookrelay::server::{ConnLimit, ConnSettings, ListenerOptions, Settings};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let opts = ListenerOptions {
        tls: None,
        settings: Settings::new(ConnSettings {
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            http2_max_streams: 8,
            grace,
        }),
        connections: ConnLimit::new(16),
        handshake_failures: Default::default(),
    };
    let svc = |_req, _peer| async {
        let mut resp = http::Response::new(Full::new(Bytes::from_static(b"too large\n")));
        *resp.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
        resp
    };
    let task = tokio::spawn(hookrelay::server::serve(listener, opts, svc, stop_rx));
    (addr, stop_tx, task)
}

const ENDLESS: &str = "POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000000\r\n\r\n";

/// Read the answer's head (the server does not close while draining).
async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("too large") {
        let n = s.read(&mut buf).await.expect("the answer");
        assert!(n > 0, "closed before the answer: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_sending_fast_is_cut_after_the_byte_bound() {
    let (addr, _stop, _task) = refusing_server(Duration::from_secs(1)).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(ENDLESS.as_bytes()).await.unwrap();
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 413"));
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    let cut = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.write_all(&chunk).await {
                Ok(()) => sent += chunk.len(),
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("cut within 20 s");
    // The drain's 8 MiB, and what the two kernels' buffers hold.
    assert!(sent >= 8 << 20, "cut after {sent} bytes: {cut}");
    assert!(sent < 64 << 20, "cut only after {sent} bytes: {cut}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_sending_slowly_is_cut_after_the_time_bound() {
    let (addr, _stop, _task) = refusing_server(Duration::from_secs(1)).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(ENDLESS.as_bytes()).await.unwrap();
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 413"));
    let answered = tokio::time::Instant::now();
    let chunk = vec![b'x'; 1024];
    let cut = loop {
        if let Err(e) = s.write_all(&chunk).await {
            break e;
        }
        assert!(answered.elapsed() < Duration::from_secs(10), "never cut");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(3),
        "cut {after:?} after the answer: {cut}"
    );
}

/// A shutdown does not wait for lingering connections: an idle keep-alive
/// client that does not close when the relay does, and one still sending
/// after its `413`, no longer hold the listener's end for the drain's 2 s
/// (the shutdown grace, 10 s here, is for requests still being served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_cuts_lingering_connections_short() {
    let (addr, stop, task) = refusing_server(Duration::from_secs(10)).await;
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(read_head(&mut idle).await.starts_with("HTTP/1.1 413"));
    let mut sending = tokio::net::TcpStream::connect(addr).await.unwrap();
    sending.write_all(ENDLESS.as_bytes()).await.unwrap();
    assert!(read_head(&mut sending).await.starts_with("HTTP/1.1 413"));
    let trickle = tokio::spawn(async move {
        while sending.write_all(&[b'x'; 1024]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the listener ends within its grace")
        .unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the listener ended {took:?} after the shutdown"
    );
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("the lingering sender cut")
        .unwrap();
    drop(idle);
}
