//! How soon to order again after an order succeeded: robust to a local clock
//! far off the CA's (a certificate the CA has just issued is fresh, whatever
//! the local clock says of its dates), and never more than
//! [`MAX_ORDERS_PER_DAY`] issued certificates a day, whatever else goes wrong
//! (CAs limit duplicate certificates: Let's Encrypt allows 5 a week).
//! Not here: the loop itself and back-off after failures (`renew`).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::tls::CertInfo;

/// Issued certificates per 24 hours after which orders wait.
pub const MAX_ORDERS_PER_DAY: usize = 3;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A CA's notBefore behind the local clock by more than this, on a
/// certificate just issued, means the local clock is ahead (CAs backdate
/// notBefore by an hour or so, never by a day).
pub const CLOCK_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// When to renew a certificate just issued, received at local time `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterIssue {
    pub renew_at: SystemTime,
    /// The local clock is this far ahead of the CA's, as far as can be told.
    pub clock_ahead: Option<Duration>,
    /// The certificate's own renewal time had passed already (a clock ahead,
    /// or a certificate shorter than the renewal margin): `renew_at` is
    /// counted from its arrival instead.
    pub from_arrival: bool,
}

/// The renewal time of a certificate just issued: its own (`remaining` of
/// its lifetime before notAfter) when still ahead by the local clock; when
/// not, the same share of its lifetime counted from `now`, its arrival, but
/// at least `floor` away, so a wrong clock (or a CA's short certificate)
/// cannot make the loop order again at once, and again, until the CA's rate
/// limit stops it.
pub fn after_issue(info: &CertInfo, now: SystemTime, remaining: f64, floor: Duration) -> AfterIssue {
    let own = info.renew_at(remaining);
    let clock_ahead = now
        .duration_since(info.not_before)
        .ok()
        .filter(|ahead| *ahead > CLOCK_AHEAD);
    if own > now {
        return AfterIssue {
            renew_at: own,
            clock_ahead,
            from_arrival: false,
        };
    }
    let share = own.duration_since(info.not_before).unwrap_or_default();
    AfterIssue {
        renew_at: now + share.max(floor),
        clock_ahead,
        from_arrival: true,
    }
}

/// The times of the last issued certificates, for the daily cap.
#[derive(Debug, Default, Clone)]
pub struct Issued(VecDeque<SystemTime>);

impl Issued {
    /// Note a certificate issued at `now`.
    pub fn record(&mut self, now: SystemTime) {
        self.0.push_back(now);
        while self.0.len() > MAX_ORDERS_PER_DAY {
            self.0.pop_front();
        }
    }

    /// The recorded times, oldest first.
    pub fn times(&self) -> impl Iterator<Item = SystemTime> + '_ {
        self.0.iter().copied()
    }

    /// How long the next order must wait for the cap; `None` when it may go.
    /// A time ahead of `now` (the clock was set back since) counts as `now`
    /// from then on: the wait is never longer than a day.
    pub fn wait(&mut self, now: SystemTime) -> Option<Duration> {
        for t in self.0.iter_mut() {
            *t = (*t).min(now);
        }
        if self.0.len() < MAX_ORDERS_PER_DAY {
            return None;
        }
        let oldest = *self.0.front()?;
        let free_at = oldest + DAY;
        free_at.duration_since(now).ok().filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn cert(not_before: SystemTime, days: u64) -> CertInfo {
        CertInfo {
            names: vec!["hooks.example.com".into()],
            not_before,
            not_after: not_before + Duration::from_secs(days * 24 * H),
            serial: "01".into(),
        }
    }

    /// The local clock 200 days ahead: the 90-day certificate the CA has just
    /// issued looks expired. It is renewed 60 days after its arrival (its own
    /// share), not again after a minute, and the clock is said to be ahead.
    #[test]
    fn a_certificate_just_issued_is_not_renewed_at_once_when_the_clock_is_far_ahead() {
        let ca_now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let issued = cert(ca_now - Duration::from_secs(H), 90);
        let local = ca_now + Duration::from_secs(200 * 24 * H);
        let next = after_issue(&issued, local, 1.0 / 3.0, Duration::from_secs(60));
        let share = issued.renew_at(1.0 / 3.0).duration_since(issued.not_before).unwrap();
        assert_eq!(next.renew_at, local + share);
        assert!(next.from_arrival);
        assert_eq!(next.clock_ahead, Some(Duration::from_secs(200 * 24 * H + H)));
    }

    /// A right clock (the CA backdating notBefore by an hour): its own renewal
    /// time, no warning.
    #[test]
    fn a_right_clock_keeps_the_certificates_own_renewal_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let issued = cert(now - Duration::from_secs(H), 90);
        let next = after_issue(&issued, now, 1.0 / 3.0, Duration::from_secs(60));
        assert_eq!(
            next,
            AfterIssue {
                renew_at: issued.renew_at(1.0 / 3.0),
                clock_ahead: None,
                from_arrival: false
            }
        );
    }

    /// A CA whose certificates are shorter than the margin: no sooner than the floor.
    #[test]
    fn a_certificate_already_due_on_arrival_waits_at_least_the_floor() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut short = cert(now - Duration::from_secs(10), 0);
        short.not_after = now + Duration::from_secs(1);
        let next = after_issue(&short, now, 0.5, Duration::from_secs(60));
        assert_eq!(next.renew_at, now + Duration::from_secs(60));
        assert_eq!(next.clock_ahead, None);
    }

    #[test]
    fn the_fourth_certificate_in_a_day_waits_until_the_first_is_a_day_old() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut issued = Issued::default();
        for i in 0..MAX_ORDERS_PER_DAY as u64 {
            assert_eq!(issued.wait(t0 + Duration::from_secs(i * H)), None);
            issued.record(t0 + Duration::from_secs(i * H));
        }
        let now = t0 + Duration::from_secs(3 * H);
        assert_eq!(issued.wait(now), Some(DAY - Duration::from_secs(3 * H)));
        assert_eq!(issued.wait(t0 + DAY), None);
        issued.record(t0 + DAY);
        assert_eq!(issued.wait(t0 + DAY), Some(Duration::from_secs(H)));
    }

    #[test]
    fn a_clock_set_back_waits_a_day_at_most() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut issued = Issued::default();
        for _ in 0..MAX_ORDERS_PER_DAY {
            issued.record(t0 + DAY * 200);
        }
        assert_eq!(issued.wait(t0), Some(DAY));
        assert_eq!(issued.wait(t0 + DAY), None);
    }
}
