//! One delivery's durable state, for every backend: the state, the attempt
//! count, the position in the retry schedule, the recent attempts and the
//! last error — and what an attempt and its outcome change in it.

use serde::{Deserialize, Serialize};

use super::{Attempt, Delivery, DeliveryState, Outcome};

/// Attempts kept per delivery; older ones are dropped (the count stays exact).
pub const HISTORY: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRow {
    pub state: DeliveryState,
    /// Attempts made in total (across replays); may exceed `history.len()`.
    pub attempts: u32,
    /// Position in the retry schedule (failures since the last replay).
    pub step: u32,
    /// When the state was set (ms).
    pub at_ms: u64,
    /// The most recent attempts, oldest first.
    pub history: Vec<Attempt>,
    /// Why it failed last (only on failure).
    pub last_error: Option<String>,
}

impl ResultRow {
    pub fn new(now_ms: u64) -> ResultRow {
        ResultRow {
            state: DeliveryState::Pending,
            attempts: 0,
            step: 0,
            at_ms: now_ms,
            history: Vec::new(),
            last_error: None,
        }
    }

    /// Record an attempt (if one was made) and what follows from it.
    pub fn apply(&mut self, attempt: Option<&Attempt>, outcome: &Outcome, now_ms: u64) {
        if let Some(a) = attempt {
            self.attempts = self.attempts.max(a.attempt);
            // A delivery has no error, also when a pull client acknowledged it (no status).
            let failed = *outcome != Outcome::Delivered && a.status.is_none_or(|s| !(200..300).contains(&s));
            self.last_error = failed.then(|| {
                a.error
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {}", a.status.unwrap_or(0)))
            });
            self.history.push(a.clone());
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
        self.at_ms = now_ms;
        match outcome {
            Outcome::Delivered => self.state = DeliveryState::Delivered,
            Outcome::Skipped => self.state = DeliveryState::Skipped,
            Outcome::Retry { due_ms } => {
                self.state = DeliveryState::Retrying { due_ms: *due_ms };
                // A wait with no attempt (a callback waiting for verification)
                // keeps its place in the schedule.
                if attempt.is_some() {
                    self.step += 1;
                }
            }
            Outcome::Dead { error } => {
                self.state = DeliveryState::Dead;
                self.last_error = Some(error.clone());
            }
            Outcome::Defer { due_ms } => self.state = DeliveryState::AwaitingMedia { due_ms: *due_ms },
            Outcome::Gone => {}
        }
    }

    /// Queued again by an operator: due now, the schedule from its start.
    pub fn replayed(&mut self, now_ms: u64) {
        self.state = DeliveryState::Retrying { due_ms: now_ms };
        self.step = 0;
        self.at_ms = now_ms;
    }

    /// The admin view of a delivery with this result, or of one not
    /// attempted yet (no result row).
    pub fn view(row: Option<ResultRow>, subscriber: &str) -> Delivery {
        row.unwrap_or_else(|| ResultRow::new(0)).delivery(subscriber)
    }

    /// The admin view of it.
    pub fn delivery(self, subscriber: &str) -> Delivery {
        Delivery {
            subscriber: subscriber.to_string(),
            state: self.state,
            attempts: self.attempts,
            history: self.history,
            last_error: self.last_error,
        }
    }
}
