//! Review 12: defects of the single-host delivery path, each shown by a test
//! that fails on the code it was written against.

use super::tests::{attempt, event, opts};
use crate::store::*;

fn two_routes(runway: &[&str], other: &[&str]) -> Topology {
    Topology {
        routes: vec![
            ("runway".into(), runway.iter().map(|s| s.to_string()).collect()),
            ("other".into(), other.iter().map(|s| s.to_string()).collect()),
        ],
    }
}

/// A subscriber moved to another route by a reload (or its route renamed)
/// while one of its deliveries waits for a retry: its new cursor looks the
/// `W` row's event up in the *new* route's log, does not find it, and
/// records it `Gone` — the due row is deleted, the result row stays
/// `Retrying` for ever. Moved back, the delivery is never offered again,
/// and a replay leaves it alone (its due time has passed). README: "The
/// pending deliveries of a subscriber removed from the config are kept …
/// until it comes back".
#[tokio::test]
async fn a_retry_pending_when_its_subscriber_moves_route_is_kept_until_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sled(&opts(dir.path())).unwrap();
    store.register(&two_routes(&["a"], &["b"])).await.unwrap();
    // The retry below is due by the time the lanes look (as after any
    // reload that comes later than the backoff).
    let now = crate::clock::now_ms();
    let id = store.append(event("t1", &["a"], now)).await.unwrap().id;
    {
        let mut src = store.work_source("a").unwrap();
        let w = src.take(10, now).await.unwrap().remove(0);
        store
            .record(&w.ticket, Some(attempt(1, 503, now)), Outcome::Retry { due_ms: now - 10 })
            .await
            .unwrap();
        src.done(&w.ticket).await;
    }
    // Reload: `a` moves to route `other` (say the route was renamed).
    store.register(&two_routes(&["x"], &["b", "a"])).await.unwrap();
    {
        let mut src = store.work_source("a").unwrap();
        let got = src.take(10, now).await.unwrap();
    }
    // Reload back: `a` is on `runway` again.
    store.register(&two_routes(&["a"], &["b"])).await.unwrap();
    let mut src = store.work_source("a").unwrap();
    let got = src.take(10, now).await.unwrap();
    let view = store.event_view(id).await.unwrap().unwrap();
    let replayed = store.replay_event(id, Some("a".into())).await.unwrap().unwrap();
    let again = src.take(10, now).await.unwrap();
    assert!(
        !got.is_empty() || !again.is_empty(),
        "the retry is never offered again: state {:?}, replay queued {:?}, depth {}",
        view.deliveries[0].state,
        replayed.iter().map(|r| r.queued).collect::<Vec<_>>(),
        src.depth()
    );
    store.close().await;
}
