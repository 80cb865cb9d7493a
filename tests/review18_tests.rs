//! Review 18 (security review): failing tests for the findings in
//! /work/notes/review18.md. Each test states the promise it checks.

use crate::common;

use std::time::Duration;

use common::*;

/// Keeps `n` idle connections from 127.0.0.2 open to `addr` (each one closed
/// by the relay is opened again), as one stranger can. Abort to stop.
fn hog(addr: std::net::SocketAddr, n: usize) -> tokio::task::JoinHandle<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    let live = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            while live.load(Ordering::SeqCst) < n {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                let Ok(mut s) = sock.connect(addr).await else { break };
                live.fetch_add(1, Ordering::SeqCst);
                let live = live.clone();
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Finding 3. `max_connections` is one pool for every client: a single
/// stranger (one address, no token, sending nothing) keeps every slot and
/// the accept queue full — each idle connection is cut at `read_timeout` and
/// simply opened again — so the provider's callbacks wait behind it and time
/// out. The memory budget gives one client a quarter; connections have no
/// per-client share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stranger_cannot_hold_every_connection_slot_from_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .max_connections(8),
    )
    .await;
    let addr = h.ingest_addrs[0];
    let attack = hog(addr, 48);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = tokio::time::timeout(Duration::from_secs(6), callback(addr, &runway("behind-a-hog"))).await;
    attack.abort();
    assert!(
        matches!(served, Ok((http::StatusCode::OK, _))),
        "the provider's callback was not served within 6 s while one other address held the connections: {served:?}"
    );
    h.shutdown().await;
}

/// Finding 4. The admin listener has a fixed, undocumented cap of 64
/// connections (src/app.rs `ConnLimit::new(64)`), taken before any
/// authentication: anyone who can reach it (any local user on the default
/// loopback address; anyone on the network when it listens elsewhere with
/// a token) keeps `/healthz`, `/readyz`, the API and the console from
/// answering, so a load balancer or orchestrator sees the relay as dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_starve_healthz_on_the_admin_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()))).await;
    let admin_addr = h.admin_addr;
    let attack = hog(admin_addr, 64 * 6);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(admin_addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).to_string()
    };
    let answered = tokio::time::timeout(Duration::from_secs(6), probe).await;
    attack.abort();
    assert!(
        matches!(&answered, Ok(t) if t.starts_with("HTTP/1.1 200")),
        "/healthz did not answer within 6 s while one other address held admin connections: {answered:?}"
    );
    h.shutdown().await;
}
