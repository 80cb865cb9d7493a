//! `hookrelay forward` acknowledging through an outage: while the relay is
//! out of reach the forwarder keeps every delivered message's
//! acknowledgement until the relay answers, or until its lease (and the
//! relay's lapse after it) is over, however many tries that takes.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::sync::watch;

const TOKEN: &str = "outage-pull-token";

/// A TCP proxy to `upstream` that can be switched off: while off it refuses
/// every new connection (accepts and drops it) and cuts the ones it carries,
/// as a network outage between the forwarder and the relay would.
async fn switchable_proxy(upstream: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (on_tx, on_rx) = watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let mut on = on_rx.clone();
            if !*on.borrow() {
                drop(c);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                    _ = on.wait_for(|v| !*v) => {}
                }
            });
        }
    });
    (addr, on_tx)
}

/// The network between the forwarder and the relay fails for longer than
/// the acker's back-off once allowed (it gave up after 12 tries, about a
/// minute), the relay itself alive and the 10 minute lease still open: the
/// message the private service answered 200 is acknowledged when the network
/// is back, not offered again when its lease runs out (a duplicate, and a
/// failed attempt recorded for a delivery that succeeded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_is_acknowledged_after_an_outage_shorter_than_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        &TestConfig::new(dir.path()).subscriber(
            Subscriber::pull("laptop", TOKEN)
                .lease(Duration::from_secs(600))
                .retry([secs(1); 5]),
        ),
    )
    .await;
    let (proxy, on) = switchable_proxy(h.ingest_addrs[0]).await;
    let arrived = Arc::new(AtomicBool::new(false));
    let a = arrived.clone();
    // The private service takes 2 s, then answers 200.
    let local = Local::start(Arc::new(move |_, _| {
        a.store(true, Ordering::SeqCst);
        (200, Duration::from_secs(2))
    }))
    .await;
    let fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), TOKEN, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("outage")).await;
    let deadline = Instant::now() + secs(20);
    while !arrived.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the message never reached the local service: {}",
            fwd.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The network between the forwarder and the relay goes away while the
    // local service works on the message.
    on.send_replace(false);
    local
        .wait_for(secs(10), "the local 200", |g| g.iter().any(|g| g.id == id))
        .await;
    // Wait for the forwarder to give the acknowledgement up (or 90 s: the
    // old limit gave up after about 63 s).
    let deadline = Instant::now() + secs(90);
    while !fwd.log_text().contains("acknowledgement given up") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gave_up_after = fwd.log_text().contains("acknowledgement given up");
    // The network comes back, well within the 10 minute lease.
    on.send_replace(true);
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(30), |ev| {
        ev["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let log: Vec<String> = fwd
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("acknowledg"))
        .cloned()
        .collect();
    assert_eq!(
        ev["subscribers"][0]["state"], "delivered",
        "the local service answered 200 and the relay came back within the lease, yet the message is still \
         leased (it will be offered again when the lease runs out); forwarder gave up: {gave_up_after}; \
         forwarder log: {log:#?}\nevent: {ev}"
    );
}
