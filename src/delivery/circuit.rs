//! The circuit breaker as a value: a subscriber that fails `threshold` times
//! in a row is paused as a whole (1 s, doubling to 60 s), then probed with one
//! request, and resumes at full speed once it answers. Time is tokio's, so
//! tests pause and advance it.

use std::time::Duration;

use tokio::time::Instant;

/// First pause of an open circuit; doubles per failed probe up to [`MAX_PAUSE`].
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Full speed.
    Closed,
    /// Paused: no requests until the pause ends.
    Open,
    /// The pause ended: one probe at a time.
    HalfOpen,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// One subscriber's circuit.
#[derive(Debug, Clone)]
pub struct Circuit {
    /// Consecutive failures that open the circuit.
    threshold: u32,
    /// Consecutive failures so far.
    failures: u32,
    /// Set while open or half-open: when the current pause ends.
    open_until: Option<Instant>,
    /// The next pause if a probe fails.
    pause: Duration,
}

impl Circuit {
    pub fn new(threshold: u32) -> Circuit {
        Circuit {
            threshold: threshold.max(1),
            failures: 0,
            open_until: None,
            pause: FIRST_PAUSE,
        }
    }

    /// A new threshold (reload) without forgetting the current state.
    pub fn set_threshold(&mut self, threshold: u32) {
        self.threshold = threshold.max(1);
    }

    pub fn state(&self, now: Instant) -> State {
        match self.open_until {
            Some(t) if t > now => State::Open,
            Some(_) => State::HalfOpen,
            None => State::Closed,
        }
    }

    /// When an open circuit lets a probe through.
    pub fn reopens_at(&self) -> Option<Instant> {
        self.open_until
    }

    /// How many more requests may start now, given `concurrency` and `busy` in flight.
    pub fn capacity(&self, now: Instant, concurrency: usize, busy: usize) -> usize {
        match self.state(now) {
            State::Open => 0,
            State::HalfOpen => usize::from(busy == 0),
            State::Closed => concurrency.saturating_sub(busy),
        }
    }

    /// The subscriber answered: close. Returns whether the circuit was open.
    pub fn succeeded(&mut self) -> bool {
        let was_open = self.open_until.is_some();
        self.failures = 0;
        self.open_until = None;
        self.pause = FIRST_PAUSE;
        was_open
    }

    /// The subscriber failed a request sent at `started`: count it, and open
    /// (or, after a failed probe, open again with a longer pause). Returns the
    /// pause when it (re)opened. A request sent before the circuit opened or
    /// during its pause is no probe: its failure changes nothing (with many
    /// requests in flight, they would otherwise stretch the pause at once).
    pub fn failed(&mut self, started: Instant, now: Instant) -> Option<Duration> {
        if self.open_until.is_some_and(|until| started < until) {
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        if self.open_until.is_none() && self.failures < self.threshold {
            return None;
        }
        let pause = self.pause;
        self.open_until = Some(now + pause);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_at_the_threshold_pauses_doubling_and_closes_on_success() {
        let mut c = Circuit::new(3);
        let t = Instant::now();
        assert_eq!(c.capacity(t, 8, 2), 6);
        assert_eq!(c.failed(t, t), None);
        assert_eq!(c.failed(t, t), None);
        assert_eq!(c.failed(t, t), Some(Duration::from_secs(1)), "third failure opens");
        // Requests still in flight from before it opened fail too: the pause stays.
        for _ in 0..10 {
            assert_eq!(c.failed(t, Instant::now()), None);
        }
        assert_eq!(c.reopens_at(), Some(t + Duration::from_secs(1)));
        assert_eq!(c.state(Instant::now()), State::Open);
        assert_eq!(c.capacity(Instant::now(), 8, 0), 0);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(c.state(Instant::now()), State::Open);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(c.state(Instant::now()), State::HalfOpen);
        assert_eq!(c.capacity(Instant::now(), 8, 0), 1, "one probe");
        assert_eq!(c.capacity(Instant::now(), 8, 1), 0);
        // Failed probes double the pause up to the maximum.
        let mut pauses = Vec::new();
        for _ in 0..8 {
            pauses.push(c.failed(Instant::now(), Instant::now()).unwrap().as_secs());
            tokio::time::advance(c.reopens_at().unwrap() - Instant::now()).await;
        }
        assert_eq!(pauses, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(c.succeeded(), "was open");
        assert_eq!(c.state(Instant::now()), State::Closed);
        assert_eq!(c.capacity(Instant::now(), 8, 0), 8, "full speed at once");
        assert_eq!(c.failed(Instant::now(), Instant::now()), None, "the count starts over");
    }
}
