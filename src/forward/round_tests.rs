//! Offers that name their round of delivery (cluster mode): an offer in the
//! round delivered here is the same message, acknowledged again unsent
//! without waiting for the earlier acknowledgement's answer or asking the
//! relay; one in another round is an operator's replay, posted. By attempt
//! numbers alone, a relay that lost its hold on the message (paused past
//! `takeover`) and confirmed the earlier acknowledgement late, while another
//! relay offered the message for a later attempt, made that offer look like
//! a replay: posted twice (pause soak, stop 77).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::acker::{End, Finished};
use super::acker_tests::{relay_at, serve_acks};
use super::pump_tests::{message, ok_service, rig_with, Rig, ID};
use super::unacked::{Unacked, CAPACITY, ROUNDS};

/// [`ID`] delivered here for attempt 1 in round "7", its acknowledgement on
/// its way, offered for attempt 2 in `round` by a relay that answers any
/// question saying it recorded attempt 1 (as the relay that lost its hold
/// does once it runs again). The acknowledgement's answer comes 300 ms
/// later, confirming attempt 1. Whether the offer was posted, the questions
/// the relay was asked, and what the task ended with.
async fn offered_while_acknowledging(round: &str) -> (u64, Vec<serde_json::Value>, Finished) {
    let body = format!(r#"{{"error":"not leased","not_leased":["{ID}"],"delivered":["{ID}"]}}"#);
    let (relay, asked) = serve_acks(move |_, _| (409, body.clone(), true)).await;
    let unacked: Arc<Unacked> = Arc::default();
    unacked.delivered(ID, 1, Some("7"));
    let (done, mut rx) = mpsc::channel::<Finished>(4);
    let Rig {
        task,
        status,
        active,
        _stop,
    } = rig_with(&ok_service().await, done, unacked.clone(), relay_at(&relay));
    let keep_until = Instant::now() + Duration::from_secs(60);
    assert!(active.offer(ID, keep_until, 2));
    let mut m = message(ID);
    m.attempt = 2;
    m.round = Some(round.to_string());
    let held = unacked.holds(ID, 2, Some(round));
    let late = {
        let unacked = unacked.clone();
        tokio::spawn(async move {
            let acking = unacked.acking(&[ID.to_string()]);
            tokio::time::sleep(Duration::from_millis(300)).await;
            unacked.confirmed(&[ID.to_string()], &BTreeMap::from([(ID.to_string(), 1)]));
            drop(acking);
        })
    };
    // The acknowledgement is on its way when the offer comes.
    while !unacked.is_acking(ID) {
        tokio::task::yield_now().await;
    }
    task.run(m, keep_until, held).await;
    late.await.unwrap();
    let f = rx.recv().await.unwrap();
    let asked = asked.lock().unwrap().clone();
    (status.delivered(), asked, f)
}

#[tokio::test]
async fn an_offer_in_the_round_delivered_here_is_not_posted_again_whatever_the_relay_confirms() {
    let (posted, asked, f) = offered_while_acknowledging("7").await;
    assert_eq!(
        posted, 0,
        "the same message, handed out again by another relay: not posted twice"
    );
    assert_eq!(
        (f.id.as_str(), f.end, f.attempt),
        (ID, End::Delivered, 2),
        "acknowledged again"
    );
    assert!(f.local.is_none(), "not posted: {:?}", f.local);
    assert!(asked.is_empty(), "its round decides, the relay is not asked: {asked:?}");
}

#[tokio::test]
async fn an_offer_in_another_round_is_posted_without_asking() {
    let (posted, asked, f) = offered_while_acknowledging("9").await;
    assert_eq!(posted, 1, "an operator's replay: posted");
    assert_eq!((f.id.as_str(), f.end, f.attempt), (ID, End::Delivered, 2));
    assert!(asked.is_empty(), "{asked:?}");
}

/// The rounds remembered: an id acknowledged again unsent in a round keeps
/// it as one delivered here; offers without a round (the embedded store)
/// are decided by attempts as before; a forgotten id forgets its rounds.
#[test]
fn rounds_are_remembered_with_their_id() {
    let u = Unacked::default();
    u.delivered(ID, 1, Some("7"));
    assert_eq!(u.by_round(ID, Some("7")), Some(true));
    assert_eq!(u.by_round(ID, Some("9")), Some(false));
    assert_eq!(u.by_round(ID, None), None, "no round: attempts decide");
    assert_eq!(u.unsure(ID, 2, None), Some(1));
    assert_eq!(u.unsure(ID, 2, Some("7")), None, "never asked when the round decides");
    assert!(u.holds(ID, 5, Some("7")) && !u.holds(ID, 1, Some("9")));
    u.confirmed(&[ID.to_string()], &BTreeMap::from([(ID.to_string(), 1)]));
    assert!(
        u.holds(ID, 3, Some("7")),
        "confirmed: a later hand-out of its round is still held"
    );
    assert!(!u.holds(ID, 3, None), "without a round, a later attempt is a replay");
    u.acknowledged_again(ID, 3, Some("8"));
    assert_eq!(u.by_round(ID, Some("8")), Some(true), "settled here in round 8");
    u.delivered("other", 1, Some("1"));
    u.confirmed(&["other".to_string()], &BTreeMap::new());
    assert_eq!(u.by_round("other", Some("1")), None, "forgotten with its id");
}

/// During an upgrade a relay before rounds offers the id with none: once
/// delivered so, its rounds are forgotten and attempts decide its next
/// offer (a round remembered from before made that delivery's next offer,
/// in its own round, look like a replay: posted twice; review of stop 78).
#[test]
fn a_delivery_in_no_round_forgets_the_rounds_before() {
    let u = Unacked::default();
    u.delivered(ID, 1, Some("0"));
    u.confirmed(&[ID.to_string()], &BTreeMap::from([(ID.to_string(), 1)]));
    u.delivered(ID, 2, None);
    assert_eq!(u.by_round(ID, Some("1")), None, "attempts decide");
    assert!(u.holds(ID, 2, Some("1")), "unconfirmed: held");
    assert_eq!(
        u.unsure(ID, 3, Some("1")),
        Some(2),
        "a later attempt: the relay is asked"
    );
}

/// Bounded: each id keeps its newest [`ROUNDS`] rounds, and its rounds go
/// with it when it is pushed out past the ids kept.
#[test]
fn rounds_are_bounded_per_id_and_go_with_their_id() {
    let u = Unacked::default();
    for r in 0..=ROUNDS {
        u.delivered(ID, 1, Some(&r.to_string()));
    }
    assert_eq!(u.by_round(ID, Some("0")), Some(false), "the oldest round forgotten");
    assert_eq!(u.by_round(ID, Some(&ROUNDS.to_string())), Some(true));
    assert_eq!(u.by_round(ID, Some("1")), Some(true));
    for n in 0..CAPACITY {
        u.delivered(&format!("x{n}"), 1, Some("0"));
    }
    assert!(!u.contains(ID), "pushed out");
    assert_eq!(u.by_round(ID, Some("1")), None, "its rounds with it");
}
