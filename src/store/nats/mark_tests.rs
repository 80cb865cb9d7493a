//! Cluster mode: a callback's settling mark that cannot be written (the task
//! row kept changing under it, or NATS failed each try) leaves the task's
//! work unacknowledged, so the task is polled again and its next poll
//! settles it; acknowledged, the task stayed open and was never polled.

use super::tasks::{FAIL_MARK_WRITES, SETTLE_BEFORE_POLL_WRITE};
use crate::ingest::contested::crash_tests::{event, open_nats, register_due, rt, taken, NatsServer};
use crate::store::*;

fn mark() -> Option<TaskMark> {
    Some(TaskMark {
        task_id: "t1".into(),
        terminal: true,
        provider_state: Some("success".into()),
        if_new: false,
    })
}

#[test]
fn a_settling_mark_that_cannot_be_written_leaves_the_task_to_its_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let callback = rt().block_on(async {
        let s = open_nats(&nats.1).await;
        register_due(&s).await;
        // This relay holds the task's work (its poll is under way) when the
        // final callback comes, and every settling write fails.
        taken(&s).await;
        FAIL_MARK_WRITES.with(|f| f.set(true));
        let callback = s
            .append(event(Origin::Callback, "https://cdn.example/a.mp4", mark()))
            .await
            .unwrap();
        FAIL_MARK_WRITES.with(|f| f.set(false));
        let t = s.task(Some("runway".into()), "t1".into()).await.unwrap().unwrap();
        assert!(!t.state.is_final(), "{t:?}");
        callback
        // The relay stops; its held work goes to the next reconciler.
    });
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        taken(&s).await;
        // The poll finds the result stored: a duplicate, which settles the task.
        let again = s
            .append(event(Origin::Poll, "https://cdn.example/a.mp4", mark()))
            .await
            .unwrap();
        assert!(again.duplicate && again.id == callback.id, "{again:?}");
        let t = s.task(Some("runway".into()), "t1".into()).await.unwrap().unwrap();
        assert!(t.state.is_final() && t.event == Some(callback.id), "{t:?}");
        s.close().await;
    });
}

/// A poll's outcome is written at the revision it read: a callback's mark
/// settling the task in between is read again, not overwritten (the task
/// was reopened as `polling`, and polled once more).
#[test]
fn a_polls_write_does_not_reopen_a_task_settled_since_it_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    rt().block_on(async {
        let s = open_nats(&nats.1).await;
        register_due(&s).await;
        taken(&s).await;
        SETTLE_BEFORE_POLL_WRITE.with(|f| f.set(true));
        let polled = TaskUpdate::Polled {
            next_poll_ms: crate::clock::now_ms() + 60_000,
            provider_state: Some("generating".into()),
            error: None,
        };
        let t = s.update_task("runway", "t1", polled).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::CalledBack, "{t:?}");
        let t = s.task(Some("runway".into()), "t1".into()).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::CalledBack, "{t:?}");
        s.close().await;
    });
}
