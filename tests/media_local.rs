//! Archiving to a local media directory: provider callbacks' URLs found
//! through the presets' pointers, downloaded from a loopback file server and
//! stored content-addressed with the right bytes and SHA-256; failures leave
//! no partial files; the free-space floor refuses writes.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use common::fetcher::{archive_fetcher, read_back};
use common::files::{sha256_hex, FileServer, Route};
use hookrelay::media::{
    archive, media_urls, ArchiveError, FetchError, LocalStore, MediaPointer, MediaStore, StoreError, Stored,
};
use hookrelay::preset::{Preset, KIE_MARKET, KIE_RUNWAY, KIE_VEO};
use serde_json::{json, Value};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Downloads into a local directory on loopback take at most this long.
const DOWNLOAD: Duration = Duration::from_secs(30);

fn urls(p: &Preset, body: &Value) -> Vec<String> {
    let ptrs: Vec<MediaPointer> = p.media.iter().map(|m| MediaPointer::parse(m).unwrap()).collect();
    media_urls(&ptrs, body)
}

fn temp_files(root: &Path) -> usize {
    std::fs::read_dir(root.join("tmp")).unwrap().count()
}

#[tokio::test]
async fn runway_video_and_cover_are_stored_with_their_digest() {
    let s = FileServer::start(LOCAL).await;
    let video: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let cover = b"\x89PNG\r\n\x1a\n cover".to_vec();
    let video_url = s.bytes("/k/ee603959.mp4", &video, "video/mp4");
    let cover_url = s.bytes("/m/ee603959.png", &cover, "image/png");
    let callback = json!({"code": 200, "msg": "All generated successfully.", "data": {
        "task_id": "ee603959", "video_id": "485da89c", "video_url": video_url, "image_url": cover_url}});

    let dir = tempfile::tempdir().unwrap();
    let store = MediaStore::Local(LocalStore::new(dir.path().join("media"), 0).unwrap());
    let f = archive_fetcher(1 << 30, DOWNLOAD);
    let found = urls(&KIE_RUNWAY, &callback);
    assert_eq!(found, [video_url.clone(), cover_url.clone()]);
    let mut stored: Vec<Stored> = Vec::new();
    for u in &found {
        stored.push(archive(&f, &store, u).await.unwrap());
    }

    for (st, (bytes, ct)) in stored.iter().zip([(&video, "video/mp4"), (&cover, "image/png")]) {
        assert_eq!(st.sha256, sha256_hex(bytes));
        assert_eq!(st.size, bytes.len() as u64);
        assert_eq!(st.content_type.as_deref(), Some(ct));
        let on_disk = std::fs::read(&st.location).unwrap();
        assert_eq!(&on_disk, bytes, "{}", st.location);
        assert!(st.location.ends_with(&format!("/{}/{}", &st.sha256[..2], st.sha256)));
        assert!(Path::new(&st.location).is_absolute());
        assert_eq!(&read_back(&store, &st.sha256).await, bytes);
    }
    assert_eq!(temp_files(&dir.path().join("media")), 0);

    // The same file again: same location, nothing duplicated.
    let again = archive(&f, &store, &video_url).await.unwrap();
    assert_eq!(again, stored[0]);
    // Retention removes it; a second delete finds nothing.
    assert!(store.delete(&stored[0].sha256).await.unwrap());
    assert!(!Path::new(&stored[0].location).exists());
    assert!(!store.delete(&stored[0].sha256).await.unwrap());
    assert!(store.open(&stored[0].sha256).await.unwrap().is_none());
    assert!(matches!(
        store.open("../../etc/passwd").await,
        Err(StoreError::BadDigest(_))
    ));
}

#[tokio::test]
async fn veo_array_and_market_result_json_are_followed() {
    let s = FileServer::start(LOCAL).await;
    let v1 = s.bytes("/veo/1.mp4", b"veo one", "video/mp4");
    let v2 = s.bytes("/veo/2.mp4", b"veo two", "video/mp4");
    let o1 = s.bytes("/veo/o1.mp4", b"veo origin", "video/mp4");
    let m1 = s.bytes("/market/1.mp4", b"kling result", "video/mp4");
    let veo = json!({"code": 200, "msg": "ok", "data": {"taskId": "veo-1", "info": {
        "resultUrls": [v1, v2], "originUrls": [o1], "resolution": "1080p"}}});
    let veo_string = json!({"code": 200, "msg": "ok", "data": {"taskId": "veo-2", "info": {
        "resultUrls": serde_json::to_string(&[&v2]).unwrap()}}});
    let market = json!({"code": 200, "msg": "Playground task completed successfully.", "data": {
        "taskId": "mk-1", "state": "success",
        "resultJson": json!({"resultUrls": [m1]}).to_string()}});

    let dir = tempfile::tempdir().unwrap();
    let store = MediaStore::Local(LocalStore::new(dir.path(), 0).unwrap());
    let f = archive_fetcher(1 << 20, DOWNLOAD);
    let cases: [(&Preset, &Value, &[&[u8]]); 3] = [
        (&KIE_VEO, &veo, &[b"veo one", b"veo two", b"veo origin"]),
        (&KIE_VEO, &veo_string, &[b"veo two"]),
        (&KIE_MARKET, &market, &[b"kling result"]),
    ];
    for (preset, body, expected) in cases {
        let found = urls(preset, body);
        assert_eq!(found.len(), expected.len(), "{}: {found:?}", preset.name);
        for (u, want) in found.iter().zip(expected) {
            let st = archive(&f, &store, u).await.unwrap();
            assert_eq!(st.sha256, sha256_hex(want));
            assert_eq!(&std::fs::read(&st.location).unwrap(), want);
        }
    }
}

/// A file server answering `204 No Content`, or `200` with an empty body (an
/// object not ready yet), gives no file: the try fails, is retried later, and
/// nothing is stored (no 0-byte file recorded as archived).
#[tokio::test]
async fn an_empty_answer_is_a_failed_try_not_an_archived_file() {
    let s = FileServer::start(LOCAL).await;
    let no_content = s.status("/k/video.mp4", 204);
    let empty = s.bytes("/k/empty.mp4", b"", "video/mp4");
    let dir = tempfile::tempdir().unwrap();
    let store = MediaStore::Local(LocalStore::new(dir.path(), 0).unwrap());
    let f = archive_fetcher(1 << 20, DOWNLOAD);
    for url in [&no_content, &empty] {
        let got = archive(&f, &store, url).await;
        let err = match got {
            Ok(st) => panic!(
                "{url}: an empty answer was archived as a file: {} {}",
                st.size, st.sha256
            ),
            Err(e) => e,
        };
        assert!(
            matches!(err, ArchiveError::Fetch(FetchError::Empty { .. })) && err.retryable(),
            "{url}: {err}"
        );
        assert!(err.to_string().contains("empty body"), "{err}");
    }
    assert_eq!(temp_files(dir.path()), 0, "temp files removed");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "tmp")
        .map(|e| e.file_name())
        .collect();
    assert!(files.is_empty(), "nothing stored: {files:?}");
}

#[tokio::test]
async fn failed_downloads_leave_no_partial_file() {
    let s = FileServer::start(LOCAL).await;
    s.route(
        "/big",
        Route::Generated {
            len: 8 << 20,
            content_length: false,
        },
    );
    s.route(
        "/short",
        Route::Short {
            declared: 1 << 20,
            body: bytes::Bytes::from(vec![7u8; 300_000]),
        },
    );
    let gone = s.status("/gone", 410);
    let dir = tempfile::tempdir().unwrap();
    let store = MediaStore::Local(LocalStore::new(dir.path(), 0).unwrap());
    let f = archive_fetcher(1 << 20, DOWNLOAD);

    let err = archive(&f, &store, &s.url("/big")).await.unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Fetch(FetchError::TooLarge {
                max: 1048576,
                announced: None
            })
        ),
        "{err}"
    );
    assert!(!err.retryable());
    let err = archive(&f, &store, &s.url("/short")).await.unwrap_err();
    assert!(
        matches!(err, ArchiveError::Fetch(FetchError::Http { .. })) && err.retryable(),
        "{err}"
    );
    let err = archive(&f, &store, &gone).await.unwrap_err();
    assert!(err.is_gone() && !err.retryable(), "{err}");

    assert_eq!(temp_files(dir.path()), 0, "temp files removed");
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["tmp"], "nothing stored");
}

#[tokio::test]
async fn free_space_floor_refuses_before_writing() {
    let s = FileServer::start(LOCAL).await;
    let url = s.bytes("/x.mp4", b"some bytes", "video/mp4");
    let dir = tempfile::tempdir().unwrap();
    let free = fs4::available_space(dir.path()).unwrap();
    // A floor above what the disk has free: refused, retryable, nothing written.
    let store = MediaStore::Local(LocalStore::new(dir.path(), free.saturating_mul(2)).unwrap());
    let err = archive(&archive_fetcher(1 << 20, DOWNLOAD), &store, &url)
        .await
        .unwrap_err();
    match &err {
        ArchiveError::Store(StoreError::LowSpace {
            available, min_free, ..
        }) => {
            assert_eq!(*min_free, free.saturating_mul(2));
            assert!(*available < *min_free);
        }
        other => panic!("expected LowSpace, got {other}"),
    }
    assert!(err.retryable());
    assert!(
        err.to_string()
            .contains("bytes free; storing would go below the minimum"),
        "{err}"
    );
    assert_eq!(temp_files(dir.path()), 0);
    // A Content-Length that would cross the floor is refused up front too.
    let store = MediaStore::Local(LocalStore::new(dir.path(), free / 2).unwrap());
    s.route(
        "/huge",
        Route::Generated {
            len: free,
            content_length: true,
        },
    );
    let err = archive(&archive_fetcher(u64::MAX, DOWNLOAD), &store, &s.url("/huge"))
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Store(StoreError::LowSpace { .. })), "{err}");
    assert!(s.generated_sent() < 16 << 20, "the body was not read");
}

#[tokio::test]
async fn a_disk_filling_up_during_a_download_stops_the_write() {
    let s = FileServer::start(LOCAL).await;
    // Chunked, so the size is unknown up front and the first check passes.
    s.route(
        "/endless",
        Route::Generated {
            len: 4 << 30,
            content_length: false,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let free = fs4::available_space(dir.path()).unwrap();
    // The floor sits 100 MiB below what is free now: the writer's periodic
    // check (every 8 MiB) must stop it within about 128 MiB.
    let store = MediaStore::Local(LocalStore::new(dir.path(), free.saturating_sub(100 << 20)).unwrap());
    let err = archive(&archive_fetcher(u64::MAX, DOWNLOAD), &store, &s.url("/endless"))
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Store(StoreError::LowSpace { .. })), "{err}");
    assert!(err.retryable());
    assert_eq!(temp_files(dir.path()), 0, "the partial file is removed");
    assert!(
        s.generated_sent() < 1 << 30,
        "stopped early: {} bytes sent",
        s.generated_sent()
    );
}

/// A partial file nobody wrote to for longer than the download deadline and
/// a margin is a crashed download's and goes on open; a fresh one of another
/// writer (a relay sharing the directory, mid-download) stays.
#[tokio::test]
async fn a_stale_temp_file_is_removed_on_open_a_fresh_one_of_another_writer_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let old = dir.path().join("tmp/01HZZZ-0123456789abcdef.part");
    std::fs::write(&old, b"half a file").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let fresh = dir.path().join("tmp/01HZZY-fedcba9876543210.part");
    std::fs::write(&fresh, b"a peer's download").unwrap();
    let _store = LocalStore::new(dir.path(), 0).unwrap();
    assert!(!old.exists(), "the stale partial file is removed");
    assert!(fresh.exists(), "a download in flight keeps its partial file");
    assert_eq!(temp_files(dir.path()), 1);
}

/// The retention pass's look for crashed downloads' partial files leaves
/// this relay's own alone, however old their time looks: they are its
/// downloads in flight (its crashed ones went at its start), and a step of
/// the wall clock past the download deadline made one look stale, deleted
/// under the download (its try lost; retention review, stop 71). Another
/// writer's old one still goes.
#[tokio::test]
async fn the_retention_pass_leaves_this_relays_own_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open_dir(dir.path(), 0, "0123456789abcdef", None).unwrap();
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let old = |name: &str| {
        let path = dir.path().join("tmp").join(name);
        std::fs::write(&path, b"half a file").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(an_hour_ago).unwrap();
        path
    };
    let own = old("01HZZZ-0123456789abcdef.part");
    let peer = old("01HZZY-fedcba9876543210.part");
    assert_eq!(store.remove_stale_parts(Duration::from_secs(60)), 1);
    assert!(own.exists(), "this relay's download in flight keeps its partial file");
    assert!(!peer.exists(), "another writer's stale partial file goes");
}

/// The checks before downloads into a local directory whose disk hangs (a
/// frozen filesystem: its probe file is never written) wait for the one
/// that hangs: one thread stuck, whatever the number of URLs due. Before,
/// each check was a thread of its own stuck beside the others, one more for
/// every URL due while the disk hung (up to tokio's 512 blocking threads,
/// every file read of the relay then queued behind them).
#[test]
fn checks_of_a_hung_media_disk_hold_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    let Some(disk) = common::tmpfs::Frozen::mount(&dir.path().join("disk.img"), &mnt, 64) else {
        return;
    };
    // A new store probes its directory at its first check.
    let store = MediaStore::Local(LocalStore::new(mnt.join("media"), 0).unwrap());
    if !disk.freeze() {
        return;
    }
    const NAME: &str = "hr-hung-check";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(NAME)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..8 {
            // Each download gives its check up; a thread it started stays.
            let _ = tokio::time::timeout(Duration::from_millis(200), store.check_ready()).await;
        }
    });
    let named = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == NAME)
        .count();
    disk.thaw();
    rt.shutdown_timeout(Duration::from_secs(5));
    // The runtime's worker and one blocking thread.
    assert!(named <= 2, "{named} threads for 8 checks of a hung media disk");
}
