//! Review 37: the public HTTP surface under hostile clients, upgrade in
//! place, sled durability under kill -9. Each test here proves a defect
//! (it fails on the code as reviewed); see /work/notes/review37.md.

use crate::common;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/2 frame: length, type, flags, stream, payload (RFC 9113 §4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The same hole as a memory bound: README, "Bounded resources" and
/// `server.max_body_memory` ("bounds what strangers can make the daemon
/// hold"). One stranger (one address, no token, within its quarter of the
/// default 4,096 connections) opens 300 HTTP/2 connections, each with 128
/// `GET /nothing` streams and SETTINGS_INITIAL_WINDOW_SIZE = 0. Every 404 is
/// stuck before its body (see above), so each stream keeps its service
/// future, response and hyper/h2 stream state for as long as the client
/// likes: measured at about 15–27 KB a stream (debug build), i.e. ~1 GB
/// here and ~3.5 GB for one address's full share; four addresses, all of
/// `max_connections`. Nothing of it is counted in `max_body_memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stranger_with_zero_window_http2_streams_makes_the_daemon_hold_unbounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .read_timeout(secs(1))
        .idle_timeout(secs(2))
        .subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let addr = bin.addr;
    // Let the daemon settle before the baseline.
    assert_eq!(callback(addr, &runway("r37-before")).await.0, StatusCode::OK);
    let before = bin.rss_kib();

    const CONNS: usize = 300;
    const STREAMS: u32 = 128;
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(0x04, "/nothing"), (0x01, "localhost")] {
        block.extend_from_slice(&[index, value.len() as u8]);
        block.extend_from_slice(value.as_bytes());
    }
    let mut held = Vec::new();
    for _ in 0..CONNS {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(h2_frame(0x4, 0, 0, &[0x00, 0x04, 0, 0, 0, 0]));
        for k in 0..STREAMS {
            out.extend(h2_frame(0x1, 0x4 | 0x1, 1 + 2 * k, &block));
        }
        s.write_all(&out).await.unwrap();
        // Drain what the server sends (settings, 404 headers) so that TCP
        // back-pressure is not what holds it; never a WINDOW_UPDATE.
        held.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let started = std::time::Instant::now();
            loop {
                match tokio::time::timeout(secs(1), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                    _ if started.elapsed() > secs(15) => return None,
                    _ => {}
                }
            }
        }));
    }
    // Well past read_timeout + idle_timeout, with time for the daemon to
    // serve the 38,400 requests' headers and (were the connections closed)
    // for jemalloc to give the memory back (dirty_decay_ms is 1 s); the
    // holders still keep every connection the daemon left open.
    tokio::time::sleep(secs(13)).await;
    let during = bin.rss_kib();
    let mut open = 0;
    for c in held {
        if c.await.unwrap().is_none() {
            open += 1;
        }
    }
    eprintln!("RSS {before} -> {during} KiB with {CONNS} x {STREAMS} zero-window streams; {open} connections still open at 15 s");
    assert!(
        during < before + 256 * 1024 && open == 0,
        "one stranger's zero-window HTTP/2 streams: RSS {before} -> {during} KiB (more than 256 MiB, twice the \
         default max_body_memory), {open} of {CONNS} connections still open after 15 s (read_timeout 1 s, idle_timeout 2 s)"
    );
}
