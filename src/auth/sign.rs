//! Standard Webhooks signatures on outgoing deliveries:
//! `v1,base64(HMAC-SHA256(key, id.timestamp.body))`, one per key (rotation).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::{hmac, Secret};

/// The `webhook-signature` header value for a delivery: one `v1,<base64>` per
/// key, space-separated (several keys during a rotation).
pub fn standard_webhooks_signature(keys: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    keys.iter()
        .map(|k| {
            format!(
                "v1,{}",
                B64.encode(hmac(k.expose(), &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
