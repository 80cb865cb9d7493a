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

/// One process's wall clock, shifted by the library built in a test's
/// directory by the seconds in its offset file there.
struct Shifted {
    lib: std::path::PathBuf,
    offset: std::path::PathBuf,
}

impl Shifted {
    /// The library built in `dir`, the clock `secs` seconds off at boot.
    fn at(dir: &std::path::Path, secs: &str) -> Shifted {
        let clock = Shifted {
            lib: realtime_shift_library(dir),
            offset: dir.join("offset"),
        };
        clock.set(secs);
        clock
    }

    /// Step the clock to `secs` seconds off (NTP steps it).
    fn set(&self, secs: &str) {
        std::fs::write(&self.offset, secs).unwrap();
    }

    /// The environment that runs the binary on this clock.
    fn envs(&self) -> [(&str, &str); 2] {
        [
            ("LD_PRELOAD", self.lib.to_str().unwrap()),
            ("HR_TEST_REALTIME_OFFSET_FILE", self.offset.to_str().unwrap()),
        ]
    }

    /// NTP steps the clock back (soon after the work was stored), then the
    /// relay is stopped: it exits cleanly.
    async fn step_back_and_stop(&self, bin: Bin) {
        tokio::time::sleep(ms(300)).await;
        self.set("0");
        bin.signal("TERM");
        let (status, _) = bin.exit().await;
        assert!(status.success(), "{status}");
    }
}

/// Wait until `done`, up to `limit`, looking every 200 ms; how long it took.
async fn wait_until(limit: std::time::Duration, done: impl Fn() -> bool) -> std::time::Duration {
    let t0 = std::time::Instant::now();
    while !done() && t0.elapsed() < limit {
        tokio::time::sleep(ms(200)).await;
    }
    t0.elapsed()
}

/// A subscriber that answers its first attempt 503, the rest 200.
async fn fails_once() -> Sub {
    Sub::start(std::sync::Arc::new(|n, _| {
        if n == 0 {
            Behaviour::Status(503)
        } else {
            Behaviour::Status(200)
        }
    }))
    .await
}

/// A config whose open route `o` (`/hooks/o`) delivers to `w`; `other` is
/// the config's own subscriber `s`.
fn retry_config(dir: &std::path::Path, other: &Sub, w: Subscriber) -> TestConfig {
    TestConfig::new(dir)
        .subscriber(Subscriber::new("s", other.url()))
        .route(Route::new("o", "/hooks/o").allow_anyone().subscriber(w))
}

/// One callback to `/hooks/o` at `addr`, accepted; `sub` gets its first
/// attempt within 10 s.
async fn first_attempt(addr: std::net::SocketAddr, sub: &Sub) {
    let (s, _, b) = post(addr, "/hooks/o", &[("content-type", "application/json")], r#"{"n":1}"#).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    sub.wait_for(secs(10), "the first attempt", |all| !all.is_empty()).await;
}

/// Started an hour behind (a callback signed an hour ago is fresh to it),
/// then corrected: a callback signed now is accepted (review 28, finding 5:
/// the time of day was read once, at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_while_running_is_followed() {
    use common::oracle::standard_webhooks_sign;
    const SW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    // At boot the clock is an hour behind.
    let clock = Shifted::at(dir.path(), "-3600");
    let sub = Sub::ok().await;
    let cfg = TestConfig::new(dir.path())
        .subscriber(Subscriber::new("s", sub.url()))
        .route(
            Route::new("sw", "/hooks/sw")
                .signature(Signature::standard_webhooks(SW))
                .subscriber(Subscriber::new("w", sub.url())),
        );
    let bin = Bin::start(&cfg.write(), &clock.envs());
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
    clock.set("0");
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
    // At boot the clock is an hour ahead.
    let clock = Shifted::at(dir.path(), "3600");
    let sub = fails_once().await;
    let other = Sub::ok().await;
    let cfg = retry_config(dir.path(), &other, Subscriber::new("w", sub.url()).retry([secs(3)]));
    let bin = Bin::start(&cfg.write(), &clock.envs());
    first_attempt(bin.addr, &sub).await;
    // The retry is scheduled 3 s out; NTP steps the clock back an hour.
    tokio::time::sleep(ms(800)).await;
    clock.set("0");
    let waited = wait_until(secs(20), || sub.count() >= 2).await;
    assert!(
        sub.count() >= 2,
        "a 3 s retry had not come {waited:?} after the wall clock was stepped back an hour"
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
    // At boot the clock is an hour ahead.
    let clock = Shifted::at(dir.path(), "3600");
    let sub = fails_once().await;
    let other = Sub::ok().await;
    let cfg = retry_config(
        dir.path(),
        &other,
        Subscriber::new("w", sub.url())
            .retry([secs(4), secs(4)])
            .max_retry_after(secs(4)),
    );
    let path = cfg.write();
    let envs = clock.envs();
    let bin = Bin::start(&path, &envs);
    first_attempt(bin.addr, &sub).await;
    // The retry is stored 4 s out by this run's clock (an hour ahead); NTP
    // steps the clock back; the relay is stopped before the retry is sent.
    clock.step_back_and_stop(bin).await;
    assert_eq!(sub.count(), 1, "the retry was sent before the stop");
    let bin = Bin::start(&path, &envs);
    let waited = wait_until(secs(20), || sub.count() >= 2).await;
    assert!(
        sub.count() >= 2,
        "a retry with a 4 s longest wait had not come {waited:?} after the restart (stored an hour late by the stepped clock)"
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
    let clock = Shifted::at(dir.path(), "3600");
    let fake = FakeProvider::start(FakeOptions::default()).await;
    let route = task_route("runway", "kie-runway", &fake, common::subscriber::DOWN)
        .reconcile(common::route::Reconcile::new(secs(4), secs(1), secs(600)));
    let (cfg, _) = tasks_config(dir.path(), vec![route]);
    let path = cfg.write();
    let envs = clock.envs();
    let bin = Bin::start(&path, &envs);
    // Still running at the provider; no callback comes.
    fake.plan_next(TaskPlan::success().manual());
    let id = submit_ok(bin.admin, "runway", "/api/v1/runway/generate").await;
    // Stopped before the first poll (4 s out by this run's clock, an hour
    // ahead); NTP steps the clock back meanwhile.
    clock.step_back_and_stop(bin).await;
    assert_eq!(fake.status_requests(&id), 0, "polled before the stop");
    let bin = Bin::start(&path, &envs);
    let waited = wait_until(secs(25), || fake.status_requests(&id) > 0).await;
    assert!(
        fake.status_requests(&id) > 0,
        "a task whose first poll was 4 s away was not polled {waited:?} after the restart (its schedule row was \
         stored an hour late by the stepped clock)\n{}",
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
    let clock = Shifted::at(dir.path(), "3600");
    let path = common::media::media_config(
        dir.path(),
        common::media::Media::new().allow_private().retry([secs(4), secs(4)]),
    )
    .route(
        common::media::preset_route("runway", "kie-runway").subscriber(Subscriber::new("s", common::subscriber::DOWN)),
    )
    .write();
    let envs = clock.envs();
    let bin = Bin::start(&path, &envs);
    accepted_at(bin.addr, "/hooks/runway", &runway_media("m1", &url, "").to_string()).await;
    let t0 = std::time::Instant::now();
    while s.hits("/m/video.mp4") == 0 && t0.elapsed() < secs(10) {
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(s.hits("/m/video.mp4"), 1, "the first try");
    clock.step_back_and_stop(bin).await;
    assert_eq!(s.hits("/m/video.mp4"), 1, "retried before the stop");
    let bin = Bin::start(&path, &envs);
    let waited = wait_until(secs(25), || s.hits("/m/video.mp4") >= 2).await;
    assert!(
        s.hits("/m/video.mp4") >= 2,
        "a media download retry 4 s away was not tried {waited:?} after the restart (stored an hour late by the \
         stepped clock)\n{}",
        bin.log_text()
    );
}

/// Retention counts from the corrected clock: a relay that booted with its
/// wall clock a day ahead (no RTC, NTP not synced yet) kept that clock for
/// its schedules all run, so with `retention = "1h"` its first sweep removed
/// the previous run's dead letter (and the event with its dedupe key)
/// minutes after it died, though NTP had stepped the clock back by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_after_a_start_with_the_clock_ahead_counts_from_the_corrected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Shifted::at(dir.path(), "0");
    let gone = Sub::always(Behaviour::Status(410)).await;
    let other = Sub::ok().await;
    let cfg = retry_config(dir.path(), &other, Subscriber::new("w", gone.url())).retention(secs(3600));
    let path = cfg.write();
    let envs = clock.envs();
    let bin = Bin::start(&path, &envs);
    first_attempt(bin.addr, &gone).await;
    let dead = admin_until(bin.admin, "/api/dead-letters", secs(10), |v| v["total"] == 1).await;
    assert_eq!(dead["total"], 1, "{dead}");
    bin.signal("TERM");
    assert!(bin.exit().await.0.success());
    // The next boot's clock is a day ahead; NTP steps it back just after
    // the start, before the first sweep (10 s after it).
    clock.set("86400");
    // The sweep says when it found nothing (at debug), so the wait below
    // knows one ran (it waited out its limit on a correct relay).
    let mut envs = envs.to_vec();
    envs.push(("RUST_LOG", "info,hookrelay::retention=debug"));
    let bin = Bin::start(&path, &envs);
    assert_eq!(admin(bin.admin, "GET", "/healthz").await.0, StatusCode::OK);
    clock.set("0");
    let sweep_ran = || {
        let log = bin.log_text();
        log.contains("retention: removed") || log.contains("retention: sweep found no expired event")
    };
    let swept = wait_until(secs(30), sweep_ran).await;
    assert!(sweep_ran(), "no retention sweep within {swept:?}:\n{}", bin.log_text());
    let dead = admin(bin.admin, "GET", "/api/dead-letters").await.1;
    assert_eq!(
        dead["total"],
        1,
        "the dead letter was removed {swept:?} after a start with the clock a day ahead: {dead}\n{}",
        bin.log_text()
    );
    let (s, _, b) = post(
        bin.addr,
        "/hooks/o",
        &[("content-type", "application/json")],
        r#"{"n":1}"#,
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, &v["duplicate"]), (StatusCode::OK, &serde_json::json!(true)), "{v}");
}
