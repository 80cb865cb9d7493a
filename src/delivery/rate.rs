//! A subscriber's rate limit (`rate = "50/s"`): one request per cell of the
//! period, no bursts, so a subscriber is never sent more than it asked for.
//! A reload that keeps the rate keeps the limiter (its window goes on); a
//! changed rate gets a new limiter whose first request waits one cell of the
//! new rate after the last request sent under the old one. The limiter is the
//! subscriber's, not its lane's ([`Limiters`]): a new lane of the subscriber
//! (moved to another route, removed and put back, switched to pull and back)
//! goes on with it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Rate;

/// One subscriber's limiter.
pub(super) struct Limiter {
    rate: Rate,
    cells: governor::DefaultDirectRateLimiter,
    /// When the subscriber's last request was let through, by this limiter
    /// or by one it replaced (shared with them).
    last: Arc<Mutex<Option<Instant>>>,
    /// Set until this limiter lets a first request through: it waits for a
    /// cell counted from `last` (the previous rate's last request).
    fresh: std::sync::atomic::AtomicBool,
}

impl Limiter {
    /// Wait until the next request may go (cancel-safe: nothing is counted
    /// for a wait dropped before it ends).
    pub(super) async fn until_ready(&self) {
        use std::sync::atomic::Ordering;
        if self.fresh.load(Ordering::Relaxed) {
            let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(last) = last {
                tokio::time::sleep_until(last + cell(self.rate)).await;
            }
        }
        self.cells.until_ready().await;
        self.fresh.store(false, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

fn cell(rate: Rate) -> Duration {
    (rate.per / rate.count.get()).max(Duration::from_nanos(1))
}

/// The limiter for `rate`, replacing `old` (the one in use before a reload,
/// `None` at a lane's start): `old` itself when the rate is the same.
pub(super) fn limiter(old: Option<&Arc<Limiter>>, rate: Option<Rate>) -> Option<Arc<Limiter>> {
    let rate = rate?;
    if let Some(old) = old.filter(|o| o.rate == rate) {
        return Some(old.clone());
    }
    let quota = governor::Quota::with_period(cell(rate))?.allow_burst(NonZeroU32::MIN);
    Some(Arc::new(Limiter {
        rate,
        cells: governor::RateLimiter::direct(quota),
        last: old.map(|o| o.last.clone()).unwrap_or_default(),
        fresh: true.into(),
    }))
}

/// Every subscriber's limiter, by name: kept while the subscriber has no
/// lane (removed, or a pull subscriber), for the lane it has next.
#[derive(Default)]
pub(super) struct Limiters(Mutex<HashMap<String, Arc<Limiter>>>);

impl Limiters {
    /// Subscriber `name`'s limiter for `rate` ([`limiter`] over the one it
    /// had last), remembered for its next lanes.
    pub(super) fn get(&self, name: &str, rate: Option<Rate>) -> Option<Arc<Limiter>> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let l = limiter(all.get(name), rate);
        match &l {
            Some(l) => all.insert(name.to_string(), l.clone()),
            None => all.remove(name),
        };
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, per: Duration) -> Option<Rate> {
        Some(Rate {
            count: NonZeroU32::new(count).unwrap(),
            per,
        })
    }

    #[test]
    fn one_request_per_cell_no_burst() {
        let l = limiter(None, rate(1000, Duration::from_secs(1))).unwrap();
        assert!(l.cells.check().is_ok());
        assert!(l.cells.check().is_err(), "burst of one");
        assert!(limiter(None, None).is_none());
    }

    #[test]
    fn the_same_rate_keeps_the_limiter_and_its_window() {
        let l = limiter(None, rate(6, Duration::from_secs(60))).unwrap();
        assert!(l.cells.check().is_ok());
        let kept = limiter(Some(&l), rate(6, Duration::from_secs(60))).unwrap();
        assert!(Arc::ptr_eq(&l, &kept));
        assert!(
            kept.cells.check().is_err(),
            "the cell used before the reload still counts"
        );
        let changed = limiter(Some(&l), rate(5, Duration::from_secs(60))).unwrap();
        assert!(!Arc::ptr_eq(&l, &changed));
        assert!(limiter(Some(&l), None).is_none(), "rate removed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_rate_counts_its_first_cell_from_the_last_request() {
        let l = limiter(None, rate(1, Duration::from_secs(10))).unwrap();
        let t0 = Instant::now();
        l.until_ready().await;
        assert_eq!(Instant::now(), t0, "the first request of a lane goes at once");
        tokio::time::advance(Duration::from_secs(1)).await;
        // 2/s: one cell is 500 ms, and 1 s went by since the last request.
        let faster = limiter(Some(&l), rate(2, Duration::from_secs(1))).unwrap();
        faster.until_ready().await;
        assert_eq!(
            Instant::now(),
            t0 + Duration::from_secs(1),
            "no wait: a cell of the new rate has passed"
        );
        // 1/m: the first request under it waits a minute after the last one.
        let slower = limiter(Some(&faster), rate(1, Duration::from_secs(60))).unwrap();
        slower.until_ready().await;
        assert_eq!(Instant::now(), t0 + Duration::from_secs(61));
    }
}
