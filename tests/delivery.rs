//! Promise 3, at-least-once to every subscriber, what each delivery carries:
//! the provider's bytes and content type, a stable `webhook-id`, a Standard
//! Webhooks signature per rotation key, configured headers, filters, HTTPS to a
//! private CA, and a 2xx whose body is slow. (Retries and dead letters:
//! `retries`; independence of subscribers: `isolation`.)

use crate::common;

use std::time::Duration;

use common::oracle::{now_secs, standard_webhooks_verify as verify};
use common::*;
use http::StatusCode;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn body_bytes_headers_and_signature() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let other = Sub::ok().await;
    let new_secret = "whsec_dGhpcy1pcy1hLW5ldy1zaWduaW5nLWtleS0zMmJ5dGVz";
    let cfg = TestConfig::new(dir.path())
        .subscriber(
            Subscriber::new("a", sub.url())
                .secret(SECRET)
                .secret(new_secret)
                .header("X-Api-Key", "k-123"),
        )
        .subscriber(Subscriber::new("b", other.url()));
    let h = start(&cfg).await;
    // Odd spacing, unicode and key order must survive byte for byte.
    let body = "{ \"code\" :200,\n \"msg\":\"caf\u{e9} \u{2713}\", \"data\":{\"task_id\":\"exact\"} }  ";
    let (s, _, answer) = post(
        h.ingest_addrs[0],
        "/hooks/t?token=tok",
        &[("content-type", "application/json; charset=utf-8")],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let id = serde_json::from_slice::<serde_json::Value>(&answer).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = sub
        .wait_for(Duration::from_secs(5), "delivery", |r| !r.is_empty())
        .await;
    let r = &got[0];
    assert_eq!(&r.body[..], body.as_bytes());
    assert_eq!(r.path, "/callbacks");
    assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
    assert_eq!(r.header("webhook-id"), id);
    assert!(
        r.header("user-agent").starts_with("hookrelay/"),
        "{}",
        r.header("user-agent")
    );
    assert_eq!(r.header("hookrelay-attempt"), "1");
    assert_eq!(r.header("x-api-key"), "k-123");
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    assert!((now_secs() as i64 - ts).abs() < 10);
    let sig = r.header("webhook-signature");
    assert_eq!(sig.split(' ').count(), 2, "both rotation keys sign: {sig}");
    assert!(verify(SECRET, &id, r.header("webhook-timestamp"), &r.body, sig));
    assert!(verify(new_secret, &id, r.header("webhook-timestamp"), &r.body, sig));
    assert!(!verify(SECRET, &id, r.header("webhook-timestamp"), b"tampered", sig));
    // The subscriber without a secret gets no signature, same id.
    let o = other
        .wait_for(Duration::from_secs(5), "delivery to b", |r| !r.is_empty())
        .await;
    assert_eq!(o[0].header("webhook-id"), id);
    assert!(o[0].headers.get("webhook-signature").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn configured_headers_replace_ours_and_take_secret_sources() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "k-from-file\n").unwrap();
    let h = start(
        &TestConfig::new(dir.path()).subscriber(
            Subscriber::new("s", sub.url())
                .header("User-Agent", "their-gateway/2")
                .header("X-Api-Key", Secret::file(&key_file)),
        ),
    )
    .await;
    callback(h.ingest_addrs[0], &runway("headers")).await;
    let got = sub
        .wait_for(Duration::from_secs(5), "delivery", |r| !r.is_empty())
        .await;
    let values = |name: &str| -> Vec<&str> {
        got[0]
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(values("user-agent"), ["their-gateway/2"], "replaced, not appended");
    assert_eq!(values("x-api-key"), ["k-from-file"]);
    assert_eq!(values("webhook-id").len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn filters_skip_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let all = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("only-ok", sub.url()).filter("/code", 200.into()))
        .subscriber(Subscriber::new("all", all.url()));
    let h = start(&cfg).await;
    let (_, ok) = callback(h.ingest_addrs[0], r#"{"code":200,"data":{"task_id":"f1"}}"#).await;
    let (_, failed) = callback(h.ingest_addrs[0], r#"{"code":500,"data":{"task_id":"f2"}}"#).await;
    all.wait_for(Duration::from_secs(5), "both to the unfiltered one", |r| r.len() >= 2)
        .await;
    let got = sub
        .wait_for(Duration::from_secs(5), "the matching one", |r| !r.is_empty())
        .await;
    // The lane records the skip when it reaches the event (after delivering
    // the one before it): wait for that, not for a fixed time.
    let ev = admin_until(
        h.admin_addr,
        &format!("/api/events/{}", failed["id"].as_str().unwrap()),
        Duration::from_secs(10),
        |ev| row(&ev["subscribers"], "name", "only-ok")["state"] != "pending",
    )
    .await;
    assert_eq!(row(&ev["subscribers"], "name", "only-ok")["state"], "skipped", "{ev}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sub.count(), 1);
    assert_eq!(got[0].header("webhook-id"), ok["id"].as_str().unwrap());
    // A replay to it says it is skipped again, not that it was queued.
    let failed_id = failed["id"].as_str().unwrap();
    let (s, v) = admin(
        h.admin_addr,
        "POST",
        &format!("/api/events/{failed_id}/replay?subscriber=only-ok"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["queued"], serde_json::json!([]), "{v}");
    assert_eq!(v["filtered"], serde_json::json!(["only-ok"]), "{v}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sub.count(), 1, "nothing sent to the filtered subscriber");
    h.shutdown().await;
}

#[tokio::test]
async fn https_subscriber_with_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    // A TLS subscriber, trusted only through ca_file (its self-signed cert).
    let cert = TestCert::write(dir.path(), "sub");
    let sub = Sub::start_tls(&cert, std::sync::Arc::new(|_, _| Behaviour::Status(200))).await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("tls", sub.url()).ca_file(&cert.cert))
        .subscriber(Subscriber::new("untrusted", sub.url()).retry([secs(3600)]));
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("tls")).await;
    sub.wait_for(Duration::from_secs(5), "an HTTPS delivery", |r| !r.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sub.all();
    assert_eq!(
        got.len(),
        1,
        "only the subscriber that trusts the CA gets through: {got:?}"
    );
    assert_eq!(got[0].header("webhook-id"), id);
    assert_eq!(
        got[0].version,
        http::Version::HTTP_2,
        "ALPN negotiates h2 with an h2 subscriber"
    );
    // The untrusted lane's failed attempt is recorded on its own time: wait for it.
    let ev = admin_until(
        h.admin_addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(10),
        |ev| {
            row(&ev["subscribers"], "name", "untrusted")["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    )
    .await;
    let untrusted = row(&ev["subscribers"], "name", "untrusted");
    let err = untrusted["attempts"][0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no failed attempt recorded for untrusted: {ev}"));
    assert!(err.contains("certificate") || err.contains("Unknown"), "{err}");
    h.shutdown().await;
}

/// A subscriber that answers 200 at once, then sends its 1,000-byte body a
/// byte every 100 ms (100 s in all).
async fn dripping_200() -> RawSub {
    RawSub::start(|_| RawAnswer::Drip {
        head: b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
        bytes: 1000,
        every: ms(100),
    })
    .await
}

#[tokio::test]
async fn a_2xx_whose_body_drips_is_delivered_not_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dripping_200().await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("drip", sub.url())
            .timeout(secs(1))
            .retry([ms(100), ms(100)]),
    );
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("drip")).await;
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(10), |ev| {
        ev["subscribers"][0]["state"] != "pending"
    })
    .await;
    let s = &ev["subscribers"][0];
    assert_ne!(s["state"], "pending", "no outcome within 10s: {ev}");
    assert_eq!(s["state"], "delivered", "{ev}");
    assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "{ev}");
    assert_eq!(s["attempts"][0]["status"], 200, "{ev}");
    assert_eq!(sub.count(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_2xx_is_recorded_before_its_slow_body_so_a_restart_does_not_send_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dripping_200().await;
    let cfg = TestConfig::new(dir.path()).subscriber(
        Subscriber::new("drip", sub.url())
            .timeout(secs(30))
            .retry([ms(100), ms(100)]),
    );
    let h = start(&cfg).await;
    let id = accepted(h.ingest_addrs[0], &runway("drip-restart")).await;
    // The status is in: delivered at once, not when the body ends (or the timeout).
    let ev = admin_until(h.admin_addr, &format!("/api/events/{id}"), secs(3), |ev| {
        ev["subscribers"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(ev["subscribers"][0]["state"], "delivered", "{ev}");
    // A stop while the body still drips, then a start: not sent again.
    h.shutdown().await;
    let h = start(&cfg).await;
    tokio::time::sleep(ms(700)).await;
    assert_eq!(sub.count(), 1, "the delivered event was sent again after a restart");
    let ev = event_view(h.admin_addr, &id).await;
    assert_eq!(ev["subscribers"][0]["attempts"].as_array().unwrap().len(), 1, "{ev}");
    h.shutdown().await;
}

/// An empty callback (a route with `json = false` takes one) is POSTed to
/// the subscriber with `Content-Length: 0`: hyper sends no length for an
/// empty body, and a POST without one is refused `411 Length Required` by
/// some front ends (delivery review, stop 71).
#[tokio::test]
async fn an_empty_body_is_sent_with_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .edit_route("t", |r| r.dedupe_key([]).json(false));
    let h = start(&cfg).await;
    let (s, _, b) = post(h.ingest_addrs[0], "/hooks/t?token=tok", &[], "").await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let got = sub
        .wait_for(Duration::from_secs(5), "delivery", |r| !r.is_empty())
        .await;
    assert!(got[0].body.is_empty());
    assert_eq!(got[0].header("content-length"), "0");
    h.shutdown().await;
}
