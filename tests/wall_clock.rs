//! A wall clock stepped while the daemon runs: the time of day is the
//! host's, followed at once (a host without an RTC, a VM restored from a
//! snapshot), so signed callbacks are judged fresh against the corrected
//! time; schedules follow the monotonic clock, so the step moves no waiting
//! retry. The real binary runs with an
//! `LD_PRELOAD` library (built here with the system's C compiler, which any
//! Rust build on Linux has) that shifts its `CLOCK_REALTIME` only.

#![cfg(target_os = "linux")]

use crate::common;

use common::*;
use http::StatusCode;

/// An `LD_PRELOAD` library that shifts `CLOCK_REALTIME` (only) by the number
/// of seconds in the file `$HR_TEST_REALTIME_OFFSET_FILE`, read on every call: the wall
/// clock of one process can be stepped, as NTP steps a machine's, without
/// touching the machine's.
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

/// Started an hour behind (a callback signed an hour ago is fresh to it),
/// then corrected: a callback signed now is accepted (review 28, finding 5:
/// the time of day was read once, at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_while_running_is_followed() {
    use common::oracle::standard_webhooks_sign;
    const SW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    let lib = realtime_shift_library(dir.path());
    let offset = dir.path().join("offset");
    // At boot the clock is an hour behind.
    std::fs::write(&offset, "-3600").unwrap();
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .route(
            Route::new("sw", "/hooks/sw")
                .signature(Signature::standard_webhooks(SW))
                .subscriber(Subscriber::new("w", sub.url())),
        );
    let bin = Bin::start(
        &cfg.write(),
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("HR_TEST_REALTIME_OFFSET_FILE", offset.to_str().unwrap()),
        ],
    );
    let real_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let signed = |ts: u64, n: u32| {
        let body = format!(r#"{{"type":"done","n":{n}}}"#);
        let ts = ts.to_string();
        let sig = standard_webhooks_sign(SW, &format!("msg_{n}"), &ts, body.as_bytes());
        (body, ts, sig, format!("msg_{n}"))
    };
    // The daemon believes the clock: a callback signed an hour ago is fresh to it.
    let (body, ts, sig, id) = signed(real_now() - 3600, 1);
    let h = [
        ("webhook-id", id.as_str()),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    assert_eq!(
        post(bin.addr, "/hooks/sw", &h, body).await.0,
        StatusCode::OK,
        "the shift took effect"
    );
    // NTP corrects the clock.
    std::fs::write(&offset, "0").unwrap();
    tokio::time::sleep(ms(500)).await;
    // The provider signs with the right time.
    let (body, ts, sig, id) = signed(real_now(), 2);
    let h = [
        ("webhook-id", id.as_str()),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let (s, _, b) = post(bin.addr, "/hooks/sw", &h, body).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a callback signed now, after the host's clock was corrected, is refused: {}",
        String::from_utf8_lossy(&b)
    );
}

/// Schedules follow the monotonic clock: a host clock stepped back (NTP
/// correcting a clock that was ahead at boot) while a retry waits does not
/// push the retry back by the step (review 33, finding 4: a 3 s retry came
/// an hour late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_back_does_not_delay_a_waiting_retry_by_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let lib = realtime_shift_library(dir.path());
    let offset = dir.path().join("offset");
    // At boot the clock is an hour ahead.
    std::fs::write(&offset, "3600").unwrap();
    let sub = Sub::start(std::sync::Arc::new(|n, _| {
        if n == 0 {
            Behaviour::Status(503)
        } else {
            Behaviour::Status(200)
        }
    }))
    .await;
    let other = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", other.url()))
        .route(
            Route::new("o", "/hooks/o")
                .allow_anyone()
                .subscriber(Subscriber::new("w", sub.url()).retry([secs(3)])),
        );
    let bin = Bin::start(
        &cfg.write(),
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("HR_TEST_REALTIME_OFFSET_FILE", offset.to_str().unwrap()),
        ],
    );
    let (s, _, b) = post(
        bin.addr,
        "/hooks/o",
        &[("content-type", "application/json")],
        r#"{"n":1}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    sub.wait_for(secs(10), "the first attempt", |all| !all.is_empty()).await;
    // The retry is scheduled 3 s out; NTP steps the clock back an hour.
    tokio::time::sleep(ms(800)).await;
    std::fs::write(&offset, "0").unwrap();
    let t0 = std::time::Instant::now();
    while sub.count() < 2 && t0.elapsed() < secs(20) {
        tokio::time::sleep(ms(200)).await;
    }
    assert!(
        sub.count() >= 2,
        "a 3 s retry had not come {:?} after the wall clock was stepped back an hour",
        t0.elapsed()
    );
}

/// The embedded store keeps due times in the scheduling clock of the run
/// that wrote them, anchored at that run's start: a wall clock stepped back
/// an hour during a run left the retry it had waiting an hour late after a
/// restart. At start-up a due time further off than the subscriber's
/// longest wait (its retry schedule's longest delay +20 %, its
/// `max_retry_after`) is brought in to now plus that wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_stored_by_a_run_whose_clock_was_stepped_back_comes_within_its_longest_wait_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lib = realtime_shift_library(dir.path());
    let offset = dir.path().join("offset");
    // At boot the clock is an hour ahead.
    std::fs::write(&offset, "3600").unwrap();
    let sub = Sub::start(std::sync::Arc::new(|n, _| {
        if n == 0 {
            Behaviour::Status(503)
        } else {
            Behaviour::Status(200)
        }
    }))
    .await;
    let other = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", other.url()))
        .route(
            Route::new("o", "/hooks/o").allow_anyone().subscriber(
                Subscriber::new("w", sub.url())
                    .retry([secs(4), secs(4)])
                    .max_retry_after(secs(4)),
            ),
        );
    let path = cfg.write();
    let envs = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("HR_TEST_REALTIME_OFFSET_FILE", offset.to_str().unwrap()),
    ];
    let bin = Bin::start(&path, &envs);
    let (s, _, b) = post(
        bin.addr,
        "/hooks/o",
        &[("content-type", "application/json")],
        r#"{"n":1}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    sub.wait_for(secs(10), "the first attempt", |all| !all.is_empty()).await;
    // The retry is stored 4 s out by this run's clock (an hour ahead); NTP
    // steps the clock back; the relay is stopped before the retry is sent.
    tokio::time::sleep(ms(300)).await;
    std::fs::write(&offset, "0").unwrap();
    bin.signal("TERM");
    let (status, _) = bin.exit().await;
    assert!(status.success(), "{status}");
    assert_eq!(sub.count(), 1, "the retry was sent before the stop");
    let bin = Bin::start(&path, &envs);
    let t0 = std::time::Instant::now();
    while sub.count() < 2 && t0.elapsed() < secs(20) {
        tokio::time::sleep(ms(200)).await;
    }
    assert!(
        sub.count() >= 2,
        "a retry with a 4 s longest wait had not come {:?} after the restart (stored an hour late by the stepped clock)",
        t0.elapsed()
    );
    assert!(bin.log_text().contains("brought in"), "{}", bin.log_text());
}

/// The embedded store keeps an expected task's poll schedule in the same
/// per-run anchored clock: a run whose wall clock was stepped back an hour
/// left its tasks' next polls an hour late after a restart. At start-up a
/// task row written "later than now" keeps its wait, counted from now. Here:
/// a task whose first poll is due 4 s after its registration, registered by
/// a run that booted an hour ahead; the relay restarts (clock corrected)
/// before the poll, which comes within its `after` (plus slack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expected_tasks_poll_stored_by_a_run_whose_clock_was_stepped_back_keeps_its_wait_after_a_restart() {
    use common::provider::{FakeOptions, FakeProvider, TaskPlan};
    use common::tasks::{submit_ok, task_route, tasks_config};
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
         stored an hour late by the stepped clock)\n{}",
        t0.elapsed(),
        bin.log_text()
    );
}

/// A media download's retry is kept in the same per-run anchored clock, and
/// brought in the same way. A download that failed (503) under a run that
/// booted an hour ahead is retried 4 s later by that run's clock; the relay
/// restarts (clock corrected) before the retry, which comes within its
/// schedule's wait (plus slack), not an hour later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_retry_stored_by_a_run_whose_clock_was_stepped_back_keeps_its_wait_after_a_restart() {
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
         stepped clock)\n{}",
        t0.elapsed(),
        bin.log_text()
    );
}
