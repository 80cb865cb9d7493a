//! Operating it: admin API, metrics, CLI, systemd notification, reload, logs.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

#[tokio::test]
async fn admin_endpoints_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\ntoken = \"admin-secret\"",
    );
    let h = start(dir.path(), &cfg).await;
    let a = h.admin_addr;
    let (_, v) = callback(h.ingest_addrs[0], &runway("adm")).await;
    let id = v["id"].as_str().unwrap().to_string();
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
    let auth = [("authorization", "Bearer admin-secret")];
    let get = |path: String| async move {
        let (s, _, b) = request(a, None, "GET", &path, &auth, Bytes::new()).await;
        (s, serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default())
    };
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
    let (s, _, b) = request(
        a,
        None,
        "POST",
        &format!("/api/events/{id}/replay?subscriber=s"),
        &auth,
        Bytes::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let got = sub
        .wait_for(Duration::from_secs(5), "the replay", |r| r.len() >= 2)
        .await;
    assert_eq!(got[1].header("webhook-id"), id);
    let (s, _, _) = request(
        a,
        None,
        "POST",
        &format!("/api/events/{id}/replay?subscriber=nobody"),
        &auth,
        Bytes::new(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        request(a, None, "DELETE", "/api/events", &auth, Bytes::new()).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    h.shutdown().await;
}

#[tokio::test]
async fn event_ids_that_overflow_128_bits_are_refused() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("alias")).await;
    let id = v["id"].as_str().unwrap().to_string();
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

/// Write `n` events of route `t` (no subscribers: nothing to deliver) into the store at `data`.
async fn prefill(data: &std::path::Path, n: usize) {
    let store = open_store(data);
    hookrelay::store::prefill::prefill(&store, "t", &[], n, "prefill")
        .await
        .unwrap();
    store.close().await;
}

// One worker thread, as a loaded daemon's workers are: a listing that scans the
// store on it would stall every other request for the whole scan.
#[tokio::test(flavor = "current_thread")]
async fn admin_listings_scan_the_store_off_the_async_workers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prefill(&data, 80_000).await;
    let h = start(dir.path(), &config(&data, "", &subscriber_toml("s", DOWN, ""))).await;
    let a = h.admin_addr;
    // No event is dead: this pages through all 80k of them.
    let listing = tokio::spawn(async move {
        let t = Instant::now();
        let (s, v) = admin(a, "GET", "/api/events?status=dead&limit=1").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        t.elapsed()
    });
    let (mut answered, mut slowest) = (0, Duration::ZERO);
    while !listing.is_finished() {
        let t = Instant::now();
        assert_eq!(admin(a, "GET", "/healthz").await.0, StatusCode::OK);
        slowest = slowest.max(t.elapsed());
        answered += 1;
    }
    let scan = listing.await.unwrap();
    eprintln!("listing took {scan:?}; {answered} /healthz answered meanwhile, the slowest in {slowest:?}");
    assert!(
        scan > Duration::from_millis(60),
        "the scan ({scan:?}) is too short to tell anything"
    );
    assert!(
        answered >= 10,
        "only {answered} /healthz answered during a {scan:?} listing (slowest {slowest:?}): the scan ran on the async worker"
    );
    h.shutdown().await;
}

/// Parse Prometheus text into (name{labels}, value).
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad metrics line {l:?}"));
            (
                k.to_string(),
                v.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            )
        })
        .collect()
}

fn sample(all: &[(String, f64)], key: &str) -> f64 {
    all.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no sample {key}"))
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
    let subs = subscriber_toml("s", &sub.url(), "retry = [\"50ms\"]")
        + &subscriber_toml("down", "http://127.0.0.1:9/", "retry = [\"1h\"]");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let addr = h.ingest_addrs[0];
    for i in 0..3 {
        callback(addr, &runway(&format!("m{i}"))).await;
    }
    callback(addr, &runway("m0")).await;
    post(addr, "/hooks/t?token=bad", &[], runway("x")).await;
    post(addr, "/hooks/zzz", &[], runway("x")).await;
    sub.wait_for(Duration::from_secs(5), "4 attempts", |r| r.len() >= 4)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, text) = admin(h.admin_addr, "GET", "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let m = samples(text.as_str().unwrap());
    assert_eq!(
        sample(&m, "hookrelay_ingest_requests_total{route=\"t\",status=\"200\"}"),
        4.0
    );
    assert_eq!(
        sample(&m, "hookrelay_ingest_requests_total{route=\"t\",status=\"401\"}"),
        1.0
    );
    assert_eq!(
        sample(&m, "hookrelay_ingest_requests_total{route=\"\",status=\"404\"}"),
        1.0
    );
    assert_eq!(sample(&m, "hookrelay_dedupe_hits_total{route=\"t\"}"), 1.0);
    assert_eq!(
        sample(&m, "hookrelay_deliveries_total{subscriber=\"s\",outcome=\"delivered\"}"),
        3.0
    );
    assert_eq!(
        sample(&m, "hookrelay_deliveries_total{subscriber=\"s\",outcome=\"retry\"}"),
        1.0
    );
    assert_eq!(
        sample(&m, "hookrelay_delivery_attempt_seconds_count{subscriber=\"s\"}"),
        4.0
    );
    assert_eq!(sample(&m, "hookrelay_queue_depth{subscriber=\"s\"}"), 0.0);
    assert_eq!(sample(&m, "hookrelay_queue_depth{subscriber=\"down\"}"), 3.0);
    assert!(sample(&m, "hookrelay_store_size_bytes") > 0.0);
    assert!(m
        .iter()
        .any(|(k, _)| k.starts_with("hookrelay_oldest_pending_seconds{subscriber=\"down\"}")));
    assert!(m.iter().all(|(k, _)| k.starts_with("hookrelay_")));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::start(std::sync::Arc::new(|_, _| Behaviour::Status(410))).await;
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\ntoken = \"cli-token\"",
    );
    let h = start(dir.path(), &cfg).await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("cli")).await;
    let id = v["id"].as_str().unwrap().to_string();
    sub.wait_for(Duration::from_secs(5), "attempt", |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base = format!("http://{}", h.admin_addr);
    let cfg_path = dir.path().join("config.toml");
    let cfg_s = cfg_path.to_str().unwrap();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || cli(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let common = |more: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--config".into(), cfg_s.into(), "--admin".into(), base.clone()];
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };

    let (ok, out, err) = run(common(&["events"])).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.starts_with("ID"), "{out}");
    assert!(out.contains(&id) && out.contains("dead"), "{out}");
    let (ok, out, _) = run(common(&["events", "--json"])).await.unwrap();
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"][0]["id"], id.as_str());
    let (ok, out, _) = run(common(&["event", &id])).await.unwrap();
    assert!(ok && out.contains("HTTP 410"), "{out}");
    let (ok, out, _) = run(common(&["dead-letters"])).await.unwrap();
    assert!(ok && out.contains(&id) && out.contains("410"), "{out}");
    let (ok, out, _) = run(common(&["subscribers"])).await.unwrap();
    assert!(
        ok && out.contains("QUEUED") && out.lines().nth(1).unwrap().starts_with("s "),
        "{out}"
    );
    let (ok, out, _) = run(common(&["replay-dead-letters", "--subscriber", "s"]))
        .await
        .unwrap();
    assert!(ok && out.contains("re-queued 1"), "{out}");
    sub.wait_for(Duration::from_secs(5), "replayed attempt", |r| r.len() >= 2)
        .await;
    let (ok, out, _) = run(common(&["replay", &id])).await.unwrap();
    assert!(ok && out.contains(&id), "{out}");
    // The token comes from the config file; a wrong one is named as the problem.
    let (ok, _, err) = run(common(&["--token", "wrong", "events"])).await.unwrap();
    assert!(!ok && err.contains("refused the token"), "{err}");
    let (ok, _, err) = run(common(&["event", "evt_01M8G5S0QD2RJZ9GWMECMF4Z4N"])).await.unwrap();
    assert!(!ok && err.contains("404"), "{err}");
    h.shutdown().await;
    // No daemon: a clear message, non-zero exit.
    let (ok, _, err) = run(common(&["events"])).await.unwrap();
    assert!(!ok && err.contains("cannot reach the daemon"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_reads_only_the_admin_settings_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let daemon_cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\ntoken = \"cli-token\"",
    );
    let h = start(dir.path(), &daemon_cfg).await;
    let admin_addr = h.admin_addr.to_string();
    // The file as the operator has it under systemd: every other secret is a
    // credential or variable this shell does not have.
    let systemd_like = |admin_token: &str| {
        config(
            &dir.path().join("data"),
            "signature = { scheme = \"kie\", secret = { credential = \"kie-key\" } }",
            &subscriber_toml("s", &sub.url(), "secret = { env = \"HOOKRELAY_TEST_NEVER_SET\" }"),
        )
        .replace("tokens = [\"tok\"]", "tokens = [{ credential = \"route-token\" }]")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{admin_addr}\"\ntoken = {admin_token}"),
        )
    };
    let inline = dir.path().join("inline.toml");
    std::fs::write(&inline, systemd_like("\"cli-token\"")).unwrap();
    let cred = dir.path().join("cred.toml");
    std::fs::write(&cred, systemd_like("{ credential = \"admin-token\" }")).unwrap();
    let garbage = dir.path().join("garbage.toml");
    std::fs::write(&garbage, "this is [not toml").unwrap();
    let base = format!("http://{admin_addr}");
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for args in [
        // admin.listen and admin.token from the file, nothing else resolved.
        vec!["--config".to_string(), p(&inline), "subscribers".into()],
        // --token given: the token's source is not read.
        vec![
            "--config".into(),
            p(&cred),
            "--token".into(),
            "cli-token".into(),
            "subscribers".into(),
        ],
        // --admin and --token given: the file is not read at all.
        vec![
            "--config".into(),
            p(&garbage),
            "--admin".into(),
            base.clone(),
            "--token".into(),
            "cli-token".into(),
            "subscribers".into(),
        ],
    ] {
        let shown = args.join(" ");
        let (ok, out, err) =
            tokio::task::spawn_blocking(move || cli(&args.iter().map(String::as_str).collect::<Vec<_>>()))
                .await
                .unwrap();
        assert!(ok && out.contains("QUEUED"), "hookrelay {shown}: {err}");
    }
    h.shutdown().await;
}

#[test]
fn check_config_command() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        config(
            &dir.path().join("data"),
            "",
            &subscriber_toml("s", "http://127.0.0.1:1/", ""),
        ),
    )
    .unwrap();
    let (ok, out, _) = cli(&["check-config", "--config", good.to_str().unwrap()]);
    assert!(ok && out.contains("OK (1 routes, 1 subscribers)"), "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        config(
            &dir.path().join("data"),
            "allow_ips = [\"300.1.2.3/8\"]",
            &subscriber_toml("s", "http://127.0.0.1:1/", ""),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check-config", "-c", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("bad.toml")
            && err.contains("routes[0].allow_ips[0]")
            && err.contains("line 20")
            && err.contains("invalid CIDR"),
        "{err}"
    );
    let (ok, _, err) = cli(&["check-config", "-c", "/nonexistent/hookrelay.toml"]);
    assert!(
        !ok && err.contains("/nonexistent/hookrelay.toml") && err.contains("cannot read"),
        "{err}"
    );
    // The shipped config is valid as shipped.
    let (ok, _, err) = cli(&[
        "check-config",
        "-c",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
    ]);
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&["gen-secret"]);
    assert!(ok && hookrelay::config::decode_whsec(out.trim()).unwrap().len() == 32);
}

#[test]
fn check_config_warns_when_retention_is_shorter_than_a_retry_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        &dir.path().join("data"),
        "",
        &(subscriber_toml("slow", "http://127.0.0.1:1/", "retry = [\"12h\", \"24h\"]")
            + &subscriber_toml("quick", "http://127.0.0.1:1/", "")),
    )
    .replace("[store]\n", "[store]\nretention = \"1d\"\n");
    let path = write_config(dir.path(), &text);
    let (ok, out, err) = cli(&["check-config", "-c", path.to_str().unwrap()]);
    assert!(ok, "a warning is not an error: {err}");
    assert!(out.contains("OK"), "{out}");
    let warning = err
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(
        warning.contains("store.retention") && warning.contains("\"slow\"") && !warning.contains("\"quick\""),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_reload_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cfg_path = dir.path().join("config.toml");
    let base = config(
        &dir.path().join("data"),
        "",
        &subscriber_toml("s", "http://127.0.0.1:9/", ""),
    ) + "\n[log]\nformat = \"json\"\n";
    write_config(dir.path(), &base);
    let mut bin = Bin::start(
        &cfg_path,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut buf = [0u8; 512];
    let recv = |buf: &mut [u8]| {
        let n = sock.recv(buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
    };
    let first = recv(&mut buf);
    assert!(first.contains("READY=1"), "{first}");
    // The watchdog is pinged (every WATCHDOG_USEC/2) while the store is writable.
    let ping = recv(&mut buf);
    assert_eq!(ping, "WATCHDOG=1");
    // Drain pings from here on: the assertions below skip them.
    let recv = |buf: &mut [u8]| loop {
        let m = recv(buf);
        if m != "WATCHDOG=1" {
            return m;
        }
    };
    // A broken config on reload: refused, the old one keeps serving.
    write_config(
        dir.path(),
        &base.replace("path = \"/hooks/t\"", "path = \"/hooks/t\"\nallow_ips = [\"nonsense\"]"),
    );
    bin.signal("HUP");
    let r = recv(&mut buf);
    assert!(r.contains("RELOADING=1") && r.contains("MONOTONIC_USEC="), "{r}");
    assert!(recv(&mut buf).contains("READY=1"));
    assert_eq!(callback(bin.addr, &runway("after-bad-reload")).await.0, StatusCode::OK);
    // A good config with a new route applies.
    write_config(
        dir.path(),
        &base.replace("path = \"/hooks/t\"", "path = \"/hooks/new\""),
    );
    bin.signal("HUP");
    assert!(recv(&mut buf).contains("RELOADING=1"));
    assert!(recv(&mut buf).contains("READY=1"));
    assert_eq!(
        post(bin.addr, "/hooks/new?token=tok", &[], runway("new")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        post(bin.addr, "/hooks/t?token=tok", &[], runway("old")).await.0,
        StatusCode::NOT_FOUND
    );
    bin.signal("TERM");
    assert!(recv(&mut buf).contains("STOPPING=1"));
    let status = tokio::task::spawn_blocking(move || {
        let s = bin.child.wait().unwrap();
        (s, bin)
    })
    .await
    .unwrap();
    assert!(status.0.success());
    let log = status.1.log_text();
    assert!(
        log.contains("reload refused") && log.contains("routes[0].allow_ips[0]"),
        "{log}"
    );
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("message").is_some(), "{line}");
    }
}

#[tokio::test]
async fn reload_swaps_subscribers_and_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, old_der) = write_cert(dir.path(), "tls");
    let a = Sub::start(std::sync::Arc::new(|_, _| Behaviour::Status(500))).await;
    let b = Sub::ok().await;
    let tls = format!(
        "read_timeout = \"2s\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    );
    let cfg_a = config(
        &dir.path().join("data"),
        "",
        &subscriber_toml("a", &a.url(), "retry = [\"1h\"]"),
    )
    .replace("read_timeout = \"2s\"", &tls);
    let h = start(dir.path(), &cfg_a).await;
    let addr = h.ingest_addrs[0];

    // A client that keeps one HTTPS connection open across the reload.
    let connector = tls_client(&old_der, &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    let (mut conn, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(driver);
    let send = |body: String| {
        Request::post("/hooks/t?token=tok")
            .header("host", "localhost")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let r = conn.send_request(send(runway("before"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let before: serde_json::Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    a.wait_for(Duration::from_secs(5), "a's first attempt", |r| !r.is_empty())
        .await;

    // New certificate at the same paths, subscriber a replaced by b.
    let (_, _, new_der) = write_cert(dir.path(), "tls");
    let cfg_b = config(&dir.path().join("data"), "", &subscriber_toml("b", &b.url(), ""))
        .replace("read_timeout = \"2s\"", &tls);
    std::fs::write(dir.path().join("config.toml"), &cfg_b).unwrap();
    h.reload().await.expect("reload");

    // The open connection still works and its callback goes to b only.
    let r = conn
        .send_request(send(runway("after")))
        .await
        .expect("connection survived the reload");
    assert_eq!(r.status(), StatusCode::OK);
    let after: serde_json::Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let got = b
        .wait_for(Duration::from_secs(5), "b's delivery", |r| !r.is_empty())
        .await;
    assert_eq!(got[0].header("webhook-id"), after["id"].as_str().unwrap());
    assert_eq!(a.count(), 1);
    // New connections get the new certificate.
    let fresh = tls_client(&new_der, &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    fresh
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("new certificate served");
    let stale = tls_client(&old_der, &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        stale.connect("localhost".try_into().unwrap(), tcp).await.is_err(),
        "old certificate still served"
    );

    // a's pending job is kept and reported, not deleted.
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let removed = subs["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "a")
        .cloned()
        .expect("a reported");
    assert_eq!(
        (removed["state"].as_str(), removed["queue_depth"].as_u64()),
        (Some("removed"), Some(1))
    );
    let (_, ev) = admin(
        h.admin_addr,
        "GET",
        &format!("/api/events/{}", before["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(ev["subscribers"][0]["state"], "pending");

    // A broken file changes nothing.
    std::fs::write(
        dir.path().join("config.toml"),
        cfg_b.replace("tokens = [\"tok\"]", "tokens = 5"),
    )
    .unwrap();
    let err = h.reload().await.unwrap_err().to_string();
    assert!(err.contains("routes[0].tokens"), "{err}");
    let r = conn.send_request(send(runway("still"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.shutdown().await;
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
