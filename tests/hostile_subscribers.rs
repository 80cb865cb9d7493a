//! Promises 3 and 4 against subscribers that misbehave at the TCP level: one
//! that accepts the connection but never reads a large request body costs
//! each attempt its `timeout` and no more. The relay closes every such
//! connection (its socket and the body's buffers) instead of keeping one per
//! retry for as long as the subscriber holds it.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// The relay's open sockets.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_the_body_keeps_no_connection_per_attempt() {
    // Accepts every connection, holds it open, reads nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held: Arc<Mutex<Vec<tokio::net::TcpStream>>> = Arc::default();
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            holder.lock().unwrap().push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).max_body(8 << 20).subscriber(
        Subscriber::new("deaf", format!("http://{addr}/callbacks"))
            .timeout(ms(500))
            .retry([ms(100); 6])
            .circuit_threshold(100),
    );
    let bin = Bin::start(&cfg.write(), &[]);
    let pid = bin.child.id();
    let before = sockets(pid);
    // 4 MiB: far more than the socket buffers on both sides take.
    let body = format!(r#"{{"pad":"{}"}}"#, "a".repeat(4 << 20));
    accepted(bin.addr, &body).await;
    let dl = admin_until(bin.admin, "/api/dead-letters", secs(30), |dl| {
        dl["dead_letters"].as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    let letter = &dl["dead_letters"][0];
    assert_eq!(letter["attempts"], 7, "{dl}");
    assert!(letter["last_error"].as_str().unwrap().contains("timeout"), "{dl}");
    assert_eq!(held.lock().unwrap().len(), 7, "each attempt connected anew");
    // Each connection is closed at the latest a `timeout` after its attempt
    // gave up; the subscriber still holds all seven.
    let limit = std::time::Instant::now() + Duration::from_secs(5);
    let mut open = sockets(pid);
    while open > before && std::time::Instant::now() < limit {
        tokio::time::sleep(ms(100)).await;
        open = sockets(pid);
    }
    assert!(
        open <= before,
        "{open} sockets open, {before} before the attempts: the subscriber's connections were kept"
    );
}
