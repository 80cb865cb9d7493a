//! Tokens: presented as `?token=` or `Authorization: Bearer` (either may
//! match), compared in constant time, and redacted from URLs that are logged.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Secret;

/// The tokens presented: the first `Authorization` line whose scheme is
/// `Bearer` (in any case, RFC 9110 §11.1; other lines, e.g. a proxy's own
/// `Basic`, are passed over) and the first `?token=` (either may be right;
/// never more than two guesses per request, but for a `?token=` with a `+`,
/// read as a blank and as itself). A header's bytes are read as UTF-8: a
/// token with a character outside ASCII (`clé…`, which the config takes) is
/// sent so by the CLI, `forward`, curl and the console.
pub fn presented_tokens(query: Option<&str>, headers: &HeaderMap) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    let bearer = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .find_map(bearer_token);
    if let Some(t) = bearer {
        out.push(t.to_string());
    }
    if let Some(q) = query {
        let token = |q: &str| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        };
        out.extend(token(q));
        // A base64 token pasted into the callback URL as it is: its `+` is
        // the token's, not a form's blank (the same value read both ways).
        if q.contains('+') {
            out.extend(token(&q.replace('+', "%2B")).filter(|t| !out.contains(t)));
        }
    }
    out
}

/// The credentials of an `Authorization` value whose scheme is `Bearer`
/// (compared ignoring case), trimmed.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// A configured token's SHA-256 digest, computed once when the config is
/// loaded or reloaded (a route's `token_digests`), so that a request hashes
/// only what it presents. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &Secret) -> TokenDigest {
        TokenDigest(Sha256::digest(token.expose()).into())
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

/// Whether any of `presented` equals one of `tokens` (see [`digest_matches`]).
pub fn token_matches(presented: &[String], tokens: &[Secret]) -> bool {
    let tokens: Vec<TokenDigest> = tokens.iter().map(TokenDigest::of).collect();
    digest_matches(presented, &tokens)
}

/// Whether any of `presented` is a token whose digest is one of `tokens`.
/// Every pair is compared, in constant time, so timing does not reveal which
/// one (or how much) matched; the values compared are SHA-256 digests, of
/// one length, so it does not reveal a token's length either.
pub fn digest_matches(presented: &[String], tokens: &[TokenDigest]) -> bool {
    let mut ok = subtle::Choice::from(0);
    for p in presented {
        let p: [u8; 32] = Sha256::digest(p.as_bytes()).into();
        for t in tokens {
            ok |= p.ct_eq(&t.0);
        }
    }
    ok.into()
}

/// Replace the value of `token` query parameters, so URLs can be logged. The
/// key is compared decoded (`tok%65n` is `token` to [`presented_tokens`] too).
pub fn redact_query(path_and_query: &str) -> String {
    let is_token = |k: &str| {
        form_urlencoded::parse(k.as_bytes())
            .next()
            .is_some_and(|(decoded, _)| decoded.eq_ignore_ascii_case("token"))
    };
    redact_query_where(path_and_query, is_token)
}

/// Replace the value of every query parameter: a subscriber URL may carry
/// its key in any of them (`?code=`, `?sig=`), so an answer that shows the
/// URL shows only the names.
pub fn redact_query_values(url: &str) -> String {
    redact_query_where(url, |_| true)
}

/// A path segment, or a query part with no `=`, this long may be a
/// credential: logs show its length only.
const LONG_ENOUGH_TO_BE_SECRET: usize = 16;

/// A request's path as the log shows it when no route matched: query values
/// replaced, and any path segment long enough to be a credential (16
/// characters or more — a provider set up to put its token in the path)
/// shown by its length only.
pub fn loggable_unknown_path(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path: Vec<String> = path
        .split('/')
        .map(|seg| match seg.chars().count() {
            n if n >= LONG_ENOUGH_TO_BE_SECRET => format!("REDACTED({n})"),
            _ => seg.to_string(),
        })
        .collect();
    let path = path.join("/");
    match query {
        Some(q) => redact_query_values(&format!("{path}?{q}")),
        None => path,
    }
}

/// A URL as messages show it: `user:password@` and query values replaced
/// (a subscriber's key may sit in either).
pub fn redact_url(url: &str) -> String {
    redact_query_values(&hide_userinfo(url))
}

/// `scheme://user:pass@host/…` with the credentials replaced. A URL is read
/// as a browser would (`https:user:pw@host` has credentials too); text that
/// is not one (an invalid URL in an error) loses everything up to its last
/// `@`, which may take a path's or a query's `@` (and the host) with it: a
/// `?` or `#` in the password ends the host for a URL parser, and the text
/// after it would have been taken for the query, the password's start shown
/// as the host (console review, stop 61).
pub fn hide_userinfo(url: &str) -> String {
    if let Ok(mut u) = url::Url::parse(url) {
        // `u:pw@host` parses too, as scheme `u` and path `pw@host`: only a
        // URL with a host is judged by its parse.
        if u.has_authority() {
            if u.username().is_empty() && u.password().is_none() {
                return url.to_string();
            }
            if u.set_password(None).is_ok() && u.set_username("REDACTED").is_ok() {
                return u.to_string();
            }
        }
    }
    // Written without `scheme://` (`u:pw@host`, `//u:pw@host`: a NATS server,
    // an S3 endpoint, `--admin`), it loses what comes before its last `@` too
    // (observability review, stop 62: such text was shown whole).
    // A `://` counts only after a scheme (the change review: one in a query,
    // `u:pw@h/?cb=http://a`, was taken for it and the password shown).
    let (prefix, rest) = match url.split_once("://").filter(|(s, _)| is_scheme(s)) {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => match url.strip_prefix("//") {
            Some(rest) => ("//".to_string(), rest),
            None => (String::new(), url),
        },
    };
    match rest.rfind('@') {
        Some(at) => format!("{prefix}REDACTED@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Whether a query part `k=v` is a base64 token pasted whole, its `=`
/// padding (`v`: one or two `=`, perhaps percent-encoded; or none after a
/// one-`=` pad) taken for a name/value split. The whole part counts for the
/// length, as it does for a part with no `=`; an empty value is a padding
/// only after a key that looks like base64 (letters of both cases and a
/// digit, nothing else), so `?verification_request_id=` stays.
fn looks_padded_token(k: &str, v: &str) -> bool {
    let v: String = percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
    let padding = !v.is_empty() && v.len() <= 2 && v.chars().all(|c| c == '=');
    let base64_key = k.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        && k.chars().any(|c| c.is_ascii_digit())
        && k.chars().any(|c| c.is_ascii_uppercase())
        && k.chars().any(|c| c.is_ascii_lowercase());
    let long = k.chars().count() + 1 + v.len() >= LONG_ENOUGH_TO_BE_SECRET;
    long && (padding || (v.is_empty() && base64_key))
}

/// Whether `s` is a URL scheme (RFC 3986: a letter, then letters, digits,
/// `+`, `-`, `.`): what comes before a `://` that starts a URL.
pub(super) fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

fn redact_query_where(url: &str, secret: impl Fn(&str) -> bool) -> String {
    let Some((path, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            // A base64 token pasted as the whole query: its padding is no
            // name/value split (its key was logged; observability review,
            // stop 62).
            Some((k, v)) if looks_padded_token(k, v) => format!("REDACTED({})", kv.chars().count()),
            Some((k, _)) if secret(k) => format!("{k}=REDACTED"),
            // A part with no `=` is a value with no name (a provider set up
            // with `…?<token>`): long enough to be a credential, only its length.
            None if kv.chars().count() >= LONG_ENOUGH_TO_BE_SECRET => {
                format!("REDACTED({})", kv.chars().count())
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}
