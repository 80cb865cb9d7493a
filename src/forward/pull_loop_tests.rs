//! The pump's pull loop against a fake relay on loopback: a stop while a
//! pull's answer arrives releases what it brought, or still ends with the
//! error of an answer that is not the pull API's; answers slow to arrive
//! are warned about now and then. A delivery task: `pump_tests`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::client::Local;
use super::pump_tests::ID;
use super::status::Status;

/// A pull answer with one message.
fn one_message() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"messages": [{
        "id": ID, "route": "r", "attempt": 1, "headers": {}, "body": "aGk=",
    }], "lease_ms": 60000}))
    .unwrap()
}

/// A fake relay at `/pull/laptop` whose one pull answer (`answer`) comes
/// in two halves, the second once `rest` is notified (`half` is notified
/// when the first is out); the acknowledgement bodies it gets.
async fn relay_with_a_slow_answer(
    half: Arc<tokio::sync::Notify>,
    rest: Arc<tokio::sync::Notify>,
    answer: Vec<u8>,
) -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use http_body_util::{BodyExt, StreamBody};
    let acks: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kept = acks.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let (half, rest, kept, answer) = (half.clone(), rest.clone(), kept.clone(), answer.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (half, rest, kept, answer) = (half.clone(), rest.clone(), kept.clone(), answer.clone());
                    async move {
                        if req.method() == http::Method::POST {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            kept.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                            let ok = Full::new(Bytes::from_static(br#"{"acknowledged":0,"retried":1,"dead":0}"#));
                            return Ok::<_, std::convert::Infallible>(Response::new(ok.boxed()));
                        }
                        let len = answer.len();
                        let (first, second) = answer.split_at(len / 2);
                        let pieces = vec![Bytes::copy_from_slice(first), Bytes::copy_from_slice(second)];
                        let stream = futures_util::stream::unfold((0, pieces), move |(i, pieces)| {
                            let (half, rest) = (half.clone(), rest.clone());
                            async move {
                                match i {
                                    0 => {}
                                    1 => {
                                        half.notify_one();
                                        rest.notified().await;
                                    }
                                    _ => return None,
                                }
                                let frame = hyper::body::Frame::data(pieces[i].clone());
                                Some((Ok::<_, std::convert::Infallible>(frame), (i + 1, pieces)))
                            }
                        });
                        let mut resp = Response::new(StreamBody::new(stream).boxed());
                        resp.headers_mut().insert(http::header::CONTENT_LENGTH, len.into());
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/pull/laptop"), acks)
}

/// A pump pulling from `url` for a local service where nothing listens.
fn pump_for(url: &str) -> super::pump::Pump {
    crate::tls::install_provider();
    let tls = crate::tls::client_config(None).unwrap();
    let relay = super::client::Relay::new(
        url.parse().unwrap(),
        crate::auth::Secret::new(b"t".to_vec()),
        tls.clone(),
        "f".into(),
        Duration::from_secs(1),
    )
    .unwrap();
    // Nothing listens there: nothing is to be posted.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = format!("http://{}/hooks", l.local_addr().unwrap());
    drop(l);
    super::pump::Pump {
        relay: Arc::new(relay),
        local: Arc::new(Local::new(to.parse().unwrap(), tls, Duration::from_secs(5))),
        status: Arc::new(Status::new(url.into(), false)),
        concurrency: 1,
        unacked: Arc::default(),
    }
}

/// A pump pulling `answer` from a relay sending it in two halves, stopped
/// after the first: how it ends, and the acknowledgements the relay got.
async fn stopped_while_arriving(answer: Vec<u8>) -> (Result<(), super::pump::Fatal>, Vec<serde_json::Value>) {
    let (half, rest) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let (url, acks) = relay_with_a_slow_answer(half.clone(), rest.clone(), answer).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = tokio::spawn(pump_for(&url).run(stop_rx));
    half.notified().await;
    // The head and the first half reach the forwarder (a stop before the
    // head would end the pull unread: time enough on a loaded machine).
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_tx.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    rest.notify_one();
    let ended = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the stop ends")
        .unwrap();
    let acks = acks.lock().unwrap().clone();
    (ended, acks)
}

/// Stopped while a pull's answer is arriving (its head came: the relay has
/// leased what it carries): the answer is read and its message released
/// (offered again at once, no retry step used). It was dropped, and its
/// lease ran out into a failed attempt. From review 48, pull finding 3.
#[tokio::test]
async fn a_stop_while_an_answer_arrives_releases_what_it_brought() {
    let (ended, acks) = stopped_while_arriving(one_message()).await;
    ended.unwrap();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["release"], serde_json::json!([ID]), "{acks:?}");
    assert_eq!(acks[0]["attempts"][ID], 1, "{acks:?}");
}

/// Stopped while an answer that is not the pull API's arrives (a captive
/// portal's page): the forwarder still says so and ends with its exit code,
/// not `0` as if all were well (it did, the error unsaid).
#[tokio::test]
async fn a_stop_while_a_wrong_answer_arrives_still_ends_with_its_error() {
    let page = b"<html><body>Sign in to the hotel's network to go on browsing.</body></html>".to_vec();
    let (ended, acks) = stopped_while_arriving(page).await;
    let err = ended.expect_err("a wrong answer is an error, stop or not");
    assert!(matches!(err, super::pump::Fatal::NotPullAnswer(_)), "{err}");
    assert_eq!(err.exit_code(), super::pump::EXIT_NOT_PULL_ANSWER);
    assert!(acks.is_empty(), "nothing to acknowledge: {acks:?}");
}

/// An answer that took half its lease or more to arrive is warned about,
/// at most every ten minutes; a quick one, or one with no lease said, not.
#[tokio::test(start_paused = true)]
async fn a_slow_answer_is_warned_about_now_and_then() {
    let mut slow = super::pump::SlowAnswers::default();
    let lease = Some(60_000);
    assert!(!slow.check(Duration::from_secs(29), lease));
    assert!(!slow.check(Duration::from_secs(40), None));
    assert!(slow.check(Duration::from_secs(30), lease));
    assert!(!slow.check(Duration::from_secs(50), lease), "not again at once");
    tokio::time::advance(Duration::from_secs(600)).await;
    assert!(slow.check(Duration::from_secs(50), lease));
}
