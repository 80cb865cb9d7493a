//! The admin listener against a browser turned hostile: cross-site replays
//! (CSRF) are refused while same-origin ones and the CLI's work; without a
//! token, a rebound host name is refused (DNS rebinding); the console is served
//! with headers that lock it down. Real daemon on port 0, raw HTTP requests so
//! the test sets `Host`, `Origin` and `Sec-Fetch-Site` exactly as a browser would.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// One HTTP/1.1 request with exactly these headers (and `Host`); the status,
/// the lower-cased header lines and the body.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let answer = raw(addr, req.as_bytes()).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}: {answer:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// Wait until the event's delivery to its one subscriber is recorded as
/// delivered: the subscriber counts a request when it arrives, the daemon
/// records the answer after, and a replay before that is `already_pending`
/// (nothing is sent again).
async fn delivered(admin_addr: SocketAddr, id: &str) {
    let view = admin_until(admin_addr, &format!("/api/events/{id}"), Duration::from_secs(10), |v| {
        v["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(view["subscribers"][0]["state"], "delivered", "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_replays_are_refused_same_origin_ones_go_through() {
    let (_dir, sub, h) = with_ok_subscriber().await;
    let a = h.admin_addr;
    let host = a.to_string();
    let id = accepted(h.ingest_addrs[0], &runway("csrf")).await;
    sub.wait_for(Duration::from_secs(5), "the delivery", |r| r.len() == 1)
        .await;
    delivered(a, &id).await;
    let replay = format!("/api/events/{id}/replay?subscriber=s");
    let other_port = format!("http://127.0.0.1:{}", a.port() + 1);
    let refused: [(u16, Vec<(&str, &str)>); 10] = [
        // What an HTML form can send.
        (415, vec![]),
        (415, vec![("content-type", "text/plain")]),
        (415, vec![("content-type", "application/x-www-form-urlencoded")]),
        (415, vec![("content-type", "multipart/form-data; boundary=x")]),
        // A cross-site fetch that got its content type through.
        (403, vec![JSON, ("sec-fetch-site", "cross-site")]),
        (403, vec![JSON, ("sec-fetch-site", "same-site")]),
        (403, vec![JSON, ("origin", "http://evil.example")]),
        (403, vec![JSON, ("origin", "null")]),
        (403, vec![JSON, ("origin", other_port.as_str())]),
        (
            403,
            vec![JSON, ("origin", "https://evil.example"), ("sec-fetch-site", "none")],
        ),
    ];
    for (want, headers) in &refused {
        let (status, _, body) = send(a, "POST", &replay, &host, headers).await;
        assert_eq!(status, *want, "{headers:?}: {body}");
    }
    // The dead-letter replay is guarded the same way.
    let (status, _, _) = send(
        a,
        "POST",
        "/api/dead-letters/replay",
        &host,
        &[("sec-fetch-site", "cross-site"), JSON],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(sub.count(), 1, "a refused replay was delivered");
    // The console's own request: same origin, JSON.
    let origin = format!("http://{host}");
    let same = [JSON, ("origin", origin.as_str()), ("sec-fetch-site", "same-origin")];
    let (status, _, body) = send(a, "POST", &replay, &host, &same).await;
    assert_eq!(status, 200, "{body}");
    sub.wait_for(Duration::from_secs(5), "the replay", |r| r.len() == 2)
        .await;
    delivered(a, &id).await;
    // A client that is not a browser (the CLI): no Origin, no Sec-Fetch-Site.
    let (status, _, body) = send(a, "POST", &replay, &host, &[JSON]).await;
    assert_eq!(status, 200, "{body}");
    sub.wait_for(Duration::from_secs(5), "the second replay", |r| r.len() == 3)
        .await;
    // Reading stays open to any client (a cross-site page cannot read the answer).
    let (status, _, _) = send(a, "GET", "/api/events", &host, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(status, 200);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_rebound_host_name_is_refused() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let a = h.admin_addr;
    let port = a.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("localhost.evil.example:{port}"),
    ] {
        for path in ["/api/events", "/api/subscribers", "/metrics", "/ui", "/ui/app.js"] {
            let (status, _, body) = send(a, "GET", path, &host, &[]).await;
            assert_eq!(status, 403, "{host} {path}: {body}");
            assert!(body.contains("DNS rebinding"), "{body}");
        }
    }
    for host in [
        a.to_string(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".into(),
    ] {
        let (status, _, body) = send(a, "GET", "/api/events", &host, &[]).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    // Health checks answer whatever the name (load balancers use names).
    let (status, _, _) = send(a, "GET", "/healthz", "evil.example", &[]).await;
    assert_eq!(status, 200);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_host_names_work_and_the_token_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .admin_token("guard-admin-token")
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let a = h.admin_addr;
    let bearer = [("authorization", "Bearer guard-admin-token")];
    let (status, _, body) = send(a, "GET", "/api/events", "relay.example.net", &bearer).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = send(a, "GET", "/api/events", "relay.example.net", &[]).await;
    assert_eq!(status, 401);
    // The console asks for the token itself: its files need none.
    let (status, _, _) = send(a, "GET", "/ui", "relay.example.net", &[]).await;
    assert_eq!(status, 200);
    // The token does not make a cross-site replay acceptable.
    let cross = [bearer[0], JSON, ("origin", "http://evil.example")];
    let (status, _, _) = send(a, "POST", "/api/dead-letters/replay", "relay.example.net", &cross).await;
    assert_eq!(status, 403);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_locked_down() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let a = h.admin_addr;
    let host = a.to_string();
    let (status, headers, page) = send(a, "GET", "/ui", &host, &[]).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").starts_with("text/html"), "{headers:?}");
    let csp = header(&headers, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ] {
        assert!(csp.contains(directive), "CSP {csp:?} lacks {directive}");
    }
    assert!(!csp.contains("unsafe"), "CSP allows inline code: {csp}");
    // No inline script: every <script> names its file.
    let scripts: Vec<&str> = page.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "{page}");
    assert!(
        scripts
            .iter()
            .all(|s| s.trim_start().starts_with("type=\"module\" src=\"/ui/")),
        "{page}"
    );
    assert_eq!(send(a, "GET", "/ui/", &host, &[]).await.2, page);
    let mut files = vec![("/ui/style.css", "text/css")];
    files.extend(["/ui/app.js", "/ui/dom.js", "/ui/indent.js", "/ui/pages.js"].map(|f| (f, "text/javascript")));
    for (path, kind) in files {
        let (status, headers, body) = send(a, "GET", path, &host, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&headers, "content-type").starts_with(kind),
            "{path}: {headers:?}"
        );
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads from elsewhere"
        );
    }
    assert_eq!(send(a, "GET", "/ui/nothing.js", &host, &[]).await.0, 404);
    assert_eq!(send(a, "POST", "/ui", &host, &[JSON]).await.0, 405);
    // Every admin answer, console or API, refuses framing, sniffing, referrers
    // and embedding by another site's page.
    for path in ["/ui", "/ui/app.js", "/api/events", "/api/nothing"] {
        let (_, headers, _) = send(a, "GET", path, &host, &[]).await;
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&headers, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&headers, "referrer-policy"), "no-referrer", "{path}");
        assert_eq!(
            header(&headers, "cross-origin-resource-policy"),
            "same-origin",
            "{path}"
        );
        assert_eq!(header(&headers, "cross-origin-opener-policy"), "same-origin", "{path}");
        assert!(
            header(&headers, "content-security-policy").contains("frame-ancestors 'none'"),
            "{path}"
        );
    }
    h.shutdown().await;
}

/// Behind a TLS-terminating reverse proxy (`https://admin.example.com` →
/// the admin listener, `admin.token` set) the console's own replay is
/// same-origin: the browser sends `Origin: https://admin.example.com` and
/// the proxy `Host: admin.example.com` (port 443 on both sides). It goes
/// through; cross-site ones, and pages on another port, are still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_an_https_reverse_proxy_the_consoles_replay_works_and_cross_site_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .admin_token("proxy-admin-token")
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("behind-proxy")).await;
    sub.wait_for(secs(10), "the delivery", |r| r.len() == 1).await;
    let a = h.admin_addr;
    let host = "admin.example.com";
    let bearer = ("authorization", "Bearer proxy-admin-token");
    let path = format!("/api/events/{id}/replay");
    // The proxy passes Host on and says the browser came over https.
    let proto = ("x-forwarded-proto", "https");
    // What Chromium sends for the console's fetch on https://admin.example.com/ui.
    let console = [
        bearer,
        JSON,
        proto,
        ("origin", "https://admin.example.com"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
    ];
    let (status, _, body) = send(a, "POST", &path, host, &console).await;
    assert_eq!(
        status, 200,
        "the console's own replay over the proxy's https was refused: {body}"
    );
    for (origin, site) in [
        ("https://evil.example", Some("cross-site")),
        ("https://evil.example", None),
        ("https://admin.example.com:8443", Some("same-site")),
        ("https://admin.example.com:8443", None),
        ("http://admin.example.com:8080", None),
        ("http://admin.example.com", Some("same-site")),
        ("http://admin.example.com", None),
    ] {
        let mut headers = vec![bearer, JSON, proto, ("origin", origin)];
        headers.extend(site.map(|s| ("sec-fetch-site", s)));
        let (status, _, body) = send(a, "POST", &path, host, &headers).await;
        assert_eq!(status, 403, "{origin} ({site:?}) was not refused: {body}");
        assert!(body.contains("cross-site request refused"), "{body}");
    }
    h.shutdown().await;
}

/// A `Host` without a port is one request on one port, of one scheme: http
/// on 80 (the listener's own), or https on 443 only when a TLS-terminating
/// proxy says `X-Forwarded-Proto: https`. Without `Sec-Fetch-Site` (a browser
/// without Fetch Metadata) a page of the other scheme on the same host is
/// another origin and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portless_host_matches_the_origin_of_one_scheme_only() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .admin_token("r32-token")
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("r32-guard")).await;
    sub.wait_for(secs(10), "the delivery", |r| r.len() == 1).await;
    let path = format!("/api/events/{id}/replay");
    let host = "admin.example.com";
    let bearer = ("authorization", "Bearer r32-token");
    let mut accepted_origins = Vec::new();
    for origin in ["http://admin.example.com", "https://admin.example.com"] {
        // No Sec-Fetch-Site: a browser without Fetch Metadata (older Safari, embedded webviews).
        let (status, _, body) = send(h.admin_addr, "POST", &path, host, &[bearer, JSON, ("origin", origin)]).await;
        if status != 403 {
            accepted_origins.push(origin);
        } else {
            assert!(body.contains("cross-site"), "{body}");
        }
        tokio::time::sleep(ms(300)).await;
    }
    h.shutdown().await;
    assert_eq!(
        accepted_origins,
        ["http://admin.example.com"],
        "a portless Host without X-Forwarded-Proto is http on port 80, and only that origin matches"
    );
}

/// No admin answer may be kept by a browser's cache or a proxy in front:
/// an event's answer holds its callback's body (signed URLs in it), the
/// lists and errors what callbacks sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_answer_is_cached() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let (ingest, a) = (h.ingest_addrs[0], h.admin_addr);
    let id = accepted(ingest, &runway("cache-1")).await;
    let host = a.to_string();
    let event = format!("/api/events/{id}");
    for path in [
        event.as_str(),
        "/api/events",
        "/api/dead-letters",
        "/api/subscribers",
        "/api/status",
        "/api/events/not-an-id",
        "/api/nothing",
        "/metrics",
        "/ui",
        "/ui/app.js",
    ] {
        for method in ["GET", "HEAD"] {
            let (status, headers, _) = send(a, method, path, &host, &[]).await;
            assert!(status < 500, "{method} {path}: {status}");
            assert_eq!(
                header(&headers, "cache-control"),
                "no-store",
                "{method} {path}: {headers:?}"
            );
        }
    }
    h.shutdown().await;
}
