//! A replay of every dead letter runs to its end when its caller goes away
//! (the CLI gives up after a while, a browser tab closes): hyper dropped the
//! request's handler with its connection, and in cluster mode, where letters
//! are re-queued one by one, the replay stopped part-way — the rest stayed
//! dead, and one cut between its mark and its message stayed pending with
//! nothing to send it.

use crate::common;

use std::io::Write;

use common::nats::NatsCluster;
use common::*;

const LETTERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_all_dead_letters_ends_when_its_caller_has_gone() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (sub, healthy) = Sub::broken(Behaviour::Status(410)).await; // gone: dead at once
    let cfg = TestConfig::new(dir.path())
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

    // The caller asks, then goes away long before the answer.
    let mut conn = std::net::TcpStream::connect(h.admin_addr).unwrap();
    write!(
        conn,
        "POST /api/dead-letters/replay HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
        h.admin_addr
    )
    .unwrap();
    tokio::time::sleep(ms(20)).await;
    drop(conn);

    sub.wait_for(secs(60), "every letter delivered", |r| r.len() == 2 * LETTERS)
        .await;
    admin_expect(h.admin_addr, "/api/dead-letters", secs(10), "no letter left", |v| {
        v["total"] == 0
    })
    .await;
    h.shutdown().await;
}
