//! Review 31, finding 4: the stand-in `due_tasks` makes for a due schedule
//! row whose task row does not decode matches *every* schedule row of that
//! task (its `next_poll_ms` is the row's own `due`), so the "stale schedule
//! row" filter no longer applies to it. A registration over an unreadable
//! row does not remove the old schedule row (only `unreadable_task` does),
//! so such stale rows exist: a settled task is polled again, and one task is
//! handed out twice in one round.

use sha2::{Digest, Sha256};

use super::task_codec as tc;
use super::tests::{event, opts, topology};
use super::SledStore;
use crate::store::*;

fn new_task(id: &str, now: u64, first: u64, keys: Vec<[u8; 32]>) -> NewTask {
    NewTask {
        route: "runway".into(),
        task_id: id.into(),
        now_ms: now,
        first_poll_ms: Some(first),
        terminal_keys: keys,
    }
}

/// Every task row made unreadable (each test has one task).
fn corrupt(s: &SledStore, _id: &str) {
    let keys: Vec<_> = s.inner.tree.scan_prefix([tc::G]).keys().map(|k| k.unwrap()).collect();
    assert!(!keys.is_empty());
    for k in keys {
        s.inner.tree.insert(k, b"\xff\xff".to_vec()).unwrap();
    }
}

#[tokio::test]
async fn review31_a_settled_task_whose_row_becomes_unreadable_is_not_polled_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&opts(dir.path())).unwrap();
    s.register(&topology(&["s"])).await.unwrap();
    // Registered (schedule row at 5000); its row torn; its final callback
    // stored without a mark (it came before the new registration).
    s.register_task(new_task("done", 1000, 5000, Vec::new())).await.unwrap();
    corrupt(&s, "done");
    s.append(event("done", &["s"], 1500)).await.unwrap();
    // Registered again: settled by the stored callback (the row is new and
    // readable; the schedule row at 5000 stays behind, stale).
    let key: [u8; 32] = Sha256::digest(b"done").into();
    let t = s.register_task(new_task("done", 2000, 9000, vec![key])).await.unwrap();
    assert_eq!(t.state, TaskState::CalledBack);
    let (due, _) = s.due_tasks(20_000, 100).unwrap();
    assert!(due.is_empty(), "a settled task is due: {due:?}");
    // Its row torn again, later.
    corrupt(&s, "done");
    let (due, _) = s.due_tasks(20_000, 100).unwrap();
    assert!(
        due.is_empty(),
        "a task settled by its callback is handed out for a poll again (its result stored and delivered a second time): {due:?}"
    );
    s.close().await;
}

#[tokio::test]
async fn review31_an_unreadable_task_is_handed_out_once_per_round() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&opts(dir.path())).unwrap();
    s.register(&topology(&["s"])).await.unwrap();
    s.register_task(new_task("twice", 1000, 5000, Vec::new()))
        .await
        .unwrap();
    corrupt(&s, "twice");
    // Registered again over the torn row: a schedule row at 6000, the one at
    // 5000 stays.
    s.register_task(new_task("twice", 2000, 6000, Vec::new()))
        .await
        .unwrap();
    corrupt(&s, "twice");
    let (due, _) = s.due_tasks(20_000, 100).unwrap();
    let n = due.iter().filter(|t| t.task_id == "twice").count();
    assert_eq!(n, 1, "one task polled {n} times in one round: {due:?}");
    s.close().await;
}
