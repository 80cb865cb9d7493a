//! Reload (SIGHUP or `Handle::reload`) keeps every promise while the config
//! changes: a broken file is refused and the old config keeps serving; routes,
//! subscribers, the certificate, connection limits, timeouts, HTTP/2 streams
//! and shutdown grace apply without dropping open connections; the media
//! archive's settings apply to the next download; what needs a restart is
//! named; systemd is told (sd_notify, watchdog) and JSON logs stay JSON.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
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
        .raw(|t| {
            t["store"]
                .as_table_mut()
                .unwrap()
                .insert("compression".into(), true.into());
        })
        .edit_route("t", |r| r.path("/hooks/new"))
        .write();
    bin.signal("HUP");
    until_new_route_answers(&bin).await;
    // The warnings come before the new routes apply, but stderr is read by a
    // thread of its own: wait for the last one.
    log_until(|| bin.log_text(), "log.format changed", secs(10)).await;
    let log = bin.log_text();
    for key in [
        "store.cache",
        "store.min_free",
        "store.compression",
        "log.level",
        "log.format",
    ] {
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

#[tokio::test]
async fn a_reload_applies_the_media_settings() {
    let s = common::files::FileServer::start(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).await;
    let dir = tempfile::tempdir().unwrap();
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN));
    let cfg = media_config(dir.path(), Media::new()).route(route);
    let h = start(&cfg).await;
    let runway = |task: &str, url: &str| runway_media(task, url, "").to_string();
    let wait = Duration::from_secs(30);
    let first = s.bytes("/k/1.mp4", b"one", "video/mp4");
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &runway("1", &first)).await;
    assert_eq!(wait_final(h.admin_addr, &id, wait).await[0]["state"], "failed");
    // SIGHUP's path: the file changes, the daemon reloads it.
    cfg.media(Media::new().allow_private()).write();
    h.reload().await.expect("reload");
    let second = s.bytes("/k/2.mp4", b"two", "video/mp4");
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &runway("2", &second)).await;
    let m = &wait_final(h.admin_addr, &id, wait).await[0];
    assert_eq!(
        (m["state"].as_str(), m["sha256"].as_str()),
        (Some("stored"), Some(common::files::sha256_hex(b"two").as_str()))
    );
    h.shutdown().await;
}

/// A certificate swapped under the same file names is named in the log when
/// a reload reads it (its names, serial and days left), so an operator sees
/// which one is served.
#[tokio::test]
async fn a_reload_logs_the_certificate_it_read() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    let cfg = tls_config(dir.path());
    let bin = Bin::start(&cfg.write(), &[]);
    let new = TestCert::write(dir.path(), "tls");
    bin.signal("HUP");
    log_until(|| bin.log_text(), "certificate files read again", secs(10)).await;
    let line = bin
        .log_text()
        .lines()
        .find(|l| l.contains("certificate files read again"))
        .unwrap()
        .to_string();
    let serial = hookrelay::tls::CertInfo::from_der(&new.der).unwrap().serial;
    assert!(line.contains(&serial) && line.contains("days_left"), "{line}");
}

/// A SIGHUP that would replace the valid certificate with an expired one
/// (a deploy hook that copied the wrong file) keeps the running one: a
/// reload that cannot be applied changes nothing, and the refusal names the
/// file and when it expired. From review 23, finding 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_a_valid_certificate_rather_than_serve_an_expired_one() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    let cfg = tls_config(dir.path());
    let h = start(&cfg).await;
    assert_eq!(h.app.certificate_problem(), None);
    // Same file names, a certificate that expired in 2025.
    TestCert::write_until(dir.path(), "tls", 2025, 1);
    let reloaded = h.reload().await.map_err(|e| e.to_string());
    let problem = h.app.certificate_problem();
    // The refusal is shown where a refused reload is: status and metrics.
    let (_, status) = admin(h.admin_addr, "GET", "/api/status").await;
    let refusals = sample(&metrics(h.admin_addr).await, "hookrelay_reload_failures_total");
    let url = format!("http://{}", h.admin_addr);
    let (_, shown, _) = cli_async(vec!["status".into(), "--admin".into(), url]).await;
    h.shutdown().await;
    assert_eq!(
        problem, None,
        "the reload ({reloaded:?}) put an expired certificate in place of a valid one"
    );
    let why = reloaded.expect_err("the reload is refused");
    assert!(why.contains("tls.crt") && why.contains("expired at 2025-"), "{why}");
    let last = &status["last_reload"];
    assert_eq!(
        (last["applied"].as_bool(), last["refused_because"].as_str()),
        (Some(false), Some(why.as_str())),
        "{status}"
    );
    assert_eq!(refusals, 1.0);
    assert!(
        shown.contains("last reload: REFUSED") && shown.contains("expired at 2025-"),
        "{shown}"
    );
}

/// A reload that moves the media store says what happens to the files
/// archived before: they stay in the old store, neither served nor swept.
#[tokio::test]
async fn a_reload_that_moves_the_media_store_names_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("media-a"), dir.path().join("media-b"));
    let cfg = media_config(dir.path(), Media::new().dir(&old));
    let bin = Bin::start(&cfg.clone().write(), &[]);
    // Other media settings, the same store (min_free is the store's setting
    // too, not where it is): nothing said about moved files.
    cfg.clone()
        .media(Media::new().dir(&old).allow_private().min_free(1))
        .write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    assert!(!bin.log_text().contains("media.store changed"), "{}", bin.log_text());
    cfg.media(Media::new().dir(&new)).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "media.store changed", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("media.store changed")).unwrap();
    assert!(
        line.contains("media-a") && line.contains("media-b") && line.contains("neither served nor deleted"),
        "{line}"
    );
}

/// A restart with another media store is noticed like a reload that moves
/// it: the relay remembers (under `store.path`) where it archived last.
#[tokio::test]
async fn a_restart_with_another_media_store_names_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("media-a"), dir.path().join("media-b"));
    let cfg = |m: &Path| {
        media_config(dir.path(), Media::new().dir(m))
            .route(preset_route("m", "kie-runway").subscriber(Subscriber::new("m-idle", DOWN)))
    };
    let changed = "media.store changed since the last start";
    for (store, warned) in [(&old, false), (&old, false), (&new, true), (&new, false)] {
        let mut bin = Bin::start(&cfg(store).write(), &[]);
        // Logged after the media store is known.
        log_until(|| bin.log_text(), "admin API listening", secs(10)).await;
        let log = bin.log_text();
        bin.kill9();
        let line = log.lines().find(|l| l.contains(changed));
        assert_eq!(line.is_some(), warned, "{store:?}: {log}");
        if let Some(line) = line {
            assert!(
                line.contains("media-a") && line.contains("media-b") && line.contains("neither served nor deleted"),
                "{line}"
            );
        }
    }
}

/// A reload that moved the media store is what the next start compares
/// with: a restart with the store the reload chose says nothing.
#[tokio::test]
async fn a_restart_after_a_reload_that_moved_the_media_store_compares_with_the_reloaded_one() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("media-a"), dir.path().join("media-b"));
    let cfg = |m: &Path| {
        media_config(dir.path(), Media::new().dir(m))
            .route(preset_route("m", "kie-runway").subscriber(Subscriber::new("m-idle", DOWN)))
    };
    let mut bin = Bin::start(&cfg(&old).write(), &[]);
    log_until(|| bin.log_text(), "admin API listening", secs(10)).await;
    cfg(&new).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    bin.kill9();
    let bin = Bin::start(&cfg(&new).write(), &[]);
    log_until(|| bin.log_text(), "admin API listening", secs(10)).await;
    assert!(!bin.log_text().contains("media.store changed"), "{}", bin.log_text());
}

/// A relay whose served certificate file has expired (the renewal failed,
/// or under the unit the credential copy of the start is stale) still
/// applies a reload that leaves that certificate alone: here the operator
/// locks down the admin API with a token. Refusing would protect nothing (the
/// expired certificate is served either way); the problem stays reported.
/// From review 26, finding 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_leaves_the_served_expired_certificate_alone_applies_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write_until(dir.path(), "tls", 2025, 1);
    let cfg = tls_config(dir.path());
    let h = start(&cfg).await;
    let before = h.app.certificate_problem();
    // Same certificate files; only the admin token is new.
    cfg.clone().admin_token("locked-down-now").write();
    let reloaded = h.reload().await.map_err(|e| e.to_string());
    let token_applied = h.app.live().config.admin.token.is_some();
    let still_served = h.app.certificate_problem();
    h.shutdown().await;
    assert!(before.is_some(), "the relay started serving the expired certificate");
    assert_eq!(before, still_served, "the served certificate is the same either way");
    assert!(
        reloaded.is_ok() && token_applied,
        "a reload that only sets admin.token was refused because the (unchanged, already served) \
         certificate is expired: {reloaded:?}; admin.token applied: {token_applied}"
    );
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

/// A reload refused for an unrelated reason (here a bad allowlist saved
/// earlier) also keeps a renewed certificate from being served (review 35,
/// finding 4): the refusal's error line says that the certificate files
/// changed and were not applied, naming the new and the served serial.
#[tokio::test]
async fn a_refused_reload_says_that_the_changed_certificate_files_were_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::write(dir.path(), "tls");
    let cfg = tls_config(dir.path());
    let bin = Bin::start(&cfg.write(), &[]);
    let saved = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let (old_crt, old_key) = (saved("tls.crt"), saved("tls.key"));
    let new = TestCert::write(dir.path(), "tls");
    cfg.clone().edit_route("t", |r| r.allow_ips(["nonsense"])).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "reload refused", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    let serial = |c: &TestCert| hookrelay::tls::CertInfo::from_der(&c.der).unwrap().serial;
    for said in [
        "ERROR".to_string(),
        "routes[0].allow_ips[0]".to_string(),
        "the certificate files changed and were NOT applied".to_string(),
        format!("holds serial {}", serial(&new)),
        format!("old certificate (serial {}", serial(&old)),
    ] {
        assert!(line.contains(&said), "{said:?} not in {line}");
    }
    // Nothing changed on disk: a refusal says nothing about the certificate.
    std::fs::write(dir.path().join("tls.crt"), old_crt).unwrap();
    std::fs::write(dir.path().join("tls.key"), old_key).unwrap();
    bin.signal("HUP");
    second_reload_logs(&bin, "reload refused").await;
    let log = bin.log_text();
    assert_eq!(log.matches("NOT applied").count(), 1, "{log}");
}

/// A reload that swaps in a certificate for none of the names the served
/// one had (the wrong file linked) logs a warning naming both sets (review
/// 35, finding 6).
#[tokio::test]
async fn a_reload_warns_when_the_new_certificate_covers_none_of_the_served_names() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    let cfg = tls_config(dir.path());
    let bin = Bin::start(&cfg.write(), &[]);
    TestCert::write_for(dir.path(), "tls", &["other.example"]);
    bin.signal("HUP");
    log_until(|| bin.log_text(), "covers none of the names", secs(10)).await;
    let log = bin.log_text();
    let line = log.lines().find(|l| l.contains("covers none of the names")).unwrap();
    assert!(
        line.contains("WARN") && line.contains("localhost") && line.contains("other.example"),
        "{line}"
    );
    // The same names again: no warning.
    TestCert::write_for(dir.path(), "tls", &["other.example", "more.example"]);
    bin.signal("HUP");
    second_reload_logs(&bin, "certificate files read again").await;
    tokio::time::sleep(ms(200)).await;
    assert_eq!(bin.log_text().matches("covers none of the names").count(), 1);
}

/// A config serving the certificate files `tls.crt` and `tls.key` in `dir`,
/// its one subscriber down.
fn tls_config(dir: &Path) -> TestConfig {
    TestConfig::new(dir)
        .tls(&dir.join("tls.crt"), &dir.join("tls.key"))
        .subscriber(Subscriber::new("s", DOWN))
}

/// Wait (up to 10 s) until the log says `what` a second time: the second
/// reload was read.
async fn second_reload_logs(bin: &Bin, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while bin.log_text().matches(what).count() < 2 {
        assert!(Instant::now() < deadline, "second reload: {}", bin.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reload that changes `store.path` leaves what follows it with the store
/// in use until the restart: the media archive's default directory under
/// it, and the floor measured on its disk (the archive moved at once,
/// making the new directory; then its floor fell to `media.min_free` alone,
/// the new path being on no disk yet).
#[tokio::test]
async fn a_changed_store_path_keeps_the_default_media_directory_until_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .min_free(512 << 20)
        .raw(|t| {
            let mut media = toml::Table::new();
            media.insert("min_free".into(), "1MiB".into());
            t.insert("media".into(), media.into());
        });
    let bin = Bin::start(&base.write(), &[]);
    let (status, before) = admin(bin.admin, "GET", "/api/media").await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let moved = dir.path().join("moved-store");
    let path = moved.display().to_string();
    base.clone()
        .raw(move |t| {
            t["store"]
                .as_table_mut()
                .unwrap()
                .insert("path".into(), path.clone().into());
        })
        .edit_route("t", |r| r.path("/hooks/new"))
        .write();
    bin.signal("HUP");
    until_new_route_answers(&bin).await;
    let log = bin.log_text();
    assert!(
        log.contains("store.path changed; it takes effect after a restart"),
        "{log}"
    );
    assert!(!log.contains("media.store changed"), "{log}");
    assert!(!moved.exists(), "the new store path was used before the restart");
    let (_, after) = admin(bin.admin, "GET", "/api/media").await;
    assert_eq!(
        after["store"], before["store"],
        "the archive's directory or floor changed"
    );
}

/// A reload whose config file is a FIFO nobody writes to (or a stalled
/// mount) neither holds a stop nor the daemon: SIGTERM during it stops the
/// daemon within its bound (it waited for the FIFO, and SIGTERM with it).
#[tokio::test]
async fn sigterm_while_a_reload_reads_a_fifo_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, _) = reloading_a_fifo(dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(callback(bin.addr, &runway("during")).await.0, StatusCode::OK);
    let asked = Instant::now();
    bin.signal("TERM");
    let mut bin = bin;
    let status = loop {
        if let Some(status) = bin.child.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(15) {
            bin.child.kill().unwrap();
            panic!("the daemon did not stop within 15 s of SIGTERM: {}", bin.log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}: {}",
        asked.elapsed(),
        bin.log_text()
    );
    assert!(status.success(), "{status}: {}", bin.log_text());
}

/// Such a reload ends after 10 s, refused, saying why; the daemon keeps
/// its configuration and takes the next reload.
#[tokio::test]
async fn a_reload_reading_a_fifo_nobody_writes_to_is_refused_after_10_s() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, path) = reloading_a_fifo(dir.path());
    log_until(|| bin.log_text(), "took longer than 10 s", secs(20)).await;
    assert!(
        bin.log_text()
            .contains("reload refused, keeping the running configuration"),
        "{}",
        bin.log_text()
    );
    assert_eq!(callback(bin.addr, &runway("after")).await.0, StatusCode::OK);
    // The file back: the next reload applies. (The thread still blocked on
    // the FIFO is let go: opening it for writing ends its wait.)
    let _ = std::fs::OpenOptions::new().write(true).open(&path);
    std::fs::remove_file(&path).unwrap();
    TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
}

/// Wait (up to 10 s) until a reload that moved route `t` to `/hooks/new`
/// has applied: a callback there is taken.
async fn until_new_route_answers(bin: &Bin) {
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

/// A daemon started from its config file, which is then replaced by a FIFO
/// nobody writes to, and sent SIGHUP: its reload reads the FIFO.
fn reloading_a_fifo(dir: &std::path::Path) -> (Bin, std::path::PathBuf) {
    let path = TestConfig::new(dir).subscriber(Subscriber::new("s", DOWN)).write();
    let bin = Bin::start(&path, &[]);
    fifo_in_place_of(&path);
    bin.signal("HUP");
    (bin, path)
}

/// Replace the file at `path` by a FIFO.
fn fifo_in_place_of(path: &std::path::Path) {
    std::fs::remove_file(path).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success());
}

/// A SIGHUP while the daemon is still reading its config at start (here a
/// FIFO nobody writes to yet; a secret on a stalled mount alike) does not
/// end it: it ended with exit 129 and no log line (reload review, stop 61).
#[tokio::test]
async fn a_sighup_while_the_config_is_read_at_start_does_not_end_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .write();
    let text = std::fs::read_to_string(&path).unwrap();
    fifo_in_place_of(&path);
    let starting = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Bin::start(&path, &[]))
    };
    // The daemon waits for the FIFO's writer: SIGHUP it there, once its
    // runtime's threads exist (the handler is set up with them, before the
    // config is read; an exec not that far yet is no part of the test).
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &path.display().to_string()])
            .output()
            .unwrap();
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        if !pid.is_empty() && threads > 2 {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not get as far as reading its config"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success(), "no daemon reading {}", path.display());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The config arrives; the daemon starts (Bin::start panics if it exited).
    // Opened without waiting: a FIFO with no reader left (the daemon gone)
    // is an error, not a wait for ever.
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(&path)
        .unwrap_or_else(|e| panic!("the daemon no longer reads its config ({e}): SIGHUP ended it"));
    fifo.write_all(text.as_bytes()).unwrap();
    drop(fifo);
    let bin = starting.await.expect("the daemon started");
    assert_eq!(callback(bin.addr, &runway("after")).await.0, StatusCode::OK);
    // Its file back to a plain one: the SIGHUP's reload, or the next, applies.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &text).unwrap();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(20)).await;
}
