//! A low media disk puts downloads off without using up their tries: while
//! the disk is below `media.min_free` (here a floor no disk reaches) a URL is
//! not even fetched, stays pending with no try counted however many times
//! its retry schedule would have run out, and its `after_archive` subscriber
//! waits; once a reload lowers the floor the file is stored and the
//! subscriber gets it with state `stored`. The gauge `media_store_unavailable` says
//! so while it lasts. An S3 bucket that cannot take files is the same kind
//! of wait.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};

use common::files::{sha256_hex, FileServer};
use common::s3::Moto;
use common::*;

/// Once the store takes files: the after_archive subscriber gets the file
/// stored with its digest, the URL took one try, the gauge is back at 0.
async fn stored_once_in_one_try(h: &hookrelay::Handle, later: &Sub, id: &str, url: &str, bytes: &[u8]) {
    let header = after_archive_media(later, secs(30)).await;
    assert_eq!(header[0]["state"], "stored", "{header:?}");
    assert_eq!(header[0]["sha256"], sha256_hex(bytes));
    let m = item(&media_of(h.admin_addr, id).await, url).clone();
    assert_eq!(
        (m["state"].as_str(), m["attempts"].as_u64()),
        (Some("stored"), Some(1)),
        "{m}"
    );
    assert_eq!(
        sample(&metrics(h.admin_addr).await, "hookrelay_media_store_unavailable"),
        0.0
    );
}

/// More free space than any disk has (1 EiB).
const NO_DISK_HAS: u64 = 1 << 60;

#[tokio::test]
async fn a_low_media_disk_costs_no_try_and_the_file_is_stored_once_there_is_room() {
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let video = s.bytes("/k/video.mp4", b"the video", "video/mp4");
    let later = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    // Two quick steps: without a floor a failing URL is given up in about 0.2 s.
    let media = Media::new().allow_private().retry([ms(100), ms(100)]);
    let cfg = media_config(dir.path(), media.clone().min_free(NO_DISK_HAS)).route(route);
    let h = start(&cfg).await;
    let id = accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("ee603959", &video, "").to_string(),
    )
    .await;

    // Looked at four times, more than the schedule's three tries: still
    // pending, no try, not fetched; the gauge says why.
    let m = put_off_four_times(h.admin_addr, "low_space", &id, &video).await;
    assert_eq!(m["state"], "pending", "{m}");
    assert_eq!(m["attempts"], 0, "{m}");
    assert!(
        m["error"].as_str().is_some_and(|e| e.contains("below the minimum")),
        "{m}"
    );
    assert_eq!(s.hits("/k/video.mp4"), 0, "no GET while the disk is low");
    assert_eq!(later.count(), 0, "after_archive waits for the file");

    // Room again (a reload lowers the floor): stored, and delivered.
    cfg.media(media.min_free(0)).write();
    h.reload().await.expect("reload");
    stored_once_in_one_try(&h, &later, &id, &video, b"the video").await;
    // The start's check of the store, going on while it failed (at 5 s,
    // then 10 s later), looks with the floor in force: the gauge stays 0
    // (with the start's floor it went back to 1 at its next look).
    let until = std::time::Instant::now() + secs(8);
    while std::time::Instant::now() < until {
        assert_eq!(
            sample(&metrics(h.admin_addr).await, "hookrelay_media_store_unavailable"),
            0.0,
            "the gauge went back to 1 over a store that takes files"
        );
        tokio::time::sleep(ms(200)).await;
    }
    h.shutdown().await;
}

/// A file that does not fit above the floor of a disk that is above it is
/// not a low disk: each refused write is a try, and the URL ends as failed
/// after the schedule (the review found it fetched again every delay for
/// ever, its after_archive delivery held with it). Needs a small tmpfs (root).
#[tokio::test]
async fn a_file_that_never_fits_uses_its_tries_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let Some(tmpfs) = tmpfs::Tmpfs::mount(&mnt, "16m") else {
        return;
    };
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let video = s.bytes("/k/big.mp4", &vec![7u8; 4 << 20], "video/mp4");
    let later = Sub::ok().await;
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    // 1 MiB above the floor: the disk is not low, the 4 MiB file never fits.
    let floor = (tmpfs.free_kib() * 1024).saturating_sub(1 << 20);
    let media = Media::new()
        .allow_private()
        .retry([ms(100), ms(100)])
        .dir(&mnt)
        .min_free(floor);
    let h = start(&media_config(dir.path(), media).route(route)).await;
    let id = accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("ee603960", &video, "").to_string(),
    )
    .await;
    let header = after_archive_media(&later, secs(20)).await;
    assert_eq!(header[0]["state"], "failed", "{header:?}");
    let m = item(&media_of(h.admin_addr, &id).await, &video).clone();
    assert_eq!(
        (m["state"].as_str(), m["attempts"].as_u64()),
        (Some("failed"), Some(3)),
        "{m}"
    );
    assert_eq!(s.hits("/k/big.mp4"), 3);
    h.shutdown().await;
}

/// An S3 bucket that cannot take files (here: not created yet) is a wait
/// like a low disk: the URL is not fetched and no try is counted however
/// often its schedule would have run out; once the bucket is there the file
/// is stored and the after_archive subscriber gets it. (Each try downloaded
/// the file, failed the upload and counted: the URL failed for good after
/// the schedule, as it would after any outage of the bucket or a key mistake.)
#[tokio::test]
async fn an_s3_bucket_that_cannot_take_files_costs_no_try() {
    let moto = Moto::start().await;
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let video = s.bytes("/k/s3.mp4", b"the video for s3", "video/mp4");
    let later = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = moto.store("media", "AKIATEST", "moto-secret").prefix("hookrelay/");
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    let media = Media::new().allow_private().retry([ms(100), ms(100)]).s3(bucket);
    let h = start(&media_config(dir.path(), media).route(route)).await;
    // Told at start, before any callback names a file.
    metrics_until(h.admin_addr, secs(30), "the gauge set by the start-up probe", |m| {
        m.iter()
            .any(|(k, v)| k == "hookrelay_media_store_unavailable" && *v == 1.0)
    })
    .await;
    let id = accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("ee603961", &video, "").to_string(),
    )
    .await;
    let m = put_off_four_times(h.admin_addr, "store_unavailable", &id, &video).await;
    assert_eq!(
        (m["state"].as_str(), m["attempts"].as_u64()),
        (Some("pending"), Some(0)),
        "{m}"
    );
    let error = m["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot take files") && error.contains("NoSuchBucket"),
        "{m}"
    );
    assert!(
        !error.contains('\n') && !error.contains("<?xml"),
        "one readable line: {error}"
    );
    assert_eq!(s.hits("/k/s3.mp4"), 0, "no GET while the bucket cannot take the file");
    assert_eq!(later.count(), 0, "after_archive waits for the file");

    moto.create_bucket("media").await;
    stored_once_in_one_try(&h, &later, &id, &video, b"the video for s3").await;
    // The probes removed what they wrote: the bucket holds the file alone.
    let (status, _, listing) = request(moto.addr, None, "GET", "/media?list-type=2", &[], bytes::Bytes::new()).await;
    let listing = String::from_utf8_lossy(&listing);
    assert_eq!(
        (status.as_u16(), listing.matches("<Key>").count()),
        (200, 1),
        "{listing}"
    );
    h.shutdown().await;
}

/// A media directory on the embedded store's disk with a `media.min_free`
/// below `store.min_free` (here 0): the downloads keep the store's floor,
/// plus room for the downloads in flight, so a file that fits the disk but
/// not above that floor fails instead of leaving ingest refusing callbacks
/// (the review found it stored, the disk left under `store.min_free` and
/// every later callback answered `503`). One file announces its size, one
/// is chunked (stopped by the writer's checks). Needs a small tmpfs (root).
#[tokio::test]
async fn downloads_on_the_stores_disk_never_take_it_below_store_min_free() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let Some(tmpfs) = tmpfs::Tmpfs::mount(&mnt, "64m") else {
        return;
    };
    let s = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let later = Sub::ok().await;
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    let media = Media::new()
        .allow_private()
        .retry([ms(100)])
        .concurrency(1)
        .dir(&mnt.join("media"));
    let cfg = media_config(dir.path(), media)
        .store_path(&mnt.join("data"))
        .store_cache(1 << 20)
        .min_free(16 << 20)
        .route(route);
    let h = start(&cfg).await;
    // Each file would leave 8 MiB free: above media.min_free, below store.min_free.
    let size = (tmpfs.free_kib() * 1024).saturating_sub(8 << 20);
    let video = s.bytes("/k/fill.mp4", &vec![7u8; size as usize], "video/mp4");
    s.route(
        "/k/fill.png",
        files::Route::Generated {
            len: size,
            content_length: false,
        },
    );
    let cover = s.url("/k/fill.png");
    let id = accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("ee603961", &video, &cover).to_string(),
    )
    .await;
    let header = after_archive_media(&later, secs(30)).await;
    assert_eq!(
        (header[0]["state"].as_str(), header[1]["state"].as_str()),
        (Some("failed"), Some("failed")),
        "{header:?}"
    );
    let m = media_of(h.admin_addr, &id).await;
    for url in [&video, &cover] {
        let e = item(&m, url)["error"].as_str().unwrap_or_default().to_string();
        assert!(e.contains("below the minimum"), "{e}");
    }
    // Ingest still takes callbacks.
    accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("ee603962", "", "").to_string(),
    )
    .await;
    h.shutdown().await;
}

/// A relay archiving to a tmpfs of `inodes` inodes (`media.min_free`
/// `min_free`, each URL tried three times 100 ms apart) whose inodes are
/// all taken but `left`; route `runway`'s `after_archive` subscriber
/// `later`; the callback of task `task` naming `/k/video.mp4`, accepted.
struct ShortOfInodes {
    h: hookrelay::Handle,
    later: Sub,
    video: String,
    id: String,
    taken: tmpfs::InodesTaken,
    files: FileServer,
    _disk: tmpfs::Tmpfs,
    _dir: tempfile::TempDir,
}

async fn short_of_inodes(inodes: u32, left: usize, min_free: u64, task: &str) -> Option<ShortOfInodes> {
    let files = FileServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let video = files.bytes("/k/video.mp4", b"the video", "video/mp4");
    let later = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    let disk = tmpfs::Tmpfs::mount(&mnt, &format!("16m,nr_inodes={inodes}"))?;
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    let media = Media::new()
        .allow_private()
        .dir(&mnt.join("archive"))
        .min_free(min_free)
        .retry([ms(100), ms(100)]);
    let h = start(&media_config(dir.path(), media).route(route)).await;
    let taken = tmpfs::InodesTaken::leaving(&mnt.join("fill"), left);
    let body = runway_media(task, &video, "").to_string();
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body).await;
    Some(ShortOfInodes {
        h,
        later,
        video,
        id,
        taken,
        files,
        _disk: disk,
        _dir: dir,
    })
}

/// A media directory on a disk with one inode left: a download's file fits,
/// the directory its digest needs does not. The failure uses one try, then
/// the URL waits (`store_unavailable`, gauge 1) without using the others,
/// and is stored once inodes are freed. The check after a failure wrote a
/// file only, passed, and each failure used a try: the URL failed for good
/// (filesystem review, stop 73: 20 URLs given up, the gauge at 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_disk_with_one_inode_left_is_a_wait_not_a_failure() {
    // No floor: what is tested is the check after a failed write.
    let Some(t) = short_of_inodes(64, 1, 0, "1e603959").await else {
        return;
    };
    // The check at the start may have found it so already (no try used).
    let m = put_off_four_times(t.h.admin_addr, "store_unavailable", &t.id, &t.video).await;
    assert_eq!(m["state"], "pending", "{m}");
    assert!(m["attempts"].as_u64() <= Some(1), "{m}");
    assert_eq!(t.later.count(), 0, "after_archive waits for the file");
    t.taken.give_back();
    let header = after_archive_media(&t.later, secs(90)).await;
    assert_eq!(header[0]["state"], "stored", "{header:?}");
    let m = item(&media_of(t.h.admin_addr, &t.id).await, &t.video).clone();
    assert_eq!(m["state"], "stored", "{m}");
    assert!(m["attempts"].as_u64() <= Some(2), "{m}");
    t.h.shutdown().await;
}

/// A media disk under 64 free inodes (bytes to spare) is a low disk: the
/// URL is not fetched and waits without a try, the error says why (the
/// archive took the last inodes, and the store on that disk could not start
/// again: filesystem review, stop 73).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_disk_short_of_inodes_costs_no_try() {
    let Some(t) = short_of_inodes(256, 20, 1 << 20, "2e603959").await else {
        return;
    };
    let m = put_off_four_times(t.h.admin_addr, "store_unavailable", &t.id, &t.video).await;
    assert_eq!(m["state"], "pending", "{m}");
    assert_eq!(m["attempts"], 0, "{m}");
    assert!(m["error"].as_str().is_some_and(|e| e.contains("out of inodes")), "{m}");
    assert_eq!(t.files.hits("/k/video.mp4"), 0, "no GET while the disk is short");
    t.taken.give_back();
    let header = after_archive_media(&t.later, secs(90)).await;
    assert_eq!(header[0]["state"], "stored", "{header:?}");
    t.h.shutdown().await;
}
