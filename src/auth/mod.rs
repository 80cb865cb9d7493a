//! Authentication of callbacks and signing of deliveries: the only module that
//! reads secret bytes, and it compares them in constant time.
//!
//! - [`source`]: the client address (the TCP peer, or the right-most untrusted
//!   `X-Forwarded-For` entry behind a trusted proxy) and the allowlist;
//! - [`token`]: `?token=` or `Authorization: Bearer` (either may match);
//! - [`quoted`]: a `token` URL parameter quoted in a callback's body, hidden;
//! - [`signature`]: provider signatures `kie`, `standard-webhooks`, `hmac-sha256`;
//! - [`sign`]: Standard Webhooks signatures on outgoing deliveries;
//! - [`secret`]: the [`Secret`] type itself;
//! - [`target`]: a subscriber URL as shown, without its path or credentials.

pub mod quoted;
pub mod secret;
pub mod sign;
pub mod signature;
pub mod source;
pub mod target;
pub mod token;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use quoted::hide_token_params;
pub use secret::{bearer, credential_text, looks_secret, redact_bytes, redact_cut_end, redact_secret, Secret};
pub use sign::standard_webhooks_signature;
pub use signature::{task_id, verify_signature, SignatureError};
pub use source::{client_ip, ip_allowed, via_trusted_proxy, Source};
pub use target::shown_target;
pub use token::{
    digest_matches, hide_userinfo, loggable_unknown_path, presented_tokens, redact_query, redact_query_values,
    redact_url, token_matches, TokenDigest,
};

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests;
