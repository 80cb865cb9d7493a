//! Settings that parse but cannot work are refused, each naming its key and
//! placed on the line that sets it (including what version 0.1 clamped or
//! accepted silently).

use super::tests::{minimal, parse};

#[test]
fn settings_that_cannot_work_are_refused() {
    let server = |extra: &str| {
        minimal("").replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"127.0.0.1:0\"]\n{extra}"),
        )
    };
    let sub = |extra: &str| {
        minimal("").replace(
            "url = \"http://127.0.0.1:9000/\"",
            &format!("url = \"http://127.0.0.1:9000/\"\n{extra}"),
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (server("read_timeout = \"0s\""), "server.read_timeout", "greater than 0"),
        (server("idle_timeout = \"0s\""), "server.idle_timeout", "greater than 0"),
        (
            minimal("") + "\n[delivery]\ntimeout = \"0s\"\n",
            "delivery.timeout",
            "greater than 0",
        ),
        (
            sub("timeout = \"0ms\""),
            "routes[0].subscribers[0].timeout",
            "greater than 0",
        ),
        // It said `cannot open : No such file or directory` (TLS review, stop 66).
        (
            server("tls = { cert = \"\", key = \"k.pem\" }"),
            "server.tls.cert",
            "is empty: name a file",
        ),
        (
            minimal(r#"signature = { scheme = "kie", secret = "k", tolerance = "0s" }"#),
            "routes[0].signature.tolerance",
            "greater than 0",
        ),
        (
            minimal(
                r#"signature = { scheme = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", tolerance = "0s" }"#,
            ),
            "routes[0].signature.tolerance",
            "greater than 0",
        ),
        (
            minimal("json = false\nsignature = { scheme = \"kie\", secret = \"k\" }"),
            "routes[0].signature",
            "json = true",
        ),
        (
            minimal("").replace("/hooks/r", "/hooks/my route"),
            "routes[0].path",
            "invalid path",
        ),
        (minimal("allow_ips = []"), "routes[0].allow_ips", "empty"),
        (minimal("tokens = [\"   \"]"), "routes[0].tokens[0]", "blank"),
        (
            minimal("tokens = [\"ok\", \" padded\"]"),
            "routes[0].tokens[1]",
            "spaces",
        ),
        (minimal("") + "\n[admin]\ntoken = \" \"\n", "admin.token", "blank"),
        (
            minimal(r#"signature = { scheme = "kie", secret = "   " }"#),
            "routes[0].signature.secret",
            "blank",
        ),
        (
            minimal(r#"signature = { scheme = "hmac-sha256", header = "x-sig", secret = " \t " }"#),
            "routes[0].signature.secret",
            "blank",
        ),
        (server("max_body = \"1EiB\""), "server.max_body", "memory"),
        (
            minimal(
                r#"signature = { scheme = "standard-webhooks", secret = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "nope!"] }"#,
            ),
            "routes[0].signature.secret[1]",
            "invalid signing secret",
        ),
        (
            sub("secret = \"nope\""),
            "routes[0].subscribers[0].secret",
            "expected \"whsec_\" followed by base64 (generate one with: hookrelay gen-secret)",
        ),
        (
            minimal(r#"signature = { scheme = "standard-webhooks", secret = 5 }"#),
            "routes[0].signature.secret",
            "expected a string",
        ),
        (
            minimal(r#"signature = { scheme = "hmac-sha256", header = "x-sig", secret = { vault = "k" } }"#),
            "routes[0].signature.secret",
            "unknown secret source",
        ),
    ];
    let wrong = refused_wrongly(cases.into_iter().chain(silently_clamped_before()));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Settings version 0.1 clamped or accepted silently; each must be refused
/// naming its key.
fn silently_clamped_before() -> Vec<(String, &'static str, &'static str)> {
    let sub = |extra: &str| {
        minimal("").replace(
            "url = \"http://127.0.0.1:9000/\"",
            &format!("url = \"http://127.0.0.1:9000/\"\n{extra}"),
        )
    };
    vec![
        (minimal("") + "\n[delivery]\nretry = []\n", "delivery.retry", "empty"),
        (
            minimal("") + "\n[log]\nlevel = \"warning\"\n",
            "log.level",
            "directive 1 is not a level",
        ),
        (sub("retry = []"), "routes[0].subscribers[0].retry", "empty"),
        (
            sub("retry = [\"1s\", \"0s\"]"),
            "routes[0].subscribers[0].retry[1]",
            "zero",
        ),
        (
            minimal("") + "\n[delivery]\nconcurrency = 0\n",
            "delivery.concurrency",
            "at least 1",
        ),
        (
            sub("concurrency = 0"),
            "routes[0].subscribers[0].concurrency",
            "at least 1",
        ),
        (
            minimal("") + "\n[delivery]\ncircuit_threshold = 0\n",
            "delivery.circuit_threshold",
            "at least 1",
        ),
        (
            sub("circuit_threshold = 0"),
            "routes[0].subscribers[0].circuit_threshold",
            "at least 1",
        ),
        (
            minimal("").replace(
                "listen = [\"127.0.0.1:0\"]",
                "listen = [\"127.0.0.1:0\"]\nhttp2_max_streams = 0",
            ),
            "server.http2_max_streams",
            "at least 1",
        ),
        (
            minimal("") + "\n[delivery]\ntimeout = \"-5s\"\n",
            "delivery.timeout",
            "invalid duration",
        ),
    ]
}

/// What an operator can write that no client, or no relay, could then use:
/// refused at the key's line rather than a route no request reaches, a
/// token no header can carry or a subscriber no delivery can reach.
#[test]
fn settings_nothing_could_use_are_refused() {
    let path = |p: &str| minimal("").replace("/hooks/r", p);
    let cases: Vec<(String, &str, &str)> = vec![
        (path("/hooks/a#b"), "routes[0].path", "no query or '#'"),
        (
            minimal("").replace(
                "url = \"http://127.0.0.1:9000/\"",
                "pull = { token = \"abcdefghijklmnop\\nqrstuvwxyz\" }",
            ),
            "routes[0].subscribers[0].pull.token",
            "control character",
        ),
        (
            minimal("") + "\n[admin]\ntoken = \"abcdefghijklmnop\\tqrstuvwxyzABCDEF\"\n",
            "admin.token",
            "control character",
        ),
        (
            minimal("").replace("http://127.0.0.1:9000/", "http://:39000/callbacks"),
            "routes[0].subscribers[0].url",
            "with a host",
        ),
    ];
    let wrong = refused_wrongly(cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Still taken: escapes, and a dot inside a segment; a route token with
    // a tab (it can come percent-encoded in the query: `?token=a%09b`).
    parse(&path("/hooks/%C3%A9t%C3%A9/v1.2/.well-known")).unwrap();
    parse(&minimal("tokens = [\"abcdefghijklmnop\\tqrstuvwxyz\"]")).unwrap();
}

/// A secret from an environment variable that holds bytes, not text, is
/// named as such (it was called "not set").
#[test]
fn a_secret_variable_that_is_not_text_is_named_so() {
    use std::os::unix::ffi::OsStrExt;
    let var = "HOOKRELAY_TEST_TOKEN_NOT_UTF8";
    std::env::set_var(var, std::ffi::OsStr::from_bytes(b"tok\xffen-0123456789"));
    let e = parse(&minimal(&format!("tokens = [{{ env = \"{var}\" }}]"))).expect_err("refused");
    assert_eq!(e.key, "routes[0].tokens[0]", "{e}");
    assert!(
        e.to_string()
            .contains(&format!("environment variable {var} is not valid UTF-8 text")),
        "{e}"
    );
}

/// What most clients cannot reach, or what reads as something it is not,
/// but ran before: warned about, by key, and still taken.
#[test]
fn settings_that_ran_before_but_mislead_are_warned_about() {
    let path = |p: &str| minimal("").replace("/hooks/r", p);
    let sub = |extra: &str| {
        minimal("").replace(
            "url = \"http://127.0.0.1:9000/\"",
            &format!("url = \"http://127.0.0.1:9000/\"\n{extra}"),
        )
    };
    for (text, key, needle) in [
        (path("/hooks/\u{e9}t\u{e9}"), "routes[0].path", "%C3%A9"),
        (path("/hooks/./d"), "routes[0].path", "'..' segment"),
        (path("/hooks/../d"), "routes[0].path", "'..' segment"),
        (sub("secret = []"), "routes[0].subscribers[0].secret", "sent unsigned"),
        (
            minimal("") + "\n[store]\npath = \"\"\n",
            "store.path",
            "store.path = \".\"",
        ),
    ] {
        let c = parse(&text).unwrap_or_else(|e| panic!("{key}: refused: {e}"));
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains(&format!("key `{key}`")) && w.contains(needle)),
            "{key}: {:?}",
            c.warnings
        );
    }
    // Their plain forms: no such warning.
    let c = parse(&path("/hooks/%C3%A9t%C3%A9/v1.2/.well-known")).unwrap();
    assert!(
        !c.warnings.iter().any(|w| w.contains("routes[0].path")),
        "{:?}",
        c.warnings
    );
}

/// What went wrong with configs each expected to be refused at `key` with
/// an error containing `needle`, placed on the line that sets the key, and
/// not showing the test's token text (`qrstuvwxyz`).
fn refused_wrongly(cases: impl IntoIterator<Item = (String, &'static str, &'static str)>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (text, key, needle) in cases {
        match parse(&text) {
            Ok(_) => wrong.push(format!("{key} ({needle}): accepted")),
            Err(e) if e.key != key || !e.to_string().contains(needle) => {
                wrong.push(format!("{key}: wanted an error containing {needle:?}, got {e}"))
            }
            Err(e) => {
                // Its line is the one that sets the key.
                let name = key.rsplit('.').next().and_then(|k| k.split('[').next()).unwrap_or(key);
                let line = e.position.and_then(|(l, _)| text.lines().nth(l - 1));
                if !line.is_some_and(|l| l.contains(name)) {
                    wrong.push(format!("{key}: not placed on its line ({line:?}): {e}"));
                }
                if e.to_string().contains("qrstuvwxyz") {
                    wrong.push(format!("{key}: the token is shown: {e}"));
                }
            }
        }
    }
    wrong
}
