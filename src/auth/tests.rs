use super::*;
use crate::config::{Encoding, Signature};
use http::HeaderMap;
use http::HeaderValue;
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

// The official Standard Webhooks known-answer vector.
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: i64 = 1614265330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const SW_BAD: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

#[test]
fn standard_webhooks_known_answer() {
    let key = crate::config::decode_whsec(SW_SECRET).unwrap();
    assert_eq!(
        standard_webhooks_signature(std::slice::from_ref(&key), SW_ID, SW_TS, SW_BODY),
        SW_SIG
    );
    // Two keys (rotation): both signatures, space-separated.
    let two = standard_webhooks_signature(&[key.clone(), key], SW_ID, SW_TS, SW_BODY);
    assert_eq!(two, format!("{SW_SIG} {SW_SIG}"));
}

#[test]
fn standard_webhooks_verification() {
    let sig = Signature::StandardWebhooks {
        keys: vec![crate::config::decode_whsec(SW_SECRET).unwrap()],
        tolerance: Duration::from_secs(300),
    };
    let ts = SW_TS.to_string();
    let ok = headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", &ts),
        ("webhook-signature", SW_SIG),
    ]);
    assert_eq!(verify_signature(&sig, &ok, SW_BODY, None, SW_TS + 10), Ok(()));
    // One good among several is enough.
    let multi = format!("{SW_BAD} {SW_SIG}");
    let h = headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", &ts),
        ("webhook-signature", &multi),
    ]);
    assert_eq!(verify_signature(&sig, &h, SW_BODY, None, SW_TS), Ok(()));
    let bad = headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", &ts),
        ("webhook-signature", SW_BAD),
    ]);
    assert_eq!(
        verify_signature(&sig, &bad, SW_BODY, None, SW_TS),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(&sig, &ok, b"{\"test\": 1}", None, SW_TS),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(&sig, &ok, SW_BODY, None, SW_TS + 301),
        Err(SignatureError::Stale)
    );
    // A timestamp ahead of the relay's clock by more than the tolerance is
    // refused as well (a signature made for later replays until then);
    // within it, taken.
    assert_eq!(verify_signature(&sig, &ok, SW_BODY, None, SW_TS - 300), Ok(()));
    assert_eq!(
        verify_signature(&sig, &ok, SW_BODY, None, SW_TS - 301),
        Err(SignatureError::Stale)
    );
    let missing = headers(&[("webhook-id", SW_ID)]);
    assert!(matches!(
        verify_signature(&sig, &missing, SW_BODY, None, SW_TS),
        Err(SignatureError::MissingHeader(_))
    ));
}

#[test]
fn kie_known_answer() {
    // base64(HMAC-SHA256("kie-test-key", "<task id>.<ts>")), computed independently.
    let expected = "5zdM6bizPKyBWCYssVNLh6WZvg0wufFInuqFh55Ijtw=";
    let sig = Signature::Kie {
        secret: Secret::new("kie-test-key"),
        task_id: vec![],
        tolerance: Duration::from_secs(300),
    };
    let h = headers(&[("x-webhook-timestamp", "1732700000"), ("x-webhook-signature", expected)]);
    let runway = serde_json::json!({"code": 200, "data": {"task_id": "ee603959-debb-48d1-98c4-a6d1c717eba6"}});
    let veo = serde_json::json!({"code": 200, "data": {"taskId": "ee603959-debb-48d1-98c4-a6d1c717eba6"}});
    let aleph = serde_json::json!({"code": 400, "taskId": "ee603959-debb-48d1-98c4-a6d1c717eba6", "data": null});
    for body in [&runway, &veo, &aleph] {
        assert_eq!(
            verify_signature(&sig, &h, b"", Some(body), 1732700000),
            Ok(()),
            "{body}"
        );
    }
    // Ahead of the relay's clock by more than the tolerance: refused.
    assert_eq!(verify_signature(&sig, &h, b"", Some(&veo), 1732700000 - 300), Ok(()));
    assert_eq!(
        verify_signature(&sig, &h, b"", Some(&veo), 1732700000 - 301),
        Err(SignatureError::Stale)
    );
    let other = serde_json::json!({"data": {"task_id": "another"}});
    assert_eq!(
        verify_signature(&sig, &h, b"", Some(&other), 1732700000),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(&sig, &h, b"", Some(&serde_json::json!({})), 1732700000),
        Err(SignatureError::NoTaskId)
    );
    assert_eq!(
        verify_signature(&sig, &h, b"", Some(&runway), 1732700000 + 3600),
        Err(SignatureError::Stale)
    );
    let configured = Signature::Kie {
        secret: Secret::new("kie-test-key"),
        task_id: vec!["/job".into()],
        tolerance: Duration::from_secs(300),
    };
    let custom = serde_json::json!({"job": "ee603959-debb-48d1-98c4-a6d1c717eba6"});
    assert_eq!(
        verify_signature(&configured, &h, b"", Some(&custom), 1732700000),
        Ok(())
    );
    // The signed task in one field, another task in a second field a
    // subscriber may read (review 58, edge finding 4): refused. The same id
    // in both is fine.
    let two = serde_json::json!({"code": 200, "data": {"task_id": "ee603959-debb-48d1-98c4-a6d1c717eba6", "taskId": "victim"}});
    assert_eq!(
        verify_signature(&sig, &h, b"", Some(&two), 1732700000),
        Err(SignatureError::TaskIdsDiffer)
    );
    let same = serde_json::json!({"taskId": "ee603959-debb-48d1-98c4-a6d1c717eba6", "data": {"task_id": "ee603959-debb-48d1-98c4-a6d1c717eba6"}});
    assert_eq!(verify_signature(&sig, &h, b"", Some(&same), 1732700000), Ok(()));
}

#[test]
fn hmac_sha256_github_known_answer() {
    // GitHub's documented example.
    let sig = Signature::HmacSha256 {
        secret: Secret::new("It's a Secret to Everybody"),
        header: http::HeaderName::from_static("x-hub-signature-256"),
        encoding: Encoding::Hex,
        prefix: "sha256=".into(),
    };
    let good = headers(&[(
        "x-hub-signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]);
    assert_eq!(verify_signature(&sig, &good, b"Hello, World!", None, 0), Ok(()));
    assert_eq!(
        verify_signature(&sig, &good, b"Hello, World?", None, 0),
        Err(SignatureError::Mismatch)
    );
    let no_prefix = headers(&[(
        "x-hub-signature-256",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]);
    assert!(verify_signature(&sig, &no_prefix, b"Hello, World!", None, 0).is_err());
    let b64 = Signature::HmacSha256 {
        secret: Secret::new("It's a Secret to Everybody"),
        header: http::HeaderName::from_static("x-sig"),
        encoding: Encoding::Base64,
        prefix: String::new(),
    };
    let h = headers(&[("x-sig", "dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc=")]);
    assert_eq!(verify_signature(&b64, &h, b"Hello, World!", None, 0), Ok(()));
}

#[test]
fn token_digests_are_compared_with_the_presented_tokens() {
    let digests: Vec<TokenDigest> = [Secret::new("old"), Secret::new("new")]
        .iter()
        .map(TokenDigest::of)
        .collect();
    let one = |t: &str| vec![t.to_string()];
    assert!(digest_matches(&one("old"), &digests));
    assert!(digest_matches(&one("new"), &digests));
    assert!(!digest_matches(&one("ne"), &digests));
    assert!(!digest_matches(&[], &digests));
    assert!(digest_matches(&["x".to_string(), "new".to_string()], &digests));
    // Loaded again with only the new token: the old one is refused.
    let reloaded = vec![TokenDigest::of(&Secret::new("new"))];
    assert!(digest_matches(&one("new"), &reloaded));
    assert!(!digest_matches(&one("old"), &reloaded));
    assert_eq!(format!("{:?}", reloaded[0]), "TokenDigest(<redacted>)");
}

#[test]
fn tokens() {
    let tokens = vec![Secret::new("old"), Secret::new("new")];
    let one = |t: &str| vec![t.to_string()];
    assert!(token_matches(&one("old"), &tokens));
    assert!(token_matches(&one("new"), &tokens));
    assert!(!token_matches(&one("ne"), &tokens));
    assert!(!token_matches(&[], &tokens));
    assert!(token_matches(&["x".to_string(), "new".to_string()], &tokens));
    let h = headers(&[("authorization", "Bearer new")]);
    assert_eq!(presented_tokens(None, &h), one("new"));
    assert_eq!(presented_tokens(Some("a=1&token=a%2Bb"), &HeaderMap::new()), one("a+b"));
    // Bearer first, then the first ?token= only.
    assert_eq!(
        presented_tokens(Some("token=q1&token=q2"), &h),
        vec!["new".to_string(), "q1".to_string()]
    );
}

#[test]
fn the_bearer_scheme_is_read_in_any_case_and_from_any_authorization_line() {
    let one = |t: &str| vec![t.to_string()];
    for v in ["BEARER tok", "BeArEr tok", "bearer\ttok ", "Bearer  tok"] {
        assert_eq!(
            presented_tokens(None, &headers(&[("authorization", v)])),
            one("tok"),
            "{v}"
        );
    }
    for v in ["Basic dG9rOg==", "Bearertok", "Token tok"] {
        assert!(
            presented_tokens(None, &headers(&[("authorization", v)])).is_empty(),
            "{v}"
        );
    }
    // A proxy's own `Basic` line before the client's bearer line.
    let mut h = HeaderMap::new();
    h.append("authorization", "Basic dG9rOg==".parse().unwrap());
    h.append("authorization", "Bearer tok".parse().unwrap());
    h.append("authorization", "Bearer other".parse().unwrap());
    assert_eq!(
        presented_tokens(Some("token=q"), &h),
        vec!["tok".to_string(), "q".to_string()]
    );
}

#[test]
fn credentials_in_urls_are_hidden_however_written() {
    for (url, hidden) in [
        (
            "https://alice:S3CRET@files.example/x",
            "https://REDACTED@files.example/x",
        ),
        // Read as a browser reads it: still credentials.
        ("https:alice:S3CRET@files.example/x", "https://REDACTED@files.example/x"),
        ("https://files.example/x", "https://files.example/x"),
        // Not a URL (shown in an error): a `/` in the password does not keep it.
        ("http://u:pa/ss word@host/p", "http://REDACTED@host/p"),
        // Nor a `?` or `#` in it (the host would be `u:S3CRET`, the rest a query).
        ("http://bob:S3CRET?pw@127.0.0.1:9/x", "http://REDACTED@127.0.0.1:9/x"),
        ("http://bob:S3CRET#pw@127.0.0.1:9/x", "http://REDACTED@127.0.0.1:9/x"),
        // Without `scheme://` (a NATS server, an S3 endpoint, `--admin`, a
        // provider's base URL written short): shown whole before.
        ("u:S3CRET@api.example", "REDACTED@api.example"),
        ("AK:S3CRET@127.0.0.1:9000", "REDACTED@127.0.0.1:9000"),
        ("u:S3CRET@127.0.0.1:19090/x", "REDACTED@127.0.0.1:19090/x"),
        ("//u:S3CRET@host/dir", "//REDACTED@host/dir"),
        ("mailto:u:S3CRET@host", "REDACTED@host"),
        ("127.0.0.1:4222", "127.0.0.1:4222"),
        ("files.example/x", "files.example/x"),
        // A `://` further on is no scheme (the change review).
        (
            "u:S3CRET@127.0.0.1:21099/x?cb=http://a",
            "REDACTED@127.0.0.1:21099/x?cb=http://a",
        ),
        ("//u:S3CRET@h/?r=https://x", "//REDACTED@h/?r=https://x"),
    ] {
        assert_eq!(hide_userinfo(url), hidden, "{url}");
        assert!(!redact_url(url).contains("S3CRET") && !redact_url(url).contains("pa/ss"));
    }
}

#[test]
fn redaction() {
    assert_eq!(redact_query("/h?token=s3cret&x=1"), "/h?token=REDACTED&x=1");
    assert_eq!(redact_query("/h?x=1&TOKEN=s3cret"), "/h?x=1&TOKEN=REDACTED");
    assert_eq!(redact_query("/h"), "/h");
    assert_eq!(
        loggable_unknown_path("/hooks/tok/cf64d0da09d3e1f2a3b46f?access_token=A&x"),
        "/hooks/tok/REDACTED(22)?access_token=REDACTED&x"
    );
    assert_eq!(loggable_unknown_path("/hooks/runway"), "/hooks/runway");
    // A value with no name (`?<token>`): long ones by their length only.
    assert_eq!(
        redact_query_values("/hooks/t?RTOKENq7ZsecretA&x&a=b"),
        "/hooks/t?REDACTED(16)&x&a=REDACTED"
    );
    assert_eq!(loggable_unknown_path("/h?cf64d0da09d3e1f2a3b46f"), "/h?REDACTED(22)");
    // A base64 token with its padding: the `=` splits no name from a value
    // (its key was shown, observability review, stop 62).
    for q in [
        "U0VLUklUc2Vrcml0VE9LRU4xMjM0NTY3OA==",
        "U0VLUklUc2Vrcml0VE9LRU4xMjM0NTY3OA=",
    ] {
        let n = q.len();
        assert_eq!(redact_query(&format!("/h?{q}")), format!("/h?REDACTED({n})"));
        assert_eq!(
            redact_query_values(&format!("/h?a=1&{q}")),
            format!("/h?a=REDACTED&REDACTED({n})")
        );
        assert_eq!(loggable_unknown_path(&format!("/h?{q}")), format!("/h?REDACTED({n})"));
    }
    // Padded to 16 characters, or with its padding percent-encoded (the
    // change review: shown as a key).
    assert_eq!(redact_query("/h?QUJDREVGR0hJSw=="), "/h?REDACTED(16)");
    assert_eq!(redact_query("/h?QUJDREVGR0hJSktMTU5PUA=%3D"), "/h?REDACTED(26)");
    // A short name, or a long one that is no base64, with nothing after it stays.
    assert_eq!(redact_query("/h?debug="), "/h?debug=");
    assert_eq!(
        redact_query("/h?verification_request_id="),
        "/h?verification_request_id="
    );
    // Keys are compared decoded, as presented_token reads them.
    assert_eq!(redact_query("/h?tok%65n=s3cret"), "/h?tok%65n=REDACTED");
    assert_eq!(
        redact_query("/h?a=1&%74%6F%6B%65%6E=s3cret"),
        "/h?a=1&%74%6F%6B%65%6E=REDACTED"
    );
    assert_eq!(
        presented_tokens(Some("tok%65n=s3cret"), &HeaderMap::new()),
        vec!["s3cret".to_string()]
    );
}

#[test]
fn forwarded_for() {
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let peer: IpAddr = "10.1.1.1".parse().unwrap();
    let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.2.2.2")]);
    let known = |s: &str| Source::Known(s.parse().unwrap());
    // Right-most untrusted entry: the one the trusted proxy saw.
    assert_eq!(client_ip(peer, &h, &trusted), known("203.0.113.9"));
    // From an untrusted peer the header is ignored.
    let outsider: IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(client_ip(outsider, &h, &trusted), Source::Known(outsider));
    // Garbage where the client should be: unknown, never the proxy.
    for junk in ["not-an-ip", "", "6.6.6.6,", "6.6.6.6,,10.2.2.2", "fe80::1%eth0"] {
        let h = headers(&[("x-forwarded-for", junk)]);
        assert_eq!(client_ip(peer, &h, &trusted), Source::Unknown, "{junk:?}");
    }
    // Garbage left of the client does not matter; header lines are read in order.
    let h = headers(&[("x-forwarded-for", "junk, 6.6.6.6")]);
    assert_eq!(client_ip(peer, &h, &trusted), known("6.6.6.6"));
    let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "7.7.7.7, 10.3.3.3")]);
    assert_eq!(client_ip(peer, &h, &trusted), known("7.7.7.7"));
    let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "junk")]);
    assert_eq!(client_ip(peer, &h, &trusted), Source::Unknown);
    // Only trusted hops: the left-most; no header: the peer.
    let h = headers(&[("x-forwarded-for", "10.4.4.4, 10.2.2.2")]);
    assert_eq!(client_ip(peer, &h, &trusted), known("10.4.4.4"));
    assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), Source::Known(peer));
    // IPv4-mapped IPv6 peers are IPv4.
    let mapped = known("::ffff:127.0.0.1");
    assert!(ip_allowed(mapped, &["127.0.0.0/8".parse().unwrap()]));
    assert!(ip_allowed(mapped, &[]));
    assert!(!ip_allowed(known("127.0.0.2"), &["127.0.0.1/32".parse().unwrap()]));
    // An unknown client passes no allowlist, and only an absent one lets it in.
    assert!(!ip_allowed(Source::Unknown, &["0.0.0.0/0".parse().unwrap()]));
    assert!(ip_allowed(Source::Unknown, &[]));
}
