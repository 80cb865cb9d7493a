//! The expected tasks' figures for `/metrics` (`hookrelay_tasks`, the oldest
//! open task's age): the store walks every task to count them (0.24 s at
//! 300,000 tasks on one host; in cluster mode every row streamed from NATS),
//! so a scrape reads them again only once the last walk is small against
//! the time since: a walk of [`SLOW`] or more is reused for [`SHARE`] times
//! its own length, [`AT_MOST`] at most (scrapes then spend at most about
//! 1/[`SHARE`] of a core on it, and the figures are that much older). A walk
//! quicker than that is never reused: a small store's figures are always the
//! store's. Scrapes at once walk once (the others wait for its figures), and
//! none reuses figures while the store cannot be read (the gauges are then
//! left out, as the store's other figures are).

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;

use tokio::time::Instant;

use crate::store::{StoreError, TaskStats};

/// A walk this long or longer is reused.
pub const SLOW: Duration = Duration::from_millis(50);
/// For this many times its own length.
pub const SHARE: u32 = 20;
/// And this long at most.
pub const AT_MOST: Duration = Duration::from_secs(30);

/// The last walk that may be reused.
#[derive(Default)]
pub struct TaskFigures {
    last: Mutex<Option<Walk>>,
}

struct Walk {
    /// When it may be reused until.
    until: Instant,
    stats: TaskStats,
}

impl TaskFigures {
    /// The figures: the last walk's while it may be reused and `readable`
    /// (the store answered this scrape's other reads), else `walk`'s (an
    /// error forgets the last one: the store cannot be read now).
    pub async fn get<F>(&self, readable: bool, walk: F) -> Result<TaskStats, StoreError>
    where
        F: Future<Output = Result<TaskStats, StoreError>>,
    {
        let mut last = self.last.lock().await;
        let now = Instant::now();
        if !readable {
            *last = None;
        }
        if let Some(w) = last.as_ref().filter(|w| now < w.until) {
            return Ok(w.stats.clone());
        }
        // Bounded: the lock is held across it, and a walk whose NATS went
        // away mid-stream may never end by itself.
        let result = match tokio::time::timeout(AT_MOST, walk).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "counting the expected tasks took over {}s",
                AT_MOST.as_secs()
            ))),
        };
        let took = now.elapsed();
        *last = match &result {
            Ok(stats) if took >= SLOW => Some(Walk {
                until: Instant::now() + (took * SHARE).min(AT_MOST),
                stats: stats.clone(),
            }),
            _ => None,
        };
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A walk taking `took`, whose figures say how many walks there were.
    async fn walk(n: &AtomicU64, took: Duration) -> Result<TaskStats, StoreError> {
        tokio::time::sleep(took).await;
        let walks = n.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(TaskStats {
            by_state: Vec::new(),
            oldest_open_ms: Some(walks),
        })
    }

    fn walks(s: &TaskStats) -> u64 {
        s.oldest_open_ms.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_walk_is_never_reused() {
        let f = TaskFigures::default();
        let n = AtomicU64::new(0);
        for i in 1..=3 {
            let s = f.get(true, walk(&n, Duration::from_millis(49))).await.unwrap();
            assert_eq!(walks(&s), i, "every scrape walks");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_reused_while_the_store_cannot_be_read_and_never_past_the_cap() {
        let f = TaskFigures::default();
        let n = AtomicU64::new(0);
        f.get(true, walk(&n, Duration::from_secs(1))).await.unwrap();
        // The store away (this scrape's other reads failed): walked again,
        // whose error the scrape gets, not the old figures.
        let away = f.get(false, async { Err(StoreError::Engine("away".into())) }).await;
        assert!(away.is_err());
        // A walk of 10 s is reused for 30 s, not 200.
        f.get(true, walk(&n, Duration::from_secs(10))).await.unwrap();
        tokio::time::advance(AT_MOST - Duration::from_millis(1)).await;
        assert_eq!(
            walks(&f.get(true, walk(&n, Duration::ZERO)).await.unwrap()),
            2,
            "reused"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            walks(&f.get(true, walk(&n, Duration::ZERO)).await.unwrap()),
            3,
            "walked again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_at_once_walk_once() {
        let f = TaskFigures::default();
        let n = AtomicU64::new(0);
        let took = Duration::from_millis(500);
        let (a, b) = tokio::join!(f.get(true, walk(&n, took)), f.get(true, walk(&n, took)));
        assert_eq!(
            (walks(&a.unwrap()), walks(&b.unwrap())),
            (1, 1),
            "the second waited for the first's"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_walk_is_reused_for_twenty_times_its_length() {
        let f = TaskFigures::default();
        let n = AtomicU64::new(0);
        let took = Duration::from_millis(250);
        assert_eq!(walks(&f.get(true, walk(&n, took)).await.unwrap()), 1);
        tokio::time::advance(took * SHARE - Duration::from_millis(1)).await;
        assert_eq!(walks(&f.get(true, walk(&n, took)).await.unwrap()), 1, "reused");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(walks(&f.get(true, walk(&n, took)).await.unwrap()), 2, "walked again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_is_not_reused_and_forgets_the_last_walk() {
        let f = TaskFigures::default();
        let n = AtomicU64::new(0);
        let took = Duration::from_millis(100);
        f.get(true, walk(&n, took)).await.unwrap();
        // Reuse ends only by time; the next walk once it has, an error.
        tokio::time::advance(took * SHARE).await;
        let failed = f.get(true, async { Err(StoreError::Engine("away".into())) }).await;
        assert!(failed.is_err());
        assert_eq!(
            walks(&f.get(true, walk(&n, took)).await.unwrap()),
            2,
            "walked, not the old figures"
        );
    }
}
