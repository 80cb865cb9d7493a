//! A retry handed out before it is due: the NAK with its delay (a write
//! after the result's) was lost (NATS did not take it, the relay died
//! between the two), or this relay's clock is behind the one that scheduled
//! it. It goes back for the rest of its delay, unsent (the schedule, a
//! subscriber's `Retry-After`).
//!
//! The due time was written by the relay that scheduled the retry, by its
//! clock. One hand-back waits no longer than the retry's own delay
//! (`due - at`, both by that clock), and the first one that finds the due
//! time further off than that rewrites it by this relay's clock (`now +
//! wait`, over the result's revision): when the message comes again it is
//! due here, so a clock behind by more than the delay costs at most one
//! more delay in all, never the skew. The rewrite is in the result, so a
//! restart keeps it; a failed one only leaves the hand-back to be repeated.
//! A replay (due when it was queued) is never early. An `after_archive`
//! delivery waiting for media is not a retry here: it is looked at again
//! before its due time, to find its media archived by another relay.

use std::time::Duration;

use crate::store::result::ResultRow;
use crate::store::DeliveryState;

/// How long until a retry whose result says it is due later than `now_ms`
/// (beyond [`super::EARLY_MS`]) is due, and the result to write first when
/// its due time, by this clock, is further off than that (None: as it is).
pub(super) fn early_at(row: &ResultRow, now_ms: u64) -> Option<(Duration, Option<ResultRow>)> {
    let DeliveryState::Retrying { due_ms } = row.state else {
        return None;
    };
    let wait = due_ms.saturating_sub(now_ms).min(due_ms.saturating_sub(row.at_ms));
    if wait <= super::EARLY_MS {
        return None;
    }
    let here = now_ms + wait;
    let rewrite = (due_ms > here + super::EARLY_MS).then(|| ResultRow {
        state: DeliveryState::Retrying { due_ms: here },
        ..row.clone()
    });
    Some((Duration::from_millis(wait), rewrite))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrying(at_ms: u64, due_ms: u64) -> ResultRow {
        ResultRow {
            state: DeliveryState::Retrying { due_ms },
            ..ResultRow::new(at_ms)
        }
    }

    fn wait(row: &ResultRow, now_ms: u64) -> Option<Duration> {
        early_at(row, now_ms).map(|(w, _)| w)
    }

    #[test]
    fn a_retry_is_handed_back_for_the_rest_of_its_delay() {
        let row = retrying(1_000_000, 1_010_000);
        assert_eq!(early_at(&row, 1_004_000), Some((Duration::from_secs(6), None)));
        assert_eq!(wait(&row, 1_009_990), None);
        assert_eq!(wait(&row, 1_020_000), None);
    }

    #[test]
    fn a_clock_behind_the_schedulers_waits_no_longer_than_the_retrys_own_delay() {
        // Scheduled for 10 s by a relay 60 s ahead of this one.
        let row = retrying(1_060_000, 1_070_000);
        let (w, rewrite) = early_at(&row, 1_000_000).unwrap();
        assert_eq!(w, Duration::from_secs(10));
        assert_eq!(
            rewrite.map(|r| r.state),
            Some(DeliveryState::Retrying { due_ms: 1_010_000 })
        );
    }

    #[test]
    fn a_replay_is_never_early_whatever_the_queuing_relays_clock() {
        // Queued by a relay 60 s ahead: due when it was queued, by its clock.
        let mut row = retrying(0, 0);
        row.replayed(1_060_000, true);
        assert_eq!(wait(&row, 1_000_000), None);
    }

    /// The message comes again after each hand-back's delay, with the result
    /// as the hand-back left it: the total wait is at most one more delay,
    /// not the skew. From review 31, finding 1.
    #[test]
    fn a_clock_behind_by_more_than_the_delay_waits_at_most_one_more_delay_in_all() {
        // Scheduled for 10 s by a relay 60 s ahead of this one: `at` and `due`
        // by its clock. NATS hands the message out after the 10 s NAK delay.
        let (skew, delay) = (60_000u64, 10_000u64);
        let mut row = retrying(1_000_000 + skew, 1_000_000 + skew + delay);
        let mut now = 1_000_000 + delay; // this relay's clock at the first redelivery
        let mut handed_back = Duration::ZERO;
        let mut rounds = 0;
        while let Some((wait, rewrite)) = early_at(&row, now) {
            if let Some(r) = rewrite {
                row = r; // written over the result's revision
            }
            handed_back += wait;
            now += wait.as_millis() as u64; // the NAK delay passes, the message comes again
            rounds += 1;
            assert!(rounds < 100);
        }
        assert!(
            handed_back <= Duration::from_millis(delay),
            "handed back {rounds} times, {handed_back:?} in all (the skew is {skew} ms, the delay {delay} ms): \
             the README promises at most one more delay"
        );
    }
}
