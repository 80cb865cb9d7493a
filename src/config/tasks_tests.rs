//! Config tests of expected tasks: `reconcile` (defaults, bounds, what it
//! needs), `verify`, and `server.public_url`.

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(server: &str, route: &str) -> Result<Config, ConfigError> {
    let text = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
{server}

[store]
path = "/var/lib/hookrelay"

[[routes]]
name = "r"
path = "/hooks/r"
{route}
allow_anyone = true
[[routes.subscribers]]
name = "s"
url = "http://127.0.0.1:9000/"
"#
    );
    Config::parse(Path::new("/etc/hookrelay/test.toml"), &text)
}

const KEYED: &str = r#"preset = "kie-veo"
provider = { api_key = "sk-test", base_url = "http://127.0.0.1:1" }"#;
const PUBLIC: &str = r#"public_url = "https://hooks.example.com/""#;

#[test]
fn reconcile_defaults_and_public_url() {
    let c = parse(PUBLIC, &format!("{KEYED}\nreconcile = {{}}\nverify = \"fetch\"")).unwrap();
    let r = &c.routes[0];
    assert_eq!(
        r.reconcile,
        Some(Reconcile {
            after: Duration::from_secs(600),
            every: Duration::from_secs(30),
            give_up: Duration::from_secs(86400),
        })
    );
    assert_eq!(r.verify, Verify::Fetch);
    assert_eq!(r.product(), Some(crate::provider::Product::Veo));
    assert_eq!(c.server.public_url.as_deref(), Some("https://hooks.example.com"));
    let plain = parse("", KEYED).unwrap();
    assert_eq!((plain.routes[0].reconcile, plain.routes[0].verify), (None, Verify::Off));
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        (
            PUBLIC,
            "reconcile = { every = \"1s\" }",
            "routes[0].reconcile",
            "preset",
        ),
        (
            PUBLIC,
            &format!("{KEYED}\nreconcile = {{ every = \"10ms\" }}"),
            "routes[0].reconcile.every",
            "100ms",
        ),
        (
            PUBLIC,
            &format!("{KEYED}\nreconcile = {{ give_up = \"0s\" }}"),
            "routes[0].reconcile.give_up",
            "greater than 0",
        ),
        (
            PUBLIC,
            &format!("{KEYED}\nreconcile = {{ after = \"2h\", give_up = \"1h\" }}"),
            "routes[0].reconcile.give_up",
            "longer than after",
        ),
        (
            PUBLIC,
            &format!("{KEYED}\nreconcile = {{ every = \"soon\" }}"),
            "reconcile",
            "invalid duration",
        ),
        (
            r#"public_url = "https://hooks.example.com:0""#,
            &format!("{KEYED}\nreconcile = {{}}"),
            "server.public_url",
            "port must be 1 to 65535",
        ),
        (
            PUBLIC,
            "preset = \"kie-veo\"\nprovider = { api_key = \"sk-test\", base_url = \"http://127.0.0.1:99999\" }",
            "routes[0].provider.base_url",
            "port must be 1 to 65535",
        ),
        (
            PUBLIC,
            &format!("{KEYED}\nverify = \"always\""),
            "routes[0].verify",
            "unknown verify mode",
        ),
        (
            PUBLIC,
            "preset = \"kie-veo\"\nverify = \"fetch\"",
            "routes[0].verify",
            "api_key",
        ),
        (
            "",
            &format!("{KEYED}\nreconcile = {{}}"),
            "server.public_url",
            "submit proxy",
        ),
        ("public_url = \"ftp://x\"", KEYED, "server.public_url", "http(s)"),
        (
            "public_url = \"https://h/?a=b\"",
            KEYED,
            "server.public_url",
            "no query",
        ),
    ];
    for (server, route, key, words) in cases {
        let e = parse(server, route).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(words), "{route}: {e}");
    }
}

/// A body-hash dedupe key never matches a polled result against the real
/// callback (the relay's bytes are its own): both were delivered.
#[test]
fn reconcile_refuses_a_body_dedupe_key() {
    let err = parse(PUBLIC, &format!("{KEYED}\nreconcile = {{}}\ndedupe_key = []"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes[0].dedupe_key") && err.contains("both would be delivered") && err.contains("task id"),
        "{err}"
    );
    // The whole document (the pointer "") differs as much.
    let err = parse(
        PUBLIC,
        &format!("{KEYED}\nreconcile = {{}}\ndedupe_key = [\"/data/taskId\", \"\"]"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("routes[0].dedupe_key")
            && err.contains("whole document")
            && err.contains("both would be delivered"),
        "{err}"
    );
    // Without reconcile, or with the preset's key, it stands.
    parse("", &format!("{KEYED}\ndedupe_key = []")).unwrap();
    parse(PUBLIC, &format!("{KEYED}\nreconcile = {{}}")).unwrap();
}
