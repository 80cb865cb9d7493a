//! Every ```toml snippet in README.md is meant to be copied into a config:
//! each must pass `hookrelay check-config` once the parts it leaves out are
//! added. From review 25, finding 1 (the "Automatic HTTPS" snippet wrote an
//! inline table over two lines, which TOML refuses).
//!
//! How a snippet becomes a config:
//! * placeholders a reader replaces anyway are filled in: `{ env = "…" }` and
//!   `{ credential = "…" }` become inline strings, `"whsec_…"` a real secret;
//! * a snippet of bare route keys (the `signature` alternatives) is split into
//!   its statements, each checked in a route of its own;
//! * otherwise what the snippet leaves out is added: `[server]` (or its
//!   `listen`), a route before a lone `[[routes.subscribers]]`, a route and a
//!   subscriber when it has none.

use crate::common;

use common::*;

const LISTEN: &str = "listen = [\"127.0.0.1:1\"]\n";
const ROUTE: &str = "[[routes]]\nname = \"readme\"\npath = \"/readme\"\ntokens = [\"readme-token\"]\n";
const SUBSCRIBER: &str = "[[routes.subscribers]]\nname = \"readme-sub\"\nurl = \"http://127.0.0.1:9/\"\n";

/// A ```toml block of README.md: the line its fence is on, and its text.
struct Snippet {
    line: usize,
    text: String,
}

fn readme_toml_snippets() -> Vec<Snippet> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut snippets = Vec::new();
    let mut open: Option<Snippet> = None;
    for (i, line) in readme.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match &mut open {
            None if fence && line.trim() == "```toml" => {
                open = Some(Snippet {
                    line: i + 1,
                    text: String::new(),
                })
            }
            Some(_) if fence => snippets.extend(open.take()),
            Some(s) => {
                s.text.push_str(line);
                s.text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "README.md: a ```toml block is never closed");
    snippets
}

/// `{ env = "X" }` / `{ credential = "x" }` → an inline string; `"whsec_…"`
/// → a valid signing secret.
fn fill_placeholders(snippet: &str) -> String {
    let mut out = snippet.replace("\"whsec_…\"", "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"");
    for open in ["{ env = \"", "{ credential = \""] {
        while let Some(start) = out.find(open) {
            let len = out[start..]
                .find("\" }")
                .unwrap_or_else(|| panic!("a `{open}…` placeholder without its closing `\" }}`:\n{snippet}"));
            out.replace_range(start..start + len + 3, "\"readme-placeholder-secret\"");
        }
    }
    out
}

fn is_table_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// The top-level `key = value` statements of a snippet without tables, each
/// with the comment lines above it (a statement is one line: the README
/// writes route keys as inline tables, which TOML keeps on one line).
fn statements(snippet: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![String::new()];
    for line in snippet.lines() {
        let starts_statement = line.starts_with(|c: char| c.is_ascii_alphabetic()) && line.contains('=');
        let last = out.last_mut().unwrap();
        last.push_str(line);
        last.push('\n');
        if starts_statement {
            out.push(String::new());
        }
    }
    // Whatever follows the last statement is comments only.
    out.pop();
    out
}

/// `snippet` (whose top-level keys, if any, belong to `[server]`) with the
/// server, route and subscriber it leaves out added.
fn complete(snippet: &str) -> String {
    let has = |header: &str| snippet.lines().any(|l| l.trim() == header);
    let has_routes = has("[[routes]]");
    let has_subscribers = has("[[routes.subscribers]]");
    let mut text = String::new();
    if !has("[server]") {
        text.push_str("[server]\n");
        text.push_str(LISTEN);
    }
    let server_listens = snippet.lines().any(|l| l.trim_start().starts_with("listen"));
    let mut route_added = has_routes;
    for line in snippet.lines() {
        if line.trim() == "[[routes.subscribers]]" && !route_added {
            text.push_str(ROUTE);
            route_added = true;
        }
        text.push_str(line);
        text.push('\n');
        if line.trim() == "[server]" && !server_listens {
            text.push_str(LISTEN);
        }
    }
    if !route_added {
        text.push_str(ROUTE);
    }
    if !has_subscribers {
        text.push_str(SUBSCRIBER);
    }
    text
}

/// The configs a snippet stands for.
fn configs(snippet: &str) -> Vec<String> {
    let snippet = fill_placeholders(snippet);
    if snippet.lines().any(is_table_header) {
        vec![complete(&snippet)]
    } else {
        // Route keys, given as alternatives: a route for each.
        statements(&snippet)
            .iter()
            .map(|s| format!("[server]\n{LISTEN}{ROUTE}{s}{SUBSCRIBER}"))
            .collect()
    }
}

#[test]
fn every_readme_toml_snippet_passes_check_config() {
    let snippets = readme_toml_snippets();
    assert!(snippets.len() >= 5, "README.md's ```toml blocks were not found");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for snippet in &snippets {
        let configs = configs(&snippet.text);
        assert!(!configs.is_empty(), "README.md line {}: nothing to check", snippet.line);
        for (i, config) in configs.iter().enumerate() {
            let path = dir.path().join(format!("readme-{}-{i}.toml", snippet.line));
            std::fs::write(&path, config).unwrap();
            let (ok, _out, err) = cli(&["check-config", "--config", path.to_str().unwrap()]);
            if !ok {
                failures.push(format!(
                    "README.md line {} (part {}):\n{err}\n--- as checked:\n{config}",
                    snippet.line,
                    i + 1
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

/// The snippet → config steps on a snippet of each kind, so that a change to
/// them cannot quietly check less.
#[test]
fn snippets_become_whole_configs() {
    let alternatives = "# one\na = { env = \"A\" }\n# two\nb = \"whsec_…\"\n# trailing\n";
    let parts = configs(alternatives);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(parts[0].contains("# one\na = \"readme-placeholder-secret\"\n") && !parts[0].contains("b ="));
    assert!(parts[1].contains("# two\nb = \"whsec_Mf") && !parts[1].contains("a ="));

    let lone_subscriber = configs("[[routes.subscribers]]\nname = \"x\"\n").remove(0);
    assert_eq!(
        lone_subscriber,
        format!("[server]\n{LISTEN}{ROUTE}[[routes.subscribers]]\nname = \"x\"\n")
    );

    let server_only = configs("[server]\npublic_url = \"https://h\"\n").remove(0);
    assert_eq!(
        server_only,
        format!("[server]\n{LISTEN}public_url = \"https://h\"\n{ROUTE}{SUBSCRIBER}")
    );
}
