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

/// A JSON pointer with a '~' that is not '~0' or '~1' never matches (it was
/// taken: a dedupe key falling back to the body's hash for every callback,
/// a filter skipping all), and an `hmac-sha256` prefix with a control
/// character can be in no header (every callback `401`): refused, naming
/// the key.
#[test]
fn pointers_with_a_bad_escape_and_a_prefix_no_header_holds_are_refused() {
    let refused = |text: String, key: &str, why: &str| {
        let e = parse(&text).expect_err(key);
        assert_eq!(e.key, key, "{e}");
        assert!(e.to_string().contains(why), "{e}");
    };
    refused(
        minimal(r#"dedupe_key = ["/a~2"]"#),
        "routes[0].dedupe_key[0]",
        "'~' must be followed by 0",
    );
    refused(
        minimal(r#"dedupe_key = ["/a~"]"#),
        "routes[0].dedupe_key[0]",
        "'~' must be followed by 0",
    );
    parse(&minimal(r#"dedupe_key = ["/a~0b~1c"]"#)).expect("escapes as RFC 6901 writes them");
    let filtered = minimal("").replace(
        "url = \"http://127.0.0.1:9000/\"",
        "url = \"http://127.0.0.1:9000/\"\nfilter = { \"/status~x\" = [\"done\"] }",
    );
    refused(filtered, "routes[0].subscribers[0].filter", "'~' must be followed by 0");
    let hmac = |prefix: &str| {
        minimal(&format!(
            r#"signature = {{ scheme = "hmac-sha256", secret = "a-secret-of-some-length", header = "x-sig", prefix = "{prefix}" }}"#
        ))
    };
    refused(hmac("sha256=\\n"), "routes[0].signature.prefix", "control character");
    parse(&hmac("sha256=")).expect("a usual prefix");
}
