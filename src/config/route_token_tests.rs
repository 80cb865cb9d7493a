//! Route and pull token strength: a short or low-entropy `routes[].tokens` or `pull.token` entry is
//! warned about (by file and key, never shown) when other hosts reach the
//! relay (a public listener, a proxy in front, a public `server.public_url`);
//! on loopback only it is not. The example secrets are refused there.

use super::tests::parse;
use super::Config;

fn with_token(listen: &str, token: &str) -> Config {
    let t = format!(
        "[server]\nlisten = [\"{listen}\"]\n[[routes]]\nname = \"r\"\npath = \"/hooks/r\"\ntokens = [\"{token}\"]\n\
         [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/\"\n"
    );
    parse(&t).expect("a weak token is a warning, not an error")
}

fn token_warning(c: &Config) -> Option<&String> {
    c.warnings.iter().find(|w| w.contains("key `routes[0].tokens[0]`"))
}

#[test]
fn a_short_route_token_on_a_public_listener_is_warned_about_without_showing_it() {
    let token = "s3cr3t-hook";
    let c = with_token("0.0.0.0:8080", token);
    let w = token_warning(&c).unwrap_or_else(|| panic!("no warning: {:?}", c.warnings));
    assert!(w.starts_with("test.toml: key `routes[0].tokens[0]`"), "{w}");
    assert!(w.contains("11 bytes long, shorter than 16"), "{w}");
    assert!(w.contains("0.0.0.0:8080") && w.contains("hookrelay gen-token"), "{w}");
    assert!(!w.contains(token), "the token is shown: {w}");
    let c = with_token("[::]:8080", &"ab".repeat(12));
    let w = token_warning(&c).unwrap_or_else(|| panic!("no warning: {:?}", c.warnings));
    assert!(w.contains("low entropy") && !w.contains("abab"), "{w}");
}

#[test]
fn a_strong_route_token_or_a_loopback_listener_is_not_warned_about() {
    assert!(token_warning(&with_token("0.0.0.0:8080", "3f9c2b7d41e6a8c05b1d9e7f")).is_none());
    assert!(token_warning(&with_token("127.0.0.1:8080", "short")).is_none());
    assert!(token_warning(&with_token("[::1]:8080", "short")).is_none());
}

/// A route (token `route-token-0123456789`) with a pull subscriber whose
/// token is `pull`, listening on `listen`.
fn with_pull_token(listen: &str, pull: &str) -> Result<Config, super::ConfigError> {
    parse(&format!(
        "[server]\nlisten = [\"{listen}\"]\n[[routes]]\nname = \"r\"\npath = \"/hooks/r\"\n\
         tokens = [\"route-token-0123456789\"]\n[[routes.subscribers]]\nname = \"laptop\"\n\
         pull = {{ token = \"{pull}\", lease = \"60s\" }}\n"
    ))
}

#[test]
fn a_weak_pull_token_on_a_public_listener_is_warned_about_without_showing_it() {
    let c = with_pull_token("0.0.0.0:8080", "laptop-pw").expect("a weak token is a warning");
    let w = c
        .warnings
        .iter()
        .find(|w| w.contains("key `routes[0].subscribers[0].pull.token`"))
        .unwrap_or_else(|| panic!("no warning: {:?}", c.warnings));
    assert!(w.contains("9 bytes long") && w.contains("hookrelay gen-token"), "{w}");
    assert!(!w.contains("laptop-pw"), "the token is shown: {w}");
    let c = with_pull_token("127.0.0.1:8080", "laptop-pw").expect("loopback");
    assert!(!c.warnings.iter().any(|w| w.contains("pull.token")), "{:?}", c.warnings);
    let c = with_pull_token("0.0.0.0:8080", "9d1c0b7e5a3f2468ace13579bdf02468").expect("strong");
    assert!(!c.warnings.iter().any(|w| w.contains("pull.token")), "{:?}", c.warnings);
}

#[test]
fn the_example_token_as_a_pull_token_is_refused_on_a_public_listener() {
    let e = with_pull_token("[::]:8080", "change-me").expect_err("the example token");
    let m = e.to_string();
    assert!(
        m.starts_with("test.toml: key `routes[0].subscribers[0].pull.token`"),
        "{m}"
    );
    assert!(m.contains("example token") && !m.contains("change-me"), "{m}");
    with_pull_token("127.0.0.1:8080", "change-me").expect("on loopback only it stays allowed");
}

#[test]
fn a_pull_token_that_is_also_a_route_token_is_refused_on_any_listener() {
    for listen in ["127.0.0.1:8080", "0.0.0.0:8080"] {
        let e = with_pull_token(listen, "route-token-0123456789").expect_err("a route token as pull token");
        let m = e.to_string();
        assert!(
            m.starts_with("test.toml: key `routes[0].subscribers[0].pull.token`"),
            "{m}"
        );
        assert!(m.contains("`routes[0].tokens[0]`") && m.contains("callback URL"), "{m}");
        assert!(!m.contains("route-token-0123456789"), "the token is shown: {m}");
    }
}

#[test]
fn a_pull_token_two_subscribers_share_is_refused_naming_both() {
    let sub = |name: &str, token: &str| {
        format!("[[routes.subscribers]]\nname = \"{name}\"\npull = {{ token = \"{token}\" }}\n")
    };
    let route = |name: &str| format!("[[routes]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nallow_anyone = true\n");
    let head = "[server]\nlisten = [\"127.0.0.1:8080\"]\n";
    let shared = "9d1c0b7e5a3f2468ace13579bdf02468";
    // Two subscribers of one route, and of two routes.
    for text in [
        format!("{head}{}{}{}", route("r"), sub("alice", shared), sub("bob", shared)),
        format!(
            "{head}{}{}{}{}",
            route("r"),
            sub("alice", shared),
            route("q"),
            sub("bob", shared)
        ),
    ] {
        let m = parse(&text).expect_err("a shared pull token").to_string();
        assert!(
            m.contains(".pull.token`") && m.contains("\"bob\"") && m.contains("\"alice\""),
            "{m}"
        );
        assert!(m.contains("`routes[0].subscribers[0].pull.token`"), "{m}");
        assert!(!m.contains(shared), "the token is shown: {m}");
        assert!(!m.contains("  "), "{m}");
    }
    let own = format!(
        "{head}{}{}{}",
        route("r"),
        sub("alice", shared),
        sub("bob", &"7".repeat(32))
    );
    parse(&own).expect("each its own token");
}

/// The shipped config's route and subscriber (with its example token and
/// signing secret, or `token`), on loopback, with these `[server]` lines.
fn behind(server: &str, token: &str) -> Result<Config, super::ConfigError> {
    parse(&format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n{server}\n[[routes]]\nname = \"r\"\npath = \"/hooks/r\"\n\
         tokens = [\"{token}\"]\n[[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
    ))
}

#[test]
fn the_example_secrets_are_refused_on_loopback_behind_a_proxy_or_a_public_url() {
    // The README's way to production: loopback behind a TLS proxy. Other
    // hosts reach the route through it: the example token, known to
    // everyone, authenticates nothing there.
    for (server, names) in [
        ("trusted_proxies = [\"127.0.0.1/32\"]", "server.trusted_proxies"),
        (
            "public_url = \"https://hooks.example.com\"",
            "server.public_url names hooks.example.com",
        ),
    ] {
        let m = behind(server, "change-me").expect_err(server).to_string();
        assert!(m.starts_with("test.toml: key `routes[0].tokens[0]`"), "{m}");
        assert!(m.contains("example token") && m.contains(names), "{m}");
        assert!(!m.contains("loopback only") && !m.contains("change-me"), "{m}");
        // The example signing secret likewise.
        let m = behind(server, "3f9c2b7d41e6a8c05b1d9e7f")
            .expect_err(server)
            .to_string();
        assert!(m.starts_with("test.toml: key `routes[0].subscribers[0].secret`"), "{m}");
        assert!(m.contains(names) && !m.contains("MfKQ"), "{m}");
    }
    // A route checking providers' signatures with one of them: anyone can
    // sign its callbacks (ingest review, stop 66).
    for signature in [
        "{ scheme = \"standard-webhooks\", secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }",
        "{ scheme = \"standard-webhooks\", secret = [\"whsec_dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZg==\", \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }",
        "{ scheme = \"kie\", secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }",
        "{ scheme = \"hmac-sha256\", secret = \"change-me\", header = \"x-sig\" }",
    ] {
        let text = format!(
            "[server]\nlisten = [\"0.0.0.0:8080\"]\n[[routes]]\nname = \"r\"\npath = \"/hooks/r\"\n\
             signature = {signature}\n[[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/\"\n"
        );
        let m = parse(&text).expect_err(signature).to_string();
        let key = if signature.contains('[') { "routes[0].signature.secret[1]" } else { "routes[0].signature.secret" };
        assert!(m.starts_with(&format!("test.toml: key `{key}`")), "{m}");
        assert!(m.contains("sign callbacks") && !m.contains("MfKQ") && !m.contains("change-me"), "{m}");
        // On loopback only it stays allowed, as the other examples do.
        parse(&text.replace("0.0.0.0:8080", "127.0.0.1:8080")).expect(signature);
    }
    // A public_url on this host is not reached from elsewhere.
    for url in ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"] {
        behind(&format!("public_url = \"{url}\""), "change-me").expect(url);
    }
}

#[test]
fn a_weak_route_token_behind_a_proxy_is_warned_about() {
    let c = parse(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[[routes]]\nname = \"r\"\n\
         path = \"/hooks/r\"\ntokens = [\"s3cr3t-hook\"]\n[[routes.subscribers]]\nname = \"s\"\n\
         url = \"http://127.0.0.1:9000/\"\n",
    )
    .expect("a weak token is a warning");
    let w = token_warning(&c).unwrap_or_else(|| panic!("no warning: {:?}", c.warnings));
    assert!(w.contains("server.trusted_proxies") && !w.contains("s3cr3t"), "{w}");
}
