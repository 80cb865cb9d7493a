//! An id delivered here whose acknowledgement was never confirmed (given up
//! while the relay was away past the lease and its lapse), offered again
//! for a later attempt: the relay is asked whether it recorded that
//! delivery. Recorded (its `409` names the id `delivered`), the offer is an
//! operator's replay, posted to the local service; not recorded, the same
//! message, acknowledged again unsent. It was acknowledged unsent either
//! way: the replay was lost (stop 75's Left).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::acker::{End, Finished};
use super::acker_tests::{relay_at, serve_acks};
use super::pump_tests::{message, ok_service, rig_with, Rig, ID};
use super::unacked::Unacked;

/// [`ID`] delivered here for attempt 1, unconfirmed, and offered for
/// attempt 2 (its answer kept until `keep_until`) to a delivery task
/// asking the relay at `relay` ([`later_offer`]): the task runs `m`.
struct LaterOffer {
    rig: Rig,
    unacked: Arc<Unacked>,
    rx: mpsc::Receiver<Finished>,
    keep_until: Instant,
    m: crate::pull::wire::Message,
}

async fn later_offer(relay: &str, keep: Duration) -> LaterOffer {
    let unacked: Arc<Unacked> = Arc::default();
    unacked.delivered(ID, 1, None);
    let (done, rx) = mpsc::channel::<Finished>(4);
    let rig = rig_with(&ok_service().await, done, unacked.clone(), relay_at(relay));
    let keep_until = Instant::now() + keep;
    assert!(rig.active.offer(ID, keep_until, 2));
    let mut m = message(ID);
    m.attempt = 2;
    LaterOffer {
        rig,
        unacked,
        rx,
        keep_until,
        m,
    }
}

/// [`ID`] delivered here for attempt 1, unconfirmed, offered for attempt 2
/// with the relay answering the question `409` (`delivered` naming it when
/// `recorded`): whether it was posted, what the relay was asked, and
/// whether the id is then settled for attempt 2.
async fn offered_for_a_later_attempt(recorded: bool) -> (u64, u64, Vec<serde_json::Value>, bool) {
    let delivered = match recorded {
        true => format!(r#","delivered":["{ID}"]"#),
        false => String::new(),
    };
    let body = format!(r#"{{"error":"not leased","not_leased":["{ID}"]{delivered}}}"#);
    let (relay, asked) = serve_acks(move |_, _| (409, body.clone(), true)).await;
    let LaterOffer {
        rig: Rig { task, status, .. },
        unacked,
        mut rx,
        keep_until,
        m,
    } = later_offer(&relay, Duration::from_secs(60)).await;
    task.run(m, keep_until, unacked.holds(ID, 2, None)).await;
    let f = rx.recv().await.unwrap();
    assert_eq!((f.id.as_str(), f.end, f.attempt), (ID, End::Delivered, 2));
    let asked = asked.lock().unwrap().clone();
    (
        status.delivered(),
        status.not_twice(),
        asked,
        unacked.holds(ID, 2, None),
    )
}

#[tokio::test]
async fn a_replay_of_a_delivery_the_relay_recorded_is_posted() {
    let (posted, not_twice, asked, _) = offered_for_a_later_attempt(true).await;
    assert_eq!((posted, not_twice), (1, 0), "an operator's replay: posted");
    // The question: the acknowledgement of attempt 1, nothing else.
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["ids"], serde_json::json!([ID]));
    assert_eq!(asked[0]["attempts"], serde_json::json!({ ID: 1 }));
    for list in ["retry", "release"] {
        assert!(asked[0][list].as_array().is_none_or(|l| l.is_empty()), "{asked:?}");
    }
}

#[tokio::test]
async fn an_offer_after_a_lapse_the_relay_did_not_record_is_acknowledged_unsent() {
    let (posted, not_twice, asked, held) = offered_for_a_later_attempt(false).await;
    assert_eq!(
        (posted, not_twice),
        (0, 1),
        "the same message: acknowledged again unsent"
    );
    assert_eq!(asked.len(), 1, "asked once: {asked:?}");
    assert!(held, "still held for the attempt acknowledged again");
}

/// Confirmed, or offered for the attempt delivered here (a relay restarted
/// numbers it again), an offer is settled without asking.
#[test]
fn only_an_unconfirmed_delivery_offered_for_a_later_attempt_is_asked_about() {
    let u = Unacked::default();
    u.delivered(ID, 2, None);
    assert_eq!(u.unsure(ID, 3, None), Some(2));
    assert_eq!(u.unsure(ID, 2, None), None, "the same attempt numbered again");
    assert_eq!(u.unsure(ID, 1, None), None);
    u.acknowledged_again(ID, 3, None);
    assert_eq!(
        u.unsure(ID, 3, None),
        None,
        "acknowledged again for 3: asked about later ones only"
    );
    assert_eq!(u.unsure(ID, 4, None), Some(3));
    u.confirmed(&[ID.to_string()], &BTreeMap::from([(ID.to_string(), 3)]));
    assert_eq!(
        u.unsure(ID, 4, None),
        None,
        "confirmed: a later attempt is a replay without asking"
    );
    assert!(!u.holds(ID, 4, None));
}

/// Offered again for attempt 2 while its attempt 1 was being delivered
/// here, its answer goes for attempt 2: remembered so, an offer of attempt
/// 3 is asked about as of attempt 2 (remembered as of attempt 1, the
/// relay was asked about the lapsed attempt, which it never names: a replay
/// lost; review of stop 76's change).
#[tokio::test]
async fn an_answer_for_a_hand_out_raised_meanwhile_is_remembered_for_that_attempt() {
    let unacked: Arc<Unacked> = Arc::default();
    let (done, mut rx) = mpsc::channel::<Finished>(4);
    let gone = "http://127.0.0.1:9/pull/laptop";
    let Rig {
        task, active, _stop, ..
    } = rig_with(&ok_service().await, done, unacked.clone(), relay_at(gone));
    let keep_until = Instant::now() + Duration::from_secs(60);
    assert!(active.offer(ID, keep_until, 1));
    assert!(!active.offer(ID, keep_until, 2), "offered again while delivered here");
    task.run(message(ID), keep_until, false).await;
    assert_eq!(rx.recv().await.unwrap().attempt, 2);
    assert_eq!(unacked.unsure(ID, 3, None), Some(2));
    assert_eq!(unacked.unsure(ID, 2, None), None);
}

/// A replay found while the forwarder stops is not posted (the stop would
/// cut it off): left to the stop's release, offered again.
#[tokio::test]
async fn a_replay_found_at_a_stop_is_left_to_its_release() {
    let body = format!(r#"{{"error":"not leased","not_leased":["{ID}"],"delivered":["{ID}"]}}"#);
    let (relay, _) = serve_acks(move |_, _| (409, body.clone(), false)).await;
    let LaterOffer {
        rig: Rig {
            task,
            status,
            active,
            _stop,
        },
        unacked,
        mut rx,
        keep_until,
        m,
    } = later_offer(&relay, Duration::from_secs(60)).await;
    _stop.send_replace(true);
    task.run(m, keep_until, unacked.holds(ID, 2, None)).await;
    assert_eq!(
        (status.delivered(), status.not_twice()),
        (0, 0),
        "neither posted nor acknowledged"
    );
    assert!(rx.try_recv().is_err(), "no outcome: the stop releases it");
    assert!(active.map()[ID].outcome.is_none());
}

/// A relay whose first `cut` answers are lost (the connection cut after the
/// request came), answering the rest `409` naming [`ID`] delivered; its URL
/// and how many questions came.
async fn relay_losing_answers(cut: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // The head and the (small) body: until the JSON closes.
                while !got.ends_with(b"}") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                if n < cut {
                    return;
                }
                let body = format!(r#"{{"error":"not leased","not_leased":["{ID}"],"delivered":["{ID}"]}}"#);
                let answer = format!(
                    "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/pull/laptop"), asked)
}

/// [`ID`] delivered here for attempt 1, unconfirmed, offered for attempt 2
/// (its answer kept `keep`) by the relay at `relay`: the outcome sent to
/// the acker, and (posted, not sent twice).
async fn offered_by(relay: &str, keep: Duration) -> (Finished, (u64, u64)) {
    let LaterOffer {
        rig: Rig { task, status, .. },
        unacked,
        mut rx,
        keep_until,
        m,
    } = later_offer(relay, keep).await;
    task.run(m, keep_until, unacked.holds(ID, 2, None)).await;
    (rx.recv().await.unwrap(), (status.delivered(), status.not_twice()))
}

/// The answer to the question lost (the relay away a moment): asked again,
/// the replay is posted. Taken for "not recorded", it was acknowledged
/// unsent, the replay lost (a soak's proxy cutting 10 % of the answers: 5
/// of 53 questions, stop 76).
#[tokio::test]
async fn a_question_whose_answer_is_lost_is_asked_again() {
    let (relay, asked) = relay_losing_answers(2).await;
    posted_at_the_third_question(&relay, &asked).await;
}

/// No answer before the lease's end: released (offered again, asked about
/// then), neither posted nor acknowledged unsent.
#[tokio::test]
async fn a_question_never_answered_releases_the_offer() {
    let (relay, asked) = relay_losing_answers(usize::MAX).await;
    released_after_asking_again(&relay, &asked).await;
}

/// [`offered_by`] `relay` (its lease kept 60 s): the replay posted, at the
/// third question.
async fn posted_at_the_third_question(relay: &str, asked: &std::sync::atomic::AtomicUsize) {
    let (f, counts) = offered_by(relay, Duration::from_secs(60)).await;
    assert_eq!(
        (f.end, counts),
        (End::Delivered, (1, 0)),
        "the replay posted, not acknowledged unsent"
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// [`offered_by`] `relay` (its lease kept 800 ms): released, neither posted
/// nor acknowledged unsent, after asking again.
async fn released_after_asking_again(relay: &str, asked: &std::sync::atomic::AtomicUsize) {
    let (f, counts) = offered_by(relay, Duration::from_millis(800)).await;
    assert_eq!((f.end, f.attempt, counts), (End::Release, 2, (0, 0)));
    assert!(
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "asked again meanwhile"
    );
}

/// A relay that cannot tell (its store not answering, the record
/// unreadable: the `409` names the id `unknown`) for its first `unsure`
/// answers, then names it `delivered`; its URL and how many questions came.
async fn relay_unsure_at_first(unsure: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let (relay, _) = serve_acks(move |_, _| {
        let list = match count.fetch_add(1, Ordering::SeqCst) < unsure {
            true => "unknown",
            false => "delivered",
        };
        let body = format!(r#"{{"error":"not leased","not_leased":["{ID}"],"{list}":["{ID}"]}}"#);
        (409, body, true)
    })
    .await;
    (relay, asked)
}

/// Named `unknown`, the question is asked again, and the replay posted
/// once the relay can tell; taken for "not recorded", it was acknowledged
/// unsent (stop 76's Left).
#[tokio::test]
async fn a_relay_that_cannot_tell_is_asked_again() {
    let (relay, asked) = relay_unsure_at_first(2).await;
    posted_at_the_third_question(&relay, &asked).await;
}

/// A relay that never can tell: the offer is released (offered again,
/// asked about then), neither posted nor acknowledged unsent.
#[tokio::test]
async fn a_relay_that_never_can_tell_releases_the_offer() {
    let (relay, asked) = relay_unsure_at_first(usize::MAX).await;
    released_after_asking_again(&relay, &asked).await;
}
