//! A delivery task and the stop: the outcome of a message the local service
//! answered reaches the acker even when the stop aborts the task while it
//! waits for room in the acker's queue (it was lost: neither acknowledged nor
//! released, so its lease ran out into a failed attempt and the service got
//! the message again); what the stop releases; the local service's odd
//! answers and its `Retry-After`. The pull loop: `pull_loop_tests`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::acker::{End, Finished};
use super::acker_tests::relay_at;
use super::client::Local;
use super::pump::{hand_over, Active, Delivery};
use super::status::Status;
use crate::pull::wire::Message;

pub(super) const ID: &str = "evt_01M8G5S0QD2RJZ9GWMECMF4Z4N";

/// A local service on loopback answering every request `200`.
pub(super) async fn ok_service() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_: Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/hooks")
}

pub(super) fn message(id: &str) -> Message {
    Message {
        id: id.to_string(),
        route: "t".into(),
        attempt: 1,
        headers: Default::default(),
        body: String::new(),
        round: None,
    }
}

/// A delivery task posting to `url`, its outcomes to `done`, with the
/// status and active set it updates; `_stop` keeps it from seeing a stop.
pub(super) struct Rig {
    pub(super) task: Delivery,
    pub(super) status: Arc<Status>,
    pub(super) active: Arc<Active>,
    pub(super) _stop: watch::Sender<bool>,
}

fn rig(url: &str, done: mpsc::Sender<Finished>, unacked: Arc<super::unacked::Unacked>) -> Rig {
    // A relay that cuts every connection: asked whether it recorded a
    // delivery, it does not say.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cutting = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });
    rig_with(url, done, unacked, relay_at(&format!("http://{cutting}/pull/laptop")))
}

/// [`rig`] with the relay at `relay`.
pub(super) fn rig_with(
    url: &str,
    done: mpsc::Sender<Finished>,
    unacked: Arc<super::unacked::Unacked>,
    relay: Arc<super::client::Relay>,
) -> Rig {
    crate::tls::install_provider();
    let tls = crate::tls::client_config(None).unwrap();
    let local = Arc::new(Local::new(url.parse().unwrap(), tls, Duration::from_secs(5)));
    let status = Arc::new(Status::new("http://relay/pull/laptop".into(), false));
    let active: Arc<Active> = Arc::default();
    let (_stop, stopped) = watch::channel(false);
    let task = Delivery {
        relay,
        local,
        status: status.clone(),
        active: active.clone(),
        unacked,
        done,
        stopped,
    };
    Rig {
        task,
        status,
        active,
        _stop,
    }
}

/// [`ID`] delivered here (in `unacked`), then offered again at `attempt`
/// to a delivery task posting to `url`: its rig, the lease's end, the
/// acker's queue.
fn offered_again(
    url: &str,
    unacked: &Arc<super::unacked::Unacked>,
    attempt: u32,
) -> (Rig, Instant, mpsc::Receiver<Finished>) {
    offered_again_by(url, unacked, attempt, None)
}

/// [`offered_again`] by a relay at `relay` (asked whether it recorded the
/// delivery here), or by one that cuts every connection.
fn offered_again_by(
    url: &str,
    unacked: &Arc<super::unacked::Unacked>,
    attempt: u32,
    relay: Option<&str>,
) -> (Rig, Instant, mpsc::Receiver<Finished>) {
    unacked.delivered(ID, 1, None);
    let (done, rx) = mpsc::channel::<Finished>(4);
    let r = match relay {
        Some(relay) => rig_with(url, done, unacked.clone(), relay_at(relay)),
        None => rig(url, done, unacked.clone()),
    };
    let keep_until = Instant::now() + Duration::from_secs(60);
    assert!(r.active.offer(ID, keep_until, attempt));
    (r, keep_until, rx)
}

/// The acker's queue, room for one and already full (the acker busy with
/// a slow acknowledgement).
async fn full_queue(keep_until: Instant) -> (mpsc::Sender<Finished>, mpsc::Receiver<Finished>) {
    let (done, rx) = mpsc::channel::<Finished>(1);
    let filler = Finished {
        id: "evt_filler".into(),
        end: End::HandBack,
        local: None,
        keep_until,
        attempt: 1,
    };
    done.send(filler).await.unwrap();
    (done, rx)
}

/// Until the local service has answered the message.
async fn until_delivered(status: &Status) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status.delivered() == 0 {
        assert!(Instant::now() < deadline, "the local service never answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_outcome_waiting_for_room_at_a_stop_still_reaches_the_acker() {
    let keep_until = Instant::now() + Duration::from_secs(60);
    let (done, mut rx) = full_queue(keep_until).await;
    let Rig {
        task,
        status,
        active,
        _stop,
    } = rig(&ok_service().await, done.clone(), Arc::default());
    assert!(active.offer(ID, keep_until, 1));
    let mut deliveries = JoinSet::new();
    deliveries.spawn(task.run(message(ID), keep_until, false));
    until_delivered(&status).await;
    // The task now waits for room; the stop's grace is over: it is aborted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    deliveries.abort_all();
    while deliveries.join_next().await.is_some() {}
    // The acker takes what was queued, then what the stop hands over.
    assert_eq!(rx.recv().await.unwrap().id, "evt_filler");
    hand_over(&active, &done, &status).await;
    drop(done);
    let mut got = Vec::new();
    while let Some(f) = rx.recv().await {
        got.push((f.id, f.end));
    }
    assert_eq!(
        got,
        vec![(ID.to_string(), End::Delivered)],
        "the local service answered 200; the stop must pass that on to the acker"
    );
}

/// Review of stop 55: a stop releasing messages a pull brought but no
/// delivery started took them from the in-flight count, which wrapped
/// (`18446744073709551615 in flight` on the last status line).
#[tokio::test]
async fn a_stop_releasing_unstarted_messages_counts_none_in_flight() {
    let (done, mut rx) = mpsc::channel::<Finished>(4);
    let Rig { status, active, .. } = rig("http://127.0.0.1:1/", done.clone(), Arc::default());
    let keep_until = Instant::now() + Duration::from_secs(60);
    for id in ["evt_a", "evt_b"] {
        assert!(active.offer(id, keep_until, 1));
    }
    hand_over(&active, &done, &status).await;
    drop(done);
    let mut released = 0;
    while let Some(f) = rx.recv().await {
        assert_eq!(f.end, End::Release);
        released += 1;
    }
    assert_eq!(released, 2);
    assert!(status.line().contains("0 in flight"), "{}", status.line());
}

/// The relay leases a message to us again while its outcome waits for room
/// in the acker's queue: the outcome the acker gets is kept until the new
/// lease is over (it kept the first lease's deadline, so a relay away then
/// had the acknowledgement given up while the new lease still took it).
#[tokio::test]
async fn a_lease_taken_again_while_the_outcome_waits_for_room_raises_its_deadline() {
    let first = Instant::now() + Duration::from_secs(60);
    let (done, mut rx) = full_queue(first).await;
    let Rig {
        task,
        status,
        active,
        _stop,
    } = rig(&ok_service().await, done, Arc::default());
    assert!(active.offer(ID, first, 1));
    let running = tokio::spawn(task.run(message(ID), first, false));
    until_delivered(&status).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Offered again meanwhile, under a later lease: not delivered twice.
    let later = first + Duration::from_secs(120);
    assert!(!active.offer(ID, later, 2));
    assert_eq!(rx.recv().await.unwrap().id, "evt_filler");
    let f = rx.recv().await.unwrap();
    running.await.unwrap();
    assert_eq!((f.id.as_str(), f.end), (ID, End::Delivered));
    assert_eq!(
        f.keep_until, later,
        "the outcome kept the first lease's deadline, not the later one"
    );
    assert_eq!(f.attempt, 2, "the answer settles the later hand-out");
}

/// A message offered again after a 2xx here whose acknowledgement the relay
/// did not confirm is acknowledged without being posted again.
#[tokio::test]
async fn an_id_delivered_here_is_acknowledged_again_not_posted() {
    // Nothing listens there: a post would fail and hand the message back.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", l.local_addr().unwrap());
    drop(l);
    let unacked: Arc<super::unacked::Unacked> = Arc::default();
    let (
        Rig {
            task, status, _stop, ..
        },
        keep_until,
        mut rx,
    ) = offered_again(&url, &unacked, 1);
    task.run(message(ID), keep_until, unacked.contains(ID)).await;
    let f = rx.recv().await.unwrap();
    assert_eq!((f.id.as_str(), f.end), (ID, End::Delivered));
    assert_eq!(
        (status.delivered(), status.handed_back(), status.not_twice()),
        (0, 0, 1)
    );
    assert!(unacked.contains(ID), "kept until the relay confirms");
}

/// A local service that answers each connection with `raw`, then closes it.
async fn raw_service(raw: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(raw).await;
            });
        }
    });
    format!("http://{addr}/hooks")
}

/// The outcome of one message delivered to a local service answering `raw`.
async fn delivered_to(raw: &'static [u8]) -> Finished {
    let (done, mut rx) = mpsc::channel::<Finished>(4);
    let Rig {
        task, active, _stop, ..
    } = rig(&raw_service(raw).await, done, Arc::default());
    let keep_until = Instant::now() + Duration::from_secs(60);
    assert!(active.offer(ID, keep_until, 1));
    task.run(message(ID), keep_until, false).await;
    rx.recv().await.unwrap()
}

/// Odd answers of the local service: a redirect is not followed and hands
/// the message back with its status; a 1xx before the status is skipped; a
/// 2xx whose body is cut off was delivered; a connection closed before any
/// status hands it back with the error.
#[tokio::test]
async fn odd_local_answers_end_as_their_status_says() {
    for (raw, end, status) in [
        (
            &b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: 0\r\n\r\n"[..],
            End::HandBack,
            Some(302),
        ),
        (
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"[..],
            End::Delivered,
            None,
        ),
        (
            &b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nab"[..],
            End::Delivered,
            None,
        ),
        (&b""[..], End::HandBack, None),
    ] {
        let f = delivered_to(raw).await;
        let said = String::from_utf8_lossy(raw);
        assert_eq!(f.end, end, "{said}: {f:?}");
        if end == End::HandBack {
            let a = f.local.expect("a hand-back says what the service answered");
            assert_eq!(a.status, status, "{said}: {a:?}");
            assert_eq!(a.error.is_some(), status.is_none(), "{said}: {a:?}");
        }
    }
}

/// A `Retry-After` the local service answers is passed on in
/// milliseconds; one too long for them is the longest there is (it wrapped
/// to a few hundred milliseconds: the schedule's next delay instead of the
/// subscriber's `max_retry_after`). Only where it counts (429, 502, 503, 504).
#[tokio::test]
async fn a_local_retry_after_is_passed_on_in_milliseconds_however_long() {
    for (raw, want) in [
        (
            &b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n"[..],
            Some(7_000),
        ),
        (
            &b"HTTP/1.1 503 Busy\r\nretry-after: 18446744073709552\r\ncontent-length: 0\r\n\r\n"[..],
            Some(u64::MAX),
        ),
        (
            &b"HTTP/1.1 500 Oops\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n"[..],
            None,
        ),
    ] {
        let f = delivered_to(raw).await;
        let said = String::from_utf8_lossy(raw);
        assert_eq!(f.local.expect("a hand-back").retry_after_ms, want, "{said}");
    }
}

/// An offer of an id whose acknowledgement is on its way waits for that
/// answer: confirmed for an earlier attempt, the relay had recorded the
/// delivery before it offered the id again, so the offer is an operator's
/// replay, posted; not confirmed, acknowledged again unsent. It was
/// acknowledged unsent either way: the replay was lost, its attempt
/// "acknowledged by the pull client" (admin review, stop 67). Confirmed for
/// the offer's own attempt (a relay restarted meanwhile leased it again for
/// that attempt and applied the acknowledgement to that lease): settled,
/// acknowledged again unsent; it was posted a second time (pull soak, stop
/// 75).
#[tokio::test]
async fn an_offer_during_its_acknowledgement_waits_for_the_answer() {
    let url = ok_service().await;
    // Asked whether it recorded attempt 1 (offered attempt 2, unconfirmed),
    // the relay says it did not: its lease lapsed.
    let body = format!(r#"{{"error":"not leased","not_leased":["{ID}"]}}"#);
    let (relay, _) = super::acker_tests::serve_acks(move |_, _| (409, body.clone(), false)).await;
    for confirmed in [Some(1), None, Some(2)] {
        let unacked: Arc<super::unacked::Unacked> = Arc::default();
        let acking = unacked.acking(&[ID.to_string()]);
        let (
            Rig {
                task, status, _stop, ..
            },
            keep_until,
            mut rx,
        ) = offered_again_by(&url, &unacked, 2, Some(&relay));
        let mut m = message(ID);
        m.attempt = 2;
        let run = tokio::spawn(task.run(m, keep_until, unacked.contains(ID)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!run.is_finished(), "waits for the acknowledgement's answer");
        if let Some(a) = confirmed {
            unacked.confirmed(
                &[ID.to_string()],
                &std::collections::BTreeMap::from([(ID.to_string(), a)]),
            );
        }
        drop(acking);
        run.await.unwrap();
        let f = rx.recv().await.unwrap();
        assert_eq!((f.id.as_str(), f.end), (ID, End::Delivered));
        let posted_and_not_twice = (status.delivered(), status.not_twice());
        match confirmed {
            Some(1) => assert_eq!(posted_and_not_twice, (1, 0), "a replay: posted"),
            _ => assert_eq!(posted_and_not_twice, (0, 1), "acknowledged again unsent: {confirmed:?}"),
        }
    }
}
