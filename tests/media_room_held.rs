//! Downloads in flight on a local media directory reserve the room they
//! announce above `media.min_free`, so they do not fail each other: three
//! URLs naming the same 17 MiB file (content addressing keeps one copy) fit
//! one at a time (the stored file and one partial file), not all three at
//! once. Each is stored in one try: the one that finds the room held by the
//! others waits for them without a try, then is downloaded again. (Each
//! passed the free-space check alone, then the writers' checks stopped one
//! at the floor: a try used up, and a URL failed once its overlaps used them
//! all.) Needs a small tmpfs (root).

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use common::files::{sha256_hex, FileServer, Route};
use common::*;
use serde_json::Value;

#[tokio::test]
async fn downloads_that_fit_one_at_a_time_do_not_fail_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let Some(tmpfs) = tmpfs::Tmpfs::mount(&mnt, "64m") else {
        return;
    };
    const SIZE: usize = 17 << 20;
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    // Most of the file at once, the rest a second later: the downloads are
    // all in flight together, each past the writer's check at 16 MiB.
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let (first, rest) = (
        Bytes::copy_from_slice(&bytes[..SIZE - (64 << 10)]),
        Bytes::copy_from_slice(&bytes[SIZE - (64 << 10)..]),
    );
    let urls: Vec<String> = ["/k/a.mp4", "/k/b.mp4", "/k/c.mp4"]
        .iter()
        .map(|p| {
            s.route(
                p,
                Route::Slow {
                    first: first.clone(),
                    rest: rest.clone(),
                    delay: Duration::from_secs(1),
                    content_type: "video/mp4",
                },
            );
            s.url(p)
        })
        .collect();
    let later = Sub::ok().await;
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    // Two and a half files above the floor.
    let floor = (tmpfs.free_kib() * 1024).saturating_sub(SIZE as u64 * 5 / 2);
    let media = Media::new()
        .allow_private()
        .retry([ms(100), ms(100)])
        .concurrency(3)
        .dir(&mnt)
        .min_free(floor);
    let h = start(&media_config(dir.path(), media).route(route)).await;
    let ids = [
        accepted_at(
            h.ingest_addrs[0],
            "/hooks/runway",
            &runway_media("ee603970", &urls[0], &urls[1]).to_string(),
        )
        .await,
        accepted_at(
            h.ingest_addrs[0],
            "/hooks/runway",
            &runway_media("ee603971", &urls[2], "").to_string(),
        )
        .await,
    ];
    let got = later
        .wait_for(secs(30), "both after_archive deliveries", |r| r.len() >= 2)
        .await;
    for r in &got {
        let header: Vec<Value> = serde_json::from_str(r.header("hookrelay-media")).unwrap();
        for m in header.iter().filter(|m| m["url"] != "") {
            assert_eq!(m["state"], "stored", "{header:?}");
            assert_eq!(m["sha256"], sha256_hex(&bytes), "{header:?}");
        }
    }
    for (id, url) in [(&ids[0], &urls[0]), (&ids[0], &urls[1]), (&ids[1], &urls[2])] {
        let m = item(&media_of(h.admin_addr, id).await, url).clone();
        assert_eq!(
            (m["state"].as_str(), m["attempts"].as_u64()),
            (Some("stored"), Some(1)),
            "{m}"
        );
    }
    let hits: usize = ["/k/a.mp4", "/k/b.mp4", "/k/c.mp4"].iter().map(|p| s.hits(p)).sum();
    assert!(
        hits > 3,
        "one download waited for the others and was fetched again ({hits} GETs)"
    );
    h.shutdown().await;
}
