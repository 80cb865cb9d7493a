use super::*;

#[test]
fn a_replay_queues_finished_deliveries_and_its_own_lost_marks_only() {
    let now = 10_000_000;
    for s in [DeliveryState::Dead, DeliveryState::Delivered, DeliveryState::Skipped] {
        assert!(replay_queues(&s, 3, 0, now), "{s:?}");
    }
    assert!(!replay_queues(&DeliveryState::Pending, 0, 0, now));
    let old = now - GRACE_MS;
    assert!(!replay_queues(
        &DeliveryState::AwaitingMedia { due_ms: old },
        0,
        old,
        now
    ));
    // A replay's mark (due when set, schedule from the start), its grace over.
    assert!(replay_queues(&DeliveryState::Retrying { due_ms: old }, 0, old, now));
    // Still within the grace of the replay that marked it.
    assert!(!replay_queues(
        &DeliveryState::Retrying { due_ms: old + 1 },
        0,
        old + 1,
        now
    ));
    // An ordinary retry, however overdue (review 27 #3): left to it.
    assert!(!replay_queues(
        &DeliveryState::Retrying { due_ms: old - 5_000 },
        1,
        old - 6_000,
        now
    ));
    assert!(!replay_queues(&DeliveryState::Retrying { due_ms: old }, 1, old, now));
    assert!(!replay_queues(
        &DeliveryState::Retrying { due_ms: old },
        0,
        old - 1,
        now
    ));
}
