//! Cluster mode: `kill -9` of one of two relays (real binaries, a three-node
//! NATS cluster) in the middle of draining a backlog of a few thousand
//! events to three subscribers. The other relay takes over: every event
//! acknowledged reaches every subscriber, again only what the dead relay
//! had in flight (at most its `concurrency` per subscriber), with the same
//! `webhook-id`.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;

use common::nats::NatsCluster;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_drain_is_taken_over_with_only_its_in_flight_sent_twice() {
    let nats = NatsCluster::start(3).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    // 30 ms an answer, 4 at a time per relay (~270 a second for two relays): a
    // backlog builds while callbacks come, however slowly a loaded machine posts them.
    let (s1, s2, s3) = (
        Sub::always(Behaviour::Slow(ms(30))).await,
        Sub::always(Behaviour::Slow(ms(30))).await,
        Sub::always(Behaviour::Slow(ms(30))).await,
    );
    let subs = [&s1, &s2, &s3];
    let paths = dirs.each_ref().map(|d| {
        let mut c = TestConfig::new(d.path());
        for (name, s) in ["s1", "s2", "s3"].iter().zip(subs) {
            c = c.subscriber(Subscriber::new(name, s.url()).concurrency(4));
        }
        c.nats(nats.urls(), 3).write()
    });
    let envs = [("RUST_LOG", "warn,hookrelay::app=info")];
    let mut ra = Bin::start(&paths[0], &envs);
    let rb = Bin::start(&paths[1], &envs);
    let addrs = Arc::new([ra.addr, rb.addr]);
    let mut posts = Vec::new();
    for w in 0..16 {
        let addrs = addrs.clone();
        posts.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..150 {
                ids.push(accepted_retrying(addrs[i % 2], &runway(&format!("w{w}-{i}"))).await);
            }
            ids
        }));
    }
    let mut want = HashSet::new();
    for p in posts {
        want.extend(p.await.unwrap());
    }
    assert_eq!(want.len(), 2400);
    let left = 2400 - s1.count();
    assert!(left > 600, "still draining when the relay dies ({left} left)");
    ra.kill9();
    // Only liveness is timed here (one relay left, after its takeover): a
    // slow machine gets a generous deadline.
    for (name, sub) in ["s1", "s2", "s3"].iter().zip(subs) {
        sub.wait_for(secs(90), "every acknowledged event", |_| {
            let seen = seen_ids(sub);
            want.iter().all(|id| seen.contains_key(id))
        })
        .await;
        let seen = seen_ids(sub);
        let extra: Vec<_> = seen.keys().filter(|id| !want.contains(*id)).collect();
        assert!(extra.is_empty(), "{name}: ids nobody was given: {extra:?}");
        let repeats: usize = seen.values().map(|n| n - 1).sum();
        assert!(
            repeats <= 4,
            "{name}: {repeats} sent twice, more than the dead relay had in flight"
        );
    }
    drop(rb);
}
