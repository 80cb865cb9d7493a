//! Review 37: the public HTTP surface under hostile clients, upgrade in
//! place, sled durability under kill -9. Each test here proves a defect
//! (it fails on the code as reviewed); see /work/notes/review37.md.

use crate::common;

use std::net::IpAddr;

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

/// An HTTP/2 client (prior knowledge) that announces
/// SETTINGS_INITIAL_WINDOW_SIZE = 0 and asks `GET /nothing` on stream 1: the
/// relay can send the 404's headers (not flow-controlled) but never its JSON
/// body. Reads until the answer's HEADERS arrive; returns the connection,
/// which the client then leaves alone (no WINDOW_UPDATE ever).
async fn h2_zero_window_request(mut s: tokio::net::TcpStream) -> tokio::net::TcpStream {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(0x04, "/nothing"), (0x01, "localhost")] {
        block.extend_from_slice(&[index, value.len() as u8]);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0
    out.extend(h2_frame(0x4, 0, 0, &[0x00, 0x04, 0, 0, 0, 0]));
    out.extend(h2_frame(0x1, 0x4 | 0x1, 1, &block)); // END_HEADERS | END_STREAM
    s.write_all(&out).await.unwrap();
    let mut status = None;
    while status.is_none() {
        let mut head = [0u8; 9];
        tokio::time::timeout(secs(5), s.read_exact(&mut head))
            .await
            .expect("the server answers the request's headers")
            .expect("the server answers the request's headers");
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0; len];
        s.read_exact(&mut payload).await.unwrap();
        let (kind, flags, stream) = (
            head[3],
            head[4],
            u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
        );
        if kind == 0x4 && flags & 0x1 == 0 {
            s.write_all(&h2_frame(0x4, 0x1, 0, &[])).await.unwrap();
        }
        if kind == 0x1 && stream == 1 {
            status = payload.first().copied();
        }
    }
    assert_eq!(status, Some(0x8d), "the request was answered 404 (HPACK static index 13)");
    s
}

/// README, "Bounded resources": "none can sit on a slot … a keep-alive
/// connection with no request in flight is closed at `idle_timeout`", and
/// every phase that waits for the client is cut at `read_timeout`.
///
/// An HTTP/2 client that never opens a flow-control window keeps its one
/// request "in flight" for ever: `GuardedBody` only ends the request when
/// hyper has polled the response body to its end, hyper polls it only once
/// the stream has send capacity, and while a request is in flight
/// `Activity::next` answers `Busy`, i.e. no deadline at all. The server's
/// own keep-alive PINGs (every 30 s) are answered by any HTTP/2 client, so
/// the connection stays. Four addresses (each within its quarter of the
/// cap) so hold every slot and the provider's callbacks wait for good.
#[tokio::test]
async fn an_http2_client_that_never_opens_its_window_sits_on_its_slot_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        &TestConfig::new(dir.path())
            .read_timeout(secs(1))
            .idle_timeout(secs(2))
            .max_connections(4)
            .subscriber(Subscriber::new("s", sub.url())),
    )
    .await;
    let addr = h.ingest_addrs[0];

    // Four strangers, one connection each (a quarter of 4 is 1).
    let mut held = Vec::new();
    for i in 2..=5u8 {
        let from: IpAddr = format!("127.0.0.{i}").parse().unwrap();
        held.push(h2_zero_window_request(connect_from(addr, from).await).await);
    }
    // Each watcher keeps its connection until it returns (12 s), past the
    // provider's attempt below.
    let watched: Vec<_> = held
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let closed = closed_within(&mut c, secs(12)).await;
                (closed, c)
            })
        })
        .collect();
    // Past read_timeout + idle_timeout (3 s) with room for a loaded machine:
    // the slots must have come back by now.
    tokio::time::sleep(secs(6)).await;
    // The provider's callback from another address.
    let answered = tokio::time::timeout(secs(4), try_callback(addr, &runway("r37-zero-window"))).await;

    let mut closed = Vec::new();
    for w in watched {
        let (c, conn) = w.await.unwrap();
        closed.push(c.is_some());
        drop(conn);
    }
    let answered = answered.ok().flatten().map(|(s, _)| s);
    assert_eq!(
        (closed, answered),
        (vec![true; 4], Some(StatusCode::OK)),
        "an HTTP/2 connection whose client opens no window was not closed within 12 s \
         (read_timeout 1 s, idle_timeout 2 s), and with four such connections the provider's \
         callback was not answered (None = no answer within 4 s)"
    );
    h.shutdown().await;
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
