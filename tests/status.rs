//! `GET /api/status`, `hookrelay status`, the file certificate's expiry gauge
//! (at start and after SIGHUP), what `check-config` says about TLS, and the
//! systemd unit's ACME state directory and capability.
//! ACME's side of the status is in `tests/acme.rs` and `tests/acme_outage.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use http::StatusCode;

/// A self-signed certificate for localhost / 127.0.0.1 valid until the start
/// of `year`-`month`-01, written to `dir/tls.crt` and `dir/tls.key`.
fn cert_until(dir: &Path, year: i32, month: u8) -> (PathBuf, PathBuf, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(year, month, 1);
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.der().clone())
}

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
    let (status, v) = admin(admin_addr, "GET", "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let key = format!("hookrelay_tls_cert_expiry_seconds{{source=\"{source}\"}} ");
    v.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|n| n.trim().parse().unwrap())
}

async fn run_cli(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || cli(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_certificate_status_gauge_and_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = cert_until(dir.path(), 2040, 1);
    let sub = Sub::ok().await;
    let tls = format!(
        "read_timeout = \"2s\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    );
    let text = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""))
        .replace("read_timeout = \"2s\"", &tls);
    let path = write_config(dir.path(), &text);
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
    assert_eq!(v["store"]["backend"], "sled");
    assert_eq!(v["store"]["path"], dir.path().join("data").display().to_string());
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
    let (ok, out, err) = run_cli(args(&["status"])).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("hookrelay {}, up ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    for line in [
        format!("listeners:  {} (tls: file)", bin.addr),
        "certificate (file): localhost, 127.0.0.1".to_string(),
        "  valid:     2024-01-01T00:00:00Z to 2040-01-01T00:00:00Z (expires in ".to_string(),
        format!("  file:      {}", cert.display()),
    ] {
        assert!(out.contains(&line), "{line:?} not in\n{out}");
    }
    assert!(!out.contains("renews") && !out.contains("failures"), "{out}");
    let (ok, out, err) = run_cli(args(&["status", "--json"])).await;
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["certificates"][0]["certificate"]["not_after"], "2040-01-01T00:00:00Z");

    // New files at the same paths, then SIGHUP: the gauge and the status follow.
    let (_, _, new_der) = cert_until(dir.path(), 2041, 6);
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
    let (ok, out, _) = run_cli(args(&["status", "--json"])).await;
    assert!(ok);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &j["certificates"][0]["certificate"];
    assert_eq!(unix(c["not_after"].as_str().unwrap()), JUN_2041);
    let served = tls_client(&new_der, &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    served
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("the new certificate is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_status_has_no_certificates_and_needs_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        &dir.path().join("data"),
        "",
        &subscriber_toml("s", "http://127.0.0.1:1/", ""),
    )
    .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\ntoken = \"adm\"");
    let h = start(dir.path(), &text).await;
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
        &[("authorization", "Bearer adm")],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // The readable form says so; the CLI takes the token from the config.
    let cfg = dir.path().join("config.toml");
    let base = format!("http://{}", h.admin_addr);
    let args = vec![
        "-c".into(),
        cfg.display().to_string(),
        "--admin".into(),
        base,
        "status".into(),
    ];
    let (ok, out, err) = run_cli(args).await;
    assert!(ok && out.contains("certificates: none (plain HTTP)"), "{out}{err}");
    h.shutdown().await;
}

#[test]
fn check_config_names_the_tls_source_and_refuses_a_bad_acme_block() {
    let dir = tempfile::tempdir().unwrap();
    let base = config(
        &dir.path().join("data"),
        "",
        &subscriber_toml("s", "http://127.0.0.1:1/", ""),
    );
    let check = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["check-config", "-c", p.to_str().unwrap()])
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let acme = |inner: &str| base.replace("read_timeout = \"2s\"", &format!("tls = {{ acme = {{ {inner} }} }}"));

    let good = acme(
        r#"domains = ["Hooks.Example.com"], email = "ops@example.com", directory = "https://acme.example.com/dir""#,
    );
    let (code, out, err) = check("acme.toml", &good);
    assert_eq!(code, Some(0), "{err}");
    let line = format!(
        "TLS: ACME certificate for hooks.example.com from https://acme.example.com/dir \
         (TLS-ALPN-01 on the listener; account and certificate kept in {})",
        dir.path().join("acme").display()
    );
    assert!(
        out.contains("OK (1 routes, 1 subscribers)") && out.contains(&line),
        "{out}"
    );

    // Bad ACME blocks: exit 2, the file, the key and the line (3: the `tls` line).
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

    let (cert, key, _) = cert_until(dir.path(), 2040, 1);
    let files = base.replace(
        "read_timeout = \"2s\"",
        &format!("tls = {{ cert = \"{}\", key = \"{}\" }}", cert.display(), key.display()),
    );
    let (code, out, err) = check("files.toml", &files);
    assert_eq!(code, Some(0), "{err}");
    let line = format!(
        "TLS: certificate {} for localhost, 127.0.0.1 (expires 2040-01-01T00:00:00Z)",
        cert.display()
    );
    assert!(out.contains(&line), "{out}");
    let (_, out, _) = check("plain.toml", &base);
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
    assert_eq!(values("AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(values("CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
}
