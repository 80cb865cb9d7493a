//! `media.concurrency` above 64 downloads at once to a local directory: each
//! download's file writer holds a blocking thread for its whole life, and
//! the archiver's runtime had 64 of them, so the 65th download waited for
//! a writer while its `media.timeout` ran (its body parked after a few
//! chunks): a setting the config accepts (up to 4096) that did not hold.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use common::files::{FileServer, Route};
use common::*;

const DOWNLOADS: usize = 70;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_64_downloads_each_get_their_writer() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("media");
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    // Each sends its first bytes and then nothing: all in flight together.
    let urls: Vec<String> = (0..DOWNLOADS)
        .map(|i| {
            let p = format!("/k/{i}.mp4");
            s.route(
                &p,
                Route::Stall {
                    first: Bytes::from_static(b"\x00\x00\x00\x18ftypmp42"),
                },
            );
            s.url(&p)
        })
        .collect();
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN));
    let media = Media::new()
        .allow_private()
        .dir(&archive)
        .concurrency(DOWNLOADS)
        .timeout(Duration::from_secs(120));
    let h = start(&media_config(dir.path(), media).route(route)).await;
    for (i, pair) in urls.chunks(2).enumerate() {
        let body = runway_media(&format!("ee6039{i:02}"), &pair[0], &pair[1]).to_string();
        accepted_at(h.ingest_addrs[0], "/hooks/runway", &body).await;
    }
    // A download's partial file is made by its writer, as its first bytes come.
    let parts = || {
        std::fs::read_dir(archive.join("tmp"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while parts() < DOWNLOADS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hits: usize = (0..DOWNLOADS).map(|i| s.hits(&format!("/k/{i}.mp4"))).sum();
    assert_eq!(
        (parts(), hits),
        (DOWNLOADS, DOWNLOADS),
        "downloads in flight without their writer (partial files, GETs)"
    );
    h.shutdown().await;
}
