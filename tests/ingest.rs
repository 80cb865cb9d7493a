//! The public endpoint: answers, authentication, limits, dedupe, durability, TLS.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::*;
use hmac::Mac;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOCAL2: &str = "127.0.0.2";

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn every_status_code_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let extra_route = format!(
        r#"
[[routes]]
name = "private"
path = "/hooks/private"
allow_ips = ["10.0.0.0/8"]
{}"#,
        subscriber_toml("p", &sub.url(), "")
    );
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")).replace("max_body", "x")
        + &extra_route;
    let cfg = cfg.replace("read_timeout = \"2s\"", "read_timeout = \"2s\"\nmax_body = \"1KiB\"");
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    let json = [("content-type", "application/json")];

    let (s, v) = callback(addr, &runway("a")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["duplicate"], false);
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("evt_"));
    let (s, v) = callback(addr, &runway("a")).await;
    assert_eq!(
        (s, v["duplicate"].as_bool(), v["id"].as_str()),
        (StatusCode::OK, Some(true), Some(id.as_str()))
    );

    assert_eq!(
        post(addr, "/hooks/t", &json, runway("b")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(addr, "/hooks/t?token=nope", &json, runway("b")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(addr, "/hooks/private", &json, runway("b")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(addr, "/hooks/unknown", &json, runway("b")).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, headers, _) = request(addr, None, "GET", "/hooks/t?token=tok", &[], Bytes::new()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(
        post(addr, "/hooks/t?token=tok", &json, "x".repeat(2000)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let (s, _, body) = post(addr, "/hooks/t?token=tok", &json, "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("not valid JSON"));
    // Invalid UTF-8 is not JSON either.
    assert_eq!(
        post(addr, "/hooks/t?token=tok", &json, vec![0xff, 0xfe, b'{']).await.0,
        StatusCode::BAD_REQUEST
    );
    // Deeply nested JSON is refused, not a stack overflow.
    let deep = "[".repeat(100_000);
    let cfg_big = h.app.live().config.server.max_body;
    assert!(deep.len() > cfg_big);
    assert_eq!(
        post(addr, "/hooks/t?token=tok", &json, "[".repeat(1000)).await.0,
        StatusCode::BAD_REQUEST
    );
    // Still serving.
    assert_eq!(callback(addr, &runway("c")).await.0, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn chunked_body_over_limit_is_cut_off_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""))
        .replace("read_timeout = \"2s\"", "read_timeout = \"2s\"\nmax_body = \"1KiB\"");
    let h = start(dir.path(), &cfg).await;
    let mut s = tokio::net::TcpStream::connect(h.ingest_addrs[0]).await.unwrap();
    s.write_all(b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // Stream 4 KiB in chunks; the answer must come without the client finishing.
    for _ in 0..8 {
        let chunk = format!("200\r\n{}\r\n", "a".repeat(512));
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    h.shutdown().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""))
        .replace("read_timeout = \"2s\"", "read_timeout = \"300ms\"");
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    // Slow headers: the connection is closed.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("server closes a slow header");
    assert!(matches!(r, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).contains("408"));
    // Slow body: 408 and the connection closed.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("server answers a slow body")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A huge header gets 431, not a crash.
    let big = "x".repeat(200 * 1024);
    let (status, _, _) = request(
        addr,
        None,
        "POST",
        "/hooks/t?token=tok",
        &[("x-big", &big)],
        Bytes::from("{}"),
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(callback(addr, &runway("still-ok")).await.0, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn token_in_query_or_bearer_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""))
        .replace("tokens = [\"tok\"]", "tokens = [\"old-token\", \"new-token\"]");
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    assert_eq!(
        post(addr, "/hooks/t?token=old-token", &[], runway("1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        post(addr, "/hooks/t?foo=1&token=new-token", &[], runway("2")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        post(addr, "/hooks/t", &[("authorization", "Bearer new-token")], runway("3"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        post(addr, "/hooks/t", &[("authorization", "Bearer old")], runway("4"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(addr, "/hooks/t?token=", &[], runway("5")).await.0,
        StatusCode::UNAUTHORIZED
    );
    h.shutdown().await;
}

#[tokio::test]
async fn allowlist_by_peer_and_forwarded_for() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let routes = format!(
        r#"
[[routes]]
name = "direct"
path = "/hooks/direct"
allow_ips = ["127.0.0.1/32"]
{}
[[routes]]
name = "proxied"
path = "/hooks/proxied"
allow_ips = ["203.0.113.0/24", "::1"]
{}"#,
        subscriber_toml("d", &sub.url(), ""),
        subscriber_toml("p", &sub.url(), "")
    );
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""))
        .replace("trusted_proxies", "x")
        .replace(
            "read_timeout = \"2s\"",
            "read_timeout = \"2s\"\ntrusted_proxies = [\"127.0.0.2/32\"]",
        )
        + &routes;
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    let from2: Option<IpAddr> = Some(LOCAL2.parse().unwrap());
    let body = || Bytes::from(runway("x"));
    // The TCP peer decides when it is not a trusted proxy.
    assert_eq!(
        request(addr, None, "POST", "/hooks/direct", &[], body()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        request(addr, from2, "POST", "/hooks/direct", &[], body()).await.0,
        StatusCode::FORBIDDEN
    );
    // From the trusted proxy, the right-most untrusted X-Forwarded-For entry decides.
    let xff = [("x-forwarded-for", "198.51.100.7, 203.0.113.5")];
    assert_eq!(
        request(addr, from2, "POST", "/hooks/proxied", &xff, body()).await.0,
        StatusCode::OK
    );
    let spoofed = [("x-forwarded-for", "203.0.113.5, 198.51.100.7")];
    assert_eq!(
        request(addr, from2, "POST", "/hooks/proxied", &spoofed, body()).await.0,
        StatusCode::FORBIDDEN
    );
    // From an untrusted peer the header is ignored.
    assert_eq!(
        request(addr, None, "POST", "/hooks/proxied", &xff, body()).await.0,
        StatusCode::FORBIDDEN
    );
    // The recorded source is the resolved client address.
    let (_, v) = admin(h.admin_addr, "GET", "/api/events?route=proxied").await;
    assert_eq!(v["events"][0]["source"], "203.0.113.5");
    h.shutdown().await;
}

#[tokio::test]
async fn provider_signature_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let routes = format!(
        r#"
[[routes]]
name = "kie"
path = "/hooks/kie"
signature = {{ scheme = "kie", secret = "kie-key" }}
{}
[[routes]]
name = "sw"
path = "/hooks/sw"
signature = {{ scheme = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
{}
[[routes]]
name = "gh"
path = "/hooks/gh"
json = false
signature = {{ scheme = "hmac-sha256", secret = "It's a Secret to Everybody", header = "X-Hub-Signature-256", prefix = "sha256=" }}
{}"#,
        subscriber_toml("k", &sub.url(), ""),
        subscriber_toml("w", &sub.url(), ""),
        subscriber_toml("g", &sub.url(), "")
    );
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")) + &routes;
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];

    // kie: HMAC(task id + "." + timestamp), task id at /data/taskId for Veo.
    let ts = now_secs().to_string();
    let body = r#"{"code":200,"msg":"ok","data":{"taskId":"veo-123","info":{"resultUrls":["u"]}}}"#;
    let sig = hmac_b64(b"kie-key", format!("veo-123.{ts}").as_bytes());
    let good = [
        ("x-webhook-timestamp", ts.as_str()),
        ("x-webhook-signature", sig.as_str()),
    ];
    assert_eq!(post(addr, "/hooks/kie", &good, body).await.0, StatusCode::OK);
    let wrong_sig = hmac_b64(b"other-key", format!("veo-123.{ts}").as_bytes());
    let bad = [
        ("x-webhook-timestamp", ts.as_str()),
        ("x-webhook-signature", wrong_sig.as_str()),
    ];
    assert_eq!(post(addr, "/hooks/kie", &bad, body).await.0, StatusCode::UNAUTHORIZED);
    let old_ts = (now_secs() - 3600).to_string();
    let old_sig = hmac_b64(b"kie-key", format!("veo-123.{old_ts}").as_bytes());
    let replay = [
        ("x-webhook-timestamp", old_ts.as_str()),
        ("x-webhook-signature", old_sig.as_str()),
    ];
    assert_eq!(
        post(addr, "/hooks/kie", &replay, body).await.0,
        StatusCode::UNAUTHORIZED,
        "stale timestamp"
    );
    assert_eq!(post(addr, "/hooks/kie", &[], body).await.0, StatusCode::UNAUTHORIZED);

    // standard-webhooks, signed as a provider would.
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let body = r#"{"type":"done","id":42}"#;
    let sig = format!("v1,{}", hmac_b64(&key, format!("msg_1.{ts}.{body}").as_bytes()));
    let hdrs = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    assert_eq!(post(addr, "/hooks/sw", &hdrs, body).await.0, StatusCode::OK);
    assert_eq!(
        post(addr, "/hooks/sw", &hdrs, r#"{"type":"done","id":43}"#).await.0,
        StatusCode::UNAUTHORIZED
    );

    // hmac-sha256 over the raw body (GitHub's documented example), on a non-JSON route.
    let gh = [(
        "x-hub-signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )];
    assert_eq!(post(addr, "/hooks/gh", &gh, "Hello, World!").await.0, StatusCode::OK);
    assert_eq!(
        post(addr, "/hooks/gh", &gh, "Hello, World?").await.0,
        StatusCode::UNAUTHORIZED
    );
    h.shutdown().await;
}

#[tokio::test]
async fn dedupe_sequential_and_64_way_concurrent() {
    let (_dir, sub, h) = with_ok_subscriber().await;
    let addr = h.ingest_addrs[0];
    // Same task id and code, different message: same key.
    let a = r#"{"code":200,"msg":"first","data":{"task_id":"T"}}"#;
    let b = r#"{"code":200,"msg":"second","data":{"task_id":"T"}}"#;
    let c = r#"{"code":500,"msg":"failed","data":{"task_id":"T"}}"#;
    let (_, va) = callback(addr, a).await;
    let (_, vb) = callback(addr, b).await;
    let (_, vc) = callback(addr, c).await;
    assert_eq!(
        (
            va["duplicate"].as_bool(),
            vb["duplicate"].as_bool(),
            vc["duplicate"].as_bool()
        ),
        (Some(false), Some(true), Some(false))
    );
    assert_eq!(va["id"], vb["id"]);

    for round in 0..3 {
        let body = runway(&format!("concurrent-{round}"));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                tokio::spawn({
                    let body = body.clone();
                    async move { callback(addr, &body).await }
                })
            })
            .collect();
        let mut fresh = 0;
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            let (s, v) = t.await.unwrap();
            assert_eq!(s, StatusCode::OK);
            fresh += usize::from(v["duplicate"] == false);
            ids.insert(v["id"].as_str().unwrap().to_string());
        }
        assert_eq!((fresh, ids.len()), (1, 1), "64 concurrent copies -> one event");
    }
    // Delivered once per event.
    sub.wait_for(Duration::from_secs(10), "5 deliveries", |r| r.len() >= 5)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.count(), 5);
    h.shutdown().await;
}

#[tokio::test]
async fn missing_dedupe_field_falls_back_to_body_hash() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let addr = h.ingest_addrs[0];
    // Runway Aleph errors carry the task id at the top level and data = null.
    let aleph = r#"{"code":400,"msg":"inappropriate content","taskId":"A1","data":null}"#;
    let (s1, v1) = callback(addr, aleph).await;
    let (s2, v2) = callback(addr, aleph).await;
    let (s3, v3) = callback(addr, &aleph.replace("A1", "A2")).await;
    assert_eq!((s1, s2, s3), (StatusCode::OK, StatusCode::OK, StatusCode::OK));
    assert_eq!(
        (
            v1["duplicate"].as_bool(),
            v2["duplicate"].as_bool(),
            v3["duplicate"].as_bool()
        ),
        (Some(false), Some(true), Some(false))
    );
    let (_, metrics) = admin(h.admin_addr, "GET", "/metrics").await;
    let m = metrics.as_str().unwrap();
    assert!(m.contains("hookrelay_dedupe_fallback_total{route=\"t\"} 3"), "{m}");
    h.shutdown().await;
}

#[tokio::test]
async fn restart_keeps_dedupe_keys_and_pending_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The subscriber is down during the first run.
    let down = "http://127.0.0.1:9/never";
    let h = start(
        dir.path(),
        &config(&data, "", &subscriber_toml("s", down, "retry = [\"1h\"]")),
    )
    .await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("persist")).await;
    let id = v["id"].as_str().unwrap().to_string();
    h.shutdown().await;

    let sub = Sub::ok().await;
    let h = start(
        dir.path(),
        &config(&data, "", &subscriber_toml("s", &sub.url(), "retry = [\"1h\"]")),
    )
    .await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("persist")).await;
    assert_eq!(
        (v["duplicate"].as_bool(), v["id"].as_str()),
        (Some(true), Some(id.as_str()))
    );
    // The pending job (retrying in an hour) is there and can be replayed.
    let (s, v) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["subscribers"][0]["state"], "pending");
    assert_eq!(
        admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await.0,
        StatusCode::OK
    );
    let got = sub
        .wait_for(Duration::from_secs(10), "the replayed job", |r| !r.is_empty())
        .await;
    assert_eq!(got[0].header("webhook-id"), id);
    h.shutdown().await;
}

async fn tls_post(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    h2: bool,
) -> (http::Version, StatusCode) {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let connector = tls_client(ca, alpn);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let req = Request::post("https://localhost/hooks/t?token=tok")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(runway(if h2 { "h2" } else { "h1" }))))
        .unwrap();
    let resp = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    };
    let version = resp.version();
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    (version, status)
}

#[tokio::test]
async fn https_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = write_cert(dir.path(), "server");
    let sub = Sub::ok().await;
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")).replace(
        "read_timeout = \"2s\"",
        &format!(
            "read_timeout = \"2s\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        ),
    );
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    assert_eq!(
        tls_post(addr, &der, false).await,
        (http::Version::HTTP_11, StatusCode::OK)
    );
    assert_eq!(
        tls_post(addr, &der, true).await,
        (http::Version::HTTP_2, StatusCode::OK)
    );
    // Garbage and a truncated handshake on the TLS port do not hurt it.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x50, 1, 2, 3]).await.unwrap();
    drop(s);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
    assert_eq!(tls_post(addr, &der, true).await.1, StatusCode::OK);

    // openssl: TLS 1.2 works, TLS 1.1 is refused.
    if std::process::Command::new("openssl").arg("version").output().is_ok() {
        let run = move |v: &str| {
            let mut child = std::process::Command::new("openssl")
                // SECLEVEL=0 so the client really offers old versions: the server must refuse.
                .args([
                    "s_client",
                    v,
                    "-cipher",
                    "DEFAULT@SECLEVEL=0",
                    "-connect",
                    &addr.to_string(),
                    "-servername",
                    "localhost",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdin.take());
            let out = child.wait_with_output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let ok12 = tokio::task::spawn_blocking(move || run("-tls1_2")).await.unwrap();
        assert!(ok12.1.contains("Protocol  : TLSv1.2"), "{}", ok12.1);
        let v11 = tokio::task::spawn_blocking(move || run("-tls1_1")).await.unwrap();
        // The server answers the TLS 1.1 ClientHello with a handshake_failure alert.
        assert!(v11.1.contains("Cipher is (NONE)"), "TLS 1.1 must be refused: {}", v11.1);
        assert!(v11.1.contains("alert handshake failure"), "{}", v11.1);
    } else {
        panic!("openssl is needed for the TLS version test (.ci/run installs it)");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_a_burst_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Subscriber down: every acknowledged callback must still have its job.
    let cfg = write_config(
        dir.path(),
        &config(&data, "", &subscriber_toml("s", DOWN, "retry = [\"1h\"]")),
    );
    let mut bin = Bin::start(&cfg, &[]);
    let acked = load_until(bin.addr, 16, "burst", Duration::from_secs(1)).await;
    bin.kill9();
    assert!(acked.len() > 100, "{} acked", acked.len());
    let store = assert_stored(&data, &acked).await;
    assert_eq!(
        backlog(&store, "s").await,
        acked.len() as u64,
        "one pending delivery per acknowledged callback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &config(&data, "", &subscriber_toml("s", DOWN, "retry = [\"1h\"]")),
    );
    let mut bin = Bin::start(&cfg, &[]);
    let addr = bin.addr;
    let load = tokio::spawn(async move { load_until(addr, 16, "mid", Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    bin.kill9();
    let acked = load.await.unwrap();
    assert!(acked.len() > 50, "the burst was under way ({} acked)", acked.len());
    // Some callbacks may be stored without their answer having arrived: never fewer.
    let store = assert_stored(&data, &acked).await;
    assert!(backlog(&store, "s").await >= acked.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_never_logged_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg_path = dir.path().join("config.toml");
    let secret = "sup3r-s3cret-t0ken";
    write_config(
        dir.path(),
        &config(&data, "", &subscriber_toml("s", "http://127.0.0.1:9/", ""))
            .replace("tokens = [\"tok\"]", &format!("tokens = [\"{secret}\"]")),
    );
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "debug")]);
    let ok = post(bin.addr, &format!("/hooks/t?token={secret}"), &[], runway("x"))
        .await
        .0;
    assert_eq!(ok, StatusCode::OK);
    let bad = post(bin.addr, &format!("/hooks/t?token={secret}-wrong"), &[], runway("y"))
        .await
        .0;
    assert_eq!(bad, StatusCode::UNAUTHORIZED);
    let hdr = post(
        bin.addr,
        "/hooks/t",
        &[("authorization", &format!("Bearer {secret}"))],
        "{bad json",
    )
    .await
    .0;
    assert_eq!(hdr, StatusCode::BAD_REQUEST);
    let mut bin = bin;
    let started = std::time::Instant::now();
    bin.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = bin.child.wait().unwrap();
        (s, bin)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    assert!(started.elapsed() < Duration::from_secs(5));
    let log = status.1.log_text();
    assert!(log.contains("REDACTED"), "{log}");
    assert!(log.contains("callback accepted"), "{log}");
    assert!(!log.contains(secret), "the token leaked into the log:\n{log}");
}

#[tokio::test]
async fn connection_cap_holds_extra_connections_back() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""))
        .replace("read_timeout = \"2s\"", "read_timeout = \"2s\"\nmax_connections = 2");
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    // Two idle connections take both slots.
    let c1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let c2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = tokio::spawn(async move { callback(addr, &runway("capped")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served past max_connections = 2"
    );
    // The idle ones are cut at read_timeout (or closed by us): the third gets through.
    drop(c1);
    let (s, _) = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    drop(c2);
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let (dir, _sub, h) = with_ok_subscriber().await;
    let addr = h.ingest_addrs[0];
    let app = h.app.clone();
    // A request whose body is still arriving when the shutdown starts.
    let body = runway("in-flight");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(h.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!app.ready(), "not ready while shutting down");
    // New connections are refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    s.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
    drop(app);
    // It was stored: the store reopens with the event in it.
    let store = open_store(&dir.path().join("data"));
    let id = answer.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(store.event(id.parse().unwrap()).await.unwrap().is_some());
}
