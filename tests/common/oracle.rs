//! The one HMAC oracle: signs and verifies as the Standard Webhooks spec and the
//! providers' documents say, with the `hmac` crate and none of hookrelay's code,
//! so a test compares the daemon against the spec, not against itself.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::Mac;

/// Seconds since the Unix epoch, as signature timestamps are written.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Base64 of HMAC-SHA256(`key`, the concatenated `parts`).
pub fn hmac_b64(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The key bytes of a Standard Webhooks secret (`whsec_` + base64, or bare base64).
pub fn whsec_key(secret: &str) -> Vec<u8> {
    STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap()
}

/// The `webhook-signature` entry (`v1,…`) a sender with `secret` writes for a message.
pub fn standard_webhooks_sign(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    let signed = format!("{id}.{ts}.");
    format!("v1,{}", hmac_b64(&whsec_key(secret), &[signed.as_bytes(), body]))
}

/// Whether any entry of a `webhook-signature` header is `secret`'s signature.
pub fn standard_webhooks_verify(secret: &str, id: &str, ts: &str, body: &[u8], header: &str) -> bool {
    let expected = standard_webhooks_sign(secret, id, ts, body);
    header.split(' ').any(|s| s == expected)
}

/// kie.ai's `X-Webhook-Signature`: base64 HMAC-SHA256 of `task_id.timestamp`.
pub fn kie_sign(key: &str, task_id: &str, ts: &str) -> String {
    hmac_b64(key.as_bytes(), &[format!("{task_id}.{ts}").as_bytes()])
}
