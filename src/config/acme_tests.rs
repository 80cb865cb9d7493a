//! `server.tls` with an ACME block: the normalised settings, and every bad
//! value refused with its key and line.

use std::path::Path;

use super::{Config, ConfigError, TlsSource};

fn parse(tls: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), &parse_text(tls))
}

/// A config listening on 127.0.0.1:0 with `tls` under `[server]`.
fn parse_text(tls: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n{tls}\n\n[[routes]]\nname = \"r\"\npath = \"/hooks/r\"\nallow_anyone = true\n\
         [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/\"\n"
    )
}

fn acme(inner: &str) -> String {
    format!("tls = {{ acme = {{ {inner} }} }}")
}

const OK: &str = r#"domains = ["Hooks.Example.com", "b.example.com"], email = "mailto:ops@example.com", directory = "https://acme.example.com/directory""#;

/// The config is refused, naming `key` on line 3 (where `tls` is) and saying `needle`.
#[track_caller]
fn expect_err(tls: &str, key: &str, needle: &str) {
    let e = parse(tls).expect_err("config should be refused");
    let shown = e.to_string();
    assert_eq!(e.key, key, "{shown}");
    assert_eq!(e.position.map(|p| p.0), Some(3), "{shown}");
    assert!(shown.starts_with("test.toml: key `"), "{shown}");
    assert!(shown.contains(needle), "{shown} should contain {needle:?}");
}

#[test]
fn valid_block_is_normalised() {
    let c = parse(&acme(OK)).unwrap();
    let Some(TlsSource::Acme(a)) = c.server.tls else {
        panic!("not ACME: {:?}", c.server.tls)
    };
    assert_eq!(a.domains, ["hooks.example.com", "b.example.com"]);
    assert_eq!(a.email, "ops@example.com");
    assert_eq!(a.directory, "https://acme.example.com/directory");
    assert_eq!(a.ca_file, None);
}

#[test]
fn ca_file_is_resolved_and_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = crate::tls::test_cert::self_signed("ca.test");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let text = |ca: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n{}\n\n[[routes]]\nname = \"r\"\npath = \"/r\"\nallow_anyone = true\n\
             [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/\"\n",
            acme(&format!("{OK}, ca_file = \"{ca}\""))
        )
    };
    let file = dir.path().join("c.toml");
    let c = Config::parse(&file, &text("ca.pem")).unwrap();
    let Some(TlsSource::Acme(a)) = c.server.tls else {
        panic!("not ACME")
    };
    assert_eq!(a.ca_file, Some(dir.path().join("ca.pem")));
    let e = Config::parse(&file, &text("empty.pem")).unwrap_err();
    assert_eq!(e.key, "server.tls.acme.ca_file");
    assert!(e.message.contains("no certificate found"), "{e}");
}

#[test]
fn bad_values_name_key_and_line() {
    let dir = r#"directory = "https://acme.example.com/dir""#;
    let mail = r#"email = "ops@example.com""#;
    for (domains, key, needle) in [
        ("[]", "server.tls.acme.domains", "at least one domain"),
        (r#"["*.example.com"]"#, "server.tls.acme.domains[0]", "wildcard"),
        (
            r#"["a.example.com", "10.0.0.1"]"#,
            "server.tls.acme.domains[1]",
            "IP address",
        ),
        (r#"["localhost"]"#, "server.tls.acme.domains[0]", "fully qualified"),
        (
            r#"["hooks.example.com."]"#,
            "server.tls.acme.domains[0]",
            "without the trailing dot",
        ),
        (r#"["ünïcode.example"]"#, "server.tls.acme.domains[0]", "punycode"),
        (
            r#"["bad-name!.example.com"]"#,
            "server.tls.acme.domains[0]",
            "fully qualified",
        ),
        // Accepted before, then refused by the CA at every order (TLS review, stop 66).
        (r#"["a_b.example.com"]"#, "server.tls.acme.domains[0]", "holds `_`"),
        (
            r#"["a.example.com", "A.example.com"]"#,
            "server.tls.acme.domains[1]",
            "listed twice",
        ),
    ] {
        expect_err(&acme(&format!("domains = {domains}, {mail}, {dir}")), key, needle);
    }
    // More names than one certificate may hold: every order failed at run
    // time (TLS review, stop 79).
    let many: Vec<String> = (0..101).map(|i| format!("\"h{i}.example.com\"")).collect();
    expect_err(
        &acme(&format!("domains = [{}], {mail}, {dir}", many.join(", "))),
        "server.tls.acme.domains",
        "at most 100",
    );
    let d = r#"domains = ["a.example.com"]"#;
    for email in ["ops", "@example.com", "ops@localhost", "a@b.c, d@e.f"] {
        expect_err(
            &acme(&format!(r#"{d}, email = "{email}", {dir}"#)),
            "server.tls.acme.email",
            "invalid email",
        );
    }
    for url in ["http://acme.example.com/dir", "acme.example.com/dir", "https:///dir"] {
        expect_err(
            &acme(&format!(r#"{d}, {mail}, directory = "{url}""#)),
            "server.tls.acme.directory",
            "must be an https:// URL",
        );
    }
    expect_err(
        &acme(&format!(r#"{d}, {mail}, {dir}, ca_file = "/nonexistent/ca.pem""#)),
        "server.tls.acme.ca_file",
        "cannot open /nonexistent/ca.pem",
    );
    expect_err(
        &acme(&format!("{d}, {dir}")),
        "server.tls.acme",
        "missing field `email`",
    );
    expect_err(
        &acme(&format!("{d}, {mail}, {dir}, port = 80")),
        "server.tls.acme.port",
        "unknown field `port`",
    );
}

#[test]
fn files_and_acme_are_exclusive_and_files_need_both() {
    let both = format!(r#"tls = {{ cert = "c.pem", key = "k.pem", acme = {{ {OK} }} }}"#);
    expect_err(&both, "server.tls", "either `cert` and `key`");
    expect_err(r#"tls = { cert = "c.pem" }"#, "server.tls.key", "missing `key`");
    expect_err(r#"tls = { key = "k.pem" }"#, "server.tls.cert", "missing `cert`");
    // An empty table: the missing key is placed at the table.
    let e = parse("tls = {}").expect_err("an empty tls table is refused");
    assert_eq!((e.key.as_str(), e.position), ("server.tls.cert", Some((3, 7))), "{e}");
    assert!(e.message.contains("or `acme = {"), "{e}");
}

#[test]
fn a_tls_table_implied_by_a_header_or_dotted_keys_is_read() {
    // `[server.tls.acme]` implies `server.tls` without writing it.
    let header = format!(
        "[server.tls.acme]\n{}",
        OK.replace(", email", "\nemail").replace(", directory", "\ndirectory")
    );
    let c = parse(&header).unwrap();
    let Some(TlsSource::Acme(a)) = c.server.tls else {
        panic!("not ACME: {:?}", c.server.tls)
    };
    assert_eq!(a.domains, ["hooks.example.com", "b.example.com"]);
    // Errors inside it still name their line (5: the bad `email`).
    let bad = header.replace("mailto:ops@example.com", "ops");
    let e = parse(&bad).expect_err("bad email");
    assert_eq!(
        (e.key.as_str(), e.position.map(|p| p.0)),
        ("server.tls.acme.email", Some(5)),
        "{e}"
    );
    // Dotted keys imply it too; a missing half is named with the other's line.
    expect_err(r#"tls.cert = "c.pem""#, "server.tls.key", "missing `key`");
}

#[test]
fn the_shipped_example_is_valid() {
    let shipped = include_str!("../../config.toml");
    let line = shipped
        .lines()
        .find(|l| l.starts_with("# tls = { acme = "))
        .expect("config.toml shows an ACME example");
    let c = parse(line.trim_start_matches("# ")).unwrap();
    let Some(TlsSource::Acme(a)) = c.server.tls else {
        panic!("not ACME")
    };
    assert_eq!(a.domains, ["hooks.example.com"]);
    assert_eq!(a.directory, "https://acme-v02.api.letsencrypt.org/directory");
}

#[test]
fn acme_without_a_listener_on_port_443_is_warned_about() {
    let warned = |c: &Config| c.warnings.iter().any(|w| w.contains("no listener on port 443"));
    let c = parse(&acme(OK)).unwrap();
    assert!(warned(&c), "{:?}", c.warnings);
    let on_443 = parse_text(&acme(OK)).replacen(
        r#"listen = ["127.0.0.1:0"]"#,
        r#"listen = ["127.0.0.1:0", "[::]:443"]"#,
        1,
    );
    let c = Config::parse(Path::new("test.toml"), &on_443).unwrap();
    assert!(!warned(&c), "{:?}", c.warnings);
    // Plain HTTP: no such warning.
    let c = parse("").unwrap();
    assert!(!warned(&c), "{:?}", c.warnings);
}
