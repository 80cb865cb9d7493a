//! Where a key path (`routes[0].subscribers[1].url`, `server.listen[0]`) is
//! written in the config text: for errors found after deserialising, on
//! values serde kept no position for. A key that is not written (a default)
//! is placed at the nearest table that is. And the other way round, for a
//! TOML syntax error (an integer past 2^63, a string not closed), which
//! names no key: the key whose value starts where the error is ([`key_at`]).

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path: a key or an array index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']')?;
            out.push(Step::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

/// A step's place in the document: a table-ish item, or a value (the
/// elements of an inline array and the keys of an inline table are values).
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn step(self, step: &Step<'_>) -> Option<Node<'a>> {
        match (self, step) {
            (Node::Item(Item::Value(v)), _) => Node::Value(v).step(step),
            (Node::Item(i), Step::Key(k)) => i.get(*k).map(Node::Item),
            (Node::Item(i), Step::Index(n)) => i.get(*n).map(Node::Item),
            (Node::Value(Value::InlineTable(t)), Step::Key(k)) => t.get(k).map(Node::Value),
            (Node::Value(Value::Array(a)), Step::Index(n)) => a.get(*n).map(Node::Value),
            (Node::Value(_), _) => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
    }
}

/// The byte range of `path`'s value in `text`, or of the deepest table on
/// its way that is written there.
pub fn span_of(text: &str, path: &str) -> Option<Range<usize>> {
    let doc = ImDocument::parse(text).ok()?;
    let mut node = Node::Item(doc.as_item());
    let mut best = None;
    for step in steps(path)? {
        let Some(next) = node.step(&step) else { break };
        node = next;
        best = node.span().or(best);
    }
    best
}

/// The key path (`delivery.concurrency`, `routes[1].subscribers[0].url`)
/// whose line holds byte `at` of a text TOML could not parse: the line's
/// `key =` (the value before `at` on that line, and neither an inline table
/// nor an array), in the table whose header comes last before it. Only when
/// the text before that line is TOML by itself, so that the line starts
/// outside any string or array (text inside a multi-line string, perhaps a
/// secret, is never taken for a key or a header). `None` where that is not
/// certain.
pub fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let (key, value) = text[start..at].split_once('=')?;
    if value.contains(['{', '[']) {
        return None;
    }
    let key = dotted_key(key)?;
    let before = ImDocument::parse(&text[..start]).ok()?;
    let mut last: Option<(usize, String)> = None;
    last_header(before.as_table(), "", &mut last);
    Some(match last {
        Some((_, table)) => format!("{table}.{key}"),
        None => key,
    })
}

/// The path of the table whose header comes last in the document
/// (`[a.b]`, `[[routes]]` as `routes[N]`), under `table` at `path`.
fn last_header(table: &Table, path: &str, last: &mut Option<(usize, String)>) {
    let mut seen = |t: &Table, at: String| {
        if let Some(p) = t.position() {
            if last.as_ref().is_none_or(|(q, _)| p > *q) {
                *last = Some((p, at.clone()));
            }
        }
        last_header(t, &at, last);
    };
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    for (k, item) in table.iter() {
        match item {
            Item::Table(t) => seen(t, join(k)),
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    seen(t, format!("{}[{i}]", join(k)));
                }
            }
            _ => {}
        }
    }
}

/// A dotted key of bare keys (`a.b`, spaces around the dots allowed) as
/// `a.b`; `None` for anything else (quoted keys, other characters).
fn dotted_key(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split('.').map(str::trim).collect();
    let bare = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    parts.iter().all(bare).then(|| parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::{key_at, span_of};

    const TEXT: &str = "[server]\nlisten = [\"127.0.0.1:1\", \"bad\"]\nread_timeout = \"0s\"\n\n\
                        [[routes]]\nname = \"a\"\n\n[[routes]]\nname = \"b\"\n\
                        subscribers = [{ name = \"s\", url = \"x\" }]\n";

    fn line(path: &str) -> Option<usize> {
        span_of(TEXT, path).map(|s| TEXT[..s.start].matches('\n').count() + 1)
    }

    #[test]
    fn an_element_of_an_inline_array_is_placed_at_itself() {
        let text = "[server]\nlisten = [\"127.0.0.1:1\", \"bad\"]\n";
        let at = span_of(text, "server.listen[1]").unwrap();
        assert_eq!(&text[at], "\"bad\"");
        let at = span_of(TEXT, "routes[1].subscribers[0].url").unwrap();
        assert_eq!(&TEXT[at], "\"x\"");
    }

    #[test]
    fn keys_indices_and_inline_tables_are_found() {
        assert_eq!(line("server.read_timeout"), Some(3));
        assert_eq!(line("server.listen"), Some(2));
        assert_eq!(line("server.listen[1]"), Some(2));
        assert_eq!(line("routes[1].name"), Some(9));
        assert_eq!(line("routes[1].subscribers[0].url"), Some(10));
    }

    #[test]
    fn a_key_not_written_is_placed_at_its_table() {
        assert_eq!(line("server.max_body"), Some(1));
        assert_eq!(line("routes[0].subscribers"), Some(5));
        assert_eq!(line("delivery.timeout"), None, "no [delivery] table at all");
        assert_eq!(line("routes[7].name"), Some(5), "the first [[routes]]");
        assert_eq!(span_of("not toml = = 1", "server.listen"), None);
        assert_eq!(span_of(TEXT, "server.listen[x]"), None);
    }

    #[test]
    fn the_key_at_a_value_is_read_off_its_line_and_the_headers_above() {
        let at = |text: &str, value: &str| key_at(text, text.find(value).unwrap());
        let text = "top = 1\n[server]\nlisten = 1111\n[[routes]]\nname = \"a\"\n[[routes]]\n\
                    [[routes.subscribers]]\nurl = \"u\"\n[[routes.subscribers]]\n  url   =   2222\n\
                    [[routes]]\n[[routes.subscribers]]\nconcurrency = 3333\n[routes.media]\nstore.x = 4444\n";
        assert_eq!(at("a = V", "V").as_deref(), Some("a"));
        assert_eq!(at(text, "1111").as_deref(), Some("server.listen"));
        assert_eq!(at(text, "2222").as_deref(), Some("routes[1].subscribers[1].url"));
        assert_eq!(
            at(text, "3333").as_deref(),
            Some("routes[2].subscribers[0].concurrency")
        );
        assert_eq!(at(text, "4444").as_deref(), Some("routes[2].media.store.x"));
        assert_eq!(at("a = \"1 V", "V").as_deref(), Some("a"), "within the value");
        // Not certain, so not named: inside an inline table or an array,
        // on a line with no `key =`, under a quoted key.
        assert_eq!(at("s = [{ url = V }]", "V"), None);
        assert_eq!(at("s = { url = V }", "V"), None);
        assert_eq!(at("s = [\n  V ]", "V"), None);
        assert_eq!(at("\"a b\" = V", "V"), None);
        assert_eq!(
            at("[\"q\"]\na = V", "V").as_deref(),
            Some("q.a"),
            "a quoted header, parsed"
        );
        // Lines inside a multi-line string or array are neither headers nor
        // keys, and the text of a string is never shown as one.
        let text = "[server]\npublic_url = '''\n[admin]\n'''\nread_timeout = V";
        assert_eq!(at(text, "V").as_deref(), Some("server.read_timeout"));
        let text = "[[routes]]\nname = \"a\"\nverify = \"\"\"\n[[routes]]\n\"\"\"\npath = V";
        assert_eq!(at(text, "V").as_deref(), Some("routes[0].path"));
        assert_eq!(at("[admin]\ntoken = \"\"\"\nc2VjcmV0LXRva2Vu=V\"\"\"", "V"), None);
        assert_eq!(at("[[routes]]\nname = \"\"\"a\nb = c\"\"\" V", "V"), None);
        assert_eq!(at("[admin]\ntoken = \"\"\"abc\nlisten = V", "V"), None);
        let text = "[[routes]]\n[[routes.subscribers]]\n[routes.subscribers.filter]\ncodes = [\n  [200],\n]\nother = V";
        assert_eq!(at(text, "V").as_deref(), Some("routes[0].subscribers[0].filter.other"));
    }
}
