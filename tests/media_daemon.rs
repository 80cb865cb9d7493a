//! The media archive in the real binary: a 1 GiB file archived while the
//! daemon's peak resident memory (VmHWM) stays under 64 MiB; a `kill -9` in
//! the middle of a download, and the file still archived after the restart
//! (no partial file left); signed URLs' query strings never in the log.

#[path = "common/archive.rs"]
mod archive;
mod common;
#[path = "common/files.rs"]
mod files;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Bin;
use files::{generated_sha256, sha256_hex, FileServer, Route};
use serde_json::json;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const GIB: u64 = 1 << 30;
/// The bound issue 11 sets for the daemon archiving a large file.
const MAX_HWM_KIB: u64 = 64 * 1024;

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn daemon_config(dir: &Path) -> std::path::PathBuf {
    let subs = "[[routes.subscribers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/\"\n";
    let routes = archive::route("runway", "preset = \"kie-runway\"", subs);
    let media = "allow_private = true\nmax_size = \"2GiB\"\ntimeout = \"5m\"";
    let cfg = archive::config(&dir.join("data"), media, &routes)
        .replace("min_free = 0\n\n[admin]", "min_free = 0\ncache = \"4MiB\"\n\n[admin]");
    common::write_config(dir, &cfg)
}

async fn wait_final_bin(bin: &Bin, id: &str, limit: Duration) -> Vec<serde_json::Value> {
    archive::wait_final(bin.admin, id, limit).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_is_archived_with_the_daemon_under_64_mib() {
    let s = FileServer::start(LOCAL).await;
    s.route(
        "/k/huge.mp4",
        Route::Generated {
            len: GIB,
            content_length: true,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::start(&daemon_config(dir.path()), &[]);
    let pid = bin.child.id();
    let before = status_kib(pid, "VmHWM:");
    let body = json!({"code": 200, "msg": "ok", "data": {"task_id": "huge", "video_url": s.url("/k/huge.mp4"), "image_url": ""}});
    let started = Instant::now();
    let id = archive::post(bin.addr, "/hooks/runway", &body).await;
    let media = wait_final_bin(&bin, &id, Duration::from_secs(300)).await;
    let took = started.elapsed();
    let hwm = status_kib(pid, "VmHWM:");
    assert_eq!(media[0]["state"], "stored", "{media:#?}");
    assert_eq!(media[0]["size"], GIB);
    assert_eq!(media[0]["sha256"], generated_sha256(GIB));
    let path = media[0]["location"].as_str().unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), GIB);
    eprintln!(
        "1 GiB archived by the daemon in {took:.2?} ({:.0} MB/s); VmHWM {before} KiB before, {hwm} KiB after",
        GIB as f64 / 1e6 / took.as_secs_f64()
    );
    assert!(
        hwm < MAX_HWM_KIB,
        "the daemon's peak RSS reached {hwm} KiB archiving 1 GiB"
    );
    std::fs::remove_file(path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_killed_with_sigkill_is_archived_after_the_restart() {
    let s = FileServer::start(LOCAL).await;
    let full: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
    // The first try stalls after 1 MiB: the daemon is killed mid-download.
    s.route(
        "/k/video.mp4",
        Route::Stall {
            first: Bytes::copy_from_slice(&full[..1 << 20]),
        },
    );
    let url = format!(
        "{}?X-Amz-Signature=SIGNEDSECRET123&X-Amz-Expires=600",
        s.url("/k/video.mp4")
    );
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path());
    let mut bin = Bin::start(&config, &[]);
    let body = json!({"code": 200, "msg": "ok", "data": {"task_id": "k9", "video_url": url, "image_url": ""}});
    let id = archive::post(bin.addr, "/hooks/runway", &body).await;
    let tmp = dir.path().join("data/media/tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&tmp).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "the download never started writing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(archive::media_of(bin.admin, &id).await[0]["state"], "pending");
    bin.kill9();
    let first_log = bin.log_text();
    assert!(
        std::fs::read_dir(&tmp).unwrap().count() > 0,
        "killed with a partial file"
    );

    // The file server works again; the restarted daemon finds the work on disk.
    s.route(
        "/k/video.mp4",
        Route::Bytes {
            body: Bytes::from(full.clone()),
            content_type: "video/mp4",
        },
    );
    let bin = Bin::start(&config, &[]);
    let media = wait_final_bin(&bin, &id, Duration::from_secs(60)).await;
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
