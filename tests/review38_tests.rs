//! Review 38 (hostile review of `2767bae..22c07b4`): failing tests for the
//! defects found (see `/work/notes/review38.md`).

#![cfg(target_os = "linux")]

use crate::common;

use common::provider::{FakeOptions, FakeProvider, TaskPlan};
use common::tasks::{submit_ok, task_route, tasks_config};
use common::*;

/// An `LD_PRELOAD` library that shifts `CLOCK_REALTIME` (only) by the number
/// of seconds in `$HR_TEST_REALTIME_OFFSET_FILE` (as `wall_clock.rs` builds it).
fn realtime_shift_library(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("shift.c");
    std::fs::write(
        &src,
        r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int clock_gettime(clockid_t id, struct timespec *ts) {
    int r = syscall(SYS_clock_gettime, id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        const char *f = getenv("HR_TEST_REALTIME_OFFSET_FILE");
        FILE *fp = f ? fopen(f, "r") : NULL;
        if (fp) {
            long off = 0;
            if (fscanf(fp, "%ld", &off) == 1) ts->tv_sec += off;
            fclose(fp);
        }
    }
    return r;
}
"#,
    )
    .unwrap();
    let lib = dir.join("libshift.so");
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("a C compiler (cc)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lib
}

/// Finding 3: the start-up check brings in only the subscribers' due rows.
/// The embedded store keeps an expected task's poll schedule (`task_due`
/// rows) in the same per-run anchored clock, so a run whose wall clock was
/// stepped back an hour leaves its tasks' next polls an hour late after a
/// restart, exactly as it did retries before the fix. Here: a task whose
/// first poll is due 4 s after its registration, registered by a run that
/// booted an hour ahead; the relay restarts (clock corrected) before the
/// poll. The poll should come within its `after` (plus slack), not an hour
/// later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expected_tasks_poll_stored_by_a_run_whose_clock_was_stepped_back_comes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lib = realtime_shift_library(dir.path());
    let offset = dir.path().join("offset");
    std::fs::write(&offset, "3600").unwrap();
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let route = task_route("runway", "kie-runway", &fake, common::subscriber::DOWN)
        .reconcile(common::route::Reconcile::new(secs(4), secs(1), secs(600)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let path = cfg.write();
    let envs = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("HR_TEST_REALTIME_OFFSET_FILE", offset.to_str().unwrap()),
    ];
    let bin = Bin::start(&path, &envs);
    // Still running at the provider; no callback comes.
    fake.plan_next(TaskPlan::success().manual());
    let id = submit_ok(bin.admin, "runway", "/api/v1/runway/generate").await;
    // Stopped before the first poll (4 s out by this run's clock, an hour
    // ahead); NTP steps the clock back meanwhile.
    tokio::time::sleep(ms(300)).await;
    std::fs::write(&offset, "0").unwrap();
    bin.signal("TERM");
    let (status, _) = bin.exit().await;
    assert!(status.success(), "{status}");
    assert_eq!(fake.status_requests(&id), 0, "polled before the stop");
    let bin = Bin::start(&path, &envs);
    let t0 = std::time::Instant::now();
    while fake.status_requests(&id) == 0 && t0.elapsed() < secs(25) {
        tokio::time::sleep(ms(200)).await;
    }
    assert!(
        fake.status_requests(&id) > 0,
        "a task whose first poll was 4 s away was not polled {:?} after the restart (its schedule row was \
         stored an hour late by the stepped clock, and the start-up check brings in only delivery rows)\n{}",
        t0.elapsed(),
        bin.log_text()
    );
}

/// Finding 3 (the media archive's side): a media download's retry is kept
/// in the same per-run anchored clock and the start-up check does not look
/// at it either. A download that failed (503) under a run that booted an
/// hour ahead is retried 4 s later by that run's clock; the relay restarts
/// (clock corrected) before the retry. It should be tried again within
/// its schedule's longest wait (plus slack), not an hour later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_retry_stored_by_a_run_whose_clock_was_stepped_back_comes_after_a_restart() {
    use common::files::FileServer;
    let s = FileServer::start(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).await;
    let url = s.status("/m/video.mp4", 503);
    let dir = tempfile::tempdir().unwrap();
    let lib = realtime_shift_library(dir.path());
    let offset = dir.path().join("offset");
    std::fs::write(&offset, "3600").unwrap();
    let path = common::media::media_config(
        dir.path(),
        common::media::Media::new().allow_private().retry([secs(4), secs(4)]),
    )
    .route(
        common::media::preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", common::subscriber::DOWN)),
    )
    .write();
    let envs = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("HR_TEST_REALTIME_OFFSET_FILE", offset.to_str().unwrap()),
    ];
    let bin = Bin::start(&path, &envs);
    accepted_at(bin.addr, "/hooks/runway", &runway_media("m1", &url, "").to_string()).await;
    let t0 = std::time::Instant::now();
    while s.hits("/m/video.mp4") == 0 && t0.elapsed() < secs(10) {
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(s.hits("/m/video.mp4"), 1, "the first try");
    tokio::time::sleep(ms(300)).await;
    std::fs::write(&offset, "0").unwrap();
    bin.signal("TERM");
    let (status, _) = bin.exit().await;
    assert!(status.success(), "{status}");
    assert_eq!(s.hits("/m/video.mp4"), 1, "retried before the stop");
    let bin = Bin::start(&path, &envs);
    let t0 = std::time::Instant::now();
    while s.hits("/m/video.mp4") < 2 && t0.elapsed() < secs(25) {
        tokio::time::sleep(ms(200)).await;
    }
    assert!(
        s.hits("/m/video.mp4") >= 2,
        "a media download retry 4 s away was not tried {:?} after the restart (stored an hour late by the \
         stepped clock; the start-up check brings in only delivery rows)\n{}",
        t0.elapsed(),
        bin.log_text()
    );
}
