//! Readiness while the embedded store's disk is below `store.min_free`
//! (ingest answers `503`): not ready for as long as that lasts, also under
//! systemd's watchdog, whose store check writes (and so succeeds) then,
//! and ready again once there is room, without waiting for a callback.
//! Needs a small tmpfs (root, as in CI).

use crate::common;

use std::time::Duration;

use common::*;
use http::StatusCode;

async fn readyz(bin: &Bin) -> StatusCode {
    admin(bin.admin, "GET", "/readyz").await.0
}

/// `/readyz` until it answers `want`, up to `limit`; the last answer.
async fn readyz_until(bin: &Bin, want: StatusCode, limit: Duration) -> StatusCode {
    let t0 = std::time::Instant::now();
    loop {
        let s = readyz(bin).await;
        if s == want || t0.elapsed() > limit {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A relay's config with its store on a 24 MiB tmpfs at `dir/small`, a
/// 4 MiB `store.min_free` and one subscriber that is down; with the mount
/// and its path. `None` where no tmpfs can be mounted.
fn small_disk(dir: &std::path::Path) -> Option<(tmpfs::Tmpfs, std::path::PathBuf, TestConfig)> {
    let mnt = dir.join("small");
    let tmpfs = tmpfs::Tmpfs::mount(&mnt, "24m")?;
    let cfg = TestConfig::new(dir)
        .store_path(&mnt.join("data"))
        .store_cache(1 << 20)
        .min_free(4 << 20)
        .subscriber(Subscriber::new("s", DOWN));
    Some((tmpfs, mnt, cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_free_space_under_the_watchdog_and_without_callbacks() {
    // The watchdog checks the store every 200 ms.
    follows_the_free_space(&[("WATCHDOG_USEC", "400000")]).await;
}

/// Without systemd's watchdog (a container whose orchestrator asks
/// `/readyz`): the same, from the relay's own check of the free space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_free_space_without_a_watchdog() {
    follows_the_free_space(&[]).await;
}

async fn follows_the_free_space(envs: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let Some((tmpfs, mnt, cfg)) = small_disk(dir.path()) else {
        return;
    };
    let bin = Bin::start(&cfg.write(), envs);
    assert_eq!(readyz(&bin).await, StatusCode::OK);
    // The disk falls below min_free (2 MiB left, min_free 4 MiB): not ready,
    // before any callback is refused.
    let filler = mnt.join("filler");
    tmpfs.fill_leaving(&filler, 2 * 1024);
    let s = readyz_until(&bin, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "ready with the disk below min_free");
    assert_eq!(
        callback(bin.addr, &runway("low")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // And stays not ready through the watchdog's checks.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            readyz(&bin).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "ready again while callbacks are refused for want of space:\n{}",
            bin.log_text()
        );
    }
    // Room again: ready, with no callback needed, and the next is taken.
    std::fs::remove_file(&filler).unwrap();
    let s = readyz_until(&bin, StatusCode::OK, Duration::from_secs(5)).await;
    assert_eq!(s, StatusCode::OK, "not ready after space returned:\n{}", bin.log_text());
    assert_eq!(callback(bin.addr, &runway("room")).await.0, StatusCode::OK);
}

/// A disk hovering just above `store.min_free` after it fell under it (a
/// relay whose results and retention free and take a little at a time) does
/// not make the relay ready and not ready at every look, logging a pair of
/// lines each time: room is back only with a margin above the floor (an
/// eighth of it, at least 1 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_hovering_at_the_floor_does_not_flip_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let Some((tmpfs, mnt, cfg)) = small_disk(dir.path()) else {
        return;
    };
    let bin = Bin::start(&cfg.write(), &[]);
    assert_eq!(readyz(&bin).await, StatusCode::OK);
    // 4.5 MiB free (half a MiB above the 4 MiB floor, under the 1 MiB
    // margin), then a gap file takes it to 2 MiB: not ready.
    let filler = mnt.join("filler");
    tmpfs.fill_leaving(&filler, 4 * 1024 + 512);
    let gap = mnt.join("gap");
    let gap_len = tmpfs.fill_leaving(&gap, 2 * 1024);
    let s = readyz_until(&bin, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "ready with the disk below min_free");
    // Above the floor, under the margin, and under the floor again, three
    // times: not ready throughout.
    let mut why = serde_json::Value::Null;
    for _ in 0..3 {
        std::fs::remove_file(&gap).unwrap();
        let free = tmpfs.free_kib();
        assert!(free > 4 * 1024 && free < 5 * 1024, "{free} KiB free");
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert_eq!(
                readyz(&bin).await,
                StatusCode::SERVICE_UNAVAILABLE,
                "ready half a MiB above the floor ({free} KiB free):\n{}",
                bin.log_text()
            );
        }
        why = admin(bin.admin, "GET", "/readyz").await.1;
        // Callbacks keep coming: taken above the floor, refused under it.
        assert_eq!(callback(bin.addr, &runway("above")).await.0, StatusCode::OK);
        std::fs::write(&gap, vec![0u8; gap_len]).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            callback(bin.addr, &runway("under")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    // Room again, past the margin: ready, logged once.
    std::fs::remove_file(&gap).unwrap();
    std::fs::remove_file(&filler).unwrap();
    let s = readyz_until(&bin, StatusCode::OK, Duration::from_secs(5)).await;
    assert_eq!(s, StatusCode::OK, "not ready after space returned:\n{}", bin.log_text());
    let log = bin.log_text();
    assert_eq!(
        (
            log.matches("no room for callbacks on the store's disk").count(),
            log.matches("room on the store's disk again").count()
        ),
        (1, 1),
        "{log}"
    );
    // Nor does the store's writer log each crossing it sees.
    assert!(
        !log.contains("until there is room") && !log.contains("disk space is back"),
        "{log}"
    );
    assert!(why.to_string().contains("ready again at 1024 KiB above it"), "{why}");
}

/// The margin is not a trap (review of the above): a relay whose disk
/// usually has less than the margin above the floor (here half a MiB above
/// it, where it was ready) dips under it once (a temporary file) and is
/// ready again once the disk has stayed above the floor for 10 s, without
/// the margin (before, it stayed not ready until space was freed or it was
/// restarted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dip_under_the_floor_does_not_leave_the_relay_not_ready_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let Some((tmpfs, mnt, cfg)) = small_disk(dir.path()) else {
        return;
    };
    let bin = Bin::start(&cfg.write(), &[]);
    // Other data on the volume: 4.5 MiB free.
    let other = mnt.join("other");
    tmpfs.fill_leaving(&other, 4 * 1024 + 512);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(readyz(&bin).await, StatusCode::OK, "ready half a MiB above the floor");
    // A temporary file for a moment.
    let tmp = mnt.join("tmp");
    std::fs::write(&tmp, vec![0u8; 1 << 20]).unwrap();
    let s = readyz_until(&bin, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    std::fs::remove_file(&tmp).unwrap();
    let back = std::time::Instant::now();
    assert_eq!(callback(bin.addr, &runway("after")).await.0, StatusCode::OK);
    let s = readyz_until(&bin, StatusCode::OK, Duration::from_secs(15)).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "not ready {:?} after the dip, {} KiB free:\n{}",
        back.elapsed(),
        tmpfs.free_kib(),
        bin.log_text()
    );
    assert!(
        back.elapsed() >= Duration::from_secs(8),
        "ready {:?} after the dip",
        back.elapsed()
    );
}

/// Something on the disk takes and frees more than the margin again and
/// again (a 3 MiB temporary file every few seconds, the disk 2 MiB above
/// the floor without it): the relay is ready again after the first dip, and
/// a dip within a minute of that makes the next return wait until the disk
/// has stayed above the floor for 10 s (then 20, 40, up to 60 s for each
/// flap in a row: `room_watch::tests`). Before, `/readyz` flipped and a
/// pair of lines was logged at every dip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_the_margin_coming_and_going_does_not_flip_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let Some((tmpfs, mnt, cfg)) = small_disk(dir.path()) else {
        return;
    };
    let bin = Bin::start(&cfg.write(), &[]);
    let other = mnt.join("other");
    tmpfs.fill_leaving(&other, 6 * 1024);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(readyz(&bin).await, StatusCode::OK, "ready 2 MiB above the floor");
    let tmp = mnt.join("tmp");
    // Six dips of 1.5 s, 1.5 s apart; `/readyz` asked every 250 ms.
    let (mut answers, mut seen) = (Vec::new(), StatusCode::OK);
    let mut removed = std::time::Instant::now();
    for dip in 0..12 {
        if dip % 2 == 0 {
            std::fs::write(&tmp, vec![0u8; 3 << 20]).unwrap();
        } else {
            std::fs::remove_file(&tmp).unwrap();
            removed = std::time::Instant::now();
        }
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let s = readyz(&bin).await;
            if s != seen {
                answers.push(s.as_u16());
                seen = s;
            }
        }
    }
    // Not ready at the first dip, ready after it, not ready at the second,
    // and so until the disk stays above the floor.
    assert_eq!(answers, [503, 200, 503], "{answers:?}:\n{}", bin.log_text());
    let said = admin_until(bin.admin, "/readyz", Duration::from_secs(5), |v| {
        v.to_string().contains("again within 60 s of the relay becoming ready")
    })
    .await;
    assert!(said.to_string().contains("ready once above it for 10 s"), "{said}");
    let s = readyz_until(&bin, StatusCode::OK, Duration::from_secs(15)).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "not ready with the disk settled:\n{}",
        bin.log_text()
    );
    assert!(
        removed.elapsed() >= Duration::from_secs(9),
        "ready {:?} after",
        removed.elapsed()
    );
    let log = bin.log_text();
    assert_eq!(
        log.matches("no room for callbacks on the store's disk").count(),
        2,
        "{log}"
    );
}
