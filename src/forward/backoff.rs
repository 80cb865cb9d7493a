//! Reconnection back-off as a value: the wait doubles from `base` up to
//! `max`, and each wait is drawn from its upper half ("equal jitter"), so
//! forwarders that lost the relay together do not come back together.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Failures since the last success.
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay_with(self.failures, fastrand::f64());
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// The wait after `failures` earlier failures, with the jitter's draw (0..1) given.
    pub fn delay_with(&self, failures: u32, draw: f64) -> Duration {
        let cap = self
            .base
            .saturating_mul(2u32.saturating_pow(failures.min(30)))
            .min(self.max);
        cap / 2 + (cap / 2).mul_f64(draw.clamp(0.0, 1.0))
    }

    /// A success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_within_the_jitter() {
        let ms = Duration::from_millis;
        let b = Backoff::new(ms(200), ms(5000));
        assert_eq!(b.delay_with(0, 0.0), ms(100));
        assert_eq!(b.delay_with(0, 1.0), ms(200));
        assert_eq!(b.delay_with(3, 1.0), ms(1600));
        assert_eq!(b.delay_with(10, 1.0), ms(5000), "capped");
        assert_eq!(b.delay_with(u32::MAX, 0.0), ms(2500), "no overflow");
        let mut b = Backoff::new(ms(200), ms(5000));
        for i in 0..20 {
            let d = b.next_delay();
            let cap = ms(200u64.saturating_mul(1 << i.min(20))).min(ms(5000));
            assert!(d >= cap / 2 && d <= cap, "{i}: {d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= ms(200));
    }
}
