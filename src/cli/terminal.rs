//! What the admin subcommands print is made safe for a terminal: much of it
//! comes from the public internet (a callback's body and the task id in it,
//! a provider's state word and errors, a subscriber's error text), and a
//! terminal obeys control characters in it (ESC sequences that move the
//! cursor, rewrite lines, set the title, write the clipboard with OSC 52;
//! C1 controls such as U+009B, a CSI of its own; bidirectional overrides
//! that reorder what is shown). Each is shown escaped (`\u{1b}`) instead, so
//! a callback can neither act on the operator's terminal nor forge a line of
//! output. Owns only that escaping; not the tables (`render.rs`).

use std::borrow::Cow;

/// Whether `c` would act on a terminal, or reorder the text around it,
/// rather than be shown.
fn acts(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| acts(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if keep(c) || !acts(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// One value in a table cell or on a line of its own: every control
/// character escaped, line breaks too (a newline in a task id would start
/// a row of its own making).
pub fn cell(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

/// Text of several lines (a body as received, a whole rendered answer):
/// line breaks and tabs kept, every other control character escaped.
pub fn lines(s: &str) -> Cow<'_, str> {
    escape(s, |c| matches!(c, '\n' | '\t'))
}

/// JSON as `serde_json` writes it (C0 controls in strings escaped already),
/// with the C1 controls and bidirectional overrides it leaves as they are
/// escaped too (`\u009b`): the same JSON value, safe on a terminal.
pub fn json(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| acts(c) && c != '\n') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            // Between tokens only: serde_json escapes one in a string.
            '\n' => out.push(c),
            c if acts(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_escaped() {
        assert_eq!(cell("plain tâche 7"), "plain tâche 7");
        assert_eq!(cell("a\u{1b}]52;c;eA==\u{7}b"), "a\\u{1b}]52;c;eA==\\u{7}b");
        assert_eq!(cell("x\ny\r\t\u{9b}2J\u{202e}"), "x\\ny\\r\\t\\u{9b}2J\\u{202e}");
        assert_eq!(
            lines("{\n\t\"a\": \"\u{1b}[2J\"\r\n}"),
            "{\n\t\"a\": \"\\u{1b}[2J\"\\r\n}"
        );
        // Escaping twice changes nothing more: the output is printable.
        let once = lines("\u{1b}[31m");
        assert_eq!(lines(&once), once);
    }

    #[test]
    fn json_stays_the_same_value() {
        let v = serde_json::json!({"task": "a\u{1b}[2J\u{9b}31m\u{202e}b\nc"});
        let text = serde_json::to_string_pretty(&v).unwrap();
        let safe = json(&text);
        assert!(!safe.chars().any(|c| acts(c) && c != '\n'), "{safe}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), v);
    }
}
