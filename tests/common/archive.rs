//! Watching the media archive through the admin API: an event's media as
//! `GET /api/media?event=` shows it, waiting until all of it is final, one
//! URL's item. The `[media]` section is `media`'s; the file servers are
//! `files`'.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use super::client::{admin, admin_until, metrics_until, sample};
use super::subscriber::Sub;

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

/// Wait until downloads were put off without a try four times for
/// `outcome` (`low_space`, `store_unavailable`: more looks than a short
/// retry schedule has tries), check that the gauge says the store cannot
/// take files, and return `url`'s item of the event `id` as it stands.
pub async fn put_off_four_times(admin_addr: SocketAddr, outcome: &str, id: &str, url: &str) -> Value {
    let key = format!("hookrelay_media_files_total{{outcome=\"{outcome}\"}}");
    let m = metrics_until(
        admin_addr,
        Duration::from_secs(30),
        &format!("four looks ({outcome})"),
        |m| m.iter().any(|(k, v)| *k == key && *v >= 4.0),
    )
    .await;
    assert_eq!(sample(&m, "hookrelay_media_store_unavailable"), 1.0);
    item(&media_of(admin_addr, id).await, url).clone()
}

/// The `hookrelay-media` header of the first delivery `later` (an
/// `after_archive` subscriber) gets within `limit`: one entry per URL.
pub async fn after_archive_media(later: &Sub, limit: Duration) -> Vec<Value> {
    let got = later
        .wait_for(limit, "the after_archive delivery", |r| !r.is_empty())
        .await;
    serde_json::from_str(got[0].header("hookrelay-media")).unwrap()
}
