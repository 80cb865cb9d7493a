//! Media pointers: where a callback body names its result files.
//!
//! A media pointer is an RFC 6901 JSON pointer with two extensions the
//! providers' payloads need:
//! - a `*` segment matches every element of an array (Veo's `resultUrls[]`,
//!   Suno's `data[]`);
//! - when the pointer reaches a string and segments remain, the string is
//!   parsed as JSON and the walk continues inside it (the market's
//!   `resultJson`, Veo's stringified `resultUrls`).
//!
//! Owns parsing and evaluation only: which pointers a route uses is config's
//! and the presets' business, and what happens to the URLs is the archiver's.
//! Values that are null, empty, not strings, or not `http`/`https` URLs are
//! skipped rather than reported: a failed task carries `""` where a URL would
//! be, and that is not an archive failure.

use std::fmt;

use serde_json::Value;

/// How many strings-holding-JSON one pointer may descend through: the payloads
/// nest one level; the cap bounds the parsing cost of a hostile body.
const MAX_STRING_DEPTH: usize = 4;

/// One parsed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// An object member name, or an array index when it is a canonical number.
    Key(String),
    /// `*`: every element of an array.
    Any,
}

/// A parsed media pointer, e.g. `/data/info/resultUrls/*`.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaPointer {
    /// The text as written, for messages and `check-config` output.
    text: String,
    segments: Vec<Segment>,
}

/// Why a pointer text is not a media pointer (the caller adds file and key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("a media pointer must not be empty (it must name a field, e.g. \"/data/video_url\")")]
    Empty,
    #[error("invalid media pointer {0:?}: must start with '/'")]
    NoLeadingSlash(String),
    #[error("invalid media pointer {0:?}: '~' must be followed by 0 (for '~') or 1 (for '/')")]
    BadEscape(String),
}

impl MediaPointer {
    /// Parse `text`; `~0` and `~1` are the RFC 6901 escapes for `~` and `/`.
    pub fn parse(text: &str) -> Result<MediaPointer, PointerError> {
        if text.is_empty() {
            return Err(PointerError::Empty);
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PointerError::NoLeadingSlash(text.to_string()));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segments.push(Segment::Any);
                continue;
            }
            segments.push(Segment::Key(
                unescape(raw).ok_or_else(|| PointerError::BadEscape(text.to_string()))?,
            ));
        }
        Ok(MediaPointer {
            text: text.to_string(),
            segments,
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Append every http(s) URL this pointer reaches in `doc` to `out`, in
    /// document order (duplicates are left to [`media_urls`]).
    pub fn collect(&self, doc: &Value, out: &mut Vec<String>) {
        walk(doc, &self.segments, 0, out);
    }
}

impl fmt::Debug for MediaPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaPointer({:?})", self.text)
    }
}

impl fmt::Display for MediaPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Every http(s) URL the pointers reach in `doc`, first occurrence first, each
/// URL once (a product may name the same file in two fields).
pub fn media_urls(pointers: &[MediaPointer], doc: &Value) -> Vec<String> {
    let mut all = Vec::new();
    for p in pointers {
        p.collect(doc, &mut all);
    }
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    all.retain(|u| seen.insert(u.clone()));
    all
}

/// Whether `s` is something the archiver may fetch: an absolute http(s) URL
/// with a host. Anything else in a media field (an id, a relative path) is
/// not a file we can download, so it is skipped.
pub fn is_fetchable_url(s: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) => matches!(u.scheme(), "http" | "https") && u.host().is_some(),
        Err(_) => false,
    }
}

fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('~') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return None,
        }
    }
    Some(out)
}

/// RFC 6901 array index: digits without a leading zero (except "0" itself).
fn array_index(key: &str) -> Option<usize> {
    if key.is_empty() || (key.len() > 1 && key.starts_with('0')) || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse().ok()
}

fn walk(value: &Value, segments: &[Segment], string_depth: usize, out: &mut Vec<String>) {
    let Some((first, rest)) = segments.split_first() else {
        if let Value::String(s) = value {
            let s = s.trim();
            if !s.is_empty() && is_fetchable_url(s) {
                out.push(s.to_string());
            }
        }
        return;
    };
    match (value, first) {
        (Value::Array(items), Segment::Any) => {
            for item in items {
                walk(item, rest, string_depth, out);
            }
        }
        (Value::Array(items), Segment::Key(k)) => {
            if let Some(item) = array_index(k).and_then(|i| items.get(i)) {
                walk(item, rest, string_depth, out);
            }
        }
        (Value::Object(map), Segment::Key(k)) => {
            if let Some(v) = map.get(k) {
                walk(v, rest, string_depth, out);
            }
        }
        (Value::Object(map), Segment::Any) => {
            if let Some(v) = map.get("*") {
                walk(v, rest, string_depth, out);
            }
        }
        (Value::String(s), _) if string_depth < MAX_STRING_DEPTH => {
            // A string that holds JSON: the remaining segments apply inside it.
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                walk(&inner, segments, string_depth + 1, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "pointer_tests.rs"]
mod tests;
