//! Review 31, finding 1: `early` bounds one hand-back by the retry's own
//! delay, but the row is not rewritten by a hand-back, so the message comes
//! again after that delay, is still early by this relay's clock, and is
//! handed back again — until this relay's clock reaches the due time. The
//! total wait is still the clock difference, not "at most one more delay"
//! (README, Clocks).

use super::*;

fn retrying(at_ms: u64, due_ms: u64) -> ResultRow {
    ResultRow {
        state: DeliveryState::Retrying { due_ms },
        ..ResultRow::new(at_ms)
    }
}

#[test]
fn review31_a_clock_behind_by_more_than_the_delay_still_waits_for_the_skew() {
    // Scheduled for 10 s by a relay 60 s ahead of this one: `at` and `due`
    // by its clock. NATS hands the message out after the 10 s NAK delay.
    let (skew, delay) = (60_000u64, 10_000u64);
    let row = retrying(1_000_000 + skew, 1_000_000 + skew + delay);
    let mut now = 1_000_000 + delay; // this relay's clock at the first redelivery
    let mut handed_back = Duration::ZERO;
    let mut rounds = 0;
    while let Some(wait) = early_at(&row, now) {
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
