//! Cluster mode: a subscriber a reload adds at one relay (SIGHUP, the real
//! binary) while the other relay delivers, then at the other. Each relay
//! creates or finds the one consumer without a set-up error, the new
//! subscriber gets every event a relay stored after its own reload and none
//! from before, and the busy subscriber gets every event once. Callbacks
//! are posted as a provider does, a `503` (three replicated nodes busy on
//! one loaded machine) tried again.

use crate::common;

use std::collections::HashSet;

use common::nats::NatsCluster;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_added_by_sighup_at_each_relay_in_turn_starts_at_the_tail() {
    let nats = NatsCluster::start(3).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let busy = Sub::always(Behaviour::Slow(ms(5))).await;
    let late = Sub::ok().await;
    let cfg = |d: &std::path::Path, with_late: bool| {
        let mut c = TestConfig::new(d).subscriber(Subscriber::new("a", busy.url()));
        if with_late {
            c = c.subscriber(Subscriber::new("late", late.url()));
        }
        c.nats(nats.urls(), 3)
    };
    let paths = [cfg(dirs[0].path(), false).write(), cfg(dirs[1].path(), false).write()];
    let envs = [("RUST_LOG", "warn,hookrelay::app=info,hookrelay::reload=info")];
    let (ra, rb) = (Bin::start(&paths[0], &envs), Bin::start(&paths[1], &envs));
    let mut before = HashSet::new();
    for i in 0..100 {
        before.insert(accepted_retrying(if i % 2 == 0 { ra.addr } else { rb.addr }, &runway(&format!("b{i}"))).await);
    }
    // B delivers a backlog while A takes the new subscriber.
    let (rb_addr, ra_addr) = (rb.addr, ra.addr);
    let load = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..200 {
            ids.push(accepted_retrying(rb_addr, &runway(&format!("during{i}"))).await);
        }
        ids
    });
    cfg(dirs[0].path(), true).write();
    ra.signal("HUP");
    log_until(|| ra.log_text(), "configuration reloaded", secs(10)).await;
    let mut after_a = Vec::new();
    for i in 0..20 {
        after_a.push(accepted_retrying(ra_addr, &runway(&format!("a{i}"))).await);
    }
    let during = load.await.unwrap();
    cfg(dirs[1].path(), true).write();
    rb.signal("HUP");
    log_until(|| rb.log_text(), "configuration reloaded", secs(10)).await;
    let mut after_b = Vec::new();
    for i in 0..20 {
        after_b.push(accepted_retrying(rb_addr, &runway(&format!("c{i}"))).await);
    }
    let want_late: HashSet<String> = after_a.iter().chain(&after_b).cloned().collect();
    late.wait_for(secs(20), "every event stored after a reload", |_| {
        let seen = seen_ids(&late);
        want_late.iter().all(|id| seen.contains_key(id))
    })
    .await;
    let all: HashSet<String> = before.iter().chain(&during).chain(&want_late).cloned().collect();
    busy.wait_for(secs(20), "every event", |_| {
        let seen = seen_ids(&busy);
        all.iter().all(|id| seen.contains_key(id))
    })
    .await;
    tokio::time::sleep(secs(1)).await;
    let seen = seen_ids(&late);
    let stray: Vec<_> = seen.keys().filter(|id| !want_late.contains(*id)).collect();
    assert!(
        stray.is_empty(),
        "late got events stored before its relay's reload: {stray:?}"
    );
    assert!(seen.values().all(|n| *n == 1), "late got an event twice: {seen:?}");
    let twice: Vec<_> = seen_ids(&busy).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "a got events twice: {twice:?}");
    // No error from the reloads, and no set-up failure at all. A callback
    // refused because NATS was slow to answer on a loaded machine (a `503`
    // the providers above try again) is not one: only those lines are left
    // out, by their reason.
    for (name, r) in [("A", &ra), ("B", &rb)] {
        let log = r.log_text();
        let slow = |l: &str| {
            (l.contains("cannot persist callback; answering 503") || l.contains("store unreachable"))
                && (l.contains("did not answer in time") || l.contains("timed out"))
        };
        let errors: Vec<_> = log
            .lines()
            .filter(|l| {
                l.contains("set-up failed")
                    || l.contains("until the set-up is done")
                    || (l.contains("ERROR") && !slow(l))
            })
            .collect();
        assert!(errors.is_empty(), "relay {name}: {errors:#?}\n{log}");
    }
}
