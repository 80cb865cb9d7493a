//! Promises 3 and 4 against subscribers that misbehave at the TCP level: one
//! that accepts the connection but never reads a large request body costs
//! each attempt its `timeout` and no more. The relay closes every such
//! connection (its socket and the body's buffers) instead of keeping one per
//! retry for as long as the subscriber holds it; so does one that answers
//! (`413`) before reading the body, whose answer decides the outcome. One
//! that pauses for less than its timeout and answers within it is not cut.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A relay whose subscriber `deaf` at `addr` has a 500 ms timeout and six
/// 100 ms retries; it and its open sockets before any delivery.
fn relay(dir: &std::path::Path, addr: std::net::SocketAddr) -> (Bin, usize) {
    let cfg = TestConfig::new(dir).max_body(16 << 20).subscriber(
        Subscriber::new("deaf", format!("http://{addr}/callbacks"))
            .timeout(ms(500))
            .retry([ms(100); 6])
            .circuit_threshold(100),
    );
    let bin = Bin::start(&cfg.write(), &[]);
    let before = sockets(bin.child.id());
    (bin, before)
}

/// Post a 12 MiB callback (far more than the socket buffers on both sides
/// take) and wait for its dead letter.
async fn dead_letter_of_a_large_body(bin: &Bin) -> serde_json::Value {
    let body = format!(r#"{{"pad":"{}"}}"#, "a".repeat(12 << 20));
    accepted(bin.addr, &body).await;
    let dl = admin_until(bin.admin, "/api/dead-letters", secs(30), |dl| {
        dl["dead_letters"].as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    dl["dead_letters"][0].clone()
}

/// Each connection is closed at the latest a `timeout` after its attempt
/// ended, though the subscriber still holds it.
async fn no_socket_kept(bin: &Bin, before: usize) {
    let pid = bin.child.id();
    let open = until_at_most(Duration::from_secs(5), before, || sockets(pid)).await;
    assert!(
        open <= before,
        "{open} sockets open, {before} before the attempts: the subscriber's connections were kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_the_body_keeps_no_connection_per_attempt() {
    let (addr, held) = deaf(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (bin, before) = relay(dir.path(), addr);
    let letter = dead_letter_of_a_large_body(&bin).await;
    assert_eq!(letter["attempts"], 7, "{letter}");
    // Cut at its `timeout` either way: the attempt's own timer, or (the
    // body's writes waiting first, on a loaded machine) the guard on a peer
    // that takes nothing sent for as long.
    let why = letter["last_error"].as_str().unwrap();
    assert!(
        why.contains("timeout") || why.contains("took nothing sent for 500ms"),
        "{letter}"
    );
    assert_eq!(held.lock().unwrap().len(), 7, "each attempt connected anew");
    no_socket_kept(&bin, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_read_decides_and_keeps_no_connection() {
    let (addr, held) = deaf(Some(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let (bin, before) = relay(dir.path(), addr);
    let letter = dead_letter_of_a_large_body(&bin).await;
    assert_eq!(letter["attempts"], 7, "retried on the schedule: {letter}");
    assert_eq!(letter["last_error"], "HTTP 413", "{letter}");
    assert_eq!(held.lock().unwrap().len(), 7, "each attempt connected anew");
    no_socket_kept(&bin, before).await;
}

/// The guard closes only a connection that takes nothing for the whole
/// `timeout`: a subscriber that stops reading a large body for most of its
/// timeout, then reads the rest and answers within it, gets it at the first
/// attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_pausing_within_its_timeout_gets_the_body_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let read_all = Arc::new(Mutex::new(Vec::new()));
    let reads = read_all.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let reads = reads.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                // 2 MiB, then nothing for 2.5 s of the 4 s timeout (the
                // relay's writes wait: the rest is more than the socket
                // buffers take), then the rest.
                if s.read_exact(&mut body[..2 << 20]).await.is_err() {
                    return;
                }
                tokio::time::sleep(ms(2500)).await;
                if s.read_exact(&mut body[2 << 20..]).await.is_err() {
                    return;
                }
                reads.lock().unwrap().push(len);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).max_body(16 << 20).subscriber(
        Subscriber::new("slow", format!("http://{addr}/callbacks"))
            .timeout(secs(4))
            .retry([ms(100); 2]),
    );
    let bin = Bin::start(&cfg.write(), &[]);
    let body = format!(r#"{{"pad":"{}"}}"#, "a".repeat(12 << 20));
    let id = accepted(bin.addr, &body).await;
    let view = admin_until(bin.admin, &format!("/api/events/{id}"), secs(15), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(view["subscribers"][0]["state"], "delivered", "{}", view["subscribers"]);
    assert_eq!(
        *read_all.lock().unwrap(),
        vec![body.len()],
        "one attempt, the whole body read"
    );
}
