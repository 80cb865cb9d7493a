//! `after_archive` subscribers: whether an event's media lets its delivery go
//! now, and the `hookrelay-media` header it then carries — a JSON array of
//! `{"url", "state", "location", "sha256", "size", "content_type", "error"}`,
//! one per media URL of the event, in the order the route's pointers found
//! them (`[]` when the callback named none).
//!
//! Owns the header's format; the parking itself is the store's
//! ([`crate::store::Outcome::Defer`]).

use std::time::Duration;

use http::HeaderValue;
use serde_json::{json, Value};

use crate::store::{EventId, MediaItem, MediaState, Store};

/// The header every `after_archive` delivery carries.
pub const MEDIA_HEADER: &str = "hookrelay-media";

/// A parked delivery is looked at again after this even without a wake (the
/// store wakes it as soon as the event's media is done; this only bounds
/// the cost of a wake that never comes).
pub const MEDIA_RECHECK: Duration = Duration::from_secs(300);

/// What an `after_archive` delivery should do now.
pub enum Gate {
    /// Some media URL is still pending (or the media could not be read):
    /// park the delivery ([`crate::store::Outcome::Defer`]) until `due_ms`
    /// at the latest; the store makes it due as soon as the media is done.
    Wait { due_ms: u64 },
    /// Every URL is final: deliver with this header.
    Go(HeaderValue),
}

/// Look at the event's media for `subscriber`'s delivery (push lanes before
/// an attempt, pull lanes before a hand-out).
pub async fn check(store: &Store, subscriber: &str, event: EventId) -> Gate {
    let later = |d: Duration| Gate::Wait {
        due_ms: crate::clock::now_ms() + d.as_millis() as u64,
    };
    match store.event_media(event).await {
        Ok(items) => {
            let items = items.unwrap_or_default();
            if items.iter().any(|i| !i.state.is_final()) {
                tracing::debug!(subscriber, event = %event, "waiting for the event's media to be archived");
                return later(MEDIA_RECHECK);
            }
            Gate::Go(header_value(&items))
        }
        Err(e) => {
            tracing::error!(subscriber, event = %event, error = %e, "cannot read the event's media; looking again shortly");
            later(super::attempt::READ_ERROR_PAUSE)
        }
    }
}

/// One media URL as the header (and the admin API) shows it.
pub fn item_json(i: &MediaItem) -> Value {
    let (location, sha256, size, content_type, error) = match &i.state {
        MediaState::Stored(f) => (
            Some(f.location.as_str()),
            Some(f.sha256.as_str()),
            Some(f.size),
            f.content_type.as_deref(),
            None,
        ),
        MediaState::Failed { error } => (None, None, None, None, Some(error.as_str())),
        MediaState::Pending { .. } => (None, None, None, None, i.last_error.as_deref()),
    };
    json!({
        "url": i.url,
        "state": i.state.name(),
        "location": location,
        "sha256": sha256,
        "size": size,
        "content_type": content_type,
        "error": error,
    })
}

/// The header value's size at most: with its name the line stays under what
/// common servers take (nginx and Apache about 8 KiB per header line,
/// Node.js 16 KiB for all headers).
pub const MEDIA_HEADER_MAX: usize = 8000;

/// The header value: the JSON array with every character outside printable
/// ASCII (non-ASCII, DEL) written as a `\u` escape, so any URL or error
/// text makes a valid header. Over
/// [`MEDIA_HEADER_MAX`] the items keep less, step by step: the URL without
/// its query (and credentials), `state`, `sha256`, `size`, `error`; then the
/// URL, `state` and `sha256`; then `state` and `sha256` (64 URLs at most:
/// always under it).
pub fn header_value(items: &[MediaItem]) -> HeaderValue {
    let full = ascii_json(&Value::Array(items.iter().map(item_json).collect()));
    let keep = |fields: &[&str]| {
        let items = items.iter().map(|i| {
            let mut v = item_json(i);
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| fields.contains(&k.as_str()));
                if o.contains_key("url") {
                    o.insert("url".into(), Value::String(crate::media::shown(&i.url)));
                }
            }
            v
        });
        ascii_json(&Value::Array(items.collect()))
    };
    let shorter: [&[&str]; 2] = [
        &["url", "state", "sha256", "size", "error"],
        &["url", "state", "sha256"],
    ];
    let text = std::iter::once(full)
        .chain(shorter.into_iter().map(keep))
        .find(|t| t.len() <= MEDIA_HEADER_MAX)
        .unwrap_or_else(|| keep(&["state", "sha256"]));
    // JSON escapes the control characters below 0x20 and `ascii_json` the
    // rest that is not printable ASCII: every header value takes this.
    HeaderValue::from_str(&text).unwrap_or_else(|_| {
        // Not reached; were it, the states and digests (no URL or error
        // text) still say what was archived, where `[]` would say "no media".
        tracing::warn!(
            items = items.len(),
            "the hookrelay-media header cannot carry the media URLs; sending only state and sha256"
        );
        HeaderValue::from_str(&keep(&["state", "sha256"])).unwrap_or_else(|_| {
            tracing::error!(
                items = items.len(),
                "the hookrelay-media header cannot be built; sending []"
            );
            HeaderValue::from_static("[]")
        })
    })
}

/// `v` as JSON with every character outside printable ASCII (DEL, which
/// JSON leaves raw, and anything non-ASCII) written as a `\u` escape.
fn ascii_json(v: &Value) -> String {
    let text = v.to_string();
    let mut ascii = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    ascii
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredFile;

    #[test]
    fn header_lists_each_url_and_stays_ascii() {
        let items = vec![
            MediaItem {
                url: "https://file.com/k/vidéo.mp4?sig=1".into(),
                state: MediaState::Stored(StoredFile {
                    location: "/m/ab/ab".into(),
                    sha256: "ab".repeat(32),
                    size: 42,
                    content_type: Some("video/mp4".into()),
                }),
                attempts: 1,
                last_error: None,
                at_ms: 1,
            },
            MediaItem {
                url: "http://10.0.0.1/x.png".into(),
                state: MediaState::Failed {
                    error: "refused 10.0.0.1: private — 🚫".into(),
                },
                attempts: 1,
                last_error: None,
                at_ms: 1,
            },
        ];
        let h = header_value(&items);
        let text = h.to_str().expect("ASCII");
        let back: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back[0]["url"], "https://file.com/k/vidéo.mp4?sig=1");
        assert_eq!(back[0]["state"], "stored");
        assert_eq!(back[0]["size"], 42);
        assert_eq!(back[0]["error"], Value::Null);
        assert_eq!(back[1]["state"], "failed");
        assert_eq!(back[1]["error"], "refused 10.0.0.1: private — 🚫");
        assert_eq!(back[1]["sha256"], Value::Null);
        assert_eq!(header_value(&[]).to_str().unwrap(), "[]");
    }

    #[test]
    fn a_long_list_keeps_the_header_under_8_kib() {
        let stored = |n: usize| MediaItem {
            url: format!("https://cdn.example/{n}/video.mp4?X-Amz-Signature={}", "s".repeat(400)),
            state: MediaState::Stored(StoredFile {
                location: format!("/var/lib/hookrelay/data/media/ab/{}", "ab".repeat(32)),
                sha256: format!("{n:02}").repeat(32),
                size: 48_213_377,
                content_type: Some("video/mp4".into()),
            }),
            attempts: 1,
            last_error: None,
            at_ms: 1,
        };
        let failed = |n: usize| MediaItem {
            url: format!("https://cdn.example/{n}"),
            state: MediaState::Failed {
                error: format!("expired or gone: cdn.example answered HTTP 404 {}", "x".repeat(300)),
            },
            attempts: 5,
            last_error: None,
            at_ms: 1,
        };
        // 30 signed URLs: too long in full; shorter, each still names its URL (without the query).
        let items: Vec<_> = (0..30).map(stored).collect();
        assert!(ascii_json(&Value::Array(items.iter().map(item_json).collect())).len() > MEDIA_HEADER_MAX);
        let h = header_value(&items);
        assert!(h.len() <= MEDIA_HEADER_MAX, "{}", h.len());
        let back: Value = serde_json::from_str(h.to_str().unwrap()).unwrap();
        assert_eq!(back.as_array().unwrap().len(), 30);
        assert_eq!(back[7]["size"], 48_213_377);
        assert_eq!(back[7]["sha256"], "07".repeat(32));
        assert_eq!(back[7]["state"], "stored");
        let url = back[7]["url"].as_str().unwrap();
        assert_eq!(url, "https://cdn.example/7/video.mp4?…");
        // 64 of them: down to state and sha256, one per archived URL in order.
        let items: Vec<_> = (0..64).map(stored).collect();
        let h = header_value(&items);
        assert!(h.len() <= MEDIA_HEADER_MAX, "{}", h.len());
        let back: Value = serde_json::from_str(h.to_str().unwrap()).unwrap();
        assert_eq!(back[63], json!({"state": "stored", "sha256": "63".repeat(32)}));
        // 64 long errors: down to the URL, state and sha256.
        let items: Vec<_> = (0..64).map(failed).collect();
        let h = header_value(&items);
        assert!(h.len() <= MEDIA_HEADER_MAX, "{}", h.len());
        let back: Value = serde_json::from_str(h.to_str().unwrap()).unwrap();
        assert_eq!(
            back[63],
            json!({"url": "https://cdn.example/63", "state": "failed", "sha256": null})
        );
        // A short list is whole.
        let one = header_value(&items[..1]);
        let back: Value = serde_json::from_str(one.to_str().unwrap()).unwrap();
        assert!(back[0]["error"].as_str().unwrap().starts_with("expired or gone"));
    }

    #[test]
    fn a_del_or_other_unprintable_character_is_escaped_not_a_blank_header() {
        let items = vec![MediaItem {
            url: "https://file.com/k/a.png?v=\u{7f}\u{85}\u{2028}\u{1f}".into(),
            state: MediaState::Failed {
                error: "odd \u{7f} text".into(),
            },
            attempts: 1,
            last_error: None,
            at_ms: 1,
        }];
        let h = header_value(&items);
        let text = h.to_str().expect("visible ASCII");
        assert!(text.contains("\\u007f") && text.contains("\\u0085"), "{text}");
        let back: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back[0]["url"], "https://file.com/k/a.png?v=\u{7f}\u{85}\u{2028}\u{1f}");
        assert_eq!(back[0]["error"], "odd \u{7f} text");
    }
}
