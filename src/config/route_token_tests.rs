//! Route token strength: a short or low-entropy `routes[].tokens` entry is
//! warned about (by file and key, never shown) when `server.listen` has an
//! address other hosts can reach; on loopback only it is not.

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
