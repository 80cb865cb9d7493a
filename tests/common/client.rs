//! Clients of the daemon: plain HTTP requests (optionally from another loopback
//! address), callbacks to route `t`, the pull API, the admin API and its
//! Prometheus text, TLS clients trusting a test certificate, and raw sockets
//! for byte-level abuse.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::bodies::runway;

/// A plain-HTTP POST; returns status, headers and body.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Bytes) {
    request(addr, None, "POST", path, headers, body.into()).await
}

/// A request over a fresh connection, optionally from a given local address.
pub async fn request(
    addr: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let what = format!("{method} {path} to {addr}");
    tokio::time::timeout(
        Duration::from_secs(20),
        try_request(addr, from, method, path, headers, body),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer within 20s: {what}"))
    .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A TCP connection to `addr` from `from` (any 127.0.0.0/8 address is
/// local): another client, as the relay's per-client connection share sees
/// it.
pub async fn connect_from(addr: SocketAddr, from: IpAddr) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// `request`, with a refused or cut connection as an error (a daemon being killed).
pub async fn try_request(
    addr: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    }
    .unwrap();
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    let stream = socket.connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .map_err(|e| format!("response: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Ok((parts.status, parts.headers, body))
}

/// POST a callback to `/hooks/t?token=tok`; the parsed answer.
pub async fn callback(addr: SocketAddr, body: &str) -> (StatusCode, serde_json::Value) {
    callback_at(addr, "/hooks/t?token=tok", body).await
}

/// POST a JSON callback to `path`; the parsed answer (`Null` if not JSON).
pub async fn callback_at(addr: SocketAddr, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
    let (s, _, b) = post(addr, path, &[("content-type", "application/json")], body.to_string()).await;
    (s, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
}

/// [`callback_at`] that must be answered `200`: the relay's answer (`id`,
/// `duplicate`).
pub async fn callback_ok(addr: SocketAddr, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let (s, v) = callback_at(addr, path, &body.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// `callback`, with a refused or cut connection as `None`.
pub async fn try_callback(addr: SocketAddr, body: &str) -> Option<(StatusCode, serde_json::Value)> {
    let headers = [("content-type", "application/json")];
    let (s, _, b) = try_request(
        addr,
        None,
        "POST",
        "/hooks/t?token=tok",
        &headers,
        Bytes::from(body.to_string()),
    )
    .await
    .ok()?;
    Some((s, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)))
}

/// POST a callback as a provider does: a `503` (the store busy for a moment,
/// e.g. a replicated NATS append past its budget on a loaded machine) is
/// tried again, for up to 10 s; the `200` answer, and whether a `503` came
/// first (the callback may then have been stored by the refused try).
pub async fn callback_retrying(addr: SocketAddr, body: &str) -> (serde_json::Value, bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut refused = false;
    loop {
        let (s, v) = callback(addr, body).await;
        if s == StatusCode::SERVICE_UNAVAILABLE && tokio::time::Instant::now() < deadline {
            refused = true;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(s, StatusCode::OK, "callback refused: {v}");
        return (v, refused);
    }
}

/// `n` Runway callbacks of tasks `hay-0`… (none any test searches for),
/// 32 at a time, each sent again until accepted: a large log for listing
/// tests to search through.
pub async fn send_hay(addr: SocketAddr, n: usize) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                accepted_retrying(addr, &crate::common::runway(&format!("hay-{i}"))).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

/// [`callback_retrying`]: its event id once accepted.
pub async fn accepted_retrying(addr: SocketAddr, body: &str) -> String {
    let (v, _) = callback_retrying(addr, body).await;
    v["id"].as_str().unwrap().to_string()
}

/// POST a callback that must be accepted; its event id.
pub async fn accepted(addr: SocketAddr, body: &str) -> String {
    let (s, v) = callback(addr, body).await;
    assert_eq!(s, StatusCode::OK, "callback refused: {v}");
    v["id"].as_str().unwrap().to_string()
}

/// POST a JSON callback to `path` (a route without a token) that must be
/// accepted as a new event; its id.
pub async fn accepted_at(addr: SocketAddr, path: &str, body: &str) -> String {
    let (s, v) = callback_at(addr, path, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["duplicate"], false, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// A `/hooks/t?token=tok` callback with a Runway body, for a connection the test holds.
pub fn callback_request(task: &str) -> Request<Full<Bytes>> {
    Request::post("/hooks/t?token=tok")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(runway(task))))
        .unwrap()
}

/// A pull API request (`/pull/…`) with a bearer `token` and a
/// `hookrelay-forwarder` id when given; status, headers and the parsed JSON.
pub async fn pull_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    forwarder: Option<&str>,
    body: &str,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(f) = forwarder {
        headers.push(("hookrelay-forwarder", f));
    }
    let (s, h, b) = request(addr, None, method, path, &headers, Bytes::from(body.to_string())).await;
    (s, h, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
}

/// Pulls `path` (`/pull/…`) with `token` as `forwarder`, asserting that it
/// answers 200 and hands out `id` first.
pub async fn assert_hands_out(addr: SocketAddr, path: &str, token: &str, forwarder: &str, id: &str) {
    let (s, _, v) = pull_call(addr, "GET", path, Some(token), Some(forwarder), "").await;
    assert_eq!((s.as_u16(), v["messages"][0]["id"].as_str()), (200, Some(id)), "{v}");
}

/// `GET /api/events/ID`: one event as the admin API shows it (its status
/// not checked: a missing event is the answer's `error`).
pub async fn event_view(addr: SocketAddr, id: impl std::fmt::Display) -> serde_json::Value {
    admin(addr, "GET", &format!("/api/events/{id}")).await.1
}

/// GET/POST on the admin API (with the JSON content type its POSTs need); the
/// parsed JSON (or text) answer.
pub async fn admin(addr: SocketAddr, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
    let json = [("content-type", "application/json")];
    let (s, _, b) = request(addr, None, method, path, &json, Bytes::new()).await;
    let v =
        serde_json::from_slice(&b).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&b).into()));
    (s, v)
}

/// GET `path` on the admin API until `pred` holds for the answer, or `limit`
/// passes; the last answer either way (the caller asserts on it).
pub async fn admin_until(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, v) = admin(addr, "GET", path).await;
        if pred(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`admin_until`], asserting that `pred` held (`what` names it): for waits
/// the test cannot go on without.
pub async fn admin_expect(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let v = admin_until(addr, path, limit, &pred).await;
    assert!(pred(&v), "{what}: not seen at {path} within {limit:?}: {v}");
    v
}

/// Wait (up to 60 s) until subscriber `name` has nothing left to send:
/// no delivery queued, waiting or in flight. A test counting what a
/// subscriber received counts after this: a delivery sent twice may come
/// after the last one the test was waiting for.
pub async fn drained(addr: SocketAddr, name: &str) {
    admin_expect(
        addr,
        "/api/subscribers",
        Duration::from_secs(60),
        &format!("{name} with nothing queued or in flight"),
        |v| {
            let s = row(&v["subscribers"], "name", name);
            s["queue_depth"] == 0 && s["in_flight"] == 0
        },
    )
    .await;
}

/// Wait (up to 20 s) until the admin API shows event `id` delivered to
/// subscriber `name`, and assert it. A test that stops a relay after its
/// subscriber got a request waits for this first: a stop abandons attempts
/// whose result is not recorded yet, and the restarted relay sends them again.
pub async fn until_delivered(addr: SocketAddr, id: &str, name: &str) {
    let what = format!("{id} recorded as delivered to {name}");
    admin_expect(
        addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(20),
        &what,
        |v| {
            v["subscribers"]
                .as_array()
                .is_some_and(|l| l.iter().any(|s| s["name"] == name && s["state"] == "delivered"))
        },
    )
    .await;
}

/// The row of an admin listing (`/api/subscribers`, an event's subscribers,
/// dead letters) whose `key` is `value`.
pub fn row(list: &serde_json::Value, key: &str, value: &str) -> serde_json::Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|s| s[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {list}"))
        .clone()
}

/// `/metrics` parsed into (name{labels}, value) samples.
pub async fn metrics(addr: SocketAddr) -> Vec<(String, f64)> {
    let (s, text) = admin(addr, "GET", "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    text.as_str()
        .unwrap()
        .lines()
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

/// The value of the sample `key` (`name{labels}` exactly as exposed).
pub fn sample(all: &[(String, f64)], key: &str) -> f64 {
    all.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no sample {key}"))
}

/// Wait (up to `limit`) until `/metrics` satisfies `ok`; the samples then.
pub async fn metrics_until(
    addr: SocketAddr,
    limit: Duration,
    what: &str,
    ok: impl Fn(&[(String, f64)]) -> bool,
) -> Vec<(String, f64)> {
    let deadline = Instant::now() + limit;
    loop {
        let m = metrics(addr).await;
        if ok(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TLS client trusting exactly `ca`, offering the given ALPN protocols.
pub fn tls_client(ca: &rustls::pki_types::CertificateDer<'static>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A TLS connection to `addr` as `localhost`, trusting `ca`.
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tls_client(ca, alpn).connect("localhost".try_into().unwrap(), tcp).await
}

/// One callback over HTTPS, HTTP/2 or HTTP/1.1 by ALPN; the version and status.
pub async fn tls_callback(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    h2: bool,
) -> (http::Version, StatusCode) {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let tls = tls_connect(addr, ca, alpn).await.expect("TLS handshake");
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

/// POST `body` to `/hooks/t?token=tok` over HTTPS (HTTP/1.1), trusting `ca`;
/// the accepted event's id.
pub async fn tls_accepted(addr: SocketAddr, ca: &rustls::pki_types::CertificateDer<'static>, body: &str) -> String {
    let exchange = async {
        let tls = tls_connect(addr, ca, &[b"http/1.1"]).await.expect("TLS handshake");
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::post("/hooks/t?token=tok")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = s.send_request(req).await.expect("the daemon answers over TLS");
        assert_eq!(resp.status(), StatusCode::OK);
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10s")
}

/// Write `bytes` on a fresh connection and read until the server closes (5 s
/// each at most); what came back.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(bytes)).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// One read on `s` within `limit`; the text read (empty when the peer closed).
pub async fn read_some<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> String {
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(limit, s.read(&mut buf))
        .await
        .expect("no answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// Read (and discard) until the peer closes; how long that took, or None if it
/// was still open after `limit`.
pub async fn closed_within<S: AsyncRead + Unpin>(mut s: S, limit: Duration) -> Option<Duration> {
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

/// The ids of an `/api/events` answer, in its order.
pub fn event_ids(v: &serde_json::Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Wait (up to 10 s) until the server end of the loopback connection `s` has
/// taken everything the test wrote on it out of its socket: the daemon has
/// accepted the connection and read those bytes. Read from the kernel's
/// socket table (`/proc/net/tcp`, `tcp6`): the server's socket is the one
/// whose local port is our peer's and whose remote port is ours.
pub async fn read_by_server(s: &tokio::net::TcpStream) {
    let (ours, theirs) = (s.local_addr().unwrap().port(), s.peer_addr().unwrap().port());
    let (local, remote) = (format!(":{theirs:04X}"), format!(":{ours:04X}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let unread = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|table| {
                table
                    .lines()
                    .skip(1)
                    .filter_map(|line| {
                        let f: Vec<&str> = line.split_whitespace().collect();
                        let queues = f.get(4)?;
                        (f.get(1)?.ends_with(&local) && f.get(2)?.ends_with(&remote))
                            .then(|| u64::from_str_radix(queues.split(':').nth(1)?, 16).ok())
                            .flatten()
                    })
                    .collect::<Vec<_>>()
            })
            .next();
        if unread == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server has not read what was sent within 10 s (unread: {unread:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A callback to route `t` (token `tok`) over HTTP/1.1 with only the first
/// half of `body` sent: the open connection and the half still to send
/// (a request in flight across whatever the test does meanwhile).
pub async fn half_sent_callback(addr: SocketAddr, body: &str) -> (tokio::net::TcpStream, String) {
    let (head, tail) = body.split_at(body.len() / 2);
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!(
            "POST /hooks/t?token=tok HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    (c, tail.to_string())
}

/// Sends the rest of a `half_sent_callback` and reads its whole answer
/// (status line, headers and the `content-length` body), however many
/// reads it takes.
pub async fn finish_half_sent(mut c: tokio::net::TcpStream, tail: &str) -> String {
    c.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut chunk))
            .await
            .expect("the relay answers")
            .unwrap();
        if n == 0 {
            return String::from_utf8_lossy(&answer).to_string();
        }
        answer.extend_from_slice(&chunk[..n]);
    }
}
