//! Promise 4, a backlog lives on disk, not in memory: 100k waiting jobs drain
//! with flat RSS and start-up does not read them; bodies of 1 MiB stored and
//! delivered do not stay in memory; an admin listing that pages through 80k
//! events runs off the async workers, so the daemon keeps answering.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

/// A subscriber that answers `200` and counts what it got.
async fn counting_sub() -> (Sub, Arc<AtomicUsize>) {
    let counter = Arc::new(AtomicUsize::new(0));
    let c2 = counter.clone();
    let sub = Sub::start(Arc::new(move |_, _| {
        c2.fetch_add(1, Ordering::Relaxed);
        Behaviour::Status(200)
    }))
    .await;
    (sub, counter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_of_100k_drains_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 100_000;
    let (sub, counter) = counting_sub().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()).concurrency(32));
    // Fill the store as ingest would, while the daemon is down.
    prefill(&cfg.data(), N, &["s"]).await;
    let started = Instant::now();
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let startup = started.elapsed();
    let rss_start = bin.rss_kib();
    let mut peak = rss_start;
    let drain = Instant::now();
    while counter.load(Ordering::Relaxed) < N {
        peak = peak.max(bin.rss_kib());
        assert!(
            drain.elapsed() < Duration::from_secs(300),
            "drain stalled at {}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = drain.elapsed();
    let rss_end = bin.rss_kib();
    eprintln!(
        "backlog {N}: start-up {startup:?}, drained in {took:?} ({:.0} jobs/s), RSS start {} MiB, peak {} MiB, end {} MiB",
        N as f64 / took.as_secs_f64(),
        rss_start / 1024,
        peak / 1024,
        rss_end / 1024
    );
    assert!(
        startup < Duration::from_secs(5),
        "start-up read the backlog: {startup:?}"
    );
    assert!(peak < 256 * 1024, "peak RSS {} MiB while draining", peak / 1024);
    // Every job delivered once.
    let seen = seen_ids(&sub);
    assert_eq!(seen.len(), N);
    drop(bin);
}

/// sled keeps a value of more than a few KiB in memory whatever its cache
/// size: 400 callbacks of 1 MiB took the daemon's RSS up by ~400 MiB, for as
/// long as it ran. Bodies over 8 KiB are stored in 4 KiB rows of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stored_and_delivered_do_not_stay_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (sub, counter) = counting_sub().await;
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", sub.url()));
    let bin = Bin::start(&cfg.write(), &[("RUST_LOG", "warn,hookrelay::app=info")]);
    let pad = "x".repeat(1000 * 1024);
    let big = |i: usize| format!(r#"{{"code":200,"data":{{"task_id":"big-{i}"}},"pad":"{pad}"}}"#);
    const WARM: usize = 20;
    const N: usize = 400;
    let mut sent = 0;
    let mut send_until = |n: usize| {
        let from = sent;
        sent = n;
        let addr = bin.addr;
        async move {
            for i in from..n {
                accepted(addr, &big(i)).await;
            }
        }
    };
    send_until(WARM).await;
    let delivered = |n: usize| {
        let counter = counter.clone();
        async move {
            let t = Instant::now();
            while counter.load(Ordering::Relaxed) < n {
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "{} of {n} delivered",
                    counter.load(Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    delivered(WARM).await;
    let before = bin.rss_kib();
    send_until(WARM + N).await;
    delivered(WARM + N).await;
    let after = bin.rss_kib();
    let peak = bin.peak_rss_kib();
    eprintln!(
        "{N} bodies of 1000 KiB: RSS {} MiB before, {} MiB after (peak {} MiB)",
        before / 1024,
        after / 1024,
        peak / 1024
    );
    assert!(
        after < before + 128 * 1024,
        "RSS grew from {} to {} MiB storing and delivering {N} bodies of 1000 KiB",
        before / 1024,
        after / 1024
    );
    drop(bin);
}

// One worker thread, as a loaded daemon's workers are: a listing that scans the
// store on it would stall every other request for the whole scan.
#[tokio::test(flavor = "current_thread")]
async fn admin_listings_scan_the_store_off_the_async_workers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path()).subscriber(Subscriber::new("s", DOWN));
    // Events with no subscribers: nothing to deliver, nothing dead.
    prefill(&cfg.data(), 80_000, &[]).await;
    let h = start(&cfg).await;
    let a = h.admin_addr;
    // No event is dead: each listing pages through all 80k of them. Listings
    // back to back until they took 150 ms in all, however fast the machine:
    // on the async worker, each would hold every /healthz for its whole scan
    // (one or two answered per listing); off it, dozens are answered in each.
    let listings = tokio::spawn(async move {
        let (t, mut listings) = (Instant::now(), 0u32);
        while listings == 0 || t.elapsed() < Duration::from_millis(150) {
            let (s, v) = admin(a, "GET", "/api/events?status=dead&limit=1").await;
            assert_eq!(s, StatusCode::OK, "{v}");
            listings += 1;
        }
        (t.elapsed(), listings)
    });
    let (mut answered, mut slowest) = (0, Duration::ZERO);
    while !listings.is_finished() {
        let t = Instant::now();
        assert_eq!(admin(a, "GET", "/healthz").await.0, StatusCode::OK);
        slowest = slowest.max(t.elapsed());
        answered += 1;
    }
    let (took, listings) = listings.await.unwrap();
    eprintln!("{listings} listings took {took:?}; {answered} /healthz answered meanwhile, the slowest in {slowest:?}");
    assert!(
        answered >= 10 * listings,
        "only {answered} /healthz answered during {listings} listings in {took:?} (slowest {slowest:?}): the scan ran on the async worker"
    );
    h.shutdown().await;
}
