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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_short_of_inodes_is_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    let Some(_disk) = tmpfs::Tmpfs::mount(&mnt, "32m,nr_inodes=512") else {
        return;
    };
    let cfg = TestConfig::new(dir.path())
        .store_path(&mnt.join("data"))
        .min_free(1 << 20)
        .subscriber(Subscriber::new("s", DOWN).retry([secs(3600)]));
    let h = start(&cfg).await;
    let (addr, admin_addr) = (h.ingest_addrs[0], h.admin_addr);
    accepted(addr, &runway("before")).await;
    // Every inode taken but 20 (under the floor of 64), bytes to spare.
    let fill = mnt.join("fill");
    std::fs::create_dir(&fill).unwrap();
    let mut n = 0;
    while std::fs::write(fill.join(n.to_string()), b"").is_ok() {
        n += 1;
    }
    for i in n - 20..n {
        std::fs::remove_file(fill.join(i.to_string())).unwrap();
    }
    let t0 = std::time::Instant::now();
    loop {
        let (s, v) = callback(addr, &runway(&format!("short-{}", t0.elapsed().as_millis()))).await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(t0.elapsed() < secs(10), "callbacks still taken with 20 inodes left");
        tokio::time::sleep(ms(100)).await;
    }
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

    for i in 0..n - 20 {
        std::fs::remove_file(fill.join(i.to_string())).unwrap();
    }
    let t0 = std::time::Instant::now();
    loop {
        let (s, _) = callback(addr, &runway(&format!("back-{}", t0.elapsed().as_millis()))).await;
        if s == StatusCode::OK {
            break;
        }
        assert!(t0.elapsed() < secs(30), "callbacks still refused with the inodes back");
        tokio::time::sleep(ms(200)).await;
    }
    h.shutdown().await;
}
