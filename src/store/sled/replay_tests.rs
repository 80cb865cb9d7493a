//! Replays against what is already queued: a delivery already due is not
//! queued twice, but its retry schedule starts again; a subscriber removed
//! from the config keeps its dead letters (no lane would send them).

use super::tests::{attempt, event, open, topology};
use crate::store::*;

#[tokio::test]
async fn an_overdue_retry_replayed_is_not_queued_twice_and_starts_its_schedule_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    let now = crate::clock::now_ms();
    let id = store.append(event("late", &["a"], now)).await.unwrap().id;
    let mut src = store.work_source("a").unwrap();
    let w = src.take(1, now).await.unwrap().remove(0);
    // Failed; its retry came due while the circuit kept it back.
    let due = now + 1;
    store
        .record(&w.ticket, Some(attempt(1, 500, now)), Outcome::Retry { due_ms: due })
        .await
        .unwrap();
    src.done(&w.ticket).await;
    let r = store.replay_event(id, None).await.unwrap().unwrap();
    assert!(!r[0].queued, "already due: {r:?}");
    let taken = src.take(10, due + 5).await.unwrap();
    assert_eq!(taken.len(), 1, "sent once");
    assert_eq!(
        (taken[0].event.id, taken[0].step, taken[0].attempts),
        (id, 0, 1),
        "schedule from the start"
    );
    store.close().await;
}

#[tokio::test]
async fn a_removed_subscribers_dead_letters_stay_when_all_are_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a", "b"]).await;
    let now = crate::clock::now_ms();
    let id = store.append(event("dead", &["a", "b"], now)).await.unwrap().id;
    for sub in ["a", "b"] {
        let mut src = store.work_source(sub).unwrap();
        let w = src.take(1, now).await.unwrap().remove(0);
        let dead = Outcome::Dead {
            error: "HTTP 410".into(),
        };
        store.record(&w.ticket, Some(attempt(1, 410, now)), dead).await.unwrap();
        src.done(&w.ticket).await;
    }
    // `b` leaves the config.
    store.register(&topology(&["a"])).await.unwrap();
    let counts = store.replay_dead_letters(None).await.unwrap();
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), [("a".to_string(), 1)]);
    let left = store.dead_letters(None, 10).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|d| (d.event, d.subscriber.as_str()))
            .collect::<Vec<_>>(),
        [(id, "b")],
        "b's dead letter is still listed, not queued for a lane that does not exist"
    );
    let r = store.replay_event(id, None).await.unwrap().unwrap();
    assert_eq!(r.iter().map(|r| r.subscriber.as_str()).collect::<Vec<_>>(), ["a"]);
    store.close().await;
}
