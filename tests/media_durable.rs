//! Promise 1 for the media archive, with the real binary: the URLs of an
//! acknowledged callback are archived even when the daemon is killed with
//! `kill -9` in the middle of the download (it starts again after the
//! restart; no partial file is left), a signed URL's query string never
//! reaches the log, and a reload does not remove the partial files of
//! downloads in flight.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::files::{sha256_hex, FileServer, Route as File};
use common::*;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_killed_with_sigkill_is_archived_after_the_restart() {
    let s = FileServer::start(LOCAL).await;
    let full: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
    // The first try stalls after 1 MiB: the daemon is killed mid-download.
    s.route(
        "/k/video.mp4",
        File::Stall {
            first: Bytes::copy_from_slice(&full[..1 << 20]),
        },
    );
    let url = format!(
        "{}?X-Amz-Signature=SIGNEDSECRET123&X-Amz-Expires=600",
        s.url("/k/video.mp4")
    );
    let dir = tempfile::tempdir().unwrap();
    let config = media_config(dir.path(), Media::new().allow_private())
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)))
        .write();
    let mut bin = Bin::start(&config, &[]);
    let id = accepted_at(bin.addr, "/hooks/runway", &runway_media("k9", &url, "").to_string()).await;
    let tmp = dir.path().join("data/media/tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    // After the GET (the check before it, whose probe file comes and goes
    // in tmp/, is done), the download's partial file.
    while s.hits("/k/video.mp4") == 0 || std::fs::read_dir(&tmp).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "the download never started writing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(media_of(bin.admin, &id).await[0]["state"], "pending");
    bin.kill9();
    let first_log = bin.log_text();
    assert!(
        std::fs::read_dir(&tmp).unwrap().count() > 0,
        "killed with a partial file"
    );

    // The file server works again; the restarted daemon finds the work on disk.
    s.route(
        "/k/video.mp4",
        File::Bytes {
            body: Bytes::from(full.clone()),
            content_type: "video/mp4",
        },
    );
    let bin = Bin::start(&config, &[]);
    let media = wait_final(bin.admin, &id, Duration::from_secs(60)).await;
    assert_eq!(media[0]["state"], "stored", "{media:#?}");
    assert_eq!(media[0]["sha256"], sha256_hex(&full));
    assert_eq!(
        media[0]["url"],
        format!("{}?…", s.url("/k/video.mp4")),
        "shown without its query"
    );
    assert_eq!(s.hits("/k/video.mp4"), 2);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the partial file was cleared"
    );
    let stored = std::fs::read(media[0]["location"].as_str().unwrap()).unwrap();
    assert_eq!(stored, full);
    let logs = format!("{first_log}\n{}", bin.log_text());
    assert!(logs.contains("media stored"), "{logs}");
    assert!(
        !logs.contains("SIGNEDSECRET123"),
        "a signed query reached the log:\n{logs}"
    );
}

/// A reload that changes a `[media]` key the local store does not use
/// (`media.ca_file`) keeps the store: the `tmp/*.part` files of downloads in
/// flight are not removed (they were, as at a start-up, and each such
/// download then failed at its rename: a try lost, the whole file fetched
/// again, or on the last step of `media.retry` the URL failed for good).
/// From review 36, finding 4.
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
    let body = serde_json::json!({"code": 200, "msg": "ok",
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

/// Relays of a cluster may share one media directory: a relay's start-up
/// removed every `tmp/*.part` file, the downloads other relays were still
/// writing included (each then failed at its rename, a try lost). Now it
/// removes only stale ones (not written to for longer than `media.timeout`
/// and a margin, a crashed download's), and the retention sweep does the same
/// every minute, so a leftover goes without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_and_the_sweep_remove_stale_part_files_only_a_peers_fresh_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("data/media/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let backdated = |name: &str| {
        let p = tmp.join(name);
        std::fs::write(&p, b"half a file").unwrap();
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(3 * 3600);
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(long_ago).unwrap();
        p
    };
    let crashed = backdated("01HAAAAAAAAAAAAAAAAAAAAAAA-0123456789abcdef.part");
    let peer = tmp.join("01HBBBBBBBBBBBBBBBBBBBBBBB-fedcba9876543210.part");
    std::fs::write(&peer, b"a peer's download in flight").unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private())
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)));
    let h = start(&cfg).await;
    assert!(!crashed.exists(), "a stale partial file is removed at start-up");
    assert!(peer.exists(), "start-up removed a peer's download in flight");

    // A crash's leftover found later goes with the retention sweep (every
    // minute, first 10 s after start); the peer's, still fresh, stays.
    let later = backdated("01HCCCCCCCCCCCCCCCCCCCCCCC-0123456789abcdef.part");
    let end = Instant::now() + Duration::from_secs(30);
    while later.exists() {
        assert!(Instant::now() < end, "the sweep left a stale partial file");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(peer.exists(), "the sweep removed a peer's download in flight");
    h.shutdown().await;
}
