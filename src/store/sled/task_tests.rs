//! Store-level tests of expected tasks: registration, settling by the
//! appended event (callback, recovered poll, poll duplicating a callback),
//! poll updates, the schedule across a reopen, and retention.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::store::*;

/// A small store with route `runway` and its subscriber `s`.
async fn open(dir: &std::path::Path) -> Store {
    crate::store::sled::tests::open(dir, &["s"]).await
}

fn event(task: &str, origin: Origin, terminal: bool, ms: u64) -> NewEvent {
    NewEvent {
        meta: EventMeta {
            route: "runway".into(),
            received_ms: ms,
            source: None,
            content_type: Some("application/json".into()),
            headers: Vec::new(),
            subscribers: vec!["s".into()],
            dedupe_fallback: false,
            origin,
        },
        dedupe_hash: Sha256::digest(task.as_bytes()).into(),
        body: Bytes::from(format!(r#"{{"code":200,"data":{{"task_id":"{task}"}}}}"#)),
        media: Vec::new(),
        media_after_verify: false,
        task: Some(TaskMark {
            task_id: task.into(),
            terminal,
            provider_state: None,
            if_new: false,
        }),
    }
}

fn new_task(id: &str, now: u64, first: Option<u64>) -> NewTask {
    NewTask {
        route: "runway".into(),
        task_id: id.into(),
        now_ms: now,
        first_poll_ms: first,
        terminal_keys: Vec::new(),
    }
}

async fn state(s: &Store, id: &str) -> TaskState {
    s.task(Some("runway".into()), id.into()).await.unwrap().unwrap().state
}

#[tokio::test]
async fn events_settle_their_tasks_in_the_same_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    for id in ["cb", "polled", "both", "progress"] {
        let t = s.register_task(new_task(id, 1000, Some(5000))).await.unwrap();
        assert_eq!((t.state, t.next_poll_ms), (TaskState::Waiting, Some(5000)));
    }
    // Registering again changes nothing.
    let again = s.register_task(new_task("cb", 2000, None)).await.unwrap();
    assert_eq!((again.registered_ms, again.next_poll_ms), (1000, Some(5000)));

    let a = s.append(event("cb", Origin::Callback, true, 1100)).await.unwrap();
    let t = s.task(None, "cb".into()).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.event, t.next_poll_ms),
        (TaskState::CalledBack, Some(a.id), None)
    );

    // A failed poll first: its error must not outlive the recovery.
    let failed = TaskUpdate::Polled {
        next_poll_ms: 1150,
        provider_state: None,
        error: Some("network: connection refused; retry in 20s".into()),
    };
    s.update_task("runway", "polled", failed).await.unwrap();
    let p = s.append(event("polled", Origin::Poll, true, 1200)).await.unwrap();
    assert!(!p.duplicate);
    let t = s.task(None, "polled".into()).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.polls, t.last_error),
        (TaskState::Recovered, 2, None),
        "the recovering poll is counted and the earlier error cleared"
    );
    // The late real callback is a duplicate and does not reopen the task.
    let late = s.append(event("polled", Origin::Callback, true, 1300)).await.unwrap();
    assert_eq!((late.id, late.duplicate), (p.id, true));
    assert_eq!(state(&s, "polled").await, TaskState::Recovered);

    let c = s.append(event("both", Origin::Callback, true, 1400)).await.unwrap();
    let dup = s.append(event("both", Origin::Poll, true, 1500)).await.unwrap();
    assert_eq!((dup.id, dup.duplicate), (c.id, true));
    assert_eq!(state(&s, "both").await, TaskState::CalledBack);

    s.append(event("progress", Origin::Callback, false, 1600))
        .await
        .unwrap();
    assert_eq!(state(&s, "progress").await, TaskState::Waiting);
    // An unregistered task's callback is stored as always.
    assert!(
        !s.append(event("stranger", Origin::Callback, true, 1700))
            .await
            .unwrap()
            .duplicate
    );
    assert!(s.task(None, "stranger".into()).await.unwrap().is_none());

    let (due, next) = s.due_tasks(10_000, 100).await.unwrap();
    assert_eq!(due.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(), ["progress"]);
    assert_eq!(next, None);
    let stats = s.task_stats().await.unwrap();
    let count = |st| stats.by_state.iter().find(|(x, _)| *x == st).unwrap().1;
    assert_eq!(count(TaskState::CalledBack), 2);
    assert_eq!(count(TaskState::Recovered), 1);
    assert_eq!(count(TaskState::Waiting), 1);
    assert_eq!(stats.oldest_open_ms, Some(1000));
    s.close().await;
}

#[tokio::test]
async fn polls_reschedule_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.register_task(new_task("t", 1000, Some(2000))).await.unwrap();
    s.register_task(new_task("u", 1000, Some(9000))).await.unwrap();
    let (due, next) = s.due_tasks(2500, 10).await.unwrap();
    assert_eq!((due.len(), next), (1, Some(9000)));
    let update = TaskUpdate::Polled {
        next_poll_ms: 3000,
        provider_state: Some("generating".into()),
        error: None,
    };
    let t = s.update_task("runway", "t", update).await.unwrap().unwrap();
    assert_eq!((t.state, t.polls, t.next_poll_ms), (TaskState::Polling, 1, Some(3000)));
    assert!(
        s.due_tasks(2500, 10).await.unwrap().0.is_empty(),
        "the old slot is gone"
    );
    s.close().await;
    drop(s);
    let s = open(dir.path()).await;
    let (due, _) = s.due_tasks(3000, 10).await.unwrap();
    assert_eq!(due[0].task_id, "t");
    assert_eq!(due[0].provider_state.as_deref(), Some("generating"));
    let gave = TaskUpdate::GaveUp { error: "no".into() };
    assert_eq!(
        s.update_task("runway", "t", gave).await.unwrap().unwrap().state,
        TaskState::GaveUp
    );
    // A final task ignores later polls.
    let late = TaskUpdate::Polled {
        next_poll_ms: 4000,
        provider_state: None,
        error: None,
    };
    assert_eq!(
        s.update_task("runway", "t", late).await.unwrap().unwrap().state,
        TaskState::GaveUp
    );
    assert!(s
        .update_task("runway", "nope", TaskUpdate::GaveUp { error: "x".into() })
        .await
        .unwrap()
        .is_none());
    let listed = s
        .tasks(TaskQuery {
            route: Some("runway".into()),
            state: Some(TaskState::GaveUp),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    s.close().await;
}

#[tokio::test]
async fn retention_keeps_open_tasks_that_are_polled_and_settled_ones_the_retention_after_they_settled() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    fn ids(p: &'static str) -> impl Iterator<Item = String> {
        (0..5).map(move |i| format!("{p}{i}"))
    }
    // Registered long ago: open and polled, open and never polled (their
    // route did not reconcile), given up now; and one registered lately.
    for (a, b, c) in ids("polled")
        .zip(ids("unpolled"))
        .zip(ids("gave"))
        .map(|((a, b), c)| (a, b, c))
    {
        s.register_task(new_task(&a, 1000, Some(2000))).await.unwrap();
        s.register_task(new_task(&b, 1000, None)).await.unwrap();
        s.register_task(new_task(&c, 1000, Some(2000))).await.unwrap();
        let gave = TaskUpdate::GaveUp {
            error: "no result".into(),
        };
        s.update_task("runway", &c, gave).await.unwrap();
    }
    s.register_task(new_task("young", 5000, None)).await.unwrap();
    let now = crate::clock::now_ms();
    // Everything was registered before the cutoff; only the tasks nobody
    // polls go, across steps.
    assert_eq!(s.sweep_tasks(2000).await.unwrap(), 5);
    for id in ids("unpolled") {
        assert!(s.task(None, id).await.unwrap().is_none());
    }
    // A task given up goes the retention after it gave up; the open ones stay,
    // schedule included, however old.
    assert_eq!(s.sweep_tasks(now + 1).await.unwrap(), 5 + 1);
    let (due, _) = s.due_tasks(u64::MAX, 100).await.unwrap();
    let mut left: Vec<_> = due.iter().map(|t| t.task_id.clone()).collect();
    left.sort();
    assert_eq!(left, ids("polled").collect::<Vec<_>>());
    for id in ids("polled") {
        assert_eq!(state(&s, &id).await, TaskState::Waiting);
    }
    // Once settled, they go the retention after that.
    for id in ids("polled") {
        let cb = s.append(event(&id, Origin::Callback, true, 3000)).await.unwrap();
        assert!(!cb.duplicate);
    }
    assert_eq!(s.sweep_tasks(2000).await.unwrap(), 0, "settled after the cutoff");
    assert_eq!(s.sweep_tasks(u64::MAX).await.unwrap(), 5);
    s.close().await;
}

#[tokio::test]
async fn a_retry_without_an_attempt_keeps_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let mut ev = event("v", Origin::Callback, true, 1000);
    ev.task = None;
    s.append(ev).await.unwrap();
    let mut src = s.work_source("s").unwrap();
    let w = src.take(10, 1000).await.unwrap().remove(0);
    // Waiting for the provider to confirm it: no attempt was made.
    s.record(&w.ticket, None, Outcome::Retry { due_ms: 2000 })
        .await
        .unwrap();
    src.done(&w.ticket).await;
    assert!(src.take(10, 1500).await.unwrap().is_empty());
    let w = src.take(10, 2000).await.unwrap().remove(0);
    assert_eq!((w.step, w.attempts), (0, 0));
    s.close().await;
}

#[tokio::test]
async fn tasks_registered_without_a_schedule_get_one_when_the_route_starts_reconciling() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let before = crate::clock::now_ms();
    let later = before + 3_600_000;
    // Registered long ago (its first poll is due now), registered "later"
    // (due `after` past its registration), settled, already scheduled.
    for i in 0..8 {
        s.register_task(new_task(&format!("old{i}"), 1000 + i, None))
            .await
            .unwrap();
        s.register_task(new_task(&format!("new{i}"), later + i, None))
            .await
            .unwrap();
    }
    s.register_task(new_task("cb", 1000, None)).await.unwrap();
    s.append(event("cb", Origin::Callback, true, 1100)).await.unwrap();
    s.register_task(new_task("sched", 1000, Some(5000))).await.unwrap();
    let after = |route: &str| [(route.to_string(), std::time::Duration::from_secs(600))];
    assert_eq!(
        s.schedule_tasks(&after("runway")).await.unwrap(),
        16,
        "every unscheduled open task, across steps"
    );
    let now = crate::clock::now_ms();
    for i in 0..8 {
        let t = s.task(Some("runway".into()), format!("old{i}")).await.unwrap().unwrap();
        assert!(t.next_poll_ms.is_some_and(|d| (before..=now).contains(&d)), "{t:?}");
        let t = s.task(Some("runway".into()), format!("new{i}")).await.unwrap().unwrap();
        assert_eq!(t.next_poll_ms, Some(later + i + 600_000), "{t:?}");
        assert_eq!(t.state, TaskState::Waiting);
    }
    let t = s.task(Some("runway".into()), "cb".into()).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.next_poll_ms),
        (TaskState::CalledBack, None),
        "a settled task stays unscheduled"
    );
    let t = s.task(Some("runway".into()), "sched".into()).await.unwrap().unwrap();
    assert_eq!(t.next_poll_ms, Some(5000), "a scheduled task keeps its poll");
    // The schedule the reconciler reads has them, and a second pass finds none.
    let (due, _) = s.due_tasks(now, 100).await.unwrap();
    let mut ids: Vec<_> = due.iter().map(|t| t.task_id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["old0", "old1", "old2", "old3", "old4", "old5", "old6", "old7", "sched"]
    );
    assert_eq!(s.schedule_tasks(&after("runway")).await.unwrap(), 0);
    assert_eq!(
        s.schedule_tasks(&after("nope")).await.unwrap(),
        0,
        "an unknown route has no tasks"
    );
}

/// A task registered after its final event was stored (a fast callback beat
/// the registration) registers settled by that event, found by the preset
/// dedupe keys of its final callbacks; a polled result registers it
/// `recovered`; without a stored event it waits as before.
#[tokio::test]
async fn a_task_registered_after_its_final_event_is_settled_by_it() {
    use crate::dedupe::DedupeKey;
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let key = DedupeKey::Preset(crate::preset::KIE_RUNWAY);
    let with_keys = |id: &str| NewTask {
        terminal_keys: key.terminal_hashes(None, id),
        ..new_task(id, 2000, Some(9000))
    };
    let mut cb = event("early", Origin::Callback, true, 1000);
    cb.dedupe_hash = key.terminal_hashes(None, "early")[1]; // a failure
    let stored = s.append(cb).await.unwrap();
    let mut polled = event("polled-early", Origin::Poll, true, 1000);
    polled.dedupe_hash = key.terminal_hashes(None, "polled-early")[0]; // a success
    let recovered = s.append(polled).await.unwrap();

    let t = s.register_task(with_keys("early")).await.unwrap();
    assert_eq!(
        (t.state, t.event, t.next_poll_ms),
        (TaskState::CalledBack, Some(stored.id), None)
    );
    let t = s.register_task(with_keys("polled-early")).await.unwrap();
    assert_eq!((t.state, t.event), (TaskState::Recovered, Some(recovered.id)));
    let t = s.register_task(with_keys("late")).await.unwrap();
    assert_eq!((t.state, t.next_poll_ms), (TaskState::Waiting, Some(9000)));
    assert!(s
        .due_tasks(10_000, 10)
        .await
        .unwrap()
        .0
        .iter()
        .all(|t| t.task_id == "late"));
}

/// Under `store.min_free` a reconciler's result that duplicates a stored
/// callback (a `verify = "fetch"` route stores its callbacks without a task
/// mark) still settles the task: the duplicate writes no event rows but its
/// task's. Before, the duplicate's `200` skipped the task, which stayed due
/// and was polled again every round while the disk stayed under the floor.
#[tokio::test]
async fn a_poll_duplicating_a_callback_settles_its_task_under_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.register_task(new_task("v", 1000, Some(5000))).await.unwrap();
    let mut unmarked = event("v", Origin::Callback, true, 1100);
    unmarked.task = None;
    let stored = s.append(unmarked).await.unwrap();
    assert_eq!(state(&s, "v").await, TaskState::Waiting);
    s.close().await;
    drop(s);
    // Reopened with a floor no disk can meet: every new event refused.
    let opts = Options {
        min_free: u64::MAX / 4,
        ..crate::store::sled::tests::opts(dir.path())
    };
    let s = Store::open_sled(&opts).unwrap();
    s.register(&crate::store::sled::tests::topology(&["s"])).await.unwrap();
    let refused = s.append(event("new", Origin::Callback, true, 1150)).await;
    assert!(matches!(refused, Err(StoreError::NoRoom(_))), "{refused:?}");
    let dup = s.append(event("v", Origin::Poll, true, 1200)).await.unwrap();
    assert_eq!((dup.id, dup.duplicate), (stored.id, true));
    let t = s.task(None, "v".into()).await.unwrap().unwrap();
    assert_ne!(t.state, TaskState::Waiting, "{t:?}");
    assert_eq!((t.event, t.next_poll_ms), (Some(stored.id), None), "{t:?}");
    let (due, _) = s.due_tasks(10_000, 100).await.unwrap();
    assert!(due.is_empty(), "still due: {due:?}");
    s.close().await;
}

#[tokio::test]
async fn a_listing_holds_the_newest_tasks_up_to_its_limit_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    // Registered in an order unlike the listing's; two at the same time.
    for (id, at) in [("c", 3000), ("a", 1000), ("e", 5000), ("b", 5000), ("d", 4000)] {
        s.register_task(new_task(id, at, None)).await.unwrap();
    }
    let listed = |limit| {
        let s = &s;
        async move {
            s.tasks(TaskQuery {
                route: None,
                state: None,
                limit,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.task_id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(3).await, ["b", "e", "d"], "newest first, then by task id");
    assert_eq!(listed(10).await, ["b", "e", "d", "c", "a"]);
    assert_eq!(listed(0).await, ["b"], "a limit of 0 lists one");
    s.close().await;
}
