//! The config's general checks, and the helpers the other config tests
//! share: the shipped file parses, errors name key and line (CIDRs,
//! durations, sizes, unknown keys, syntax), route paths and names that clash,
//! addresses and URLs, the admin listener, rates, routes open to anyone,
//! IPv4-mapped allowlists, the body budget. Secrets and signatures are in
//! [`super::secret_tests`].

use super::*;
use crate::auth::Secret;
use std::path::Path;
use std::time::Duration;

pub(super) const SHIPPED: &str = include_str!("../../config.toml");

/// `text` as `test.toml` in the working directory. Without the warning of
/// a store under `/tmp` when the store is the default `data` beside it: that
/// is the checkout's place (CI's clone is under /tmp), not the config's
/// (the warning is tested with paths of its own: `store_tests`).
pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text).map(without_checkouts_tmp)
}

pub(super) fn without_checkouts_tmp(mut c: Config) -> Config {
    if c.store.path == std::path::absolute("data").unwrap_or_default() {
        c.warnings
            .retain(|w| !w.contains("key `store.path`") || !w.contains("emptied at reboot"));
    }
    c
}

/// A minimal valid config with `extra` appended to the route.
pub(super) fn minimal(route_extra: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[[routes]]
name = "r"
path = "/hooks/r"
{route_extra}
allow_anyone = true
[[routes.subscribers]]
name = "s"
url = "http://127.0.0.1:9000/"
"#
    )
}

#[test]
fn shipped_config_parses() {
    let c = Config::parse(Path::new("config.toml"), SHIPPED).expect("shipped config is valid");
    assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.server.max_body, 1 << 20);
    assert_eq!(c.server.read_timeout, Duration::from_secs(10));
    assert_eq!(c.store.retention, Duration::from_secs(14 * 86400));
    assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
    let r = &c.routes[0];
    assert_eq!((r.name.as_str(), r.path.as_str()), ("runway", "/hooks/runway"));
    assert_eq!(r.tokens, vec![Secret::new("change-me")]);
    assert_eq!(
        r.dedupe_key,
        crate::dedupe::DedupeKey::Pointers(vec!["/data/task_id".to_string(), "/code".to_string()])
    );
    let s = &r.subscribers[0];
    assert_eq!(s.retry.steps().len(), 10);
    assert_eq!(s.concurrency, 8);
    assert_eq!(s.keys.len(), 1);
}

pub(super) fn expect_err(text: &str, key: &str, line: usize, needle: &str) {
    let e = parse(text).expect_err("config should be refused");
    let shown = e.to_string();
    assert!(shown.starts_with("test.toml: "), "{shown}");
    assert_eq!(e.key, key, "{shown}");
    assert_eq!(e.position.map(|p| p.0), Some(line), "{shown}");
    assert!(shown.contains(needle), "{shown} should contain {needle:?}");
}

#[test]
fn bad_cidr_names_key_and_line() {
    expect_err(
        &minimal(r#"allow_ips = ["10.0.0.0/8", "10.0.0/33"]"#),
        "routes[0].allow_ips[1]",
        7,
        "invalid CIDR",
    );
    // At the element, not at the array (as the README shows it).
    let e = parse(&minimal(r#"allow_ips = ["10.0.0.0/8", "10.0.0/33"]"#)).unwrap_err();
    assert_eq!(e.position, Some((7, 28)), "{e}");
}

#[test]
fn bad_duration_and_size() {
    let t = minimal("").replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\nread_timeout = \"10 parsecs\"",
    );
    expect_err(&t, "server.read_timeout", 3, "invalid duration");
    let t = minimal("").replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\nmax_body = \"lots\"",
    );
    expect_err(&t, "server.max_body", 3, "invalid size");
}

#[test]
fn unknown_key_is_named() {
    let e = parse(&minimal("tokenz = [\"x\"]")).unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains("tokenz"), "{shown}");
    assert!(shown.contains("routes[0]"), "{shown}");
    assert_eq!(e.position.map(|p| p.0), Some(7), "{shown}");
}

#[test]
fn route_paths_that_look_alike_are_refused() {
    // minimal("") has the route path "/hooks/r".
    for other in ["/hooks/r/", "/hooks//r", "//hooks/r", "/hooks/%72", "/hooks/%72/"] {
        let two = format!(
            "{}\n[[routes]]\nname = \"r2\"\npath = \"{other}\"\nallow_anyone = true\n[[routes.subscribers]]\nname = \"s2\"\nurl = \"http://127.0.0.1:1/\"\n",
            minimal("")
        );
        expect_err(
            &two,
            "routes[1].path",
            15,
            "differs from routes[0].path \"/hooks/r\" only by",
        );
    }
    for other in ["/hooks/r2", "/hooks/R", "/hooks/%2Fr", "/hook/r"] {
        let two = format!(
            "{}\n[[routes]]\nname = \"r2\"\npath = \"{other}\"\nallow_anyone = true\n[[routes.subscribers]]\nname = \"s2\"\nurl = \"http://127.0.0.1:1/\"\n",
            minimal("")
        );
        parse(&two).unwrap_or_else(|e| panic!("{other}: {e}"));
    }
}

#[test]
fn duplicate_path_and_subscriber() {
    let two = format!(
        "{}\n[[routes]]\nname = \"r2\"\npath = \"/hooks/r\"\nallow_anyone = true\n[[routes.subscribers]]\nname = \"s2\"\nurl = \"http://127.0.0.1:1/\"\n",
        minimal("")
    );
    expect_err(&two, "routes[1].path", 15, "duplicate route path");
    let dup_sub = format!(
        "{}\n[[routes]]\nname = \"r2\"\npath = \"/hooks/r2\"\nallow_anyone = true\n[[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:1/\"\n",
        minimal("")
    );
    expect_err(
        &dup_sub,
        "routes[1].subscribers[0].name",
        18,
        "duplicate subscriber name",
    );
}

#[test]
fn route_without_subscribers() {
    let t = "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[routes]]\nname = \"r\"\npath = \"/x\"\n";
    expect_err(t, "routes[0].subscribers", 5, "no subscribers");
}

#[test]
fn missing_tls_file() {
    let t = minimal("").replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\ntls = { cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }",
    );
    expect_err(&t, "server.tls.cert", 3, "cannot open /nonexistent/cert.pem");
}

#[test]
fn bad_address_and_url() {
    let t = minimal("").replace("127.0.0.1:0\"]", "localhost\"]");
    expect_err(&t, "server.listen[0]", 2, "invalid address");
    let t = minimal("").replace("http://127.0.0.1:9000/", "ftp://x/");
    expect_err(&t, "routes[0].subscribers[0].url", 11, "http://");
}

#[test]
fn admin_off_loopback_needs_token() {
    let t = format!("{}\n[admin]\nlisten = \"0.0.0.0:9090\"\n", minimal(""));
    let e = parse(&t).unwrap_err();
    assert_eq!(e.key, "admin.token");
}

#[test]
fn rates_and_overrides() {
    let t = minimal("").replace(
        "url = \"http://127.0.0.1:9000/\"",
        "url = \"http://127.0.0.1:9000/\"\nrate = \"50/s\"\nconcurrency = 2\nretry = [\"1s\"]\nfilter = { \"/code\" = 200 }",
    );
    let c = parse(&t).unwrap();
    let s = &c.routes[0].subscribers[0];
    assert_eq!(s.rate.unwrap().count.get(), 50);
    assert_eq!(s.concurrency, 2);
    assert_eq!(s.retry.steps(), &[Duration::from_secs(1)]);
    assert_eq!(s.filter, vec![("/code".to_string(), serde_json::json!(200))]);
    let bad = minimal("").replace(
        "url = \"http://127.0.0.1:9000/\"",
        "url = \"http://127.0.0.1:9000/\"\nrate = \"fast\"",
    );
    expect_err(&bad, "routes[0].subscribers[0].rate", 12, "invalid rate");
}

/// A route anyone may post to is refused unless it says so: no token, no
/// signature and no allow_ips narrower than everything.
#[test]
fn a_route_open_to_anyone_must_say_so() {
    let open = |extra: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[routes]]\nname = \"r\"\npath = \"/hooks/r\"\n{extra}\n\
             [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/\"\n"
        )
    };
    for extra in [
        "",
        "allow_ips = [\"0.0.0.0/0\", \"::/0\"]",
        "allow_ips = [\"10.0.0.0/8\", \"::/0\"]",
        "allow_ips = [\"0.0.0.0/1\", \"128.0.0.0/1\"]",
        "allow_ips = [\"::ffff:0.0.0.0/96\", \"::/0\"]",
    ] {
        expect_err(&open(extra), "routes[0]", 5, "would accept callbacks from anyone");
    }
    for extra in [
        "allow_anyone = true",
        "tokens = [\"t\"]",
        "allow_ips = [\"10.0.0.0/8\"]",
        "signature = { scheme = \"standard-webhooks\", secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }",
    ] {
        let c = parse(&open(extra)).unwrap_or_else(|e| panic!("{extra}: {e}"));
        assert!(c.warnings.is_empty(), "{extra}: {:?}", c.warnings);
    }
    // The kie signature covers the task id and time, not the body: a token
    // (or verify = "fetch") should go with it.
    let kie = "signature = { scheme = \"kie\", secret = \"k\" }";
    let c = parse(&open(kie)).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("covers the task id and time, not the body")),
        "{:?}",
        c.warnings
    );
    let c = parse(&open(&format!("{kie}\ntokens = [\"t\"]"))).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// A peer at an IPv4-mapped address is seen as IPv4, so an allow_ips entry
/// written in the mapped form is the IPv4 network it maps (it never matched
/// anyone before).
#[test]
fn ipv4_mapped_allow_ips_match_ipv4_peers() {
    use crate::auth::ip_allowed;
    use ipnet::IpNet;
    let c = parse(&minimal(
        r#"allow_ips = ["::ffff:10.1.0.0/112", "::ffff:192.0.2.7", "2001:db8::/32"]"#,
    ))
    .unwrap();
    let nets = &c.routes[0].allow_ips;
    assert_eq!(nets[0], "10.1.0.0/16".parse::<IpNet>().unwrap());
    assert_eq!(nets[1], "192.0.2.7/32".parse::<IpNet>().unwrap());
    assert_eq!(nets[2], "2001:db8::/32".parse::<IpNet>().unwrap());
    for (peer, allowed) in [
        ("10.1.2.3", true),
        ("::ffff:10.1.2.3", true),
        ("192.0.2.7", true),
        ("10.2.0.1", false),
        ("2001:db8::1", true),
    ] {
        let ip: std::net::IpAddr = peer.parse().unwrap();
        let src = crate::auth::client_ip(ip, &http::HeaderMap::new(), &[]);
        assert_eq!(ip_allowed(src, nets), allowed, "{peer}");
    }
}

#[test]
fn a_syntax_error_in_a_value_names_its_key() {
    // TOML's own parse error (an integer past 2^63, a string not closed)
    // names no key: the line's `key =` and the tables above it do.
    let e = parse(&minimal("").replace(
        "url = \"http://127.0.0.1:9000/\"",
        "url = \"http://127.0.0.1:9000/\"\nconcurrency = 99999999999999999999",
    ))
    .unwrap_err();
    assert_eq!(e.key, "routes[0].subscribers[0].concurrency", "{e}");
    assert_eq!(e.position, Some((12, 15)), "{e}");
    assert!(e.to_string().contains("number too large"), "{e}");
    let e = parse(&minimal("").replace("name = \"s\"", "name = \"s")).unwrap_err();
    assert_eq!(e.key, "routes[0].subscribers[0].name", "{e}");
    // Where the line is no `key = value`, no key is guessed.
    let e = parse(&minimal("").replace("name = \"r\"", "name = \"r\"\n= 1")).unwrap_err();
    assert_eq!((e.key.as_str(), e.position), ("", Some((6, 1))), "{e}");
}

/// `server.max_body_memory` that holds a body of `max_body` but not its
/// headers too ran before: it still does, raised to `max_body` and 64 KiB
/// and warned about, so a body of the largest size fits (review 58: it got
/// `503` for ever).
#[test]
fn a_body_budget_without_room_for_headers_is_raised_and_warned() {
    let text = minimal("").replace(
        "[server]\n",
        "[server]\nmax_body = \"64KiB\"\nmax_body_memory = \"64KiB\"\n",
    );
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server.max_body_memory, (64 << 10) * 2);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("server.max_body_memory") && w.contains("131072")),
        "{:?}",
        c.warnings
    );
    let roomy = text.replace("max_body_memory = \"64KiB\"", "max_body_memory = \"128KiB\"");
    let c = parse(&roomy).unwrap();
    assert_eq!(c.server.max_body_memory, 128 << 10);
    assert!(
        !c.warnings.iter().any(|w| w.contains("max_body_memory")),
        "{:?}",
        c.warnings
    );
}
