//! `hookrelay_dead_letters{subscriber}`: the dead letters the store keeps
//! per subscriber, so an alert survives a restart (the rate of
//! `hookrelay_deliveries_total{outcome="dead"}` starts again at 0). It
//! follows a replay, `kill -9` and a restart, a reload that removes
//! subscribers (one with letters left keeps its series, one without loses
//! it). The real binary. (Retention: `timing::retention_sweeps_finished_events…`.)

use crate::common;

use std::sync::atomic::Ordering;

use common::*;

fn key(sub: &str) -> String {
    format!("hookrelay_dead_letters{{subscriber=\"{sub}\"}}")
}

fn has(m: &[(String, f64)], sub: &str, n: f64) -> bool {
    m.contains(&(key(sub), n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_gauge_follows_replays_restarts_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (flaky, healed) = Sub::broken(Behaviour::Status(410)).await;
    let gone = Sub::always(Behaviour::Status(410)).await;
    let fine = Sub::ok().await;
    let base = TestConfig::new(dir.path());
    let all = base
        .clone()
        .subscriber(Subscriber::new("flaky", flaky.url()))
        .subscriber(Subscriber::new("gone", gone.url()))
        .subscriber(Subscriber::new("fine", fine.url()));
    let mut bin = Bin::start(&all.write(), &[]);
    for i in 0..2 {
        accepted(bin.addr, &runway(&format!("dead-gauge-{i}"))).await;
    }
    metrics_until(bin.admin, secs(10), "two dead letters each for flaky and gone", |m| {
        has(m, "flaky", 2.0) && has(m, "gone", 2.0) && has(m, "fine", 0.0)
    })
    .await;
    // Replayed to a subscriber that now answers: none left.
    healed.store(true, Ordering::SeqCst);
    let (status, v) = admin(bin.admin, "POST", "/api/dead-letters/replay?subscriber=flaky").await;
    assert!(status.is_success(), "{status} {v}");
    flaky
        .wait_for(secs(10), "the replayed deliveries", |r| r.len() >= 4)
        .await;
    metrics_until(bin.admin, secs(10), "flaky's letters replayed", |m| {
        has(m, "flaky", 0.0) && has(m, "gone", 2.0)
    })
    .await;
    // kill -9 and a restart: the count is the store's, not the process's.
    bin.kill9();
    let mut bin = Bin::start(&all.write(), &[]);
    let m = metrics(bin.admin).await;
    assert!(
        has(&m, "gone", 2.0) && has(&m, "flaky", 0.0) && has(&m, "fine", 0.0),
        "after kill -9 and a restart: {m:?}"
    );
    // One more callback: fine's and gone's counters in this process.
    accepted(bin.addr, &runway("dead-gauge-after-restart")).await;
    let delivered = "hookrelay_deliveries_total{subscriber=\"fine\",outcome=\"delivered\"}";
    metrics_until(bin.admin, secs(10), "fine's delivery and gone's third letter", |m| {
        m.contains(&(delivered.to_string(), 1.0)) && has(m, "gone", 3.0)
    })
    .await;
    // A reload removes gone (letters left: kept) and fine (none: every
    // series of it goes, its counters and attempt histogram too: they
    // stayed, /metrics growing with every subscriber ever configured).
    base.clone().subscriber(Subscriber::new("flaky", flaky.url())).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    let m = metrics(bin.admin).await;
    assert!(has(&m, "gone", 3.0) && has(&m, "flaky", 0.0), "{m:?}");
    let fine: Vec<&String> = m
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains("subscriber=\"fine\""))
        .collect();
    assert!(fine.is_empty(), "fine removed with nothing left keeps series: {fine:?}");
    let gone = "hookrelay_deliveries_total{subscriber=\"gone\",outcome=\"dead\"}";
    assert!(
        m.iter().any(|(k, _)| k == gone),
        "gone's history with letters kept: {m:?}"
    );
    bin.kill9();
}
