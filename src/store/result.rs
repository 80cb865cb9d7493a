//! One delivery's durable state, for every backend: the state, the attempt
//! count, the position in the retry schedule, the recent attempts and the
//! last error — and what an attempt and its outcome change in it.

use serde::{Deserialize, Serialize};

use super::{Attempt, Delivery, DeliveryState, Outcome};

/// Attempts kept per delivery; older ones are dropped (the count stays exact).
pub const HISTORY: usize = 24;

/// Whether a dead letter's error is a verdict of `verify = "fetch"` (held
/// as unverified, or a duplicate of the event of its key that was let go:
/// `delivery::verify_gate`), not a failed delivery.
pub fn verdict_letter(error: Option<&str>) -> bool {
    error.is_some_and(|e| e.starts_with(UNVERIFIED) || e.starts_with("duplicate: "))
}

/// How the dead letter of a delivery held as unverified begins (its reason
/// follows).
pub const UNVERIFIED: &str = "unverified: ";

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
    /// Cluster mode: how many times an operator's replay queued it again
    /// (its replay round). A late outcome from an earlier round only joins
    /// the history. Absent in rows written before it (0); one host has a
    /// single writer and does not store it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replays: u32,
    /// An operator's replay of the event queued it for this subscriber:
    /// sent as it is, without the `verify = "fetch"` check (which holds it
    /// otherwise), by whichever relay takes it, across restarts and retries;
    /// one that dies stays released (a replay of dead letters sends it
    /// again). Absent in rows written before it (false); a dead-letter
    /// replay does not set it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub released: bool,
    /// An operator's replay was asked while the delivery was due or
    /// pending (its attempt in flight, perhaps), which a second due row or
    /// message could have sent twice at once. Applied when the failure of
    /// work read before it is recorded: due at once, its schedule from the
    /// start, not a dead letter (one host: `store::sled::record`; cluster
    /// mode: `store::nats::result_write`). Absent in rows written before it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replay_asked: bool,
    /// Cluster mode: `attempts` counts NATS's hand-outs of the message, none
    /// of which is known to have begun an attempt (work a reload's handover
    /// gave back unsent after hand-outs that left no result: a relay that
    /// died or paused during one may have sent it, or may not). The number
    /// goes on from the count, but `verify = "fetch"` does not take it for
    /// an attempt made: a forged callback waiting for its check would own
    /// its key, the genuine callback dropped as its duplicate (stop 78's
    /// Left). Cleared by an attempt begun or recorded. Absent in rows
    /// written before it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub handed_out: bool,
    /// Held as `unverified` once (`verify = "fetch"`: the provider's record
    /// disagreed), and why: kept when an operator's replay releases it and
    /// it is delivered, so the event's other subscribers are still held on
    /// a route that no longer verifies, after a restart and on another
    /// relay too (stop 74's Left: known only from the dead letter the
    /// replay took away). Absent in rows written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// The log line of a failure a replay's mark made due at once (both stores).
pub const DUE_AGAIN_FOR_REPLAY: &str =
    "delivery not delivered with a replay asked during its attempt: due again now, its schedule from the start";

/// A failure a replay's mark applies to: a dead letter, or a retry after an
/// attempt (not a wait with none).
pub fn replay_mark_applies(attempt: Option<&Attempt>, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Dead { .. } => true,
        Outcome::Retry { .. } => attempt.is_some(),
        _ => false,
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
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
            replays: 0,
            released: false,
            replay_asked: false,
            handed_out: false,
            held: None,
        }
    }

    /// Record an attempt (if one was made) and what follows from it.
    pub fn apply(&mut self, attempt: Option<&Attempt>, outcome: &Outcome, now_ms: u64) {
        // An attempt not released by an operator was let go by the check:
        // verification agrees now (a dead-letter replay asked again), and
        // the hold it once made no longer stands (hostile review of the
        // hold's keeping: it held the genuine callback once verify was off).
        if attempt.is_some() && !self.released {
            self.held = None;
        }
        if let Some(a) = attempt {
            self.handed_out = false;
            self.attempts = self.attempts.max(a.attempt);
            // A delivery has no error, also when a pull client acknowledged it (no status).
            let failed = *outcome != Outcome::Delivered && a.status.is_none_or(|s| !(200..300).contains(&s));
            self.last_error = failed.then(|| {
                a.error
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {}", a.status.unwrap_or(0)))
            });
            self.remember(a);
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
                if let Some(reason) = error.strip_prefix(UNVERIFIED) {
                    self.held = Some(reason.to_string());
                }
            }
            Outcome::Defer { due_ms } => self.state = DeliveryState::AwaitingMedia { due_ms: *due_ms },
            Outcome::Gone => {}
        }
    }

    /// Put an attempt in the history in attempt order (one told late, by a
    /// relay that lost its hold on the delivery, may be earlier than those
    /// recorded), dropping the oldest beyond [`HISTORY`].
    pub fn remember(&mut self, a: &Attempt) {
        let at = self.history.partition_point(|h| h.attempt <= a.attempt);
        self.history.insert(at, a.clone());
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }

    /// Queued again by an operator: due now, the schedule from its start;
    /// `release`: by a replay of the event itself (a dead-letter replay
    /// keeps an earlier release, and makes none).
    pub fn replayed(&mut self, now_ms: u64, release: bool) {
        self.state = DeliveryState::Retrying { due_ms: now_ms };
        self.step = 0;
        self.at_ms = now_ms;
        self.released |= release;
    }

    /// After [`apply`](Self::apply): an operator's replay marked this
    /// delivery while it was due or pending (`replay_asked`, its step
    /// restarted) — applied to the failure of work read before the mark
    /// (read at a step other than 0, `read_step`): due at once, its schedule
    /// from the start, not a dead letter; gone with any other outcome. Not to
    /// a wait with no attempt (the next take reads the restart). Whether it
    /// was applied (the caller queues it due now instead of the outcome).
    pub fn apply_replay_mark(
        &mut self,
        read_step: u32,
        attempt: Option<&Attempt>,
        outcome: &Outcome,
        now_ms: u64,
    ) -> bool {
        let applies = std::mem::take(&mut self.replay_asked) && read_step != 0 && replay_mark_applies(attempt, outcome);
        if applies {
            self.replayed(now_ms, false);
        }
        applies
    }

    /// The admin view of a delivery with this result, or of one not
    /// attempted yet (no result row).
    pub fn view(row: Option<ResultRow>, subscriber: &str) -> Delivery {
        row.unwrap_or_else(|| ResultRow::new(0)).delivery(subscriber)
    }

    /// The admin view of a delivery whose result row does not decode: its
    /// state and history unknown (shown as not attempted, with an error
    /// saying so), not taken for "never attempted" by a reader that must
    /// tell (`pull::delivered`).
    pub fn unreadable_view(subscriber: &str) -> Delivery {
        let mut d = ResultRow::new(0).delivery(subscriber);
        d.unreadable = true;
        d.last_error = Some("its stored result is unreadable: state and history unknown".into());
        d
    }

    /// The admin view of it.
    pub fn delivery(self, subscriber: &str) -> Delivery {
        Delivery {
            subscriber: subscriber.to_string(),
            state: self.state,
            attempts: self.attempts,
            step: self.step,
            at_ms: self.at_ms,
            history: self.history,
            last_error: self.last_error,
            held: self.held,
            handed_out: self.handed_out,
            unreadable: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u32) -> Attempt {
        Attempt {
            attempt: n,
            at_ms: u64::from(n),
            duration_ms: 1,
            status: Some(500),
            error: None,
        }
    }

    #[test]
    fn an_attempt_told_late_takes_its_place_and_the_oldest_is_trimmed() {
        let mut row = ResultRow::new(0);
        for n in [2, 3, 1] {
            row.remember(&attempt(n));
        }
        let order: Vec<u32> = row.history.iter().map(|a| a.attempt).collect();
        assert_eq!(order, [1, 2, 3]);
        let mut full = ResultRow::new(0);
        for n in 2..=HISTORY as u32 + 1 {
            full.remember(&attempt(n));
        }
        full.remember(&attempt(1));
        assert_eq!(full.history.len(), HISTORY);
        assert_eq!(full.history[0].attempt, 2, "the late attempt 1 is the oldest: it goes");
    }

    #[test]
    fn a_row_written_before_replay_rounds_reads_as_round_zero() {
        let row = ResultRow::new(5);
        let json = serde_json::to_string(&row).unwrap();
        assert!(!json.contains("replays"), "{json}");
        let back: ResultRow = serde_json::from_str(&json).unwrap();
        assert_eq!(back.replays, 0);
        let replayed = ResultRow { replays: 2, ..row };
        let back: ResultRow = serde_json::from_str(&serde_json::to_string(&replayed).unwrap()).unwrap();
        assert_eq!(back, replayed);
    }

    #[test]
    fn a_hold_outlasts_the_replay_that_released_it_and_its_delivery() {
        let mut row = ResultRow::new(5);
        row.apply(
            None,
            &Outcome::Dead {
                error: "HTTP 500".into(),
            },
            6,
        );
        assert_eq!(row.held, None, "a failed delivery is no hold");
        let error = format!("{UNVERIFIED}the record has another video_url");
        row.apply(None, &Outcome::Dead { error }, 7);
        assert_eq!(row.held.as_deref(), Some("the record has another video_url"));
        row.replayed(8, true);
        let mut ok = attempt(1);
        ok.status = Some(200);
        row.apply(Some(&ok), &Outcome::Delivered, 9);
        let back: ResultRow = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
        assert_eq!((back.last_error, back.held), (None, row.held.clone()));
        assert_eq!(row.clone().delivery("a").held, row.held, "shown in the event view");
        let json = serde_json::to_string(&ResultRow::new(5)).unwrap();
        assert!(!json.contains("held"), "{json}");
        row.apply(Some(&attempt(2)), &Outcome::Retry { due_ms: 20 }, 10);
        assert!(row.held.is_some(), "a released delivery's later attempt keeps it");
    }

    #[test]
    fn a_hold_is_gone_once_the_check_lets_the_delivery_go() {
        let mut row = ResultRow::new(5);
        let error = format!("{UNVERIFIED}the provider has no record of the task");
        row.apply(None, &Outcome::Dead { error }, 6);
        // A dead-letter replay (no release): asked again, it agrees now, and
        // the attempt fails.
        row.replayed(7, false);
        row.apply(Some(&attempt(1)), &Outcome::Retry { due_ms: 20 }, 8);
        assert_eq!(row.held, None, "a verdict the provider no longer gives");
        assert_eq!(row.last_error.as_deref(), Some("HTTP 500"));
    }

    #[test]
    fn a_release_lasts_through_retries_and_dead_letter_replays() {
        let row = ResultRow::new(5);
        let json = serde_json::to_string(&row).unwrap();
        assert!(!json.contains("released"), "{json}");
        assert!(
            !serde_json::from_str::<ResultRow>(&json).unwrap().released,
            "a row written before it"
        );
        let mut unreleased = row.clone();
        unreleased.replayed(6, false);
        assert!(!unreleased.released, "a dead-letter replay releases nothing");
        let mut row = row;
        row.replayed(6, true);
        let back: ResultRow = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
        assert!(back.released);
        for outcome in [
            Outcome::Retry { due_ms: 9 },
            Outcome::Defer { due_ms: 9 },
            Outcome::Dead { error: "x".into() },
        ] {
            row.apply(Some(&attempt(1)), &outcome, 7);
            assert!(row.released, "{outcome:?}");
        }
        row.replayed(8, false);
        assert!(row.released, "a dead-letter replay keeps the release");
    }
}
