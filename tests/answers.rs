//! Promise 5, clear answers to bad input: every status code of the contract,
//! tokens (query, bearer, rotation, tricks), provider signatures (kie,
//! Standard Webhooks, raw-body HMAC, checked against `common::oracle`).
//! (Source addresses: `allowlist`; hostile bytes and TLS: `hostile_http`.)

use crate::common;

use bytes::Bytes;
use common::oracle::{kie_sign, now_secs, standard_webhooks_sign};
use common::*;
use http::StatusCode;

#[tokio::test]
async fn every_status_code_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .max_body(1024)
        .subscriber(Subscriber::new("s", sub.url()))
        .route(
            Route::new("private", "/hooks/private")
                .allow_ips(["10.0.0.0/8"])
                .subscriber(Subscriber::new("p", sub.url())),
        );
    let h = start(&cfg).await;
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
    // Deeply nested JSON is refused, not a stack overflow: balanced (the
    // test sent 1,000 unclosed brackets, which any parser refuses as cut
    // short), 500 deep, within max_body; 100 deep is taken.
    let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
    assert!(nested(500).len() <= h.app.live().config.server.max_body);
    let (s, _, body) = post(addr, "/hooks/t?token=tok", &json, nested(500)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("recursion"), "{body:?}");
    assert_eq!(
        post(addr, "/hooks/t?token=tok", &json, nested(100)).await.0,
        StatusCode::OK
    );
    // Still serving.
    assert_eq!(callback(addr, &runway("c")).await.0, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn token_in_query_or_bearer_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .edit_route("t", |r| r.tokens(["old-token", "new-token"]))
        .subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
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

/// A base64 token (`openssl rand -base64 24`) pasted into the callback URL
/// as it is: its `+` is the token's, not a form's blank (it was refused
/// `401` for ever); encoded (`%2B`) it matches too, and a blank still does
/// not stand for a `+`.
#[tokio::test]
async fn a_query_token_with_a_plus_pasted_unencoded_matches() {
    let dir = tempfile::tempdir().unwrap();
    let token = "Zq3+vL9/xT2+kW7pN4=";
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .edit_route("t", |r| r.tokens([token]));
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    for (query, want) in [
        ("token=Zq3+vL9/xT2+kW7pN4=", StatusCode::OK),
        ("token=Zq3%2BvL9%2FxT2%2BkW7pN4%3D", StatusCode::OK),
        ("token=Zq3%20vL9/xT2%20kW7pN4=", StatusCode::UNAUTHORIZED),
    ] {
        let (status, _, _) = post(addr, &format!("/hooks/t?{query}"), &[], runway(query)).await;
        assert_eq!(status, want, "{query}");
    }
    h.shutdown().await;
}

/// GitHub's documented example: HMAC-SHA256("It's a Secret to Everybody", "Hello, World!").
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

/// The Standard Webhooks secret of the signature tests.
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A route `name` at `/hooks/{name}` checked with `sig`, delivering to `sub` as `sub_name`.
fn signed_route(sub: &Sub, name: &str, sub_name: &str, sig: Signature) -> Route {
    Route::new(name, &format!("/hooks/{name}"))
        .signature(sig)
        .subscriber(Subscriber::new(sub_name, sub.url()))
}

/// Subscriber s, route kie (`kie-key`, to k) and route sw ([`SW_SECRET`], to w).
fn kie_and_sw_routes(dir: &std::path::Path, sub: &Sub) -> TestConfig {
    TestConfig::new(dir)
        .subscriber(Subscriber::new("s", sub.url()))
        .route(signed_route(sub, "kie", "k", Signature::kie("kie-key")))
        .route(signed_route(sub, "sw", "w", Signature::standard_webhooks(SW_SECRET)))
}

#[tokio::test]
async fn provider_signature_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let sw_secret = SW_SECRET;
    let cfg = kie_and_sw_routes(dir.path(), &sub).route(
        signed_route(
            &sub,
            "gh",
            "g",
            Signature::hmac_sha256(GITHUB_SECRET, "X-Hub-Signature-256", Some("sha256=")),
        )
        .json(false),
    );
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];

    // kie: HMAC(task id + "." + timestamp), task id at /data/taskId for Veo.
    let ts = now_secs().to_string();
    let body = r#"{"code":200,"msg":"ok","data":{"taskId":"veo-123","info":{"resultUrls":["u"]}}}"#;
    let sig = kie_sign("kie-key", "veo-123", &ts);
    let good = [
        ("x-webhook-timestamp", ts.as_str()),
        ("x-webhook-signature", sig.as_str()),
    ];
    assert_eq!(post(addr, "/hooks/kie", &good, body).await.0, StatusCode::OK);
    let wrong_sig = kie_sign("other-key", "veo-123", &ts);
    let bad = [
        ("x-webhook-timestamp", ts.as_str()),
        ("x-webhook-signature", wrong_sig.as_str()),
    ];
    assert_eq!(post(addr, "/hooks/kie", &bad, body).await.0, StatusCode::UNAUTHORIZED);
    let old_ts = (now_secs() - 3600).to_string();
    let old_sig = kie_sign("kie-key", "veo-123", &old_ts);
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
    let body = r#"{"type":"done","id":42}"#;
    let sig = standard_webhooks_sign(sw_secret, "msg_1", &ts, body.as_bytes());
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
    let gh = [("x-hub-signature-256", GITHUB_SIGNATURE)];
    assert_eq!(post(addr, "/hooks/gh", &gh, "Hello, World!").await.0, StatusCode::OK);
    assert_eq!(
        post(addr, "/hooks/gh", &gh, "Hello, World?").await.0,
        StatusCode::UNAUTHORIZED
    );
    h.shutdown().await;
}

/// A `standard-webhooks` route keys callbacks by their `webhook-id` (the
/// sender's message id, which the signature covers): two messages with the
/// same body are two callbacks (the second was dropped as a duplicate of the
/// first: its body hash), and a retry of one, signed again at another time,
/// is a duplicate (ingest review).
#[tokio::test]
async fn a_standard_webhooks_route_keys_callbacks_by_their_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&kie_and_sw_routes(dir.path(), &sub)).await;
    let addr = h.ingest_addrs[0];
    let body = r#"{"type":"invoice.paid","amount":100}"#;
    let send = |id: &'static str, ts: u64| async move {
        let ts = ts.to_string();
        let sig = standard_webhooks_sign(SW_SECRET, id, &ts, body.as_bytes());
        let hdrs = [
            ("webhook-id", id),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", sig.as_str()),
        ];
        let (s, _, b) = post(addr, "/hooks/sw", &hdrs, body).await;
        assert_eq!(s, StatusCode::OK, "{id}: {b:?}");
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()
    };
    let first = send("msg_1", now_secs()).await;
    let second = send("msg_2", now_secs()).await;
    assert_eq!(
        second["duplicate"], false,
        "another message with the same body: {second}"
    );
    assert_ne!(first["id"], second["id"]);
    let retry = send("msg_1", now_secs() + 5).await;
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_eq!(retry["id"], first["id"]);
    // Another body under the same id (another sender sharing the route
    // through its secrets may number alike): another callback.
    let ts = now_secs().to_string();
    let other = r#"{"type":"invoice.paid","amount":200}"#;
    let sig = standard_webhooks_sign(SW_SECRET, "msg_1", &ts, other.as_bytes());
    let hdrs = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let (s, _, b) = post(addr, "/hooks/sw", &hdrs, other).await;
    let third: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (s, &third["duplicate"]),
        (StatusCode::OK, &serde_json::json!(false)),
        "{third}"
    );
    let got = sub.wait_for(secs(10), "the three callbacks", |r| r.len() >= 3).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|x| x.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(ids, want, "each message delivered once");
    h.shutdown().await;
}

/// A timestamp at the ends of i64 is stale like any other (401), not an
/// overflow that panicked the connection (a reset, in debug builds such as
/// the one tests run). From review 18, finding 6.
#[tokio::test]
async fn a_timestamp_at_the_ends_of_i64_is_refused_as_stale() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let sw_secret = SW_SECRET;
    let cfg = kie_and_sw_routes(dir.path(), &sub);
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let kie_body = r#"{"code":200,"msg":"ok","data":{"taskId":"veo-123","info":{"resultUrls":["u"]}}}"#;
    let sw_body = r#"{"type":"done","id":42}"#;
    for ts in [i64::MIN.to_string(), i64::MAX.to_string()] {
        let kie_sig = kie_sign("kie-key", "veo-123", &ts);
        let kie = [
            ("x-webhook-timestamp", ts.as_str()),
            ("x-webhook-signature", kie_sig.as_str()),
        ];
        let sw_sig = standard_webhooks_sign(sw_secret, "msg_1", &ts, sw_body.as_bytes());
        let sw = [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", sw_sig.as_str()),
        ];
        for (path, headers, body) in [("/hooks/kie", &kie[..], kie_body), ("/hooks/sw", &sw[..], sw_body)] {
            let (s, _, b) = post(addr, path, headers, body).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} at {ts}: {b:?}");
            assert!(
                String::from_utf8_lossy(&b).contains("timestamp"),
                "{path} at {ts}: {b:?}"
            );
        }
    }
    h.shutdown().await;
}

/// A config with route `gh` at `/hooks/gh` checking a GitHub-style
/// `X-Hub-Signature-256: sha256=…` HMAC (key `k`), both routes sending to `sub`.
fn github_signed(dir: &std::path::Path, sub: &Sub) -> TestConfig {
    TestConfig::new(dir).subscriber(Subscriber::new("s", sub.url())).route(
        Route::new("gh", "/hooks/gh")
            .signature(Signature::hmac_sha256("k", "X-Hub-Signature-256", Some("sha256=")))
            .subscriber(Subscriber::new("g", sub.url())),
    )
}

#[tokio::test]
async fn missing_hmac_signature_header_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = github_signed(dir.path(), &sub);
    let h = start(&cfg).await;
    let (s, _, body) = post(h.ingest_addrs[0], "/hooks/gh", &[], runway("unsigned")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let why = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"].to_string();
    assert!(why.contains("x-hub-signature-256"), "{why}");
    h.shutdown().await;
}

/// An auth scheme is case-insensitive (RFC 9110 §11.1): `BEARER tok` is
/// the token `tok` (review 28, finding 2).
#[tokio::test]
async fn a_bearer_scheme_in_any_case_is_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let mut got = Vec::new();
    for (n, scheme) in ["Bearer", "bearer", "BEARER", "BeArEr"].iter().enumerate() {
        let value = format!("{scheme} tok");
        let (s, _, b) = post(
            addr,
            "/hooks/t",
            &[("authorization", value.as_str())],
            runway(&format!("case-{n}")),
        )
        .await;
        got.push((scheme.to_string(), s, String::from_utf8_lossy(&b).to_string()));
    }
    h.shutdown().await;
    for (scheme, s, body) in got {
        assert_eq!(s, StatusCode::OK, "Authorization: {scheme} tok -> {s} {body}");
    }
}

/// A body with a content coding (`Content-Encoding: gzip`) is refused with
/// `415` and `Accept-Encoding: identity` (RFC 7694), on a raw route too: it
/// was stored as received and delivered as compressed bytes with nothing
/// saying so. `identity` is no coding. A transfer coding other than
/// `chunked` gets `501` (RFC 9112 §6.1), for the same reason.
#[tokio::test]
async fn a_compressed_body_is_refused_with_415_not_stored_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .route(
            Route::new("raw", "/hooks/raw")
                .json(false)
                .tokens(["tok"])
                .subscriber(Subscriber::new("r", sub.url())),
        );
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let gzip = Bytes::from_static(&[
        0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xab, 0xae, 5, 0, 0x43, 0xbf, 0xa6, 0xa3, 2, 0, 0, 0,
    ]);
    for (path, coding) in [
        ("/hooks/raw?token=tok", "gzip"),
        ("/hooks/t?token=tok", "GZIP"),
        ("/hooks/t?token=tok", "identity, br"),
    ] {
        let (s, headers, body) = post(addr, path, &[("content-encoding", coding)], gzip.clone()).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path} {coding}: {body:?}");
        assert_eq!(headers["accept-encoding"], "identity");
    }
    // A transfer coding besides chunked: hyper takes the chunks apart, not the gzip.
    let answer = raw(
        addr,
        b"POST /hooks/raw?token=tok HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 501 "), "{answer}");
    let (s, _, body) = post(
        addr,
        "/hooks/t?token=tok",
        &[("content-encoding", "identity")],
        runway("plain"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    sub.wait_for(std::time::Duration::from_secs(5), "the plain callback", |got| {
        !got.is_empty()
    })
    .await;
    assert_eq!(sub.count(), 1, "only the uncompressed callback is delivered");
    h.shutdown().await;
}

/// A JSON body after a UTF-8 byte order mark (RFC 8259 §8.1: a parser may
/// ignore it; some providers' stacks write one) is taken, and stored and
/// delivered as the JSON text (it was refused 400, not JSON); a raw-body
/// signature is checked over the bytes as sent.
#[tokio::test]
async fn a_json_body_after_a_byte_order_mark_is_taken_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let cfg = github_signed(dir.path(), &sub);
    let h = start(&cfg).await;
    let addr = h.ingest_addrs[0];
    let plain = runway("bom");
    let bom = format!("\u{feff}{plain}");
    let (s, _, body) = post(addr, "/hooks/t?token=tok", &[], bom.clone()).await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    let signed = format!("sha256={}", common::oracle::hmac_hex(b"k", bom.as_bytes()));
    let (s, _, body) = post(addr, "/hooks/gh", &[("x-hub-signature-256", signed.as_str())], bom).await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    let got = sub
        .wait_for(std::time::Duration::from_secs(5), "both callbacks", |got| {
            got.len() >= 2
        })
        .await;
    for r in got {
        assert_eq!(r.body, plain.as_bytes(), "delivered as the JSON text");
    }
    h.shutdown().await;
}

/// A kie-signed body naming `data` twice: the relay's parser takes the last
/// (the task the captured signature is for), a first-wins subscriber the
/// first (another task, the sender's content). Refused `400`; the same
/// task's body without the repeat is taken (ingest review, stop 66).
#[tokio::test]
async fn a_signed_body_naming_a_key_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let h = start(&kie_and_sw_routes(dir.path(), &sub)).await;
    let addr = h.ingest_addrs[0];
    let ts = now_secs().to_string();
    let sig = kie_sign("kie-key", "veo-123", &ts);
    let signed = [
        ("x-webhook-timestamp", ts.as_str()),
        ("x-webhook-signature", sig.as_str()),
    ];
    let twice = r#"{"code":200,"data":{"taskId":"veo-999","info":{"resultUrls":["https://evil.example/x.mp4"]}},"data":{"taskId":"veo-123","info":{"resultUrls":["u"]}}}"#;
    let (s, _, b) = post(addr, "/hooks/kie", &signed, twice).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("names a key twice"), "{b:?}");
    let once = r#"{"code":200,"data":{"taskId":"veo-123","info":{"resultUrls":["u"]}}}"#;
    assert_eq!(post(addr, "/hooks/kie", &signed, once).await.0, StatusCode::OK);
    h.shutdown().await;
}

/// A preset route whose `kie` signature names its own task id pointer:
/// the preset's fields, which dedupe reads, must agree with it. Before, a
/// body signed for task A (`/data/taskId`) whose Runway field
/// (`/data/task_id`) said B was taken as B's callback, and B's genuine
/// one then answered as a duplicate and dropped (provider review, stop 71).
#[tokio::test]
async fn a_signature_with_its_own_task_id_pointer_signs_the_task_dedupe_reads() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let route = signed_route(&sub, "rw", "r", Signature::kie_at("kie-key", "/data/taskId")).preset("kie-runway");
    let h = start(
        &TestConfig::new(dir.path())
            .subscriber(Subscriber::new("s", sub.url()))
            .route(route),
    )
    .await;
    let addr = h.ingest_addrs[0];
    let signed = |task: &str| {
        let ts = now_secs().to_string();
        let sig = kie_sign("kie-key", task, &ts);
        [("x-webhook-timestamp", ts), ("x-webhook-signature", sig)]
    };
    let send = |headers: [(&'static str, String); 2], body: String| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post(addr, "/hooks/rw", &h, body).await
    };
    let mixed = r#"{"code":500,"msg":"x","data":{"taskId":"task-a","task_id":"task-b"}}"#;
    let (s, _, b) = send(signed("task-a"), mixed.to_string()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{}", String::from_utf8_lossy(&b));
    let genuine = r#"{"code":200,"msg":"ok","data":{"taskId":"task-b","task_id":"task-b","video_url":"u"}}"#;
    let (s, _, b) = send(signed("task-b"), genuine.to_string()).await;
    let answer = String::from_utf8_lossy(&b);
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert!(answer.contains(r#""duplicate":false"#), "{answer}");
    // A body with only the route's own field is signed and taken as before.
    let own = r#"{"code":200,"msg":"ok","data":{"taskId":"task-c","video_url":"u"}}"#;
    assert_eq!(send(signed("task-c"), own.to_string()).await.0, StatusCode::OK);
    h.shutdown().await;
}
