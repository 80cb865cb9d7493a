//! A subscriber's rate limit (`rate = "50/s"`): one request per cell of the
//! period, no bursts, so a subscriber is never sent more than it asked for.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Rate;

pub(super) type Limiter = governor::DefaultDirectRateLimiter;

pub(super) fn limiter(rate: Option<Rate>) -> Option<Arc<Limiter>> {
    let rate = rate?;
    let per_cell = rate.per / rate.count.get();
    let quota = governor::Quota::with_period(per_cell.max(Duration::from_nanos(1)))?.allow_burst(NonZeroU32::MIN);
    Some(Arc::new(governor::RateLimiter::direct(quota)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_cell_no_burst() {
        let l = limiter(Some(Rate {
            count: NonZeroU32::new(1000).unwrap(),
            per: Duration::from_secs(1),
        }))
        .unwrap();
        assert!(l.check().is_ok());
        assert!(l.check().is_err(), "burst of one");
        assert!(limiter(None).is_none());
    }
}
