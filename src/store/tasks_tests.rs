//! A verified callback settling an expected task ([`super::TaskUpdate::Verified`]).

use super::*;

/// A verified callback settles a task its poll left open or gave up
/// on (the callback came after all), never one settled already; a poll
/// changes only an open task, and a verified callback is no poll.
#[test]
fn a_verified_callback_settles_an_open_or_given_up_task_only() {
    let event = EventId::from_parts(7, 0);
    let verified = TaskUpdate::Verified { event };
    let gave_up = TaskUpdate::GaveUp { error: "x".into() };
    for (state, settles) in [
        (TaskState::Waiting, true),
        (TaskState::Polling, true),
        (TaskState::GaveUp, true),
        (TaskState::CalledBack, false),
        (TaskState::Recovered, false),
    ] {
        assert_eq!(verified.applies_to(state), settles, "{state}");
        assert_eq!(gave_up.applies_to(state), !state.is_final(), "{state}");
    }
    let mut task = Task::new(&NewTask {
        route: "r".into(),
        task_id: "t".into(),
        now_ms: 1,
        first_poll_ms: Some(5),
        terminal_keys: Vec::new(),
    });
    task.polled(&verified, 9);
    assert_eq!(
        (task.state, task.next_poll_ms, task.event, task.polls, task.updated_ms),
        (TaskState::CalledBack, None, Some(event), 0, 9)
    );
}
