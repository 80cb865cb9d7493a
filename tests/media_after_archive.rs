//! Subscribers choose: an immediate subscriber gets the callback at once,
//! while a slow download is still running (and the provider got its 200 at
//! once too); an `after_archive` subscriber gets it only once every media URL
//! is stored or failed for good, with `hookrelay-media` listing each, the
//! provider's body byte for byte, and no attempt spent waiting.

#[path = "common/archive.rs"]
mod archive;
mod common;
#[path = "common/files.rs"]
mod files;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Sub;
use files::{sha256_hex, FileServer, Route};
use serde_json::{json, Value};

/// How long the slow file takes to finish.
const SLOW: Duration = Duration::from_secs(2);

fn media_header(r: &common::Received) -> Vec<Value> {
    serde_json::from_str(r.header("hookrelay-media")).expect("hookrelay-media is a JSON array")
}

#[tokio::test]
async fn after_archive_waits_for_the_files_and_an_immediate_subscriber_does_not() {
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let first = Bytes::from(vec![7u8; 64 << 10]);
    let rest = Bytes::from(vec![9u8; 64 << 10]);
    let video_bytes = [first.clone(), rest.clone()].concat();
    s.route(
        "/k/slow.mp4",
        Route::Slow {
            first,
            rest,
            delay: SLOW,
            content_type: "video/mp4",
        },
    );
    let cover_url = s.bytes("/m/cover.png", b"cover", "image/png");
    let video_url = s.url("/k/slow.mp4");
    let now_sub = Sub::ok().await;
    let later_sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let subs = format!(
        "[[routes.subscribers]]\nname = \"now\"\nurl = \"{}\"\n\n[[routes.subscribers]]\nname = \"later\"\nurl = \"{}\"\nafter_archive = true\n",
        now_sub.url(),
        later_sub.url()
    );
    let routes = archive::route("runway", "preset = \"kie-runway\"", &subs);
    let h = common::start(
        dir.path(),
        &archive::config(&dir.path().join("data"), "allow_private = true", &routes),
    )
    .await;

    let body = json!({"code": 200, "msg": "All generated successfully.", "data": {
        "task_id": "ee603959", "video_id": "v1", "video_url": video_url, "image_url": cover_url}})
    .to_string();
    let posted = Instant::now();
    let (status, _, answer) = common::post(
        h.ingest_addrs[0],
        "/hooks/runway",
        &[("content-type", "application/json")],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(posted.elapsed() < Duration::from_secs(1), "the 200 waited for nothing");
    let id = serde_json::from_slice::<Value>(&answer).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The immediate subscriber is served while the video still downloads.
    let got = now_sub
        .wait_for(Duration::from_secs(10), "the immediate delivery", |r| !r.is_empty())
        .await;
    assert!(
        got[0].at - posted < SLOW / 2,
        "immediate delivery took {:?}",
        got[0].at - posted
    );
    assert_eq!(
        got[0].header("hookrelay-media"),
        "",
        "only after_archive subscribers get the header"
    );
    let media = archive::media_of(h.admin_addr, &id).await;
    assert_eq!(archive::item(&media, &video_url)["state"], "pending");
    let (_, view) = common::admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    let later_view = view["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "later")
        .unwrap()
        .clone();
    assert_eq!(later_view["state"], "pending", "{view}");
    assert_eq!(later_view["waiting_for_media"], true, "{view}");
    assert_eq!(later_view["attempts_total"], 0, "{view}");
    assert_eq!(later_sub.count(), 0, "after_archive waits for the video");

    // The after_archive subscriber gets it once both files are stored.
    let got = later_sub
        .wait_for(Duration::from_secs(30), "the after_archive delivery", |r| !r.is_empty())
        .await;
    let r = &got[0];
    assert!(
        r.at - posted >= SLOW,
        "delivered {:?} after the callback, before the video was stored",
        r.at - posted
    );
    assert_eq!(&r.body[..], body.as_bytes(), "the provider's body, byte for byte");
    assert_eq!(r.header("hookrelay-attempt"), "1", "waiting spent no attempt");
    let header = media_header(r);
    assert_eq!(header.len(), 2, "{header:#?}");
    assert_eq!(header[0]["url"], video_url, "the signed URL as the provider sent it");
    assert_eq!(header[0]["state"], "stored");
    assert_eq!(header[0]["sha256"], sha256_hex(&video_bytes));
    assert_eq!(header[0]["size"], video_bytes.len());
    assert_eq!(header[0]["content_type"], "video/mp4");
    assert!(header[0]["location"]
        .as_str()
        .unwrap()
        .ends_with(&sha256_hex(&video_bytes)));
    assert_eq!(header[0]["error"], Value::Null);
    assert_eq!(header[1]["url"], cover_url);
    assert_eq!(header[1]["sha256"], sha256_hex(b"cover"));
    // Exactly one delivery each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((now_sub.count(), later_sub.count()), (1, 1));
    h.shutdown().await;
}

#[tokio::test]
async fn after_archive_is_told_about_failed_files_and_events_without_media() {
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let missing = s.url("/k/gone.mp4"); // the file server answers 404
    let later_sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let subs = format!(
        "[[routes.subscribers]]\nname = \"later\"\nurl = \"{}\"\nafter_archive = true\n",
        later_sub.url()
    );
    let routes = archive::route("runway", "preset = \"kie-runway\"", &subs);
    let h = common::start(
        dir.path(),
        &archive::config(&dir.path().join("data"), "allow_private = true", &routes),
    )
    .await;
    let gone = json!({"code": 200, "msg": "ok", "data": {"task_id": "a", "video_url": missing, "image_url": ""}});
    let failed_task =
        json!({"code": 400, "msg": "moderation", "data": {"task_id": "b", "video_url": "", "image_url": ""}});
    archive::post(h.ingest_addrs[0], "/hooks/runway", &gone).await;
    archive::post(h.ingest_addrs[0], "/hooks/runway", &failed_task).await;
    let got = later_sub
        .wait_for(Duration::from_secs(30), "two deliveries", |r| r.len() == 2)
        .await;
    let by_task = |t: &str| {
        got.iter()
            .find(|r| String::from_utf8_lossy(&r.body).contains(&format!("\"task_id\":\"{t}\"")))
            .unwrap()
    };
    let header = media_header(by_task("a"));
    assert_eq!(header.len(), 1);
    assert_eq!(header[0]["state"], "failed");
    assert_eq!(header[0]["sha256"], Value::Null);
    assert!(header[0]["error"].as_str().unwrap().contains("HTTP 404"), "{header:#?}");
    assert_eq!(
        media_header(by_task("b")),
        Vec::<Value>::new(),
        "no media: delivered at once with []"
    );
    h.shutdown().await;
}
