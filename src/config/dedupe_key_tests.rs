//! Which dedupe key a route's settings give it.

use super::tests::{minimal, parse};

/// A `standard-webhooks` route keys callbacks by their `webhook-id` unless
/// it names a key (`dedupe_key = []`: the body's hash), also on a route
/// that does not parse JSON.
#[test]
fn a_standard_webhooks_route_keys_by_the_message_id() {
    use crate::dedupe::DedupeKey;
    let sw = r#"signature = { scheme = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }"#;
    let key = |extra: &str| {
        parse(&minimal(&format!("{sw}\n{extra}"))).unwrap().routes[0]
            .dedupe_key
            .clone()
    };
    assert_eq!(key(""), DedupeKey::MessageId);
    assert_eq!(key("json = false"), DedupeKey::MessageId);
    assert_eq!(key("dedupe_key = []"), DedupeKey::Body);
    assert_eq!(key(r#"dedupe_key = ["/id"]"#), DedupeKey::Pointers(vec!["/id".into()]));
    assert_eq!(parse(&minimal("")).unwrap().routes[0].dedupe_key, DedupeKey::Body);
}

/// An `hmac-sha256` prefix with a control character (a newline) can be in
/// no header: every callback was `401`; refused, naming the key (a tab is
/// a header value's own). A '~' not written '~0' or '~1' in a pointer is
/// taken as itself, as serde_json reads it (`/a~2` matches a key `a~2`).
#[test]
fn a_prefix_no_header_holds_is_refused() {
    parse(&minimal(r#"dedupe_key = ["/a~2"]"#)).expect("a key named a~2");
    let hmac = |prefix: &str| {
        minimal(&format!(
            r#"signature = {{ scheme = "hmac-sha256", secret = "a-secret-of-some-length", header = "x-sig", prefix = "{prefix}" }}"#
        ))
    };
    let e = parse(&hmac("sha256=\\n")).expect_err("a newline");
    assert_eq!(e.key, "routes[0].signature.prefix", "{e}");
    assert!(e.to_string().contains("control character"), "{e}");
    parse(&hmac("sha256=")).expect("a usual prefix");
    parse(&hmac("v1\\t")).expect("a tab");
}
