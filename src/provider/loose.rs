//! Tolerant reading of provider JSON.
//!
//! The provider's documentation disagrees with itself (numbers sent as strings,
//! URL lists sent as arrays or as strings holding JSON, `msg` or `message`).
//! These helpers read what is there without failing; they never decide what a
//! value means (that is [`super::product`]'s job).

use serde_json::Value;

/// The string at `ptr` when it is present and not empty.
pub fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The first non-empty string among `ptrs`.
pub fn first_str<'a>(v: &'a Value, ptrs: &[&str]) -> Option<&'a str> {
    ptrs.iter().find_map(|p| str_at(v, p))
}

/// The first value among `ptrs` that is present and not null.
pub fn first_present<'a>(v: &'a Value, ptrs: &[&str]) -> Option<&'a Value> {
    ptrs.iter().find_map(|p| v.pointer(p).filter(|x| !x.is_null()))
}

/// An integer from a JSON number (integral) or a string holding one ("422").
pub fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// [`int_of`] the value at `ptr`.
pub fn int_at(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(int_of)
}

/// A JSON value that arrived as a string holding JSON (`resultJson`,
/// Veo's stringified URL lists); the value itself when it is already structured.
pub fn unstring(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => serde_json::from_str::<Value>(s.trim())
            .ok()
            .filter(|x| x.is_object() || x.is_array()),
        Value::Object(_) | Value::Array(_) => Some(v.clone()),
        _ => None,
    }
}

/// The non-empty strings of a list that may be an array, a string holding a
/// JSON array, or a single plain string.
pub fn strings_of(v: &Value) -> Vec<String> {
    let collect = |items: &[Value]| {
        items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    match v {
        Value::Array(items) => collect(items),
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => match unstring(v) {
            Some(Value::Array(items)) => collect(&items),
            _ => vec![s.clone()],
        },
        _ => Vec::new(),
    }
}

/// The envelope's human-readable message: `msg`, or `message` (Market's example).
pub fn message(envelope: &Value) -> Option<&str> {
    first_str(envelope, &["/msg", "/message"])
}

/// A list of URLs without repeats (order kept), linear in the number
/// added: a callback may name any number (it is untrusted input).
#[derive(Default)]
pub struct UniqueUrls {
    list: Vec<String>,
    seen: std::collections::HashSet<String>,
}

impl UniqueUrls {
    /// Append `items`, skipping ones already there.
    pub fn push_all(&mut self, items: impl IntoIterator<Item = String>) {
        for item in items {
            if self.seen.insert(item.clone()) {
                self.list.push(item);
            }
        }
    }

    pub fn into_vec(self) -> Vec<String> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_from_numbers_and_strings() {
        assert_eq!(int_of(&json!(422)), Some(422));
        assert_eq!(int_of(&json!("422")), Some(422));
        assert_eq!(int_of(&json!(" 3 ")), Some(3));
        assert_eq!(int_of(&json!(1.0)), Some(1));
        assert_eq!(int_of(&json!(1.5)), None);
        assert_eq!(int_of(&json!("")), None);
        assert_eq!(int_of(&json!(null)), None);
    }

    #[test]
    fn url_lists_in_every_documented_encoding() {
        let want = vec!["https://a/1.mp4".to_string(), "https://a/2.mp4".to_string()];
        assert_eq!(strings_of(&json!(["https://a/1.mp4", "", "https://a/2.mp4"])), want);
        assert_eq!(strings_of(&json!("[\"https://a/1.mp4\",\"https://a/2.mp4\"]")), want);
        assert_eq!(
            strings_of(&json!("https://a/1.mp4")),
            vec!["https://a/1.mp4".to_string()]
        );
        assert!(strings_of(&json!("")).is_empty());
        assert!(strings_of(&json!(null)).is_empty());
    }

    #[test]
    fn message_under_either_name() {
        assert_eq!(message(&json!({"msg": "a"})), Some("a"));
        assert_eq!(message(&json!({"message": "b"})), Some("b"));
        assert_eq!(message(&json!({"msg": "", "message": "b"})), Some("b"));
    }
}
