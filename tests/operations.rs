//! Operating it (the design's interface contract): the admin API with its
//! token, event ids it must refuse, Prometheus metrics counting real traffic,
//! the systemd unit's exposure, and a second daemon on the same store.
//! (Reload and sd_notify: `reload`; the CLI: `cli`.)

use crate::common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;

#[tokio::test]
async fn admin_endpoints_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .admin_token("admin-secret")
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let a = h.admin_addr;
    let id = accepted(h.ingest_addrs[0], &runway("adm")).await;
    sub.wait_for(Duration::from_secs(5), "delivery", |r| !r.is_empty())
        .await;

    assert_eq!(
        request(a, None, "GET", "/healthz", &[], Bytes::new()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        request(a, None, "GET", "/readyz", &[], Bytes::new()).await.0,
        StatusCode::OK
    );
    for path in ["/metrics", "/api/events", "/api/subscribers", "/api/dead-letters"] {
        assert_eq!(
            request(a, None, "GET", path, &[], Bytes::new()).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        let wrong = [("authorization", "Bearer nope")];
        assert_eq!(
            request(a, None, "GET", path, &wrong, Bytes::new()).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let auth = [
        ("authorization", "Bearer admin-secret"),
        ("content-type", "application/json"),
    ];
    let call = |method: &'static str, path: String| async move {
        let (s, _, b) = request(a, None, method, &path, &auth, Bytes::new()).await;
        (s, serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default())
    };
    let get = |path: String| call("GET", path);
    // The metrics are OpenMetrics text (`# EOF`, counters' `_total`
    // samples) and say so, so a scraper parses them as such.
    let (s, head, b) = request(a, None, "GET", "/metrics", &auth, Bytes::new()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        head["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(String::from_utf8_lossy(&b).trim_end().ends_with("# EOF"));
    let (s, v) = get("/api/events?limit=10".into()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["events"][0]["id"], id.as_str());
    let (_, v) = get("/api/events?route=t&status=delivered".into()).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    let (_, v) = get("/api/events?status=dead".into()).await;
    assert!(v["events"].as_array().unwrap().is_empty());
    let (s, v) = get(format!("/api/events/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["body"], runway("adm"));
    assert_eq!(v["subscribers"][0]["state"], "delivered");
    assert_eq!(v["subscribers"][0]["attempts"][0]["status"], 200);
    assert_eq!(get("/api/events/evt_nonsense".into()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        get("/api/events/evt_01M8G5S0QD2RJZ9GWMECMF4Z4N".into()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get("/api/events?limit=0".into()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(get("/api/nothing".into()).await.0, StatusCode::NOT_FOUND);
    let (_, v) = get("/api/subscribers".into()).await;
    assert_eq!(v["subscribers"][0]["name"], "s");
    assert_eq!(v["subscribers"][0]["state"], "closed");
    // Replay one event to one subscriber.
    let (s, v) = call("POST", format!("/api/events/{id}/replay?subscriber=s")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = sub
        .wait_for(Duration::from_secs(5), "the replay", |r| r.len() >= 2)
        .await;
    assert_eq!(got[1].header("webhook-id"), id);
    let (s, _) = call("POST", format!("/api/events/{id}/replay?subscriber=nobody")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        call("DELETE", "/api/events".into()).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    h.shutdown().await;
}

#[tokio::test]
async fn event_ids_that_overflow_128_bits_are_refused() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let id = accepted(h.ingest_addrs[0], &runway("alias")).await;
    assert_eq!(
        admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await.0,
        StatusCode::OK
    );
    // 26 base32 digits carry 130 bits: adding 8 to the first digit sets only
    // the two bits that do not fit, and must not name the same event.
    let digits = id.strip_prefix("evt_").unwrap();
    let first = digits.chars().next().unwrap().to_digit(10).unwrap();
    let alias = format!("evt_{}{}", first + 8, &digits[1..]);
    for (method, path) in [
        ("GET", format!("/api/events/{alias}")),
        ("POST", format!("/api/events/{alias}/replay")),
        ("GET", format!("/api/events?before={alias}")),
    ] {
        let (s, v) = admin(h.admin_addr, method, &path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn metrics_count_real_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::start(std::sync::Arc::new(|n, _| {
        if n == 0 {
            Behaviour::Status(500)
        } else {
            Behaviour::Status(200)
        }
    }))
    .await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()).retry([ms(50)]))
        .subscriber(Subscriber::new("down", DOWN).retry([secs(3600)]));
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    for i in 0..3 {
        callback(addr, &runway(&format!("m{i}"))).await;
    }
    callback(addr, &runway("m0")).await;
    post(addr, "/hooks/t?token=bad", &[], runway("x")).await;
    post(addr, "/hooks/zzz", &[], runway("x")).await;
    sub.wait_for(Duration::from_secs(5), "4 attempts", |r| r.len() >= 4)
        .await;
    // The subscriber counts a request when it arrives; the daemon counts it
    // once the answer is back and recorded. Wait for the fourth outcome.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let attempts = "hookrelay_delivery_attempt_seconds_count{subscriber=\"s\"}";
    let depth = "hookrelay_queue_depth{subscriber=\"s\"}";
    loop {
        let m = metrics(h.admin_addr).await;
        let has = |key: &str, done: fn(f64) -> bool| m.iter().any(|(k, v)| k == key && done(*v));
        if (has(attempts, |v| v >= 4.0) && has(depth, |v| v == 0.0)) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more is counted later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = metrics(h.admin_addr).await;
    for (key, want) in [
        ("hookrelay_ingest_requests_total{route=\"t\",status=\"200\"}", 4.0),
        ("hookrelay_ingest_requests_total{route=\"t\",status=\"401\"}", 1.0),
        ("hookrelay_ingest_requests_total{route=\"\",status=\"404\"}", 1.0),
        ("hookrelay_dedupe_hits_total{route=\"t\"}", 1.0),
        (
            "hookrelay_deliveries_total{subscriber=\"s\",outcome=\"delivered\"}",
            3.0,
        ),
        ("hookrelay_deliveries_total{subscriber=\"s\",outcome=\"retry\"}", 1.0),
        ("hookrelay_delivery_attempt_seconds_count{subscriber=\"s\"}", 4.0),
        ("hookrelay_queue_depth{subscriber=\"s\"}", 0.0),
        ("hookrelay_queue_depth{subscriber=\"down\"}", 3.0),
    ] {
        assert_eq!(sample(&m, key), want, "{key}");
    }
    assert!(sample(&m, "hookrelay_store_size_bytes") > 0.0);
    // No TLS here (a proxy in front does it): no certificate to call invalid.
    assert!(
        !m.iter().any(|(k, _)| k.starts_with("hookrelay_tls_cert_valid")),
        "a relay without TLS reports no certificate validity"
    );
    assert!(m
        .iter()
        .any(|(k, _)| k.starts_with("hookrelay_oldest_pending_seconds{subscriber=\"down\"}")));
    assert!(m.iter().all(|(k, _)| k.starts_with("hookrelay_")));
    h.shutdown().await;
}

/// An operator who clicks Replay twice (or replays while the first replay is
/// still being sent) gets one delivery: the second is `already_pending`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_asked_again_while_it_is_sent_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::start(std::sync::Arc::new(|n: usize, _: &Received| {
        if n == 0 {
            Behaviour::Status(200)
        } else {
            Behaviour::Slow(Duration::from_millis(1500))
        }
    }))
    .await;
    let h = start(&TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()))).await;
    let id = accepted(h.ingest_addrs[0], &runway("twice")).await;
    sub.wait_for(Duration::from_secs(5), "the delivery", |r| r.len() == 1)
        .await;
    // Replayed once its outcome is recorded (until then it is still being
    // sent, and a replay is `already_pending`).
    let view = admin_until(
        h.admin_addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(10),
        |v| v["subscribers"][0]["state"] == "delivered",
    )
    .await;
    assert_eq!(view["subscribers"][0]["state"], "delivered", "{view}");
    let json = [("content-type", "application/json")];
    let replay = format!("/api/events/{id}/replay");
    let answer = |b: Bytes| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
    let (s, _, first) = request(h.admin_addr, None, "POST", &replay, &json, Bytes::new()).await;
    assert_eq!((s, answer(first)["queued"][0].as_str()), (StatusCode::OK, Some("s")));
    // The subscriber has the replay and takes its time answering.
    sub.wait_for(Duration::from_secs(5), "the replay", |r| r.len() == 2)
        .await;
    let (s, _, second) = request(h.admin_addr, None, "POST", &replay, &json, Bytes::new()).await;
    let second = answer(second);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(second["already_pending"][0], "s", "{second}");
    assert_eq!(second["queued"].as_array().map(Vec::len), Some(0), "{second}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = sub.all();
    assert_eq!(got.len(), 2, "the replay was sent twice");
    assert_eq!(got[1].header("hookrelay-attempt"), "2");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_store_says_why_it_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let cfg_path = cfg.write();
    let first = Bin::start(&cfg_path, &[]);
    let path = cfg_path.clone();
    let second = tokio::task::spawn_blocking(move || cli_output(&["run", "--config", path.to_str().unwrap()]));
    let out = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second daemon neither started nor stopped")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Exit 1: the unit tries again, and starts once the lock is let go.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another hookrelay is using this store"), "{err}");
    assert!(err.contains(&cfg.data().display().to_string()), "{err}");
    // `migrate` says the same, naming the store once.
    let path = cfg_path.clone();
    let out = tokio::task::spawn_blocking(move || cli_output(&["migrate", "--config", path.to_str().unwrap()]))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another hookrelay is using this store"),
        "{err}"
    );
    assert_eq!(err.matches(&cfg.data().display().to_string()).count(), 1, "{err}");
    // The first one is unharmed.
    assert_eq!(callback(first.addr, &runway("still-mine")).await.0, StatusCode::OK);
}

/// The allocator's settings (`.cargo/config.toml`) are compiled into the binary.
#[test]
fn the_binary_allocates_with_jemalloc_and_its_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true,stats_print_opts:mdablxe")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("config.malloc_conf: \"narenas:1,tcache_max:65536,") && err.contains("opt.narenas: 1"),
        "{err}"
    );
}

#[test]
fn unit_file_exposure_is_low() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/hookrelay.service");
    let text = std::fs::read_to_string(unit).unwrap();
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "StateDirectory=",
        "ConfigurationDirectory=",
        "LoadCredential=",
        "CAP_NET_BIND_SERVICE",
        "ExecReload=",
    ] {
        assert!(text.contains(needed), "unit lacks {needed}");
    }
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=true", unit])
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            eprintln!("systemd-analyze not installed; exposure not checked");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let Some(line) = text.lines().find(|l| l.contains("Overall exposure level")) else {
        eprintln!("systemd-analyze gave no score (too old for --offline?): {text}");
        return;
    };
    let score: f64 = line
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(score <= 2.0, "exposure {score}: {line}");
}

/// `/healthz` and `/readyz` need no token, for GET and for HEAD alike: a
/// health check that sends HEAD (load balancers, uptime monitors, `curl -I`)
/// gets the GET status, without a body. From review 23, finding 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_health_checks_are_answered_like_get() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    for token in [Some("head-token"), None] {
        let mut cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
        if let Some(t) = token {
            cfg = cfg.admin_token(t);
        }
        let h = start(&cfg).await;
        let mut got = Vec::new();
        for path in ["/healthz", "/readyz"] {
            let (get, _, _) = request(h.admin_addr, None, "GET", path, &[], Default::default()).await;
            let (head, _, body) = request(h.admin_addr, None, "HEAD", path, &[], Default::default()).await;
            assert!(body.is_empty(), "HEAD {path} answered with a body: {body:?}");
            got.push((path, get.as_u16(), head.as_u16()));
        }
        h.shutdown().await;
        assert!(
            got.iter().all(|(_, get, head)| get == head),
            "token {token:?}: (path, GET, HEAD) = {got:?}"
        );
    }
}

/// A method an admin endpoint does not take is answered `405` with the ones
/// it does in `Allow` (RFC 9110), as the public listener does; `/healthz`
/// and `/readyz` too (they answered `404`).
#[tokio::test]
async fn admin_405_answers_name_the_methods_allowed() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    for (method, path, allow) in [
        ("DELETE", "/api/events", "GET, HEAD"),
        ("POST", "/api/subscribers", "GET, HEAD"),
        ("GET", "/api/dead-letters/replay", "POST"),
        ("GET", "/api/events/evt_01M8YE60WEHWNV8YNC6A6SW68D/replay", "POST"),
        ("DELETE", "/api/tasks", "GET, HEAD, POST"),
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/readyz", "GET, HEAD"),
        ("POST", "/ui/", "GET, HEAD"),
    ] {
        // With or without a content type: the method is what is wrong (it
        // was answered 415 without one).
        for headers in [&[("content-type", "application/json")][..], &[]] {
            let (status, got, body) = request(h.admin_addr, None, method, path, headers, Bytes::new()).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} {headers:?}: {body:?}"
            );
            assert_eq!(
                got.get("allow").and_then(|v| v.to_str().ok()),
                Some(allow),
                "{method} {path}"
            );
        }
    }
    h.shutdown().await;
}
