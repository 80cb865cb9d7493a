//! Cluster mode when NATS loses a consumer's state of a hand-out (a node
//! killed before it wrote it; with one NATS node, or a quorum lost): NATS
//! hands the message out again as a first delivery, with a consumer
//! sequence it used before. The relay had settled it (delivered, its
//! result recorded) and must not hand it out a second time. Before, a first
//! delivery's result was never read: the acknowledged message was offered
//! again as attempt 1 (seen once in `review42_tests`, where NATS is killed
//! right after a hand-out). Made certain here: the consumer's files are
//! put back as they were before the hand-out, under a NATS killed with
//! `kill -9`.

use crate::common;

use std::path::{Path, PathBuf};

use common::nats::NatsCluster;
use common::*;
use http::StatusCode;

const TOKEN: &str = "laptop-pull-token";

/// The directories of the consumers of every route stream (`HR_EV_*`) under `store`.
fn consumer_dirs(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![store.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            let in_route_stream = p
                .parent()
                .and_then(|s| s.parent())
                .and_then(|s| s.file_name())
                .is_some_and(|n| n.to_string_lossy().starts_with("HR_EV_"));
            if p.file_name().is_some_and(|n| n == "obs") || !in_route_stream {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The consumers' files of node 0 as they were at [`SavedConsumers::take`].
struct SavedConsumers {
    dirs: Vec<PathBuf>,
    saved: PathBuf,
}

impl SavedConsumers {
    /// Copy every route stream's consumer directory of node 0 under `dir`.
    fn take(nats: &NatsCluster, dir: &Path) -> SavedConsumers {
        let store = nats.dir().join("n0");
        let dirs = consumer_dirs(&store);
        assert!(!dirs.is_empty(), "no consumer directory under {}", store.display());
        let saved = dir.join("saved-consumers");
        for (i, c) in dirs.iter().enumerate() {
            copy_dir(c, &saved.join(i.to_string()));
        }
        SavedConsumers { dirs, saved }
    }

    /// NATS killed with `kill -9`, the saved files put back, NATS started:
    /// it has lost its state of everything since.
    async fn put_back_under_kill_9(&self, nats: &mut NatsCluster) {
        nats.kill9(0);
        for (i, c) in self.dirs.iter().enumerate() {
            std::fs::remove_dir_all(c).unwrap();
            copy_dir(&self.saved.join(i.to_string()), c);
        }
        nats.restart(0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_nats_hands_out_again_as_new_after_losing_its_consumer_state_is_not_offered_twice() {
    let mut nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(60)))
        .nats(nats.urls(), 1);
    let r = start(&cfg).await;
    let addr = r.ingest_addrs[0];
    let id = accepted(addr, &runway("settled-before-the-crash")).await;
    // The consumer's state before the hand-out.
    tokio::time::sleep(secs(1)).await;
    let saved = SavedConsumers::take(&nats, dir.path());
    assert_hands_out(addr, "/pull/laptop?wait=10s&max=1", TOKEN, "f1", &id).await;
    let (s, _, got) = pull_call(
        addr,
        "POST",
        "/pull/laptop/ack",
        Some(TOKEN),
        Some("f1"),
        &format!(r#"{{"ids":["{id}"]}}"#),
    )
    .await;
    assert_eq!((s, got["acknowledged"].as_u64()), (StatusCode::OK, Some(1)), "{got}");
    tokio::time::sleep(secs(1)).await;
    // NATS dies and comes back without its state of the hand-out.
    saved.put_back_under_kill_9(&mut nats).await;
    let (s, _, got) = pull_call(addr, "GET", "/pull/laptop?wait=12s", Some(TOKEN), Some("f2"), "").await;
    let v = admin_until(r.admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    r.shutdown().await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(
        got["messages"].as_array().map(Vec::len),
        Some(0),
        "acknowledged before NATS lost its state, and offered again: {got}"
    );
    assert_eq!(v["subscribers"][0]["state"], "delivered", "{v}");
}

/// The same loss for a push subscriber: the relay delivered the callback
/// (`2xx`, its result recorded), NATS comes back with the consumer as it was
/// before, and hands the message out again as new. Not sent a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_callback_nats_hands_out_again_as_new_is_not_sent_twice() {
    let mut nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .nats(nats.urls(), 1);
    let r = start(&cfg).await;
    let addr = r.ingest_addrs[0];
    // The consumer's state before the hand-out (here: before the callback).
    tokio::time::sleep(secs(1)).await;
    let saved = SavedConsumers::take(&nats, dir.path());
    let id = accepted(addr, &runway("delivered-before-the-crash")).await;
    until_delivered(r.admin_addr, &id, "s").await;
    tokio::time::sleep(secs(1)).await;
    saved.put_back_under_kill_9(&mut nats).await;
    // A later callback goes out after the one handed out again is taken.
    accepted_retrying(addr, &runway("after-the-crash")).await;
    let got = sub
        .wait_for(secs(20), "the callback after the crash", |r| {
            r.iter()
                .any(|x| String::from_utf8_lossy(&x.body).contains("after-the-crash"))
        })
        .await;
    tokio::time::sleep(ms(500)).await;
    r.shutdown().await;
    let again = sub
        .all()
        .iter()
        .filter(|x| String::from_utf8_lossy(&x.body).contains("delivered-before-the-crash"))
        .count();
    assert_eq!(
        again,
        1,
        "delivered before NATS lost its state, and sent again ({} received)",
        got.len()
    );
}

/// Without a loss nothing is taken for one (review of the above): a burst of
/// callbacks reaches a subscriber through several pull requests at once,
/// whose messages arrive in any order; none is read as handed out again
/// (each would cost a read of its result and a misleading log line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_concurrent_pull_requests_is_not_taken_for_a_lost_state() {
    let nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()).concurrency(32))
        .nats(nats.urls(), 1);
    let bin = Bin::start(
        &cfg.write(),
        &[("RUST_LOG", "warn,hookrelay::app=info,hookrelay::store=info")],
    );
    let mut posts = Vec::new();
    for w in 0..8 {
        let addr = bin.addr;
        posts.push(tokio::spawn(async move {
            for i in 0..40 {
                accepted_retrying(addr, &runway(&format!("burst-{w}-{i}"))).await;
            }
        }));
    }
    for p in posts {
        p.await.unwrap();
    }
    sub.wait_for(secs(30), "every callback of the burst", |r| r.len() >= 320)
        .await;
    let log = bin.log_text();
    assert!(!log.contains("handed out again as a first delivery"), "{log}");
}
