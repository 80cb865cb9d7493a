//! `hookrelay forward` (the real binary) against a local service that
//! misbehaves at the TCP level with a large body: one that accepts the
//! connection and never reads the body, and one that answers (`413`) before
//! reading it and holds the connection. Each delivery costs its `--timeout`
//! at most; the forwarder closes every such connection instead of keeping
//! one (a socket and the body's buffers) per delivery for as long as the
//! service holds it.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const TOKEN: &str = "deaf-local-token";

/// A relay with pull subscriber `laptop` (three 100 ms retries, 16 MiB
/// bodies) and a forwarder (`--timeout 500ms`) to the service at `local`;
/// a 12 MiB callback (far more than the socket buffers on both sides take)
/// until its dead letter. The connections the service got, and the
/// forwarder's sockets to it after.
async fn deliver_a_large_body_to(answer: Option<&'static [u8]>) -> (serde_json::Value, usize, usize) {
    let (local, held): (_, Arc<Mutex<Vec<tokio::net::TcpStream>>>) = deaf(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .max_body(16 << 20)
        .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60)).retry([ms(100); 3]));
    let h = start(&cfg).await;
    let fwd = Forwarder::start(
        dir.path(),
        &pull_url(h.ingest_addrs[0], "laptop"),
        &format!("http://{local}/hook"),
        TOKEN,
        &["--timeout", "500ms"],
    );
    let body = format!(r#"{{"pad":"{}"}}"#, "a".repeat(12 << 20));
    accepted(h.ingest_addrs[0], &body).await;
    let dl = admin_until(h.admin_addr, "/api/dead-letters", secs(60), |dl| {
        dl["dead_letters"].as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    let pid = fwd.child.id();
    let kept = until_at_most(Duration::from_secs(5), 0, || sockets_to(pid, local.port())).await;
    let got = held.lock().unwrap().len();
    (dl["dead_letters"][0].clone(), got, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_service_that_never_reads_the_body_keeps_no_connection_per_delivery() {
    let (letter, got, kept) = deliver_a_large_body_to(None).await;
    assert_eq!(letter["attempts"], 4, "{letter}");
    assert_eq!(got, 4, "each delivery connected anew: {letter}");
    assert_eq!(kept, 0, "the forwarder kept {kept} connections to the service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_answer_before_the_body_is_read_keeps_no_connection() {
    let (letter, got, kept) =
        deliver_a_large_body_to(Some(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")).await;
    assert_eq!(letter["attempts"], 4, "retried on the schedule: {letter}");
    assert_eq!(got, 4, "each delivery connected anew: {letter}");
    assert_eq!(kept, 0, "the forwarder kept {kept} connections to the service");
}
