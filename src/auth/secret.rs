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
/// sent it) with every occurrence of `secret` — as sent, form-encoded (a
/// URL's query), or with `/` escaped (JSON) — replaced by `<redacted>`.
/// The same bytes back when none occurs. A secret shorter than 4 bytes is
/// not looked for (it would match anywhere).
pub fn redact_bytes(text: bytes::Bytes, secret: &[u8]) -> bytes::Bytes {
    if secret.len() < 4 {
        return text;
    }
    let encoded: String = form_urlencoded::byte_serialize(secret).collect();
    let escaped: Vec<u8> = secret
        .iter()
        .flat_map(|&b| if b == b'/' { b"\\/".to_vec() } else { vec![b] })
        .collect();
    let mut forms: Vec<&[u8]> = vec![secret, encoded.as_bytes(), &escaped];
    forms.dedup();
    let mut out = text.to_vec();
    let mut found = false;
    for form in forms {
        let mut i = 0;
        while let Some(at) = out[i..].windows(form.len()).position(|w| w == form) {
            let at = i + at;
            out.splice(at..at + form.len(), b"<redacted>".iter().copied());
            i = at + b"<redacted>".len();
            found = true;
        }
    }
    if found {
        bytes::Bytes::from(out)
    } else {
        text
    }
}

/// [`redact_bytes`] for a [`Secret`].
pub fn redact_secret(text: bytes::Bytes, secret: &Secret) -> bytes::Bytes {
    redact_bytes(text, secret.expose())
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
    fn debug_never_shows_the_bytes() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", vec![s.clone()]).contains("hunter2"));
        assert_eq!(credential_text(&s), "hunter2-token");
        assert!(bearer(&s).is_sensitive());
    }
}
