//! An operator archives a failed media URL again: `POST
//! /api/events/{id}/media/retry` (and `hookrelay media ID --retry`) puts the
//! event's failed URLs back in the archive's queue, from the start of
//! `media.retry`; a replay made meanwhile waits for them, so the
//! `after_archive` subscriber gets the event again with the file stored.
//! Before, a failed URL stayed failed: only a new callback naming it
//! queued it again.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::files::{sha256_hex, FileServer};
use common::*;
use serde_json::{json, Value};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn media_header(value: &str) -> Vec<Value> {
    serde_json::from_str(value).expect("hookrelay-media is a JSON array")
}

#[tokio::test]
async fn a_failed_url_is_archived_again_on_request_and_a_replay_then_carries_the_file() {
    let s = FileServer::start(LOCAL).await;
    let url = s.url("/k/late.mp4"); // 404 until the file is put there below
    let later_sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later_sub.url()).after_archive());
    let cfg = media_config(dir.path(), Media::new().allow_private().retry([ms(100), ms(100)])).route(route);
    let h = start(&cfg).await;
    let body = json!({"code": 200, "msg": "ok", "data": {"task_id": "a", "video_url": url, "image_url": ""}});
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
    let got = later_sub
        .wait_for(Duration::from_secs(30), "the first delivery", |r| r.len() == 1)
        .await;
    assert_eq!(media_header(got[0].header("hookrelay-media"))[0]["state"], "failed");
    let tries = item(&media_of(h.admin_addr, &id).await, &url)["attempts"].clone();
    assert_eq!(tries, 3, "three 404s in a row");

    // The file is there now (slow to come); the operator asks for it again.
    let (video, _) = s.slow_video("/k/late.mp4", Duration::from_secs(3));
    let (st, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/media/retry")).await;
    assert_eq!(st, http::StatusCode::OK, "{v}");
    assert_eq!(v["retried"], 1, "{v}");
    assert_eq!(v["event"], id.as_str());
    assert_eq!(v["media"][0]["state"], "pending", "{v}");
    // Replayed at once: the delivery waits for the new try.
    let (st, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(st, http::StatusCode::OK, "{v}");
    let view = admin_until(
        h.admin_addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(2),
        |v| row(&v["subscribers"], "name", "later")["waiting_for_media"] == true,
    )
    .await;
    assert_eq!(
        row(&view["subscribers"], "name", "later")["waiting_for_media"],
        true,
        "{view}"
    );
    assert_eq!(later_sub.count(), 1, "not sent before the file is in");
    let got = later_sub
        .wait_for(Duration::from_secs(30), "the replay", |r| r.len() == 2)
        .await;
    let header = media_header(got[1].header("hookrelay-media"));
    assert_eq!(header[0]["state"], "stored", "{header:#?}");
    assert_eq!(header[0]["sha256"], sha256_hex(&video));
    let media = media_of(h.admin_addr, &id).await;
    assert_eq!(
        item(&media, &url)["attempts"],
        4,
        "the earlier tries still counted: {media:#?}"
    );

    // Nothing failed any more: nothing to retry, said so by the CLI too.
    let admin_url = format!("http://{}", h.admin_addr);
    let config = cfg.path().to_str().unwrap().to_string();
    let (ok, out, err) = admin_cli(&config, &admin_url, &["media", &id, "--retry"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("no failed media URL to retry"), "{out}");
    assert!(out.contains("stored"), "the media listed: {out}");
    assert_eq!(s.hits("/k/late.mp4"), 4, "no download for a stored URL");
    h.shutdown().await;
}

#[tokio::test]
async fn the_cli_retries_and_the_api_names_what_it_cannot_retry() {
    let s = FileServer::start(LOCAL).await;
    let gone = s.url("/k/gone.mp4");
    let dir = tempfile::tempdir().unwrap();
    let sub = Sub::ok().await;
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("now", sub.url()));
    let cfg = media_config(dir.path(), Media::new().allow_private().retry([ms(100), ms(100)])).route(route);
    let h = start(&cfg).await;
    let body = json!({"code": 200, "msg": "ok", "data": {"task_id": "a", "video_url": gone, "image_url": ""}});
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
    let media = wait_final(h.admin_addr, &id, Duration::from_secs(30)).await;
    assert_eq!(item(&media, &gone)["state"], "failed");

    let admin_url = format!("http://{}", h.admin_addr);
    let config = cfg.path().to_str().unwrap().to_string();
    let (ok, out, err) = admin_cli(&config, &admin_url, &["media", &id, "--retry"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("1 failed media URL archived again"), "{out}");
    assert!(out.contains(&format!("hookrelay replay {id}")), "{out}");
    // Still a 404: failed again after its schedule, tried three more times.
    let media = admin_until(
        h.admin_addr,
        &format!("/api/media?event={id}"),
        Duration::from_secs(30),
        |v| v["media"][0]["attempts"] == 6,
    )
    .await;
    assert_eq!(media["media"][0]["state"], "failed", "{media}");

    // An event without media, an unknown one, a bad id, a GET.
    let plain = json!({"code": 400, "msg": "moderation", "data": {"task_id": "b", "video_url": "", "image_url": ""}});
    let none = accepted_at(h.ingest_addrs[0], "/hooks/runway", &plain.to_string()).await;
    let (st, v) = admin(h.admin_addr, "POST", &format!("/api/events/{none}/media/retry")).await;
    assert_eq!(st, http::StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no media"), "{v}");
    let (st, v) = admin(
        h.admin_addr,
        "POST",
        "/api/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV/media/retry",
    )
    .await;
    assert_eq!(st, http::StatusCode::NOT_FOUND, "{v}");
    let (st, _) = admin(h.admin_addr, "POST", "/api/events/nope/media/retry").await;
    assert_eq!(st, http::StatusCode::BAD_REQUEST);
    let (st, _) = admin(h.admin_addr, "GET", &format!("/api/events/{id}/media/retry")).await;
    assert_eq!(st, http::StatusCode::METHOD_NOT_ALLOWED);
    let (ok, _, err) = admin_cli(&config, &admin_url, &["media", "--retry"]).await;
    assert!(!ok && err.contains("<EVENT>"), "--retry needs an event: {err}");
    h.shutdown().await;
}
