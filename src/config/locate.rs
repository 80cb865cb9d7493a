//! Where a key path (`routes[0].subscribers[1].url`, `server.listen[0]`) is
//! written in the config text: for errors found after deserialising, on
//! values serde kept no position for. A key that is not written (a default)
//! is placed at the nearest table that is.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Value};

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

#[cfg(test)]
mod tests {
    use super::span_of;

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
}
