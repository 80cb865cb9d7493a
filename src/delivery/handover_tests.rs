//! Tests of a stopped push lane's wait for an attempt in flight
//! ([`super::Phase`]): how long it is waited for, and when it is dropped.

use super::*;

#[tokio::test(start_paused = true)]
async fn an_attempt_sending_is_waited_for_until_its_own_deadline() {
    let phase = Phase::default();
    let prepare_until = Instant::now() + Duration::from_secs(3);
    assert!(phase.send(Duration::from_secs(10)));
    let deadline = phase.wait_until(Instant::now(), prepare_until).expect("waited for");
    assert_eq!(deadline, Instant::now() + Duration::from_secs(10) + RECORD_MARGIN);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(phase.wait_until(Instant::now(), prepare_until), Some(deadline));
    tokio::time::advance(Duration::from_secs(7)).await;
    assert_eq!(phase.wait_until(Instant::now(), prepare_until), None);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_preparing_is_dropped_at_the_bound_and_never_sends() {
    let phase = Phase::default();
    let prepare_until = Instant::now() + Duration::from_secs(3);
    assert_eq!(phase.wait_until(Instant::now(), prepare_until), Some(prepare_until));
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(phase.wait_until(Instant::now(), prepare_until), None);
    assert!(!phase.send(Duration::from_secs(10)), "dropped: must not send");
    assert_eq!(phase.wait_until(Instant::now(), prepare_until), None);
}

#[tokio::test(start_paused = true)]
async fn an_answered_attempt_is_waited_for_by_the_stores_patience_to_record_it() {
    let phase = Phase::default();
    let prepare_until = Instant::now() + Duration::from_secs(3);
    assert!(phase.send(Duration::from_secs(2)));
    tokio::time::advance(Duration::from_secs(1)).await;
    phase.recording(Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(phase.wait_until(Instant::now(), prepare_until), Some(deadline));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(phase.wait_until(Instant::now(), prepare_until), None, "bounded");
}

#[tokio::test(start_paused = true)]
async fn a_send_deadline_counts_from_the_send_not_from_the_numbering() {
    let phase = Phase::default();
    let now = Instant::now();
    assert!(phase.send(Duration::from_secs(2)));
    tokio::time::advance(Duration::from_secs(3)).await;
    phase.sending(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(2) + RECORD_MARGIN;
    assert_eq!(phase.wait_until(Instant::now(), now), Some(deadline));
    assert!(!phase.dropped(), "committed to sending: never dropped");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_attempt_never_records_as_answered() {
    let phase = Phase::default();
    let now = Instant::now();
    assert_eq!(phase.wait_until(now, now), None);
    assert!(phase.dropped());
    phase.sending(Duration::from_secs(2));
    phase.recording(Duration::from_secs(20));
    assert_eq!(phase.wait_until(Instant::now(), now), None);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_sending_after_the_reload_is_not_bounded_by_the_reload() {
    let phase = Phase::default();
    let prepare_until = Instant::now() + Duration::from_secs(3);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(phase.send(Duration::from_secs(2)));
    tokio::time::advance(Duration::from_secs(2)).await;
    let until = phase
        .wait_until(Instant::now(), prepare_until)
        .expect("still waited for");
    assert!(until > prepare_until);
}
