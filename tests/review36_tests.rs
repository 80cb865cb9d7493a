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
