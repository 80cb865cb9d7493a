//! Delivery to subscribers: exact bytes, signatures, retries, dead letters,
//! isolation, rate limits, filters, crash safety and backlog drain.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use hmac::Mac;
use http::StatusCode;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Verify a Standard Webhooks signature independently of the code under test.
fn verify(secret: &str, id: &str, ts: &str, body: &[u8], header: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    header.split(' ').any(|s| s == expected)
}

#[tokio::test]
async fn body_bytes_headers_and_signature() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let other = Sub::ok().await;
    let new_secret = "whsec_dGhpcy1pcy1hLW5ldy1zaWduaW5nLWtleS0zMmJ5dGVz";
    let subs = subscriber_toml(
        "a",
        &sub.url(),
        &format!("secret = [\"{SECRET}\", \"{new_secret}\"]\nheaders = {{ \"X-Api-Key\" = \"k-123\" }}"),
    ) + &subscriber_toml("b", &other.url(), "");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    // Odd spacing, unicode and key order must survive byte for byte.
    let body = "{ \"code\" :200,\n \"msg\":\"caf\u{e9} \u{2713}\", \"data\":{\"task_id\":\"exact\"} }  ";
    let (s, _, answer) = post(
        h.ingest_addrs[0],
        "/hooks/t?token=tok",
        &[("content-type", "application/json; charset=utf-8")],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let id = serde_json::from_slice::<serde_json::Value>(&answer).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = sub
        .wait_for(Duration::from_secs(5), "delivery", |r| !r.is_empty())
        .await;
    let r = &got[0];
    assert_eq!(&r.body[..], body.as_bytes());
    assert_eq!(r.path, "/callbacks");
    assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
    assert_eq!(r.header("webhook-id"), id);
    assert!(
        r.header("user-agent").starts_with("hookrelay/"),
        "{}",
        r.header("user-agent")
    );
    assert_eq!(r.header("hookrelay-attempt"), "1");
    assert_eq!(r.header("x-api-key"), "k-123");
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 10);
    let sig = r.header("webhook-signature");
    assert_eq!(sig.split(' ').count(), 2, "both rotation keys sign: {sig}");
    assert!(verify(SECRET, &id, r.header("webhook-timestamp"), &r.body, sig));
    assert!(verify(new_secret, &id, r.header("webhook-timestamp"), &r.body, sig));
    assert!(!verify(SECRET, &id, r.header("webhook-timestamp"), b"tampered", sig));
    // The subscriber without a secret gets no signature, same id.
    let o = other
        .wait_for(Duration::from_secs(5), "delivery to b", |r| !r.is_empty())
        .await;
    assert_eq!(o[0].header("webhook-id"), id);
    assert!(o[0].headers.get("webhook-signature").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn configured_headers_replace_ours_and_take_secret_sources() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "k-from-file\n").unwrap();
    let extra = format!(
        "headers = {{ \"User-Agent\" = \"their-gateway/2\", \"X-Api-Key\" = {{ file = \"{}\" }} }}",
        key_file.display()
    );
    let h = start(
        dir.path(),
        &config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), &extra)),
    )
    .await;
    callback(h.ingest_addrs[0], &runway("headers")).await;
    let got = sub
        .wait_for(Duration::from_secs(5), "delivery", |r| !r.is_empty())
        .await;
    let values = |name: &str| -> Vec<&str> {
        got[0]
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(values("user-agent"), ["their-gateway/2"], "replaced, not appended");
    assert_eq!(values("x-api-key"), ["k-from-file"]);
    assert_eq!(values("webhook-id").len(), 1);
    h.shutdown().await;
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
    let subs = subscriber_toml(
        "s",
        &sub.url(),
        "retry = [\"200ms\", \"400ms\", \"800ms\"]\ncircuit_threshold = 100",
    );
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("retry")).await;
    let id = v["id"].as_str().unwrap().to_string();
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.count(), 4, "no more attempts after success");
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered");
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
    let sub = Sub::start(Arc::new(|_, _| Behaviour::Status(410))).await;
    let h = start(
        dir.path(),
        &config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")),
    )
    .await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("gone")).await;
    sub.wait_for(Duration::from_secs(5), "the attempt", |r| !r.is_empty())
        .await;
    let mut dl = serde_json::Value::Null;
    for _ in 0..100 {
        dl = admin(h.admin_addr, "GET", "/api/dead-letters").await.1;
        if !dl["dead_letters"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dl["dead_letters"][0]["event"], v["id"]);
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
    let subs = subscriber_toml("s", &sub.url(), "retry = [\"50ms\", \"50ms\"]\ncircuit_threshold = 100");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
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
    let unavailable = |after: &'static str| {
        Arc::new(move |_: usize, _: &Received| Behaviour::With(503, vec![("retry-after", after.to_string())])) as Script
    };
    // "Retry-After: 0" and a date in the past must not skip the schedule's 1 s gaps.
    let zero = Sub::start(unavailable("0")).await;
    let past = Sub::start(unavailable("Sun, 06 Nov 1994 08:49:37 GMT")).await;
    // A long Retry-After is capped by max_retry_after.
    let long = Sub::start(Arc::new(|n, _| match n {
        0 => Behaviour::With(503, vec![("retry-after", "3600".into())]),
        _ => Behaviour::Status(200),
    }))
    .await;
    let every = "retry = [\"1s\", \"1s\"]\ncircuit_threshold = 100";
    let subs = subscriber_toml("zero", &zero.url(), every)
        + &subscriber_toml("past", &past.url(), every)
        + &subscriber_toml(
            "long",
            &long.url(),
            "retry = [\"200ms\"]\nmax_retry_after = \"1s\"\ncircuit_threshold = 100",
        );
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
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
        "waited {gap:?}; max_retry_after is 1s"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_connection_errors_retry_then_dead_letter_then_replay() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Arc::new(AtomicUsize::new(0));
    let flag = healthy.clone();
    let hung = Sub::start(Arc::new(move |_, _| {
        if flag.load(Ordering::SeqCst) == 1 {
            Behaviour::Status(200)
        } else {
            Behaviour::Hang
        }
    }))
    .await;
    // Refused connections (nothing listens on port 9) are retried like a 500.
    let subs = subscriber_toml(
        "hung",
        &hung.url(),
        "timeout = \"300ms\"\nretry = [\"100ms\"]\ncircuit_threshold = 100",
    ) + &subscriber_toml(
        "refused",
        "http://127.0.0.1:9/x",
        "retry = [\"100ms\", \"100ms\"]\ncircuit_threshold = 100",
    );
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("t")).await;
    let id = v["id"].as_str().unwrap().to_string();
    let mut dl = serde_json::Value::Null;
    for _ in 0..200 {
        dl = admin(h.admin_addr, "GET", "/api/dead-letters").await.1;
        if dl["dead_letters"].as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let letters = dl["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{dl}");
    let by = |name: &str| letters.iter().find(|d| d["subscriber"] == name).unwrap().clone();
    assert!(by("hung")["last_error"].as_str().unwrap().contains("timeout"), "{dl}");
    assert_eq!(by("hung")["attempts"], 2);
    assert!(
        by("refused")["last_error"]
            .as_str()
            .unwrap()
            .contains("connection error"),
        "{dl}"
    );
    assert_eq!(by("refused")["attempts"], 3);
    assert_eq!(hung.count(), 2);
    // The subscriber recovers; replaying its dead letters delivers, same id.
    healthy.store(1, Ordering::SeqCst);
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
async fn hung_subscriber_does_not_delay_a_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let hung = Sub::start(Arc::new(|_, _| Behaviour::Hang)).await;
    let healthy = Sub::ok().await;
    let subs = subscriber_toml("hung", &hung.url(), "timeout = \"30s\"\nconcurrency = 2")
        + &subscriber_toml("ok", &healthy.url(), "");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let addr = h.ingest_addrs[0];
    let t0 = Instant::now();
    let mut latencies = Vec::new();
    for i in 0..50 {
        let sent = Instant::now();
        let (s, _) = callback(addr, &runway(&format!("iso-{i}"))).await;
        assert_eq!(s, StatusCode::OK);
        let got = healthy
            .wait_for(Duration::from_secs(5), "healthy delivery", |r| r.len() > i)
            .await;
        latencies.push(got[i].at - sent);
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    // Ingest is not slowed either: 50 callbacks and deliveries well inside the hung timeout.
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        max < Duration::from_secs(1),
        "healthy subscriber delayed: p50 {p50:?}, max {max:?}"
    );
    assert_eq!(hung.count(), 2, "the hung subscriber holds only its own concurrency");
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let hung_row = subs["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "hung")
        .unwrap()
        .clone();
    assert_eq!(hung_row["in_flight"], 2);
    assert_eq!(hung_row["queue_depth"], 50);
    // Shutdown does not wait for the hung subscriber.
    let t = Instant::now();
    h.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn rate_limit_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(
        dir.path(),
        &config(
            &dir.path().join("data"),
            "",
            &subscriber_toml("s", &sub.url(), "rate = \"20/s\""),
        ),
    )
    .await;
    for i in 0..30 {
        callback(h.ingest_addrs[0], &runway(&format!("rate-{i}"))).await;
    }
    let got = sub
        .wait_for(Duration::from_secs(10), "30 deliveries", |r| r.len() >= 30)
        .await;
    let span = got[29].at - got[0].at;
    // 30 requests at 20/s: the first goes at once, the rest 50 ms apart.
    assert!(
        span >= Duration::from_millis(29 * 50 - 100),
        "30 deliveries in {span:?} exceeds 20/s"
    );
    // Any 10 consecutive gaps span at least ~10 x 50 ms (arrival times jitter
    // a little under load; a missing limiter would put them at ~0).
    for w in got.windows(11) {
        let span = w[10].at - w[0].at;
        assert!(
            span >= Duration::from_millis(440),
            "11 deliveries within {span:?}: burst over 20/s"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn filters_skip_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let all = Sub::ok().await;
    let subs = subscriber_toml("only-ok", &sub.url(), "filter = { \"/code\" = 200 }")
        + &subscriber_toml("all", &all.url(), "");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let (_, ok) = callback(h.ingest_addrs[0], r#"{"code":200,"data":{"task_id":"f1"}}"#).await;
    let (_, failed) = callback(h.ingest_addrs[0], r#"{"code":500,"data":{"task_id":"f2"}}"#).await;
    all.wait_for(Duration::from_secs(5), "both to the unfiltered one", |r| r.len() >= 2)
        .await;
    let got = sub
        .wait_for(Duration::from_secs(5), "the matching one", |r| !r.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sub.count(), 1);
    assert_eq!(got[0].header("webhook-id"), ok["id"].as_str().unwrap());
    let (_, ev) = admin(
        h.admin_addr,
        "GET",
        &format!("/api/events/{}", failed["id"].as_str().unwrap()),
    )
    .await;
    let state = ev["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "only-ok")
        .unwrap()["state"]
        .clone();
    assert_eq!(state, "skipped");
    h.shutdown().await;
}

#[tokio::test]
async fn failing_subscriber_opens_the_circuit_and_recovers_at_full_speed() {
    let dir = tempfile::tempdir().unwrap();
    let up = Arc::new(AtomicUsize::new(0));
    let flag = up.clone();
    let sub = Sub::start(Arc::new(move |_, _| {
        if flag.load(Ordering::SeqCst) == 1 {
            Behaviour::Status(200)
        } else {
            Behaviour::Status(500)
        }
    }))
    .await;
    let subs = subscriber_toml("s", &sub.url(), "retry = [\"10ms\", \"10ms\", \"10ms\", \"10ms\", \"10ms\", \"10ms\", \"10ms\", \"10ms\"]\ncircuit_threshold = 3");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    for i in 0..40 {
        callback(h.ingest_addrs[0], &runway(&format!("c-{i}"))).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // 40 jobs × 9 tries would be 360 requests if hammered; the open circuit holds it to a few probes.
    let while_down = sub.count();
    assert!(while_down < 40, "{while_down} requests while failing");
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    assert_ne!(subs["subscribers"][0]["state"], "closed", "{subs}");
    up.store(1, Ordering::SeqCst);
    // The next probe comes when the (doubling, at most 60 s) pause ends; from
    // that first success on, the backlog must go at full speed.
    let got = sub
        .wait_for(Duration::from_secs(70), "all 40 delivered", |r| {
            r.len() >= while_down + 40
        })
        .await;
    let drain = got.last().unwrap().at - got[while_down].at;
    assert!(
        drain < Duration::from_secs(5),
        "after the probe succeeded, the rest took {drain:?}"
    );
    let ids: std::collections::HashSet<&str> = got[while_down..].iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 40);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_deliveries_then_restart_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg_path = dir.path().join("config.toml");
    let sub = Sub::start(Arc::new(|_, _| Behaviour::Slow(Duration::from_millis(20)))).await;
    write_config(
        dir.path(),
        &config(&data, "", &subscriber_toml("s", &sub.url(), "concurrency = 4")),
    );
    let mut bin = Bin::start(&cfg_path, &[]);
    let mut acked = Vec::new();
    for i in 0..300 {
        let (s, v) = callback(bin.addr, &runway(&format!("k-{i}"))).await;
        assert_eq!(s, StatusCode::OK);
        acked.push(v["id"].as_str().unwrap().to_string());
    }
    // Some deliveries are done, some in flight, most queued.
    sub.wait_for(Duration::from_secs(5), "deliveries under way", |r| r.len() >= 20)
        .await;
    bin.kill9();
    let before = sub.count();
    assert!(before < 300, "crash happened mid-way ({before} delivered)");
    let bin = Bin::start(&cfg_path, &[]);
    sub.wait_for(Duration::from_secs(30), "every acknowledged callback", |_| {
        let seen = seen_ids(&sub);
        acked.iter().all(|id| seen.contains_key(id))
    })
    .await;
    let seen = seen_ids(&sub);
    let repeats: usize = seen.values().map(|n| n - 1).sum();
    // At-least-once: a repeat is possible only for what was in flight or just finished at the crash.
    assert!(repeats <= 16, "{repeats} repeats");
    drop(bin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_of_100k_drains_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    const N: usize = 100_000;
    // Fill the store as ingest would, while the subscriber is down.
    {
        let store = open_store(&data);
        let acked = hookrelay::store::prefill::prefill(&store, "t", &["s"], N, "backlog")
            .await
            .unwrap();
        assert!(acked.iter().all(|a| !a.duplicate));
        store.close().await;
    }
    let counter = Arc::new(AtomicUsize::new(0));
    let c2 = counter.clone();
    let sub = Sub::start(Arc::new(move |_, _| {
        c2.fetch_add(1, Ordering::Relaxed);
        Behaviour::Status(200)
    }))
    .await;
    let cfg_path = dir.path().join("config.toml");
    write_config(
        dir.path(),
        &config(&data, "", &subscriber_toml("s", &sub.url(), "concurrency = 32")),
    );
    let started = Instant::now();
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let startup = started.elapsed();
    let rss_start = bin.rss_kib();
    let mut peak = rss_start;
    let drain = Instant::now();
    while counter.load(Ordering::Relaxed) < N {
        peak = peak.max(bin.rss_kib());
        assert!(
            drain.elapsed() < Duration::from_secs(300),
            "drain stalled at {}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = drain.elapsed();
    let rss_end = bin.rss_kib();
    eprintln!(
        "backlog {N}: start-up {startup:?}, drained in {took:?} ({:.0} jobs/s), RSS start {} MiB, peak {} MiB, end {} MiB",
        N as f64 / took.as_secs_f64(),
        rss_start / 1024,
        peak / 1024,
        rss_end / 1024
    );
    assert!(
        startup < Duration::from_secs(5),
        "start-up read the backlog: {startup:?}"
    );
    assert!(peak < 256 * 1024, "peak RSS {} MiB while draining", peak / 1024);
    // Every job delivered once.
    let seen = seen_ids(&sub);
    assert_eq!(seen.len(), N);
    drop(bin);
}

#[tokio::test]
async fn https_subscriber_with_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = write_cert(dir.path(), "sub");
    // A TLS subscriber, trusted only through ca_file (its self-signed cert).
    let tls = hookrelay::tls::load_server_config(&hookrelay::tls::TlsFiles {
        cert: cert.clone(),
        key,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(http::Version, String)>::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let id = req.headers()["webhook-id"].to_str().unwrap().to_string();
                        seen.lock().unwrap().push((req.version(), id));
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::new(),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let url = format!("https://localhost:{}/hook", addr.port());
    let subs = subscriber_toml("tls", &url, &format!("ca_file = \"{}\"", cert.display()))
        + &subscriber_toml("untrusted", &url, "retry = [\"1h\"]");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("tls")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no HTTPS delivery");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        1,
        "only the subscriber that trusts the CA gets through: {got:?}"
    );
    assert_eq!(got[0].1, v["id"].as_str().unwrap());
    assert_eq!(
        got[0].0,
        http::Version::HTTP_2,
        "ALPN negotiates h2 with an h2 subscriber"
    );
    let (_, ev) = admin(
        h.admin_addr,
        "GET",
        &format!("/api/events/{}", v["id"].as_str().unwrap()),
    )
    .await;
    let untrusted = ev["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "untrusted")
        .unwrap()
        .clone();
    let err = untrusted["attempts"][0]["error"].as_str().unwrap();
    assert!(err.contains("certificate") || err.contains("Unknown"), "{err}");
    h.shutdown().await;
}
