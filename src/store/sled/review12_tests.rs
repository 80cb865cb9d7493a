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
    let id = a_retry_due_for_a(&store, now).await;
    // Reload: `a` moves to route `other` (say the route was renamed).
    store.register(&two_routes(&["x"], &["b", "a"])).await.unwrap();
    {
        let mut src = store.work_source("a").unwrap();
        let got = src.take(10, now).await.unwrap();
        assert!(
            got.is_empty(),
            "the new route's cursor hands out the old route's retry: {got:?}"
        );
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

/// The same move seen from the counts: the moved subscriber's new route
/// shows only its own work, and the old route's — a waiting retry and an
/// event not yet read — is listed under the old route (as removed work is),
/// until the subscriber is on that route again and gets both.
#[tokio::test]
async fn the_work_a_subscriber_left_on_its_old_route_counts_there_not_on_its_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sled(&opts(dir.path())).unwrap();
    store.register(&two_routes(&["a"], &["b"])).await.unwrap();
    let now = crate::clock::now_ms();
    let retried = a_retry_due_for_a(&store, now).await;
    let unread = store.append(event("t2", &["a"], now)).await.unwrap().id;
    store.register(&two_routes(&["x"], &["b", "a"])).await.unwrap();
    let pending = |stats: &[SubscriberStats], route: &str| {
        stats
            .iter()
            .find(|s| s.name == "a" && s.route.as_deref() == Some(route))
            .map(|s| s.backlog)
    };
    let stats = store.subscriber_stats().await.unwrap();
    assert_eq!(pending(&stats, "other"), Some(0), "{stats:?}");
    assert_eq!(pending(&stats, "runway"), Some(2), "{stats:?}");
    let mut src = store.work_source("a").unwrap();
    assert_eq!(src.depth(), 0, "the old route's work is not the new route's backlog");
    let mut fresh = event("t3", &["a"], now);
    fresh.meta.route = "other".into();
    let fresh = store.append(fresh).await.unwrap().id;
    let got: Vec<_> = src
        .take(10, now)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.event.id)
        .collect();
    assert_eq!(got, vec![fresh]);
    drop(src);
    // Back on `runway` (after a restart, too): both come.
    store.close().await;
    drop(store);
    let store = Store::open_sled(&opts(dir.path())).unwrap();
    store.register(&two_routes(&["a"], &["b"])).await.unwrap();
    let mut src = store.work_source("a").unwrap();
    let mut got: Vec<_> = src
        .take(10, now)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.event.id)
        .collect();
    got.sort();
    assert_eq!(got, vec![retried, unread]);
    store.close().await;
}

/// An `after_archive` delivery parked until its re-check time is handed out
/// at that time (the lane's attempt will look at the media); the archiver
/// finishes the event's last URL meanwhile, and `release` moves the parked
/// due row — the one in flight — to now. The store as it is then: the
/// work source, the event, the copy in flight.
async fn rechecked_while_its_media_is_stored(dir: &std::path::Path) -> (Store, WorkSource, EventId, Work) {
    use bytes::Bytes;
    use sha2::{Digest, Sha256};
    let store = Store::open_sled(&opts(dir)).unwrap();
    store
        .register(&Topology {
            routes: vec![("runway".into(), vec!["later".into()])],
        })
        .await
        .unwrap();
    let now = crate::clock::now_ms();
    let url = "https://file.com/k/a.mp4";
    let ev = NewEvent {
        meta: EventMeta {
            route: "runway".into(),
            received_ms: now,
            source: None,
            content_type: Some("application/json".into()),
            headers: Vec::new(),
            subscribers: vec!["later".into()],
            dedupe_fallback: false,
            origin: Origin::Callback,
        },
        dedupe_hash: Sha256::digest(b"m1").into(),
        body: Bytes::from_static(br#"{"data":{"task_id":"m1"}}"#),
        media: vec![url.to_string()],
        media_after_verify: false,
        task: None,
    };
    let id = store.append(ev).await.unwrap().id;
    let mut src = store.work_source("later").unwrap();
    let w = src.take(10, now).await.unwrap().remove(0);
    // Parked; its re-check time (MEDIA_RECHECK later in real life) has come.
    store
        .record(&w.ticket, None, Outcome::Defer { due_ms: now - 1 })
        .await
        .unwrap();
    src.done(&w.ticket).await;
    let mut first = src.take(10, now).await.unwrap();
    assert_eq!(
        first.iter().map(|w| w.event.id).collect::<Vec<_>>(),
        [id],
        "the re-check"
    );
    // The archiver stores the URL while that attempt runs.
    let mut media = store.media_source();
    let tries = media.take(10, now).await.unwrap();
    store
        .record_media(
            &tries[0].ticket,
            MediaOutcome::Stored(StoredFile {
                location: "/m/aa".into(),
                sha256: "aa".repeat(32),
                size: 7,
                content_type: None,
            }),
        )
        .await
        .unwrap();
    (store, src, id, first.remove(0))
}

/// The cursor only knew the old (due, id) as handed out, so it handed the
/// delivery out a second time while the first copy was still in flight. A
/// push lane has no check against a copy (the pull lane drops it with
/// `leases.holds`): both attempts find the media final and both POST — a
/// duplicate with no crash involved.
#[tokio::test]
async fn a_parked_delivery_in_flight_at_its_recheck_is_not_handed_out_again_by_the_media_wake() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut src, _, first) = rechecked_while_its_media_is_stored(dir.path()).await;
    let second = src.take(10, crate::clock::now_ms()).await.unwrap();
    assert!(
        second.is_empty(),
        "handed out twice at once: {:?} while {:?} is in flight",
        second.iter().map(|w| &w.ticket).collect::<Vec<_>>(),
        first.ticket
    );
    store.close().await;
}

/// The attempt in flight read the media before the wake and parks the
/// delivery again for its next re-check: the media is final by then, so it
/// goes out once that attempt is done — not a re-check interval later, and
/// once.
#[tokio::test]
async fn a_recheck_that_parks_again_after_the_media_wake_is_sent_once_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut src, id, first) = rechecked_while_its_media_is_stored(dir.path()).await;
    assert!(src.take(10, crate::clock::now_ms()).await.unwrap().is_empty());
    let recheck = crate::clock::now_ms() + 300_000;
    store
        .record(&first.ticket, None, Outcome::Defer { due_ms: recheck })
        .await
        .unwrap();
    src.done(&first.ticket).await;
    let now = crate::clock::now_ms();
    let mut again = src.take(10, now).await.unwrap();
    assert_eq!(
        again.iter().map(|w| w.event.id).collect::<Vec<_>>(),
        [id],
        "not sent once its media is final"
    );
    let w = again.remove(0);
    store
        .record(&w.ticket, Some(attempt(1, 200, now)), Outcome::Delivered)
        .await
        .unwrap();
    src.done(&w.ticket).await;
    assert!(src.take(10, recheck + 1).await.unwrap().is_empty(), "sent twice");
    assert_eq!(src.depth(), 0);
    store.close().await;
}

/// The attempt in flight saw the media final and delivered: the row the
/// wake moved goes with its record, nothing is sent again.
#[tokio::test]
async fn a_recheck_delivered_after_the_media_wake_is_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut src, _, first) = rechecked_while_its_media_is_stored(dir.path()).await;
    let now = crate::clock::now_ms();
    store
        .record(&first.ticket, Some(attempt(1, 200, now)), Outcome::Delivered)
        .await
        .unwrap();
    src.done(&first.ticket).await;
    let again = src.take(10, now + 300_000).await.unwrap();
    assert!(
        again.is_empty(),
        "sent twice: {:?}",
        again.iter().map(|w| &w.ticket).collect::<Vec<_>>()
    );
    assert_eq!(src.depth(), 0);
    store.close().await;
}

/// The sled ticket of work from a sled work source.
fn sled_ticket(w: &Work) -> super::SledTicket {
    match &w.ticket {
        Ticket::Sled(t) => t.clone(),
        _ => panic!("not a sled ticket"),
    }
}

/// A waiting retry whose result row does not decode (written torn, say):
/// its record deleted the due row, then failed on the result row, and the
/// batch went in without the due row — nothing ever offered it again. Now
/// the outcome is recorded on a new row (an error names the key) and the
/// delivery goes on.
#[tokio::test]
async fn a_retry_whose_result_row_is_unreadable_is_recorded_and_offered_again() {
    let dir = tempfile::tempdir().unwrap();
    let (s, id, mut c, t, now) = a_waiting_retry(dir.path()).await;
    s.inner
        .tree
        .insert(super::keys::result(id, t.sub), b"\xff\xff".to_vec())
        .unwrap();
    let t = sled_ticket(&c.take(10, now + 1).await.unwrap()[0]);
    s.record(&t, Some(attempt(2, 503, now + 1)), Outcome::Retry { due_ms: now + 1 })
        .await
        .expect("the outcome is recorded");
    c.done(&t).await;
    let again = c.take(10, now + 2).await.unwrap();
    assert_eq!(
        again.iter().map(|w| w.event.id).collect::<Vec<_>>(),
        [id],
        "never offered again (depth {})",
        c.depth()
    );
    let view = s.event_view(id).unwrap().unwrap();
    assert_eq!(view.deliveries[0].state, DeliveryState::Retrying { due_ms: now + 1 });
    s.close().await;
}

/// A waiting retry whose event row does not decode: it was recorded `Gone`
/// (the due row deleted, the result left `Retrying` for ever, which replay
/// leaves alone). Now it is dead-lettered, with an error naming the key:
/// listed and counted as a dead letter, and replayable.
#[tokio::test]
async fn a_retry_whose_event_row_is_unreadable_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let (s, id, mut c, t, now) = a_waiting_retry(dir.path()).await;
    s.inner
        .tree
        .insert(super::keys::log(t.route, id), b"torn".to_vec())
        .unwrap();
    let got = c.take(10, now + 1).await.unwrap();
    assert!(got.is_empty());
    let dead = s.dead_letters(Some("a"), 10).unwrap();
    assert_eq!(
        dead.letters.iter().map(|d| d.event).collect::<Vec<_>>(),
        [id],
        "not dead-lettered: depth {}",
        c.depth()
    );
    assert_eq!(dead.total, 1);
    assert!(dead.letters[0]
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("unreadable")));
    assert_eq!(c.depth(), 0);
    s.close().await;
}

/// A store with subscriber `a`, one event whose first attempt failed, and
/// its retry due now: the store, the event, `a`'s cursor, the attempt's
/// ticket and the time.
async fn a_waiting_retry(dir: &std::path::Path) -> (super::SledStore, EventId, super::Cursor, super::SledTicket, u64) {
    use super::tests::topology;
    let s = super::SledStore::open(&opts(dir)).unwrap();
    s.register(&topology(&["a"])).await.unwrap();
    let now = crate::clock::now_ms();
    let id = s.append(event("t1", &["a"], now)).await.unwrap().id;
    let mut c = s.work_source("a").unwrap();
    let t = sled_ticket(&c.take(10, now).await.unwrap()[0]);
    s.record(&t, Some(attempt(1, 503, now)), Outcome::Retry { due_ms: now })
        .await
        .unwrap();
    c.done(&t).await;
    (s, id, c, t, now)
}

/// An event for `a` whose first attempt failed, its retry due already (as
/// after any reload that comes later than the backoff).
async fn a_retry_due_for_a(store: &Store, now: u64) -> EventId {
    let id = store.append(event("t1", &["a"], now)).await.unwrap().id;
    let mut src = store.work_source("a").unwrap();
    let w = src.take(1, now).await.unwrap().remove(0);
    assert_eq!(w.event.id, id);
    store
        .record(
            &w.ticket,
            Some(attempt(1, 503, now)),
            Outcome::Retry { due_ms: now - 10 },
        )
        .await
        .unwrap();
    src.done(&w.ticket).await;
    id
}
