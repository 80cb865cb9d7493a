//! Hostile use of the public listener (issue 8): connections that never finish
//! a phase, declared sizes that are never sent, junk in `X-Forwarded-For`,
//! token tricks, and what a reload must apply.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Read (and discard) until the peer closes; how long that took, or None if it
/// was still open after `limit`.
async fn closed_within<S: AsyncRead + Unpin>(mut s: S, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.ok().map(|_| started.elapsed())
}

fn with_server(cfg: String, server_extra: &str) -> String {
    cfg.replace("read_timeout = \"2s\"", server_extra)
}

#[tokio::test]
async fn stalled_connections_are_closed_within_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = with_server(
        config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")),
        "read_timeout = \"1s\"\nmax_connections = 4",
    );
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    // Silent, one byte of the HTTP/2 preface, most of it, a header that never ends:
    // each takes a connection slot, all four slots together.
    let mut stalled = Vec::new();
    for first in [
        &b""[..],
        b"P",
        b"PRI * HTTP/2.0\r\n",
        b"POST /hooks/t?token=tok HTTP/1.1\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(first).await.unwrap();
        stalled.push(tokio::spawn(closed_within(s, Duration::from_secs(4))));
    }
    // Every slot is taken, yet a real callback gets through once they are cut.
    let t = Instant::now();
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), callback(addr, &runway("after-stall")))
        .await
        .expect("a real callback was locked out by stalled connections");
    assert_eq!(status, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    for (i, s) in stalled.into_iter().enumerate() {
        let took = s
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("stalled connection {i} still open after 4s"));
        assert!(took >= Duration::from_millis(800), "connection {i} cut early: {took:?}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn stalled_tls_connections_are_closed_within_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = write_cert(dir.path(), "server");
    let sub = Sub::ok().await;
    let cfg = with_server(
        config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")),
        &format!(
            "read_timeout = \"1s\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        ),
    );
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    let mut checks = Vec::new();
    // No handshake at all.
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    checks.push((
        "no handshake",
        tokio::spawn(closed_within(silent, Duration::from_secs(4))),
    ));
    // A completed handshake, then nothing (h1 and h2 offered), or one byte.
    for (what, alpn, first) in [
        ("handshake, then silence (h2)", &[&b"h2"[..]][..], &b""[..]),
        ("handshake, then silence (http/1.1)", &[&b"http/1.1"[..]][..], &b""[..]),
        (
            "handshake, then one byte",
            &[&b"h2"[..], &b"http/1.1"[..]][..],
            &b"P"[..],
        ),
    ] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = tls_client(&der, alpn)
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .expect("TLS handshake");
        tls.write_all(first).await.unwrap();
        tls.flush().await.unwrap();
        checks.push((what, tokio::spawn(closed_within(tls, Duration::from_secs(4)))));
    }
    for (what, c) in checks {
        let took = c
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: still open after 4s"));
        assert!(took >= Duration::from_millis(800), "{what}: cut early ({took:?})");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = with_server(
        config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")),
        "read_timeout = \"1s\"\nidle_timeout = \"2s\"",
    );
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    let req = |task: &str| {
        Request::post("/hooks/t?token=tok")
            .header("host", "localhost")
            .body(Full::new(Bytes::from(runway(task))))
            .unwrap()
    };

    // HTTP/1.1 keep-alive: idle longer than read_timeout is fine, idle_timeout is not.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h1, h1_conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    let h1_conn = tokio::spawn(h1_conn);
    assert_eq!(h1.send_request(req("h1-a")).await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = h1.send_request(req("h1-b")).await.expect("still open after 1.5s idle");
    assert_eq!(r.status(), StatusCode::OK);
    let _ = r.into_body().collect().await;
    let idle_from = Instant::now();

    // HTTP/2 (prior knowledge): answers our pings, never sends a request again.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, h2_conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(300))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    let r = h2.send_request(req("h2-a")).await.unwrap();
    assert_eq!((r.version(), r.status()), (http::Version::HTTP_2, StatusCode::OK));
    let _ = r.into_body().collect().await;
    let h2_idle_from = Instant::now();

    tokio::time::timeout(Duration::from_secs(5), h1_conn)
        .await
        .expect("idle HTTP/1.1 connection still open 5s after its last request")
        .unwrap()
        .ok();
    let took = idle_from.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "h1 closed after {took:?} idle, before idle_timeout"
    );
    tokio::time::timeout(Duration::from_secs(5), h2_conn)
        .await
        .expect("idle HTTP/2 connection still open 5s after its last request")
        .unwrap()
        .ok();
    let took = h2_idle_from.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "h2 closed after {took:?} idle, before idle_timeout"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_content_length_is_not_allocated_before_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    // A signature-only route: no token stands between a stranger and the body.
    let cfg = with_server(
        config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")),
        "read_timeout = \"1s\"\nmax_body = \"256MiB\"",
    ) + &format!(
        "\n[[routes]]\nname = \"signed\"\npath = \"/hooks/signed\"\nsignature = {{ scheme = \"hmac-sha256\", secret = \"k\", header = \"x-sig\" }}\n{}",
        subscriber_toml("s2", &sub.url(), "")
    );
    let cfg_path = write_config(dir.path(), &cfg);
    // 2 GiB of address space (the idle daemon maps ~0.8 GiB); 16 declared bodies of 256 MiB would need 4 GiB.
    let mut bin = Bin::start_with_address_space(&cfg_path, 2 << 30);
    let addr = bin.addr;
    let mut stalled = Vec::new();
    for _ in 0..16 {
        stalled.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /hooks/signed HTTP/1.1\r\nhost: x\r\nx-sig: 00\r\ncontent-length: {}\r\n\r\n{{\"a\":",
                (256 << 20) - 1
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).to_string()
        }));
    }
    for s in stalled {
        let answer = s.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{answer:?}; log: {}",
            bin.log_text()
        );
    }
    assert!(
        bin.child.try_wait().unwrap().is_none(),
        "the daemon died: {}",
        bin.log_text()
    );
    assert_eq!(callback(addr, &runway("after-declared")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn junk_in_forwarded_for_means_an_unknown_client_not_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    // The proxy's own range is allowed: falling back to the proxy would let anyone in.
    let routes = format!(
        "\n[[routes]]\nname = \"proxied\"\npath = \"/hooks/proxied\"\nallow_ips = [\"127.0.0.0/8\"]\n{}\n[[routes]]\nname = \"open\"\npath = \"/hooks/open\"\n{}",
        subscriber_toml("p", &sub.url(), ""),
        subscriber_toml("o", &sub.url(), "")
    );
    let cfg = with_server(
        config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), "")),
        "read_timeout = \"2s\"\ntrusted_proxies = [\"127.0.0.2/32\"]",
    ) + &routes;
    let h = start(dir.path(), &cfg).await;
    let addr = h.ingest_addrs[0];
    let proxy = Some("127.0.0.2".parse().unwrap());
    let send = |path: &'static str, xff: Vec<&'static str>, task: &'static str| async move {
        let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
        request(addr, proxy, "POST", path, &headers, Bytes::from(runway(task)))
            .await
            .0
    };
    // A well-formed chain still works: the right-most untrusted entry is the client.
    assert_eq!(
        send("/hooks/proxied", vec!["203.0.113.1, 127.0.0.9"], "a").await,
        StatusCode::OK
    );
    // Junk left of the client is the client's own business.
    assert_eq!(
        send("/hooks/proxied", vec!["garbage, 198.51.100.7"], "b").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send("/hooks/proxied", vec!["garbage, 127.0.0.9"], "c").await,
        StatusCode::OK
    );
    // Junk where the client should be: unknown, refused where allow_ips applies.
    for (i, xff) in [
        vec!["198.51.100.7,"],
        vec!["198.51.100.7,,127.0.0.2"],
        vec!["fe80::1%eth0"],
        vec!["not-an-ip"],
        vec![""],
        vec!["198.51.100.7", "junk"],
    ]
    .into_iter()
    .enumerate()
    {
        let task = ["d0", "d1", "d2", "d3", "d4", "d5"][i];
        assert_eq!(
            send("/hooks/proxied", xff.clone(), task).await,
            StatusCode::FORBIDDEN,
            "{xff:?}"
        );
    }
    // Without allow_ips the callback is taken, its source recorded as unknown.
    assert_eq!(
        send("/hooks/open", vec!["198.51.100.7, junk"], "e").await,
        StatusCode::OK
    );
    let (_, v) = admin(h.admin_addr, "GET", "/api/events?route=open").await;
    assert_eq!(v["events"][0]["source"], "unknown");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_url_credentials_are_sent_as_basic_auth_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let url = format!("http://hook-user:p%40ss-w0rd@{}/callbacks", sub.addr);
    let cfg_path = write_config(
        dir.path(),
        &config(&dir.path().join("data"), "", &subscriber_toml("s", &url, "")),
    );
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "debug")]);
    assert_eq!(callback(bin.addr, &runway("creds")).await.0, StatusCode::OK);
    let got = sub
        .wait_for(Duration::from_secs(5), "delivery", |r| !r.is_empty())
        .await;
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("hook-user:p@ss-w0rd");
    assert_eq!(got[0].header("authorization"), format!("Basic {basic}"));
    assert_eq!(got[0].path, "/callbacks");
    // Nowhere to be seen: admin API, CLI, logs.
    let (_, v) = admin(bin.admin, "GET", "/api/subscribers").await;
    assert_eq!(v["subscribers"][0]["url"], format!("http://{}/callbacks", sub.addr));
    let admin_url = format!("http://{}", bin.admin);
    let cfg_s = cfg_path.to_str().unwrap().to_string();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || cli(&["--config", &cfg_s, "--admin", &admin_url, "subscribers"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    let shown = format!("{v}\n{out}\n{err}\n{}", bin.log_text());
    for secret in ["hook-user", "p%40ss", "p@ss", &basic] {
        assert!(!shown.contains(secret), "{secret:?} shown:\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_token_key_is_redacted_in_logs() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-t0ken-enc";
    let cfg_path = write_config(
        dir.path(),
        &config(
            &dir.path().join("data"),
            "",
            &subscriber_toml("s", DOWN, "retry = [\"1h\"]"),
        )
        .replace("tokens = [\"tok\"]", &format!("tokens = [\"{secret}\"]")),
    );
    let bin = Bin::start(&cfg_path, &[]);
    // The decoded key is `token`: the token is taken...
    let (s, _, _) = post(bin.addr, &format!("/hooks/t?tok%65n={secret}"), &[], runway("enc")).await;
    assert_eq!(s, StatusCode::OK);
    // ...so every logged refusal must hide it.
    let (s, _, _) = post(bin.addr, &format!("/hooks/t?tok%65n={secret}"), &[], "{bad json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = post(bin.addr, &format!("/hooks/t?%74oken={secret}x"), &[], runway("w")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = post(bin.addr, &format!("/nowhere?%74%6F%6B%65%6E={secret}"), &[], "{}").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let deadline = Instant::now() + Duration::from_secs(5);
    while bin.log_text().matches(" uri=").count() < 3 {
        assert!(Instant::now() < deadline, "refusals not logged: {}", bin.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = bin.log_text();
    assert!(!log.contains(secret), "the token leaked into the log:\n{log}");
}

#[tokio::test]
async fn a_wrong_bearer_does_not_hide_a_correct_query_token() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let addr = h.ingest_addrs[0];
    let bearer = |t: &'static str| [("authorization", t)];
    assert_eq!(
        post(addr, "/hooks/t?token=tok", &bearer("Bearer x"), runway("q"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        post(addr, "/hooks/t?token=nope", &bearer("Bearer tok"), runway("b"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        post(addr, "/hooks/t?token=nope", &bearer("Bearer x"), runway("n"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Two guesses at most per request: only the first ?token= counts.
    assert_eq!(
        post(addr, "/hooks/t?token=nope&token=tok", &[], runway("2")).await.0,
        StatusCode::UNAUTHORIZED
    );
    h.shutdown().await;
}

#[tokio::test]
async fn reload_applies_connection_limits_timeouts_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""));
    let server = |extra: &str| with_server(base.clone(), extra);
    let h = start(dir.path(), &server("read_timeout = \"10s\"\nmax_connections = 1")).await;
    let addr = h.ingest_addrs[0];
    std::fs::write(
        dir.path().join("config.toml"),
        server("read_timeout = \"2s\"\nmax_connections = 3\nhttp2_max_streams = 1"),
    )
    .unwrap();
    h.reload().await.expect("reload");

    // max_connections: two silent connections no longer lock out a callback.
    let silent: Vec<_> = vec![
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ];
    let (s, _) = tokio::time::timeout(Duration::from_millis(1800), callback(addr, &runway("cap")))
        .await
        .expect("max_connections = 3 not applied: the callback waited for a slot");
    assert_eq!(s, StatusCode::OK);
    // read_timeout: a silent connection is cut after 2 s, not 10 s.
    for s in silent {
        closed_within(s, Duration::from_secs(5))
            .await
            .expect("read_timeout = 2s not applied: silent connection still open after 5s");
    }
    // http2_max_streams: announced to new HTTP/2 connections.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = Request::post("http://localhost/hooks/t?token=tok").body(()).unwrap();
    let (resp, mut body) = client.send_request(req, false).unwrap();
    body.send_data(Bytes::from(runway("h2")), true).unwrap();
    assert_eq!(resp.await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        client.current_max_send_streams(),
        1,
        "http2_max_streams = 1 not applied"
    );

    h.shutdown().await;
}

#[tokio::test]
async fn reload_applies_shutdown_grace() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""));
    let server = |extra: &str| with_server(base.clone(), extra);
    let h = start(dir.path(), &server("read_timeout = \"5s\"\nshutdown_grace = \"10s\"")).await;
    let addr = h.ingest_addrs[0];
    std::fs::write(
        dir.path().join("config.toml"),
        server("read_timeout = \"5s\"\nshutdown_grace = \"300ms\""),
    )
    .unwrap();
    h.reload().await.expect("reload");
    // A request in flight (its handler asked for the body: 100 Continue) that
    // would hold the shutdown for read_timeout.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let t = Instant::now();
    h.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "shutdown took {:?}: shutdown_grace = 300ms not applied",
        t.elapsed()
    );
    drop(s);
}

/// A subscriber that answers 200 at once, then sends its body a byte at a time.
async fn dripping_subscriber() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // The request: its header, then Content-Length bytes.
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n").await;
                for _ in 0..1000 {
                    if s.write_all(b".").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    (addr, requests)
}

#[tokio::test]
async fn a_2xx_whose_body_drips_is_delivered_not_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (sub, requests) = dripping_subscriber().await;
    let url = format!("http://{sub}/callbacks");
    let subs = subscriber_toml("drip", &url, "timeout = \"1s\"\nretry = [\"100ms\", \"100ms\"]");
    let h = start(dir.path(), &config(&dir.path().join("data"), "", &subs)).await;
    let (_, v) = callback(h.ingest_addrs[0], &runway("drip")).await;
    let path = format!("/api/events/{}", v["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let ev = loop {
        let (_, ev) = admin(h.admin_addr, "GET", &path).await;
        if ev["subscribers"][0]["state"] != "pending" {
            break ev;
        }
        assert!(Instant::now() < deadline, "no outcome within 10s: {ev}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let s = &ev["subscribers"][0];
    assert_eq!(s["state"], "delivered", "{ev}");
    assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "{ev}");
    assert_eq!(s["attempts"][0]["status"], 200, "{ev}");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn missing_hmac_signature_header_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = config(&dir.path().join("data"), "", &subscriber_toml("s", &sub.url(), ""))
        + &format!(
            "\n[[routes]]\nname = \"gh\"\npath = \"/hooks/gh\"\nsignature = {{ scheme = \"hmac-sha256\", secret = \"k\", header = \"X-Hub-Signature-256\", prefix = \"sha256=\" }}\n{}",
            subscriber_toml("g", &sub.url(), "")
        );
    let h = start(dir.path(), &cfg).await;
    let (s, _, body) = post(h.ingest_addrs[0], "/hooks/gh", &[], runway("unsigned")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let why = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"].to_string();
    assert!(why.contains("x-hub-signature-256"), "{why}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_store_says_why_it_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = write_config(
        dir.path(),
        &config(&dir.path().join("data"), "", &subscriber_toml("s", DOWN, "")),
    );
    let first = Bin::start(&cfg_path, &[]);
    let path = cfg_path.clone();
    let second = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second daemon neither started nor stopped")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("another hookrelay is using this store"), "{err}");
    assert!(err.contains(&dir.path().join("data").display().to_string()), "{err}");
    // The first one is unharmed.
    assert_eq!(callback(first.addr, &runway("still-mine")).await.0, StatusCode::OK);
}
