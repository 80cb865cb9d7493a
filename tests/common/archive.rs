//! Media archive fixtures for daemon tests: a config with a `[media]` table
//! and routes, posting a callback, and waiting for an event's media through
//! the admin API. Used with `mod common;` (the daemon and request helpers).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// A daemon config on port 0 with `media` as the `[media]` body and the
/// given `[[routes]]` tables (each from [`route`]).
pub fn config(data: &Path, media: &str, routes: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
read_timeout = "5s"

[store]
path = "{data}"
min_free = 0

[admin]
listen = "127.0.0.1:0"

[delivery]
retry = ["100ms", "200ms", "400ms"]
timeout = "5s"

[media]
min_free = 0
{media}

{routes}
"#,
        data = data.display()
    )
}

/// A route at `/hooks/NAME` with extra keys (a preset, media pointers, a
/// provider key) and subscribers (TOML tables).
pub fn route(name: &str, keys: &str, subscribers: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\n{keys}\n\n{subscribers}\n")
}

/// POST a JSON callback; the event id (the answer must be a fresh 200).
pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> String {
    let (status, _, b) =
        crate::common::post(addr, path, &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["duplicate"], false, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The media of an event as `GET /api/media?event=` shows it.
pub async fn media_of(admin: SocketAddr, id: &str) -> Vec<Value> {
    let (s, v) = crate::common::admin(admin, "GET", &format!("/api/media?event={id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["media"].as_array().cloned().unwrap_or_default()
}

/// Wait until every media URL of the event is final (stored or failed).
pub async fn wait_final(admin: SocketAddr, id: &str, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let m = media_of(admin, id).await;
        if !m.is_empty() && m.iter().all(|i| i["state"] != "pending") {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "media of {id} not final after {limit:?}: {m:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The item for a URL (admin answers show it without its query).
pub fn item<'a>(media: &'a [Value], url: &str) -> &'a Value {
    media
        .iter()
        .find(|m| m["url"] == url)
        .unwrap_or_else(|| panic!("{url} not in {media:#?}"))
}

/// GET on the admin API; status, headers, raw body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (StatusCode, HeaderMap, Bytes) {
    crate::common::request(admin, None, "GET", path, &[], Bytes::new()).await
}

/// A counter's value in the Prometheus text (0 when absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}
