//! [`release_now`]: what a pull brought beyond the forwarder's free slots.
//! A message delivered here whose acknowledgement is unconfirmed is
//! acknowledged again (releasing it would offer it to the local service a
//! second time), unless it is offered for a later attempt than the one
//! delivered here (whether that is an operator's replay is the relay's to
//! say, asked when it is offered again with a slot free: `probe_tests`); one
//! being delivered here is left to that delivery's answer; the rest are
//! released.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::acker::{End, Finished};
use super::active::Active;
use super::release::{release_now, release_unstarted};
use super::status::Status;
use super::unacked::Unacked;
use crate::pull::wire::Message;

fn message(id: &str, attempt: u32) -> Message {
    Message {
        id: id.to_string(),
        route: "t".into(),
        attempt,
        headers: Default::default(),
        body: String::new(),
        round: None,
    }
}

#[tokio::test]
async fn extra_messages_are_released_but_one_delivered_here_is_acknowledged_again() {
    let status = Status::new("http://relay/pull/laptop".into(), false);
    let active = Active::default();
    let unacked: Arc<Unacked> = Arc::default();
    unacked.delivered("evt_done", 2, None);
    unacked.delivered("evt_earlier", 1, None);
    let earlier = Instant::now() + Duration::from_secs(30);
    let keep_until = Instant::now() + Duration::from_secs(60);
    assert!(active.offer("evt_running", earlier, 1));
    let (done, mut rx) = mpsc::channel::<Finished>(8);
    let brought = vec![
        message("evt_done", 2),
        message("evt_new", 1),
        message("evt_running", 2),
        message("evt_earlier", 2),
    ];
    release_now(brought, keep_until, &active, &unacked, &done, &status).await;
    drop(done);
    let mut sent = Vec::new();
    while let Some(f) = rx.recv().await {
        sent.push((f.id, f.end, f.attempt, f.keep_until == keep_until));
    }
    assert_eq!(
        sent,
        [
            ("evt_done".to_string(), End::Delivered, 2, true),
            ("evt_new".to_string(), End::Release, 1, true),
            ("evt_earlier".to_string(), End::Release, 2, true),
        ],
        "acknowledged again with the hand-out's attempt; the new one released; the running one left to its \
         delivery; one delivered here for an earlier attempt released"
    );
    assert_eq!((status.not_twice(), status.handed_back()), (1, 2));
    assert!(unacked.contains("evt_done"), "kept until the relay confirms");
    let map = active.map();
    assert_eq!(map.len(), 1, "only the running delivery is still active");
    let running = &map["evt_running"];
    assert_eq!(
        (running.until, running.attempt),
        (keep_until, 2),
        "its answer now settles the later hand-out"
    );
}

/// A message brought beyond the free slots whose acknowledgement is on its
/// way is released, not acknowledged again: that answer may confirm it
/// (the offer is then an operator's replay, to post), and no slot waits
/// for it here (review of stop 75's mend: acknowledged unsent, a replay
/// was lost).
#[tokio::test]
async fn an_extra_message_whose_acknowledgement_is_on_its_way_is_released() {
    let status = Status::new("http://relay/pull/laptop".into(), false);
    let active = Active::default();
    let unacked: Arc<Unacked> = Arc::default();
    unacked.delivered("evt_done", 1, None);
    let acking = unacked.acking(&["evt_done".to_string()]);
    let keep_until = Instant::now() + Duration::from_secs(60);
    let (done, mut rx) = mpsc::channel::<Finished>(8);
    release_now(
        vec![message("evt_done", 2)],
        keep_until,
        &active,
        &unacked,
        &done,
        &status,
    )
    .await;
    drop((done, acking));
    let f = rx.recv().await.expect("an outcome");
    assert_eq!((f.id.as_str(), f.end), ("evt_done", End::Release));
    assert_eq!(status.not_twice(), 0);
}

/// At a stop a pull's messages not started are left to the stop's release,
/// but one delivered here whose acknowledgement is unconfirmed is
/// acknowledged again, also when offered for a later attempt: there is no
/// asking the relay then, and released, it would be posted a second time by
/// the forwarder restarted with nothing remembered (review of stop 76's
/// change).
#[tokio::test]
async fn at_a_stop_an_offer_of_a_later_attempt_delivered_here_is_acknowledged_again() {
    let status = Status::new("http://relay/pull/laptop".into(), false);
    let active = Active::default();
    let unacked: Arc<Unacked> = Arc::default();
    unacked.delivered("evt_done", 1, None);
    let (done, mut rx) = mpsc::channel::<Finished>(8);
    let answer = crate::pull::wire::Messages {
        messages: vec![message("evt_done", 2), message("evt_new", 1)],
        lease_ms: Some(60_000),
    };
    release_unstarted(answer, Instant::now(), &active, &unacked, &done, &status).await;
    drop(done);
    let f = rx.recv().await.expect("an outcome");
    assert_eq!((f.id.as_str(), f.end, f.attempt), ("evt_done", End::Delivered, 2));
    assert!(rx.recv().await.is_none(), "the new one is left to the stop's release");
    assert!(active.map().contains_key("evt_new") && !active.map().contains_key("evt_done"));
}
