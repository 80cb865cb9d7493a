//! The one HMAC oracle: signs and verifies as the Standard Webhooks spec and the
//! providers' documents say, with the `hmac` crate and none of hookrelay's code,
//! so a test compares the daemon against the spec, not against itself. And the
//! spec's own implementation: the official Standard Webhooks library (Python),
//! for what a receiver really runs.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::Mac;
use http::HeaderMap;

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

/// Hex of HMAC-SHA256(`key`, `body`): the `hmac-sha256` scheme's signature (GitHub's style).
pub fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
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

/// Check every message (its headers and body) with the official Standard
/// Webhooks library (Python package `standardwebhooks`), as a receiver holding
/// `secret` would; panics naming what failed, or what to install.
pub fn verify_with_standardwebhooks<'a>(secret: &str, messages: impl IntoIterator<Item = (&'a HeaderMap, &'a [u8])>) {
    match Command::new("python3").args(["-c", "import standardwebhooks"]).output() {
        Err(_) => panic!("python3 is needed to verify signatures with the Standard Webhooks library: install python3"),
        Ok(o) if !o.status.success() => panic!(
            "the Python package standardwebhooks is needed to verify signatures: install it with \
             `pip install standardwebhooks` ({})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
    let cases: Vec<serde_json::Value> = messages
        .into_iter()
        .map(|(headers, body)| {
            let headers: HashMap<String, String> = headers
                .iter()
                .filter(|(k, _)| k.as_str().starts_with("webhook-"))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            serde_json::json!({"body": STANDARD.encode(body), "headers": headers})
        })
        .collect();
    assert!(!cases.is_empty(), "no messages to verify");
    const SCRIPT: &str = r#"
import base64, json, sys
from standardwebhooks import Webhook
wh = Webhook(sys.argv[1])
cases = json.load(sys.stdin)
for c in cases:
    wh.verify(base64.b64decode(c["body"]), c["headers"])
print("verified", len(cases))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == format!("verified {}", cases.len()),
        "standardwebhooks refused a signature: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
