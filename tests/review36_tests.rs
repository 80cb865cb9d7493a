//! Review 36 (hostile): media archiving and reconciliation under faults,
//! embedded sled store. Each test proves one finding of
//! /work/notes/review36.md and fails while the defect is there.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use common::files::{sha256_hex, FileServer};
use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{submit_ok, task, task_route, tasks_config};
use common::*;
use serde_json::{json, Value};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Finding 2. `media.retention` may be set shorter than the life of the
/// events whose media it keeps (only "at least 1m" is checked). A stored
/// file's URL row and the file itself are then removed while an
/// `after_archive` delivery of the event is still retrying: the delivery
/// that finally goes out says the event has no media at all
/// (`hookrelay-media: []`), and the file is gone.
#[tokio::test]
async fn media_retention_does_not_remove_a_file_an_undelivered_event_still_needs() {
    let s = FileServer::start(LOCAL).await;
    let video = b"review36 video bytes".to_vec();
    let url = s.bytes("/r36/video.mp4", &video, "video/mp4");
    // The subscriber is down for the first attempt; the retry comes after
    // media retention's second sweep (70 s after start).
    let sub = Sub::start(Arc::new(|n, _| {
        if n == 0 {
            Behaviour::Status(503)
        } else {
            Behaviour::Status(200)
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private().retention(secs(60))).route(
        preset_route("runway", "kie-runway").subscriber(
            Subscriber::new("late", sub.url())
                .after_archive()
                .retry([secs(80)]),
        ),
    );
    let h = start(&cfg).await;
    let body = json!({"code": 200, "msg": "ok",
        "data": {"task_id": "r36-media", "video_id": "v", "video_url": url, "image_url": ""}});
    let id = callback_ok(h.ingest_addrs[0], "/hooks/runway", &body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let media = wait_final(h.admin_addr, &id, secs(10)).await;
    assert_eq!(item(&media, &url)["state"], "stored", "{media:#?}");
    sub.wait_for(secs(10), "the first attempt", |all| all.len() == 1).await;

    let got = sub
        .wait_for(secs(120), "the retried delivery", |all| all.len() == 2)
        .await;
    assert_eq!(got.len(), 2, "the retry never came");
    let header: Vec<Value> = serde_json::from_str(got[1].header("hookrelay-media")).unwrap();
    let (s_file, _) = admin(h.admin_addr, "GET", &format!("/api/media/{}", sha256_hex(&video))).await;
    assert!(
        header.iter().any(|i| i["url"] == url.as_str() && i["state"] == "stored"),
        "the delivery of an event whose file was stored says it has no such media: {header:?} \
         (GET /api/media/SHA now answers {s_file})"
    );
    h.shutdown().await;
}

/// Finding 4. A reload that changes a `[media]` key the local store does not
/// use but that is part of its identity (`media.ca_file`, or the same
/// directory spelled another way) opens the store again, and opening it
/// removes every `tmp/*.part` file — those of the downloads in flight too.
/// Each such download runs to its end and then fails at its rename: a try
/// lost (the whole file fetched again; on the last step of `media.retry`,
/// the URL fails for good).
#[tokio::test]
async fn a_reload_does_not_remove_the_part_files_of_downloads_in_flight() {
    let s = FileServer::start(LOCAL).await;
    let (bytes, url) = s.slow_video("/r36/slow.mp4", secs(3));
    let sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCert::write(dir.path(), "r36-ca");
    let media = Media::new().allow_private().retry([ms(500)]);
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("now", sub.url()));
    let cfg = media_config(dir.path(), media.clone()).route(route);
    let h = start(&cfg).await;
    let body = json!({"code": 200, "msg": "ok",
        "data": {"task_id": "r36-reload", "video_id": "v", "video_url": url, "image_url": ""}});
    let id = callback_ok(h.ingest_addrs[0], "/hooks/runway", &body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The download is under way (its first half is in its .part file).
    let end = tokio::time::Instant::now() + secs(5);
    while s.hits("/r36/slow.mp4") == 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(20)).await;
    }
    tokio::time::sleep(ms(500)).await;
    cfg.clone().media(media.ca_file(&ca.cert)).write();
    h.reload().await.unwrap();

    let media = wait_final(h.admin_addr, &id, secs(20)).await;
    let it = item(&media, &url);
    assert_eq!(it["state"], "stored", "{media:#?}");
    assert_eq!(it["sha256"], sha256_hex(&bytes));
    assert_eq!(
        (it["attempts"].as_u64(), s.hits("/r36/slow.mp4")),
        (Some(1), 1),
        "the reload cut the download in flight short: {it:#}"
    );
    h.shutdown().await;
}
