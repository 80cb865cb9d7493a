//! The create endpoints of each product: the only paths the submit proxy
//! forwards to (an admin caller cannot use the route's key for anything
//! else, such as account or credit endpoints). From the platform's
//! per-product API pages; Veo's 1080p/4K upgrades and Suno's lyrics, WAV
//! and other side products are separate tasks with their own status
//! endpoints, so they are not listed.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use super::product::Product;

impl Product {
    /// `POST` paths that create a task of this product and take `callBackUrl`.
    pub fn create_paths(self) -> &'static [&'static str] {
        match self {
            Product::Runway => &["/api/v1/runway/generate", "/api/v1/runway/extend"],
            Product::Aleph => &["/api/v1/aleph/generate"],
            Product::Veo => &["/api/v1/veo/generate", "/api/v1/veo/extend"],
            Product::Suno => &[
                "/api/v1/generate",
                "/api/v1/generate/extend",
                "/api/v1/generate/upload-cover",
                "/api/v1/generate/upload-extend",
            ],
            Product::FourOImage => &["/api/v1/gpt4o-image/generate"],
            Product::FluxKontext => &["/api/v1/flux/kontext/generate"],
            Product::Market => &["/api/v1/jobs/createTask"],
        }
    }
}

/// The create call's body with `callBackUrl` set: its other values as the
/// caller wrote them (a large integer, `1e2`, are passed on as written, not
/// read as floats and written again). `Err` when it is not a JSON object.
pub(super) fn with_callback(body: &[u8], callback_url: &str) -> Result<Vec<u8>, String> {
    let mut fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|e| match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => "body is not a JSON object".to_string(),
            Err(_) => format!("body is not JSON: {e}"),
        })?;
    let url = serde_json::to_string(callback_url).expect("a string serialises");
    fields.insert("callBackUrl".into(), RawValue::from_string(url).expect("a JSON string"));
    Ok(serde_json::to_vec(&fields).expect("raw JSON values serialise"))
}

/// The task a create answer names (`code` 200): `data.taskId` or
/// `data.task_id`, a string or a number, read as a callback's task id is.
pub(super) fn created_task_id(answer: &Value) -> Option<String> {
    crate::auth::signature::task_id(Some(answer), &["/data/taskId".into(), "/data/task_id".into()])
}

/// Whether the provider can be asked about a task id, and the store keep
/// it: 1 to 256 bytes, no control characters.
pub fn usable_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_body_keeps_its_values_as_written() {
        let body = br#"{"seed":123456789012345678901234,"x":1e2,"callBackUrl":"http://evil.example/","p":"a \"cat\""}"#;
        let out = String::from_utf8(with_callback(body, "https://relay.example/hooks/r?token=a%2Fb").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"callBackUrl":"https://relay.example/hooks/r?token=a%2Fb","p":"a \"cat\"","seed":123456789012345678901234,"x":1e2}"#
        );
        assert!(with_callback(b"[1]", "u").unwrap_err().contains("not a JSON object"));
        assert!(with_callback(b"{", "u").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn a_created_task_id_may_be_a_number() {
        let id = |v: Value| created_task_id(&v);
        assert_eq!(
            id(serde_json::json!({"data": {"taskId": 12345}})).as_deref(),
            Some("12345")
        );
        assert_eq!(
            id(serde_json::json!({"data": {"task_id": "t-1"}})).as_deref(),
            Some("t-1")
        );
        assert_eq!(id(serde_json::json!({"data": {"taskId": ""}})), None);
        assert_eq!(id(serde_json::json!({"data": null})), None);
    }

    #[test]
    fn usable_task_ids() {
        assert!(usable_task_id("ee603959-debb"));
        assert!(usable_task_id(&"é".repeat(128)));
        for bad in [String::new(), "é".repeat(129), "a\nb".into(), "ctl\u{7}".into()] {
            assert!(!usable_task_id(&bad), "{bad:?}");
        }
    }
}
