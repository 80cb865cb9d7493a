//! Promises 3 and 4 against subscribers that misbehave at the TCP level: one
//! that accepts the connection but never reads a large request body costs
//! each attempt its `timeout` and no more. The relay closes every such
//! connection (its socket and the body's buffers) instead of keeping one per
//! retry for as long as the subscriber holds it; so does one that answers
//! (`413`) before reading the body, whose answer decides the outcome.

use crate::common;

use std::time::Duration;

use common::*;

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
    assert!(letter["last_error"].as_str().unwrap().contains("timeout"), "{letter}");
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
