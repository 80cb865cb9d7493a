//! Promise 3 (at-least-once, on schedule) and retention, timed exactly: the
//! daemon runs in-process on tokio's paused clock, and the test moves time
//! with `advance` — no sleeping, no tolerance beyond the schedule's own jitter
//! and the test's time step. (The store's writer is a blocking task, which
//! keeps tokio from advancing time by itself while real I/O completes.)

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;

/// Let a burst of requests in without moving time: settle until four settles
/// in a row in which `sub` sees no new request (at most 10 s of real time). On a
/// loaded machine one settle (25 ms) was not always enough: 24 deliveries
/// sent at once after the circuit closed reached the subscriber over more
/// than three settles, and the test moved time past its bound while they
/// were still under way (one failure in five runs with both cores busy).
/// Only real time is added: what the tests assert is tokio's time.
async fn settle_quiet(h: &hookrelay::Handle, sub: &Sub) {
    let limit = std::time::Instant::now() + Duration::from_secs(10);
    let (mut last, mut quiet) = (sub.count(), 0);
    while quiet < 4 && std::time::Instant::now() < limit {
        settle(h).await;
        let now = sub.count();
        if now == last {
            quiet += 1;
        } else {
            (last, quiet) = (now, 0);
        }
    }
}

/// Move time forward by `d` in `step`s until `done` holds for the number of
/// requests `sub` has seen; the time it took. When requests arrived during a
/// step's settle, time waits for the rest of them ([`settle_quiet`]). Each
/// settle waits for the daemon to be idle ([`settle`]): the outcome of the
/// request that made `done` hold is recorded before time moves on.
async fn advance_until(
    h: &hookrelay::Handle,
    d: Duration,
    step: Duration,
    sub: &Sub,
    done: impl Fn(usize) -> bool,
) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    while start.elapsed() <= d {
        let before = sub.count();
        settle(h).await;
        if sub.count() != before && !done(sub.count()) {
            settle_quiet(h, sub).await;
        }
        if done(sub.count()) {
            return Some(start.elapsed());
        }
        tokio::time::advance(step).await;
    }
    None
}

/// Jump forward by `d` (in one step, then let the daemon catch up).
async fn jump(h: &hookrelay::Handle, d: Duration) {
    tokio::time::advance(d).await;
    settle(h).await;
}

/// Attempt times of the event's only delivery, from the store (ms).
async fn attempt_times(h: &hookrelay::Handle, id: &str) -> Vec<u64> {
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    ev["subscribers"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let t = humantime::parse_rfc3339(a["at"].as_str().unwrap()).unwrap();
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
        })
        .collect()
}

const STEP: Duration = Duration::from_millis(100);

#[tokio::test(start_paused = true)]
async fn retries_follow_the_schedule_within_its_jitter() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::start(Arc::new(|n, _| Behaviour::Status(if n < 3 { 500 } else { 200 }))).await;
    let schedule = [secs(10), secs(60), secs(300)];
    let cfg =
        TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()).retry(schedule).circuit_threshold(100));
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("on-schedule")).await;
    assert!(advance_until(&h, secs(1), STEP, &sub, |n| n == 1).await.is_some());
    for (i, d) in schedule.iter().enumerate() {
        // Nothing before 80 % of the delay…
        jump(&h, d.mul_f64(0.8) - STEP).await;
        assert_eq!(sub.count(), i + 1, "retry {} came early", i + 1);
        // …and the retry by 120 %.
        let took = advance_until(&h, d.mul_f64(0.4) + STEP * 2, STEP, &sub, |n| n == i + 2).await;
        assert!(took.is_some(), "retry {} not within 120 % of {d:?}", i + 1);
    }
    let at = attempt_times(&h, &id).await;
    assert_eq!(at.len(), 4);
    for (gap, d) in at.windows(2).map(|w| w[1] - w[0]).zip(schedule) {
        let (lo, hi) = (d.mul_f64(0.8).as_millis() as u64, d.mul_f64(1.2).as_millis() as u64);
        assert!(gap + 100 >= lo && gap <= hi + 100, "gap {gap} ms for {d:?}");
    }
    assert_eq!(sub.all().iter().filter(|r| r.header("webhook-id") == id).count(), 4);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_lengthens_the_wait_but_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::With(503, vec![("retry-after", "120".into())]),
        1 => Behaviour::With(429, vec![("retry-after", "86400".into())]),
        _ => Behaviour::Status(200),
    }))
    .await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("s", sub.url())
            .retry([secs(10), secs(10)])
            .max_retry_after(secs(600))
            .circuit_threshold(100),
    );
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("retry-after")).await;
    assert!(advance_until(&h, secs(1), STEP, &sub, |n| n == 1).await.is_some());
    // Retry-After 120 s beats the 10 s schedule (spread up to 20 % longer).
    jump(&h, secs(120) - STEP).await;
    assert_eq!(sub.count(), 1, "Retry-After was not honoured");
    assert!(advance_until(&h, secs(25), secs(1), &sub, |n| n == 2).await.is_some());
    // Retry-After of a day is capped by max_retry_after (10 min), then
    // spread likewise.
    jump(&h, secs(600) - STEP).await;
    assert_eq!(sub.count(), 2, "the cap came early");
    assert!(advance_until(&h, secs(121), secs(1), &sub, |n| n == 3).await.is_some());
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_pauses_doubling_and_closes_at_the_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    // Fails its first four requests, then answers.
    let sub = Sub::start(Arc::new(|n, _| Behaviour::Status(if n < 4 { 500 } else { 200 }))).await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("s", sub.url())
            .retry([secs(3600)])
            .concurrency(1)
            .circuit_threshold(2),
    );
    let h = start(&cfg).await;
    for i in 0..10 {
        accepted(h.ingest_addrs[0], &runway(&format!("circuit-{i}"))).await;
    }
    // Two failures open it; then one probe after each pause: 1 s, 2 s, 4 s.
    assert!(advance_until(&h, secs(1), STEP, &sub, |n| n >= 2).await.is_some());
    assert_eq!(sub.count(), 2);
    for (i, pause) in [1, 2, 4].into_iter().enumerate() {
        jump(&h, secs(pause) - STEP * 2).await;
        assert_eq!(sub.count(), 2 + i, "probe before the {pause} s pause ended");
        let took = advance_until(&h, STEP * 4, STEP, &sub, |n| n > 2 + i).await;
        assert!(took.is_some(), "no probe after the {pause} s pause");
    }
    // The third probe was answered: the other five events follow at once
    // (no time passes while they arrive).
    settle_quiet(&h, &sub).await;
    assert_eq!(sub.count(), 10, "full speed once the subscriber answers");
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_eq!(subs["subscribers"][0]["state"], "closed");
    assert_eq!(
        subs["subscribers"][0]["queue_depth"], 4,
        "the four failures wait for their retry"
    );
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retention_sweeps_finished_events_and_keeps_dead_letters_until_their_own_retention() {
    let dir = tempfile::tempdir().unwrap();
    // "ok" is delivered at once; "late-dead" fails, then is told 410 on its retry.
    let sub = Sub::start(Arc::new(|_, r| {
        let body = String::from_utf8_lossy(&r.body).to_string();
        match r.header("hookrelay-attempt") {
            _ if body.contains("\"ok\"") => Behaviour::Status(200),
            "1" => Behaviour::Status(500),
            _ => Behaviour::Status(410),
        }
    }))
    .await;
    // Retention 2 min; sweeps run 10 s after start, then every minute.
    let cfg = TestConfig::new(dir.path())
        .retention(secs(120))
        .subscriber(Subscriber::new("s", sub.url()).retry([secs(90)]).circuit_threshold(100));
    let h = start(&cfg).await;
    let t0 = tokio::time::Instant::now();
    let ok = accepted(h.ingest_addrs[0], &runway("ok")).await;
    let dead = accepted(h.ingest_addrs[0], &runway("late-dead")).await;
    // The retry (72–108 s, jitter) is answered 410: a dead letter from then on.
    assert!(advance_until(&h, secs(110), secs(1), &sub, |n| n >= 3).await.is_some());
    let status = |id: String| {
        let addr = h.admin_addr;
        async move { admin(addr, "GET", &format!("/api/events/{id}")).await.0 }
    };
    let until = |at: u64| secs(at).saturating_sub(t0.elapsed());
    // A sweep at 140 s: both events arrived more than 2 min ago, but the dead
    // letter died less than 2 min ago.
    jump(&h, until(140)).await;
    assert_eq!(
        status(ok.clone()).await,
        StatusCode::NOT_FOUND,
        "delivered event outlived its retention"
    );
    assert_eq!(
        status(dead.clone()).await,
        StatusCode::OK,
        "a dead letter is kept retention after it died"
    );
    let (_, dl) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(dl["dead_letters"].as_array().unwrap().len(), 1);
    let gauge = |m: Vec<(String, f64)>| {
        m.into_iter()
            .find(|(k, _)| k == "hookrelay_dead_letters{subscriber=\"s\"}")
            .map(|(_, v)| v)
    };
    assert_eq!(gauge(metrics(h.admin_addr).await), Some(1.0), "the dead-letter gauge");
    // The dedupe key went with the event: the same callback is new again.
    let (_, v) = callback(h.ingest_addrs[0], &runway("ok")).await;
    assert_eq!(v["duplicate"], false);
    // Sweeps at 200 s and 260 s: the dead letter died at most 108 s in, so by
    // 260 s its own retention is over.
    jump(&h, secs(60)).await;
    jump(&h, secs(60)).await;
    assert_eq!(status(dead).await, StatusCode::NOT_FOUND);
    // The gauge follows the sweep (an alert on it clears).
    assert_eq!(
        gauge(metrics(h.admin_addr).await),
        Some(0.0),
        "the dead-letter gauge after the sweep"
    );
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failures_in_flight_when_the_circuit_opens_do_not_stretch_its_pause() {
    let dir = tempfile::tempdir().unwrap();
    let (sub, healthy) = Sub::broken(Behaviour::Status(500)).await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("s", sub.url())
            .retry([secs(3600)])
            .concurrency(16)
            .circuit_threshold(5),
    );
    // Forty events waiting before the daemon starts: it sends sixteen at once.
    prefill(&cfg.data(), 40, &["s"]).await;
    let h = start(&cfg).await;
    // Sixteen requests were in flight (and a few more refilled their places);
    // all failed. The circuit opened at the fifth failure: the others, sent
    // before it opened, must not stretch its 1 s pause.
    assert!(advance_until(&h, secs(1), STEP, &sub, |n| n >= 16).await.is_some());
    settle_quiet(&h, &sub).await;
    let sent = sub.count();
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let took = advance_until(&h, secs(2), STEP, &sub, |n| n > sent).await;
    assert!(took.is_some_and(|t| t <= secs(1) + STEP), "first probe after {took:?}");
    // It is answered: the rest follow at full speed.
    assert!(advance_until(&h, STEP * 3, STEP, &sub, |n| n >= 40).await.is_some());
    h.shutdown().await;
}
