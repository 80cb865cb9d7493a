//! An expected-task row that does not decode (written torn, say), met by a
//! poll's outcome: the outcome is recorded on a fresh row, as registration
//! and the settling event already do, instead of failing every poll while
//! the row stays unreadable and its schedule row stays behind.

use super::task_codec as tc;
use super::tests::{opts, topology};
use super::SledStore;
use crate::store::*;

fn new_task(id: &str, now: u64, first: u64) -> NewTask {
    NewTask {
        route: "runway".into(),
        task_id: id.into(),
        now_ms: now,
        first_poll_ms: Some(first),
        terminal_keys: Vec::new(),
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
