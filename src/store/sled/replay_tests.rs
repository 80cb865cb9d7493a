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
    // Handed out after the replay, it is the replay's attempt: its failure
    // waits for its retry (a replay asked during an attempt under way is
    // applied to that attempt's failure instead: `tests/replay_in_flight.rs`).
    let later = crate::clock::now_ms() + 3_600_000;
    store
        .record(
            &taken[0].ticket,
            Some(attempt(2, 500, due + 5)),
            Outcome::Retry { due_ms: later },
        )
        .await
        .unwrap();
    src.done(&taken[0].ticket).await;
    assert!(src.take(10, later - 1).await.unwrap().is_empty(), "due at once again");
    assert_eq!(src.take(10, later).await.unwrap().len(), 1);
    store.close().await;
}

/// Work read before a replay that found it due (with its schedule's old
/// step) fails — its last attempt, or a verification check that holds it
/// (no attempt): the replay is applied to that failure (due at once, the
/// schedule from the start, released), not a dead letter; and only once.
#[tokio::test]
async fn a_replay_during_the_last_attempt_or_check_is_applied_to_its_failure() {
    for attempted in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &["a"]).await;
        let now = crate::clock::now_ms();
        let id = store.append(event("last", &["a"], now)).await.unwrap().id;
        let mut src = store.work_source("a").unwrap();
        let w = src.take(1, now).await.unwrap().remove(0);
        store
            .record(
                &w.ticket,
                Some(attempt(1, 500, now)),
                Outcome::Retry { due_ms: now + 1 },
            )
            .await
            .unwrap();
        src.done(&w.ticket).await;
        let w = src.take(1, now + 5).await.unwrap().remove(0);
        assert_eq!((w.step, w.released), (1, false));
        let r = store.replay_event(id, None).await.unwrap().unwrap();
        assert!(!r[0].queued, "being sent: {r:?}");
        let dead = Outcome::Dead {
            error: "HTTP 500".into(),
        };
        let tried = attempted.then(|| attempt(2, 500, now + 5));
        store.record(&w.ticket, tried, dead.clone()).await.unwrap();
        src.done(&w.ticket).await;
        assert!(
            store.dead_letters(None, 10).await.unwrap().letters.is_empty(),
            "attempted: {attempted}"
        );
        let again = src.take(10, crate::clock::now_ms()).await.unwrap();
        assert_eq!(again.len(), 1, "due at once (attempted: {attempted})");
        assert_eq!((again[0].step, again[0].released), (0, true), "attempted: {attempted}");
        // The replay's own attempt failing is the end of it.
        store
            .record(&again[0].ticket, Some(attempt(3, 500, now + 6)), dead)
            .await
            .unwrap();
        src.done(&again[0].ticket).await;
        assert_eq!(store.dead_letters(None, 10).await.unwrap().letters.len(), 1);
        store.close().await;
    }
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
    let counts = store.replay_dead_letters(None, Default::default()).await.unwrap();
    assert_eq!(counts.requeued.into_iter().collect::<Vec<_>>(), [("a".to_string(), 1)]);
    let left = store.dead_letters(None, 10).await.unwrap().letters;
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

/// `n` events for `a`, each taken and given up on (a dead letter); their ids.
async fn dead_letters(store: &Store, src: &mut WorkSource, n: usize, now: u64) -> Vec<EventId> {
    let mut handles = Vec::new();
    for i in 0..n {
        let s = store.clone();
        let ev = event(&format!("dead-{i}"), &["a"], now);
        handles.push(tokio::spawn(async move { s.append(ev).await.unwrap().id }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    let mut taken = Vec::new();
    while taken.len() < n {
        taken.extend(src.take(n, now).await.unwrap());
    }
    kill(store, src, &taken, now).await;
    ids
}

/// Record each piece of work as given up on (HTTP 410), then done.
async fn kill(store: &Store, src: &mut WorkSource, work: &[Work], now: u64) {
    let records = work.iter().map(|w| {
        let dead = Outcome::Dead {
            error: "HTTP 410".into(),
        };
        store.record(&w.ticket, Some(attempt(w.attempts + 1, 410, now)), dead)
    });
    for r in futures_util::future::join_all(records).await {
        r.unwrap();
    }
    for w in work {
        src.done(&w.ticket).await;
    }
}

#[tokio::test]
async fn replaying_all_dead_letters_replays_each_once_though_some_die_again_meanwhile() {
    use futures_util::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    let now = crate::clock::now_ms();
    let mut src = store.work_source("a").unwrap();
    // More than one writer step's worth.
    let n = super::replay::DEAD_CHUNK + 500;
    let mut ids = dead_letters(&store, &mut src, n, now).await;
    let signal = src.signal();
    let _ = signal.notified().now_or_never();

    // The replay sends its first step to the writer and waits for it; it is
    // polled (its send may first wait for room in the writer's queue: once
    // polled only, it hung the test under load) until the lane is woken for
    // the first step's letters, and not after: they fail at once and die
    // again before the replay asks for its next step. A wake left over from
    // the set-up finds nothing to take, and the wait goes on.
    let replay = store.replay_dead_letters(None, Default::default());
    tokio::pin!(replay);
    let first = loop {
        tokio::select! {
            biased;
            _ = signal.notified() => {}
            r = &mut replay => panic!("the replay ended before its first step reached the lane: {r:?}"),
        }
        let taken = src.take(2 * n, crate::clock::now_ms()).await.unwrap();
        if !taken.is_empty() {
            break taken;
        }
    };
    let now = crate::clock::now_ms();
    assert_eq!(first.len(), super::replay::DEAD_CHUNK, "the first step's letters");
    kill(&store, &mut src, &first, now).await;

    let counts = replay.await.unwrap();
    assert_eq!(
        counts.requeued.into_iter().collect::<Vec<_>>(),
        [("a".to_string(), n)],
        "each dead letter counted once"
    );
    // Those that died again stay dead (not replayed a second time); the rest
    // are queued, once each.
    let mut dead: Vec<EventId> = store
        .dead_letters(None, 2 * n)
        .await
        .unwrap()
        .letters
        .iter()
        .map(|d| d.event)
        .collect();
    let mut again: Vec<EventId> = first.iter().map(|w| w.event.id).collect();
    dead.sort();
    again.sort();
    assert_eq!(dead, again, "dead again after their one replay");
    let now = crate::clock::now_ms();
    let mut queued: Vec<EventId> = src.take(2 * n, now).await.unwrap().iter().map(|w| w.event.id).collect();
    queued.extend(again);
    queued.sort();
    ids.sort();
    assert_eq!(queued, ids, "every letter replayed exactly once");
    store.close().await;
}

#[tokio::test]
async fn an_event_replay_releases_what_it_queues_with_the_work_a_dead_letter_replay_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a", "b"]).await;
    let now = crate::clock::now_ms();
    let id = store.append(event("held", &["a", "b"], now)).await.unwrap().id;
    let mut srcs = Vec::new();
    for sub in ["a", "b"] {
        let mut src = store.work_source(sub).unwrap();
        let w = src.take(1, now).await.unwrap().remove(0);
        assert!(!w.released, "a fresh delivery is not released");
        let dead = Outcome::Dead {
            error: "unverified: x".into(),
        };
        store.record(&w.ticket, None, dead).await.unwrap();
        src.done(&w.ticket).await;
        srcs.push(src);
    }
    let r = store.replay_event(id, Some("a".into())).await.unwrap().unwrap();
    assert!(r[0].queued, "{r:?}");
    // On a route that verifies (its check holds the letter again).
    let verifying = ["runway".to_string()].into();
    store.replay_dead_letters(None, verifying).await.unwrap();
    let later = crate::clock::now_ms() + 5;
    let a = srcs[0].take(10, later).await.unwrap();
    let b = srcs[1].take(10, later).await.unwrap();
    assert!(a.len() == 1 && a[0].released, "the event's replay released a");
    assert!(b.len() == 1 && !b[0].released, "a dead-letter replay releases nothing");
    // Failed: its retry, after a restart too, is still released.
    let retry = Outcome::Retry { due_ms: later + 1 };
    store
        .record(&a[0].ticket, Some(attempt(2, 500, later)), retry)
        .await
        .unwrap();
    srcs[0].done(&a[0].ticket).await;
    drop(srcs);
    store.close().await;
    drop(store);
    let store = open(dir.path(), &["a", "b"]).await;
    let again = store.work_source("a").unwrap().take(10, later + 5).await.unwrap();
    assert!(
        again.len() == 1 && again[0].released,
        "the release is stored with the delivery"
    );
    store.close().await;
}

/// A replay of all dead letters leaves the verdicts `verify = "fetch"`
/// wrote on a route that does not verify now (no check would hold them
/// again), counted; a failed delivery's letter is queued as always.
#[tokio::test]
async fn verdict_letters_stay_dead_on_a_route_that_no_longer_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    let now = crate::clock::now_ms();
    let mut src = store.work_source("a").unwrap();
    for (body, error) in [("u", "unverified: x"), ("d", "duplicate: 1-0, y"), ("f", "HTTP 500")] {
        store.append(event(body, &["a"], now)).await.unwrap();
        let w = src.take(1, now).await.unwrap().remove(0);
        let dead = Outcome::Dead { error: error.into() };
        store.record(&w.ticket, None, dead).await.unwrap();
        src.done(&w.ticket).await;
    }
    let done = store.replay_dead_letters(None, Default::default()).await.unwrap();
    assert_eq!((done.requeued.get("a"), done.verdicts_left), (Some(&1), 2));
    let left = store.dead_letters(None, 10).await.unwrap().letters;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left
        .iter()
        .all(|l| crate::store::result::verdict_letter(l.last_error.as_deref())));
    // Where the route verifies, they are queued (its check holds them again).
    let done = store
        .replay_dead_letters(None, ["runway".to_string()].into())
        .await
        .unwrap();
    assert_eq!((done.requeued.get("a"), done.verdicts_left), (Some(&2), 0));
    store.close().await;
}

/// `only=dead`: the check that the delivery is dead and the replay are one
/// step of the writer. A replay of all dead letters that delivered it
/// meanwhile leaves nothing for it to queue (a replay of the event, as the
/// console's stale row made, sent it a second time).
#[tokio::test]
async fn a_dead_only_replay_queues_nothing_once_another_replay_delivered_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &["a"]).await;
    let now = crate::clock::now_ms();
    let id = store.append(event("dead", &["a"], now)).await.unwrap().id;
    let mut src = store.work_source("a").unwrap();
    let w = src.take(1, now).await.unwrap().remove(0);
    let dead = Outcome::Dead { error: "500".into() };
    store.record(&w.ticket, Some(attempt(1, 500, now)), dead).await.unwrap();
    src.done(&w.ticket).await;
    // Listed dead, then replayed by a replay of all dead letters and delivered.
    store.replay_dead_letters(None, Default::default()).await.unwrap();
    let later = crate::clock::now_ms() + 5;
    let w = src.take(10, later).await.unwrap().remove(0);
    store
        .record(&w.ticket, Some(attempt(2, 200, later)), Outcome::Delivered)
        .await
        .unwrap();
    src.done(&w.ticket).await;
    let r = store.replay_dead_delivery(id, "a".into()).await.unwrap().unwrap();
    assert_eq!(r.len(), 1);
    assert!(!r[0].queued, "delivered, not dead: nothing queued: {r:?}");
    assert!(
        src.take(10, crate::clock::now_ms()).await.unwrap().is_empty(),
        "not sent again"
    );
    // Dead again: queued, and released as a replay of the event is.
    let w = {
        store.replay_event(id, None).await.unwrap();
        src.take(10, crate::clock::now_ms()).await.unwrap().remove(0)
    };
    let dead = Outcome::Dead { error: "500".into() };
    store
        .record(&w.ticket, Some(attempt(3, 500, later)), dead)
        .await
        .unwrap();
    src.done(&w.ticket).await;
    let r = store.replay_dead_delivery(id, "a".into()).await.unwrap().unwrap();
    assert!(r[0].queued, "{r:?}");
    // Taken at the clock's time now: a replay is due when it is written
    // (`later + 30` was before that on a loaded machine).
    let again = src.take(10, crate::clock::now_ms()).await.unwrap();
    assert!(again.len() == 1 && again[0].released, "queued once, released");
    assert!(store.dead_letters(None, 10).await.unwrap().letters.is_empty());
    store.close().await;
}
