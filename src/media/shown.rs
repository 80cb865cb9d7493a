//! How a media URL appears in logs and admin answers: scheme, host and path,
//! never the query nor a `user:password@`. Result URLs are usually signed, and
//! the signature in the query string is a credential for the file; a file
//! server's password may sit in the URL itself.

/// `https://REDACTED@host/path?…` for a URL with credentials and a query,
/// the URL itself when it has neither.
pub fn shown(url: &str) -> String {
    let url = crate::auth::hide_userinfo(url);
    let without_fragment = url.split('#').next().unwrap_or(&url);
    match without_fragment.split_once('?') {
        Some((base, q)) if !q.is_empty() => format!("{base}?…"),
        Some((base, _)) => base.to_string(),
        None => without_fragment.to_string(),
    }
}

/// `text` (a provider's message, which may quote a URL it was given or
/// made) with every `http://` or `https://` URL in it [`shown`] (also one
/// written with JSON's `\/`): up to the next blank, quote or bracket, and to
/// the end of a text cut off inside one; punctuation that ends a sentence
/// after it is kept. A URL quoted without its scheme (`cdn.example/a?sig=…`,
/// `//cdn.example/a?sig=…`) loses its query too.
pub fn urls_shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = url_start(rest) {
        out.push_str(&bare_queries_hidden(&rest[..at]));
        let url = &rest[at..];
        let end = token_end(url);
        let token = url[..end].trim_end_matches(SENTENCE_END);
        out.push_str(&shown(&token.replace("\\/", "/")));
        out.push_str(&url[token.len()..end]);
        rest = &url[end..];
    }
    out.push_str(&bare_queries_hidden(rest));
    out
}

/// Punctuation that ends a sentence after a quoted URL.
const SENTENCE_END: [char; 5] = ['.', ',', ';', ':', '!'];

/// Where a quoted URL (or word) ends: the next blank, quote or bracket.
fn token_end(s: &str) -> usize {
    s.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']'))
        .unwrap_or(s.len())
}

/// `text` (with no `http(s)://` in it) with each word that is a URL
/// without `http(s)://` [`shown`] (or its query hidden):
/// - another scheme's (`s3://…`, `wss://…`), whole as [`shown`] does;
/// - one naming a host (`//host…`, or a first part with a `.`) that has a
///   query, a fragment or (after `//`) credentials;
/// - a relative path with a query (`b/x?sig=…`, `minio:9000/b?…`);
/// - a path from the root (`/files/a?token=…`) only when its query names
///   something secret: a provider's API path (`/api/jobs?taskId=7`) stays.
fn bare_queries_hidden(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = token_end(rest);
        let word = &rest[..end];
        let kept = word.trim_end_matches(SENTENCE_END);
        match bare_url_shown(kept) {
            Some(shown) => {
                out.push_str(&shown);
                out.push_str(&word[kept.len()..]);
            }
            None => out.push_str(word),
        }
        // The blank, quote or bracket after the word, as it was.
        let sep = rest[end..].chars().next().map_or(0, char::len_utf8);
        out.push_str(&rest[end..end + sep]);
        rest = &rest[end + sep..];
    }
    out
}

/// A word as [`bare_queries_hidden`] shows it; None when it is left as is.
fn bare_url_shown(word: &str) -> Option<String> {
    let w = word.replace("\\/", "/");
    if w.contains("://") {
        return Some(shown(&w));
    }
    let (lead, rest) = match w.strip_prefix("//") {
        Some(r) => ("//", r),
        None => ("", w.as_str()),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let after = |c: char| rest.split_once(c).is_some_and(|(_, x)| !x.is_empty());
    if !host.is_empty() && (!lead.is_empty() || host.contains('.')) {
        // Credentials only after `//` (`ops@example.com` is an address).
        if !(after('?') || after('#') || (!lead.is_empty() && rest.contains('@'))) {
            return None;
        }
        let shown = shown(&format!("https://{rest}"));
        return Some(format!("{lead}{}", shown.strip_prefix("https://").unwrap_or(&shown)));
    }
    let (base, query) = rest.split_once('?')?;
    if query.is_empty() || !base.contains('/') || (base.starts_with('/') && !names_a_secret(query)) {
        return None;
    }
    Some(format!("{base}?…"))
}

/// Whether a query names what may be a credential: a key the headers'
/// rule calls secret ([`crate::auth::looks_secret`]) or one of a signed
/// URL's (`sig`, `amz`, `expires` in it), or a value with no name long
/// enough to be one.
fn names_a_secret(query: &str) -> bool {
    const SIGNED: [&str; 3] = ["sig", "amz", "expires"];
    query.split('&').any(|part| match part.split_once('=') {
        Some((k, _)) => {
            let k = k.to_ascii_lowercase();
            crate::auth::looks_secret(&k) || SIGNED.iter().any(|s| k.contains(s))
        }
        None => part.chars().count() >= 16,
    })
}

/// Where the next `http://` or `https://` starts (any case, `/` or `\/`).
fn url_start(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    ["http://", "https://", "http:\\/\\/", "https:\\/\\/"]
        .into_iter()
        .filter_map(|p| lower.find(p))
        .min()
}

#[cfg(test)]
mod tests {
    use super::{shown, urls_shown};

    #[test]
    fn urls_in_a_message_are_shown_without_their_queries() {
        let long = format!(
            "https://cdn.example/k/x.mp4?Signature={}&Key-Pair-Id=K",
            "S".repeat(400)
        );
        for (said, shows) in [
            (
                format!("The URL is not a file generated by this platform: {long}"),
                "The URL is not a file generated by this platform: https://cdn.example/k/x.mp4?…".to_string(),
            ),
            // Cut off inside the query (a message clipped to 300 bytes).
            (
                format!("expired: {}…", &long[..120]),
                "expired: https://cdn.example/k/x.mp4?…".to_string(),
            ),
            (
                r#"{"url":"HTTPS://u:p@h.example/a?sig=Q","at":"10:21"}"#.to_string(),
                r#"{"url":"https://REDACTED@h.example/a?…","at":"10:21"}"#.to_string(),
            ),
            (
                "see https://h.example/x#sig=1 and http://h.example/y?1 expired at 10:21".to_string(),
                "see https://h.example/x and http://h.example/y?… expired at 10:21".to_string(),
            ),
            ("no URL here ?sig=1".to_string(), "no URL here ?sig=1".to_string()),
            (
                "(https://h.example/a?s=1), expired; see https://h.example/b?t=2.".to_string(),
                "(https://h.example/a?…), expired; see https://h.example/b?….".to_string(),
            ),
            (
                r#"{"url":"https:\/\/h.example\/a.mp4?sig=Q"}"#.to_string(),
                r#"{"url":"https://h.example/a.mp4?…"}"#.to_string(),
            ),
            // Quoted without its scheme: its query, fragment and
            // credentials hidden too; a path alone is not a URL.
            (
                "expired: cdn.example/k/x.mp4?Signature=SSSS&Key-Pair-Id=K.".to_string(),
                "expired: cdn.example/k/x.mp4?….".to_string(),
            ),
            (
                r#"{"file":"\/\/cdn.example\/a.mp4?sig=Q","t":"a?b"}"#.to_string(),
                r#"{"file":"//cdn.example/a.mp4?…","t":"a?b"}"#.to_string(),
            ),
            ("why? because=no".to_string(), "why? because=no".to_string()),
            (
                "(see cdn.example/b?t=2), über-long: x/y?z=1".to_string(),
                "(see cdn.example/b?…), über-long: x/y?…".to_string(),
            ),
            (
                "no /api/v1/jobs/record-info?taskId=abc; //u:pw@h.example/x and cdn.example/a#access_token=T"
                    .to_string(),
                "no /api/v1/jobs/record-info?taskId=abc; //REDACTED@h.example/x and cdn.example/a".to_string(),
            ),
            (
                "cdn.example/k/x.mp4?opaque".to_string(),
                "cdn.example/k/x.mp4?…".to_string(),
            ),
            (
                "write to ops@example.com.".to_string(),
                "write to ops@example.com.".to_string(),
            ),
            (
                "s3://bucket/k.mp4?X-Amz-Signature=abc, localhost:9000/b/x?sig=Q and /files/a.mp4?token=T".to_string(),
                "s3://bucket/k.mp4?…, localhost:9000/b/x?… and /files/a.mp4?…".to_string(),
            ),
            (
                "did v1.2 fail? see a.b/c?".to_string(),
                "did v1.2 fail? see a.b/c?".to_string(),
            ),
        ] {
            assert_eq!(urls_shown(&said), shows);
        }
    }

    #[test]
    fn queries_are_hidden() {
        assert_eq!(
            shown("https://file.com/k/x.mp4?X-Amz-Signature=abc&exp=1"),
            "https://file.com/k/x.mp4?…"
        );
        assert_eq!(shown("https://file.com/k/x.mp4"), "https://file.com/k/x.mp4");
        assert_eq!(shown("https://file.com/k/x.mp4?"), "https://file.com/k/x.mp4");
        assert_eq!(shown("https://file.com/x#sig=1"), "https://file.com/x");
        assert_eq!(
            shown("http://alice:S3CRET@files.example/new.bin?sig=Q"),
            "http://REDACTED@files.example/new.bin?…"
        );
    }
}
