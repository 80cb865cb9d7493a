//! Promise 4, bounded resources, per client: one client (an IPv4 address,
//! an IPv6 /64) may hold a quarter of a listener's connection slots, so a
//! stranger keeping idle connections open cannot lock a provider out of the
//! public listener nor a probe out of the admin one; its connections past
//! that share are closed at once, not queued. (The global cap:
//! `bounded_connections`; the share bookkeeping: `server::limits` unit
//! tests.) The first two tests came from review 18 (findings 1 and 2), where
//! they failed on the code before the share.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOG: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Keeps `n` idle connections from 127.0.0.2 open to `addr` (each one closed
/// by the relay is opened again), as one stranger can. Abort to stop.
fn hog(addr: SocketAddr, n: usize) -> tokio::task::JoinHandle<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let live = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            while live.load(Ordering::SeqCst) < n {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind(SocketAddr::new(HOG, 0)).unwrap();
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

/// `max_connections` is no longer one pool for every client: a single
/// stranger (one address, no token, sending nothing) that keeps six times
/// the cap open holds two of the eight slots, and the provider's callback is
/// served.
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

/// The admin listener's 64 slots (README "Bounded resources") are shared
/// the same way: one client holds 16, and `/healthz` from another address
/// still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_starve_healthz_on_the_admin_listener() {
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

/// A connection past its client's share is closed at once (well before
/// `read_timeout`), it does not wait for a slot; one within the share of
/// another client is served, and the first client gets a slot back as soon
/// as one of its connections closes.
#[tokio::test]
async fn a_connection_past_its_share_is_closed_at_once_and_the_slot_comes_back_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .max_connections(8)
            .read_timeout(secs(10)),
    )
    .await;
    let addr = h.ingest_addrs[0];
    // Its share: a quarter of 8.
    let held = [connect_from(addr, HOG).await, connect_from(addr, HOG).await];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = connect_from(addr, HOG).await;
    let closed = closed_within(third, Duration::from_secs(3))
        .await
        .expect("a third connection from one client was not closed");
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}, not at once");
    // Another client is served meanwhile.
    assert_eq!(callback(addr, &runway("other-client")).await.0, http::StatusCode::OK);
    // One of the two closes: the client may open one again, and it is held
    // open (cut only at read_timeout).
    let [first, _second] = held;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = connect_from(addr, HOG).await;
    assert!(
        closed_within(again, Duration::from_secs(1)).await.is_none(),
        "the slot of a closed connection was not given back to its client"
    );
    h.shutdown().await;
}
