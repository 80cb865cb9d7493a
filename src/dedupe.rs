//! The dedupe key of a callback: SHA-256 over the values at the route's JSON
//! pointers, over its preset's task id and outcome, over the Standard
//! Webhooks message id, or over the raw body (also when a pointer or the
//! preset's values are missing, which is counted, never a reason to drop
//! the callback).

use sha2::{Digest, Sha256};

use crate::preset::Preset;

/// How a route keys its callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeKey {
    /// SHA-256 of the raw body (no `dedupe_key`, no preset; or `dedupe_key = []`).
    Body,
    /// The values at the route's own JSON pointers (`dedupe_key = [...]`).
    Pointers(Vec<String>),
    /// The preset's: the task id and the callback's outcome (success or
    /// failure, or the stage before the end), whatever field spells them.
    Preset(Preset),
    /// The `webhook-id` header of a route checking `standard-webhooks`
    /// signatures (with neither `dedupe_key` nor a preset), with the body:
    /// the sender's id of the message, which its signature covers and its
    /// retries keep with the same body. Two messages with the same body are
    /// two callbacks; so are two bodies under one id (two senders sharing
    /// the route through its list of secrets may number alike).
    MessageId,
}

/// As a log line names it.
impl std::fmt::Display for DedupeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DedupeKey::Body => f.write_str("the body"),
            DedupeKey::Pointers(p) => write!(f, "dedupe_key {p:?}"),
            DedupeKey::Preset(p) => write!(f, "the task id and outcome of preset {}", p.name),
            DedupeKey::MessageId => f.write_str("the webhook-id header"),
        }
    }
}

impl DedupeKey {
    /// The key's hash for a callback (`message_id`: its `webhook-id`
    /// header), and whether it fell back to the body.
    pub fn hash(&self, json: Option<&serde_json::Value>, body: &[u8], message_id: Option<&str>) -> ([u8; 32], bool) {
        match self {
            DedupeKey::Body => (Sha256::digest(body).into(), false),
            DedupeKey::MessageId => match message_id.filter(|id| !id.is_empty()) {
                Some(id) => (message_id_hash(id, body), false),
                None => (Sha256::digest(body).into(), true),
            },
            DedupeKey::Pointers(p) => dedupe_hash(p, json, body),
            DedupeKey::Preset(preset) => match json.and_then(|j| preset.dedupe_values(j)) {
                Some((task_id, outcome)) => (preset_hash(&task_id, &outcome), false),
                None => (Sha256::digest(body).into(), true),
            },
        }
    }
}

impl DedupeKey {
    /// The hashes a final callback (success or failure) of `task_id` is
    /// keyed by, so a task registered late can find its result already
    /// stored. With the preset's key: the task id and each outcome. With the
    /// route's own pointers: only when they can be rebuilt from the task id
    /// and only a final callback can have them ([`task_id_pointers`]). Empty
    /// otherwise (the body hash, or pointers at values the task id does not
    /// give, such as a failure `code`).
    pub fn terminal_hashes(&self, preset: Option<&Preset>, task_id: &str) -> Vec<[u8; 32]> {
        match self {
            DedupeKey::Preset(_) => ["success", "failure"]
                .iter()
                .map(|outcome| preset_hash(task_id, outcome))
                .collect(),
            DedupeKey::Pointers(p) if task_id_pointers(p, preset) => {
                // The task id as the callback may spell it: a string, or a number.
                let mut texts = vec![serde_json::Value::from(task_id).to_string()];
                if let Ok(n) = task_id.parse::<serde_json::Number>() {
                    texts.push(n.to_string());
                }
                texts
                    .iter()
                    .map(|t| pointer_values_hash(p.iter().map(|_| t.as_str())))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Whether a route's own `pointers` hash a final callback of a task from its
/// id alone: every pointer is one where the preset reads the task id, and
/// every callback of the product is final (no stages: with them the first
/// callback, not the last, holds the key).
fn task_id_pointers(pointers: &[String], preset: Option<&Preset>) -> bool {
    let Some(preset) = preset.filter(|p| p.stage.is_none()) else {
        return false;
    };
    !pointers.is_empty() && pointers.iter().all(|p| preset.task_id.contains(&p.as_str()))
}

/// The pointer hash over the values' JSON texts (see [`dedupe_hash`]).
fn pointer_values_hash<'a>(values: impl Iterator<Item = &'a str>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pointers\0");
    for v in values {
        h.update(v.as_bytes());
        h.update([0x1f]);
    }
    h.finalize().into()
}

/// The message id key's hash: the id and the body.
fn message_id_hash(id: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"webhook-id\0");
    h.update((id.len() as u64).to_be_bytes());
    h.update(id.as_bytes());
    h.update(body);
    h.finalize().into()
}

/// The preset key's hash: the task id and the outcome (see
/// [`crate::preset::Preset::dedupe_values`]).
fn preset_hash(task_id: &str, outcome: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"preset\0");
    h.update(task_id.as_bytes());
    h.update([0x1f]);
    h.update(outcome.as_bytes());
    h.finalize().into()
}

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
    let mut values = Vec::with_capacity(pointers.len());
    for p in pointers {
        match json.pointer(p) {
            Some(v) if !v.is_null() => values.push(v.to_string()),
            _ => return (body_hash(), true),
        }
    }
    (pointer_values_hash(values.iter().map(String::as_str)), false)
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
    fn the_message_id_key_is_the_id_not_the_body() {
        let k = DedupeKey::MessageId;
        let (a, fa) = k.hash(None, b"same body", Some("msg_1"));
        let (b, _) = k.hash(None, b"same body", Some("msg_2"));
        let (retry, _) = k.hash(None, b"same body", Some("msg_1"));
        assert!(!fa);
        assert_ne!(a, b, "two messages");
        assert_eq!(a, retry, "a retry of one");
        assert_ne!(a, Sha256::digest(b"same body").as_slice(), "not the body's");
        let (other_body, _) = k.hash(None, b"another body", Some("msg_1"));
        assert_ne!(a, other_body, "another body under one id is another callback");
        // Without the header (never past the signature check): the body.
        assert_eq!(
            k.hash(None, b"same body", None),
            (Sha256::digest(b"same body").into(), true)
        );
        assert!(k.hash(None, b"same body", Some("")).1);
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
    fn a_preset_keys_by_task_and_outcome_whatever_the_failure_code() {
        let key = DedupeKey::Preset(crate::preset::KIE_RUNWAY);
        let runway = |code: i64, msg: &str| json!({"code": code, "msg": msg, "data": {"task_id": "rD", "video_id": "", "video_url": "", "image_url": ""}});
        let hash = |v: &serde_json::Value| key.hash(Some(v), v.to_string().as_bytes(), None);
        let (polled, fallback) = hash(&runway(400, "generation failed (fail)"));
        assert!(!fallback);
        assert_eq!(polled, hash(&runway(500, "Internal error")).0, "a failure is a failure");
        let ok = json!({"code": 200, "data": {"task_id": "rD", "video_url": "https://f/v.mp4"}});
        assert_ne!(polled, hash(&ok).0, "success and failure stay distinct");
        let other = json!({"code": 500, "data": {"task_id": "rE"}});
        assert_ne!(polled, hash(&other).0);
        assert!(hash(&json!({"data": {"task_id": "rD"}})).1, "no code: body hash");
        // The market's documented minimal callback has no state: its code says the outcome.
        let market = DedupeKey::Preset(crate::preset::KIE_MARKET);
        let mhash = |v: serde_json::Value| market.hash(Some(&v), v.to_string().as_bytes(), None);
        let minimal = mhash(json!({"code": 200, "msg": "done", "data": {"taskId": "m1"}}));
        let full = mhash(json!({"code": 200, "data": {"taskId": "m1", "state": "success", "resultJson": ""}}));
        assert!(!minimal.1);
        assert_eq!(minimal.0, full.0);
        let failed = mhash(json!({"code": 501, "msg": "failed", "data": {"taskId": "m1"}}));
        let failed_full = mhash(json!({"code": 501, "data": {"taskId": "m1", "state": "fail", "failCode": "500"}}));
        assert_eq!(failed.0, failed_full.0);
        assert_ne!(failed.0, minimal.0);
        let progress = mhash(json!({"code": 200, "data": {"taskId": "m1", "state": "generating"}}));
        assert_ne!(progress.0, minimal.0, "a progress post is not the result");
    }

    #[test]
    fn string_and_number_values_differ() {
        let p = vec!["/id".to_string()];
        let (a, _) = dedupe_hash(&p, Some(&json!({"id": "1"})), b"");
        let (b, _) = dedupe_hash(&p, Some(&json!({"id": 1})), b"");
        assert_ne!(a, b);
    }

    #[test]
    fn own_pointers_at_the_task_id_give_terminal_hashes_others_do_not() {
        let runway = Some(&crate::preset::KIE_RUNWAY);
        let key = |p: &[&str]| DedupeKey::Pointers(p.iter().map(|s| s.to_string()).collect());
        let failure = json!({"code": 400, "data": {"task_id": "t9", "video_url": ""}});
        let stored = key(&["/data/task_id"]).hash(Some(&failure), b"x", None).0;
        assert!(key(&["/data/task_id"]).terminal_hashes(runway, "t9").contains(&stored));
        let numeric = json!({"code": 200, "data": {"task_id": 42}});
        let stored = key(&["/data/task_id"]).hash(Some(&numeric), b"x", None).0;
        assert!(key(&["/data/task_id"]).terminal_hashes(runway, "42").contains(&stored));
        // A failure code cannot be rebuilt from the task id; without a preset
        // nothing says where the task id is; with stages the first callback
        // holds the key; the body hash is the body's.
        assert!(key(&["/data/task_id", "/code"])
            .terminal_hashes(runway, "t9")
            .is_empty());
        assert!(key(&["/data/task_id"]).terminal_hashes(None, "t9").is_empty());
        let suno = Some(&crate::preset::KIE_SUNO);
        assert!(key(&["/data/task_id"]).terminal_hashes(suno, "t9").is_empty());
        assert!(DedupeKey::Body.terminal_hashes(runway, "t9").is_empty());
    }

    /// The fallback warning names the key as configured (it printed
    /// `Pointers(["/data/task_id"])`, Rust's own spelling).
    #[test]
    fn a_key_is_named_as_the_config_writes_it() {
        assert_eq!(
            DedupeKey::Pointers(vec!["/data/task_id".into(), "/code".into()]).to_string(),
            r#"dedupe_key ["/data/task_id", "/code"]"#
        );
        assert_eq!(DedupeKey::MessageId.to_string(), "the webhook-id header");
    }
}
