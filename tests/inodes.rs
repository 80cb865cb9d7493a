//! A disk out of inodes with bytes to spare (many small files): the store
//! keeps 64 free as it keeps `store.min_free` bytes, answering `503` and not
//! ready while fewer are left, and takes callbacks again once files are
//! removed. Without it the relay took callbacks until nothing was left,
//! and could not start again (sled writes a file at each open: "No space
//! left on device" with `df -h` at 1 %, a restart loop; filesystem review,
//! stop 73).

use crate::common;

use common::*;
use http::StatusCode;

/// Callbacks to `addr`, one every 100 ms, until one is answered `want`
/// (any other answer but `200` fails), within `limit`.
async fn callbacks_until(addr: std::net::SocketAddr, want: StatusCode, limit: std::time::Duration, what: &str) {
    let t0 = std::time::Instant::now();
    loop {
        let (s, v) = callback(addr, &runway(&format!("{what}-{}", t0.elapsed().as_millis()))).await;
        if s == want {
            return;
        }
        assert!(s == StatusCode::OK || s == StatusCode::SERVICE_UNAVAILABLE, "{s}: {v}");
        assert!(t0.elapsed() < limit, "no {want} within {limit:?}: {what}");
        tokio::time::sleep(ms(100)).await;
    }
}

/// A relay's config whose store is on a tmpfs of 512 inodes (`mnt`), its
/// one subscriber down; `None` where no tmpfs can be mounted.
fn store_on_a_small_disk() -> Option<(tempfile::TempDir, tmpfs::Tmpfs, std::path::PathBuf, TestConfig)> {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    let disk = tmpfs::Tmpfs::mount(&mnt, "32m,nr_inodes=512")?;
    let cfg = TestConfig::new(dir.path())
        .store_path(&mnt.join("data"))
        .min_free(1 << 20)
        .subscriber(Subscriber::new("s", DOWN).retry([secs(3600)]));
    Some((dir, disk, mnt, cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_short_of_inodes_is_a_full_disk() {
    let Some((_dir, _disk, mnt, cfg)) = store_on_a_small_disk() else {
        return;
    };
    let h = start(&cfg).await;
    let (addr, admin_addr) = (h.ingest_addrs[0], h.admin_addr);
    accepted(addr, &runway("before")).await;
    // Every inode taken but 20 (under the floor of 64), bytes to spare.
    let taken = tmpfs::InodesTaken::leaving(&mnt.join("fill"), 20);
    callbacks_until(addr, StatusCode::SERVICE_UNAVAILABLE, secs(10), "short").await;
    // Readiness follows at its next look at the disk.
    let t0 = std::time::Instant::now();
    loop {
        let (status, why) = admin(admin_addr, "GET", "/readyz").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(why.to_string().contains("out of inodes"), "{why}");
            break;
        }
        assert!(t0.elapsed() < secs(10), "still ready with 20 inodes left: {why}");
        tokio::time::sleep(ms(100)).await;
    }
    taken.give_back();
    callbacks_until(addr, StatusCode::OK, secs(30), "back").await;
    h.shutdown().await;
}

/// A store whose disk has no inode left cannot start (sled writes a file at
/// each open): the error says so, not only "No space left on device" with
/// `df -h` showing room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_a_disk_out_of_inodes_says_so() {
    let Some((_dir, _disk, mnt, cfg)) = store_on_a_small_disk() else {
        return;
    };
    start(&cfg).await.shutdown().await;
    let _taken = tmpfs::InodesTaken::leaving(&mnt.join("fill"), 0);
    let loaded = hookrelay::Config::load(&cfg.write()).unwrap();
    let e = match hookrelay::start(loaded).await {
        Ok(h) => {
            h.shutdown().await;
            panic!("a store on a disk with no inode left opened");
        }
        Err(e) => e.to_string(),
    };
    assert!(e.contains("out of inodes"), "{e}");
}
