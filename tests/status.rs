//! `GET /api/status`, `hookrelay status`, the file certificate's expiry gauge
//! (at start and after SIGHUP), what `check-config` says about TLS, and the
//! systemd unit's ACME state directory and capability.
//! ACME's side of the status is in `tests/acme.rs` and `tests/acme_outage.rs`.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use http::StatusCode;

fn unix(t: &str) -> u64 {
    humantime::parse_rfc3339(t)
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// 2040-01-01 and 2041-06-01, 00:00 UTC.
const JAN_2040: u64 = 2_208_988_800;
const JUN_2041: u64 = 2_253_657_600;

/// The value of `hookrelay_tls_cert_expiry_seconds{source="…"}`, if exported.
async fn expiry_gauge(admin_addr: std::net::SocketAddr, source: &str) -> Option<u64> {
    let key = format!("hookrelay_tls_cert_expiry_seconds{{source=\"{source}\"}}");
    metrics(admin_addr)
        .await
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_certificate_status_gauge_and_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let TestCert { cert, key, .. } = TestCert::write_until(dir.path(), "tls", 2040, 1);
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .tls(&cert, &key)
        .subscriber(Subscriber::new("s", sub.url()));
    let path = cfg.write();
    let t0 = SystemTime::now();
    let bin = Bin::start(&path, &[]);

    let (status, v) = admin(bin.admin, "GET", "/api/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_seconds"].as_u64().unwrap() < 60, "{v}");
    let started = humantime::parse_rfc3339(v["started_at"].as_str().unwrap()).unwrap();
    assert!(started <= t0 + Duration::from_secs(1), "{v}");
    assert_eq!(v["ready"], true);
    assert_eq!(
        v["listeners"],
        serde_json::json!([{ "addr": bin.addr.to_string(), "tls": "file" }])
    );
    assert_eq!(v["routes"], serde_json::json!(["t"]), "the configured routes, by name");
    assert_eq!(v["store"]["backend"], "sled");
    assert_eq!(v["store"]["path"], cfg.data().display().to_string());
    let certs = v["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1, "{v}");
    assert_eq!(certs[0]["source"], "file");
    assert_eq!(certs[0]["cert_file"], cert.display().to_string());
    assert!(certs[0].get("acme").is_none(), "{v}");
    let c = &certs[0]["certificate"];
    assert_eq!(c["names"], serde_json::json!(["localhost", "127.0.0.1"]));
    assert_eq!(c["not_before"], "2024-01-01T00:00:00Z");
    assert_eq!(c["not_after"], "2040-01-01T00:00:00Z");
    let left = JAN_2040 - t0.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(c["expires_in_seconds"].as_u64().unwrap().abs_diff(left) < 60, "{c}");
    assert_eq!(expiry_gauge(bin.admin, "file").await, Some(JAN_2040));
    assert_eq!(expiry_gauge(bin.admin, "acme").await, None);

    // `hookrelay status`: readable, and the API's JSON with --json.
    let base = format!("http://{}", bin.admin);
    let args = |more: &[&str]| {
        let mut a: Vec<String> = ["--config", path.to_str().unwrap(), "--admin", &base]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(more.iter().map(|s| s.to_string()));
        a
    };
    let (ok, out, err) = cli_async(args(&["status"])).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("hookrelay {}, up ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    for line in [
        format!("listeners:  {} (tls: file)", bin.addr),
        "routes:     t".to_string(),
        "certificate (file): localhost, 127.0.0.1".to_string(),
        "  valid:     2024-01-01T00:00:00Z to 2040-01-01T00:00:00Z (expires in ".to_string(),
        format!("  file:      {}", cert.display()),
    ] {
        assert!(out.contains(&line), "{line:?} not in\n{out}");
    }
    assert!(!out.contains("renews") && !out.contains("failures"), "{out}");
    let (ok, out, err) = cli_async(args(&["status", "--json"])).await;
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["certificates"][0]["certificate"]["not_after"], "2040-01-01T00:00:00Z");

    // New files at the same paths, then SIGHUP: the gauge and the status follow.
    let new_der = TestCert::write_until(dir.path(), "tls", 2041, 6).der;
    bin.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while expiry_gauge(bin.admin, "file").await != Some(JUN_2041) {
        assert!(
            Instant::now() < deadline,
            "gauge not updated after SIGHUP:\n{}",
            bin.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, out, _) = cli_async(args(&["status", "--json"])).await;
    assert!(ok);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &j["certificates"][0]["certificate"];
    assert_eq!(unix(c["not_after"].as_str().unwrap()), JUN_2041);
    tls_connect(bin.addr, &new_der, &[b"http/1.1"])
        .await
        .expect("the new certificate is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_status_has_no_certificates_and_needs_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .admin_token("adm")
        .subscriber(Subscriber::new("s", "http://127.0.0.1:1/"));
    let h = start(&cfg).await;
    let (status, _) = admin(h.admin_addr, "GET", "/api/status").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = request(
        h.admin_addr,
        None,
        "GET",
        "/api/status",
        &[("authorization", "Bearer adm")],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["listeners"],
        serde_json::json!([{ "addr": h.ingest_addrs[0].to_string(), "tls": "off" }])
    );
    assert_eq!(v["certificates"], serde_json::json!([]));
    let (_, _, metrics) = request(
        h.admin_addr,
        None,
        "GET",
        "/metrics",
        &[("authorization", "Bearer adm")],
        bytes::Bytes::new(),
    )
    .await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("hookrelay_acme_failures_total 0") && !metrics.contains("tls_cert_expiry_seconds{"),
        "{metrics}"
    );
    let (status, _, _) = request(
        h.admin_addr,
        None,
        "POST",
        "/api/status",
        &[("authorization", "Bearer adm"), ("content-type", "application/json")],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // The readable form says so; the CLI takes the token from the config.
    let base = format!("http://{}", h.admin_addr);
    let args = vec![
        "-c".into(),
        cfg.path().display().to_string(),
        "--admin".into(),
        base,
        "status".into(),
    ];
    let (ok, out, err) = cli_async(args).await;
    assert!(ok && out.contains("certificates: none (plain HTTP)"), "{out}{err}");
    h.shutdown().await;
}

#[test]
fn check_config_names_the_tls_source_and_refuses_a_bad_acme_block() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", "http://127.0.0.1:1/"));
    let check = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = cli_output(&["check-config", "-c", p.to_str().unwrap()]);
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };

    let good = base.clone().tls_acme(Acme::new(
        ["Hooks.Example.com"],
        "ops@example.com",
        "https://acme.example.com/dir",
    ));
    let (code, out, err) = check("acme.toml", &good.render());
    assert_eq!(code, Some(0), "{err}");
    let line = format!(
        "TLS: ACME certificate for hooks.example.com from https://acme.example.com/dir \
         (TLS-ALPN-01 on the listener; account and certificate kept in {})",
        dir.path().join("acme").display()
    );
    assert!(
        out.contains("OK (1 route, 1 subscriber)") && out.contains(&line),
        "{out}"
    );
    // A state directory that is another program's (it holds only files
    // hookrelay does not write) is refused before the start refuses it.
    let state = dir.path().join("acme");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("nginx.pem"), "not ours").unwrap();
    let (code, _, err) = check("acme.toml", &good.render());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"nginx.pem\"") && err.contains("store.path"), "{err}");
    std::fs::remove_dir_all(&state).unwrap();

    // Bad ACME blocks: exit 2, the file, the key and the line (3: the `tls`
    // line). A small literal file: its text is the subject.
    let acme = |inner: &str| {
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
tls = {{ acme = {{ {inner} }} }}

[store]
path = "{}"

[[routes]]
name = "t"
path = "/hooks/t"
tokens = ["tok"]

[[routes.subscribers]]
name = "s"
url = "http://127.0.0.1:1/"
"#,
            dir.path().join("data").display()
        )
    };
    for (inner, key, says) in [
        (
            r#"domains = ["*.example.com"], email = "ops@example.com", directory = "https://a.example/d""#,
            "server.tls.acme.domains[0]",
            "wildcard",
        ),
        (
            r#"domains = ["a.example.com"], email = "ops@example.com", directory = "http://a.example/d""#,
            "server.tls.acme.directory",
            "https://",
        ),
        (
            r#"domains = ["a.example.com"], directory = "https://a.example/d""#,
            "server.tls.acme",
            "missing field `email`",
        ),
    ] {
        let (code, _, err) = check("bad.toml", &acme(inner));
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("bad.toml")
                && err.contains(&format!("key `{key}`"))
                && err.contains("line 3")
                && err.contains(says),
            "{err}"
        );
    }

    let TestCert { cert, key, .. } = TestCert::write_until(dir.path(), "tls", 2040, 1);
    let (code, out, err) = check("files.toml", &base.clone().tls(&cert, &key).render());
    assert_eq!(code, Some(0), "{err}");
    let line = format!(
        "TLS: certificate {} for localhost, 127.0.0.1 (expires 2040-01-01T00:00:00Z)",
        cert.display()
    );
    assert!(out.contains(&line), "{out}");
    // An expired one passes (the daemon starts and says so) with a warning:
    // a reload that would put it in place of another certificate is refused.
    let TestCert { cert, key, .. } = TestCert::write_until(dir.path(), "old", 2025, 1);
    let (code, _, err) = check("expired.toml", &base.clone().tls(&cert, &key).render());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("warning: certificate {} expired at 2025-", cert.display())),
        "{err}"
    );
    // A certificate that names nothing is served, and named as the problem.
    let TestCert { cert, key, .. } = TestCert::write_without_names(dir.path(), "nameless");
    let (code, out, err) = check("nameless.toml", &base.clone().tls(&cert, &key).render());
    assert_eq!(code, Some(0), "{err}");
    let line = format!(
        "TLS: certificate {} for no names (no subjectAltName: TLS clients will refuse it)",
        cert.display()
    );
    assert!(out.contains(&line), "{out}");
    assert!(
        err.contains("warning:") && err.contains("TLS clients will refuse it"),
        "{err}"
    );
    let (_, out, _) = check("plain.toml", &base.render());
    assert!(!out.contains("TLS:"), "{out}");
}

#[test]
fn systemd_unit_keeps_the_acme_state_and_binds_443_with_one_capability() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/hookrelay.service")).unwrap();
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    // The store path the README and the unit's comments prescribe; ACME state beside it.
    let acme = hookrelay::acme::state_dir(Path::new("/var/lib/hookrelay/data"));
    let wanted = acme.strip_prefix("/var/lib").unwrap().to_str().unwrap().to_string();
    assert!(
        values("StateDirectory").contains(&wanted),
        "{wanted} not a StateDirectory"
    );
    assert_eq!(values("StateDirectoryMode"), ["0700"]);
    // A config error exits 2, from check-config and from run alike, and the
    // unit does not restart on it: systemd applies RestartPreventExitStatus
    // to the main process only, so there is no ExecStartPre check to fail
    // first (a config error restarted until the start limit hid it: stop 63).
    assert_eq!(values("RestartPreventExitStatus"), ["2"]);
    assert!(values("ExecStartPre").is_empty(), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = 8080\n").unwrap();
    for cmd in ["check-config", "run"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args([cmd, "--config", bad.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(values("AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(values("CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
}

/// A start refused for a damaged store, a store created with the other
/// compression, or an ACME state directory it cannot use exits 2 too, which the unit does not restart (it exited 1: restarted
/// until systemd's start limit, the message buried under five repeats; stop
/// 63); one a restart may mend (a port in use) exits 1, which it does.
#[test]
fn a_damaged_store_exits_2_and_a_port_in_use_exits_1() {
    let run = |cfg: &TestConfig| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["run", "--config", cfg.write().to_str().unwrap()])
            .output()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    // sled's `conf` without its `db`: the data is gone.
    std::fs::create_dir_all(cfg.data()).unwrap();
    std::fs::write(cfg.data().join("conf"), "segment_size: 524288\n").unwrap();
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("damaged"), "{err}");

    // A store created with the other `store.compression` (sled's `conf`
    // says so): no restart mends it either (it exited 1; `check-config`
    // said OK: hostile review, stop 65).
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    std::fs::create_dir_all(cfg.data()).unwrap();
    std::fs::write(cfg.data().join("conf"), "segment_size: 524288\nuse_compression: true\n").unwrap();
    std::fs::write(cfg.data().join("db"), b"").unwrap();
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("created with store.compression = true"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check-config", "--config", cfg.write().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "check-config: {err}");
    assert!(
        err.contains("created with store.compression = true"),
        "check-config: {err}"
    );

    // An ACME state directory that is another program's (check-config says
    // so, exit 2): refused at start with exit 2 as well (it exited 1).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("acme")).unwrap();
    std::fs::write(dir.path().join("acme/certbot-account.json"), "{}").unwrap();
    let cfg = TestConfig::new(dir.path())
        .tls_acme(Acme::new(
            ["relay.example.com"],
            "ops@example.com",
            "https://127.0.0.1:9/dir",
        ))
        .subscriber(Subscriber::new("s", DOWN));
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("certbot-account.json"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .listen(taken.local_addr().unwrap())
        .subscriber(Subscriber::new("s", DOWN));
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
}

/// An expired certificate fails every handshake: the relay says so in its
/// status, the CLI, a gauge and the log, not "expires in 0s". Readiness
/// stays (a balancer routing only to ready relays would keep the ACME CA out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_shown_as_expired() {
    let dir = tempfile::tempdir().unwrap();
    let TestCert { cert, key, .. } = TestCert::write_until(dir.path(), "tls", 2025, 1);
    let cfg = TestConfig::new(dir.path())
        .tls(&cert, &key)
        .subscriber(Subscriber::new("s", DOWN));
    let path = cfg.write();
    let bin = Bin::start(&path, &[]);
    let (s, body) = admin(bin.admin, "GET", "/readyz").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, v) = admin(bin.admin, "GET", "/api/status").await;
    let c = &v["certificates"][0]["certificate"];
    assert_eq!(
        (c["expired"].as_bool(), c["expires_in_seconds"].as_u64()),
        (Some(true), Some(0)),
        "{v}"
    );
    assert!(c["expired_seconds_ago"].as_u64().unwrap() > 86_400, "{v}");
    let admin_url = format!("http://{}", bin.admin);
    let (ok, out, err) = cli(&["status", "--admin", &admin_url]);
    assert!(ok, "{err}");
    assert!(out.contains("EXPIRED") && !out.contains("expires in"), "{out}");
    let (_, m) = admin(bin.admin, "GET", "/metrics").await;
    let m = m.as_str().unwrap();
    assert!(
        m.contains("hookrelay_tls_cert_valid{source=\"file\"} 0") && m.contains("hookrelay_ready 1"),
        "{m}"
    );
    log_until(|| bin.log_text(), "certificate is expired", secs(5)).await;
}

/// A daemon started as `hookrelay run -c config.toml` in the config's
/// directory, with `store.path = "data"`: the status names the store by its
/// absolute path (it said `data`, relative to a directory the reader of
/// `hookrelay status` elsewhere does not know), and so does `migrate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_names_the_store_by_its_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .raw(|t| {
            t["store"]["path"] = "data".into();
        });
    let file = cfg.write();
    // The CLI's messages about the store name it so too (`migrate` where no
    // store is yet said "no store at data").
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .current_dir(dir.path())
        .args(["migrate", "-c"])
        .arg(file.file_name().unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let at = format!("no store at {} ", dir.path().join("data").display());
    assert!(!out.status.success() && err.contains(&at), "{err}");
    let bin = Bin::start_in(dir.path(), Path::new(file.file_name().unwrap()));
    let (status, v) = admin(bin.admin, "GET", "/api/status").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let shown = v["store"]["path"].as_str().unwrap().to_string();
    let real = std::fs::canonicalize(dir.path()).unwrap().join("data");
    assert!(
        Path::new(&shown) == real || Path::new(&shown) == dir.path().join("data"),
        "{shown} for {}",
        real.display()
    );
    assert!(real.is_dir(), "the store is where the status says");
}

/// Review of stop 55: the ACME directory URL was shown whole by the status
/// (console, `hookrelay status`), credentials and query too, where logs and
/// `check-config` show it redacted. A CA that does not answer: the status is
/// there all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acme_directory_is_shown_without_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let directory = format!("https://acme-user:dir-pa55word@127.0.0.1:{closed}/dir?key=dir-k3y");
    let cfg = TestConfig::new(dir.path())
        .tls_acme(Acme::new(["hooks.example.com"], "ops@example.com", &directory))
        .subscriber(Subscriber::new("s", "http://127.0.0.1:1/"));
    let h = start(&cfg).await;
    let (status, v) = admin(h.admin_addr, "GET", "/api/status").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let shown = v["certificates"][0]["acme"]["directory"].as_str().unwrap().to_string();
    assert!(shown.contains(&format!("127.0.0.1:{closed}/dir")), "{v}");
    let all = v.to_string();
    for secret in ["dir-pa55word", "dir-k3y"] {
        assert!(!all.contains(secret), "{secret} shown: {all}");
    }
    h.shutdown().await;
}

/// A certificate that names no host is warned about by the daemon at start
/// too, as `check-config` does (the unit no longer runs that check before
/// each start: the change review, stop 63).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_warns_about_a_certificate_that_names_no_host() {
    let dir = tempfile::tempdir().unwrap();
    let TestCert { cert, key, .. } = TestCert::write_without_names(dir.path(), "nameless");
    let cfg = TestConfig::new(dir.path())
        .tls(&cert, &key)
        .subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start(&cfg.write(), &[]);
    log_until(|| bin.log_text(), "hookrelay ready", secs(20)).await;
    let log = bin.log_text();
    assert!(
        log.contains("the certificate names no host (no subjectAltName)") && log.contains("nameless"),
        "{log}"
    );
}
