//! A value of the wrong type is refused without being quoted: it may be a
//! secret written without its brackets or table (`tokens = "<token>"`), and
//! the refusal is logged and printed. The key, line and column say where.

use super::tests::{minimal, parse};
use super::without_values;

const SECRET: &str = "sk-7d41e6a8c0-\"quoted\"-\\-secret";

fn toml_str(s: &str) -> String {
    toml::Value::String(s.into()).to_string()
}

#[test]
fn a_secret_of_the_wrong_type_is_refused_without_its_value() {
    let secret = toml_str(SECRET);
    let sub = |extra: &str| minimal("").replace("url = \"http://127.0.0.1:9000/\"", extra);
    let cases: Vec<(String, &str, usize, &str)> = vec![
        (
            minimal(&format!("tokens = {secret}")),
            "routes[0].tokens",
            7,
            "invalid type: string, expected a sequence",
        ),
        (
            minimal(&format!("provider = {secret}")),
            "routes[0].provider",
            7,
            "invalid type: string, expected",
        ),
        (
            sub(&format!("url = \"http://127.0.0.1:9000/\"\nheaders = {secret}")),
            "routes[0].subscribers[0].headers",
            12,
            "invalid type: string, expected a map",
        ),
        (
            sub(&format!("pull = {secret}")),
            "routes[0].subscribers[0].pull",
            11,
            "invalid type: string, expected",
        ),
        (
            minimal(&format!("signature = {{ scheme = {secret}, secret = \"k\" }}")),
            "routes[0].signature.scheme",
            7,
            "unknown variant, expected",
        ),
    ];
    for (text, key, line, needle) in cases {
        let e = parse(&text).expect_err("config should be refused");
        let shown = e.to_string();
        assert!(!shown.contains("sk-7d41"), "the value is quoted: {shown}");
        assert_eq!(e.key, key, "{shown}");
        assert_eq!(e.position.map(|p| p.0), Some(line), "{shown}");
        assert!(shown.contains(needle), "{shown} should contain {needle:?}");
    }
}

#[test]
fn serde_messages_lose_only_the_value() {
    let cases = [
        (
            r#"invalid type: string "a\"b\\", expected a sequence"#,
            "invalid type: string, expected a sequence",
        ),
        (
            r#"invalid value: string "x", expected a port"#,
            "invalid value: string, expected a port",
        ),
        (
            "invalid type: character `x`, expected a map",
            "invalid type: character, expected a map",
        ),
        (
            "unknown variant `k`, expected `a`, expected one of `kie`, `standard`",
            "unknown variant, expected one of `kie`, `standard`",
        ),
        (
            "unknown variant `k`, there are no variants",
            "unknown variant, there are no variants",
        ),
        (r#"invalid type: string "unterminated"#, "invalid type: string"),
        (
            "invalid type: integer `5`, expected a string",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "unknown field `tokn`, expected one of `tokens`",
            "unknown field `tokn`, expected one of `tokens`",
        ),
        (
            r#"invalid duration: expected a string, or one of { file = "/path" }"#,
            r#"invalid duration: expected a string, or one of { file = "/path" }"#,
        ),
    ];
    for (given, want) in cases {
        assert_eq!(without_values(given), want, "{given}");
    }
}

#[test]
fn a_mistyped_duration_or_size_is_refused_without_its_text() {
    let server = |line: &str| minimal("").replacen("[server]", &format!("[server]\n{line}"), 1);
    let cases = [
        (server("read_timeout = \"15sk-7d41e6a8c0\""), "server.read_timeout"),
        (server("read_timeout = \"sk-7d41e6a8c0\""), "server.read_timeout"),
        (server("read_timeout = \"15 sk-7d41e6a8c0\""), "server.read_timeout"),
        (
            server("read_timeout = \"15skqsevenfouroneaeight\""),
            "server.read_timeout",
        ),
        (server("max_body = \"1sk-7d41e6a8c0\""), "server.max_body"),
    ];
    for (text, key) in cases {
        let e = parse(&text).expect_err("config should be refused");
        let shown = e.to_string();
        assert!(
            !shown.contains("sk-7d41") && !shown.contains("skqseven"),
            "the value is quoted: {shown}"
        );
        assert_eq!(e.key, key, "{shown}");
        assert!(shown.contains("use e.g."), "{shown}");
    }
}

/// serde's words for our types are not shown: a table named by our struct
/// for it, an untagged size's "did not match any variant".
#[test]
fn a_wrong_type_is_said_in_the_config_file_s_words() {
    let sub = |extra: &str| minimal("").replace("url = \"http://127.0.0.1:9000/\"", extra);
    let server = |extra: &str| {
        minimal("").replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"127.0.0.1:0\"]\n{extra}"),
        )
    };
    for (text, key, needle) in [
        (
            sub("pull = \"x\""),
            "routes[0].subscribers[0].pull",
            "invalid type: string, expected a table",
        ),
        (
            server("tls = \"x\""),
            "server.tls",
            "invalid type: string, expected a table",
        ),
        (
            server("max_body = -1"),
            "server.max_body",
            "invalid size: expected a whole number of bytes",
        ),
        (
            server("max_body = 1.5"),
            "server.max_body",
            "invalid size: expected a whole number of bytes",
        ),
    ] {
        let e = parse(&text).expect_err("config should be refused");
        let shown = e.to_string();
        assert_eq!(e.key, key, "{shown}");
        assert!(shown.contains(needle), "{shown} should contain {needle:?}");
        assert!(!shown.contains("Raw") && !shown.contains("untagged"), "{shown}");
    }
}
