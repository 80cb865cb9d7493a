//! Store-level tests of the media archive work: written with its event, one
//! try per URL however many callbacks name it, retries on the media due index,
//! `after_archive` deliveries parked without an attempt and woken by the
//! last URL, media retention of shared files, and what event retention keeps.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::tests::opts;
use crate::store::*;

async fn open(dir: &std::path::Path) -> Store {
    let s = Store::open_sled(&opts(dir)).unwrap();
    s.register(&Topology {
        routes: vec![("runway".into(), vec!["now".into(), "later".into()])],
    })
    .await
    .unwrap();
    s
}

fn event(task: &str, urls: &[&str], ms: u64) -> NewEvent {
    NewEvent {
        meta: EventMeta {
            route: "runway".into(),
            received_ms: ms,
            source: None,
            content_type: Some("application/json".into()),
            headers: Vec::new(),
            subscribers: vec!["now".into(), "later".into()],
            dedupe_fallback: false,
            origin: Origin::Callback,
        },
        dedupe_hash: Sha256::digest(task.as_bytes()).into(),
        body: Bytes::from(format!(r#"{{"data":{{"task_id":"{task}"}}}}"#)),
        media: urls.iter().map(|u| u.to_string()).collect(),
        media_after_verify: false,
        task: None,
    }
}

fn stored(sha: &str) -> MediaOutcome {
    MediaOutcome::Stored(StoredFile {
        location: format!("/m/{sha}"),
        sha256: sha.to_string(),
        size: 7,
        content_type: Some("video/mp4".into()),
    })
}

async fn states(store: &Store, id: EventId) -> Vec<&'static str> {
    let items = store.event_media(id).await.unwrap().unwrap_or_default();
    items.iter().map(|i| i.state.name()).collect()
}

const A: &str = "https://file.com/k/a.mp4";
const B: &str = "https://file.com/m/b.png";

#[tokio::test]
async fn a_url_named_by_several_callbacks_is_tried_once_and_serves_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = crate::clock::now_ms();
    let e1 = store.append(event("t1", &[A, B], now)).await.unwrap().id;
    let e2 = store.append(event("t2", &[A], now)).await.unwrap().id;
    // A duplicate callback adds no work.
    assert!(store.append(event("t1", &[A, B], now)).await.unwrap().duplicate);
    assert_eq!(store.media_queue(), Some(2));
    let mut src = store.media_source();
    let mut work = src.take(10, now).await.unwrap();
    work.sort_by(|a, b| a.url.cmp(&b.url));
    let urls: Vec<&str> = work.iter().map(|w| w.url.as_str()).collect();
    assert_eq!(urls, [A, B]);
    assert!(
        src.take(10, now).await.unwrap().is_empty(),
        "handed-out work is not handed out again"
    );
    assert_eq!(states(&store, e1).await, ["pending", "pending"]);
    for (w, sha) in work.iter().zip(["aa", "bb"]) {
        store.record_media(&w.ticket, stored(&sha.repeat(32))).await.unwrap();
        src.done(&w.ticket).await;
    }
    assert_eq!(states(&store, e1).await, ["stored", "stored"]);
    assert_eq!(states(&store, e2).await, ["stored"]);
    assert_eq!(store.media_queue(), Some(0));
    assert!(src.take(10, now + 1).await.unwrap().is_empty());
    let f = store.media_file("aa".repeat(32)).await.unwrap().unwrap();
    assert_eq!((f.size, f.content_type.as_deref()), (7, Some("video/mp4")));
    assert!(store.media_file("cc".repeat(32)).await.unwrap().is_none());
    store.close().await;
}

#[tokio::test]
async fn retries_wait_on_the_due_index_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = crate::clock::now_ms();
    let id = {
        let store = open(dir.path()).await;
        let id = store.append(event("t1", &[A], now)).await.unwrap().id;
        let mut src = store.media_source();
        let w = src.take(1, now).await.unwrap().remove(0);
        let outcome = MediaOutcome::Retry {
            due_ms: now + 60_000,
            error: "file.com answered HTTP 503".into(),
        };
        store.record_media(&w.ticket, outcome).await.unwrap();
        src.done(&w.ticket).await;
        assert!(src.take(1, now + 59_000).await.unwrap().is_empty(), "not due yet");
        assert_eq!(src.next_due(), Some(now + 60_000));
        store.close().await;
        id
    };
    let store = open(dir.path()).await;
    let mut src = store.media_source();
    let w = src.take(1, now + 60_000).await.unwrap().remove(0);
    assert_eq!((w.attempts, w.step, w.route.as_str()), (1, 1, "runway"));
    let item = &store.event_media(id).await.unwrap().unwrap()[0];
    assert_eq!(item.last_error.as_deref(), Some("file.com answered HTTP 503"));
    let failed = MediaOutcome::Failed {
        error: "gave up".into(),
    };
    store.record_media(&w.ticket, failed).await.unwrap();
    assert_eq!(states(&store, id).await, ["failed"]);
    // A new callback naming a failed URL tries it again from the start.
    store.append(event("t2", &[A], now + 61_000)).await.unwrap();
    src.done(&w.ticket).await;
    let again = src.take(1, now + 61_000).await.unwrap().remove(0);
    assert_eq!(again.step, 0);
    store.close().await;
}

/// The work a delivery source hands out at `now`.
async fn later_take(src: &mut WorkSource, now: u64) -> Vec<Work> {
    let work = src.take(10, now).await.unwrap();
    for w in &work {
        assert_eq!(w.event.meta.route, "runway");
    }
    work
}

/// The `later` subscriber's delivery of the one event appended, deferred
/// for its media (parked until a re-check 5 minutes on): its work source
/// and the re-check time.
async fn deferred(store: &Store, now: u64) -> (WorkSource, u64) {
    let mut later = store.work_source("later").unwrap();
    let w = later_take(&mut later, now).await.remove(0);
    let recheck = now + 300_000;
    store
        .record(&w.ticket, None, Outcome::Defer { due_ms: recheck })
        .await
        .unwrap();
    later.done(&w.ticket).await;
    (later, recheck)
}

#[tokio::test]
async fn deferred_deliveries_cost_no_attempt_and_wake_when_the_media_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = crate::clock::now_ms();
    let id = store.append(event("t1", &[A, B], now)).await.unwrap().id;
    let (mut later, recheck) = deferred(&store, now).await;
    let view = store.event_view(id).await.unwrap().unwrap();
    let d = view.deliveries.iter().find(|d| d.subscriber == "later").unwrap();
    assert_eq!(d.state, DeliveryState::AwaitingMedia { due_ms: recheck });
    assert_eq!((d.attempts, d.history.len()), (0, 0), "no attempt counted");
    assert_eq!(view.status(), "pending");
    assert!(later_take(&mut later, now + 1).await.is_empty(), "parked");

    let mut media = store.media_source();
    let tries = media.take(10, now).await.unwrap();
    store
        .record_media(&tries[0].ticket, stored(&"aa".repeat(32)))
        .await
        .unwrap();
    assert!(
        later_take(&mut later, now + 2).await.is_empty(),
        "one URL still pending"
    );
    store
        .record_media(
            &tries[1].ticket,
            MediaOutcome::Failed {
                error: "refused".into(),
            },
        )
        .await
        .unwrap();
    // The last URL made it due now (well before the re-check time).
    let again = later_take(&mut later, crate::clock::now_ms()).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempts, again[0].step), (0, 0), "the schedule is untouched");
    store
        .record(&again[0].ticket, Some(attempt(1, now)), Outcome::Delivered)
        .await
        .unwrap();
    later.done(&again[0].ticket).await;
    let view = store.event_view(id).await.unwrap().unwrap();
    let d = view.deliveries.iter().find(|d| d.subscriber == "later").unwrap();
    assert_eq!((d.state.clone(), d.attempts), (DeliveryState::Delivered, 1));
    assert!(later_take(&mut later, recheck + 1).await.is_empty(), "no stray due row");
    store.close().await;
}

fn attempt(n: u32, ms: u64) -> Attempt {
    Attempt {
        attempt: n,
        at_ms: ms,
        duration_ms: 1,
        status: Some(200),
        error: None,
    }
}

#[tokio::test]
async fn a_deferral_recorded_after_the_media_finished_is_due_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = crate::clock::now_ms();
    store.append(event("t1", &[A], now)).await.unwrap();
    let mut later = store.work_source("later").unwrap();
    let w = later_take(&mut later, now).await.remove(0);
    // The lane saw the media pending; the archiver finishes before the lane records.
    let mut media = store.media_source();
    let t = media.take(1, now).await.unwrap().remove(0);
    store.record_media(&t.ticket, stored(&"aa".repeat(32))).await.unwrap();
    store
        .record(&w.ticket, None, Outcome::Defer { due_ms: now + 300_000 })
        .await
        .unwrap();
    later.done(&w.ticket).await;
    assert_eq!(later_take(&mut later, crate::clock::now_ms()).await.len(), 1);
    store.close().await;
}

#[tokio::test(start_paused = true)]
async fn media_retention_deletes_a_shared_file_with_its_last_url_and_event_retention_keeps_url_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let t0 = crate::clock::now_ms() - 10_000;
    let e1 = store.append(event("t1", &[A], t0)).await.unwrap().id;
    let mut media = store.media_source();
    let w = media.take(1, t0).await.unwrap().remove(0);
    store.record_media(&w.ticket, stored(&"aa".repeat(32))).await.unwrap();
    media.done(&w.ticket).await;
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    // Another URL with the same bytes, finished later.
    store.append(event("t2", &[B], t0 + 5_000)).await.unwrap();
    let w = media.take(1, t0 + 5_000).await.unwrap().remove(0);
    store.record_media(&w.ticket, stored(&"aa".repeat(32))).await.unwrap();

    // Event retention removes the delivered events but not the URL rows.
    let mut now_src = store.work_source("now").unwrap();
    let mut later_src = store.work_source("later").unwrap();
    for src in [&mut now_src, &mut later_src] {
        for w in src.take(10, t0 + 6_000).await.unwrap() {
            store
                .record(&w.ticket, Some(attempt(1, t0)), Outcome::Delivered)
                .await
                .unwrap();
            src.done(&w.ticket).await;
        }
    }
    assert_eq!(store.sweep(crate::clock::now_ms() + 1).await.unwrap(), 2);
    assert!(store.event_media(e1).await.unwrap().is_none());
    assert!(
        store.media_file("aa".repeat(32)).await.unwrap().is_some(),
        "URL rows outlive events"
    );
    let (recent, waiting) = store.recent_media(10).await.unwrap();
    assert_eq!((recent.len(), waiting.len()), (2, 0));

    // Media retention: the first URL expires, the file stays for the second.
    let (removed, files) = store.sweep_media(t0 + 1).await.unwrap();
    assert_eq!((removed, files.len()), (0, 0), "recorded after t0: nothing expired");
    let first_final = recent[1].at_ms;
    let (removed, files) = store.sweep_media(first_final + 1).await.unwrap();
    assert_eq!(removed, 1);
    assert!(files.is_empty(), "another URL still refers to the file");
    let (removed, files) = store.sweep_media(crate::clock::now_ms() + 1).await.unwrap();
    assert_eq!((removed, files), (1, vec!["aa".repeat(32)]));
    assert!(store.media_file("aa".repeat(32)).await.unwrap().is_none());
    store.close().await;
}

/// A callback stored to be verified (`verify = "fetch"`) has no media work
/// until it is verified; then its work is the one ingest would have written,
/// once however often the verdict is written (a restart asks again).
#[tokio::test]
async fn media_of_a_callback_to_verify_is_written_once_it_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = crate::clock::now_ms();
    let id = to_verify(&store, now).await;
    assert_eq!(store.media_queue(), Some(0));
    assert!(store.media_source().take(10, now).await.unwrap().is_empty());
    assert!(store.event_media(id).await.unwrap().unwrap_or_default().is_empty());
    assert!(store.media_deferred(id).await.unwrap());
    for _ in 0..2 {
        store
            .add_verified_media(id, "runway", vec![A.into(), B.into()])
            .await
            .unwrap();
    }
    assert_eq!(store.media_queue(), Some(2));
    assert!(!store.media_deferred(id).await.unwrap());
    assert_eq!(states(&store, id).await, ["pending", "pending"]);
    let work = store.media_source().take(10, crate::clock::now_ms()).await.unwrap();
    assert_eq!(work.len(), 2);
}

/// An operator's retry: nothing while the callback's media waits for its
/// verification (the API's `409`: it was `Some(0)`); once verified, only a
/// failed URL is queued again, from the start of the schedule, its tries
/// kept; a stored or pending one is left as it is.
#[tokio::test]
async fn an_operators_retry_queues_only_failed_urls_of_verified_media() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = crate::clock::now_ms();
    let id = to_verify(&store, now).await;
    assert_eq!(store.retry_media(id).await.unwrap(), None, "waits for its verification");
    store
        .add_verified_media(id, "runway", vec![A.into(), B.into()])
        .await
        .unwrap();
    assert_eq!(store.retry_media(id).await.unwrap(), Some(0), "both pending");
    let mut src = store.media_source();
    let work = src.take(2, crate::clock::now_ms()).await.unwrap();
    let failed = work.iter().find(|w| w.url == A).unwrap();
    let error = "gave up".to_string();
    store
        .record_media(&failed.ticket, MediaOutcome::Failed { error })
        .await
        .unwrap();
    src.done(&failed.ticket).await;
    assert_eq!(store.media_queue(), Some(1), "B still waits");
    assert_eq!(store.retry_media(id).await.unwrap(), Some(1));
    assert_eq!(store.media_queue(), Some(2));
    assert_eq!(states(&store, id).await, ["pending", "pending"]);
    let again = src.take(2, crate::clock::now_ms()).await.unwrap();
    assert_eq!(again.len(), 1, "B is still handed out: {again:?}");
    assert_eq!((again[0].url.as_str(), again[0].attempts, again[0].step), (A, 1, 0));
    assert_eq!(store.retry_media(id).await.unwrap(), Some(0), "nothing failed now");
}

/// A callback naming A and B stored on a route that verifies it first: its
/// media waits for the verdict.
async fn to_verify(store: &Store, now: u64) -> EventId {
    let ev = NewEvent {
        media_after_verify: true,
        ..event("t1", &[A, B], now)
    };
    store.append(ev).await.unwrap().id
}

/// Review of stop 55: an event waiting for a URL that failed for good and
/// that a newer callback queued again was not a waiter of the new try (only
/// the newer callback was): its `after_archive` delivery waited for its
/// re-check, minutes after the try ended.
#[tokio::test]
async fn an_earlier_event_is_woken_by_the_new_try_of_a_url_a_newer_callback_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let now = crate::clock::now_ms();
    let first = store.append(event("t1", &[A, B], now)).await.unwrap().id;
    let (mut later, _) = deferred(&store, now).await;
    let mut media = store.media_source();
    let tries = media.take(10, now).await.unwrap();
    let try_of = |url: &str| tries.iter().find(|t| t.url == url).unwrap().ticket.clone();
    let failed = MediaOutcome::Failed {
        error: "refused".into(),
    };
    store.record_media(&try_of(A), failed).await.unwrap();
    // A newer callback names the failed URL: tried again.
    let second = store.append(event("t2", &[A], now + 1)).await.unwrap().id;
    store.record_media(&try_of(B), stored(&"bb".repeat(32))).await.unwrap();
    media.done(&try_of(A)).await;
    media.done(&try_of(B)).await;
    let again = media.take(10, now + 2).await.unwrap();
    assert_eq!(again.iter().map(|t| t.url.as_str()).collect::<Vec<_>>(), vec![A]);
    store
        .record_media(&again[0].ticket, stored(&"aa".repeat(32)))
        .await
        .unwrap();
    let due: Vec<EventId> = later_take(&mut later, crate::clock::now_ms())
        .await
        .iter()
        .map(|w| w.event.id)
        .collect();
    assert!(
        due.contains(&first),
        "the earlier event waits for its re-check: {due:?}"
    );
    assert!(due.contains(&second), "{due:?}");
    store.close().await;
}

/// The media review of stop 59: a URL that failed under a route without a
/// provider key, named again by a route with one, was tried as the first
/// route's (the row kept it): its expired URL never refreshed. Tried again
/// for an event, it is that event's route's (an operator's retry too).
#[tokio::test]
async fn a_failed_url_tried_again_for_another_route_is_that_routes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store
        .register(&Topology {
            routes: vec![
                ("runway".into(), vec!["now".into(), "later".into()]),
                ("keyed".into(), vec!["k".into()]),
            ],
        })
        .await
        .unwrap();
    let now = crate::clock::now_ms();
    let mut media = store.media_source();
    let fail = |store: &Store, w: &MediaWork| {
        let (store, ticket) = (store.clone(), w.ticket.clone());
        async move {
            let failed = MediaOutcome::Failed { error: "gone".into() };
            store.record_media(&ticket, failed).await.unwrap();
        }
    };
    let first = store.append(event("t1", &[A], now)).await.unwrap().id;
    let tries = media.take(10, now).await.unwrap();
    assert_eq!(tries[0].route, "runway");
    fail(&store, &tries[0]).await;
    media.done(&tries[0].ticket).await;
    let mut keyed = event("t2", &[A], now + 1);
    keyed.meta.route = "keyed".into();
    keyed.meta.subscribers = vec!["k".into()];
    store.append(keyed).await.unwrap();
    let again = media.take(10, now + 2).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|w| (w.url.as_str(), w.route.as_str()))
            .collect::<Vec<_>>(),
        vec![(A, "keyed")]
    );
    fail(&store, &again[0]).await;
    media.done(&again[0].ticket).await;
    // The operator retries the first event's media: tried as runway's.
    assert_eq!(store.retry_media(first).await.unwrap(), Some(1));
    let third = media.take(10, crate::clock::now_ms()).await.unwrap();
    assert_eq!(
        third.iter().map(|w| w.route.as_str()).collect::<Vec<_>>(),
        vec!["runway"]
    );
    store.close().await;
}
