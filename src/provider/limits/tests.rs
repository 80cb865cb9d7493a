//! Pacing on the paused clock: the documented N per window, never more in
//! any window, and all N at once from idle.
use super::*;
use crate::provider::product::{ACCOUNT_CREATE_LIMIT, MARKET_PER_KEY, PER_TASK_3_PER_S};
use std::num::NonZeroU32;

fn limits() -> Limits {
    Limits::new(
        MARKET_PER_KEY,
        ACCOUNT_CREATE_LIMIT,
        Rate::new(NonZeroU32::MIN, Duration::from_secs(1)),
    )
}

#[tokio::test(start_paused = true)]
async fn suno_allows_three_per_second_per_task() {
    let l = limits();
    let t0 = Instant::now();
    for _ in 0..3 {
        l.status(Product::Suno, "a", Duration::ZERO).await.unwrap();
    }
    // The next call is a second after the first of the three, not a third of one.
    let wait = l.status(Product::Suno, "a", Duration::ZERO).await.unwrap_err();
    assert_eq!(wait, Duration::from_secs(1));
    // Another task has its own bucket.
    l.status(Product::Suno, "b", Duration::ZERO).await.unwrap();
    // Within budget the call waits its turn on the (paused) clock.
    l.status(Product::Suno, "a", Duration::from_secs(1)).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    assert_eq!(PER_TASK_3_PER_S.cells.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_key_budget_is_shared_by_every_task() {
    let l = limits();
    for i in 0..10 {
        l.status(Product::Market, &format!("t{i}"), Duration::ZERO)
            .await
            .unwrap();
    }
    let wait = l.status(Product::Market, "t10", Duration::ZERO).await.unwrap_err();
    assert_eq!(wait, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert!(l.status(Product::Market, "t11", Duration::ZERO).await.is_err());
    tokio::time::sleep(Duration::from_millis(1)).await;
    l.status(Product::Market, "t12", Duration::ZERO).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn creates_follow_the_account_limit() {
    let l = limits();
    for _ in 0..20 {
        l.create(Duration::ZERO).await.unwrap();
    }
    assert_eq!(l.create(Duration::ZERO).await.unwrap_err(), Duration::from_secs(10));
    assert_eq!(
        l.create(Duration::from_secs(9)).await.unwrap_err(),
        Duration::from_secs(10)
    );
    l.create(Duration::from_secs(10)).await.unwrap();
}

/// The three kinds of bucket, each with its documented rate.
#[derive(Debug, Clone, Copy)]
enum Bucket {
    Key,
    Create,
    Task,
}

const BUCKETS: [(Bucket, Rate); 3] = [
    (Bucket::Key, MARKET_PER_KEY),
    (Bucket::Create, ACCOUNT_CREATE_LIMIT),
    (Bucket::Task, PER_TASK_3_PER_S),
];

async fn call(l: &Limits, bucket: Bucket, budget: Duration) -> Result<(), Duration> {
    match bucket {
        Bucket::Key => l.key(budget).await.map(|_| ()),
        Bucket::Create => l.create(budget).await,
        // Suno: 3/s per task, under the key's 10/s.
        Bucket::Task => l.status(Product::Suno, "a", budget).await,
    }
}

#[tokio::test(start_paused = true)]
async fn no_window_holds_more_than_the_documented_calls() {
    let (mut over, mut counts) = (Vec::new(), Vec::new());
    for (bucket, rate) in BUCKETS {
        let l = limits();
        let n = rate.cells.get() as usize;
        let end = Instant::now() + rate.per * 4;
        let mut at = Vec::new();
        loop {
            call(&l, bucket, rate.per).await.unwrap();
            if Instant::now() >= end {
                break;
            }
            at.push(Instant::now());
        }
        // The half-open window [t, t + per) from every call time.
        let most = at
            .iter()
            .map(|&t| at.iter().filter(|&&u| u >= t && u < t + rate.per).count())
            .max()
            .unwrap();
        if most > n {
            over.push(format!(
                "{bucket:?}: {most} calls in one window of {:?}, limit {n}",
                rate.per
            ));
        }
        counts.push((bucket, at.len(), 4 * n));
    }
    assert!(over.is_empty(), "{over:#?}");
    // As fast as allowed is the whole quota: N in each of the four windows.
    for (bucket, made, quota) in counts {
        assert_eq!(made, quota, "{bucket:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_full_quota_passes_at_once_from_idle() {
    for (bucket, rate) in BUCKETS {
        let l = limits();
        for round in 0..2 {
            let t0 = Instant::now();
            for i in 0..rate.cells.get() {
                call(&l, bucket, Duration::ZERO)
                    .await
                    .unwrap_or_else(|w| panic!("{bucket:?}: call {i} of round {round} waits {w:?}"));
            }
            assert_eq!(t0.elapsed(), Duration::ZERO, "{bucket:?}");
            assert!(call(&l, bucket, Duration::ZERO).await.is_err(), "{bucket:?}");
            // Idle for a window: the bucket is as good as new.
            tokio::time::sleep(rate.per).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn idle_task_buckets_are_forgotten() {
    let l = limits();
    // Every call a new task, at the key's 10/s: the sweep on the 1024th
    // call keeps only the tasks called within the last second.
    for i in 0..SWEEP_EVERY {
        l.status(Product::Market, &format!("t{i}"), Duration::from_secs(1))
            .await
            .unwrap();
    }
    let kept = l.per_task[&Product::Market].len();
    assert!(kept > 0 && kept <= 10, "{kept} task buckets kept");
}

/// Fill the key's budget (10 calls) at the current instant.
async fn fill_key(l: &Limits) {
    for _ in 0..MARKET_PER_KEY.cells.get() {
        l.key(Duration::ZERO).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_the_key_refuses_is_not_counted_for_its_task() {
    let l = limits();
    fill_key(&l).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The key refuses each of these; none of them is made.
    for _ in 0..3 {
        let wait = l.status(Product::Suno, "a", Duration::ZERO).await.unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The key is free again, and the task has made no call: its full quota.
    for i in 0..3 {
        l.status(Product::Suno, "a", Duration::ZERO)
            .await
            .unwrap_or_else(|w| panic!("call {i} held back {w:?} for refused calls"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_waits_for_the_key_counts_for_its_task_when_made() {
    let l = limits();
    fill_key(&l).await;
    // Each call returns when it may be made; the task allows 3 in any second.
    let mut made = Vec::new();
    for _ in 0..6 {
        l.status(Product::Suno, "a", Duration::from_secs(5)).await.unwrap();
        made.push(Instant::now());
    }
    let most = made
        .iter()
        .map(|&t| {
            made.iter()
                .filter(|&&u| u >= t && u < t + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 3, "{most} calls of one task within a second: {made:?}");
}
