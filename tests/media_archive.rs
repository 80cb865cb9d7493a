//! The media archive in the running daemon, against a loopback file server:
//! a Runway callback's video and cover stored (local directory and S3 on
//! moto) with the right bytes and SHA-256, served back by the admin API;
//! Veo's URL array and the market's `resultJson` string followed; one
//! download for a URL named by two callbacks; the CLI, check-config and
//! metrics show it; media retention deletes the files.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::files::{sha256_hex, FileServer};
use common::*;
use serde_json::json;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(30);

fn video() -> Vec<u8> {
    (0..400_000u32)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect()
}

/// GET on the admin API: status, headers, raw body (a stored file's bytes).
async fn admin_get(h: &hookrelay::Handle, path: &str) -> (http::StatusCode, http::HeaderMap, Bytes) {
    request(h.admin_addr, None, "GET", path, &[], Bytes::new()).await
}

/// Post a Runway callback naming a video and a cover, wait for both, check
/// bytes, digests and content types through the admin API; the media items.
async fn runway_round_trip(h: &hookrelay::Handle, s: &FileServer) -> Vec<serde_json::Value> {
    let video = video();
    let cover = b"\x89PNG\r\n\x1a\n a cover".to_vec();
    let video_url = s.bytes("/k/ee603959.mp4", &video, "video/mp4");
    let cover_url = s.bytes("/m/ee603959.png", &cover, "image/png");
    let body = json!({"code": 200, "msg": "All generated successfully.", "data": {
        "task_id": "ee603959", "video_id": "485da89c", "video_url": video_url, "image_url": cover_url}});
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    assert_eq!(media.len(), 2, "{media:#?}");
    for (url, bytes, ct) in [(&video_url, &video, "video/mp4"), (&cover_url, &cover, "image/png")] {
        let m = item(&media, url);
        assert_eq!(m["state"], "stored", "{m}");
        assert_eq!(m["sha256"], sha256_hex(bytes));
        assert_eq!(m["size"], bytes.len());
        assert_eq!(m["content_type"], ct);
        let (status, headers, got) = admin_get(h, &format!("/api/media/{}", sha256_hex(bytes))).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], ct);
        // Downloaded, never rendered on the admin origin.
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment"),
            "{headers:?}"
        );
        assert!(
            headers["content-security-policy"].to_str().unwrap().contains("sandbox"),
            "{headers:?}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(&got[..], &bytes[..], "served bytes");
    }
    // The event view carries the media too.
    let (_, v) = admin(h.admin_addr, "GET", &format!("/api/events/{id}")).await;
    assert_eq!(v["media"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(s.hits("/k/ee603959.mp4"), 1);
    media
}

/// The id of the (only) event in the daemon.
async fn media_event(h: &hookrelay::Handle) -> String {
    let (_, v) = admin(h.admin_addr, "GET", "/api/events").await;
    v["events"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn runway_video_and_cover_are_stored_in_the_local_directory() {
    let s = FileServer::start(LOCAL).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private())
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)));
    let h = start(&cfg).await;
    let media = runway_round_trip(&h, &s).await;
    // Content-addressed under the store's directory, complete on disk.
    let root = std::fs::canonicalize(dir.path().join("data/media")).unwrap();
    for m in &media {
        let sha = m["sha256"].as_str().unwrap();
        let path = root.join(&sha[..2]).join(sha);
        assert_eq!(m["location"], path.display().to_string());
        assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), sha);
    }
    assert_eq!(
        std::fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "no partial files"
    );
    // Unknown and malformed digests.
    let (st, _, _) = admin_get(&h, &format!("/api/media/{}", "0".repeat(64))).await;
    assert_eq!(st, 404);
    let (st, _, _) = admin_get(&h, "/api/media/..%2f..%2fetc%2fpasswd").await;
    assert_eq!(st, 400);
    // Metrics and the CLI.
    let m = metrics(h.admin_addr).await;
    assert_eq!(
        sample(&m, "hookrelay_media_files_total{outcome=\"stored\"}"),
        2.0,
        "{m:?}"
    );
    let bytes = (video().len() + b"\x89PNG\r\n\x1a\n a cover".len()) as f64;
    assert_eq!(sample(&m, "hookrelay_media_bytes_total"), bytes);
    assert_eq!(sample(&m, "hookrelay_media_queue_depth"), 0.0);
    let admin_url = format!("http://{}", h.admin_addr);
    let base = ["--admin", admin_url.as_str(), "--token", "x"]
        .map(String::from)
        .to_vec();
    let (ok, out, err) = cli_async([base.clone(), vec!["media".into()]].concat()).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("stored") && out.contains(media[0]["sha256"].as_str().unwrap()),
        "{out}"
    );
    let id = media_event(&h).await;
    let (ok, out, err) = cli_async([base.clone(), vec!["event".into(), id.clone()]].concat()).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("media:") && out.contains(media[1]["sha256"].as_str().unwrap()),
        "{out}"
    );
    let (ok, out, err) = cli_async([base, vec!["media".into(), id]].concat()).await;
    assert!(ok, "{err}");
    assert_eq!(out.matches("stored").count(), 2, "{out}");
    // Media retention (the sweeper's pass, with a cutoff after now) deletes the files.
    let later = hookrelay::clock::now_ms() + 1;
    assert_eq!(hookrelay::retention::sweep_media(&h.app, later).await, (2, 2));
    for m in &media {
        assert!(!Path::new(m["location"].as_str().unwrap()).exists());
        let (st, _, _) = admin_get(&h, &format!("/api/media/{}", m["sha256"].as_str().unwrap())).await;
        assert_eq!(st, 404);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn runway_video_and_cover_are_stored_in_s3() {
    let moto = Moto::start().await;
    moto.create_bucket("media").await;
    let s = FileServer::start(LOCAL).await;
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("HOOKRELAY_TEST_MOTO_SECRET", "moto-secret");
    let bucket = moto
        .store("media", "AKIATEST", Secret::env("HOOKRELAY_TEST_MOTO_SECRET"))
        .prefix("hookrelay/");
    let cfg = media_config(dir.path(), Media::new().allow_private().s3(bucket))
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)));
    let h = start(&cfg).await;
    let media = runway_round_trip(&h, &s).await;
    for m in &media {
        let sha = m["sha256"].as_str().unwrap();
        assert_eq!(m["location"], format!("s3://media/hookrelay/{}/{sha}", &sha[..2]));
    }
    h.shutdown().await;
}

/// A "video" its server calls `text/javascript` and a "cover" it calls
/// `text/css`: the admin origin must not serve them as script or style
/// sheet (the console's `script-src 'self'` / `style-src 'self'` would trust
/// them, and `nosniff` stops only other types), so they are downloads of
/// `application/octet-stream`; the media list still says what the server
/// said, and an ordinary type is served by its essence alone. So is a list
/// of types (a browser takes the last one: it was served as it came), also
/// one hidden behind an escaped quote.
#[tokio::test]
async fn a_stored_script_or_style_sheet_is_not_served_as_one_on_the_admin_origin() {
    let s = FileServer::start(LOCAL).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private())
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)));
    let h = start(&cfg).await;
    let script = b"window.pwned = document.cookie;".to_vec();
    let style = b"input[value^=a] { background: url(/x) }".to_vec();
    let script_url = s.bytes("/k/hostile.mp4", &script, "Text/JavaScript; charset=utf-8");
    let style_url = s.bytes("/m/hostile.png", &style, "text/css");
    let body = json!({"code": 200, "msg": "ok", "data": {
        "task_id": "hostile-1", "video_id": "v", "video_url": script_url, "image_url": style_url}});
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
    let media = wait_final(h.admin_addr, &id, WAIT).await;
    // A list of types: a browser takes the last one (the Fetch standard's
    // MIME type extraction), so this is a script too.
    let listed = b"window.listed = 1;".to_vec();
    let listed_type = "text/plain, text/javascript";
    let listed_url = s.bytes("/k/listed.mp4", &listed, listed_type);
    let body = json!({"code": 200, "msg": "ok", "data": {
        "task_id": "hostile-2", "video_id": "v2", "video_url": listed_url, "image_url": ""}});
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
    let listed_media = wait_final(h.admin_addr, &id, WAIT).await;
    for (media, url, bytes, said) in [
        (&media, &script_url, &script, "Text/JavaScript; charset=utf-8"),
        (&media, &style_url, &style, "text/css"),
        (&listed_media, &listed_url, &listed, listed_type),
    ] {
        let m = item(media, url);
        assert_eq!(m["state"], "stored", "{m}");
        assert_eq!(m["content_type"], said, "the list says what the server said");
        let (status, headers, got) = admin_get(&h, &format!("/api/media/{}", sha256_hex(bytes))).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["content-type"], "application/octet-stream",
            "{said}: {headers:?}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(&got[..], &bytes[..]);
    }
    // A list hidden behind an escaped quote (a browser reads `\"` inside a
    // quoted value and takes the last type): served with its first type
    // alone (console review, stop 79: it was served as it came).
    let escaped = b"window.escaped = 1;".to_vec();
    let escaped_type = r#"text/plain; a="\"", text/javascript"#;
    let escaped_url = s.bytes("/k/escaped.mp4", &escaped, escaped_type);
    let body = json!({"code": 200, "msg": "ok", "data": {
        "task_id": "hostile-3", "video_id": "v3", "video_url": escaped_url, "image_url": ""}});
    let id = accepted_at(h.ingest_addrs[0], "/hooks/runway", &body.to_string()).await;
    let escaped_media = wait_final(h.admin_addr, &id, WAIT).await;
    assert_eq!(
        item(&escaped_media, &escaped_url)["state"],
        "stored",
        "{escaped_media:?}"
    );
    let (status, headers, _) = admin_get(&h, &format!("/api/media/{}", sha256_hex(&escaped))).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/plain", "{headers:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn veo_arrays_and_market_result_json_are_followed_and_a_shared_url_is_fetched_once() {
    let s = FileServer::start(LOCAL).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = media_config(dir.path(), Media::new().allow_private())
        .route(preset_route("veo", "kie-veo").subscriber(Subscriber::new("v", DOWN)))
        .route(preset_route("market", "kie-market").subscriber(Subscriber::new("m", DOWN)));
    let h = start(&cfg).await;
    let u: Vec<String> = (0..4)
        .map(|i| s.bytes(&format!("/r/{i}.mp4"), format!("file {i}").as_bytes(), "video/mp4"))
        .collect();
    let veo = json!({"code": 200, "msg": "Veo3 video generated successfully.", "data": {
        "taskId": "veo-1", "info": {"resultUrls": [u[0], u[1]], "originUrls": [u[2]], "resolution": "1080p"},
        "promptJson": "{\"prompt\":\"a cat\"}", "fallbackFlag": false}});
    let market = json!({"code": 200, "msg": "Playground task completed successfully.", "data": {
        "taskId": "m-1", "state": "success", "model": "kling",
        "resultJson": json!({"resultUrls": [u[3], u[0]]}).to_string(), "failCode": null, "failMsg": null}});
    let veo_id = accepted_at(h.ingest_addrs[0], "/hooks/veo", &veo.to_string()).await;
    let market_id = accepted_at(h.ingest_addrs[0], "/hooks/market", &market.to_string()).await;
    let veo_media = wait_final(h.admin_addr, &veo_id, WAIT).await;
    let market_media = wait_final(h.admin_addr, &market_id, WAIT).await;
    let urls = |m: &[serde_json::Value]| {
        m.iter()
            .map(|i| i["url"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(urls(&veo_media), [u[0].clone(), u[1].clone(), u[2].clone()]);
    assert_eq!(urls(&market_media), [u[3].clone(), u[0].clone()]);
    for (i, url) in u.iter().enumerate() {
        let m = item(if i == 3 { &market_media } else { &veo_media }, url);
        assert_eq!(m["state"], "stored");
        assert_eq!(m["sha256"], sha256_hex(format!("file {i}").as_bytes()));
    }
    // u[0] is named by both callbacks: one download.
    assert_eq!(s.hits("/r/0.mp4"), 1);
    assert_eq!(s.total_hits(), 4);
    // A failed Veo task names no URL: nothing to archive, an empty list.
    let failed = json!({"code": 400, "msg": "content policy", "data": {"taskId": "veo-2", "info": null}});
    let id = accepted_at(h.ingest_addrs[0], "/hooks/veo", &failed.to_string()).await;
    assert!(media_of(h.admin_addr, &id).await.is_empty());
    h.shutdown().await;
}

#[test]
fn check_config_lists_what_a_preset_set() {
    let dir = tempfile::tempdir().unwrap();
    let suno = common::Route::new("suno", "/hooks/suno")
        .allow_anyone()
        .preset("kie-suno")
        .media(["/data/data/*/audio_url"])
        .subscriber(Subscriber::new("s", DOWN).after_archive());
    let path = media_config(dir.path(), Media::new()).route(suno).write();
    let (ok, out, err) = cli(&["check-config", "--config", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("route \"suno\":"), "{out}");
    assert!(out.contains("preset \"kie-suno\": Suno music"), "{out}");
    assert!(
        out.contains(
            r#"dedupe_key = task id + outcome (success or failure, whatever the failure code; before the end, the stage at "/data/callbackType", with "/data/progress" when it has one)  (from the preset)"#
        ),
        "{out}"
    );
    assert!(out.contains("media: set by the route"), "{out}");
    assert!(out.contains("media store: directory"), "{out}");
}

/// A media directory on the store's disk whose `media.min_free` leaves too
/// little room above `store.min_free` has its floor raised: `check-config`
/// says so, with the floor used (before, only the daemon's log did).
#[test]
fn check_config_names_a_raised_media_floor() {
    let dir = tempfile::tempdir().unwrap();
    let suno = common::Route::new("suno", "/hooks/suno")
        .allow_anyone()
        .preset("kie-suno")
        .subscriber(Subscriber::new("s", DOWN).after_archive());
    let media = Media::new().min_free(1 << 20).concurrency(2);
    let path = media_config(dir.path(), media).min_free(64 << 20).route(suno).write();
    let (ok, _, err) = cli(&["check-config", "--config", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    let floor = (64u64 << 20) + 2 * (10 << 20);
    assert!(
        err.contains("warning: media.min_free (1048576 bytes)") && err.contains(&format!("stop at {floor} bytes free")),
        "{err}"
    );
}

/// The daemon warns about a raised media floor where `check-config` does:
/// when a route archives media. It warned at every start of a relay that
/// archives nothing, which `check-config` did not say (README review, stop
/// 64).
#[tokio::test]
async fn the_daemon_names_a_raised_media_floor_only_when_media_is_archived() {
    for archives in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = media_config(dir.path(), Media::new().min_free(1 << 20).concurrency(2)).min_free(64 << 20);
        if archives {
            cfg = cfg.route(
                common::Route::new("suno", "/hooks/suno")
                    .allow_anyone()
                    .preset("kie-suno")
                    .subscriber(Subscriber::new("s", DOWN).after_archive()),
            );
        }
        let bin = Bin::start(&cfg.write(), &[]);
        log_until(|| bin.log_text(), "hookrelay ready", secs(10)).await;
        let log = bin.log_text();
        assert_eq!(
            log.contains("media.min_free (1048576 bytes)"),
            archives,
            "archives: {archives}\n{log}"
        );
    }
}
