//! A config error never quotes the value it refuses: a secret written with
//! the wrong type (`tokens = "<token>"` where a list is expected, `provider =
//! "<api key>"`, `pull = "<token>"`, `headers = "<value>"`) would otherwise
//! end up in the reload refusal the daemon logs, in `check-config`'s output
//! and in the start-up error. The error still names the file, the key, the
//! line and column and the problem. From review 18, finding 3.
//!
//! A URL refused *because* it carries credentials or a query
//! (`routes[].provider.base_url`, `server.public_url`, an ACME `directory`)
//! is shown with `REDACTED@` and query values `REDACTED` (From review 25,
//! finding 2); a refused subscriber URL as `scheme://host/…`.

use crate::common;

use std::time::Duration;

use common::*;

const SECRET: &str = "rt-3f9c2b7d41e6a8c0-secret";

/// The route's (or its first subscriber's) `key` set to the secret, a string
/// where something else is expected.
fn secret_as(base: &TestConfig, key: &'static str, on_subscriber: bool) -> TestConfig {
    base.clone().raw(move |t| {
        let route = t["routes"].as_array_mut().unwrap()[0].as_table_mut().unwrap();
        let table = if on_subscriber {
            route["subscribers"].as_array_mut().unwrap()[0].as_table_mut().unwrap()
        } else {
            route
        };
        table.insert(key.into(), toml::Value::String(SECRET.into()));
    })
}

/// The operator rotates the token, forgets the brackets and sends SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_the_wrong_type_is_not_quoted_in_the_logged_reload_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&base.write(), &[]);
    secret_as(&base, "tokens", false).write();
    bin.signal("HUP");
    log_until(|| bin.log_text(), "reload refused", Duration::from_secs(10)).await;
    let (_, _, err) = cli(&["check-config", "--config", base.path().to_str().unwrap()]);
    let shown = format!("{}\n{err}", bin.log_text());
    assert!(!shown.contains(SECRET), "the token is quoted in the refusal:\n{shown}");
    let refusal = shown.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        refusal.contains("key `routes[0].tokens` (line ")
            && refusal.contains("invalid type: string, expected a sequence"),
        "the refusal names the key, its line and the problem: {refusal}"
    );
}

/// `check-config` and `run` refuse the file with the key, line and problem,
/// and without the value, for each secret a natural mistake leaks.
#[tokio::test]
async fn check_config_and_start_up_do_not_quote_a_secret_of_the_wrong_type() {
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let cases = [
        (
            "tokens",
            false,
            "routes[0].tokens",
            "invalid type: string, expected a sequence",
        ),
        (
            "provider",
            false,
            "routes[0].provider",
            "invalid type: string, expected",
        ),
        (
            "pull",
            true,
            "routes[0].subscribers[0].pull",
            "invalid type: string, expected",
        ),
        (
            "headers",
            true,
            "routes[0].subscribers[0].headers",
            "invalid type: string, expected a map",
        ),
    ];
    for (key, on_subscriber, path, problem) in cases {
        let file = secret_as(&base, key, on_subscriber).write();
        let file = file.to_str().unwrap();
        for args in [["check-config", "--config", file], ["run", "--config", file]] {
            let out = cli_output(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted `{key} = <string>`: {err}");
            assert!(!err.contains(SECRET), "{args:?} quotes the `{key}` value:\n{err}");
            assert!(
                err.contains(file)
                    && err.contains(&format!("key `{path}` (line "))
                    && err.contains(", column ")
                    && err.contains(problem),
                "{args:?}: the error names the file, key `{path}`, its line and column and {problem:?}:\n{err}"
            );
        }
    }
}

/// A working config with `server_extra` added to `[server]` and
/// `route_extra` to its route; check-config's (success, stdout, stderr).
fn check_with(server_extra: &str, route_extra: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n{server_extra}\n\
         [[routes]]\nname = \"r\"\npath = \"/h\"\ntokens = [\"t\"]\n{route_extra}\n\
         [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/\"\n"
    );
    std::fs::write(&path, text).unwrap();
    cli(&["check-config", "--config", path.to_str().unwrap()])
}

/// A `kie-runway` route whose provider API is at `base_url`.
fn provider_at(base_url: &str) -> String {
    format!("preset = \"kie-runway\"\nprovider = {{ api_key = \"k\", base_url = \"{base_url}\" }}")
}

#[test]
fn provider_base_url_with_credentials_is_refused_without_quoting_them() {
    let (ok, _, err) = check_with("", &provider_at(&format!("https://ops:{SECRET}@api.example.com")));
    assert!(!ok, "credentials in base_url are refused");
    assert!(
        err.contains("routes[0].provider.base_url") && err.contains("must not carry credentials"),
        "{err}"
    );
    assert!(
        err.contains("REDACTED@api.example.com"),
        "the URL is shown redacted:\n{err}"
    );
    assert!(!err.contains(SECRET), "the refusal quotes the password:\n{err}");
}

#[test]
fn provider_base_url_with_a_query_is_refused_without_quoting_its_values() {
    let (ok, _, err) = check_with("", &provider_at(&format!("https://api.example.com/?key={SECRET}")));
    assert!(!ok, "a query in base_url is refused");
    assert!(err.contains("must not have a query string"), "{err}");
    assert!(
        err.contains("?key=REDACTED"),
        "the query's names are shown, not its values:\n{err}"
    );
    assert!(!err.contains(SECRET), "the refusal quotes a query value:\n{err}");
}

/// A refused subscriber URL is shown as the admin API shows subscribers,
/// `scheme://host/…`: its path may be its secret (a Slack or Discord
/// capability URL).
#[test]
fn a_refused_subscriber_url_is_shown_without_its_path() {
    for url in [
        format!("ftp://hooks.example.com/services/T000/B000/{SECRET}"),
        format!("hooks.example.com/services/T000/B000/{SECRET}"),
    ] {
        let bad = format!("[[routes.subscribers]]\nname = \"bad\"\nurl = \"{url}\"\n");
        let (ok, _, err) = check_with("", &bad);
        assert!(!ok, "{url} is refused");
        assert!(
            err.contains("routes[0].subscribers[0].url") && err.contains("hooks.example.com/…"),
            "the error names the key and the host:\n{err}"
        );
        assert!(!err.contains(SECRET), "the refusal quotes the URL's path:\n{err}");
    }
}

#[test]
fn public_url_with_credentials_or_a_query_is_refused_without_quoting_them() {
    for url in [
        format!("https://ops:{SECRET}@hooks.example.com"),
        format!("https://:{SECRET}@hooks.example.com"),
        format!("https://hooks.example.com/?token={SECRET}"),
    ] {
        let (ok, _, err) = check_with(&format!("public_url = \"{url}\""), "");
        assert!(!ok, "{url} is refused");
        assert!(err.contains("server.public_url"), "{err}");
        assert!(
            !err.contains(SECRET),
            "server.public_url's secret part is quoted:\n{err}"
        );
    }
}

#[test]
fn acme_directory_credentials_are_not_quoted() {
    let acme = |directory: &str| {
        format!(
            "tls = {{ acme = {{ domains = [\"hooks.example.com\"], email = \"ops@example.com\", \
             directory = \"{directory}\" }} }}"
        )
    };
    // Refused (plain http): the refusal shows the URL redacted.
    let (ok, _, err) = check_with(&acme(&format!("http://eab:{SECRET}@acme.example.com/dir")), "");
    assert!(!ok, "a plain-http directory is refused");
    assert!(err.contains("must be an https:// URL"), "{err}");
    assert!(
        !err.contains(SECRET),
        "the refusal quotes the directory's password:\n{err}"
    );
    // Accepted: check-config's summary shows it redacted too.
    let (ok, out, err) = check_with(&acme(&format!("https://eab:{SECRET}@acme.example.com/dir")), "");
    assert!(ok, "{err}");
    assert!(out.contains("TLS: ACME certificate"), "{out}");
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "check-config quotes the password:\n{out}{err}"
    );
}

/// A mistyped `log.level` is refused without quoting it (like a duration
/// with an unknown unit): the value may be a secret written under the wrong
/// key, and `check-config` and the journal print the error. It
/// names the allowed levels instead. From review 26, finding 5.
#[test]
fn a_mistyped_log_level_is_refused_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = TestConfig::new(dir.path())
        .log_level("sk-7d41e6a8c0")
        .subscriber(Subscriber::new("s", DOWN))
        .write();
    let shown = match hookrelay::Config::load(&path) {
        Ok(_) => panic!("the config should be refused"),
        Err(e) => e.to_string(),
    };
    assert!(shown.contains("log.level"), "{shown}");
    assert!(!shown.contains("sk-7d41"), "the value is quoted: {shown}");
    assert!(
        shown.contains("is not a level: use one of trace, debug, info, warn, error, off"),
        "{shown}"
    );
}

/// A short admin token on a non-loopback `admin.listen`: `check-config` warns
/// (file, key, what is wrong) and still accepts the file; the token is not
/// shown.
#[test]
fn check_config_warns_about_a_short_admin_token_off_loopback_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = "adm-7q2w";
    let file = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .admin_listen("0.0.0.0:0")
        .admin_token(token)
        .write();
    let (ok, _, err) = cli(&["check-config", "--config", file.to_str().unwrap()]);
    assert!(ok, "a weak admin token is refused: {err}");
    let line = err.lines().find(|l| l.contains("key `admin.token`: the admin token"));
    let line = line.unwrap_or_else(|| panic!("no admin.token warning:\n{err}"));
    assert!(
        line.starts_with("warning: ") && line.contains(file.to_str().unwrap()),
        "{line}"
    );
    assert!(line.contains("shorter than 32"), "{line}");
    assert!(!err.contains(token), "the token is shown:\n{err}");
}

/// `[::ffff:127.0.0.1]` (an IPv4-mapped loopback address, what a dual-stack
/// listener shows for 127.0.0.1) is reachable only from this host, like
/// `127.0.0.1`: a weak token is warned about for DNS rebinding (web pages
/// on this host), not as reachable from other hosts. From review 31, finding 5.
#[test]
fn a_weak_token_on_an_ipv4_mapped_loopback_listener_is_warned_about_as_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let file = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", DOWN))
        .admin_listen("[::ffff:127.0.0.1]:0")
        .admin_token("adm-7q2w")
        .write();
    let (ok, _, err) = cli(&["check-config", "--config", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let line = err.lines().find(|l| l.contains("key `admin.token`: the admin token"));
    let line = line.unwrap_or_else(|| panic!("no admin.token warning:\n{err}"));
    assert!(
        line.contains("is a loopback address") && line.contains("DNS rebinding") && !line.contains("other hosts"),
        "a loopback listener is warned about as reachable from other hosts:\n{line}"
    );
    assert!(!err.contains("adm-7q2w"), "the token is shown:\n{err}");
}
