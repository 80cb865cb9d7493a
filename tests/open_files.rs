//! The open-files limit: the real binary raises its soft limit to the hard
//! one at start, and names a limit still too low for `max_connections` and
//! the subscribers' concurrency (idle connections at the cap would otherwise
//! make accepts and deliveries fail with "too many open files").

use crate::common;

use common::*;

/// The soft "Max open files" of a running process.
fn soft_nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_limit_is_raised_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start_under_prlimit(&cfg.write(), "--nofile=256:8192");
    assert_eq!(soft_nofile(bin.child.id()), 8192);
    assert!(!bin.log_text().contains("open-files limit"), "{}", bin.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_limit_below_what_the_config_can_use_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // The default max_connections (4,096) cannot fit in 512 descriptors.
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start_under_prlimit(&cfg.write(), "--nofile=512:512");
    log_until(|| bin.log_text(), "open-files limit is below", secs(10)).await;
    let line = bin
        .log_text()
        .lines()
        .find(|l| l.contains("open-files limit"))
        .unwrap()
        .to_string();
    assert!(line.contains("limit=512") && line.contains("max_connections"), "{line}");
    // A config that fits says nothing.
    let small = TestConfig::new(dir.path())
        .max_connections(64)
        .subscriber(Subscriber::new("s", DOWN));
    drop(bin);
    let bin = Bin::start_under_prlimit(&small.write(), "--nofile=512:512");
    assert!(!bin.log_text().contains("open-files limit"), "{}", bin.log_text());
}
