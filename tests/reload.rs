//! Reload (SIGHUP or `Handle::reload`) keeps every promise while the config
//! changes: a broken file is refused and the old config keeps serving; routes,
//! subscribers, the certificate, connection limits, timeouts, HTTP/2 streams
//! and shutdown grace apply without dropping open connections; what needs a
//! restart is named; systemd is told (sd_notify, watchdog) and JSON logs stay
//! JSON. The certificate's, the media archive's and a FIFO config's cases
//! are in `reload_certificates`, `reload_media` and `reload_fifo`.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_reload_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let base = TestConfig::new(dir.path())
        .log_format("json")
        .subscriber(Subscriber::new("s", DOWN));
    let cfg_path = base.write();
    let bin = Bin::start(
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
    base.clone().edit_route("t", |r| r.allow_ips(["nonsense"])).write();
    bin.signal("HUP");
    let r = recv(&mut buf);
    assert!(r.contains("RELOADING=1") && r.contains("MONOTONIC_USEC="), "{r}");
    assert!(recv(&mut buf).contains("READY=1"));
    assert_eq!(callback(bin.addr, &runway("after-bad-reload")).await.0, StatusCode::OK);
    // A good config with a new route applies.
    base.clone().edit_route("t", |r| r.path("/hooks/new")).write();
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
    let (status, bin) = bin.exit().await;
    assert!(status.success());
    let log = bin.log_text();
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
    let old_cert = TestCert::write(dir.path(), "tls");
    let a = Sub::always(Behaviour::Status(500)).await;
    let b = Sub::ok().await;
    let base = TestConfig::new(dir.path()).tls(&old_cert.cert, &old_cert.key);
    let h = start(
        &base
            .clone()
            .subscriber(Subscriber::new("a", a.url()).retry([secs(3600)])),
    )
    .await;
    let addr = h.ingest_addrs[0];

    // A client that keeps one HTTPS connection open across the reload.
    let stream = tls_connect(addr, &old_cert.der, &[b"http/1.1"]).await.unwrap();
    let (mut conn, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(driver);
    let r = conn.send_request(callback_request("before")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let before: serde_json::Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    a.wait_for(Duration::from_secs(5), "a's first attempt", |r| !r.is_empty())
        .await;

    // New certificate at the same paths, subscriber a replaced by b.
    let new_cert = TestCert::write(dir.path(), "tls");
    let cfg_b = base.subscriber(Subscriber::new("b", b.url()));
    cfg_b.write();
    h.reload().await.expect("reload");

    // The open connection still works and its callback goes to b only.
    let r = conn
        .send_request(callback_request("after"))
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
    tls_connect(addr, &new_cert.der, &[b"http/1.1"])
        .await
        .expect("new certificate served");
    assert!(
        tls_connect(addr, &old_cert.der, &[b"http/1.1"]).await.is_err(),
        "old certificate still served"
    );

    // a's pending job is kept and reported, not deleted.
    let (_, subs) = admin(h.admin_addr, "GET", "/api/subscribers").await;
    let removed = row(&subs["subscribers"], "name", "a");
    assert_eq!(
        (removed["state"].as_str(), removed["queue_depth"].as_u64()),
        (Some("removed"), Some(1))
    );
    let ev = event_view(h.admin_addr, before["id"].as_str().unwrap()).await;
    assert_eq!(ev["subscribers"][0]["state"], "pending");

    // A broken file changes nothing.
    cfg_b
        .raw(|doc| doc["routes"][0]["tokens"] = toml::Value::Integer(5))
        .write();
    let err = h.reload().await.unwrap_err().to_string();
    assert!(err.contains("routes[0].tokens"), "{err}");
    let r = conn.send_request(callback_request("still")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn reload_applies_connection_limits_timeouts_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let h = start(&base.clone().read_timeout(secs(10)).max_connections(1)).await;
    let addr = h.ingest_addrs[0];
    base.read_timeout(secs(2))
        .max_connections(3)
        .http2_max_streams(1)
        .write();
    h.reload().await.expect("reload");

    // max_connections: two silent connections no longer lock out a callback
    // (from two other addresses: one client may hold only a quarter).
    let silent: Vec<_> = vec![
        connect_from(addr, [127, 0, 0, 2].into()).await,
        connect_from(addr, [127, 0, 0, 3].into()).await,
    ];
    // With the old cap (1; a slot is taken before a connection is accepted)
    // the callback would wait for both silent ones to be cut, one after the
    // other: 2 s each at the least. 3.5 s tells the two apart and leaves a
    // loaded machine time to answer (1.8 s was 0.2 s short of the first cut).
    let (s, _) = tokio::time::timeout(Duration::from_millis(3500), callback(addr, &runway("cap")))
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

/// What is read once at start-up (the store's settings, the log's) is not
/// applied by a reload: each setting changed is named in a warning, the rest
/// of the file applies, and the daemon keeps serving.
#[tokio::test]
async fn a_reload_names_each_setting_that_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start(&base.write(), &[]);
    base.clone()
        .store_cache(4 << 20)
        .min_free(128 << 20)
        .log_level("debug")
        .log_format("json")
        .edit_route("t", |r| r.path("/hooks/new"))
        .write();
    bin.signal("HUP");
    until_new_route_answers(&bin).await;
    // The warnings come before the new routes apply, but stderr is read by a
    // thread of its own: wait for the last one.
    log_until(|| bin.log_text(), "log.format changed", secs(10)).await;
    let log = bin.log_text();
    for key in ["store.cache", "store.min_free", "log.level", "log.format"] {
        assert!(
            log.contains(&format!("{key} changed; it takes effect after a restart")),
            "{key} not named: {log}"
        );
    }
    assert!(!log.contains("store.path changed"), "{log}");
    // Still the text format: log.format waits for the restart.
    assert!(!log.lines().any(|l| l.starts_with('{')), "{log}");
    // The same file again: still not in effect, so named again.
    let reloaded = |log: &str| log.matches("configuration reloaded").count();
    let named = |log: &str| log.matches("store.cache changed").count();
    bin.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloaded(&bin.log_text()) < 2 {
        assert!(Instant::now() < deadline, "second reload: {}", bin.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(named(&bin.log_text()), 2, "{}", bin.log_text());
    // The file put back as the daemon runs: nothing waits for a restart.
    base.write();
    bin.signal("HUP");
    while reloaded(&bin.log_text()) < 3 {
        assert!(Instant::now() < deadline, "third reload: {}", bin.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = bin.log_text();
    assert_eq!(named(&log), 2, "{log}");
    assert_eq!(log.matches("log.format changed").count(), 2, "{log}");
}

#[tokio::test]
async fn reload_applies_shutdown_grace() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path())
        .read_timeout(secs(5))
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&base.clone().shutdown_grace(secs(10))).await;
    let addr = h.ingest_addrs[0];
    base.shutdown_grace(ms(300)).write();
    h.reload().await.expect("reload");
    // A request in flight (its handler asked for the body: 100 Continue) that
    // would hold the shutdown for read_timeout.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /hooks/t?token=tok HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let answer = read_some(&mut s, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
    let t = Instant::now();
    h.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "shutdown took {:?}: shutdown_grace = 300ms not applied",
        t.elapsed()
    );
    drop(s);
}

/// A route's tokens are hashed once when the config is loaded: a reload
/// hashes the new ones, so the rotated token is honoured and the old one
/// refused at once.
#[tokio::test]
async fn a_reload_rotates_a_routes_token() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let h = start(&base.clone().edit_route("t", |r| r.tokens(["old-token"]))).await;
    let addr = h.ingest_addrs[0];
    let post_with = |token: &'static str, id: &'static str| async move {
        post(addr, &format!("/hooks/t?token={token}"), &[], runway(id)).await.0
    };
    assert_eq!(post_with("old-token", "1").await, StatusCode::OK);
    assert_eq!(post_with("new-token", "2").await, StatusCode::UNAUTHORIZED);
    base.edit_route("t", |r| r.tokens(["new-token"])).write();
    h.reload().await.expect("reload");
    assert_eq!(post_with("new-token", "3").await, StatusCode::OK, "the reloaded token");
    assert_eq!(
        post_with("old-token", "4").await,
        StatusCode::UNAUTHORIZED,
        "the old token"
    );
    h.shutdown().await;
}

/// Dedupe memory is per route name and key (review 35, findings 3 and 5): a
/// reload that renames a route (same path) or changes its dedupe key says in
/// a warning that retries of callbacks accepted before it will not be
/// recognised as duplicates (and, for a rename, that the old name's pending
/// deliveries stay parked under it). The provider's retry after the rename
/// is a new event, as the warning says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_renames_a_route_or_changes_its_dedupe_key_warns_that_dedupe_history_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let a = Sub::ok().await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("a", a.url()));
    let bin = Bin::start(&base.write(), &[]);
    let body = runway("r35-rename");
    let first = accepted(bin.addr, &body).await;
    a.wait_for(secs(10), "the first delivery", |r| r.len() == 1).await;

    let renamed = crate::moved_route::route_renamed(&base, "t_renamed");
    renamed.write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "route t renamed to t_renamed (same path)", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("renamed to t_renamed")).unwrap();
    for said in [
        "WARN",
        "starts a new dedupe history",
        "retries of callbacks accepted before this reload will not be recognised as duplicates",
        "deliveries still pending on t stay parked under that name",
    ] {
        assert!(line.contains(said), "{said:?} not in {line}");
    }
    // As warned: the provider's retry is a new event on the renamed route.
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    let (s, v) = callback(bin.addr, &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["duplicate"], false, "{v}");
    assert_ne!(v["id"].as_str(), Some(first.as_str()), "{v}");

    renamed
        .raw(|t| {
            let routes = t.get_mut("routes").and_then(|r| r.as_array_mut()).unwrap();
            routes[0]
                .as_table_mut()
                .unwrap()
                .insert("dedupe_key".into(), toml::Value::Array(vec!["/task_id".into()]));
        })
        .write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "the dedupe key changed", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("the dedupe key changed")).unwrap();
    assert!(
        line.contains("WARN") && line.contains("t_renamed") && line.contains("will not be recognised as duplicates"),
        "{line}"
    );
    // Once: the unchanged routes of a later reload are not named again.
    assert_eq!(log.matches("renamed to t_renamed").count(), 1, "{log}");
}

/// Wait (up to 10 s) until a reload that moved route `t` to `/hooks/new`
/// has applied: a callback there is taken.
/// A reload switching `store.compression` of the embedded store is
/// refused (sled cannot switch an existing store): before, it applied with
/// a warning that the switch takes effect after a restart, and that
/// restart was refused (exit 2, not restarted by the unit). The running
/// configuration stays; the same file without the switch applies.
#[tokio::test]
async fn a_reload_switching_the_stores_compression_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start(&base.write(), &[]);
    let switched = base.clone().edit_route("t", |r| r.path("/hooks/new"));
    compressed(switched.clone()).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "reload refused", secs(10)).await;
    let log = bin.log_text();
    assert!(
        log.contains("created with store.compression = false") && !log.contains("configuration reloaded"),
        "{log}"
    );
    assert_eq!(callback(bin.addr, &runway("still-old")).await.0, StatusCode::OK);
    assert_eq!(
        post(bin.addr, "/hooks/new?token=tok", &[], runway("new")).await.0,
        StatusCode::NOT_FOUND
    );
    // The refusal's advice taken: a new store at another path, compressed,
    // is what the next start opens; the reload applies.
    compressed(switched.store_path(&dir.path().join("data2"))).write();
    bin.signal("HUP");
    until_new_route_answers(&bin).await;
    assert!(bin.log_text().contains("store.path changed"), "{}", bin.log_text());
}

/// A reload turning ACME on over a state directory that is another
/// program's is refused, as the start it waits for would be (exit 2).
#[tokio::test]
async fn a_reload_turning_acme_on_over_a_foreign_state_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("acme")).unwrap();
    std::fs::write(dir.path().join("acme/certbot-account.json"), "{}").unwrap();
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start(&base.write(), &[]);
    base.clone()
        .edit_route("t", |r| r.path("/hooks/new"))
        .tls_acme(Acme::new(
            ["relay.example.com"],
            "ops@example.com",
            "https://127.0.0.1:9/dir",
        ))
        .write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "reload refused", secs(10)).await;
    let log = bin.log_text();
    assert!(log.contains("certbot-account.json"), "{log}");
    assert_eq!(callback(bin.addr, &runway("still-old")).await.0, StatusCode::OK);
}

/// A reload lowering `store.retention` says, at once, what the next sweep
/// removes for good (it applied with nothing logged: retention review,
/// stop 71); raising it says nothing.
#[tokio::test]
async fn a_reload_lowering_the_retention_says_what_the_next_sweep_removes() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start(&base.write(), &[]);
    let retention = |c: TestConfig, d: &'static str| {
        c.raw(move |t| {
            t["store"].as_table_mut().unwrap().insert("retention".into(), d.into());
        })
    };
    retention(base.clone().edit_route("t", |r| r.path("/hooks/new")), "1d").write();
    bin.signal("HUP");
    until_new_route_answers(&bin).await;
    log_until(|| bin.log_text(), "store.retention lowered", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("store.retention lowered")).unwrap();
    assert!(line.contains("14days") && line.contains("1day"), "{line}");
    retention(base, "30d").write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while bin.log_text().matches("configuration reloaded").count() < 2 {
        assert!(Instant::now() < deadline, "second reload: {}", bin.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bin.log_text().matches("store.retention lowered").count(), 1);
}

/// `c` with `store.compression = true`.
fn compressed(c: TestConfig) -> TestConfig {
    c.raw(|t| {
        t["store"]
            .as_table_mut()
            .unwrap()
            .insert("compression".into(), true.into());
    })
}

pub(crate) async fn until_new_route_answers(bin: &Bin) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(bin.addr, "/hooks/new?token=tok", &[], runway("new")).await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the reload never applied: {}",
            bin.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
