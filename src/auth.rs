//! Authentication of callbacks and signing of deliveries: the only module that
//! compares or computes secrets (always in constant time).
//!
//! - source address: the TCP peer, or the right-most untrusted `X-Forwarded-For`
//!   entry when the peer is a trusted proxy (unknown when that walk meets junk);
//! - tokens: `?token=` or `Authorization: Bearer` (either may match);
//! - provider signatures: `kie`, `standard-webhooks`, `hmac-sha256`;
//! - Standard Webhooks signatures on outgoing deliveries.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use ipnet::IpNet;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{Encoding, Signature};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Where a callback comes from, as far as it can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Known(IpAddr),
    /// A trusted proxy forwarded something that is not an address where the
    /// client should be: nobody can say who sent it.
    Unknown,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Known(ip) => write!(f, "{ip}"),
            Source::Unknown => f.write_str("unknown"),
        }
    }
}

/// The address a callback comes from: the TCP peer, or, when the peer is a
/// trusted proxy, the first `X-Forwarded-For` entry from the right (all header
/// lines in order) that is not itself a trusted proxy. An entry on that walk
/// that is not an address (junk, empty, a zone id) makes the client unknown.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Source {
    let peer = canonical(peer);
    if !contains(trusted, peer) {
        return Source::Known(peer);
    }
    let mut lines = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(v) => lines.push(v),
            Err(_) => return Source::Unknown,
        }
    }
    if lines.is_empty() {
        return Source::Known(peer);
    }
    let mut leftmost_proxy = peer;
    for entry in lines.iter().rev().flat_map(|v| v.rsplit(',')) {
        match parse_forwarded_addr(entry.trim()) {
            None => return Source::Unknown,
            Some(ip) if contains(trusted, ip) => leftmost_proxy = ip,
            Some(ip) => return Source::Known(ip),
        }
    }
    // Every hop is a trusted proxy: the left-most one is as far as it goes.
    Source::Known(leftmost_proxy)
}

fn parse_forwarded_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // "1.2.3.4:5678" or "[::1]:5678"
    s.parse::<std::net::SocketAddr>().ok().map(|a| canonical(a.ip()))
}

/// IPv4-mapped IPv6 addresses are treated as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// An empty allowlist allows every source; a non-empty one only known addresses in it.
pub fn ip_allowed(source: Source, allow: &[IpNet]) -> bool {
    match source {
        _ if allow.is_empty() => true,
        Source::Known(ip) => contains(allow, canonical(ip)),
        Source::Unknown => false,
    }
}

/// The tokens presented: `Authorization: Bearer` and the first `?token=`
/// (either may be right, e.g. a proxy adding its own bearer; never more than
/// two guesses per request).
pub fn presented_tokens(query: Option<&str>, headers: &HeaderMap) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            out.push(t.trim().to_string());
        }
    }
    if let Some(q) = query {
        if let Some((_, v)) = form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token") {
            out.push(v.into_owned());
        }
    }
    out
}

/// Whether any of `presented` equals one of `tokens`. Every pair is compared,
/// in constant time, so timing does not reveal which one (or how much) matched.
pub fn token_matches(presented: &[String], tokens: &[String]) -> bool {
    let mut ok = subtle::Choice::from(0);
    for p in presented {
        for t in tokens {
            ok |= p.as_bytes().ct_eq(t.as_bytes());
        }
    }
    ok.into()
}

/// Replace the value of `token` query parameters, so URLs can be logged. The
/// key is compared decoded (`tok%65n` is `token` to [`presented_tokens`] too).
pub fn redact_query(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let is_token = |k: &str| {
        form_urlencoded::parse(k.as_bytes())
            .next()
            .is_some_and(|(decoded, _)| decoded.eq_ignore_ascii_case("token"))
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_token(k) => format!("{k}=REDACTED"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

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
    if (now_secs - t).unsigned_abs() > tolerance.as_secs() {
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
            let task = kie_task_id(json, task_id.as_deref()).ok_or(SignatureError::NoTaskId)?;
            let given = B64
                .decode(given.trim())
                .map_err(|_| SignatureError::Malformed("x-webhook-signature"))?;
            let expected = hmac(secret, &[task.as_bytes(), b".", ts.trim().as_bytes()]);
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
                .map(|key| hmac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
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
            let expected = hmac(secret, &[body]);
            if bool::from(expected.as_slice().ct_eq(&given)) {
                Ok(())
            } else {
                Err(SignatureError::Mismatch)
            }
        }
    }
}

/// Where the platform's products put the task id, unless a pointer is configured.
fn kie_task_id(json: Option<&serde_json::Value>, pointer: Option<&str>) -> Option<String> {
    let json = json?;
    let candidates: &[&str] = match pointer {
        Some(p) => &[p][..],
        None => &["/data/task_id", "/data/taskId", "/taskId"],
    };
    for p in candidates {
        match json.pointer(p) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => return Some(s.clone()),
            Some(serde_json::Value::Number(n)) => return Some(n.to_string()),
            _ => {}
        }
    }
    None
}

/// The `webhook-signature` header value for a delivery: one `v1,<base64>` per
/// key, space-separated (several keys during a rotation).
pub fn standard_webhooks_signature(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    keys.iter()
        .map(|k| {
            format!(
                "v1,{}",
                B64.encode(hmac(k, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
