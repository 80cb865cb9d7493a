//! `hookrelay forward` acknowledging through an outage: while the relay is
//! out of reach the forwarder keeps every delivered message's
//! acknowledgement until the relay answers, or until its lease (and the
//! relay's lapse after it) is over, however many tries that takes.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::sync::watch;

const TOKEN: &str = "outage-pull-token";

/// A TCP proxy to `upstream` that can be switched off: while off it refuses
/// every new connection (accepts and drops it) and cuts the ones it carries,
/// as a network outage between the forwarder and the relay would.
pub(crate) async fn switchable_proxy(upstream: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (on_tx, on_rx) = watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let mut on = on_rx.clone();
            if !*on.borrow() {
                drop(c);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                    _ = on.wait_for(|v| !*v) => {}
                }
            });
        }
    });
    (addr, on_tx)
}

/// The network between the forwarder and the relay fails for longer than
/// the acker's back-off once allowed (it gave up after 12 tries, about a
/// minute), the relay itself alive and the 10 minute lease still open: the
/// message the private service answered 200 is acknowledged when the network
/// is back, not offered again when its lease runs out (a duplicate, and a
/// failed attempt recorded for a delivery that succeeded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_is_acknowledged_after_an_outage_shorter_than_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        &TestConfig::new(dir.path()).subscriber(
            Subscriber::pull("laptop", TOKEN)
                .lease(Duration::from_secs(600))
                .retry([secs(1); 5]),
        ),
    )
    .await;
    let (proxy, on) = switchable_proxy(h.ingest_addrs[0]).await;
    let arrived = Arc::new(AtomicBool::new(false));
    let a = arrived.clone();
    // The private service takes 2 s, then answers 200.
    let local = Local::start(Arc::new(move |_, _| {
        a.store(true, Ordering::SeqCst);
        (200, Duration::from_secs(2))
    }))
    .await;
    let fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), TOKEN, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("outage")).await;
    fwd.until_local_has_it(&arrived, secs(20)).await;
    // The network between the forwarder and the relay goes away while the
    // local service works on the message.
    on.send_replace(false);
    local
        .wait_for(secs(10), "the local 200", |g| g.iter().any(|g| g.id == id))
        .await;
    // Wait for the forwarder to give the acknowledgement up (or 90 s: the
    // old limit gave up after about 63 s).
    let deadline = Instant::now() + secs(90);
    while !fwd.log_text().contains("acknowledgement given up") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gave_up_after = fwd.log_text().contains("acknowledgement given up");
    // The network comes back, well within the 10 minute lease.
    on.send_replace(true);
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(30), |ev| {
        ev["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let log: Vec<String> = fwd
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("acknowledg"))
        .cloned()
        .collect();
    assert_eq!(
        ev["subscribers"][0]["state"], "delivered",
        "the local service answered 200 and the relay came back within the lease, yet the message is still \
         leased (it will be offered again when the lease runs out); forwarder gave up: {gave_up_after}; \
         forwarder log: {log:#?}\nevent: {ev}"
    );
}

/// A message whose lease ran out while the local service still
/// had it is leased to this forwarder again (the pump skips the new offer:
/// "the running one's answer settles the new lease"); the answer is kept
/// until the *second* lease is over. The relay is away for a moment when the
/// service answers, inside the second lease: the acknowledgement waits for
/// it (given up by the first lease's deadline, the second lease ran out too,
/// another failed attempt, and the service got the message again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_for_a_message_leased_again_is_kept_until_the_new_lease_is_over() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let token = "r32-pull-token";
    // Lease 3 s, retry after 2 s: lease 1 [0, 3], lapse to 5, lease 2 [5, 8].
    let h = start(
        &TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", token).lease(secs(3)).retry([secs(2); 5])),
    )
    .await;
    let (proxy, on) = switchable_proxy(h.ingest_addrs[0]).await;
    let first_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let f = first_at.clone();
    let arrived = Arc::new(AtomicBool::new(false));
    let a = arrived.clone();
    // The first delivery takes 7 s (answered inside lease 2), later ones none.
    let local = Local::start(Arc::new(move |_, seen| {
        if seen == 0 {
            f.lock().unwrap().get_or_insert_with(Instant::now);
            a.store(true, Ordering::SeqCst);
            (200, Duration::from_secs(7))
        } else {
            (200, Duration::ZERO)
        }
    }))
    .await;
    let fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), token, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("r32-relet")).await;
    fwd.until_local_has_it(&arrived, secs(20)).await;
    let t0 = first_at.lock().unwrap().unwrap();
    // Away from 6.6 s to 7.6 s: the answer (7 s) finds the relay away, lease 2 still live.
    tokio::time::sleep_until((t0 + ms(6600)).into()).await;
    on.send_replace(false);
    tokio::time::sleep_until((t0 + ms(7600)).into()).await;
    on.send_replace(true);
    // Past lease 2, its lapse and one more retry delay.
    tokio::time::sleep_until((t0 + secs(14)).into()).await;
    let got = local.attempts(&id);
    let log: Vec<String> = fwd
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("acknowledg") || l.contains("lease"))
        .cloned()
        .collect();
    h.shutdown().await;
    assert_eq!(
        got.len(),
        1,
        "the service answered 200 once inside the forwarder's second lease, yet got the message again \
         (attempts {got:?}): the acknowledgement was given up by the first lease's deadline; log: {log:#?}"
    );
}

/// The relay is out of reach from the moment the local service has a message
/// until past its lease and the lapse after it (the shortest lease there is,
/// 1 s): the local service answered 200, the acknowledgement cannot reach
/// the relay, the lease runs out and the relay offers the message again when
/// it is back. The forwarder remembers it delivered that message: it
/// acknowledges it without posting it to the local service a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_offered_again_after_a_lost_acknowledgement_is_not_delivered_twice() {
    let dir = tempfile::tempdir().unwrap();
    let token = "unacked-pull-token";
    let h = start(
        &TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", token).lease(secs(1)).retry([secs(1); 5])),
    )
    .await;
    let (proxy, on) = switchable_proxy(h.ingest_addrs[0]).await;
    let arrived = Arc::new(AtomicBool::new(false));
    let a = arrived.clone();
    // The first delivery takes 300 ms (the relay goes away meanwhile).
    let local = Local::start(Arc::new(move |_, seen| {
        a.store(true, Ordering::SeqCst);
        (200, if seen == 0 { ms(300) } else { Duration::ZERO })
    }))
    .await;
    let fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), token, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("unacked")).await;
    fwd.until_local_has_it(&arrived, secs(20)).await;
    on.send_replace(false);
    // Away until the forwarder gave the acknowledgement up (lease and lapse over).
    fwd.until_logged("acknowledgement given up", secs(30), "giving the acknowledgement up")
        .await;
    on.send_replace(true);
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(30), |ev| {
        ev["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let attempts = local.attempts(&id);
    let log = fwd.log_text();
    h.shutdown().await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}\n{log}");
    assert_eq!(
        attempts.len(),
        1,
        "the local service answered 200 once, yet got the message again (attempts {attempts:?}); log: {log}"
    );
    assert!(log.contains("already delivered here"), "{log}");
}

/// An HTTP proxy to the relay that loses the relay's answer to the first
/// acknowledgement: the request reaches the relay, which applies it, then
/// the connection is cut before the answer gets back (a network failing at
/// that moment). Everything else is passed through; with `go_away`, from
/// that moment every request is cut (the network out) until the flag
/// returned is cleared.
async fn losing_the_first_ack_answer(upstream: SocketAddr, go_away: bool) -> (SocketAddr, Arc<AtomicBool>) {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let lost = Arc::new(AtomicBool::new(false));
    let away = Arc::new(AtomicBool::new(false));
    let out = away.clone();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let (client, lost, away) = (client.clone(), lost.clone(), away.clone());
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (client, lost, away) = (client.clone(), lost.clone(), away.clone());
                async move {
                    if away.load(Ordering::SeqCst) {
                        let e: Box<dyn std::error::Error + Send + Sync> = "the network is out".into();
                        return Err(e);
                    }
                    let (mut parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let ack = parts.uri.path().ends_with("/ack");
                    parts.uri = format!("http://{upstream}{}", parts.uri.path_and_query().unwrap())
                        .parse()
                        .unwrap();
                    let answer = client.request(http::Request::from_parts(parts, Full::new(body))).await;
                    let Ok(answer) = answer else {
                        return Err("the relay did not answer".into());
                    };
                    let (parts, body) = answer.into_parts();
                    let body = body.collect().await?.to_bytes();
                    if ack && !lost.swap(true, Ordering::SeqCst) {
                        // Applied by the relay; its answer never arrives.
                        away.store(go_away, Ordering::SeqCst);
                        let e: Box<dyn std::error::Error + Send + Sync> = "answer lost".into();
                        return Err(e);
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::from_parts(
                        parts,
                        Full::new(body),
                    ))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(c), svc));
        }
    });
    (addr, out)
}

/// The relay records a delivery, but its answer to the acknowledgement is
/// lost; the forwarder sends the acknowledgement again and is refused (the
/// lease is over: the delivery is done). It kept the id as delivered but not
/// confirmed, and an operator's later replay of the event was acknowledged
/// without being posted to the service ("already delivered here"): the
/// relay recorded a second delivery that never happened. The relay's `409`
/// now names the ids it records delivered; the forwarder forgets them, and
/// the replay reaches the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_lost_acknowledgement_answer_is_posted_to_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let token = "lost-answer-pull-token";
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", token))).await;
    let (proxy, _) = losing_the_first_ack_answer(h.ingest_addrs[0], false).await;
    let local = Local::start(Arc::new(|_, _| (200, Duration::ZERO))).await;
    let fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), token, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("lost-answer")).await;
    admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(20), |ev| {
        ev["subscribers"][0]["state"] == "delivered"
    })
    .await;
    // The forwarder's second try of the acknowledgement is answered.
    let deadline = Instant::now() + secs(20);
    let answered = |log: &str| log.contains("delivered already") || log.contains("no relay holds these leases");
    while !answered(&fwd.log_text()) {
        assert!(
            Instant::now() < deadline,
            "no second acknowledgement: {}",
            fwd.log_text()
        );
        tokio::time::sleep(ms(50)).await;
    }
    let (st, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(st, http::StatusCode::OK, "{v}");
    let deadline = Instant::now() + secs(20);
    while local.attempts(&id).len() < 2 && !fwd.log_text().contains("already delivered here") {
        assert!(Instant::now() < deadline, "the replay never came: {}", fwd.log_text());
        tokio::time::sleep(ms(50)).await;
    }
    // Posted once, and not once more a little later.
    tokio::time::sleep(ms(500)).await;
    let log = fwd.log_text();
    let attempts = local.attempts(&id);
    h.shutdown().await;
    assert_eq!(
        attempts.len(),
        2,
        "the replay posted once (attempts {attempts:?}); log: {log}"
    );
}

/// The same with the network out from the moment the answer is lost until
/// the forwarder gave the acknowledgement up (its lease and lapse over): it
/// never heard that the relay recorded the delivery, and took the
/// operator's replay, a later attempt, for the message offered again after
/// a lapse: acknowledged unsent, the replay lost (stop 75's Left). Offered
/// a later attempt of an id it delivered unconfirmed, it now asks the relay
/// (the acknowledgement again, with its attempt), which names it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_an_acknowledgement_given_up_unanswered_is_posted_to_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let token = "given-up-pull-token";
    let laptop = Subscriber::pull("laptop", token).lease(secs(1)).retry([secs(1); 5]);
    let h = start(&TestConfig::new(dir.path()).subscriber(laptop)).await;
    let (proxy, away) = losing_the_first_ack_answer(h.ingest_addrs[0], true).await;
    let local = Local::start(Arc::new(|_, _| (200, Duration::ZERO))).await;
    let fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), token, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("given-up")).await;
    admin_expect(
        h.admin_addr,
        &format!("/api/events/{id}"),
        secs(20),
        "the delivery recorded",
        |ev| ev["subscribers"][0]["state"] == "delivered",
    )
    .await;
    fwd.until_logged("acknowledgement given up", secs(30), "giving the acknowledgement up")
        .await;
    away.store(false, Ordering::SeqCst);
    let (st, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(st, http::StatusCode::OK, "{v}");
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(30), |ev| {
        ev["subscribers"][0]["state"] == "delivered" && ev["subscribers"][0]["attempts_total"].as_u64() >= Some(2)
    })
    .await;
    let log = fwd.log_text();
    let attempts = local.attempts(&id);
    h.shutdown().await;
    assert_eq!(
        attempts.len(),
        2,
        "the replay posted once (attempts {attempts:?}); {ev}\nlog: {log}"
    );
    assert!(log.contains("an operator's replay, posted"), "{log}");
}

/// A proxy on the way passes pulls but answers acknowledgements `404` (a
/// location block for `GET /pull/` only): the forwarder stops with exit `2`
/// and a message that says what is wrong, after the first refusal. It gave
/// each refused acknowledgement up and pulled on: every message reached the
/// local service and was then offered again at its lease's end, until it
/// was a dead letter, the forwarder saying "delivered". From review 58,
/// forward finding 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_refused_on_the_way_stop_the_forwarder() {
    acknowledgements_refused_by(false, "404").await;
}

/// The same for a proxy redirecting acknowledgements (not followed, as for
/// pulls): each was given up alone and the forwarder pulled on (pull
/// review, stop 65).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_redirected_on_the_way_stop_the_forwarder() {
    acknowledgements_refused_by(true, "elsewhere.example").await;
}

async fn acknowledgements_refused_by(redirect: bool, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        &TestConfig::new(dir.path()).subscriber(Subscriber::pull("laptop", TOKEN).lease(secs(2)).retry([secs(1); 3])),
    )
    .await;
    let proxy = match redirect {
        true => common::query_proxy::ack_redirecting_proxy(h.ingest_addrs[0]).await,
        false => ack_refusing_proxy(h.ingest_addrs[0]).await,
    };
    let local = Local::ok().await;
    let mut fwd = Forwarder::start(dir.path(), &pull_url(proxy, "laptop"), &local.url(), TOKEN, &[]);
    let id = accepted(h.ingest_addrs[0], &runway("acks-refused")).await;
    local
        .wait_for(secs(15), "the message", |g| g.iter().any(|g| g.id == id))
        .await;
    let code = tokio::task::spawn_blocking(move || (fwd.wait(secs(15)), fwd.log_text()))
        .await
        .unwrap();
    assert_eq!(code.0, Some(2), "{}", code.1);
    assert!(
        code.1.contains("refused this forwarder's acknowledgements"),
        "{}",
        code.1
    );
    assert!(code.1.contains(says), "{}", code.1);
    h.shutdown().await;
}

/// The forwarder paused (a laptop asleep, `SIGSTOP`) while the local
/// service answers `200` within the forwarder's `--timeout`: once it runs
/// again the answer is waiting in its socket and is read, not taken for a
/// timeout and handed back to be posted again. The relays' attempts lost
/// that race (`pause_answers`); the forwarder reads its answers through the
/// same `clock::pauses::timeout_at` now, and this test proves the promise
/// for it (it passed on the code before too: the forwarder's runtime did
/// not lose the race in three runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_came_while_the_forwarder_was_paused_is_read_not_posted_again() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        &TestConfig::new(dir.path()).subscriber(
            Subscriber::pull("laptop", TOKEN)
                .lease(Duration::from_secs(600))
                .retry([secs(1); 5]),
        ),
    )
    .await;
    // Each answer comes 2 s after its request; the forwarder waits 3 s.
    let local = Local::start(Arc::new(|_, _| (200, Duration::from_secs(2)))).await;
    let fwd = Forwarder::start(
        dir.path(),
        &pull_url(h.ingest_addrs[0], "laptop"),
        &local.url(),
        TOKEN,
        &["--timeout", "3s"],
    );
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(accepted(h.ingest_addrs[0], &runway(&format!("asleep-{n}"))).await);
    }
    // Every request at the service, then asleep past every deadline.
    local.wait_for(secs(20), "every request", |g| g.len() >= 4).await;
    fwd.signal("STOP");
    tokio::time::sleep(secs(4)).await;
    fwd.signal("CONT");
    for id in &ids {
        let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(20), |v| {
            v["subscribers"][0]["state"] == "delivered"
        })
        .await;
        assert_eq!(
            (
                ev["subscribers"][0]["state"].as_str(),
                ev["subscribers"][0]["attempts_total"].as_u64()
            ),
            (Some("delivered"), Some(1)),
            "answered 200 within the timeout, taken for none: {ev}"
        );
    }
    tokio::time::sleep(secs(2)).await;
    assert_eq!(local.all().len(), 4, "posted again: {:?}", local.counts());
    h.shutdown().await;
}
