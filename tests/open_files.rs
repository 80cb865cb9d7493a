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

/// Out of file descriptors (a stranger holding connections open under a low
/// limit), failed accepts are warned about at most once a minute, with a
/// back-off: they were one warning every 50 ms on each listener, 40 lines a
/// second, crowding everything else out of the journal (observability
/// review, stop 62). Callbacks are taken again once the connections go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_accepts_are_warned_about_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    let bin = Bin::start_under_prlimit(&cfg.write(), "--nofile=64:64");
    let mut held = Vec::new();
    for _ in 0..100 {
        match tokio::time::timeout(ms(500), tokio::net::TcpStream::connect(bin.addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
    }
    log_until(|| bin.log_text(), "accept failed", secs(10)).await;
    tokio::time::sleep(secs(3)).await;
    let warnings = bin
        .log_text()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("accept failed"))
        .count();
    assert_eq!(warnings, 1, "{}", bin.log_text());
    // Gone: the back-off is 1 s at most.
    drop(held);
    tokio::time::sleep(secs(2)).await;
    assert_eq!(callback(bin.addr, &runway("after")).await.0, http::StatusCode::OK);
}
