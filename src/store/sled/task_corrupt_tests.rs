//! An expected-task row that does not decode (written torn, say), met by a
//! poll's outcome: the outcome is recorded on a fresh row, as registration
//! and the settling event already do, instead of failing every poll while
//! the row stays unreadable and its schedule row stays behind.
//!
//! A registration over an unreadable row drops the task's schedule rows, and
//! the stand-in `due_tasks` makes for an unreadable row (which matches every
//! schedule row of its task) is handed out once a round. From review 31,
//! findings 3 and 4.

use sha2::{Digest, Sha256};

use super::task_codec as tc;
use super::tests::{event, opts, topology};
use super::SledStore;
use crate::store::*;

fn new_task(id: &str, now: u64, first: u64) -> NewTask {
    new_task_keyed(id, now, first, Vec::new())
}

fn new_task_keyed(id: &str, now: u64, first: u64, keys: Vec<[u8; 32]>) -> NewTask {
    NewTask {
        route: "runway".into(),
        task_id: id.into(),
        now_ms: now,
        first_poll_ms: Some(first),
        terminal_keys: keys,
    }
}

/// Every task row of the store made unreadable.
fn corrupt_task_rows(s: &SledStore) {
    let keys: Vec<_> = s.inner.tree.scan_prefix([tc::G]).keys().map(|k| k.unwrap()).collect();
    assert!(!keys.is_empty(), "a task row");
    for k in keys {
        s.inner.tree.insert(k, b"\xff\xff".to_vec()).unwrap();
    }
}

fn schedule_rows(s: &SledStore) -> Vec<(u64, String)> {
    s.inner
        .tree
        .scan_prefix([tc::P])
        .keys()
        .filter_map(|k| tc::parse_task_due(&k.unwrap()).map(|(due, _, id)| (due, id)))
        .collect()
}

#[tokio::test]
async fn a_poll_of_an_unreadable_task_row_is_recorded_on_a_fresh_row() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&opts(dir.path())).unwrap();
    s.register(&topology(&["s"])).await.unwrap();
    s.register_task(new_task("still", 1000, 5000)).await.unwrap();
    corrupt_task_rows(&s);
    let polled = TaskUpdate::Polled {
        next_poll_ms: 9000,
        provider_state: Some("generating".into()),
        error: None,
    };
    let t = s
        .update_task("runway", "still", polled)
        .await
        .expect("the poll is recorded")
        .expect("the task is there");
    assert_eq!(
        (t.state, t.next_poll_ms, t.provider_state.as_deref()),
        (TaskState::Polling, Some(9000), Some("generating"))
    );
    assert_eq!(s.task(Some("runway"), "still").unwrap().unwrap(), t, "readable again");
    assert_eq!(
        schedule_rows(&s),
        [(9000, "still".to_string())],
        "the old schedule row is gone"
    );

    s.register_task(new_task("gone", 1000, 5000)).await.unwrap();
    corrupt_task_rows(&s);
    let gave_up = TaskUpdate::GaveUp {
        error: "404 task not found".into(),
    };
    let t = s.update_task("runway", "gone", gave_up).await.unwrap().unwrap();
    assert_eq!((t.state, t.next_poll_ms), (TaskState::GaveUp, None));
    assert!(
        schedule_rows(&s).iter().all(|(_, id)| id != "gone"),
        "{:?}",
        schedule_rows(&s)
    );
    s.close().await;
}

#[tokio::test]
async fn a_settled_task_whose_row_becomes_unreadable_is_not_polled_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&opts(dir.path())).unwrap();
    s.register(&topology(&["s"])).await.unwrap();
    // Registered (schedule row at 5000); its row torn; its final callback
    // stored without a mark (it came before the new registration).
    s.register_task(new_task("done", 1000, 5000)).await.unwrap();
    corrupt_task_rows(&s);
    s.append(event("done", &["s"], 1500)).await.unwrap();
    // Registered again: settled by the stored callback, and the schedule
    // row at 5000 goes with the unreadable row.
    let key: [u8; 32] = Sha256::digest(b"done").into();
    let t = s
        .register_task(new_task_keyed("done", 2000, 9000, vec![key]))
        .await
        .unwrap();
    assert_eq!(t.state, TaskState::CalledBack);
    assert_eq!(schedule_rows(&s), [], "a stale schedule row stays behind");
    let (due, _) = s.due_tasks(20_000, 100).unwrap();
    assert!(due.is_empty(), "a settled task is due: {due:?}");
    // Its row torn again, later.
    corrupt_task_rows(&s);
    let (due, _) = s.due_tasks(20_000, 100).unwrap();
    assert!(
        due.is_empty(),
        "a task settled by its callback is handed out for a poll again (its result stored and delivered a second time): {due:?}"
    );
    s.close().await;
}

#[tokio::test]
async fn an_unreadable_task_is_handed_out_once_per_round() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&opts(dir.path())).unwrap();
    s.register(&topology(&["s"])).await.unwrap();
    s.register_task(new_task("twice", 1000, 5000)).await.unwrap();
    corrupt_task_rows(&s);
    // Registered again over the torn row: a schedule row at 6000, the one at
    // 5000 goes.
    s.register_task(new_task("twice", 2000, 6000)).await.unwrap();
    assert_eq!(schedule_rows(&s), [(6000, "twice".to_string())]);
    corrupt_task_rows(&s);
    let (due, _) = s.due_tasks(20_000, 100).unwrap();
    let n = due.iter().filter(|t| t.task_id == "twice").count();
    assert_eq!(n, 1, "one task polled {n} times in one round: {due:?}");
    // A stale schedule row left by an older relay: still one stand-in.
    let k = s.inner.tree.scan_prefix([tc::P]).keys().next().unwrap().unwrap();
    let (_, route, _) = tc::parse_task_due(&k).unwrap();
    s.inner
        .tree
        .insert(tc::task_due(5000, route, "twice"), Vec::<u8>::new())
        .unwrap();
    let (due, _) = s.due_tasks(20_000, 100).unwrap();
    let n = due.iter().filter(|t| t.task_id == "twice").count();
    assert_eq!(n, 1, "one task polled {n} times in one round: {due:?}");
    s.close().await;
}

/// A polled result's first write on a `verify = "fetch"` route, a duplicate
/// that does not settle its task (`if_new`), leaves an unreadable task row
/// and its schedule rows alone: dropping them there, a relay stopped before
/// the write that settles the task left it unscheduled, never polled again.
#[tokio::test]
async fn a_duplicate_that_does_not_settle_leaves_an_unreadable_task_and_its_schedule_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&opts(dir.path())).unwrap();
    s.register(&topology(&["s"])).await.unwrap();
    s.register_task(new_task("t1", 1000, 5000)).await.unwrap();
    s.append(event("t1", &["s"], 1500)).await.unwrap();
    corrupt_task_rows(&s);
    let mut polled = event("t1", &["s"], 1600);
    polled.meta.origin = Origin::Poll;
    polled.task = Some(TaskMark {
        task_id: "t1".into(),
        terminal: true,
        provider_state: Some("success".into()),
        if_new: true,
    });
    assert!(s.append(polled).await.unwrap().duplicate);
    assert_eq!(schedule_rows(&s), [(5000, "t1".to_string())]);
}
