//! Subscribers choose: an immediate subscriber gets the callback at once,
//! while a slow download is still running (and the provider got its 200 at
//! once too); an `after_archive` subscriber gets it only once every media URL
//! is stored or failed for good, with `hookrelay-media` listing each, the
//! provider's body byte for byte, and no attempt spent waiting — pushed, or
//! pulled through `hookrelay forward` (the same message, the same header).

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::files::{sha256_hex, FileServer};
use common::*;
use serde_json::{json, Value};

/// How long the slow file takes to finish: the "at once" checks below have
/// to fit before it, on a loaded machine too (2 s left them 0.5 to 1 s).
const SLOW: Duration = Duration::from_secs(4);
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PULL_TOKEN: &str = "library-pull-token";

fn media_header(value: &str) -> Vec<Value> {
    serde_json::from_str(value).expect("hookrelay-media is a JSON array")
}

/// A Runway route archiving through its preset, with these subscribers.
fn runway_route(subscribers: impl IntoIterator<Item = Subscriber>) -> common::Route {
    subscribers
        .into_iter()
        .fold(preset_route("runway", "kie-runway"), |r, s| r.subscriber(s))
}

/// A file server with a video that takes `SLOW` to finish and a cover; the
/// video's bytes and both URLs.
async fn slow_video(s: &FileServer) -> (Vec<u8>, String, String) {
    let (video_bytes, video_url) = s.slow_video("/k/slow.mp4", SLOW);
    let cover_url = s.bytes("/m/cover.png", b"cover", "image/png");
    (video_bytes, video_url, cover_url)
}

/// The header of a delivery made once the slow video and the cover are stored.
fn assert_both_stored(header: &[Value], video_url: &str, video_bytes: &[u8], cover_url: &str) {
    assert_eq!(header.len(), 2, "{header:#?}");
    assert_eq!(header[0]["url"], video_url, "the signed URL as the provider sent it");
    assert_eq!(header[0]["state"], "stored");
    assert_eq!(header[0]["sha256"], sha256_hex(video_bytes));
    assert_eq!(header[0]["size"], video_bytes.len());
    assert_eq!(header[0]["content_type"], "video/mp4");
    assert!(header[0]["location"]
        .as_str()
        .unwrap()
        .ends_with(&sha256_hex(video_bytes)));
    assert_eq!(header[0]["error"], Value::Null);
    assert_eq!(header[1]["url"], cover_url);
    assert_eq!(header[1]["sha256"], sha256_hex(b"cover"));
}

/// While the video downloads: `name`'s delivery is pending, waiting for the
/// media (parked by its lane soon after the callback), with no attempt made.
async fn assert_waiting(h: &hookrelay::Handle, id: &str, name: &str, video_url: &str) {
    // Seen before the video is stored (it is pending, asserted below).
    let view = admin_until(h.admin_addr, &format!("/api/events/{id}"), SLOW / 2, |v| {
        row(&v["subscribers"], "name", name)["waiting_for_media"] == true
    })
    .await;
    let media = media_of(h.admin_addr, id).await;
    assert_eq!(item(&media, video_url)["state"], "pending");
    let waiting = row(&view["subscribers"], "name", name);
    assert_eq!(waiting["state"], "pending", "{view}");
    assert_eq!(waiting["waiting_for_media"], true, "{view}");
    assert_eq!(waiting["attempts_total"], 0, "{view}");
}

#[tokio::test]
async fn after_archive_waits_for_the_files_and_an_immediate_subscriber_does_not() {
    let s = FileServer::start(LOCAL).await;
    let (video_bytes, video_url, cover_url) = slow_video(&s).await;
    let now_sub = Sub::ok().await;
    let later_sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = runway_route([
        Subscriber::new("now", now_sub.url()),
        Subscriber::new("later", later_sub.url()).after_archive(),
    ]);
    let h = start(&media_config(dir.path(), Media::new().allow_private()).route(route)).await;

    let body = runway_media("ee603959", &video_url, &cover_url).to_string();
    let posted = Instant::now();
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body).await;
    assert!(posted.elapsed() < Duration::from_secs(1), "the 200 waited for nothing");

    // The immediate subscriber is served while the video still downloads.
    let got = now_sub
        .wait_for(Duration::from_secs(10), "the immediate delivery", |r| !r.is_empty())
        .await;
    assert!(
        got[0].at - posted < SLOW / 2,
        "immediate delivery took {:?}",
        got[0].at - posted
    );
    assert_eq!(
        got[0].header("hookrelay-media"),
        "",
        "only after_archive subscribers get the header"
    );
    assert_waiting(&h, &id, "later", &video_url).await;
    assert_eq!(later_sub.count(), 0, "after_archive waits for the video");

    // The after_archive subscriber gets it once both files are stored.
    let got = later_sub
        .wait_for(Duration::from_secs(30), "the after_archive delivery", |r| !r.is_empty())
        .await;
    let r = &got[0];
    assert!(
        r.at - posted >= SLOW,
        "delivered {:?} after the callback, before the video was stored",
        r.at - posted
    );
    assert_eq!(&r.body[..], body.as_bytes(), "the provider's body, byte for byte");
    assert_eq!(r.header("hookrelay-attempt"), "1", "waiting spent no attempt");
    assert_both_stored(
        &media_header(r.header("hookrelay-media")),
        &video_url,
        &video_bytes,
        &cover_url,
    );
    // Exactly one delivery each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((now_sub.count(), later_sub.count()), (1, 1));
    h.shutdown().await;
}

#[tokio::test]
async fn after_archive_is_told_about_failed_files_and_events_without_media() {
    let s = FileServer::start(LOCAL).await;
    let missing = s.url("/k/gone.mp4"); // the file server answers 404
    let later_sub = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = runway_route([Subscriber::new("later", later_sub.url()).after_archive()]);
    let media = Media::new().allow_private().retry([ms(200), ms(200)]);
    let h = start(&media_config(dir.path(), media).route(route)).await;
    let gone = json!({"code": 200, "msg": "ok", "data": {"task_id": "a", "video_url": missing, "image_url": ""}});
    let failed_task =
        json!({"code": 400, "msg": "moderation", "data": {"task_id": "b", "video_url": "", "image_url": ""}});
    accepted_at(h.ingest_addrs[0], "/hooks/runway", &gone.to_string()).await;
    accepted_at(h.ingest_addrs[0], "/hooks/runway", &failed_task.to_string()).await;
    let got = later_sub
        .wait_for(Duration::from_secs(30), "two deliveries", |r| r.len() == 2)
        .await;
    let by_task = |t: &str| {
        got.iter()
            .find(|r| String::from_utf8_lossy(&r.body).contains(&format!("\"task_id\":\"{t}\"")))
            .unwrap()
    };
    let header = media_header(by_task("a").header("hookrelay-media"));
    assert_eq!(header.len(), 1);
    assert_eq!(header[0]["state"], "failed");
    assert_eq!(header[0]["sha256"], Value::Null);
    assert!(header[0]["error"].as_str().unwrap().contains("HTTP 404"), "{header:#?}");
    assert_eq!(
        media_header(by_task("b").header("hookrelay-media")),
        Vec::<Value>::new(),
        "no media: delivered at once with []"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_subscriber_with_after_archive_gets_the_message_once_the_files_are_stored() {
    let s = FileServer::start(LOCAL).await;
    let (video_bytes, video_url, cover_url) = slow_video(&s).await;
    let now_sub = Sub::ok().await;
    let local = Local::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = runway_route([
        Subscriber::new("now", now_sub.url()),
        Subscriber::pull("library", PULL_TOKEN).after_archive(),
    ]);
    let h = start(&media_config(dir.path(), Media::new().allow_private()).route(route)).await;
    let _fwd = Forwarder::start(
        dir.path(),
        &pull_url(h.ingest_addrs[0], "library"),
        &local.url(),
        PULL_TOKEN,
        &[],
    );
    // The forwarder's long-poll is waiting before the callback arrives.
    let subs = admin_until(h.admin_addr, "/api/subscribers", Duration::from_secs(10), |v| {
        row(&v["subscribers"], "name", "library")["state"] == "pulling"
    })
    .await;
    assert_eq!(
        row(&subs["subscribers"], "name", "library")["state"],
        "pulling",
        "{subs}"
    );

    let body = runway_media("ee603959", &video_url, &cover_url).to_string();
    let posted = Instant::now();
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body).await;
    now_sub
        .wait_for(Duration::from_secs(10), "the immediate delivery", |r| !r.is_empty())
        .await;
    // The forwarder is not handed the message yet.
    assert!(
        posted.elapsed() < SLOW / 2,
        "the immediate delivery took too long to compare"
    );
    assert_waiting(&h, &id, "library", &video_url).await;
    assert!(local.all().is_empty(), "after_archive waits for the video");

    let got = local
        .wait_for(Duration::from_secs(30), "the pulled delivery", |g| !g.is_empty())
        .await;
    let g = &got[0];
    assert!(
        g.started - posted >= SLOW,
        "handed out {:?} after the callback, before the video was stored",
        g.started - posted
    );
    assert_eq!(g.id, id);
    assert_eq!(&g.body[..], body.as_bytes(), "the provider's body, byte for byte");
    assert_eq!(g.attempt, 1, "waiting spent no hand-out");
    let header = g.headers["hookrelay-media"].to_str().unwrap();
    assert_both_stored(&media_header(header), &video_url, &video_bytes, &cover_url);

    // Acknowledged once; the wait was not counted as a delivery outcome.
    let v = admin_until(
        h.admin_addr,
        &format!("/api/events/{id}"),
        Duration::from_secs(10),
        |v| row(&v["subscribers"], "name", "library")["state"] == "delivered",
    )
    .await;
    let library = row(&v["subscribers"], "name", "library");
    assert_eq!(library["state"], "delivered", "{v}");
    assert_eq!(library["attempts_total"], 1, "{v}");
    let m = metrics(h.admin_addr).await;
    assert_eq!(
        sample(
            &m,
            "hookrelay_deliveries_total{subscriber=\"library\",outcome=\"delivered\"}"
        ),
        1.0
    );
    assert!(
        !m.iter()
            .any(|(k, _)| k.contains("\"library\"") && k.contains("skipped")),
        "a deferral is no outcome: {m:?}"
    );
    assert_eq!(local.all().len(), 1);
    h.shutdown().await;
}

/// `hookrelay-media` promises one item per archived URL ("any URL or error
/// text makes a valid header"). A media URL holding a DEL
/// (0x7F: valid in a JSON string, accepted by the URL parser, which
/// percent-encodes it) is not escaped by serde_json, so the header value
/// was refused by `HeaderValue::from_str` and the relay sent `[]` — "this
/// callback named no media" — although both files were archived. From
/// review 18, finding 4.
#[tokio::test]
async fn a_del_character_in_one_media_url_does_not_blank_the_media_header() {
    let s = FileServer::start(LOCAL).await;
    let video_url = s.bytes("/k/video.mp4", b"video-bytes", "video/mp4");
    let cover_url = format!("{}?v=\u{7f}", s.bytes("/m/cover.png", b"cover", "image/png"));
    let later = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let route = preset_route("runway", "kie-runway").subscriber(Subscriber::new("later", later.url()).after_archive());
    let h = start(&media_config(dir.path(), Media::new().allow_private()).route(route)).await;
    let body = runway_media("del-in-url", &video_url, &cover_url).to_string();
    accepted_at(h.ingest_addrs[0], "/hooks/runway", &body).await;
    let got = later
        .wait_for(Duration::from_secs(30), "the after_archive delivery", |r| !r.is_empty())
        .await;
    let header: Vec<Value> = serde_json::from_str(got[0].header("hookrelay-media")).unwrap();
    assert_eq!(
        header.len(),
        2,
        "both URLs were archived, the header must list them; got {:?}",
        got[0].header("hookrelay-media")
    );
    assert_eq!(header[0]["sha256"], sha256_hex(b"video-bytes"));
    h.shutdown().await;
}

/// `media.retention` shorter than the life of the events whose files it
/// keeps (`store.retention` plus twice the longest retry schedule of a
/// subscriber of an archiving route) is refused, naming the key: media
/// retention removed a stored file and its URL row while an `after_archive`
/// delivery of its event was still retrying, and that delivery then said the
/// event had no media (`hookrelay-media: []`). From review 36, finding 3.
#[test]
fn a_media_retention_shorter_than_its_events_life_is_raised_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |media: Media| {
        media_config(dir.path(), media).retention(secs(3600)).route(
            preset_route("runway", "kie-runway").subscriber(
                Subscriber::new("late", DOWN)
                    .after_archive()
                    .retry([secs(80)])
                    .max_retry_after(secs(60)),
            ),
        )
    };
    let short = cfg(Media::new().allow_private().retention(secs(60))).write();
    let (ok, out, err) = cli(&["check-config", "--config", short.to_str().unwrap()]);
    let said = format!("{out}\n{err}");
    assert!(
        ok && said.contains("media.retention")
            && said.contains("store.retention")
            && said.contains("files are kept 1h 3m"),
        "a media retention shorter than its events' life is taken without a word, or refused:\n{said}"
    );
    // 1 h + 2 × 96 s (80 s + 20 % jitter) is enough.
    let enough = cfg(Media::new().allow_private().retention(secs(3600 + 200))).write();
    let (ok, out, err) = cli(&["check-config", "--config", enough.to_str().unwrap()]);
    assert!(ok && !format!("{out}{err}").contains("media.retention"), "{out}\n{err}");
}

/// The floor counts a subscriber's `Retry-After`: a `429`/`503` with one
/// lengthens each delay up to `max_retry_after` (the step still counts), so
/// a delivery (and a replay of its dead letter) lives that much longer than
/// the schedule's delays say. A `media.retention` that only covered the
/// delays removed the file while a retry still named it, and the delivery
/// said the event had no media.
#[test]
fn the_media_retention_floor_counts_the_longest_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private().retention(secs(3600 + 200)))
        .retention(secs(3600))
        .route(
            preset_route("runway", "kie-runway").subscriber(
                Subscriber::new("late", DOWN)
                    .after_archive()
                    .retry([secs(80)])
                    .max_retry_after(secs(1800)),
            ),
        )
        .write();
    let (ok, out, err) = cli(&["check-config", "--config", cfg.to_str().unwrap()]);
    let said = format!("{out}\n{err}");
    // 1 h + 2 × 36 min (the 80 s step lengthened to the Retry-After cap,
    // 30 min, spread up to 20 % past it).
    assert!(
        ok && said.contains("media.retention") && said.contains("files are kept 2h 12m 1s"),
        "a media retention shorter than a delivery answered with Retry-After lives is taken as enough:\n{said}"
    );
}

/// A second callback naming the URL of a download in flight (another task,
/// same result file): no second download, and both events' `after_archive`
/// deliveries name the stored file.
#[tokio::test]
async fn a_url_named_again_while_it_downloads_is_fetched_once_for_both() {
    let s = FileServer::start(LOCAL).await;
    let (video_bytes, video_url, cover_url) = slow_video(&s).await;
    let later = Sub::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private()).route(runway_route([Subscriber::new(
        "later",
        later.url(),
    )
    .after_archive()]));
    let h = start(&cfg).await;
    let body = |task: &str| runway_media(task, &video_url, &cover_url).to_string();
    let first = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body("dup-1")).await;
    assert_waiting(&h, &first, "later", &video_url).await;
    let t0 = Instant::now();
    while s.hits("/k/slow.mp4") == 0 && t0.elapsed() < SLOW / 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.hits("/k/slow.mp4"), 1, "the video is downloading");
    let second = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body("dup-2")).await;
    assert_ne!(first, second);
    let got = later
        .wait_for(SLOW * 5, "both after_archive deliveries", |r| r.len() >= 2)
        .await;
    for d in &got[..2] {
        assert_both_stored(
            &media_header(d.header("hookrelay-media")),
            &video_url,
            &video_bytes,
            &cover_url,
        );
    }
    assert_eq!(s.hits("/k/slow.mp4"), 1, "one download for both callbacks");
    assert_eq!(s.hits("/m/cover.png"), 1);
    h.shutdown().await;
}
