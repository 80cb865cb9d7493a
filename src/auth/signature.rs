//! Provider signatures on incoming callbacks: `kie` (HMAC of task id and
//! timestamp), `standard-webhooks` and `hmac-sha256` over the raw body, with a
//! timestamp tolerance; compared in constant time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::hmac;
use crate::config::{Encoding, Signature};

/// Why a provider signature was refused (safe to show: no secret material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header {0}")]
    MissingHeader(String),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("timestamp outside the allowed tolerance")]
    Stale,
    #[error("task id not found in the body")]
    NoTaskId,
    /// Two of the route's task id fields name different tasks: the
    /// signature covers one, a reader may take the other.
    #[error("the body names two different task ids")]
    TaskIdsDiffer,
    #[error("signature does not match")]
    Mismatch,
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, SignatureError> {
    headers
        .get(name)
        .ok_or_else(|| SignatureError::MissingHeader(name.to_string()))?
        .to_str()
        .map_err(|_| SignatureError::Malformed(name))
}

fn check_timestamp(
    ts: &str,
    now_secs: i64,
    tolerance: std::time::Duration,
    name: &'static str,
) -> Result<(), SignatureError> {
    let t: i64 = ts.trim().parse().map_err(|_| SignatureError::Malformed(name))?;
    // abs_diff: `now_secs - t` overflows for a `t` near i64::MIN or MAX.
    if now_secs.abs_diff(t) > tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Check a provider signature. `json` is the parsed body when the route is JSON.
pub fn verify_signature(
    sig: &Signature,
    headers: &HeaderMap,
    body: &[u8],
    json: Option<&serde_json::Value>,
    now_secs: i64,
) -> Result<(), SignatureError> {
    match sig {
        Signature::Kie {
            secret,
            task_id,
            tolerance,
        } => {
            let ts = header(headers, "x-webhook-timestamp")?;
            let given = header(headers, "x-webhook-signature")?;
            check_timestamp(ts, now_secs, *tolerance, "x-webhook-timestamp")?;
            let task = match task_ids(json, task_id).as_slice() {
                [] => return Err(SignatureError::NoTaskId),
                [one, rest @ ..] if rest.iter().all(|t| t == one) => one.clone(),
                _ => return Err(SignatureError::TaskIdsDiffer),
            };
            let given = B64
                .decode(given.trim())
                .map_err(|_| SignatureError::Malformed("x-webhook-signature"))?;
            let expected = hmac(secret.expose(), &[task.as_bytes(), b".", ts.trim().as_bytes()]);
            if bool::from(expected.as_slice().ct_eq(&given)) {
                Ok(())
            } else {
                Err(SignatureError::Mismatch)
            }
        }
        Signature::StandardWebhooks { keys, tolerance } => {
            let id = header(headers, "webhook-id")?;
            let ts = header(headers, "webhook-timestamp")?;
            let given = header(headers, "webhook-signature")?;
            check_timestamp(ts, now_secs, *tolerance, "webhook-timestamp")?;
            // Every key against every signature given (rotation on either side).
            let expected: Vec<[u8; 32]> = keys
                .iter()
                .map(|key| hmac(key.expose(), &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
                .collect();
            let mut ok = subtle::Choice::from(0);
            for candidate in given.split(' ') {
                if let Some(b64) = candidate.strip_prefix("v1,") {
                    if let Ok(sig) = B64.decode(b64) {
                        for e in &expected {
                            ok |= e.as_slice().ct_eq(&sig);
                        }
                    }
                }
            }
            if bool::from(ok) {
                Ok(())
            } else {
                Err(SignatureError::Mismatch)
            }
        }
        Signature::HmacSha256 {
            secret,
            header: name,
            encoding,
            prefix,
        } => {
            let given = headers
                .get(name)
                .ok_or_else(|| SignatureError::MissingHeader(name.as_str().to_string()))?
                .to_str()
                .map_err(|_| SignatureError::Malformed("signature header"))?
                .trim();
            let given = given
                .strip_prefix(prefix.as_str())
                .ok_or(SignatureError::Malformed("signature header prefix"))?;
            let given = match encoding {
                Encoding::Hex => hex::decode(given.trim()),
                Encoding::Base64 => B64
                    .decode(given.trim())
                    .map_err(|_| hex::FromHexError::InvalidStringLength),
            }
            .map_err(|_| SignatureError::Malformed("signature header encoding"))?;
            let expected = hmac(secret.expose(), &[body]);
            if bool::from(expected.as_slice().ct_eq(&given)) {
                Ok(())
            } else {
                Err(SignatureError::Mismatch)
            }
        }
    }
}

/// The task id of a provider callback: at the first of `pointers` that
/// holds one (a preset's list, or the route's own pointer); without
/// pointers, where the platform's products usually put it. The `kie`
/// signature signs it; the admin API shows and searches it.
pub fn task_id(json: Option<&serde_json::Value>, pointers: &[String]) -> Option<String> {
    task_ids(json, pointers).into_iter().next()
}

/// The task ids at each of `pointers` that holds one (the usual fields when
/// none are given), in the pointers' order.
fn task_ids(json: Option<&serde_json::Value>, pointers: &[String]) -> Vec<String> {
    let Some(json) = json else {
        return Vec::new();
    };
    const USUAL: [&str; 3] = ["/data/task_id", "/data/taskId", "/taskId"];
    let candidates: Vec<&str> = if pointers.is_empty() {
        USUAL.to_vec()
    } else {
        pointers.iter().map(String::as_str).collect()
    };
    candidates
        .into_iter()
        .filter_map(|p| match json.pointer(p) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}
