//! Every signature scheme against arbitrary headers and bodies: never a panic,
//! and never "valid" for a body the fuzzer made up without the key.
#![no_main]
use hookrelay::auth::{verify_signature, Secret};
use hookrelay::config::{Encoding, Signature};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    // Split the input: header values separated by 0xff, the rest is the body.
    let mut parts = data.split(|b| *b == 0xff);
    let mut headers = HeaderMap::new();
    for name in ["x-webhook-timestamp", "x-webhook-signature", "webhook-id", "webhook-timestamp", "webhook-signature", "x-sig"] {
        if let Some(v) = parts.next() {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
    let body: Vec<u8> = parts.flatten().copied().collect();
    let json = serde_json::from_slice::<serde_json::Value>(&body).ok();
    let schemes = [
        Signature::Kie { secret: Secret::new(b"k".to_vec()), task_id: Vec::new(), tolerance: Duration::from_secs(300) },
        Signature::StandardWebhooks { keys: vec![Secret::new(vec![7; 24])], tolerance: Duration::from_secs(300) },
        Signature::HmacSha256 { secret: Secret::new(b"k".to_vec()), header: HeaderName::from_static("x-sig"), encoding: Encoding::Hex, prefix: "sha256=".into() },
        Signature::HmacSha256 { secret: Secret::new(b"k".to_vec()), header: HeaderName::from_static("x-sig"), encoding: Encoding::Base64, prefix: String::new() },
    ];
    for s in &schemes {
        // A forged match would need a SHA-256 HMAC collision: treat one as a bug.
        assert!(verify_signature(s, &headers, &body, json.as_ref(), 1_700_000_000).is_err());
    }
});
