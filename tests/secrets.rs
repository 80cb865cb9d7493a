//! Promise 5, never a leaked secret: route tokens (plain or percent-encoded in
//! the query) are redacted in logs, and credentials in a subscriber URL are sent
//! as Basic auth and appear nowhere (admin API, CLI, logs), nor does a
//! subscriber URL's path (a capability URL's secret). The real binary's log
//! is what is searched.

use crate::common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_never_logged_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "sup3r-s3cret-t0ken";
    let cfg = TestConfig::new(dir.path())
        .edit_route("t", |r| r.tokens([secret]))
        .subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "debug")]);
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
    let started = std::time::Instant::now();
    bin.signal("TERM");
    let (status, bin) = bin.exit().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let log = bin.log_text();
    assert!(log.contains("REDACTED"), "{log}");
    assert!(log.contains("callback accepted"), "{log}");
    assert!(!log.contains(secret), "the token leaked into the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_url_credentials_are_sent_as_basic_auth_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let url = format!("http://hook-user:p%40ss-w0rd@{}/callbacks", sub.addr);
    let cfg_path = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", url))
        .write();
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "debug")]);
    assert_eq!(callback(bin.addr, &runway("creds")).await.0, StatusCode::OK);
    let got = sub
        .wait_for(Duration::from_secs(5), "delivery", |r| !r.is_empty())
        .await;
    let basic = base64::engine::general_purpose::STANDARD.encode("hook-user:p@ss-w0rd");
    assert_eq!(got[0].header("authorization"), format!("Basic {basic}"));
    assert_eq!(got[0].path, "/callbacks");
    // Nowhere to be seen: admin API, CLI, logs.
    let (_, v) = admin(bin.admin, "GET", "/api/subscribers").await;
    assert_eq!(v["subscribers"][0]["url"], format!("http://{}/…", sub.addr));
    let admin_url = format!("http://{}", bin.admin);
    let cfg_s = cfg_path.to_str().unwrap().to_string();
    let (ok, out, err) = cli_async(vec![
        "--config".into(),
        cfg_s,
        "--admin".into(),
        admin_url,
        "subscribers".into(),
    ])
    .await;
    assert!(ok, "{err}");
    let shown = format!("{v}\n{out}\n{err}\n{}", bin.log_text());
    for secret in ["hook-user", "p%40ss", "p@ss", &basic] {
        assert!(!shown.contains(secret), "{secret:?} shown:\n{shown}");
    }
}

/// Capability URLs (Slack's `/services/T…/B…/SECRET`, Discord's
/// `/api/webhooks/ID/TOKEN`) carry their secret in the path: the admin API,
/// the CLI and the log show such a subscriber as `scheme://host:port/…`,
/// also when its deliveries fail (the attempt errors and dead letters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_a_subscriber_url_path_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Sub::always(Behaviour::Status(500)).await;
    let slack = "XXXXSLACKPATHSECRET";
    let discord = "DISCORDPATHTOKEN";
    let cfg_path = TestConfig::new(dir.path())
        .subscriber(
            Subscriber::new("slack", format!("http://{}/services/T000/B000/{slack}", failing.addr)).retry([ms(50)]),
        )
        .subscriber(Subscriber::new("discord", format!("http://127.0.0.1:9/api/webhooks/1/{discord}")).retry([ms(50)]))
        .write();
    let bin = Bin::start(&cfg_path, &[("RUST_LOG", "debug")]);
    let (status, answer) = callback(bin.addr, &runway("path-secret")).await;
    assert_eq!(status, StatusCode::OK);
    let id = answer["id"].as_str().unwrap().to_string();
    let got = failing
        .wait_for(Duration::from_secs(5), "two attempts", |r| r.len() >= 2)
        .await;
    assert_eq!(
        got[0].path,
        format!("/services/T000/B000/{slack}"),
        "delivered to the whole URL"
    );
    // Both dead letters recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = loop {
        let (_, ev) = admin(bin.admin, "GET", &format!("/api/events/{id}")).await;
        let states: Vec<&str> = ev["subscribers"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["state"].as_str()).collect())
            .unwrap_or_default();
        if states == ["dead", "dead"] {
            break ev;
        }
        assert!(Instant::now() < deadline, "not dead yet: {ev}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, subs) = admin(bin.admin, "GET", "/api/subscribers").await;
    let url_of = |name: &str| {
        subs["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["url"].clone())
            .unwrap()
    };
    assert_eq!(url_of("slack"), format!("http://{}/…", failing.addr));
    assert_eq!(url_of("discord"), "http://127.0.0.1:9/…");
    let (_, dead) = admin(bin.admin, "GET", "/api/dead-letters").await;
    let admin_url = format!("http://{}", bin.admin);
    let cfg_s = cfg_path.to_str().unwrap().to_string();
    let mut shown = format!("{subs}\n{event}\n{dead}\n");
    for cmd in [&["subscribers"][..], &["dead-letters"], &["events"], &["event", &id]] {
        let (ok, out, err) = admin_cli(&cfg_s, &admin_url, cmd).await;
        assert!(ok, "{cmd:?}: {err}");
        shown.push_str(&format!("{out}\n{err}\n"));
    }
    assert!(shown.contains("slack") && shown.contains("discord"), "{shown}");
    bin.signal("TERM");
    let (_, bin) = bin.exit().await;
    let log = bin.log_text();
    assert!(log.contains("discord"), "the dead letters are logged:\n{log}");
    shown.push_str(&log);
    for secret in [slack, discord, "/services/T000", "/api/webhooks"] {
        assert!(!shown.contains(secret), "{secret:?} shown:\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_token_key_is_redacted_in_logs() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-t0ken-enc";
    let cfg = TestConfig::new(dir.path())
        .edit_route("t", |r| r.tokens([secret]))
        .subscriber(Subscriber::new("s", DOWN).retry([secs(3600)]));
    // Refusals after the first of a while are logged at debug: see them all.
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "info,hookrelay::ingest=debug")]);
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
    // A provider set up with the token in the path, or its key in another
    // query parameter: neither is logged either.
    let (s, _, _) = post(bin.addr, &format!("/hooks/t/{secret}"), &[], runway("p")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let other = "0ther-k3y-value";
    let path = format!("/hooks/t?token=bad&access_token={other}&key={other}");
    let (s, _, _) = post(bin.addr, &path, &[], runway("q")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let deadline = Instant::now() + Duration::from_secs(5);
    while bin.log_text().matches(" uri=").count() < 5 {
        assert!(Instant::now() < deadline, "refusals not logged: {}", bin.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = bin.log_text();
    assert!(!log.contains(secret), "the token leaked into the log:\n{log}");
    assert!(!log.contains(other), "a query value leaked into the log:\n{log}");
    assert!(log.contains("/hooks/t/REDACTED(16)"), "{log}");
}

/// Some platforms authenticate callbacks with a static `X-Webhook-Secret` or
/// `Webhook-Token` header: kept headers never keep such a value (the name
/// stays, so an operator sees it was sent); signatures, ids and idempotency
/// keys are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_looking_webhook_headers_are_kept_without_their_values() {
    let (_dir, _sub, h) = with_ok_subscriber().await;
    let headers = [
        ("content-type", "application/json"),
        ("x-webhook-secret", "PROVIDERSHAREDSECRET"),
        ("webhook-token", "WHTOKEN"),
        ("x-webhook-api-key", "APIKEYVALUE"),
        ("x-webhook-authorization", "Bearer AUTHVALUE"),
        ("x-webhook-password", "PASSVALUE"),
        ("x-webhook-signature", "sha256=abcdef"),
        ("webhook-id", "msg_1"),
        ("x-webhook-secretkey", "JOINEDSECRET"),
        ("x-webhook-signingkey", "SIGNINGKEYVALUE"),
        ("x-webhook-hmackey", "HMACKEYVALUE"),
        ("webhook-idempotency-key", "idem-42"),
        ("x-webhook-keyword", "kw"),
    ];
    let (s, _, a) = post(h.ingest_addrs[0], "/hooks/t?token=tok", &headers, runway("hdr")).await;
    assert_eq!(s, StatusCode::OK);
    let id = serde_json::from_slice::<serde_json::Value>(&a).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, ev) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    let text = ev.to_string();
    for secret in [
        "PROVIDERSHAREDSECRET",
        "WHTOKEN",
        "APIKEYVALUE",
        "AUTHVALUE",
        "PASSVALUE",
        "JOINEDSECRET",
        "SIGNINGKEYVALUE",
        "HMACKEYVALUE",
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    let kept: std::collections::HashMap<String, String> = ev["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(kept["x-webhook-secret"], "REDACTED", "{kept:?}");
    assert_eq!(kept["webhook-token"], "REDACTED", "{kept:?}");
    assert_eq!(kept["x-webhook-signature"], "sha256=abcdef", "{kept:?}");
    assert_eq!(kept["webhook-id"], "msg_1", "{kept:?}");
    // Names that only contain "key" as part of a harmless word are shown.
    assert_eq!(kept["webhook-idempotency-key"], "idem-42", "{kept:?}");
    assert_eq!(kept["x-webhook-keyword"], "kw", "{kept:?}");
    h.shutdown().await;
}

/// The store (every callback body) and the media archive are created
/// readable by their owner only, whatever the umask (they followed it:
/// 0755 directories under the usual umask 022).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_media_directories_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("state/data");
    let media = dir.path().join("archive/files");
    let cfg = media_config(dir.path(), Media::new().dir(&media)).store_path(&store);
    let h = start(&cfg).await;
    for d in [
        dir.path().join("state"),
        store.clone(),
        dir.path().join("archive"),
        media.clone(),
    ] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
    }
    h.shutdown().await;
}
