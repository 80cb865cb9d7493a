//! `admin.token` strength: a short or low-entropy token is warned about (by
//! file and key, never shown): off loopback other hosts can guess at it, on
//! loopback web pages can (DNS rebinding).

use super::tests::{minimal, parse};
use super::Config;

fn with_admin(listen: &str, token: &str) -> Config {
    let t = format!("{}\n[admin]\nlisten = \"{listen}\"\ntoken = \"{token}\"\n", minimal(""));
    parse(&t).expect("a weak token is a warning, not an error")
}

fn admin_warning(c: &Config) -> Option<&String> {
    c.warnings.iter().find(|w| w.contains("key `admin.token`"))
}

#[test]
fn a_short_admin_token_off_loopback_is_warned_about_without_showing_it() {
    let token = "hunter2-admin";
    let c = with_admin("0.0.0.0:9090", token);
    let w = admin_warning(&c).unwrap_or_else(|| panic!("no warning: {:?}", c.warnings));
    assert!(w.starts_with("test.toml: key `admin.token`"), "{w}");
    assert!(w.contains("13 bytes long, shorter than 32"), "{w}");
    assert!(w.contains("0.0.0.0:9090") && w.contains("hookrelay gen-token"), "{w}");
    assert!(!w.contains(token), "the token is shown: {w}");
}

#[test]
fn a_long_but_repetitive_admin_token_off_loopback_is_warned_about() {
    let token = "password".repeat(5);
    let c = with_admin("[::]:9090", &token);
    let w = admin_warning(&c).unwrap_or_else(|| panic!("no warning: {:?}", c.warnings));
    assert!(w.contains("low entropy"), "{w}");
    assert!(!w.contains("password"), "the token is shown: {w}");
}

#[test]
fn a_strong_admin_token_is_not_warned_about() {
    let strong = "3f9c2b7d41e6a8c05b1d9e7f2a4c6b8d";
    assert!(admin_warning(&with_admin("0.0.0.0:9090", strong)).is_none());
    assert!(admin_warning(&with_admin("10.1.2.3:9090", &"0123456789abcdef".repeat(4))).is_none());
    assert!(admin_warning(&with_admin("127.0.0.1:9090", strong)).is_none());
}

/// On loopback a weak token is guessed by web pages: DNS rebinding makes a
/// page same-origin with the admin API, which with a token answers any Host.
#[test]
fn a_weak_admin_token_on_loopback_is_warned_about_for_dns_rebinding() {
    for listen in ["127.0.0.1:9090", "[::1]:9090", "[::ffff:127.0.0.1]:9090"] {
        let c = with_admin(listen, "short-token");
        let w = admin_warning(&c).unwrap_or_else(|| panic!("{listen}: no warning: {:?}", c.warnings));
        assert!(
            w.contains("DNS rebinding") && w.contains("is a loopback address"),
            "{w}"
        );
        assert!(!w.contains("short-token"), "the token is shown: {w}");
    }
}

/// The admin token may not be a route token (the provider sees it in the
/// callback URL) or a pull token (a forwarder holds it): named by key, the
/// token not shown.
#[test]
fn an_admin_token_shared_with_a_route_or_a_pull_subscriber_is_refused() {
    let token = "7c0d2f95b1e84a6fa3d9c1e05b7f2a48";
    let route = format!(
        "{}\n[admin]\ntoken = \"{token}\"\n",
        minimal(&format!("tokens = [\"other-token-0123456789\", \"{token}\"]"))
    );
    let e = parse(&route).expect_err("refused");
    let shown = e.to_string();
    assert_eq!(e.key, "admin.token", "{shown}");
    assert!(
        shown.contains("routes[0].tokens[1]") && shown.contains("callback URL"),
        "{shown}"
    );
    assert!(!shown.contains(token), "{shown}");
    let pull = format!(
        "{}\n[admin]\ntoken = \"{token}\"\n",
        minimal("").replace(
            "url = \"http://127.0.0.1:9000/\"",
            &format!("pull = {{ token = \"{token}\" }}")
        )
    );
    let e = parse(&pull).expect_err("refused");
    let shown = e.to_string();
    assert!(shown.contains("routes[0].subscribers[0].pull.token"), "{shown}");
    assert!(!shown.contains(token), "{shown}");
    // Its own: taken.
    parse(&format!("{}\n[admin]\ntoken = \"{token}\"\n", minimal(""))).unwrap();
}
