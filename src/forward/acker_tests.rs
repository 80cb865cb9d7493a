//! The acker against relays older than a field of the acknowledgement: one
//! before the `release` list, one before `local` (the local service's
//! answers). Each refuses the field it does not know (400, unknown field, in
//! serde's words, naming the fields it expects), and the acker must not give
//! up the batch (the delivered ids in it would be sent again): it hands the
//! releases back instead, or leaves the answers out. Also: a relay that
//! finds the acknowledgement too large (413) gets it in parts, a full batch
//! fits, and an offer waits through an acknowledgement sent again. What the
//! acker does with a 409 or a 408 is in [`super::acker_conflict_tests`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::acker::{run, End, Finished};
use super::client::Relay;
use crate::auth::Secret;
use crate::pull::wire::LocalAnswer;

/// A relay whose acknowledgement knows only the fields `knows` and refuses
/// any other as those versions did; every body it accepted is kept.
async fn old_relay(knows: &'static [&'static str]) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    relay_with_limit(knows, usize::MAX).await
}

/// Like [`old_relay`], answering 413 to bodies over `max_body` bytes.
async fn relay_with_limit(
    knows: &'static [&'static str],
    max_body: usize,
) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    serve_acks(move |len, v| {
        let unknown = v
            .as_object()
            .unwrap()
            .keys()
            .find(|k| !knows.contains(&k.as_str()))
            .cloned();
        if len > max_body {
            (413, r#"{"error":"body larger than the limit"}"#.to_string(), false)
        } else if let Some(k) = unknown {
            let expected: Vec<String> = knows.iter().map(|f| format!("`{f}`")).collect();
            let error = format!(
                "invalid acknowledgement: unknown field `{k}`, expected one of {}",
                expected.join(", ")
            );
            (400, serde_json::json!({ "error": error }).to_string(), false)
        } else {
            let n = |k: &str| v[k].as_array().map_or(0, Vec::len);
            (
                200,
                format!(r#"{{"acknowledged":{},"retried":{},"dead":0}}"#, n("ids"), n("retry")),
                true,
            )
        }
    })
    .await
}

/// A relay at `/pull/laptop` answering each acknowledgement with
/// `answer(body length, body)`: (status, answer body, whether the body is
/// kept); the bodies kept.
pub(super) async fn serve_acks<F>(answer: F) -> (String, Arc<Mutex<Vec<serde_json::Value>>>)
where
    F: Fn(usize, &serde_json::Value) -> (u16, String, bool) + Clone + Send + Sync + 'static,
{
    let accepted: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kept = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            let (kept, answer) = (kept.clone(), answer.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (kept, answer) = (kept.clone(), answer.clone());
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let (status, answer, keep) = answer(body.len(), &v);
                        if keep {
                            kept.lock().unwrap().push(v);
                        }
                        let mut resp = Response::new(Full::new(Bytes::from(answer)));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/pull/laptop"), accepted)
}

pub(super) const DELIVERED: &str = "evt_01M8G5S0QD2RJZ9GWMECMF4Z4N";
pub(super) const RELEASED: &str = "evt_01M8G5S0QD2RJZ9GWMECMF4Z4P";
pub(super) const HANDED_BACK: &str = "evt_01M8G5S0QD2RJZ9GWMECMF4Z4Q";

/// Run the acker against `url` with one delivered, one released and one
/// handed-back message (the local service answered 503); what the relay accepted.
pub(super) async fn ack_three(url: String, accepted: Arc<Mutex<Vec<serde_json::Value>>>) -> Vec<serde_json::Value> {
    let relay = relay_at(&url);
    let (tx, rx) = mpsc::channel(8);
    let done = |id: &str, end, local| Finished {
        id: id.into(),
        end,
        local,
        keep_until: tokio::time::Instant::now() + Duration::from_secs(60),
        attempt: 1,
    };
    let answer = LocalAnswer::of(&Ok(http::StatusCode::SERVICE_UNAVAILABLE));
    for f in [
        done(DELIVERED, End::Delivered, None),
        done(RELEASED, End::Release, None),
        done(HANDED_BACK, End::HandBack, Some(answer)),
    ] {
        tx.send(f).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(
        Duration::from_secs(10),
        run(relay, rx, Arc::default(), tokio::sync::watch::channel(None).0),
    )
    .await
    .unwrap();
    let got = accepted.lock().unwrap().clone();
    got
}

#[tokio::test]
async fn a_relay_before_release_gets_releases_as_hand_backs_and_keeps_the_acknowledgements() {
    let (url, accepted) = old_relay(&["ids", "retry"]).await;
    let got = ack_three(url, accepted).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["ids"], serde_json::json!([DELIVERED]));
    let mut retry: Vec<_> = got[0]["retry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    retry.sort();
    assert_eq!(retry, vec![RELEASED, HANDED_BACK]);
}

#[tokio::test]
async fn a_relay_before_local_answers_keeps_releases_and_acknowledgements() {
    // Its refusal names `release` among the fields it expects: releases stay releases.
    let (url, accepted) = old_relay(&["ids", "retry", "release"]).await;
    let got = ack_three(url, accepted).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].get("attempts").is_none(),
        "left out for a relay before them: {got:?}"
    );
    assert_eq!(got[0]["ids"], serde_json::json!([DELIVERED]));
    assert_eq!(got[0]["release"], serde_json::json!([RELEASED]));
    assert_eq!(got[0]["retry"], serde_json::json!([HANDED_BACK]));
}

/// A relay before attempt numbers (but with `local`): the acknowledgement
/// goes without them, the answers kept.
#[tokio::test]
async fn a_relay_before_attempt_numbers_gets_the_rest() {
    let (url, accepted) = old_relay(&["ids", "retry", "release", "local"]).await;
    let got = ack_three(url, accepted).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].get("attempts").is_none(), "{got:?}");
    assert_eq!(got[0]["ids"], serde_json::json!([DELIVERED]));
    assert_eq!(got[0]["local"], serde_json::json!({ HANDED_BACK: {"status": 503} }));
}

#[tokio::test]
async fn a_current_relay_gets_the_local_answers_of_hand_backs() {
    let (url, accepted) = old_relay(&["ids", "retry", "release", "local", "attempts"]).await;
    let got = ack_three(url, accepted).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["local"], serde_json::json!({ HANDED_BACK: {"status": 503} }));
}

#[tokio::test]
async fn answers_that_would_make_the_acknowledgement_too_large_are_left_out() {
    // A relay with a small max_body: the acknowledgement fits (with its
    // attempt numbers, 248 bytes), its answers do not (306).
    let (url, accepted) = relay_with_limit(&["ids", "retry", "release", "local", "attempts"], 270).await;
    let got = ack_three(url, accepted).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["ids"],
        serde_json::json!([DELIVERED]),
        "the delivered id is not given up"
    );
    assert!(got[0].get("local").is_none(), "{got:?}");
    assert_eq!(got[0]["attempts"][DELIVERED], 1, "{got:?}");
}

#[tokio::test]
async fn a_relay_that_refuses_the_batch_as_too_large_gets_it_in_parts() {
    // A relay whose max_body takes one id per acknowledgement: the acker
    // does not give up the batch (the delivered id would be sent again).
    let (url, accepted) = relay_with_limit(&["ids", "retry", "release", "local", "attempts"], 80).await;
    let got = ack_three(url, accepted).await;
    assert_eq!(got.len(), 3, "one request each: {got:?}");
    let all = |k: &str| all_of(&got, k);
    assert_eq!(all("ids"), vec![serde_json::json!(DELIVERED)], "{got:?}");
    assert_eq!(all("release"), vec![serde_json::json!(RELEASED)], "{got:?}");
    assert_eq!(all("retry"), vec![serde_json::json!(HANDED_BACK)], "{got:?}");
}

/// The ids under `k` in all of the acknowledgements `sent`, in order.
pub(super) fn all_of(sent: &[serde_json::Value], k: &str) -> Vec<serde_json::Value> {
    sent.iter()
        .flat_map(|v| v.get(k).and_then(|l| l.as_array()).cloned().unwrap_or_default())
        .collect()
}

#[test]
fn a_local_answer_is_always_one_the_relay_can_record() {
    for result in [
        Ok(http::StatusCode::from_u16(600).unwrap()),
        Ok(http::StatusCode::from_u16(999).unwrap()),
        Ok(http::StatusCode::OK),
        Ok(http::StatusCode::BAD_GATEWAY),
        Err("line one\nline two\u{7}".to_string()),
        Err(String::new()),
        Err("x".repeat(1000)),
    ] {
        let a = LocalAnswer::of(&result);
        assert_eq!(a.check(), Ok(()), "{result:?} -> {a:?}");
    }
}

/// A relay at `url` for the acker (no long-poll).
pub(super) fn relay_at(url: &str) -> Arc<Relay> {
    crate::tls::install_provider();
    let tls = crate::tls::client_config(None).unwrap();
    Arc::new(
        Relay::new(
            url.parse().unwrap(),
            Secret::new("t"),
            tls,
            "fwd-1".into(),
            Duration::from_secs(1),
        )
        .unwrap(),
    )
}

/// A full batch (1,000 delivered ids) with their attempt numbers fits the
/// relay's 64 KiB limit for acknowledgements in every request: none is
/// refused as too large (the first was: 1,000 ids with attempt numbers are
/// ~71 KB, and its refusal halved the ids per request for good).
#[tokio::test]
async fn a_full_batch_with_attempt_numbers_fits_the_relays_limit() {
    let lengths: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen = lengths.clone();
    let (url, accepted) = serve_acks(move |len, v| {
        seen.lock().unwrap().push(len);
        if len > crate::pull::wire::MAX_ACK_BODY {
            return (413, r#"{"error":"body larger than the limit"}"#.to_string(), false);
        }
        let n = v["ids"].as_array().map_or(0, Vec::len);
        (200, format!(r#"{{"acknowledged":{n},"retried":0,"dead":0}}"#), true)
    })
    .await;
    let relay = relay_at(&url);
    let (tx, rx) = mpsc::channel(1000);
    for n in 0..1000u32 {
        let mut f = delivered(&format!("evt_01M8G5S0QD2RJZ9GWMEC{n:06}"), Duration::from_secs(60));
        f.attempt = 4_000_000_000;
        tx.send(f).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(
        Duration::from_secs(10),
        run(relay, rx, Arc::default(), tokio::sync::watch::channel(None).0),
    )
    .await
    .unwrap();
    let lengths = lengths.lock().unwrap().clone();
    assert!(
        lengths.iter().all(|&l| l <= crate::pull::wire::MAX_ACK_BODY),
        "{lengths:?}"
    );
    let got = accepted.lock().unwrap().clone();
    assert_eq!(all_of(&got, "ids").len(), 1000, "{lengths:?}");
    assert!(got
        .iter()
        .all(|a| a["attempts"].as_object().is_some_and(|m| !m.is_empty())));
}

/// An acknowledgement whose answer did not come (a relay away, a 503) is
/// sent again; an offer of its id meanwhile waits for that next answer, and
/// a relay that confirms it makes the offer a replay, posted. The acker let
/// go of the ids before its pause: the offer was taken as unconfirmed at
/// once and acknowledged unsent, a replay lost (change review, stop 67).
#[tokio::test]
async fn an_offer_waits_through_an_acknowledgement_sent_again() {
    let AckSentAgain {
        unacked,
        tx,
        acker,
        answered,
        keep_until,
        ..
    } = ack_sent_again().await;
    // Offered again now (an operator's replay: attempt 2), between the 503
    // and the acknowledgement sent again.
    let unconfirmed = tokio::time::timeout(
        Duration::from_secs(10),
        unacked.unconfirmed_after_ack(DELIVERED, 2, None, keep_until),
    )
    .await
    .expect("waits for the next answer, not for the lease");
    assert!(!unconfirmed, "the relay confirmed attempt 1: the offer is a replay");
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Offered for attempt 1 (a relay restarted meanwhile, which applied the
    // acknowledgement to that lease): settled, not posted.
    assert!(unacked.holds(DELIVERED, 1, None));
    drop(tx);
    acker.await.unwrap();
}

pub(super) fn delivered(id: &str, keep: Duration) -> Finished {
    Finished {
        id: id.into(),
        end: End::Delivered,
        local: None,
        keep_until: tokio::time::Instant::now() + keep,
        attempt: 1,
    }
}

/// A release of an id whose acknowledgement as delivered is being sent
/// again (its first answer did not come) does not take that
/// acknowledgement's place: the id is acknowledged, and the release (of
/// its offer meanwhile, a replay perhaps) is dropped, its lease left to
/// run out. It replaced it: the id was never confirmed, and the replay,
/// offered again, was acknowledged unsent (review of stop 75's mend).
#[tokio::test]
async fn a_release_does_not_replace_an_acknowledgement_being_sent_again() {
    let AckSentAgain {
        kept,
        unacked,
        tx,
        acker,
        keep_until,
        ..
    } = ack_sent_again().await;
    // Offered again (attempt 2) beyond the free slots while the
    // acknowledgement waits to be sent again: released.
    tx.send(Finished {
        end: End::Release,
        attempt: 2,
        ..delivered(DELIVERED, keep_until - tokio::time::Instant::now())
    })
    .await
    .unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), acker)
        .await
        .expect("the acker ends")
        .unwrap();
    let sent = kept.lock().unwrap().clone();
    assert_eq!(all_of(&sent, "ids"), [serde_json::json!(DELIVERED)], "{sent:?}");
    assert!(all_of(&sent, "release").is_empty(), "{sent:?}");
    assert!(
        !unacked.contains(DELIVERED) && !unacked.holds(DELIVERED, 2, None),
        "confirmed: a replay is posted"
    );
}

/// The acker run on [`DELIVERED`] (delivered here, kept 60 s) against a
/// relay whose first acknowledgement answer is a 503 and every later one a
/// 200 (`kept`: the bodies it took), once that 503 came: the
/// acknowledgement waits to be sent again.
struct AckSentAgain {
    kept: Arc<Mutex<Vec<serde_json::Value>>>,
    unacked: Arc<super::unacked::Unacked>,
    tx: mpsc::Sender<Finished>,
    acker: tokio::task::JoinHandle<()>,
    /// Acknowledgements answered.
    answered: Arc<std::sync::atomic::AtomicUsize>,
    keep_until: tokio::time::Instant,
}

async fn ack_sent_again() -> AckSentAgain {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let (url, kept) = serve_acks(move |_, _| match count.fetch_add(1, Ordering::SeqCst) {
        0 => (503, r#"{"error":"busy"}"#.into(), false),
        _ => (200, r#"{"acknowledged":1,"retried":0,"dead":0}"#.into(), true),
    })
    .await;
    let unacked: Arc<super::unacked::Unacked> = Arc::default();
    unacked.delivered(DELIVERED, 1, None);
    let (tx, rx) = mpsc::channel(8);
    let first = delivered(DELIVERED, Duration::from_secs(60));
    let keep_until = first.keep_until;
    tx.send(first).await.unwrap();
    let acker = tokio::spawn(run(
        relay_at(&url),
        rx,
        unacked.clone(),
        tokio::sync::watch::channel(None).0,
    ));
    while answered.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    AckSentAgain {
        kept,
        unacked,
        tx,
        acker,
        answered,
        keep_until,
    }
}
