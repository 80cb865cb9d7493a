//! Review 25: does README.md tell the truth? Two promises checked here.
//!
//! 1. README "Configuration": "A value of the wrong type or form is not
//!    quoted, because it may be a secret" — and the reload refusal is logged
//!    the same way. `routes[].provider.base_url` and `server.public_url` are
//!    refused *because* they carry credentials (or a query), and the refusal
//!    quotes them in full (`check-config`, start-up, and the journal on
//!    SIGHUP), while `subscribers[].url`, `media.store.s3.endpoint` and
//!    `store.nats.servers` show `REDACTED` in the same position.
//! 2. Every ```toml snippet in README.md is meant to be copied: each must
//!    pass `hookrelay check-config` once placed in a minimal config (no test
//!    did this; the "Automatic HTTPS" snippet writes an inline table over
//!    three lines, which TOML refuses).

use crate::common;

use common::*;

const SECRET: &str = "Hunter2-r25-7f3a9c";

/// A working config with `route_extra` added to its route and
/// `server_extra` to `[server]`; check-config's stderr.
fn check(server_extra: &str, route_extra: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n{server_extra}\n\
         [[routes]]\nname = \"r\"\npath = \"/h\"\ntokens = [\"t\"]\n{route_extra}\n\
         [[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let (ok, _out, err) = cli(&["check-config", "--config", path.to_str().unwrap()]);
    (ok, err)
}

#[test]
fn provider_base_url_with_credentials_is_refused_without_quoting_them() {
    let (ok, err) = check(
        "",
        &format!(
            "preset = \"kie-runway\"\nprovider = {{ api_key = \"k\", base_url = \"https://ops:{SECRET}@api.example.com\" }}"
        ),
    );
    assert!(!ok, "credentials in base_url are refused");
    assert!(err.contains("base_url"), "{err}");
    assert!(
        !err.contains(SECRET),
        "the refusal of a base_url because it carries credentials prints the password:\n{err}"
    );
}

#[test]
fn provider_base_url_with_a_query_is_refused_without_quoting_its_values() {
    let (ok, err) = check(
        "",
        &format!("preset = \"kie-runway\"\nprovider = {{ api_key = \"k\", base_url = \"https://api.example.com/?key={SECRET}\" }}"),
    );
    assert!(!ok);
    assert!(!err.contains(SECRET), "a query value of base_url is quoted:\n{err}");
}

#[test]
fn public_url_with_credentials_or_a_query_is_refused_without_quoting_them() {
    for url in [
        format!("https://ops:{SECRET}@hooks.example.com"),
        format!("https://hooks.example.com/?token={SECRET}"),
    ] {
        let (ok, err) = check(&format!("public_url = \"{url}\""), "");
        assert!(!ok, "{url} is refused");
        assert!(
            !err.contains(SECRET),
            "server.public_url's secret part is quoted:\n{err}"
        );
    }
}

/// The ```toml blocks of README.md, with the line each starts on.
fn readme_toml_blocks() -> Vec<(usize, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        match (&mut current, line.trim_start().starts_with("```")) {
            (None, true) if line.trim() == "```toml" => current = Some((i + 1, String::new())),
            (Some(_), true) => blocks.push(current.take().unwrap()),
            (Some((_, text)), false) => {
                text.push_str(line);
                text.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// Placeholders a reader replaces anyway: secrets from the environment or
/// systemd credentials become inline values, `whsec_…` a real secret.
fn fill_placeholders(snippet: &str) -> String {
    let mut out = snippet.replace("\"whsec_…\"", "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"");
    for open in ["{ env = \"", "{ credential = \""] {
        while let Some(start) = out.find(open) {
            let end = start + out[start..].find("\" }").unwrap() + 3;
            out.replace_range(start..end, "\"r25-placeholder-secret\"");
        }
    }
    out
}

/// Top-level `key = value` statements of a snippet without tables (the
/// signature block lists alternatives: each is checked on its own).
fn statements(snippet: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in snippet.lines() {
        let starts = line.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && line.contains('=');
        if starts || out.is_empty() {
            out.push(String::new());
        }
        let last = out.last_mut().unwrap();
        last.push_str(line);
        last.push('\n');
    }
    out.into_iter()
        .filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// A snippet made a whole config: the `[server]`, route and subscriber it
/// leaves out are added.
fn complete(snippet: &str) -> String {
    const LISTEN: &str = "listen = [\"127.0.0.1:1\"]\n";
    const ROUTE: &str = "[[routes]]\nname = \"r25\"\npath = \"/r25\"\ntokens = [\"t\"]\n";
    const SUB: &str = "[[routes.subscribers]]\nname = \"r25-sub\"\nurl = \"http://127.0.0.1:9/\"\n";
    let has = |header: &str| snippet.lines().any(|l| l.trim_start().starts_with(header));
    let mut text = String::new();
    if !has("[server]") {
        text.push_str("[server]\n");
        text.push_str(LISTEN);
    }
    let routes = has("[[routes]]");
    let subs = has("[[routes.subscribers]]");
    if subs && !routes {
        text.push_str(ROUTE);
    }
    for line in snippet.lines() {
        text.push_str(line);
        text.push('\n');
        if line.trim() == "[server]" && !snippet.contains("\nlisten") && !snippet.starts_with("listen") {
            text.push_str(LISTEN);
        }
    }
    if !routes && !subs {
        text.push_str(ROUTE);
    }
    if !subs {
        text.push_str(SUB);
    }
    text
}

#[test]
fn every_readme_toml_snippet_passes_check_config() {
    let blocks = readme_toml_blocks();
    assert!(blocks.len() >= 5, "README.md's ```toml blocks were not found");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (line, block) in blocks {
        let block = fill_placeholders(&block);
        let has_tables = block.lines().any(|l| l.trim_start().starts_with('['));
        let configs: Vec<String> = if has_tables {
            vec![complete(&block)]
        } else {
            // Route keys (the signature alternatives): one config each.
            statements(&block)
                .into_iter()
                .map(|s| {
                    format!(
                        "[server]\nlisten = [\"127.0.0.1:1\"]\n[[routes]]\nname = \"r25\"\npath = \"/r25\"\n\
                         tokens = [\"t\"]\n{s}[[routes.subscribers]]\nname = \"r25-sub\"\nurl = \"http://127.0.0.1:9/\"\n"
                    )
                })
                .collect()
        };
        for (i, text) in configs.iter().enumerate() {
            let path = dir.path().join(format!("readme-{line}-{i}.toml"));
            std::fs::write(&path, text).unwrap();
            let (ok, _out, err) = cli(&["check-config", "--config", path.to_str().unwrap()]);
            if !ok {
                failures.push(format!(
                    "README.md line {line} (snippet part {i}):\n{err}\n--- as checked:\n{text}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "README snippets that check-config refuses:\n\n{}",
        failures.join("\n\n")
    );
}
