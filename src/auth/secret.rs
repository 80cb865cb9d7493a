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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", vec![s.clone()]).contains("hunter2"));
        assert_eq!(credential_text(&s), "hunter2-token");
        assert!(bearer(&s).is_sensitive());
    }
}
