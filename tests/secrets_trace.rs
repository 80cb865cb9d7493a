//! Promise 5 at the most verbose log level: with `log.level = "trace"` (every
//! library's lines too) and every kind of secret in one config — route
//! tokens (query and Bearer), a subscriber's signing secret and secret
//! headers, credentials and a `?code=` in a subscriber URL, the admin token,
//! a pull token, a provider API key and a route's signature secret — no
//! secret, nor its percent-encoded or base64 form, appears in the relay's
//! log, the forwarder's log, an admin API answer or the CLI's output, across
//! callbacks (accepted, refused, duplicate; HTTP/1.1 and cleartext HTTP/2),
//! deliveries (ok, 500, retried, dead letter, replayed), pull + ack, the
//! provider's signed callbacks, the submit proxy, and a SIGHUP reload; and
//! in cluster mode, where the NATS client's trace lines carry its CONNECT
//! (the NATS password: async-nats shows it as `XXXXXXXX`).

use crate::common;

use std::net::SocketAddr;

use base64::Engine;
use bytes::Bytes;
use common::provider::{FakeOptions, FakeProvider};
use common::tasks::{task_route, tasks_config};
use common::*;
use http::StatusCode;
use serde_json::Value;

const ROUTE_TOKEN: &str = "RTOKENq7ZsecretA";
const ADMIN_TOKEN: &str = "ADMINTOKENk2Wsecret";
const PULL_TOKEN: &str = "PULLTOKENx9Vsecret";
const PROVIDER_KEY: &str = "PROVIDERKEYm4Tsecret";
const SIGNATURE_SECRET: &str = "SIGSECRETh8Rkie";
const HEADER_SECRET: &str = "HEADERSECRETn3Pvalue";
const URL_USER: &str = "URLUSERj5L";
/// Written percent-encoded in the URL (`%40` for `@`).
const URL_PASSWORD: &str = "URLPASSw1@rdZ";
const URL_CODE: &str = "URLCODEc6Ysecret";
/// The signing key's bytes; the secret is `whsec_` + their base64.
const SIGNING_KEY: &[u8] = b"SIGNINGKEYbytes-for-the-sub-32b!";
const NATS_PASSWORD: &str = "NATSPASSWORDf2Gsecret";

/// An admin API call with `token` as Bearer (none when `None`).
async fn admin_as(addr: SocketAddr, token: Option<&str>, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let (s, _, b) = request(addr, None, method, path, &headers, Bytes::from(body.to_string())).await;
    (s, String::from_utf8_lossy(&b).into_owned())
}

/// POST `body` to `path` over cleartext HTTP/2 (prior knowledge), with
/// `auth` as the authorization header when given; the status.
async fn h2c_post(addr: SocketAddr, path: &str, auth: Option<&str>, body: &str) -> StatusCode {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = http::Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send.send_request(req).await.expect("h2c answer").status()
}

/// Every form of every secret that must not be shown.
fn forbidden() -> Vec<String> {
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let signing = b64(SIGNING_KEY);
    let mut all: Vec<String> = vec![];
    for s in [
        ROUTE_TOKEN,
        ADMIN_TOKEN,
        PULL_TOKEN,
        PROVIDER_KEY,
        SIGNATURE_SECRET,
        HEADER_SECRET,
        URL_USER,
        URL_CODE,
        NATS_PASSWORD,
    ] {
        all.push(s.into());
        all.push(b64(s.as_bytes()));
    }
    all.push(URL_PASSWORD.into());
    all.push(URL_PASSWORD.replace('@', "%40"));
    all.push(b64(format!("{URL_USER}:{URL_PASSWORD}").as_bytes()));
    all.push(signing.clone());
    all.push(signing.trim_end_matches('=').into());
    all.push(String::from_utf8(SIGNING_KEY.to_vec()).unwrap());
    all
}

fn assert_nothing_shown(what: &str, text: &str) {
    for secret in forbidden() {
        if let Some(at) = text.find(&secret) {
            let line = text[..at].rsplit('\n').next().unwrap_or("");
            let rest = text[at..].split('\n').next().unwrap_or("");
            panic!("{secret:?} shown in {what}: {line}{rest}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_shown_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeProvider::start(FakeOptions {
        api_key: PROVIDER_KEY.into(),
        hmac_key: Some(SIGNATURE_SECRET.into()),
        ..FakeOptions::default()
    })
    .await;
    let ok = Sub::ok().await;
    let failing = Sub::always(Behaviour::Status(500)).await;
    let signing = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SIGNING_KEY)
    );
    let password = URL_PASSWORD.replace('@', "%40");
    let ok_url = format!("http://{URL_USER}:{password}@{}/cb?code={URL_CODE}", ok.addr);
    let t = Route::new("t", "/hooks/t")
        .tokens([ROUTE_TOKEN])
        .dedupe_key(["/data/task_id", "/code"])
        .subscriber(
            Subscriber::new("ok", ok_url)
                .secret(signing.as_str())
                .header("x-api-key", HEADER_SECRET),
        )
        .subscriber(
            Subscriber::new("failing", format!("{}?code={URL_CODE}", failing.url()))
                .secret(signing.as_str())
                .header("x-api-key", HEADER_SECRET)
                .retry([ms(50)]),
        )
        .subscriber(Subscriber::pull("puller", PULL_TOKEN));
    let task_sub = Sub::ok().await;
    let runway_route = task_route("runway", "kie-runway", &fake, &task_sub.url())
        .signature(Signature::kie(SIGNATURE_SECRET))
        .verify("fetch");
    let (cfg, addr) = tasks_config(dir.path(), vec![runway_route, t]);
    let cfg_path = cfg.admin_token(ADMIN_TOKEN).log_level("trace,hookrelay=trace").write();
    // An empty RUST_LOG leaves the configured level in force.
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "")]);
    assert_eq!(bin.addr, addr);
    let mut shown = String::new();

    // Callbacks: token in the query and as Bearer, a wrong one, a duplicate.
    let q = format!("/hooks/t?token={ROUTE_TOKEN}");
    let (s, _, b) = post(addr, &q, &[], runway("one")).await;
    assert_eq!(s, StatusCode::OK);
    let one: Value = serde_json::from_slice(&b).unwrap();
    let one = one["id"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {ROUTE_TOKEN}");
    let (s, _, _) = post(addr, "/hooks/t", &[("authorization", &bearer)], runway("two")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = post(addr, &q, &[], runway("one")).await;
    assert_eq!(s, StatusCode::OK, "a duplicate is acknowledged");
    shown.push_str(&String::from_utf8_lossy(&b));
    for path in [format!("{q}-wrong"), format!("/hooks/t?token=x{ROUTE_TOKEN}")] {
        let (s, _, b) = post(addr, &path, &[], runway("three")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        shown.push_str(&String::from_utf8_lossy(&b));
    }
    // Over HTTP/2 (cleartext, prior knowledge): h2's own trace lines.
    assert_eq!(h2c_post(addr, &q, None, &runway("h2-query")).await, StatusCode::OK);
    assert_eq!(
        h2c_post(addr, "/hooks/t", Some(&bearer), &runway("h2-bearer")).await,
        StatusCode::OK
    );
    let wrong_bearer = format!("Bearer {ROUTE_TOKEN}0");
    let (s, _, _) = post(addr, "/hooks/t", &[("authorization", &wrong_bearer)], runway("four")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Delivered (with Basic auth, the header and the query), and dead-lettered.
    let got = ok.wait_for(secs(10), "four deliveries", |r| r.len() >= 4).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{URL_USER}:{URL_PASSWORD}"));
    assert_eq!(got[0].header("authorization"), format!("Basic {basic}"));
    assert_eq!(got[0].header("x-api-key"), HEADER_SECRET);
    failing
        .wait_for(secs(10), "first try and retry of all four", |r| r.len() >= 8)
        .await;

    // Pull: a wrong token, then the forwarder (at trace level) pulls and acks.
    let (s, _, v) = pull_call(addr, "GET", "/pull/puller", Some("nope"), Some("f1"), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    shown.push_str(&v.to_string());
    let local = Local::ok().await;
    let mut fwd = Forwarder::start_logging(
        dir.path(),
        &pull_url(addr, "puller"),
        &local.url(),
        PULL_TOKEN,
        &[],
        "trace",
    );
    local.wait_for(secs(10), "all four pulled", |g| g.len() >= 4).await;

    // The provider: a task submitted through the admin API (the key goes to
    // the fake), its signed callbacks verified against the fake's record.
    let submit = "/api/routes/runway/submit?endpoint=/api/v1/runway/generate";
    let (s, a) = admin_as(bin.admin, Some(ADMIN_TOKEN), "POST", submit, r#"{"prompt":"a cat"}"#).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    shown.push_str(&a);
    let task: Value = serde_json::from_str(&a).unwrap();
    let task = task["data"]["taskId"].as_str().unwrap().to_string();
    fake.wait_until("the final callback", secs(20), |f| {
        f.callbacks(&task).iter().any(|c| c.kind == "final" && c.delivered())
    })
    .await;

    // The admin API: refused without or with a wrong token; with it, every listing.
    for token in [None, Some("wrong"), Some(&format!("{ADMIN_TOKEN}x")[..])] {
        let (s, a) = admin_as(bin.admin, token, "GET", "/api/status", "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{a}");
        shown.push_str(&a);
    }
    let deadline = std::time::Instant::now() + secs(20);
    let dead = loop {
        let (_, a) = admin_as(bin.admin, Some(ADMIN_TOKEN), "GET", "/api/dead-letters", "").await;
        if a.matches("failing").count() >= 4 {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "not all dead yet: {a}");
        tokio::time::sleep(ms(20)).await;
    };
    shown.push_str(&dead);
    let replay = format!("/api/events/{one}/replay");
    let (s, a) = admin_as(bin.admin, Some(ADMIN_TOKEN), "POST", &replay, "").await;
    assert!(s.is_success(), "{s} {a}");
    shown.push_str(&a);
    let (s, a) = admin_as(bin.admin, Some(ADMIN_TOKEN), "POST", "/api/dead-letters/replay", "").await;
    assert!(s.is_success(), "{s} {a}");
    shown.push_str(&a);
    ok.wait_for(secs(10), "the replay", |r| r.len() >= 5).await;
    for path in [
        "/api/status".to_string(),
        "/api/events".into(),
        format!("/api/events/{one}"),
        "/api/subscribers".into(),
        "/api/tasks".into(),
        format!("/api/tasks/{task}"),
        "/api/media".into(),
        "/metrics".into(),
    ] {
        let (s, a) = admin_as(bin.admin, Some(ADMIN_TOKEN), "GET", &path, "").await;
        assert_eq!(s, StatusCode::OK, "{path}: {a}");
        shown.push_str(&a);
    }

    // The CLI, its token from the config file; and a wrong one.
    let admin_url = format!("http://{}", bin.admin);
    let cfg_s = cfg_path.to_str().unwrap().to_string();
    for cmd in [
        &["status"][..],
        &["events"],
        &["event", &one],
        &["dead-letters"],
        &["subscribers"],
        &["tasks"],
        &["tasks", &task],
        &["check-config"],
    ] {
        let (done, out, err) = admin_cli(&cfg_s, &admin_url, cmd).await;
        assert!(done, "{cmd:?}: {err}");
        shown.push_str(&format!("{out}\n{err}\n"));
    }
    let args = ["--admin", &admin_url, "--token", "wrong", "status"]
        .map(String::from)
        .to_vec();
    let (done, out, err) = cli_async(args).await;
    assert!(!done);
    shown.push_str(&format!("{out}\n{err}\n"));

    // A reload, then one more callback through it.
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    let (s, _, _) = post(addr, &q, &[], runway("five")).await;
    assert_eq!(s, StatusCode::OK);
    local
        .wait_for(secs(10), "pulled after the reload", |g| g.len() >= 6)
        .await;

    assert_eq!(fwd.term(secs(10)), Some(0));
    bin.signal("TERM");
    let (_, bin) = bin.exit().await;
    let log = bin.log_text();
    // Trace level was in force: the libraries' lines are there.
    assert!(log.contains("TRACE"), "not at trace level");
    assert!(fwd.log_text().contains("TRACE"), "the forwarder not at trace level");
    assert_nothing_shown("an answer or the CLI", &shown);
    assert_nothing_shown("the forwarder's log", &fwd.log_text());
    assert_nothing_shown("the relay's log", &log);
}

/// Cluster mode at trace level: the NATS client's own lines (its CONNECT
/// carries the password) and the store's, with a callback, a delivery with
/// the subscriber's secrets, a pull, the admin API and a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_shown_at_trace_level_in_cluster_mode() {
    let users = format!("authorization {{ users: [{{user: hookrelay, password: {NATS_PASSWORD}}}] }}");
    let nats = common::nats::NatsCluster::start_with(1, &users).await;
    let dir = tempfile::tempdir().unwrap();
    let ok = Sub::ok().await;
    let password = URL_PASSWORD.replace('@', "%40");
    let ok_url = format!("http://{URL_USER}:{password}@{}/cb?code={URL_CODE}", ok.addr);
    let signing = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SIGNING_KEY)
    );
    let path = TestConfig::new(dir.path())
        .edit_route("t", |r| {
            r.tokens([ROUTE_TOKEN])
                .subscriber(
                    Subscriber::new("ok", ok_url)
                        .secret(signing.as_str())
                        .header("x-api-key", HEADER_SECRET),
                )
                .subscriber(Subscriber::pull("puller", PULL_TOKEN))
        })
        .admin_token(ADMIN_TOKEN)
        // Named, or a bare `trace` leaves the NATS client at `debug`.
        .log_level("trace,async_nats=trace")
        .nats(nats.urls(), 1)
        .raw(|doc| {
            let n = doc["store"]["nats"].as_table_mut().unwrap();
            n.insert("user".into(), "hookrelay".into());
            n.insert("password".into(), NATS_PASSWORD.into());
        })
        .write();
    let bin = Bin::start(&path, &[("RUST_LOG", "")]);
    let q = format!("/hooks/t?token={ROUTE_TOKEN}");
    let (s, _, _) = post(bin.addr, &q, &[], runway("n1")).await;
    assert_eq!(s, StatusCode::OK);
    let bearer = format!("Bearer {ROUTE_TOKEN}");
    let (s, _, _) = post(bin.addr, "/hooks/t", &[("authorization", &bearer)], runway("n2")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = post(bin.addr, &format!("{q}x"), &[], runway("n3")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    ok.wait_for(secs(10), "both delivered", |r| r.len() >= 2).await;
    let local = Local::ok().await;
    let mut fwd = Forwarder::start_logging(
        dir.path(),
        &pull_url(bin.addr, "puller"),
        &local.url(),
        PULL_TOKEN,
        &[],
        "trace",
    );
    local.wait_for(secs(10), "both pulled", |g| g.len() >= 2).await;
    let mut shown = String::new();
    for path in ["/api/status", "/api/events", "/api/subscribers", "/api/dead-letters"] {
        let (s, a) = admin_as(bin.admin, Some(ADMIN_TOKEN), "GET", path, "").await;
        assert_eq!(s, StatusCode::OK, "{path}: {a}");
        shown.push_str(&a);
    }
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", secs(10)).await;
    let (s, _, _) = post(bin.addr, &q, &[], runway("n4")).await;
    assert_eq!(s, StatusCode::OK);
    local
        .wait_for(secs(10), "pulled after the reload", |g| g.len() >= 3)
        .await;
    assert_eq!(fwd.term(secs(10)), Some(0));
    bin.signal("TERM");
    let (_, bin) = bin.exit().await;
    let log = bin.log_text();
    assert!(log.contains("TRACE async_nats"), "the NATS client not at trace level");
    assert_nothing_shown("an admin API answer", &shown);
    assert_nothing_shown("the forwarder's log", &fwd.log_text());
    assert_nothing_shown("the relay's log", &log);
}
