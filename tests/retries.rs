//! Promise 3, at-least-once: a failed delivery is retried on the schedule with
//! the same `webhook-id` (500s, timeouts, refused and dropped connections,
//! `Retry-After`), `410` and an exhausted schedule make a dead letter, and a
//! replay delivers it. (What a delivery carries: `delivery`.)

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;

/// The dead letters once there are `n` of them (or after `limit`).
async fn dead_letters(admin_addr: std::net::SocketAddr, n: usize, limit: Duration) -> serde_json::Value {
    admin_until(admin_addr, "/api/dead-letters", limit, |dl| {
        dl["dead_letters"].as_array().unwrap().len() == n
    })
    .await
}

#[tokio::test]
async fn retries_keep_the_id_and_back_off() {
    let dir = tempfile::tempdir().unwrap();
    // Fail three times (500, connection-level garbage is covered elsewhere), then accept.
    let sub = Sub::start(Arc::new(|n, _| {
        if n < 3 {
            Behaviour::Status(500)
        } else {
            Behaviour::Status(204)
        }
    }))
    .await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("s", sub.url())
            .retry([ms(200), ms(400), ms(800)])
            .circuit_threshold(100),
    );
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("retry")).await;
    let got = sub
        .wait_for(Duration::from_secs(10), "4 attempts", |r| r.len() >= 4)
        .await;
    assert!(
        got.iter().all(|r| r.header("webhook-id") == id),
        "same webhook-id on every attempt"
    );
    let attempts: Vec<&str> = got.iter().map(|r| r.header("hookrelay-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 200/400/800 ms ± 20 % jitter: every gap within its window, so they grow.
    for (gap, base) in gaps.iter().zip([200u64, 400, 800]) {
        let (lo, hi) = (
            Duration::from_millis(base * 8 / 10),
            Duration::from_millis(base * 12 / 10 + 300),
        );
        assert!(
            *gap >= lo && *gap <= hi,
            "gap {gap:?} not within {lo:?}..{hi:?} (all: {gaps:?})"
        );
    }
    // The fourth answer is recorded once it is back: wait for that.
    let ev = admin_until(
        h.admin_addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(10),
        |ev| ev["subscribers"][0]["state"] != "pending",
    )
    .await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.count(), 4, "no more attempts after success");
    let statuses: Vec<u64> = ev["subscribers"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 500, 204]);
    h.shutdown().await;
}

#[tokio::test]
async fn gone_means_dead_letter_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::always(Behaviour::Status(410)).await;
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()))).await;
    let id = accepted(h.ingest_addrs[0], &runway("gone")).await;
    sub.wait_for(Duration::from_secs(5), "the attempt", |r| !r.is_empty())
        .await;
    let dl = dead_letters(h.admin_addr, 1, secs(10)).await;
    assert_eq!(dl["dead_letters"][0]["event"], id.as_str());
    assert!(dl["dead_letters"][0]["last_error"].as_str().unwrap().contains("410"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sub.count(), 1, "no retry after 410");
    h.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::With(429, vec![("retry-after", "1".into())]),
        _ => Behaviour::Status(200),
    }))
    .await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("s", sub.url())
            .retry([ms(50), ms(50)])
            .circuit_threshold(100),
    );
    let h = start(&cfg).await;
    callback(h.ingest_addrs[0], &runway("slow-down")).await;
    let got = sub
        .wait_for(Duration::from_secs(5), "2 attempts", |r| r.len() >= 2)
        .await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "waited {gap:?} instead of Retry-After: 1"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn retry_after_never_shortens_the_schedule_and_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let unavailable = |after: &str| Behaviour::With(503, vec![("retry-after", after.to_string())]);
    // "Retry-After: 0" and a date in the past must not skip the schedule's 1 s gaps.
    let zero = Sub::always(unavailable("0")).await;
    let past = Sub::always(unavailable("Sun, 06 Nov 1994 08:49:37 GMT")).await;
    // A long Retry-After is capped by max_retry_after.
    let long = Sub::start(Arc::new(move |n, _| match n {
        0 => unavailable("3600"),
        _ => Behaviour::Status(200),
    }))
    .await;
    let every = |name: &str, sub: &Sub| {
        Subscriber::new(name, sub.url())
            .retry([secs(1), secs(1)])
            .circuit_threshold(100)
    };
    let cfg = TestConfig::new(dir.path())
        .subscriber(every("zero", &zero))
        .subscriber(every("past", &past))
        .subscriber(
            Subscriber::new("long", long.url())
                .retry([ms(200)])
                .max_retry_after(secs(1))
                .circuit_threshold(100),
        );
    let h = start(&cfg).await;
    callback(h.ingest_addrs[0], &runway("retry-after")).await;
    for sub in [&zero, &past] {
        let got = sub
            .wait_for(Duration::from_secs(6), "3 attempts", |r| r.len() >= 3)
            .await;
        for w in got.windows(2) {
            let gap = w[1].at - w[0].at;
            assert!(
                gap >= Duration::from_millis(780),
                "retried after {gap:?}, schedule says 1s ±20 %"
            );
        }
    }
    let got = long
        .wait_for(Duration::from_secs(5), "2 attempts", |r| r.len() >= 2)
        .await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_millis(2500),
        "waited {gap:?}; max_retry_after is 1s (spread up to 20 % past it)"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn retry_after_too_large_for_a_number_or_on_a_gateway_error_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let first_then_ok = |status: u16, after: &'static str| {
        Arc::new(move |n: usize, _: &common::subscriber::Received| match n {
            0 => Behaviour::With(status, vec![("retry-after", after.to_string())]),
            _ => Behaviour::Status(200),
        })
    };
    // More digits than any integer holds: "very long", capped by max_retry_after.
    let huge = Sub::start(first_then_ok(503, "99999999999999999999999")).await;
    // A gateway in front of the subscriber asking for a pause.
    let gateway = Sub::start(first_then_ok(502, "1")).await;
    let sub = |name: &str, s: &Sub| {
        Subscriber::new(name, s.url())
            .retry([ms(200)])
            .max_retry_after(secs(1))
            .circuit_threshold(100)
    };
    let cfg = TestConfig::new(dir.path())
        .subscriber(sub("huge", &huge))
        .subscriber(sub("gateway", &gateway));
    let h = start(&cfg).await;
    callback(h.ingest_addrs[0], &runway("retry-after-odd")).await;
    for (name, s) in [("huge", &huge), ("gateway", &gateway)] {
        let got = s.wait_for(Duration::from_secs(5), "2 attempts", |r| r.len() >= 2).await;
        let gap = got[1].at - got[0].at;
        assert!(
            gap >= Duration::from_millis(950) && gap < Duration::from_millis(2500),
            "{name}: waited {gap:?}; Retry-After asks for (at the cap) 1s, the schedule says 200ms"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_connection_errors_retry_then_dead_letter_then_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (hung, healthy) = Sub::broken(Behaviour::Hang).await;
    // Refused connections (nothing listens on port 9) are retried like a 500.
    let cfg = TestConfig::new(dir.path())
        .subscriber(
            Subscriber::new("hung", hung.url())
                .timeout(ms(300))
                .retry([ms(100)])
                .circuit_threshold(100),
        )
        .subscriber(
            Subscriber::new("refused", "http://127.0.0.1:9/x")
                .retry([ms(100), ms(100)])
                .circuit_threshold(100),
        );
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("t")).await;
    let dl = dead_letters(h.admin_addr, 2, secs(5)).await;
    let letters = &dl["dead_letters"];
    assert_eq!(letters.as_array().unwrap().len(), 2, "{dl}");
    let by = |name: &str| row(letters, "subscriber", name);
    assert!(by("hung")["last_error"].as_str().unwrap().contains("timeout"), "{dl}");
    assert_eq!(by("hung")["attempts"], 2);
    assert!(
        by("refused")["last_error"]
            .as_str()
            .unwrap()
            .contains("connection error: 127.0.0.1:9: "),
        "the host that could not be reached is named: {dl}"
    );
    assert_eq!(by("refused")["attempts"], 3);
    assert_eq!(hung.count(), 2);
    // The subscriber recovers; replaying its dead letters delivers, same id.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let (s, r) = admin(h.admin_addr, "POST", "/api/dead-letters/replay?subscriber=hung").await;
    assert_eq!((s, r["requeued"].as_u64()), (StatusCode::OK, Some(1)));
    let got = hung
        .wait_for(Duration::from_secs(5), "replayed delivery", |r| r.len() >= 3)
        .await;
    assert_eq!(got[2].header("webhook-id"), id);
    assert_eq!(
        got[2].header("hookrelay-attempt"),
        "3",
        "attempt numbers continue across a replay"
    );
    let (_, dl) = admin(h.admin_addr, "GET", "/api/dead-letters").await;
    assert_eq!(
        dl["dead_letters"].as_array().unwrap().len(),
        1,
        "only the refused one is left"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn subscriber_that_drops_connections_mid_response_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let sub = RawSub::start(|n| match n {
        0 => RawAnswer::Close,                                   // close without a word
        1 => RawAnswer::Bytes(b"HTTP/1.1 20"),                   // half a status line
        2 => RawAnswer::Bytes(b"HTTP/1.1 200 OK\r\ncontent-le"), // half the headers
        _ => RawAnswer::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
    })
    .await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("flaky", sub.url())
            .retry([ms(50), ms(50), ms(50), ms(50)])
            .circuit_threshold(100),
    );
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("flaky")).await;
    let state = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |ev| {
        ev["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(state["subscribers"][0]["state"], "delivered", "{state}");
    let tries = state["subscribers"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(tries.len(), 4, "{state}");
    assert!(
        tries[..3]
            .iter()
            .all(|a| a["error"].as_str().unwrap().contains("connection error")),
        "{state}"
    );
    assert!(sub.ids.lock().unwrap().iter().all(|x| *x == id));
    h.shutdown().await;
}

/// A subscriber failing every attempt shows in the log at the default level
/// at its first failure, naming why, and not again within a minute however
/// many attempts fail (three events, five attempts each): no flood. (The
/// longer intervals that follow: `delivery::failure_log`'s unit test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_subscriber_is_logged_at_its_first_failure_then_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::start(Arc::new(|_, _| Behaviour::Status(500))).await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("s", sub.url())
            .retry([ms(100), ms(100), ms(100), ms(100)])
            .circuit_threshold(100),
    );
    let bin = Bin::start(&cfg.write(), &[]);
    for task in ["quiet-1", "quiet-2", "quiet-3"] {
        accepted(bin.addr, &runway(task)).await;
    }
    dead_letters(bin.admin, 3, secs(20)).await;
    // Each "gave up" line is written before its dead letter is recorded,
    // but read from the daemon's stderr by another thread: until all three.
    let deadline = std::time::Instant::now() + secs(10);
    while bin.log_text().matches("delivery gave up").count() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(ms(50)).await;
    }
    let log = bin.log_text();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("delivery failed; will retry"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(warned[0].contains("WARN") && warned[0].contains("HTTP 500"), "{log}");
    assert_eq!(log.matches("delivery gave up").count(), 3, "{log}");
}
