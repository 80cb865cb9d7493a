//! The dedupe key of a callback: SHA-256 over the values at the route's JSON
//! pointers, or over the raw body (also when a pointer is missing, which is
//! counted, never a reason to drop the callback).

use sha2::{Digest, Sha256};

/// SHA-256 over the values at the dedupe pointers (canonical JSON, separated),
/// or over the raw body when no pointers are set or one is missing.
/// Returns the hash and whether it fell back to the body.
pub fn dedupe_hash(pointers: &[String], json: Option<&serde_json::Value>, body: &[u8]) -> ([u8; 32], bool) {
    let body_hash = || Sha256::digest(body).into();
    if pointers.is_empty() {
        return (body_hash(), false);
    }
    let Some(json) = json else {
        return (body_hash(), true);
    };
    let mut h = Sha256::new();
    h.update(b"pointers\0");
    for p in pointers {
        match json.pointer(p) {
            Some(v) if !v.is_null() => {
                h.update(v.to_string().as_bytes());
                h.update([0x1f]);
            }
            _ => return (body_hash(), true),
        }
    }
    (h.finalize().into(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dedupe_key_uses_pointer_values_only() {
        let p = vec!["/data/task_id".to_string(), "/code".to_string()];
        let a = json!({"code": 200, "msg": "a", "data": {"task_id": "t1"}});
        let b = json!({"code": 200, "msg": "different", "data": {"task_id": "t1"}});
        let c = json!({"code": 500, "msg": "a", "data": {"task_id": "t1"}});
        let (ha, fa) = dedupe_hash(&p, Some(&a), b"x");
        let (hb, _) = dedupe_hash(&p, Some(&b), b"y");
        let (hc, _) = dedupe_hash(&p, Some(&c), b"x");
        assert!(!fa);
        assert_eq!(ha, hb);
        assert_ne!(ha, hc);
    }

    #[test]
    fn missing_pointer_falls_back_to_body_hash() {
        let p = vec!["/data/task_id".to_string()];
        let v = json!({"code": 200, "data": null});
        let (h, fallback) = dedupe_hash(&p, Some(&v), b"body");
        assert!(fallback);
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(b"body")));
    }

    #[test]
    fn string_and_number_values_differ() {
        let p = vec!["/id".to_string()];
        let (a, _) = dedupe_hash(&p, Some(&json!({"id": "1"})), b"");
        let (b, _) = dedupe_hash(&p, Some(&json!({"id": 1})), b"");
        assert_ne!(a, b);
    }
}
