//! Pacing of requests to the provider, on tokio's clock (so tests can pause
//! time): one bucket per API key for status and download-url calls, one for
//! creates (the account's 20 per 10 s), and one bucket per task per product
//! for status calls. A caller waits its turn up to a budget; past that it is
//! told how long it would have waited, so a poller can reschedule instead of
//! holding a worker.
//!
//! Each limit is documented as "N requests per window", and the provider
//! answers 429 past it. A bucket is a sliding window log (`limits/window.rs`):
//! never more than N calls in any window of that length, and all N at once
//! from idle (recovery after an outage polls many tasks together). governor's
//! GCRA, used here before, cannot give both: with a burst of N and one cell
//! every `per / N` it allowed 2N − 1 calls in the first window from idle;
//! without the burst it would allow only one call at once. A bucket keeps at
//! most N instants; a task's bucket is dropped once idle for its window
//! (checked every 1024 status calls), so memory stays bounded with
//! many tasks.
//!
//! Does not know what the requests are (see [`super::client`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::product::{Product, Rate};
use window::Window;

mod window;

/// Forget idle per-task buckets every this many status calls.
const SWEEP_EVERY: u64 = 1024;

/// One bucket per task of a product, created on a task's first call.
#[derive(Debug)]
struct PerTask {
    rate: Rate,
    tasks: Mutex<HashMap<String, Window>>,
}

impl PerTask {
    /// Take a call at `now` in both the task's bucket and the key's, or in
    /// neither: the longer of the two waits when either refuses. So a call
    /// is counted for its task only when it is made, and at the instant it
    /// is made. Locks the task map, then the key (nothing locks the other
    /// way round).
    fn take_with_key(&self, task_id: &str, key: &Mutex<Window>, now: Instant) -> Result<(), Duration> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = key.lock().unwrap_or_else(|e| e.into_inner());
        let task_wait = tasks.get(task_id).map_or(Duration::ZERO, |w| w.wait(now));
        let wait = task_wait.max(key.wait(now));
        if !wait.is_zero() {
            return Err(wait);
        }
        key.take(now)?;
        match tasks.get_mut(task_id) {
            Some(w) => w.take(now),
            None => {
                let mut w = Window::new(self.rate);
                w.take(now)?;
                tasks.insert(task_id.to_string(), w);
                Ok(())
            }
        }
    }

    /// Drop the buckets of tasks not called within their window: a new
    /// bucket allows exactly what such an idle one would.
    fn forget_idle(&self, now: Instant) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|_, w| !w.is_idle(now));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Request pacing for one API key.
#[derive(Debug)]
pub struct Limits {
    /// Status and download-url calls share the key's budget.
    per_key: Mutex<Window>,
    /// Creates have their own account-wide budget.
    create: Mutex<Window>,
    /// Per product: each task's own budget (Suno and 4o document 3/s per task).
    per_task: HashMap<Product, PerTask>,
    calls: AtomicU64,
}

fn take(window: &Mutex<Window>) -> Result<(), Duration> {
    window.lock().unwrap_or_else(|e| e.into_inner()).take(Instant::now())
}

impl Limits {
    /// `per_task_default` applies to products that document no per-task limit.
    pub fn new(per_key: Rate, create: Rate, per_task_default: Rate) -> Limits {
        let per_task = Product::ALL
            .into_iter()
            .map(|p| {
                let rate = p.poll_limits().per_task.unwrap_or(per_task_default);
                (
                    p,
                    PerTask {
                        rate,
                        tasks: Mutex::new(HashMap::new()),
                    },
                )
            })
            .collect();
        Limits {
            per_key: Mutex::new(Window::new(per_key)),
            create: Mutex::new(Window::new(create)),
            per_task,
            calls: AtomicU64::new(0),
        }
    }

    /// Wait for a status call's turn (in the task's bucket and the key's at
    /// once). `Err(wait)` when the turn is further away than `budget`; the
    /// refused call is then counted in neither bucket.
    pub async fn status(&self, product: Product, task_id: &str, budget: Duration) -> Result<(), Duration> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let now = Instant::now();
            for tasks in self.per_task.values() {
                tasks.forget_idle(now);
            }
        }
        let tasks = &self.per_task[&product];
        self.wait(|| tasks.take_with_key(task_id, &self.per_key, Instant::now()), budget)
            .await
            .map(|_| ())
    }

    /// Wait for a turn in the key's shared budget (download-url and status calls).
    pub async fn key(&self, budget: Duration) -> Result<Duration, Duration> {
        self.wait(|| take(&self.per_key), budget).await
    }

    /// Wait for a create call's turn in the account's create budget.
    pub async fn create(&self, budget: Duration) -> Result<(), Duration> {
        self.wait(|| take(&self.create), budget).await.map(|_| ())
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
mod tests;
