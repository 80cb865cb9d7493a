//! Promise 4 for the media archive, with the real binary: a 1 GiB file is
//! archived while the daemon's peak resident memory (VmHWM) stays under
//! 64 MiB — downloads stream to the store, memory does not grow with file
//! size. (The library-level measurement, with throughput against a bare
//! copy, is media_large.rs: it needs a test binary of its own.)

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::files::{generated_sha256, FileServer, Route as File};
use common::*;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const GIB: u64 = 1 << 30;
/// The bound issue 11 sets for the daemon archiving a large file.
const MAX_HWM_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_is_archived_with_the_daemon_under_64_mib() {
    let s = FileServer::start(LOCAL).await;
    s.route(
        "/k/huge.mp4",
        File::Generated {
            len: GIB,
            content_length: true,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let media = Media::new().allow_private().max_size(2 * GIB).timeout(secs(300));
    let config = media_config(dir.path(), media)
        .min_free(0)
        .store_cache(4 << 20)
        .route(preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", DOWN)))
        .write();
    let bin = Bin::start(&config, &[]);
    let before = bin.peak_rss_kib();
    let body = runway_media("huge", &s.url("/k/huge.mp4"), "");
    let started = Instant::now();
    let id = accepted_at(bin.addr, "/hooks/runway", &body.to_string()).await;
    let media = wait_final(bin.admin, &id, Duration::from_secs(300)).await;
    let took = started.elapsed();
    let hwm = bin.peak_rss_kib();
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
