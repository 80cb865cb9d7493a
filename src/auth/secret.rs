//! [`Secret`]: bytes that authenticate — route tokens, signing keys, the admin
//! token, credentials sent to others. Its `Debug` never shows them, and only
//! this module (`auth`) reads them: to compare in constant time, to sign, or
//! to put a credential into a request. So "secrets never reach a log line or
//! an API answer" is a fact of the types, not a habit.

use std::fmt;
use std::sync::Arc;

/// Secret bytes. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(Arc::from(bytes.into()))
    }

    /// How many bytes (a signing key's strength; safe to show).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many different byte values it has (a token's entropy, roughly;
    /// safe to show: it says nothing about which bytes).
    pub fn distinct_bytes(&self) -> usize {
        let mut seen = [false; 256];
        self.0.iter().for_each(|&b| seen[usize::from(b)] = true);
        seen.iter().filter(|&&s| s).count()
    }

    /// Whether it holds an ASCII control character (a newline, a tab: no
    /// header can carry one; safe to say: it says nothing about which).
    pub fn has_control_char(&self) -> bool {
        self.0.iter().any(u8::is_ascii_control)
    }

    /// The bytes, for this module only.
    pub(in crate::auth) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The secret as text, for a client library that must be handed a credential
/// (S3 keys, a provider's API key). Never log what this returns.
pub fn credential_text(secret: &Secret) -> String {
    String::from_utf8_lossy(secret.expose()).into_owned()
}

/// `Authorization: Bearer <secret>`, marked sensitive.
pub fn bearer(secret: &Secret) -> http::HeaderValue {
    let mut v = Vec::with_capacity(7 + secret.expose().len());
    v.extend_from_slice(b"Bearer ");
    v.extend_from_slice(secret.expose());
    let mut value = http::HeaderValue::from_bytes(&v).unwrap_or_else(|_| http::HeaderValue::from_static("Bearer"));
    value.set_sensitive(true);
    value
}

/// `text` (an answer relayed from someone else, which may quote what we
/// sent it) with every occurrence of `secret` — as sent, percent-encoded (a
/// URL's query: [`percent_forms`]), or JSON-escaped ([`json_escapes`]) —
/// replaced by `<redacted>`.
/// The same bytes back when none occurs. A secret shorter than 4 bytes is
/// not looked for (it would match anywhere).
pub fn redact_bytes(text: bytes::Bytes, secret: &[u8]) -> bytes::Bytes {
    if secret.len() < 4 {
        return text;
    }
    let forms = forms(secret);
    // Most texts quote no secret: they are searched (fast, SIMD) and kept
    // as they are; each form is then replaced in one pass over the text.
    if !forms.iter().any(|f| memchr::memmem::find(&text, f).is_some()) {
        return text;
    }
    let mut out = text.to_vec();
    for form in &forms {
        let mut replaced = Vec::with_capacity(out.len());
        let mut from = 0;
        for at in memchr::memmem::find_iter(&out, form.as_slice()) {
            replaced.extend_from_slice(&out[from..at]);
            replaced.extend_from_slice(b"<redacted>");
            from = at + form.len();
        }
        if from > 0 {
            replaced.extend_from_slice(&out[from..]);
            out = replaced;
        }
    }
    bytes::Bytes::from(out)
}

/// Every way `secret` may be quoted: as sent, percent-encoded, JSON-escaped;
/// longest first (a form inside a longer one must not break its match).
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms: Vec<Vec<u8>> = vec![secret.to_vec()];
    forms.extend(percent_forms(secret));
    if let Ok(text) = std::str::from_utf8(secret) {
        forms.extend(json_escapes(text).into_iter().map(String::into_bytes));
    }
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// A text cut short (a page's first bytes quoted in an error) that ends in
/// the start of `secret` — 4 bytes of it at least, in any of the forms
/// [`redact_bytes`] knows (a percent-encoded key cut inside its escapes
/// kept its start: observability review, stop 62) — with that start
/// replaced by `<redacted>`.
pub fn redact_cut_end(mut text: String, secret: &[u8]) -> String {
    if secret.len() < 4 {
        return text;
    }
    let cut = forms(secret)
        .iter()
        .filter_map(|f| (4..f.len()).rev().find(|&n| text.as_bytes().ends_with(&f[..n])))
        .max();
    if let Some(n) = cut {
        // At a character's start: a form's start is ASCII but for a
        // secret's own non-ASCII bytes, which end where the text does.
        let mut at = text.len() - n;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push_str("<redacted>");
    }
    text
}

/// The ways a URL may carry `secret` percent-encoded: as a form does (space
/// `+` or `%20`, `*` kept, `~` escaped) or as RFC 3986 says (`~` kept, `*`
/// escaped), the escapes' hex digits in upper or lower case (.NET's
/// `HttpUtility.UrlEncode` writes `%2f`).
fn percent_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let form: String = form_urlencoded::byte_serialize(secret).collect();
    let rfc: String = secret
        .iter()
        .map(|&b| match b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            true => (b as char).to_string(),
            false => format!("%{b:02X}"),
        })
        .collect();
    let lower = |f: &str| -> Vec<u8> {
        let mut out = f.as_bytes().to_vec();
        for i in 0..out.len() {
            if out[i] == b'%' {
                for b in out.iter_mut().skip(i + 1).take(2) {
                    b.make_ascii_lowercase();
                }
            }
        }
        out
    };
    let mut forms = Vec::new();
    for f in [form.replace('+', "%20"), form, rfc] {
        forms.push(lower(&f));
        forms.push(f.into_bytes());
    }
    forms
}

/// The ways a JSON encoder may write `text` inside a string: `"`, `\\` and
/// control characters escaped, `/` escaped or not, non-ASCII as it is or as
/// `\\u` escapes (lower or upper case hex).
fn json_escapes(text: &str) -> Vec<String> {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    let plain = quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned();
    let ascii = |upper: bool| -> String {
        let mut out = String::with_capacity(plain.len());
        for c in plain.chars() {
            if c.is_ascii() {
                out.push(c);
                continue;
            }
            for u in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&match upper {
                    true => format!("\\u{u:04X}"),
                    false => format!("\\u{u:04x}"),
                });
            }
        }
        out
    };
    let mut forms = Vec::new();
    for f in [ascii(false), ascii(true), plain] {
        forms.push(f.replace('/', "\\/"));
        forms.push(f);
    }
    forms
}

/// [`redact_bytes`] for a [`Secret`].
pub fn redact_secret(text: bytes::Bytes, secret: &Secret) -> bytes::Bytes {
    redact_bytes(text, secret.expose())
}

/// Names (of headers, of query parameters) that may carry a credential:
/// those some platforms authenticate callbacks with (a static
/// `X-Webhook-Secret`, `Webhook-Token`, `X-Webhook-Api-Key`,
/// `X-Webhook-SigningKey`…): kept by name only. "key" counts at the end of a
/// part of the name (`api-key`, `hmackey`), not inside one (`keyword`), and an
/// idempotency key is an id, not a credential.
pub fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 7] = ["secret", "token", "auth", "pass", "cred", "cookie", "session"];
    if WORDS.iter().any(|w| name.contains(w)) {
        return true;
    }
    let parts: Vec<&str> = name.split(['-', '_']).collect();
    parts.iter().enumerate().any(|(i, p)| {
        let idempotency = p.starts_with("idempotency") || (i > 0 && parts[i - 1] == "idempotency");
        p.ends_with("key") && !idempotency
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_secret_is_redacted_in_every_form() {
        let secret = Secret::new("tok/en 1234");
        let body = r#"{"echo":"https://r.example/h?token=tok%2Fen+1234","raw":"tok/en 1234","json":"tok\/en 1234"}"#;
        let out = redact_secret(bytes::Bytes::from(body), &secret);
        let out = String::from_utf8(out.to_vec()).unwrap();
        assert!(!out.contains("1234"), "{out}");
        assert_eq!(out.matches("<redacted>").count(), 3, "{out}");
        let clean = bytes::Bytes::from_static(b"nothing here");
        assert_eq!(redact_secret(clean.clone(), &secret), clean);
    }

    #[test]
    fn a_secret_echoed_json_escaped_is_redacted() {
        let secret = Secret::new("q\"uo\\te/é1234");
        for echoed in [
            r#"{"k":"q\"uo\\te/é1234"}"#,
            r#"{"k":"q\"uo\\te\/\u00e91234"}"#,
            r#"{"k":"q\"uo\\te/\u00E91234"}"#,
            "https://r.example/h?token=q%22uo%5Cte%2F%C3%A91234",
        ] {
            let out = redact_secret(bytes::Bytes::from(echoed), &secret);
            let out = String::from_utf8(out.to_vec()).unwrap();
            assert!(!out.contains("1234") && out.contains("<redacted>"), "{echoed} -> {out}");
        }
        let spaced = Secret::new("two words 1234");
        let out = redact_secret(bytes::Bytes::from("?token=two%20words%201234"), &spaced);
        assert_eq!(&out[..], b"?token=<redacted>");
    }

    /// Percent-encoded otherwise than a form does: hex digits in lower case,
    /// or `~` kept and `*` escaped (RFC 3986).
    #[test]
    fn a_secret_echoed_percent_encoded_another_way_is_redacted() {
        for (secret, echoed) in [
            // Lower-case hex, as .NET's HttpUtility.UrlEncode writes it.
            ("tok/en é1234", "?token=tok%2fen+%c3%a91234"),
            ("tok/en é1234", "?token=tok%2fen%20%c3%a91234"),
            // RFC 3986: `~` kept, `*` escaped.
            ("k~e*y 1234", "?token=k~e%2Ay%201234"),
            ("k~e*y 1234", "?token=k~e%2ay%201234"),
        ] {
            let out = redact_secret(bytes::Bytes::from(echoed), &Secret::new(secret));
            assert_eq!(String::from_utf8_lossy(&out), "?token=<redacted>", "{echoed}");
        }
    }

    /// A text cut short inside a quoted secret loses the start it kept, in
    /// every form; a text that ends otherwise is kept as it is.
    #[test]
    fn a_secret_cut_at_the_end_of_a_text_loses_its_start() {
        let key = b"k+y/s3cr3t=abcdef";
        for (text, want) in [
            // Percent-encoded (as a form, lower-case hex), JSON-escaped, as sent.
            ("page: ?key=k%2By%2Fs3cr", "page: ?key=<redacted>"),
            ("page: ?key=k%2by%2fs3", "page: ?key=<redacted>"),
            ("page: {\"key\":\"k+y\\/s3cr3t=ab", "page: {\"key\":\"<redacted>"),
            ("page: k+y/s3cr3t", "page: <redacted>"),
            ("page: k%2By", "page: <redacted>"),
            // Shorter than 4 bytes of it, or not its start: kept.
            ("page: k+y", "page: k+y"),
            ("page: s3cr3t=ab", "page: s3cr3t=ab"),
            ("page: ends here", "page: ends here"),
        ] {
            assert_eq!(redact_cut_end(text.to_string(), key), want, "{text}");
        }
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", vec![s.clone()]).contains("hunter2"));
        assert_eq!(credential_text(&s), "hunter2-token");
        assert!(bearer(&s).is_sensitive());
    }
}
