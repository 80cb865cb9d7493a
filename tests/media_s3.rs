//! Archiving to S3-compatible storage: a moto server started by the test,
//! object_store over our ring-only hyper client. Runway video and cover
//! stored under their digests with the right bytes, a multipart upload,
//! failed downloads leaving nothing, delete, and secrets kept out of Debug.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::client::request;
use common::fetcher::{archive_fetcher, read_back};
use common::files::{generated_sha256, sha256_hex, FileServer, Route};
use common::s3::Moto;
use hookrelay::media::{archive, media_urls, ArchiveError, FetchError, MediaPointer, MediaStore, S3Store};
use hookrelay::preset::KIE_RUNWAY;
use serde_json::json;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Downloads uploaded to moto take at most this long.
const DOWNLOAD: Duration = Duration::from_secs(60);

/// The Content-Type S3 keeps for a stored object, read with a client of our own.
async fn stored_content_type(moto: &Moto, bucket: &str, sha256: &str) -> Option<String> {
    use object_store::ObjectStoreExt;
    let s = moto.settings(bucket);
    let client = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&s.s3.region)
        .with_access_key_id("AKIATESTKEY")
        .with_secret_access_key("very-secret-value")
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_http_connector(
            hookrelay::media::s3_http::HyperConnector::new(None, hookrelay::media::s3_http::REQUEST_TIMEOUT).unwrap(),
        )
        .build()
        .unwrap();
    let key = object_store::path::Path::from(format!("hookrelay/{}/{sha256}", &sha256[..2]));
    let got = client.get(&key).await.unwrap();
    got.attributes
        .get(&object_store::Attribute::ContentType)
        .map(|v| v.to_string())
}

/// Anonymous bucket-level reads (listings), straight from moto.
async fn raw_get(moto: &Moto, path: &str) -> String {
    let (status, _, body) = request(moto.addr, None, "GET", path, &[], bytes::Bytes::new()).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

#[tokio::test]
async fn runway_media_to_s3() {
    let moto = Moto::start().await;
    moto.create_bucket("media").await;
    let store = MediaStore::S3(S3Store::new(&moto.settings("media")).unwrap());

    let s = FileServer::start(LOCAL).await;
    let video: Vec<u8> = (0..250_000u32).flat_map(|i| i.to_be_bytes()).collect();
    let cover = b"cover image bytes".to_vec();
    let callback = json!({"code": 200, "msg": "All generated successfully.", "data": {
        "task_id": "t-s3", "video_id": "v",
        "video_url": s.bytes("/k/t-s3.mp4", &video, "video/mp4"),
        "image_url": s.bytes("/m/t-s3.png", &cover, "image/png")}});
    let ptrs: Vec<MediaPointer> = KIE_RUNWAY
        .media
        .iter()
        .map(|m| MediaPointer::parse(m).unwrap())
        .collect();
    let f = archive_fetcher(1 << 30, DOWNLOAD);
    for (u, (want, ct)) in media_urls(&ptrs, &callback)
        .iter()
        .zip([(&video, "video/mp4"), (&cover, "image/png")])
    {
        let st = archive(&f, &store, u).await.unwrap();
        assert_eq!(st.sha256, sha256_hex(want));
        assert_eq!(st.size, want.len() as u64);
        assert_eq!(
            st.location,
            format!("s3://media/hookrelay/{}/{}", &st.sha256[..2], st.sha256)
        );
        assert_eq!(&read_back(&store, &st.sha256).await, want);
        assert_eq!(
            stored_content_type(&moto, "media", &st.sha256).await.as_deref(),
            Some(ct)
        );
    }
    // Only the two content-addressed objects remain: the temporary keys are gone.
    let listing = raw_get(&moto, "/media?list-type=2").await;
    assert_eq!(listing.matches("<Key>").count(), 2, "{listing}");
    assert!(!listing.contains("tmp/"), "{listing}");

    // Delete (retention): gone, and a second delete reports nothing there.
    let sha = sha256_hex(&cover);
    assert!(store.delete(&sha).await.unwrap());
    assert!(!store.delete(&sha).await.unwrap());
    assert!(store.open(&sha).await.unwrap().is_none());
}

#[tokio::test]
async fn large_files_use_multipart_and_failures_leave_nothing() {
    let moto = Moto::start().await;
    moto.create_bucket("big").await;
    let store = MediaStore::S3(S3Store::new(&moto.settings("big")).unwrap());
    let s = FileServer::start(LOCAL).await;
    let len = 23 << 20; // five 5 MiB parts, the last one short
    s.route(
        "/big.mp4",
        Route::Generated {
            len,
            content_length: false,
        },
    );
    let st = archive(&archive_fetcher(1 << 30, DOWNLOAD), &store, &s.url("/big.mp4"))
        .await
        .unwrap();
    assert_eq!(st.size, len);
    assert_eq!(st.sha256, generated_sha256(len));
    let back = read_back(&store, &st.sha256).await;
    assert_eq!(sha256_hex(&back), st.sha256);

    // Cut off past max_size in the middle of a multipart upload: aborted, no object.
    s.route(
        "/too-big.mp4",
        Route::Generated {
            len: 40 << 20,
            content_length: false,
        },
    );
    let err = archive(&archive_fetcher(12 << 20, DOWNLOAD), &store, &s.url("/too-big.mp4"))
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Fetch(FetchError::TooLarge { .. })), "{err}");
    let listing = raw_get(&moto, "/big?list-type=2").await;
    assert_eq!(listing.matches("<Key>").count(), 1, "{listing}");
    let uploads = raw_get(&moto, "/big?uploads").await;
    assert_eq!(
        uploads.matches("<Upload>").count(),
        0,
        "multipart upload aborted: {uploads}"
    );
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_errors() {
    let moto = Moto::start().await;
    let s = moto.settings("no-such-bucket");
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("very-secret-value") && !shown.contains("AKIATESTKEY"),
        "{shown}"
    );
    let store = MediaStore::S3(S3Store::new(&s).unwrap());
    assert!(!format!("{store:?}").contains("very-secret-value"));
    // A missing bucket is a storage error that names the problem, not the key.
    let files = FileServer::start(LOCAL).await;
    let url = files.bytes("/x", b"x", "text/plain");
    let err = archive(&archive_fetcher(1 << 20, DOWNLOAD), &store, &url)
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Store(_)), "{err}");
    let text = err.to_string();
    assert!(!text.contains("very-secret-value"), "{text}");
}

/// A store that takes connections and never answers (S3 hung, a proxy
/// stuck) fails a request within its timeout, and the store then fails its
/// probe the same way: a download slot is held about one request timeout,
/// not the ten minutes (300 s per request, three minutes of retries) it was.
#[tokio::test]
async fn a_hung_store_fails_within_the_request_timeout() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", hung.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((c, _)) = hung.accept().await {
            open.push(c); // read nothing, answer nothing
        }
    });
    let mut settings = Moto::settings_for(&endpoint, "media");
    settings.request_timeout = Duration::from_millis(500);
    let store = MediaStore::S3(S3Store::new(&settings).unwrap());
    let started = std::time::Instant::now();
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"a file"))]);
    let put = tokio::time::timeout(Duration::from_secs(20), store.put_stream(chunks, None, None))
        .await
        .expect("the upload ends within 20 s");
    assert!(put.is_err(), "nothing answered, nothing stored");
    let ready = tokio::time::timeout(Duration::from_secs(20), store.check_ready())
        .await
        .expect("the probe ends within 20 s");
    let e = ready.expect_err("a hung store cannot take files");
    assert!(e.is_wait(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    held.abort();
}

/// Keys that may write but not delete (an append-only bucket policy) take
/// files: the probe passes once its PUT did (the refused delete of the probe
/// is a warning, as for an upload's temporary object; it stalled every
/// download). And while a store refuses, downloads due together ask it once
/// within five seconds, not each (an outage with many URLs due was a probe
/// per URL every retry delay).
#[tokio::test]
async fn the_probe_needs_no_delete_and_is_asked_once_for_many() {
    use common::subscriber::{Behaviour, Received, Sub};
    let append_only = Sub::start(std::sync::Arc::new(|_, r: &Received| {
        if r.body.is_empty() {
            Behaviour::Status(403)
        } else {
            Behaviour::With(200, vec![("etag", "\"p\"".into())])
        }
    }))
    .await;
    let at = |addr: std::net::SocketAddr| {
        MediaStore::S3(S3Store::new(&Moto::settings_for(&format!("http://{addr}"), "media")).unwrap())
    };
    at(append_only.addr)
        .check_ready()
        .await
        .expect("a store that takes files is ready");
    assert_eq!(append_only.count(), 2, "the probe's PUT and its refused DELETE");

    let refusing = Sub::always(Behaviour::Status(403)).await;
    let store = at(refusing.addr);
    let together = futures_util::future::join_all((0..50).map(|_| store.check_ready())).await;
    assert!(together.iter().all(|r| r.as_ref().is_err_and(|e| e.is_wait())));
    for _ in 0..50 {
        assert!(store.check_ready().await.is_err());
    }
    assert_eq!(
        refusing.count(),
        1,
        "one probe for a hundred downloads within five seconds"
    );
}

/// A graceful stop during an upload larger than a part (a multipart upload
/// begun) left the multipart upload unfinished: no object, so an expiration
/// rule does not remove it, and billed. The stopped try now aborts it, and
/// the stop waits for that (bounded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_multipart_upload_aborts_it() {
    use common::*;
    let moto = Moto::start().await;
    moto.create_bucket("stop").await;
    let s = FileServer::start(LOCAL).await;
    // 20 MiB, then the file server stalls: two 8 MiB parts are uploaded.
    let first: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    s.route(
        "/k/stop.mp4",
        common::files::Route::Stall {
            first: bytes::Bytes::from(first),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let bucket = moto.store("stop", "AKIATEST", "moto-secret").prefix("hookrelay/");
    let cfg = media_config(dir.path(), Media::new().allow_private().s3(bucket))
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)));
    let h = start(&cfg).await;
    let body = json!({"code": 200, "msg": "ok", "data": {
        "task_id": "stop1", "video_url": s.url("/k/stop.mp4"), "image_url": ""}});
    accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while raw_get(&moto, "/stop?uploads").await.matches("<Upload>").count() == 0 {
        assert!(tokio::time::Instant::now() < end, "no multipart upload began");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its parts are on their way (the upload began with the first one).
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.shutdown().await;
    let uploads = raw_get(&moto, "/stop?uploads").await;
    assert_eq!(
        uploads.matches("<Upload>").count(),
        0,
        "the stop left an unfinished multipart upload: {uploads}"
    );
}

/// A reload onto a store that takes no files (a bucket renamed to one that
/// does not exist) is told at once, as at start: an error in the log and
/// `hookrelay_media_store_unavailable` 1, not only at the next callback with
/// media; a reload back to a good bucket clears it. (It was silent until a
/// download, and the alert gauge kept the old store's value.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_onto_a_store_that_takes_no_files_is_told_at_once() {
    let moto = Moto::start().await;
    moto.create_bucket("good").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = |bucket: &str| archiving_runway(dir.path(), &moto, bucket, runway_route());
    let h = common::start(&cfg("good")).await;
    // The start's check of the good bucket leaves it 0.
    tokio::time::sleep(Duration::from_millis(500)).await;
    store_unavailable_until(&h, 10, "good at start", 0.0).await;
    cfg("no-such-bucket").write();
    h.reload().await.expect("the reload applies");
    store_unavailable_until(&h, 20, "the store the reload opened takes no files", 1.0).await;
    cfg("good").write();
    h.reload().await.expect("the reload applies");
    store_unavailable_until(&h, 20, "the good bucket again", 0.0).await;
    h.shutdown().await;
}

/// A store that fails its check at start (its bucket not made yet) is
/// checked again until it takes files: the gauge clears once the bucket is
/// there, with no callback with media meanwhile. (It stayed 1 until a
/// download looked, an alert firing over a mended store.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_mended_after_start_clears_the_gauge_without_a_download() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(&archiving_runway(dir.path(), &moto, "late", runway_route())).await;
    store_unavailable_until(&h, 20, "no bucket at start", 1.0).await;
    moto.create_bucket("late").await;
    store_unavailable_until(&h, 30, "the bucket made after the start", 0.0).await;
    h.shutdown().await;
}

/// A store that fails while the relay runs (its bucket deleted), found by
/// a download, is looked at again until it takes files, as one failing at
/// start is: the gauge clears once the bucket is back, with no download due
/// meanwhile (the URLs wait a minute here). It stayed 1 until a download
/// looked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_while_running_clears_the_gauge_once_mended() {
    let moto = Moto::start().await;
    moto.create_bucket("flaky").await;
    let files = FileServer::start(LOCAL).await;
    let dir = tempfile::tempdir().unwrap();
    let media = s3_media(&moto, "flaky").retry([Duration::from_secs(120)]);
    let h = common::start(&common::media_config(dir.path(), media).route(runway_route())).await;
    let post = |i: usize| {
        let url = files.bytes(&format!("/k/{i}.png"), b"png", "image/png");
        json!({"code": 200, "msg": "ok", "data": {
            "task_id": format!("flaky-{i}"), "video_url": "", "image_url": url}})
        .to_string()
    };
    // The start's check (a probe file put and removed) is over long before
    // this; a bucket deleted under it would set the gauge at once (below).
    tokio::time::sleep(Duration::from_secs(1)).await;
    moto.delete_bucket("flaky").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    store_unavailable_until(&h, 1, "the start's check over before the bucket went", 0.0).await;
    // A download's upload fails; a later one's check finds the store
    // failing and sets the gauge.
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    loop {
        common::accepted_at(h.ingest_addrs[0], "/hooks/runway", &post(i)).await;
        if store_unavailable_is(&common::metrics(h.admin_addr).await, 1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the deleted bucket never set the gauge"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        i += 1;
    }
    moto.create_bucket("flaky").await;
    store_unavailable_until(&h, 25, "the bucket made again", 0.0).await;
    h.shutdown().await;
}

/// A reload that leaves no route archiving stops the check of a store
/// that failed it and clears the gauge: nothing waits for that store (it
/// stayed 1, an alert firing for media no longer archived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_stops_archiving_clears_the_gauge() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(&archiving_runway(dir.path(), &moto, "never-made", runway_route())).await;
    store_unavailable_until(&h, 20, "no bucket", 1.0).await;
    archiving_runway(dir.path(), &moto, "never-made", runway_route().media([])).write();
    h.reload().await.expect("the reload applies");
    store_unavailable_until(&h, 10, "no route archives any more", 0.0).await;
    h.shutdown().await;
}

/// Route `runway` (`kie-runway`) with a subscriber that is down.
fn runway_route() -> common::Route {
    common::preset_route("runway", "kie-runway").subscriber(common::Subscriber::new("s", common::DOWN))
}

/// A relay with `route`, archiving to `bucket` on moto.
fn archiving_runway(dir: &std::path::Path, moto: &Moto, bucket: &str, route: common::Route) -> common::TestConfig {
    common::media_config(dir, s3_media(moto, bucket)).route(route)
}

/// Media archived to `bucket` on moto, from any address.
fn s3_media(moto: &Moto, bucket: &str) -> common::Media {
    common::Media::new()
        .allow_private()
        .s3(moto.store(bucket, "AKIATEST", "moto-secret"))
}

/// Whether the metrics `m` show `hookrelay_media_store_unavailable` at `v`.
fn store_unavailable_is(m: &[(String, f64)], v: f64) -> bool {
    m.iter()
        .any(|(k, x)| k == "hookrelay_media_store_unavailable" && *x == v)
}

/// Wait up to `secs` for `hookrelay_media_store_unavailable` to be `v`.
async fn store_unavailable_until(h: &hookrelay::Handle, secs: u64, what: &str, v: f64) {
    let is = move |m: &[(String, f64)]| store_unavailable_is(m, v);
    common::metrics_until(h.admin_addr, Duration::from_secs(secs), what, is).await;
}
