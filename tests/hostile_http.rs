//! Promises 4 and 5 against hostile bytes: request smuggling, duplicate
//! Content-Length, random bytes, 100k-deep JSON and a flood of wrong tokens get
//! clear answers with memory and real-callback latency bounded; over TLS,
//! HTTP/1.1 and HTTP/2 work, junk and truncated handshakes do no harm, and
//! TLS 1.1 is refused.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_gets_clear_answers_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let addr = bin.addr;

    // CL + TE request smuggling: never two requests out of one.
    let smuggle = b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nPOST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
    let answer = raw(addr, smuggle).await;
    assert!(
        answer.matches("HTTP/1.1 ").count() <= 1,
        "smuggled a second request: {answer}"
    );
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Two content lengths.
    let answer = raw(
        addr,
        b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\n{}",
    )
    .await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Random bytes.
    let mut rng = fastrand::Rng::with_seed(7);
    let junk: Vec<u8> = (0..65536).map(|_| rng.u8(..)).collect();
    let answer = raw(addr, &junk).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // 100k-deep JSON within max_body: 400, not a stack overflow.
    let (s, _, _) = post(
        addr,
        "/hooks/t?token=tok",
        &[],
        "[".repeat(100_000) + &"]".repeat(100_000),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A flood of wrong tokens: answered, memory bounded, real callbacks still fast.
    let rss_before = bin.rss_kib();
    let flood_end = Instant::now() + Duration::from_secs(3);
    let mut flood = Vec::new();
    for _ in 0..16 {
        flood.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < flood_end {
                let (s, _, _) = post(addr, "/hooks/t?token=guess", &[], runway("f")).await;
                assert_eq!(s, StatusCode::UNAUTHORIZED);
                n += 1;
            }
            n
        }));
    }
    let mut latencies = Vec::new();
    while Instant::now() < flood_end {
        let t = Instant::now();
        let (s, _) = callback(addr, &runway(&format!("real-{}", latencies.len()))).await;
        assert_eq!(s, StatusCode::OK);
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut total = 0;
    for f in flood {
        total += f.await.unwrap();
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let rss_after = bin.rss_kib();
    eprintln!(
        "wrong-token flood: {total} requests; real callbacks p50 {p50:?}, p99 {p99:?} ({} of them); RSS {rss_before} -> {rss_after} KiB",
        latencies.len()
    );
    assert!(total > 1000, "flood too small to mean anything: {total}");
    // The median says whether the flood starves real callbacks (41-50 ms p99
    // on a quiet machine); the tail of ~100 samples is one scheduling blip
    // on a loaded machine (a CI dry run with other builds: p99 937 ms), so
    // it is only held to the flood's own length.
    assert!(
        p50 < Duration::from_millis(250) && p99 < Duration::from_secs(2),
        "real callbacks slowed to p50 {p50:?}, p99 {p99:?} under the flood"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew {rss_before} -> {rss_after} KiB"
    );
    // Still serving.
    assert_eq!(callback(addr, &runway("after-all")).await.0, StatusCode::OK);
}

/// `openssl s_client` forcing protocol `version` against `addr`; its output.
fn openssl_client(addr: std::net::SocketAddr, version: &str) -> String {
    let mut child = std::process::Command::new("openssl")
        // SECLEVEL=0 so the client really offers old versions: the server must refuse.
        .args([
            "s_client",
            version,
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
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// A relay serving HTTPS with a certificate made here, its subscriber `s`
/// answering `200`.
async fn tls_relay(dir: &std::path::Path) -> (TestCert, Sub, hookrelay::Handle) {
    let cert = TestCert::write(dir, "server");
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir)
        .tls(&cert.cert, &cert.key)
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    (cert, sub, h)
}

/// A callback over HTTPS answered `200` over HTTP/1.1 and over HTTP/2.
async fn both_protocols_answer(addr: std::net::SocketAddr, cert: &TestCert) {
    for (h2, version) in [(false, http::Version::HTTP_11), (true, http::Version::HTTP_2)] {
        assert_eq!(tls_callback(addr, &cert.der, h2).await, (version, StatusCode::OK));
    }
}

#[tokio::test]
async fn https_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _sub, h) = tls_relay(dir.path()).await;
    let addr = h.ingest_addrs[0];
    both_protocols_answer(addr, &cert).await;
    // Garbage and a truncated handshake on the TLS port do not hurt it.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x50, 1, 2, 3]).await.unwrap();
    drop(s);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
    assert_eq!(tls_callback(addr, &cert.der, true).await.1, StatusCode::OK);

    // openssl: TLS 1.2 works, TLS 1.1 is refused.
    assert!(
        std::process::Command::new("openssl").arg("version").output().is_ok(),
        "openssl is needed for the TLS version test (.ci/run installs it)"
    );
    let v12 = tokio::task::spawn_blocking(move || openssl_client(addr, "-tls1_2"))
        .await
        .unwrap();
    assert!(v12.contains("Protocol  : TLSv1.2"), "{v12}");
    let v11 = tokio::task::spawn_blocking(move || openssl_client(addr, "-tls1_1"))
        .await
        .unwrap();
    // The server answers the TLS 1.1 ClientHello with a handshake_failure alert.
    assert!(v11.contains("Cipher is (NONE)"), "TLS 1.1 must be refused: {v11}");
    assert!(v11.contains("alert handshake failure"), "{v11}");
    h.shutdown().await;
}

/// A TLS client must speak the protocol it agreed on by ALPN (RFC 7301,
/// RFC 9113 §3.3): HTTP/1.1 after agreeing on `h2`, or HTTP/2 after
/// agreeing on `http/1.1`, is not served (before, the server guessed from
/// the bytes and answered either); each agreed protocol still works.
#[tokio::test]
async fn a_tls_client_is_served_only_the_protocol_it_agreed_on() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let dir = tempfile::tempdir().unwrap();
    let (cert, _sub, h) = tls_relay(dir.path()).await;
    let addr = h.ingest_addrs[0];
    let req = || {
        http::Request::post("https://localhost/hooks/t?token=tok")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(runway("alpn"))))
            .unwrap()
    };
    // HTTP/1.1 after `h2`.
    let tls = tls_connect(addr, &cert.der, &[b"h2"]).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let answer = tokio::time::timeout(secs(10), s.send_request(req()))
        .await
        .expect("no answer nor close");
    assert!(
        answer.is_err(),
        "HTTP/1.1 served after agreeing on h2: {:?}",
        answer.map(|r| r.status())
    );
    // HTTP/2 after `http/1.1`.
    let tls = tls_connect(addr, &cert.der, &[b"http/1.1"])
        .await
        .expect("TLS handshake");
    let answer = tokio::time::timeout(secs(10), async {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        s.send_request(req()).await
    })
    .await
    .expect("no answer nor close");
    assert!(
        answer.is_err(),
        "HTTP/2 served after agreeing on http/1.1: {:?}",
        answer.map(|r| r.status())
    );
    // Each as agreed.
    both_protocols_answer(addr, &cert).await;
    h.shutdown().await;
}

/// A stranger does not control the log's volume (review 37, finding 3):
/// 1,000 refused requests (no route, wrong token) write one line at info
/// per kind of refusal (no route; each route's own, review 40: two here),
/// the rest at debug; while they keep coming a warning sums them up at most
/// once every 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refused_requests_writes_a_bounded_number_of_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info")]);
    let addr = bin.addr;
    let before = bin.log_text().lines().count();
    let started = Instant::now();
    for i in 0..1_000 {
        let (path, want) = if i % 2 == 0 {
            (format!("/nothing/{i}"), StatusCode::NOT_FOUND)
        } else {
            (format!("/hooks/t?token=wrong{i}"), StatusCode::UNAUTHORIZED)
        };
        let (status, _) = callback_at(addr, &path, &runway("r37-refused")).await;
        assert_eq!(status, want, "{path}");
    }
    let took = started.elapsed();
    // Lines are read from the daemon's stderr by a thread: let it catch up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = bin.log_text();
    // About the refusals (the daemon's own start-up lines may come late).
    let new: Vec<&str> = log
        .lines()
        .skip(before)
        .filter(|l| l.contains("refused") || l.contains("no route"))
        .collect();
    // One line to start with per kind (no route, route `t`), and one
    // summary for each 10 s the burst took.
    let bound = 2 + took.as_secs() as usize / 10;
    assert!(
        new.len() <= bound && !new.is_empty(),
        "1,000 refused requests in {took:?} wrote {} log lines (at most {bound} expected):\n{}",
        new.len(),
        new.iter().take(20).copied().collect::<Vec<_>>().join("\n")
    );
}

/// Review 40, finding 2: the refusals of a route are logged apart from
/// strangers' probes to paths with no route. A public relay is probed all
/// the time (`GET /wp-login.php` every 300 ms here, there first); when the
/// provider's genuine callbacks start being refused (a rotated token not yet
/// in the config: every callback `401`), the route's first refusal is still
/// logged at info with its route and reason, and the summary names the
/// route, not only counts.
#[tokio::test]
async fn a_route_refusing_every_callback_is_named_in_the_log_despite_scanner_noise() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info")]);
    let addr = bin.addr;
    let scanner = tokio::spawn(async move {
        loop {
            let (s, _, _) = request(addr, None, "GET", "/wp-login.php", &[], bytes::Bytes::new()).await;
            assert_eq!(s, StatusCode::NOT_FOUND);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The provider's callbacks, with a token the route no longer accepts,
    // for 12 s (past one 10 s summary).
    for i in 0..12 {
        let (s, _) = callback_at(addr, "/hooks/t?token=rotated", &runway(&format!("r40-log-{i}"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "the callback is refused");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    scanner.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = bin.log_text();
    let at = |level: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains(level) && l.contains("refused"))
            .collect()
    };
    let (info, warn) = (at(" INFO "), at(" WARN "));
    assert!(
        info.iter().any(|l| l.contains("route=t") && l.contains("reason=")),
        "the route's first refusal, at info with route and reason: {info:#?}"
    );
    assert!(
        warn.iter().any(|l| l.contains("route=t: ") && l.contains("401 x")),
        "the summary names the route and its status: {warn:#?}"
    );
}

/// Review 40, finding 3: a window of refusals that went quiet is dropped,
/// not summed up late. Two probes to unknown paths, then 11 quiet seconds
/// (it could be hours), then the provider's first callback refused by route
/// `t`: it is logged at info with its route and reason, and no summary
/// speaks of "the last 11s".
#[tokio::test]
async fn the_first_route_refusal_after_a_quiet_while_is_logged_with_its_route() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info")]);
    let addr = bin.addr;
    for path in ["/.env", "/wp-login.php"] {
        let (s, _, _) = request(addr, None, "GET", path, &[], bytes::Bytes::new()).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (s, _) = callback_at(addr, "/hooks/t?token=rotated", &runway("r40-quiet")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the callback is refused");
    // Its line comes through the daemon's stderr and a reader thread; a
    // stale summary would have come before it.
    log_until(|| bin.log_text(), "route=t", secs(5)).await;
    let log = bin.log_text();
    let visible: Vec<_> = log
        .lines()
        .filter(|l| (l.contains(" INFO ") || l.contains(" WARN ")) && l.contains("refused"))
        .collect();
    assert!(
        visible
            .iter()
            .any(|l| l.contains(" INFO ") && l.contains("route=t") && l.contains("reason=")),
        "the first refusal by route `t` after 11 quiet seconds, at info with its reason: {visible:#?}"
    );
    assert!(
        !visible.iter().any(|l| l.contains(" WARN ")),
        "no stale summary: {visible:#?}"
    );
}

/// HTTP/2 rapid reset (CVE-2023-44487): a client opening streams and
/// resetting them at once is closed by the HTTP/2 layer (`GOAWAY
/// ENHANCE_YOUR_CALM`). The operator sees it: a warning naming the client
/// (before: a line at debug only), at most one a minute however many
/// connections do it, the rest at debug and counted in the next warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_flooding_resets_is_closed_and_named_in_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info")]);
    for round in 0..3 {
        let tcp = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let mut sent = 0;
        // Until the relay closes it: by time, not by count (the loop can run
        // ahead of the connection's task on a loaded machine, and sent
        // 10,000 while the relay had read few of them: seen in stop 72).
        let until = std::time::Instant::now() + secs(10);
        while !conn.is_finished() && std::time::Instant::now() < until && sent < 1_000_000 {
            if sent % 64 == 0 {
                tokio::task::yield_now().await;
            }
            // A relay that stops reading without closing fails the test below
            // (not closed in time), rather than hanging it here.
            let left = until.saturating_duration_since(std::time::Instant::now());
            let Ok(Ok(ready)) = tokio::time::timeout(left, client.clone().ready()).await else {
                break;
            };
            client = ready;
            let req = http::Request::post("/hooks/t").body(()).unwrap();
            let Ok((_, mut stream)) = client.send_request(req, false) else {
                break;
            };
            stream.send_reset(h2::Reason::CANCEL);
            sent += 1;
        }
        let ended = tokio::time::timeout(secs(10), conn)
            .await
            .expect("the flooding connection was not closed");
        let err = ended.unwrap().expect_err("the connection ended without an error");
        // The GOAWAY, or (the client still writing when the relay closed) a broken pipe.
        let calm = err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        assert!(calm || err.is_io(), "round {round}: {err}");
    }
    log_until(|| bin.log_text(), "flooded its connection", secs(5)).await;
    // The relay still serves callbacks.
    let (status, _) = callback_at(bin.addr, "/hooks/t?token=tok", &runway("r-flood")).await;
    assert_eq!(status, StatusCode::OK);
    let log = bin.log_text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("flooded its connection")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("127.0.0.1"),
        "{}",
        warnings[0]
    );
}

/// A client that itself closes with `GOAWAY ENHANCE_YOUR_CALM` (it says the
/// relay flooded it: a buggy or hostile peer) was not closed for flooding:
/// no warning naming it as a flooder, the line at debug as any other
/// connection's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_own_enhance_your_calm_is_not_named_a_flooder() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info,hookrelay::server=debug")]);
    let mut tcp = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS (empty), then GOAWAY: last stream 0, ENHANCE_YOUR_CALM (0xb).
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b]);
    tcp.write_all(&out).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(secs(10), tcp.read_to_end(&mut rest))
        .await
        .expect("the relay kept the connection after the client's GOAWAY");
    // The relay logged the connection's end (at debug, or as a flood).
    let ended = ["connection ended", "closed for flooding", "flooded its connection"];
    let deadline = Instant::now() + secs(5);
    while !ended.iter().any(|l| bin.log_text().contains(l)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = bin.log_text();
    assert!(
        ended.iter().any(|l| log.contains(l)),
        "the connection's end was not logged: {log}"
    );
    assert!(!log.contains("flooded its connection"), "{log}");
}

/// HTTP/2 PING acknowledgements the relay never asked for, from a client
/// that sent nothing else: the HTTP/2 library logged a warning for each
/// (17 bytes from anyone: 900k lines, 137 MB of log in 10 s; resources
/// review, stop 67). Not one now, and the relay still serves callbacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_http2_ping_acknowledgements_write_no_log_line_each() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info")]);
    let mut tcp = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame, then 1,000 PINGs with the ACK flag.
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for n in 0u64..1000 {
        bytes.extend_from_slice(&[0, 0, 8, 6, 1, 0, 0, 0, 0]);
        bytes.extend_from_slice(&n.to_be_bytes());
    }
    tcp.write_all(&bytes).await.unwrap();
    // The relay's SETTINGS and its acknowledgement of ours: it read them.
    let mut got = [0u8; 64];
    let n = tokio::time::timeout(secs(5), tcp.read(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0, "the relay answered nothing");
    let (status, _) = callback_at(bin.addr, "/hooks/t?token=tok", &runway("r-ping")).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(ms(300)).await;
    let log = bin.log_text();
    let pings = log.lines().filter(|l| l.contains("PING")).count();
    assert!(
        pings <= 1,
        "{pings} log lines about PINGs:\n{}",
        &log[..log.len().min(2000)]
    );
}

/// A request refused for want of a route, an allowed address or a token is
/// answered and its connection closed: kept, it held a connection slot for
/// the idle allowance (60 s), and 4,100 such requests a minute without
/// credentials left providers' callbacks waiting (resources review, stop
/// 67). The pull API's wrong token alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_refused_request_does_not_keep_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[]);
    for (path, status) in [
        ("/hooks/t?token=wrong", "401"),
        ("/no/such/route", "404"),
        ("/pull/nobody/ack", "401"),
        // `GET` where `POST` is asked (a route, a pull acknowledgement).
        ("GET /hooks/t", "405"),
        ("GET /pull/nobody/ack", "405"),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
        let (method, path) = path.split_once(' ').unwrap_or(("POST", path));
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        // Read to the end: the relay closes it (before: open for 60 s).
        tokio::time::timeout(secs(5), tcp.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{path}: the connection was kept open"))
            .unwrap();
        let text = String::from_utf8_lossy(&got).to_lowercase();
        assert!(text.starts_with(&format!("http/1.1 {status}")), "{path}: {text}");
        assert!(text.contains("connection: close"), "{path}: {text}");
    }
    // A provider's callback keeps its connection.
    let mut tcp = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    let body = runway("r-kept").to_string();
    let req = format!(
        "POST /hooks/t?token=tok HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = [0u8; 512];
    let n = tokio::time::timeout(secs(5), tcp.read(&mut got))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&got[..n]).to_lowercase();
    assert!(
        text.starts_with("http/1.1 200") && !text.contains("connection: close"),
        "{text}"
    );
}
