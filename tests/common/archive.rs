//! Watching the media archive through the admin API: an event's media as
//! `GET /api/media?event=` shows it, waiting until all of it is final, one
//! URL's item. The `[media]` section is `media`'s; the file servers are
//! `files`'.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use super::client::{admin, admin_until};

/// The media of an event as `GET /api/media?event=` shows it.
pub async fn media_of(admin_addr: SocketAddr, id: &str) -> Vec<Value> {
    let (s, v) = admin(admin_addr, "GET", &format!("/api/media?event={id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["media"].as_array().cloned().unwrap_or_default()
}

/// Wait until every media URL of the event is final (stored or failed); its media.
pub async fn wait_final(admin_addr: SocketAddr, id: &str, limit: Duration) -> Vec<Value> {
    let all_final = |v: &Value| {
        v["media"]
            .as_array()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|i| i["state"] != "pending"))
    };
    let v = admin_until(admin_addr, &format!("/api/media?event={id}"), limit, all_final).await;
    assert!(all_final(&v), "media of {id} not final after {limit:?}: {v:#}");
    v["media"].as_array().cloned().unwrap_or_default()
}

/// The item for a URL (admin answers show it without its query).
pub fn item<'a>(media: &'a [Value], url: &str) -> &'a Value {
    media
        .iter()
        .find(|m| m["url"] == url)
        .unwrap_or_else(|| panic!("{url} not in {media:#?}"))
}
