//! Pull subscribers in the config file: what is accepted, and every refusal
//! naming file, key and line.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::auth::Secret;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text).map(super::tests::without_checkouts_tmp)
}

/// One route with one subscriber whose table body is `sub` (line 9 onwards).
fn with_sub(sub: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[routes]]\nname = \"r\"\npath = \"/hooks/r\"\nallow_anyone = true\n[[routes.subscribers]]\nname = \"laptop\"\n{sub}\n"
    )
}

fn expect_err(text: &str, key: &str, line: usize, needle: &str) {
    let e = parse(text).expect_err("config should be refused");
    let shown = e.to_string();
    assert!(shown.starts_with("test.toml: "), "{shown}");
    assert_eq!(e.key, key, "{shown}");
    assert_eq!(e.position.map(|p| p.0), Some(line), "{shown}");
    assert!(shown.contains(needle), "{shown} should contain {needle:?}");
}

#[test]
fn a_pull_subscriber_takes_a_token_lease_secret_filter_and_retry() {
    let c = parse(&with_sub(
        "pull = { token = \"laptop-token\", lease = \"90s\" }\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
         filter = { \"/code\" = 200 }\nretry = [\"1s\", \"2s\"]",
    ))
    .unwrap();
    let s = &c.routes[0].subscribers[0];
    let p = s.pull().expect("a pull subscriber");
    assert_eq!(p.token, Secret::new("laptop-token"));
    assert_eq!(p.lease, Duration::from_secs(90));
    assert!(s.url().is_none());
    assert_eq!(s.keys.len(), 1);
    assert_eq!(s.filter.len(), 1);
    assert_eq!(s.retry.steps().len(), 2);
    // The token never shows in Debug output.
    assert!(!format!("{s:?}").contains("laptop-token"), "{s:?}");
}

#[test]
fn a_pull_subscriber_takes_after_archive() {
    let text = with_sub("pull = { token = \"laptop-token\" }\nafter_archive = true").replace(
        "path = \"/hooks/r\"\n",
        "path = \"/hooks/r\"\npreset = \"kie-runway\"\n",
    );
    let c = parse(&text).unwrap();
    let s = &c.routes[0].subscribers[0];
    assert!(s.pull().is_some() && s.after_archive, "{s:?}");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_max_body_larger_than_hookrelay_forward_receives_is_warned_about_with_pull_subscribers() {
    let pull = with_sub("pull = { token = \"laptop-token\" }");
    let large = |t: &str| t.replace("listen = [", "max_body = \"200MiB\"\nlisten = [");
    let c = parse(&large(&pull)).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("server.max_body") && w.contains("\"laptop\"") && w.contains("160 MiB")),
        "{:?}",
        c.warnings
    );
    assert!(parse(&pull).unwrap().warnings.is_empty(), "the default is far below");
    let push = with_sub("url = \"http://127.0.0.1:9/x\"");
    assert!(
        parse(&large(&push)).unwrap().warnings.is_empty(),
        "no pull subscriber: nothing to say"
    );
}

#[test]
fn the_lease_defaults_to_a_minute_and_the_token_comes_from_any_source() {
    std::env::set_var("HOOKRELAY_TEST_PULL_TOKEN", "from-env");
    let c = parse(&with_sub("pull = { token = { env = \"HOOKRELAY_TEST_PULL_TOKEN\" } }")).unwrap();
    let p = c.routes[0].subscribers[0].pull().unwrap();
    assert_eq!(p.lease, Duration::from_secs(60));
    assert_eq!(p.token, Secret::new("from-env"));
}

#[test]
fn url_and_pull_exactly_one() {
    expect_err(
        &with_sub("url = \"http://127.0.0.1:1/\"\npull = { token = \"t\" }"),
        "routes[0].subscribers[0].pull",
        11,
        "not both",
    );
    expect_err(
        &with_sub("secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""),
        "routes[0].subscribers[0].url",
        9,
        "pull = {",
    );
}

#[test]
fn bad_tokens_and_leases_are_named() {
    expect_err(
        &with_sub("pull = { lease = \"60s\" }"),
        "routes[0].subscribers[0].pull.token",
        10,
        "needs a token",
    );
    expect_err(
        &with_sub("pull = { token = \"  \" }"),
        "routes[0].subscribers[0].pull.token",
        10,
        "blank",
    );
    expect_err(
        &with_sub("pull = { token = { env = \"HOOKRELAY_TEST_PULL_UNSET\" } }"),
        "routes[0].subscribers[0].pull.token",
        10,
        "HOOKRELAY_TEST_PULL_UNSET is not set",
    );
    expect_err(
        &with_sub("pull = { token = \"t\", lease = \"0s\" }"),
        "routes[0].subscribers[0].pull.lease",
        10,
        "1s to 1h",
    );
    expect_err(
        &with_sub("pull = { token = \"t\", lease = \"2h\" }"),
        "routes[0].subscribers[0].pull.lease",
        10,
        "1s to 1h",
    );
    expect_err(
        &with_sub("pull = { token = \"t\", lease = \"soon\" }"),
        "routes[0].subscribers[0].pull.lease",
        10,
        "invalid duration",
    );
    expect_err(
        &with_sub("pull = { token = \"t\", leese = \"60s\" }"),
        "routes[0].subscribers[0].pull.leese",
        10,
        "unknown field `leese`",
    );
}

#[test]
fn push_only_keys_are_refused_on_a_pull_subscriber() {
    for (extra, key) in [
        ("timeout = \"5s\"", "timeout"),
        ("concurrency = 4", "concurrency"),
        ("rate = \"5/s\"", "rate"),
        ("circuit_threshold = 3", "circuit_threshold"),
        ("headers = { \"x-api-key\" = \"k\" }", "headers"),
    ] {
        expect_err(
            &with_sub(&format!("pull = {{ token = \"t\" }}\n{extra}")),
            &format!("routes[0].subscribers[0].{key}"),
            11,
            "only applies to push subscribers",
        );
    }
}

#[test]
fn a_route_cannot_take_a_pull_subscribers_api_path() {
    let text = format!(
        "{}\n[[routes]]\nname = \"r2\"\npath = \"/pull/laptop/ack\"\nallow_anyone = true\n[[routes.subscribers]]\nname = \"s2\"\nurl = \"http://127.0.0.1:1/\"\n",
        with_sub("pull = { token = \"t\" }")
    );
    expect_err(&text, "routes[1].path", 14, "pull API of subscriber \"laptop\"");
    // One that differs from it only as two routes' paths may not is warned
    // about (requests match exactly: both work, and such a config ran).
    for alike in ["/pull/%6Captop/ack", "/pull/laptop/ack/", "/pull//laptop"] {
        let c = parse(&text.replace("/pull/laptop/ack", alike)).unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains("key `routes[1].path`")
                && w.contains("differs from the pull API of subscriber \"laptop\"")),
            "{alike}: {:?}",
            c.warnings
        );
    }
    // A route under /pull/ that is no subscriber's API is fine.
    let text = text.replace("/pull/laptop/ack", "/pull/other");
    parse(&text).unwrap();
}

#[test]
fn the_shipped_pull_example_works_when_uncommented() {
    let shipped = include_str!("../../config.toml");
    let start = shipped
        .find("# [[routes.subscribers]]\n# name = \"laptop\"")
        .expect("config.toml has a commented pull subscriber");
    let example: String = shipped[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter(|l| !l.starts_with("#  "))
        .map(|l| l.trim_start_matches("# ").to_string() + "\n")
        .collect();
    let example = example.replace("whsec_…", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    std::env::set_var("LAPTOP_PULL_TOKEN", "example-token");
    let c = Config::parse(Path::new("config.toml"), &format!("{}\n{example}", &shipped[..start])).unwrap();
    let s = c
        .subscribers()
        .find(|s| s.name == "laptop")
        .expect("the example subscriber");
    assert_eq!(s.pull().unwrap().lease, Duration::from_secs(60));
    assert_eq!(s.filter.len(), 1);
}
