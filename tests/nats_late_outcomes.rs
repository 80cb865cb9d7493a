//! Cluster mode: a late outcome from a stale relay (paused, cut off from
//! NATS) against a newer one — a replay made pending after it, or a later
//! attempt still running — must not cancel the replay or bury the later
//! attempt's success. From review 16, findings 1 and 2; and a late success
//! after another relay's `dead` (stop 77's Left).

use crate::common;

use common::*;

/// Finding 1. A stale relay's late *final* outcome is written over any
/// pending result (result_write.rs `write_outcome`: `mine = is_final(outcome)
/// || ...`), including one that an operator's replay made pending *after*
/// the delivery was finished. Here: relay 1 sends attempt 1 and is paused
/// (SIGSTOP) before it reads the 200; relay 2 takes over, attempt 2 gets 200
/// (delivered). The operator replays; the replay's attempt 3 gets 500 and is
/// scheduled again. Relay 1 runs again, reads its 200 of attempt 1 and
/// writes `delivered` over the replay's retrying result: the replay's retry
/// message then finds a final result and is acked unsent. The operator's
/// replay (answered `queued`) failed once and is never tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_relays_late_success_does_not_cancel_a_later_replay() {
    let nats = common::nats::NatsCluster::start(1).await;
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| match n {
        // Relay 1's attempt: answered while relay 1 is paused.
        0 => Behaviour::Slow(secs(8)),
        // The replay's first attempt fails.
        2 => Behaviour::Status(500),
        _ => Behaviour::Status(200),
    }))
    .await;
    let s = Subscriber::new("s", sub.url())
        .timeout(secs(60))
        .retry([secs(20), secs(20), secs(20)]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("stale-final")).await;
    sub.wait_for(secs(10), "the first attempt", |r| r.len() == 1).await;
    first.signal("STOP");

    let second = start(&cfg(d2.path())).await;
    let path = format!("/api/events/{id}");
    sub.wait_for(secs(20), "taken over", |r| r.len() == 2).await;
    until_delivered(second.admin_addr, &id, "s").await;

    // The operator replays it; the replay's attempt fails (500) and is
    // scheduled again in 20 s.
    let (status, replay) = admin(second.admin_addr, "POST", &format!("{path}/replay")).await;
    assert_eq!(status, 200, "{replay}");
    sub.wait_for(secs(10), "the replay's attempt", |r| r.len() == 3).await;
    // (The API shows a delivery waiting for its retry as `pending`.)
    admin_expect(
        second.admin_addr,
        &path,
        secs(20),
        "the replay's failure recorded",
        |v| v["subscribers"][0]["attempts_total"] == 3 && v["subscribers"][0]["state"] == "pending",
    )
    .await;

    // The paused relay runs again once the 200 of its attempt 1 (answered
    // 8 s after it came) waits in its socket.
    let answered = sub.all()[0].at + secs(9);
    tokio::time::sleep(answered.saturating_duration_since(std::time::Instant::now())).await;
    first.signal("CONT");
    let deadline = tokio::time::Instant::now() + secs(40);
    while sub.count() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let retried = sub.count() >= 4;
    let (_, ev) = admin(second.admin_addr, "GET", &path).await;
    assert!(
        retried,
        "the replay's failed attempt was never tried again (a stale relay's late 200 of attempt 1 \
         was written over the replay's retrying result): sent {} times; event {ev}; relay 1's log:\n{}",
        sub.count(),
        first.log_text()
    );
    second.shutdown().await;
}

/// Finding 2. A stale relay's late `dead` beats a later attempt's 200 (the
/// same rule: a final outcome is written over a pending result, and then
/// "the first final wins"). Relay 1's attempt 2 (the schedule's last) hangs
/// and relay 1 is paused; relay 2 takes over and begins attempt 3 (the
/// result: pending, attempts 3), which the subscriber answers 200 after a
/// while. Meanwhile relay 1 runs again, its attempt 2 times out, and it
/// writes `dead` over attempt 3's pending result and publishes a dead letter.
/// Attempt 3's 200 then finds a final result and is dropped. The delivery
/// the subscriber acknowledged shows `dead`, its letter is listed, and a
/// dead-letter replay sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_relays_late_dead_does_not_bury_a_later_attempts_success() {
    let nats = common::nats::NatsCluster::start(1).await;
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| match n {
        0 => Behaviour::Status(500),
        // Relay 1's last attempt: never answered (it times out late).
        1 => Behaviour::Hang,
        // Relay 2's attempt: 200, after relay 1's timeout has struck (relay 2
        // sends about 5 s after relay 1: `takeover`) and before its own.
        2 => Behaviour::Slow(secs(10)),
        _ => Behaviour::Status(200),
    }))
    .await;
    let s = Subscriber::new("s", sub.url()).timeout(secs(12)).retry([secs(1)]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("stale-dead")).await;
    sub.wait_for(secs(10), "relay 1's second attempt", |r| r.len() == 2)
        .await;
    first.signal("STOP");

    let second = start(&cfg(d2.path())).await;
    let path = format!("/api/events/{id}");
    sub.wait_for(secs(20), "relay 2's attempt", |r| r.len() == 3).await;
    first.signal("CONT");
    // Relay 2's attempt is answered 200 ten seconds after it was sent; by
    // 16 s relay 1's late `dead` is in too. Relay 2's record may come later
    // on a slow machine: looked for up to 20 s more (a `dead` standing stays).
    tokio::time::sleep(secs(16)).await;
    let ev = admin_until(second.admin_addr, &path, secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    let (_, dead) = admin(second.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(
        ev["subscribers"][0]["state"],
        "delivered",
        "the subscriber answered 200 to attempt 3, but relay 1's late `dead` of attempt 2 stands: \
         event {ev}; dead letters {dead}; relay 1's log:\n{}",
        first.log_text()
    );
    second.shutdown().await;
}

/// The other order (stop 77's Left): the relay that took the delivery over
/// fails it to the last and writes `dead` (its letter listed) while the
/// paused relay's attempt 1 is being answered 200. Relay 1, running again,
/// reads the 200: the subscriber has the callback, so it shows `delivered`,
/// its letter is dropped, and a replay of all dead letters does not send
/// it again. Before, the `dead` stood (the attempt only joined its
/// history) and the dead-letter replay sent the callback a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_relays_delivered_attempt_told_after_anothers_dead_makes_it_delivered() {
    let nats = common::nats::NatsCluster::start(1).await;
    let sub = Sub::start(std::sync::Arc::new(|n, _: &Received| match n {
        // Relay 1's attempt: answered while relay 1 is paused, after relay 2
        // has written the delivery dead.
        0 => Behaviour::Slow(secs(14)),
        _ => Behaviour::Status(500),
    }))
    .await;
    let s = Subscriber::new("s", sub.url()).timeout(secs(60)).retry([secs(1)]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &std::path::Path| TestConfig::new(dir).subscriber(s.clone()).nats(nats.urls(), 1);
    let first = Bin::start(&cfg(d1.path()).write(), &[]);
    let id = accepted(first.addr, &runway("late-delivered")).await;
    sub.wait_for(secs(10), "relay 1's attempt", |r| r.len() == 1).await;
    first.signal("STOP");

    let second = start(&cfg(d2.path())).await;
    let path = format!("/api/events/{id}");
    admin_expect(
        second.admin_addr,
        "/api/dead-letters",
        secs(30),
        "relay 2's dead letter",
        |v| v["dead_letters"].as_array().is_some_and(|d| d.len() == 1),
    )
    .await;
    let sent = sub.count();
    // Relay 1 runs again once the 200 of its attempt 1 waits in its socket.
    let answered = sub.all()[0].at + secs(15);
    tokio::time::sleep(answered.saturating_duration_since(std::time::Instant::now())).await;
    first.signal("CONT");
    let ev = admin_until(second.admin_addr, &path, secs(20), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(
        ev["subscribers"][0]["state"],
        "delivered",
        "the subscriber answered 200 to relay 1's attempt 1, but relay 2's `dead` stands: event {ev}; \
         relay 1's log:\n{}",
        first.log_text()
    );
    let letters = admin_until(second.admin_addr, "/api/dead-letters", secs(10), |v| v["total"] == 0).await;
    assert_eq!(
        letters["total"], 0,
        "the delivered callback's letter is still listed: {letters}"
    );
    let (status, v) = admin(second.admin_addr, "POST", "/api/dead-letters/replay").await;
    assert_eq!(status, 200, "{v}");
    tokio::time::sleep(secs(2)).await;
    assert_eq!(
        sub.count(),
        sent,
        "a dead-letter replay sent the delivered callback again: {v}"
    );
    second.shutdown().await;
}
