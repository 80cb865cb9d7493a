//! The media archive in cluster mode: two relays on one NATS share the
//! archive's work — a URL named by callbacks that reach different relays is
//! fetched once, by one of them — and an `after_archive` subscriber waits
//! for the files whichever relay delivers, with every relay's admin API
//! showing the same media.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::files::{sha256_hex, FileServer};
use common::nats::NatsCluster;
use common::*;
use serde_json::Value;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long the video takes to finish downloading.
const SLOW: Duration = Duration::from_secs(4);

fn media_header(value: &str) -> Vec<Value> {
    serde_json::from_str(value).expect("hookrelay-media is a JSON array")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_fetch_a_url_once_and_after_archive_waits_for_it() {
    let nats = NatsCluster::start(1).await;
    let files = FileServer::start(LOCAL).await;
    let (video, video_url) = files.slow_video("/k/slow.mp4", SLOW);
    let now_sub = Sub::ok().await;
    let later_sub = Sub::ok().await;
    let archive = tempfile::tempdir().unwrap();
    let relay = |dir: &std::path::Path| {
        let route = preset_route("runway", "kie-runway")
            .subscriber(Subscriber::new("now", now_sub.url()))
            .subscriber(Subscriber::new("later", later_sub.url()).after_archive());
        media_config(dir, Media::new().dir(archive.path()).allow_private())
            .route(route)
            .nats(nats.urls(), 1)
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let h1 = start(&relay(d1.path())).await;
    let h2 = start(&relay(d2.path())).await;

    // Two tasks whose results name the same video, one callback per relay.
    let posted = Instant::now();
    let body_a = runway_media("task-a", &video_url, "").to_string();
    let body_b = runway_media("task-b", &video_url, "").to_string();
    let a = accepted_at(h1.ingest_addrs[0], "/hooks/runway", &body_a).await;
    let b = accepted_at(h2.ingest_addrs[0], "/hooks/runway", &body_b).await;
    assert!(posted.elapsed() < SLOW / 2, "the 200s waited for the download");

    // The immediate subscriber does not wait; the after_archive one does.
    now_sub
        .wait_for(secs(10), "both immediate deliveries", |r| r.len() == 2)
        .await;
    assert!(posted.elapsed() < SLOW, "immediate deliveries waited for the video");
    assert_eq!(later_sub.count(), 0, "after_archive waits for the video");

    let got = later_sub
        .wait_for(secs(40), "both after_archive deliveries", |r| r.len() == 2)
        .await;
    for r in &got {
        assert!(r.at - posted >= SLOW, "delivered before the video was stored");
        assert_eq!(r.header("hookrelay-attempt"), "1", "waiting spent no attempt");
        let header = media_header(r.header("hookrelay-media"));
        assert_eq!(header.len(), 1, "{header:#?}");
        assert_eq!(header[0]["url"], video_url.as_str());
        assert_eq!(header[0]["state"], "stored");
        assert_eq!(header[0]["sha256"], sha256_hex(&video));
        assert_eq!(header[0]["size"], video.len());
    }
    assert_eq!(files.hits("/k/slow.mp4"), 1, "one download for the cluster");

    // Every relay answers the same about either event's media.
    for h in [&h1, &h2] {
        for id in [&a, &b] {
            let media = wait_final(h.admin_addr, id, secs(20)).await;
            assert_eq!(item(&media, &video_url)["sha256"], sha256_hex(&video));
        }
    }
    // The archive's listing: one URL, stored, on either relay; nothing waiting.
    for h in [&h1, &h2] {
        let (_, v) = admin(h.admin_addr, "GET", "/api/media").await;
        assert_eq!(v["recent"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["recent"][0]["state"], "stored", "{v}");
        assert_eq!(v["waiting"], serde_json::json!([]), "{v}");
    }
    tokio::time::sleep(ms(500)).await;
    assert_eq!((now_sub.count(), later_sub.count()), (2, 2), "nothing delivered twice");
    // Media retention on one relay (the sweeper's pass, with a cutoff after
    // now): the URL is forgotten and the file deleted, for the cluster.
    let stored = item(&media_of(h1.admin_addr, &a).await, &video_url)["location"]
        .as_str()
        .unwrap()
        .to_string();
    let later = hookrelay::clock::now_ms() + 1;
    assert_eq!(hookrelay::retention::sweep_media(&h2.app, later).await, (1, 1));
    assert!(!std::path::Path::new(&stored).exists(), "{stored} not deleted");
    for h in [&h1, &h2] {
        let (st, _) = admin(h.admin_addr, "GET", &format!("/api/media/{}", sha256_hex(&video))).await;
        assert_eq!(st, http::StatusCode::NOT_FOUND);
        let (_, v) = admin(h.admin_addr, "GET", "/api/media").await;
        assert_eq!(v["recent"], serde_json::json!([]), "{v}");
    }
    assert_eq!(
        hookrelay::retention::sweep_media(&h1.app, later).await,
        (0, 0),
        "nothing left"
    );
    h1.shutdown().await;
    h2.shutdown().await;
}

#[tokio::test]
async fn a_missing_file_fails_for_good_and_the_delivery_says_so() {
    let nats = NatsCluster::start(1).await;
    let files = FileServer::start(LOCAL).await;
    let gone = files.url("/k/gone.mp4"); // the file server answers 404
    let later_sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route =
        preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later_sub.url()).after_archive());
    // Without a provider key a 404 fails for good on its third try.
    let cfg = media_config(dir.path(), Media::new().allow_private().retry([ms(200), ms(200)]))
        .route(route)
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let id = accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("task-c", &gone, "").to_string(),
    )
    .await;
    let got = later_sub.wait_for(secs(30), "the delivery", |r| !r.is_empty()).await;
    let header = media_header(got[0].header("hookrelay-media"));
    assert_eq!(header[0]["state"], "failed", "{header:#?}");
    assert!(header[0]["error"].as_str().unwrap().contains("HTTP 404"), "{header:#?}");
    let media = wait_final(h.admin_addr, &id, secs(5)).await;
    assert_eq!(item(&media, &gone)["state"], "failed");
    h.shutdown().await;
}

/// One NATS node and a relay whose `runway` route archives media, with an
/// `after_archive` subscriber `later`; one callback (task `task`) naming
/// `/k/late.mp4`, which answers 404 until a test puts the file there, and
/// its first delivery saying the URL failed for good. Bind it to a name
/// before taking it apart: fields a pattern on the call itself leaves out
/// are dropped at once (NATS stopped, the store's directory removed).
struct FailedUrl {
    nats: NatsCluster,
    _dir: tempfile::TempDir,
    files: FileServer,
    url: String,
    later: Sub,
    h: hookrelay::Handle,
    id: String,
}

async fn failed_url(task: &str) -> FailedUrl {
    let nats = NatsCluster::start(1).await;
    let files = FileServer::start(LOCAL).await;
    let url = files.url("/k/late.mp4");
    let later = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    let cfg = media_config(dir.path(), Media::new().allow_private().retry([ms(200), ms(200)]))
        .route(route)
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let id = accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media(task, &url, "").to_string(),
    )
    .await;
    let got = later.wait_for(secs(30), "the first delivery", |r| r.len() == 1).await;
    assert_eq!(media_header(got[0].header("hookrelay-media"))[0]["state"], "failed");
    FailedUrl {
        nats,
        _dir: dir,
        files,
        url,
        later,
        h,
        id,
    }
}

/// An operator's retry of a failed URL in cluster mode, a minute or two
/// after its first work message (within JetStream's de-duplication window,
/// which dropped a second message under the same id): the URL is fetched
/// again, and a replay made meanwhile waits for it and carries the file.
#[tokio::test]
async fn a_failed_url_is_archived_again_on_request() {
    let failed = failed_url("task-r").await;
    let FailedUrl {
        files,
        later: later_sub,
        h,
        id,
        ..
    } = failed;
    files.bytes("/k/late.mp4", b"the late video", "video/mp4");
    let (st, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/media/retry")).await;
    assert_eq!(st, http::StatusCode::OK, "{v}");
    assert_eq!(v["retried"], 1, "{v}");
    let (st, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/replay")).await;
    assert_eq!(st, http::StatusCode::OK, "{v}");
    let got = later_sub.wait_for(secs(30), "the replay", |r| r.len() == 2).await;
    let header = media_header(got[1].header("hookrelay-media"));
    assert_eq!(header[0]["state"], "stored", "{header:#?}");
    assert_eq!(header[0]["sha256"], sha256_hex(b"the late video"));
    let (_, v) = admin(h.admin_addr, "POST", &format!("/api/events/{id}/media/retry")).await;
    assert_eq!(v["retried"], 0, "a stored URL is not fetched again: {v}");
    assert_eq!(files.hits("/k/late.mp4"), 4);
    h.shutdown().await;
}

/// Retry messages as a relay leaves them: one for a failure the row no
/// longer records (the loser of two retries at once, its winner's round
/// over) starts no second round; one for the failure it records, whose
/// relay died before making the row pending, is taken up by the archiver
/// (the retry is done, not lost). Before, any message newer than the
/// row's was taken up, whatever failure it was for.
#[tokio::test]
async fn a_retry_message_counts_for_the_failure_it_names() {
    let failed = failed_url("task-m").await;
    let FailedUrl {
        nats,
        files,
        url,
        h,
        id,
        ..
    } = failed;
    files.bytes("/k/late.mp4", b"the late video", "video/mp4");

    let js = async_nats::jetstream::new(async_nats::connect(nats.urls()[0].as_str()).await.unwrap());
    let hash = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(url.as_bytes())[..16])
    };
    let kv = js.get_key_value("hr_media").await.unwrap();
    let row: Value = serde_json::from_slice(&kv.get(format!("u.{hash}")).await.unwrap().unwrap()).unwrap();
    let failed_at = row["at_ms"].as_u64().unwrap();
    let retry = |of: u64| serde_json::json!({"url": url, "route": "runway", "retry_of": of}).to_string();
    js.publish(format!("hr.md.{hash}"), retry(failed_at - 1).into())
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(
        files.hits("/k/late.mp4"),
        3,
        "an earlier failure's retry starts nothing"
    );
    assert_eq!(item(&media_of(h.admin_addr, &id).await, &url)["state"], "failed");
    js.publish(format!("hr.md.{hash}"), retry(failed_at).into())
        .await
        .unwrap()
        .await
        .unwrap();
    let media = admin_until(h.admin_addr, &format!("/api/media?event={id}"), secs(10), |v| {
        v["media"][0]["state"] == "stored"
    })
    .await;
    assert_eq!(media["media"][0]["state"], "stored", "{media}");
    h.shutdown().await;
}

/// A failed URL named by a later callback is tried again from the start, as
/// on a single host; the cluster store kept it failed, so the later
/// callback's `after_archive` delivery said `failed` for a file that was
/// there by then.
#[tokio::test]
async fn a_failed_url_named_by_a_later_callback_is_tried_again() {
    let failed = failed_url("task-1").await;
    let FailedUrl {
        files,
        url,
        later: later_sub,
        h,
        ..
    } = failed;
    files.bytes("/k/late.mp4", b"the late video", "video/mp4");
    // The provider sending the first callback again (a duplicate) is no new
    // callback: the URL is not tried again for it.
    let first = runway_media("task-1", &url, "").to_string();
    let (st, v) = callback_at(h.ingest_addrs[0], "/hooks/runway", &first).await;
    assert_eq!(
        (st, &v["duplicate"]),
        (http::StatusCode::OK, &serde_json::json!(true)),
        "{v}"
    );
    tokio::time::sleep(secs(1)).await;
    assert_eq!(files.hits("/k/late.mp4"), 3, "not fetched for a duplicate");
    accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("task-2", &url, "").to_string(),
    )
    .await;
    let got = later_sub
        .wait_for(secs(30), "the second delivery", |r| r.len() == 2)
        .await;
    let header = media_header(got[1].header("hookrelay-media"));
    assert_eq!(header[0]["state"], "stored", "{header:#?}");
    h.shutdown().await;
}

/// A stored URL named again by a later callback starts its retention again
/// (as on a single host): media retention with a cutoff between the two
/// callbacks keeps the URL and its file, so the later event's deliveries
/// (and its retries and replays) still name it. The cluster store left the
/// row's time at the first archive: the row and the file went, and the
/// later event's media said nothing of its video.
#[tokio::test]
async fn a_stored_url_named_again_starts_its_retention_again() {
    let nats = NatsCluster::start(1).await;
    let files = FileServer::start(LOCAL).await;
    let video = b"the shared video".to_vec();
    let video_url = files.bytes("/k/again.mp4", &video, "video/mp4");
    let dir = tempfile::tempdir().unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private())
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let first = accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("task-1", &video_url, "").to_string(),
    )
    .await;
    let media = wait_final(h.admin_addr, &first, secs(20)).await;
    assert_eq!(item(&media, &video_url)["state"], "stored");
    let location = item(&media, &video_url)["location"].as_str().unwrap().to_string();
    tokio::time::sleep(ms(1500)).await;
    let between = hookrelay::clock::now_ms() - 500;
    let second = accepted_at(
        h.ingest_addrs[0],
        "/hooks/runway",
        &runway_media("task-2", &video_url, "").to_string(),
    )
    .await;
    let media = wait_final(h.admin_addr, &second, secs(5)).await;
    assert_eq!(item(&media, &video_url)["state"], "stored");

    assert_eq!(
        hookrelay::retention::sweep_media(&h.app, between).await,
        (0, 0),
        "a URL named again after the cutoff is not expired"
    );
    assert!(std::path::Path::new(&location).exists(), "{location} deleted");
    let media = media_of(h.admin_addr, &second).await;
    assert_eq!(media.len(), 1, "the later event's media lost its video: {media:#?}");
    assert_eq!(files.hits("/k/again.mp4"), 1, "downloaded once");
    h.shutdown().await;
}

/// A stored file asked for while NATS is away is a `503` to retry (as every
/// other admin answer the store cannot give), not a `500`.
#[tokio::test]
async fn a_file_asked_for_while_nats_is_away_is_a_503() {
    let mut nats = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private())
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", "http://127.0.0.1:9/")))
        .nats(nats.urls(), 1);
    let h = start(&cfg).await;
    let path = format!("/api/media/{}", "0".repeat(64));
    let (st, _) = admin(h.admin_addr, "GET", &path).await;
    assert_eq!(st, http::StatusCode::NOT_FOUND);
    nats.kill9(0);
    let (st, v) = admin(h.admin_addr, "GET", &path).await;
    assert_eq!(st, http::StatusCode::SERVICE_UNAVAILABLE, "{v}");
    h.shutdown().await;
}
