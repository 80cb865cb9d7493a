//! The acker when the relay refuses part of an acknowledgement: a 409
//! (some ids not leased: sent again without them, or not at all when the
//! others were applied; a part naming none of its ids split), a 408 (sent
//! again), a relay away (an id kept only until its lease and lapse are
//! over), and the channel read all the while.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::acker::run;
use super::acker_tests::{ack_three, all_of, delivered, relay_at, serve_acks, DELIVERED, HANDED_BACK, RELEASED};

/// A relay that answers every acknowledgement naming [`DELIVERED`] with a
/// 409: a cluster relay that applied the others (`applied`), or one that
/// changed nothing. Every body it got is kept.
async fn conflict_relay(applied: bool) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    conflict_relay_with_limit(applied, usize::MAX).await
}

/// Like [`conflict_relay`], answering 413 (and keeping nothing) to bodies
/// over `max_body` bytes.
async fn conflict_relay_with_limit(applied: bool, max_body: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    serve_acks(move |len, v| {
        let named = v["ids"].as_array().is_some_and(|l| l.iter().any(|i| i == DELIVERED));
        let too_large = len > max_body;
        let (status, answer) = match (named, applied) {
            _ if too_large => (413, r#"{"error":"body larger than the limit"}"#.to_string()),
            (false, _) => (200, r#"{"acknowledged":0,"retried":2,"dead":0}"#.to_string()),
            (true, false) => (409, format!(r#"{{"error":"no","not_leased":["{DELIVERED}"]}}"#)),
            (true, true) => (
                409,
                format!(
                    r#"{{"error":"no","not_leased":["{DELIVERED}"],"applied":{{"acknowledged":0,"retried":2,"dead":0}}}}"#
                ),
            ),
        };
        (status, answer, !too_large)
    })
    .await
}

#[tokio::test]
async fn a_409_that_changed_nothing_sends_the_others_again_without_the_named_ids() {
    let (url, got) = conflict_relay(false).await;
    let sent = ack_three(url, got).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1]["ids"], serde_json::json!([]), "{sent:?}");
    assert_eq!(sent[1]["retry"].as_array().unwrap().len(), 1, "{sent:?}");
}

#[tokio::test]
async fn a_409_whose_others_were_applied_is_not_sent_again() {
    let (url, got) = conflict_relay(true).await;
    let sent = ack_three(url, got).await;
    assert_eq!(
        sent.len(),
        1,
        "a cluster relay applied the others where they are leased: {sent:?}"
    );
}

/// A relay with a small `server.max_body` (one id per acknowledgement, as
/// `a_relay_that_refuses_the_batch_as_too_large_gets_it_in_parts`) that
/// answers the part naming [`DELIVERED`] with a cluster 409 (the others
/// applied): the acker goes on with the parts not sent yet (review 20,
/// finding 4: it ended the batch there, and the released and handed-back
/// messages were never answered; sent again once their leases ran out).
#[tokio::test]
async fn a_409_whose_others_were_applied_still_sends_the_parts_not_sent_yet() {
    let (url, got) = conflict_relay_with_limit(true, 80).await;
    let sent = ack_three(url, got).await;
    let all = |k: &str| all_of(&sent, k);
    assert_eq!(sent.len(), 3, "one request each: {sent:?}");
    assert_eq!(all("ids"), vec![serde_json::json!(DELIVERED)], "{sent:?}");
    assert_eq!(all("release"), vec![serde_json::json!(RELEASED)], "{sent:?}");
    assert_eq!(all("retry"), vec![serde_json::json!(HANDED_BACK)], "{sent:?}");
}

/// A 408 (the relay's read timeout) is transient: the acknowledgement is
/// sent again, not given up.
#[tokio::test]
async fn a_408_is_tried_again() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let (url, accepted) = serve_acks(move |_, _| match c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
        0 => (408, r#"{"error":"request timeout"}"#.to_string(), false),
        _ => (200, r#"{"acknowledged":1,"retried":0,"dead":0}"#.to_string(), true),
    })
    .await;
    run_one_delivered(&url, Duration::from_secs(60), Duration::from_secs(10)).await;
    let got = accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["ids"][0], DELIVERED);
}

/// A 409 that names no id of the acknowledgement (a relay that lost track
/// of another forwarder's leases, say): there is nothing to leave out, so
/// the same acknowledgement was sent again at once, as fast as the relay
/// answered. It waits a back-off (1 s doubling) first.
#[tokio::test]
async fn a_409_naming_no_id_of_the_batch_is_sent_again_after_a_back_off() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let (url, accepted) = serve_acks(move |_, _| match c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
        0..=2 => (
            409,
            r#"{"error":"no","not_leased":["evt_01M8G5S0QD2RJZ9GWMECMF4Z4Z"]}"#.to_string(),
            false,
        ),
        _ => (200, r#"{"acknowledged":1,"retried":0,"dead":0}"#.to_string(), true),
    })
    .await;
    let started = tokio::time::Instant::now();
    run_one_delivered(&url, Duration::from_secs(60), Duration::from_secs(20)).await;
    let took = started.elapsed();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
    // Three waits: at least 0.5 + 1 + 2 s (each drawn from the upper half).
    assert!(
        took >= Duration::from_millis(3500),
        "three 409s naming no id answered within {took:?}: sent again at once"
    );
    let got = accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["ids"][0], DELIVERED);
}

/// While the relay is away the acker keeps an id only until its lease and
/// lapse are over (the relay offers it again then); then it stops trying.
#[tokio::test]
async fn an_acknowledgement_is_given_up_when_the_relay_can_no_longer_take_it() {
    let (url, accepted) = serve_acks(|_, _| (503, r#"{"error":"stopping"}"#.to_string(), false)).await;
    let started = tokio::time::Instant::now();
    run_one_delivered(&url, Duration::from_secs(2), Duration::from_secs(20)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "given up before its lease was over"
    );
    assert!(accepted.lock().unwrap().is_empty());
}

/// A relay that refuses (409, naming an id that is none of ours) every
/// acknowledgement holding `POISON`, and takes any other; the ids it took.
const POISON: &str = "evt_01M8G5S0QD2RJZ9GWMECMF4Z4R";
async fn poisoned_relay() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    serve_acks(|_, v| {
        let ids = v["ids"].as_array().cloned().unwrap_or_default();
        if ids.iter().any(|i| i == POISON) {
            (
                409,
                r#"{"error":"no","not_leased":["evt_01M8G5S0QD2RJZ9GWMECMF4Z4Z"]}"#.to_string(),
                false,
            )
        } else {
            (
                200,
                format!(r#"{{"acknowledged":{},"retried":0,"dead":0}}"#, ids.len()),
                true,
            )
        }
    })
    .await
}

/// The acker run against the relay at `url` on one `DELIVERED` id kept for
/// `keep`, until it has nothing left (within `limit`).
async fn run_one_delivered(url: &str, keep: Duration, limit: Duration) {
    let (tx, rx) = mpsc::channel(8);
    tx.send(delivered(DELIVERED, keep)).await.unwrap();
    drop(tx);
    tokio::time::timeout(
        limit,
        run(relay_at(url), rx, Arc::default(), tokio::sync::watch::channel(None).0),
    )
    .await
    .unwrap();
}

/// A 409 naming none of the part's ids held every id of the part (and
/// whatever joined it) for up to 30 s a round (review 38, finding 4): the
/// part is split instead, so the ids the relay takes are applied at once,
/// and only the one it refuses waits (given up once its lease and lapse are
/// over).
#[tokio::test]
async fn a_409_naming_none_of_the_ids_splits_the_part_so_the_others_go_through_at_once() {
    let (url, accepted) = poisoned_relay().await;
    let others: Vec<String> = (0..7).map(|i| format!("evt_01M8G5S0QD2RJZ9GWMECMF4Z5{i}")).collect();
    let (tx, rx) = mpsc::channel(16);
    tx.send(delivered(POISON, Duration::from_secs(3))).await.unwrap();
    for id in &others {
        tx.send(delivered(id, Duration::from_secs(60))).await.unwrap();
    }
    let acker = tokio::spawn(run(
        relay_at(&url),
        rx,
        Arc::default(),
        tokio::sync::watch::channel(None).0,
    ));
    let started = tokio::time::Instant::now();
    let taken = || -> Vec<String> {
        let all = accepted.lock().unwrap().clone();
        all.iter()
            .flat_map(|v| v["ids"].as_array().cloned().unwrap_or_default())
            .map(|i| i.as_str().unwrap().to_string())
            .collect()
    };
    while taken().len() < others.len() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let mut got = taken();
    got.sort();
    assert_eq!(got, others, "the ids the relay takes");
    assert!(
        took < Duration::from_millis(1500),
        "held back {took:?} by the refused id"
    );
    drop(tx);
    // The refused id is given up once its lease and lapse are over.
    tokio::time::timeout(Duration::from_secs(20), acker)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "given up before its lease was over"
    );
    assert!(!taken().contains(&POISON.to_string()));
}

/// While it waits after a 409 (or with the relay away), the acker keeps
/// reading its channel: the pump's workers, which send every finished
/// message into it, never block on it (their messages' leases would lapse
/// and be delivered again).
#[tokio::test]
async fn the_acker_keeps_taking_finished_messages_while_it_waits_after_a_409() {
    let (url, accepted) = poisoned_relay().await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(delivered(POISON, Duration::from_secs(60))).await.unwrap();
    let acker = tokio::spawn(run(
        relay_at(&url),
        rx,
        Arc::default(),
        tokio::sync::watch::channel(None).0,
    ));
    // The acker is waiting (the refused id alone); sends still go through.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let others: Vec<String> = (0..8).map(|i| format!("evt_01M8G5S0QD2RJZ9GWMECMF4Z6{i}")).collect();
    let started = tokio::time::Instant::now();
    for id in &others {
        tokio::time::timeout(
            Duration::from_millis(500),
            tx.send(delivered(id, Duration::from_secs(60))),
        )
        .await
        .expect("the acker did not read its channel while waiting")
        .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // And they are applied without waiting for the refused one for ever.
    let t0 = tokio::time::Instant::now();
    loop {
        let n: usize = accepted
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["ids"].as_array().map_or(0, Vec::len))
            .sum();
        if n == others.len() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "applied {n} of {}",
            others.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acker.abort();
}
