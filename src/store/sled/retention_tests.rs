//! Retention on the embedded store: what a sweep deletes and keeps, what it
//! writes when there is nothing to delete, and the routes' sequences across
//! a restart after it emptied their logs.

use super::tests::{attempt, deliver_some, event, open, opts, sled};
use crate::store::*;

#[tokio::test]
async fn retention_keeps_unfinished_work_and_fresh_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    let day = 86_400_000;
    let t0 = crate::clock::now_ms() - 30 * day;
    let delivered = store.append(event("delivered", &["a"], t0)).await.unwrap().id;
    let died_late = store.append(event("died-late", &["a"], t0)).await.unwrap().id;
    let waiting = store.append(event("waiting", &["a"], t0)).await.unwrap().id;
    let unread = store.append(event("unread", &["a"], t0)).await.unwrap().id;
    let mut src = store.work_source("a").unwrap();
    let work = src.take(3, t0).await.unwrap();
    let cutoff = t0 + 14 * day;
    for w in work {
        let outcome = if w.event.id == delivered {
            Outcome::Delivered
        } else if w.event.id == died_late {
            Outcome::Dead {
                error: "gave up".into(),
            }
        } else {
            Outcome::Retry { due_ms: cutoff + day }
        };
        store
            .record(&w.ticket, Some(attempt(1, 500, t0)), outcome)
            .await
            .unwrap();
        src.done(&w.ticket).await;
    }
    // The dead letter died after the cutoff (recorded "now"): it stays.
    assert_eq!(store.sweep(cutoff).await.unwrap(), 1);
    assert!(store.event(delivered).await.unwrap().is_none());
    for id in [died_late, waiting, unread] {
        assert!(store.event(id).await.unwrap().is_some(), "{id} kept");
    }
    // The dedupe key went with the event: the same callback is new again.
    let again = store.append(event("delivered", &["a"], cutoff)).await.unwrap();
    assert!(!again.duplicate);
    // Later, the dead letter's own retention has passed.
    assert_eq!(store.sweep(crate::clock::now_ms() + 15 * day).await.unwrap(), 1);
    assert!(store.event(died_late).await.unwrap().is_none());
    store.close().await;
}

/// Routes that came and went by reloads stay registered: a sweep with
/// nothing to delete writes nothing, and a commit writes only the `seq`
/// rows that moved. Before, each route's sweep step committed (a disk sync)
/// and every commit wrote a row per route ever registered: thousands of
/// routes kept an idle relay busy (resource review, stop 62).
#[tokio::test]
async fn a_sweep_with_nothing_to_delete_writes_nothing_however_many_routes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sled(&opts(dir.path())).unwrap();
    let routes = 300;
    let topology = Topology {
        routes: (0..routes).map(|i| (format!("r{i}"), vec!["s".to_string()])).collect(),
    };
    store.register(&topology).await.unwrap();
    for i in 0..routes {
        let mut ev = event(&format!("t{i}"), &["s"], crate::clock::now_ms());
        ev.meta.route = format!("r{i}");
        store.append(ev).await.unwrap();
    }
    // The first sweep may write the tails the appends moved; nothing is old.
    assert_eq!(store.sweep(0).await.unwrap(), 0);
    let before = sled(&store).rows_written();
    assert_eq!(store.sweep(0).await.unwrap(), 0);
    assert_eq!(
        sled(&store).rows_written(),
        before,
        "a sweep with nothing to delete wrote rows"
    );
    // A commit of its own (the same topology registered again, as a reload
    // does) writes no `seq` row that did not move: the first writes the 300
    // the appends moved, the second none.
    store.register(&topology).await.unwrap();
    let before = sled(&store).rows_written();
    store.register(&topology).await.unwrap();
    let wrote = sled(&store).rows_written() - before;
    assert!(wrote < 10, "{wrote} rows for a commit that changed nothing");
    store.close().await;
}

/// A route's sequence goes on across a restart after retention emptied its
/// log: its `seq` row (written only when it moved, stop 62) carries it, so
/// a subscriber's cursor stays behind the next event, which is delivered,
/// not taken as already read.
#[tokio::test]
async fn a_restart_after_retention_emptied_the_log_counts_on() {
    let dir = tempfile::tempdir().unwrap();
    let day = 86_400_000;
    let t0 = crate::clock::now_ms() - 30 * day;
    {
        let store = open(dir.path(), &["a"]).await;
        for i in 0..3 {
            store.append(event(&format!("old-{i}"), &["a"], t0)).await.unwrap();
        }
        let mut src = store.work_source("a").unwrap();
        assert_eq!(deliver_some(&store, &mut src, 3, t0).await.len(), 3);
        assert_eq!(store.sweep(t0 + 14 * day).await.unwrap(), 3);
        store.close().await;
    }
    let store = open(dir.path(), &["a"]).await;
    let now = crate::clock::now_ms();
    let fresh = store.append(event("after-restart", &["a"], now)).await.unwrap().id;
    let stats = store.subscriber_stats().await.unwrap();
    let a = stats.iter().find(|s| s.name == "a").unwrap();
    assert_eq!(a.backlog, 1, "{stats:?}");
    let mut src = store.work_source("a").unwrap();
    assert_eq!(deliver_some(&store, &mut src, 5, now).await, [fresh]);
    store.close().await;
}
