//! A replay of every dead letter runs to its end when its caller goes away
//! (the CLI gives up after a while, a browser tab closes): hyper dropped the
//! request's handler with its connection, and in cluster mode, where letters
//! are re-queued one by one, the replay stopped part-way — the rest stayed
//! dead, and one cut between its mark and its message stayed pending with
//! nothing to send it. Likewise when the relay stops meanwhile: the stop
//! closed the store under the replay; it now waits for it (within
//! `server.shutdown_grace`).

use crate::common;

use std::io::Write;

use common::nats::NatsCluster;
use common::*;

const LETTERS: usize = 200;

/// A relay with `LETTERS` dead letters of subscriber `s`, now healthy.
async fn dead_letters(nats: &NatsCluster, dir: &std::path::Path) -> (Sub, TestConfig, hookrelay::Handle) {
    let (sub, healthy) = Sub::broken(Behaviour::Status(410)).await; // gone: dead at once
    let cfg = TestConfig::new(dir)
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    for i in 0..LETTERS {
        accepted(h.ingest_addrs[0], &runway(&format!("left-{i}"))).await;
    }
    admin_expect(h.admin_addr, "/api/dead-letters", secs(60), "every letter", |v| {
        v["total"] == LETTERS
    })
    .await;
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    (sub, cfg, h)
}

/// A replay of every dead letter asked, its caller gone at once.
async fn replay_and_go(admin: std::net::SocketAddr) {
    let mut conn = std::net::TcpStream::connect(admin).unwrap();
    write!(
        conn,
        "POST /api/dead-letters/replay HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
        admin
    )
    .unwrap();
    tokio::time::sleep(ms(20)).await;
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_all_dead_letters_ends_when_its_caller_has_gone() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (sub, _cfg, h) = dead_letters(&nats, dir.path()).await;
    replay_and_go(h.admin_addr).await;
    sub.wait_for(secs(60), "every letter delivered", |r| r.len() == 2 * LETTERS)
        .await;
    admin_expect(h.admin_addr, "/api/dead-letters", secs(10), "no letter left", |v| {
        v["total"] == 0
    })
    .await;
    h.shutdown().await;
}

/// The relay (the real binary) is stopped right after the replay was
/// asked; started again, every letter is delivered and none is left dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_a_replay_under_way() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (sub, cfg, h) = dead_letters(&nats, dir.path()).await;
    h.shutdown().await;
    let bin = Bin::start(&cfg.write(), &[]);
    replay_and_go(bin.admin).await;
    bin.signal("TERM");
    let (status, bin) = bin.exit().await;
    assert!(status.success(), "{}", bin.log_text());
    let h = start(&cfg).await;
    admin_expect(h.admin_addr, "/api/dead-letters", secs(10), "no letter left", |v| {
        v["total"] == 0
    })
    .await;
    // Each letter sent again at least once (an attempt the stop cut after
    // it reached the subscriber is sent once more: at least once).
    sub.wait_for(secs(60), "every letter delivered", |_| {
        let seen = seen_ids(&sub);
        seen.len() == LETTERS && seen.values().all(|n| *n >= 2)
    })
    .await;
    // Sent once more only what the stop cut (at most the subscriber's
    // concurrency at once), never the lot.
    tokio::time::sleep(secs(1)).await;
    let more = seen_ids(&sub).into_values().filter(|n| *n > 2).count();
    assert!(more <= 16, "{more} letters sent more than once by the replay");
    h.shutdown().await;
}
