//! Pacing of requests to the provider, on tokio's clock (so tests can pause
//! time): one bucket per API key for status and download-url calls, one for
//! creates (the account's 20 per 10 s), and one bucket per task per product
//! for status calls. A caller waits its turn up to a budget; past that it is
//! told how long it would have waited, so a poller can reschedule instead of
//! holding a worker.
//!
//! Does not know what the requests are (see [`super::client`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::product::{Product, Rate};

/// governor's clock reading tokio's (pausable) time.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;
type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, TokioClock, NoOpMiddleware<Nanos>>;

/// Forget idle per-task buckets every this many status calls.
const SWEEP_EVERY: u64 = 1024;

/// Request pacing for one API key.
#[derive(Debug)]
pub struct Limits {
    /// Status and download-url calls share the key's budget.
    per_key: Direct,
    /// Creates have their own account-wide budget.
    create: Direct,
    /// Per product: each task's own budget (Suno and 4o document 3/s per task).
    per_task: HashMap<Product, Keyed>,
    clock: TokioClock,
    calls: AtomicU64,
}

fn quota(rate: Rate) -> Quota {
    let period = (rate.per / rate.cells.get()).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("period is positive")
        .allow_burst(rate.cells)
}

impl Limits {
    /// `per_task_default` applies to products that document no per-task limit.
    pub fn new(per_key: Rate, create: Rate, per_task_default: Rate) -> Limits {
        let clock = TokioClock::default();
        let per_task = Product::ALL
            .into_iter()
            .map(|p| {
                let rate = p.poll_limits().per_task.unwrap_or(per_task_default);
                (
                    p,
                    Keyed::new(quota(rate), DefaultKeyedStateStore::default(), clock.clone()),
                )
            })
            .collect();
        Limits {
            per_key: Direct::new(quota(per_key), InMemoryState::default(), clock.clone()),
            create: Direct::new(quota(create), InMemoryState::default(), clock.clone()),
            per_task,
            clock,
            calls: AtomicU64::new(0),
        }
    }

    /// Wait for a status call's turn (the task's bucket, then the key's).
    /// `Err(wait)` when the turn is further away than `budget`.
    pub async fn status(&self, product: Product, task_id: &str, budget: Duration) -> Result<(), Duration> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for keyed in self.per_task.values() {
                keyed.retain_recent();
            }
        }
        let key = task_id.to_string();
        let keyed = &self.per_task[&product];
        let spent = self
            .wait(
                || keyed.check_key(&key).map_err(|n| n.wait_time_from(self.clock.now())),
                budget,
            )
            .await?;
        self.key(budget.saturating_sub(spent)).await.map(|_| ())
    }

    /// Wait for a turn in the key's shared budget (download-url and status calls).
    pub async fn key(&self, budget: Duration) -> Result<Duration, Duration> {
        self.wait(
            || self.per_key.check().map_err(|n| n.wait_time_from(self.clock.now())),
            budget,
        )
        .await
    }

    /// Wait for a create call's turn in the account's create budget.
    pub async fn create(&self, budget: Duration) -> Result<(), Duration> {
        self.wait(
            || self.create.check().map_err(|n| n.wait_time_from(self.clock.now())),
            budget,
        )
        .await
        .map(|_| ())
    }

    /// Retry `check` until it passes; the time spent, or the wait that would
    /// exceed `budget`.
    async fn wait(&self, check: impl Fn() -> Result<(), Duration>, budget: Duration) -> Result<Duration, Duration> {
        let mut spent = Duration::ZERO;
        loop {
            match check() {
                Ok(()) => return Ok(spent),
                Err(wait) if spent + wait > budget => return Err(wait),
                Err(wait) => {
                    tokio::time::sleep(wait).await;
                    spent += wait;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        let t0 = tokio::time::Instant::now();
        for _ in 0..3 {
            l.status(Product::Suno, "a", Duration::ZERO).await.unwrap();
        }
        let wait = l.status(Product::Suno, "a", Duration::ZERO).await.unwrap_err();
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        // Another task has its own bucket.
        l.status(Product::Suno, "b", Duration::ZERO).await.unwrap();
        // Within budget the call waits its turn on the (paused) clock.
        l.status(Product::Suno, "a", Duration::from_secs(1)).await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(333));
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
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        l.status(Product::Market, "t11", Duration::ZERO).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn creates_follow_the_account_limit() {
        let l = limits();
        for _ in 0..20 {
            l.create(Duration::ZERO).await.unwrap();
        }
        assert_eq!(l.create(Duration::ZERO).await.unwrap_err(), Duration::from_millis(500));
        l.create(Duration::from_secs(1)).await.unwrap();
    }
}
