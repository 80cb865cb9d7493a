//! One bucket of a provider limit ("N requests per `per`"), kept as a sliding
//! window log: the times of its last N calls. A call is allowed when fewer
//! than N calls were made, or when the oldest of the last N is at least `per`
//! old; otherwise it waits until that one is. So no half-open window
//! `[t, t + per)` ever holds more than N calls, and an idle bucket still
//! allows all N at once.
//!
//! Holds no clock of its own: the caller passes tokio's `now`, so tests that
//! pause time drive it. Does not wait (see [`super::Limits`]).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::provider::product::Rate;

/// The times of a bucket's last `rate.cells` calls, oldest first.
#[derive(Debug, Clone)]
pub(super) struct Window {
    rate: Rate,
    calls: VecDeque<Instant>,
}

impl Window {
    pub(super) fn new(rate: Rate) -> Window {
        Window {
            rate,
            calls: VecDeque::new(),
        }
    }

    /// How long from `now` until a call is allowed (zero: at once).
    pub(super) fn wait(&self, now: Instant) -> Duration {
        match self.calls.front() {
            Some(&oldest) if self.calls.len() >= self.cells() => {
                (oldest + self.rate.per).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }

    /// Take a call at `now`, or say how long until one is allowed.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let wait = self.wait(now);
        if !wait.is_zero() {
            return Err(wait);
        }
        if self.calls.len() >= self.cells() {
            self.calls.pop_front();
        }
        self.calls.push_back(now);
        Ok(())
    }

    /// Whether the bucket is as good as a new one at `now`: every call it
    /// remembers is at least `per` old (it would allow all N at once).
    pub(super) fn is_idle(&self, now: Instant) -> bool {
        self.calls
            .back()
            .is_none_or(|last| now.saturating_duration_since(*last) >= self.rate.per)
    }

    fn cells(&self) -> usize {
        self.rate.cells.get() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn rate(n: u32, per_ms: u64) -> Rate {
        Rate::new(NonZeroU32::new(n).unwrap(), Duration::from_millis(per_ms))
    }

    #[test]
    fn all_n_at_once_then_each_slot_frees_per_after_its_call() {
        let t0 = Instant::now();
        let mut w = Window::new(rate(3, 1000));
        for _ in 0..3 {
            w.take(t0).unwrap();
        }
        assert_eq!(w.take(t0), Err(Duration::from_millis(1000)));
        let t = t0 + Duration::from_millis(999);
        assert_eq!(w.take(t), Err(Duration::from_millis(1)));
        let t = t0 + Duration::from_millis(1000);
        for _ in 0..3 {
            w.take(t).unwrap();
        }
        assert!(w.take(t).is_err());
    }

    #[test]
    fn idle_once_its_newest_call_is_per_old() {
        let t0 = Instant::now();
        let mut w = Window::new(rate(2, 1000));
        assert!(w.is_idle(t0));
        w.take(t0).unwrap();
        w.take(t0 + Duration::from_millis(500)).unwrap();
        assert!(!w.is_idle(t0 + Duration::from_millis(1499)));
        assert!(w.is_idle(t0 + Duration::from_millis(1500)));
    }
}
