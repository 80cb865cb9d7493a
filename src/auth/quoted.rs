//! A route token quoted in a callback's body, hidden whatever its value: a
//! provider may quote the callback URL it was given (`…?token=…`), and the
//! token it quotes may be one rotated out of the configuration since, or one
//! too short to be looked for by value ([`super::redact_bytes`]).

/// `text` with the value of every `token` query parameter of a URL in it
/// replaced by `<redacted>`: after `?` or `&` (also written `\u003f`,
/// `\u0026`, as JSON encoders escape them, or `&amp;`, `&#38;`, `&#x26;`),
/// the name in any case, its `=` also `\u003d`; and in a URL
/// percent-encoded inside another's query (`%3Ftoken%3D…`, up to `%26`).
/// The value runs to what ends a URL in text: a quote, a backslash, `&`,
/// `#`, `<`, `>`, a space (more hidden rather than less). The same bytes
/// back when there is none.
pub fn hide_token_params(text: bytes::Bytes) -> bytes::Bytes {
    let mut out: Vec<u8> = Vec::new();
    let mut from = 0;
    let mut at = 0;
    while let Some(n) = memchr::memchr3(b'=', b'%', b'\\', &text[at..]) {
        let eq = at + n;
        at = eq + 1;
        let Some(value) = value_after(&text, eq) else {
            continue;
        };
        if value.start < from || value.is_empty() {
            continue;
        }
        out.extend_from_slice(&text[from..value.start]);
        out.extend_from_slice(b"<redacted>");
        from = value.end;
        at = value.end;
    }
    if from == 0 {
        return text;
    }
    out.extend_from_slice(&text[from..]);
    bytes::Bytes::from(out)
}

/// Where the value of a `token` parameter is, if `text[eq..]` starts the
/// `=` (or `%3D`) after its name.
fn value_after(text: &[u8], eq: usize) -> Option<std::ops::Range<usize>> {
    let (encoded, start) = match text[eq] {
        b'=' => (false, eq + 1),
        _ if has_at(text, eq, b"%3d") => (true, eq + 3),
        // JSON encoders (Gson) may escape `=` too.
        _ if has_at(text, eq, br"\u003d") => (false, eq + 6),
        _ => return None,
    };
    let name = eq.checked_sub(5)?;
    if !text[name..eq].eq_ignore_ascii_case(b"token") {
        return None;
    }
    let before = &text[..name];
    let after_separator = match encoded {
        false => {
            before.ends_with(b"?")
                || before.ends_with(b"&")
                || [&br"\u0026"[..], br"\u003f", b"&amp;", b"&#38;", b"&#x26;"]
                    .iter()
                    .any(|sep| ends_with_ci(before, sep))
        }
        true => ends_with_ci(before, b"%3f") || ends_with_ci(before, b"%26"),
    };
    if !after_separator {
        return None;
    }
    let mut end = start;
    while end < text.len() && !ends_value(text, end, encoded) {
        end += 1;
    }
    Some(start..end)
}

/// Whether the value that started earlier ends at `text[i]`.
fn ends_value(text: &[u8], i: usize, encoded: bool) -> bool {
    let b = text[i];
    b.is_ascii_whitespace()
        || b.is_ascii_control()
        || b"&#\"'\\<>`".contains(&b)
        || (encoded && (has_at(text, i, b"%26") || has_at(text, i, b"%23")))
}

fn has_at(text: &[u8], i: usize, what: &[u8]) -> bool {
    text.get(i..i + what.len())
        .is_some_and(|t| t.eq_ignore_ascii_case(what))
}

fn ends_with_ci(text: &[u8], what: &[u8]) -> bool {
    text.len() >= what.len() && text[text.len() - what.len()..].eq_ignore_ascii_case(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden(s: &str) -> String {
        String::from_utf8(hide_token_params(bytes::Bytes::from(s.to_string())).to_vec()).unwrap()
    }

    #[test]
    fn a_token_parameter_is_hidden_in_every_form_a_body_quotes_a_url() {
        for (quoted, shown) in [
            (
                "https://r.example/hooks/a?token=old-0ne",
                "https://r.example/hooks/a?token=<redacted>",
            ),
            (
                r#"{"u":"https://r/h?x=1&Token=ab+c/d=&y=2"}"#,
                r#"{"u":"https://r/h?x=1&Token=<redacted>&y=2"}"#,
            ),
            (
                r#"{"u":"https:\/\/r\/h?x=1\u0026token=abc"}"#,
                r#"{"u":"https:\/\/r\/h?x=1\u0026token=<redacted>"}"#,
            ),
            (
                "<a href=\"/h?a=1&amp;token=abc#f\">",
                "<a href=\"/h?a=1&amp;token=<redacted>#f\">",
            ),
            (
                "cb=https%3A%2F%2Fr%2Fh%3Ftoken%3Dab%2Bc%26x%3D1",
                "cb=https%3A%2F%2Fr%2Fh%3Ftoken%3D<redacted>%26x%3D1",
            ),
            ("a?token=x b?token=yz", "a?token=<redacted> b?token=<redacted>"),
            (
                r#"{"u":"https://r/h?a=1\u0026token\u003dk3y,9(x)"}"#,
                r#"{"u":"https://r/h?a=1\u0026token\u003d<redacted>"}"#,
            ),
            (
                "<a href='/h?a=1&#38;token=k3y'>",
                "<a href='/h?a=1&#38;token=<redacted>'>",
            ),
        ] {
            assert_eq!(hidden(quoted), shown, "{quoted}");
        }
    }

    #[test]
    fn other_names_and_empty_values_are_left_as_they_are() {
        for s in [
            "?access_token=abc",
            "?mytoken=abc",
            "token=abc",
            "a?token=&b=1",
            "a?token=<redacted>",
            "%3Ftoken%3D%26",
            "no equals here %",
            "ends with?token",
        ] {
            assert_eq!(hidden(s), s);
        }
        let body = bytes::Bytes::from_static(b"{\"nothing\":1}");
        assert_eq!(hide_token_params(body.clone()).as_ptr(), body.as_ptr());
    }
}
