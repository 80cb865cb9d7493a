//! Promise 5 for a callback URL's query, in the real binary's JSON log at
//! trace level: a provider set up with the token as a bare query value
//! (`/hooks/t?<token>`, no `token=`), on a route or on no route, is refused
//! and logged without it (its length only), as are named values and a
//! token put where a pull subscriber's name goes (`/pull/<token>`); and every
//! line is one valid JSON object, whatever the request carried.

use crate::common;

use common::*;
use http::StatusCode;

const TOKEN: &str = "RTOKENq7ZsecretA";
/// Sent as a bare query value: a credential-like string that is no token.
const BARE: &str = "BAREVALUEk3Jsecret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_values_without_a_name_are_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .edit_route("t", |r| r.tokens([TOKEN]))
        .subscriber(Subscriber::new("s", DOWN))
        .log_format("json")
        .log_level("trace");
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "")]);
    let addr = bin.addr;
    for (path, want) in [
        (format!("/hooks/t?{TOKEN}"), StatusCode::UNAUTHORIZED),
        (format!("/hooks/t?x&{BARE}%22%5C%0A%E2%80%A8"), StatusCode::UNAUTHORIZED),
        (format!("/nope?{TOKEN}"), StatusCode::NOT_FOUND),
        // The token where a pull subscriber's name goes.
        (format!("/pull/{TOKEN}"), StatusCode::METHOD_NOT_ALLOWED),
        (format!("/hooks/t?token={TOKEN}&sig={BARE}"), StatusCode::OK),
    ] {
        let (s, _, _) = post(addr, &path, &[], runway(&path)).await;
        assert_eq!(s, want, "{path}");
    }
    log_until(|| bin.log_text(), "no route", secs(10)).await;
    log_until(|| bin.log_text(), "callback refused", secs(10)).await;
    bin.signal("TERM");
    let (_, bin) = bin.exit().await;
    let log = bin.log_text();
    assert!(log.contains("TRACE"), "not at trace level");
    for secret in [TOKEN, BARE] {
        if let Some(line) = log.lines().find(|l| l.contains(secret)) {
            panic!("{secret} logged: {line}");
        }
    }
    assert!(log.contains("REDACTED(16)"), "the bare token's length not shown: {log}");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
        assert!(v.is_object() && v["level"].is_string(), "{line}");
    }
}
