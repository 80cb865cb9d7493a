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
