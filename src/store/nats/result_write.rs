//! Writing a delivery's result in cluster mode: only over the revision this
//! relay read (or wrote) last, never blindly. A relay that lost its hold on
//! the message (paused, cut off from NATS: its buffered write lands late)
//! must not overwrite the newer result of the relay that took the delivery
//! over. Writes are tried again for a while: a bucket whose leader is being
//! elected fails them for a few seconds.

use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;

use super::backoff::Backoff;
use super::{unavailable, Shared};
use crate::store::result::{replay_mark_applies, verdict_letter, ResultRow};
use crate::store::{Attempt, DeliveryState, Outcome, StoreError};

/// How long a result is tried again while its bucket has no leader (a node
/// died: writes fail for up to about 4 s). The message stays held meanwhile;
/// given up, it comes again after `takeover` and is sent again. Not capped by
/// `takeover`: if the hold is lost meanwhile and another relay sends the
/// event again, a late result here says the same (it was delivered), and
/// giving up early would make that repeat certain.
pub(super) const RESULT_PATIENCE: Duration = Duration::from_secs(10);

/// What a revision-checked write found.
pub(super) enum Write {
    /// Written; the result's new revision.
    Done(u64),
    /// The result is not at the revision given any more: what it is now
    /// (none: deleted, or expired).
    Moved(Option<(ResultRow, u64)>),
}

/// What became of an outcome.
pub(super) enum Recorded {
    /// Written (perhaps merged into a newer result): the result now and its
    /// revision, and whether a replay's mark made a failure due at once
    /// ([`ResultRow::apply_replay_mark`]). The message is this relay's to settle.
    Mine(ResultRow, u64, bool),
    /// Another relay's newer result stands (a final one, or one of a later
    /// attempt, into which this attempt was merged): the message is not this
    /// relay's to settle.
    Theirs,
    /// Another relay's `dead` result of this round became `delivered`: this
    /// relay's attempt was delivered after all (it lost its hold while the
    /// subscriber took it). Its dead letter is to be dropped, or a
    /// dead-letter replay would send it again; the message is not this
    /// relay's to settle.
    Revived,
}

impl Shared {
    /// Write `row` over `revision` (0: the delivery has no result yet).
    /// Tried again for `patience` while NATS does not answer. A try whose
    /// answer was lost but that was stored comes back as moved, to this
    /// very row: only the caller knows whether another relay could have
    /// written the same one.
    pub(super) async fn write_result(
        &self,
        key: &str,
        row: &ResultRow,
        revision: u64,
        patience: Duration,
    ) -> Result<Write, StoreError> {
        let value = Bytes::from(serde_json::to_vec(row).expect("serializes"));
        let mut backoff = Backoff::until(tokio::time::Instant::now() + patience);
        loop {
            let e = match self.try_write(key, value.clone(), revision).await {
                Ok(Some(written)) => {
                    self.wrote(1);
                    return Ok(Write::Done(written));
                }
                Ok(None) => match self.result(key).await {
                    // Read from a replica that has not applied the write
                    // that moved it yet: look again.
                    Ok(Some((_, now))) if now == revision => unavailable("the result read lags behind its bucket"),
                    Ok(None) if revision == 0 => unavailable("the result read lags behind its bucket"),
                    Ok(now) => return Ok(Write::Moved(now)),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            tracing::debug!(key, error = %e, "result not written");
            if !backoff.wait().await {
                return Err(e);
            }
        }
    }

    /// One write; None when the result is not at `revision` any more.
    pub(super) async fn try_write(&self, key: &str, value: Bytes, revision: u64) -> Result<Option<u64>, StoreError> {
        let bucket = self.results()?;
        let written = if revision == 0 {
            bucket
                .create(key, value)
                .await
                .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string()))
        } else {
            bucket
                .update(key, value, revision)
                .await
                .map_err(|e| (e.kind() == UpdateErrorKind::WrongLastRevision, e.to_string()))
        };
        match written {
            Ok(revision) => Ok(Some(revision)),
            // The server names a conflict with more than one error code.
            Err((conflict, e)) if conflict || e.contains("wrong last sequence") => Ok(None),
            Err((_, e)) => Err(unavailable(e)),
        }
    }

    /// Record an attempt's outcome over the result `known` at `revision`.
    /// When another relay wrote the result meanwhile (this one lost its hold
    /// on the message: it was paused, or cut off): a final result there
    /// stands (first final wins, and a final result never goes back to a
    /// pending one). A pending one is taken over only by an outcome of the
    /// same replay round (an operator's replay since makes this attempt's
    /// outcome old news: the replay is carried out) that is a success (the
    /// subscriber got it) or comes from an attempt at least as late as any
    /// recorded there (a failure of an earlier attempt decides nothing: the
    /// later one is still under way). Otherwise the attempt only joins the
    /// history.
    pub(super) async fn write_outcome(
        &self,
        key: &str,
        known: (Option<ResultRow>, u64),
        read_step: u32,
        attempt: Option<&Attempt>,
        outcome: &Outcome,
        now_ms: u64,
    ) -> Result<Recorded, StoreError> {
        let (known, mut revision) = known;
        // The replay round this attempt was begun in.
        let round = known.as_ref().map_or(0, |r| r.replays);
        let number = attempt.map_or(known.as_ref().map_or(0, |r| r.attempts), |a| a.attempt);
        let mut row = known.unwrap_or_else(|| ResultRow::new(now_ms));
        row.apply(attempt, outcome, now_ms);
        let mut replayed = row.apply_replay_mark(read_step, attempt, outcome, now_ms);
        let mut mine = true;
        let mut revived = false;
        loop {
            let now = match self.write_result(key, &row, revision, RESULT_PATIENCE).await? {
                Write::Done(written) if mine => return Ok(Recorded::Mine(row, written, replayed)),
                Write::Done(_) if revived => return Ok(Recorded::Revived),
                Write::Done(_) => return Ok(Recorded::Theirs),
                Write::Moved(now) => now,
            };
            // None: deleted or expired; written afresh, in this round.
            let (stored, at) = now.unwrap_or_else(|| {
                let fresh = ResultRow {
                    replays: round,
                    ..ResultRow::new(now_ms)
                };
                (fresh, 0)
            });
            // This relay's own earlier try, its answer lost (a row with this
            // attempt's times, or with this millisecond's).
            if stored == row {
                return Ok(match (mine, revived) {
                    (true, _) => Recorded::Mine(row, at, replayed),
                    (false, true) => Recorded::Revived,
                    (false, false) => Recorded::Theirs,
                });
            }
            revived = false;
            // Another relay wrote it `dead` (its own attempts failed to the
            // last) while the subscriber took this relay's attempt: it was
            // delivered. Left `dead`, a dead-letter replay would send it
            // again. Not after a replay since (the replay's own outcome).
            // Not over a verdict (a duplicate of its family, a callback held
            // as unverified): other subscribers' deliveries are decided by it.
            let revivable = stored.state == DeliveryState::Dead
                && *outcome == Outcome::Delivered
                && stored.replays == round
                && !verdict_letter(stored.last_error.as_deref());
            if revivable {
                if let Some(a) = attempt.filter(|a| !recorded(&stored, a)) {
                    tracing::info!(key, attempt = a.attempt,
                        "another relay recorded this delivery dead meanwhile, but this relay's attempt was delivered: it is delivered");
                    (row, revision, mine, revived) = (stored, at, false, true);
                    row.apply(Some(a), outcome, now_ms);
                    continue;
                }
            }
            // This attempt made it delivered already (its settle failed after
            // the write, and is sent again): its letter may still be listed.
            let made_delivered = stored.state == DeliveryState::Delivered
                && *outcome == Outcome::Delivered
                && stored.replays == round
                && attempt
                    .is_some_and(|a| recorded(&stored, a) && stored.history.iter().any(|h| h.attempt > a.attempt));
            if made_delivered {
                return Ok(Recorded::Revived);
            }
            if stored.state.is_final() {
                // An attempt later than any recorded there (this relay's
                // hand-out after the other's) joins its history, the result
                // standing: its count never below an attempt handed out (a
                // pull client that delivered attempt 2 takes an offer of 2
                // after a replay for the same message, and does not post it).
                let Some(a) = attempt.filter(|a| a.attempt > stored.attempts && !recorded(&stored, a)) else {
                    tracing::info!(key, state = ?stored.state,
                        "another relay recorded this delivery's final result meanwhile; this relay's later outcome is dropped");
                    return Ok(Recorded::Theirs);
                };
                tracing::info!(key, state = ?stored.state, attempt = a.attempt,
                    "another relay recorded this delivery's final result meanwhile; this relay's later attempt joins its history");
                (row, revision, mine) = (stored, at, false);
                join_history(&mut row, a);
                continue;
            }
            revision = at;
            // A later round: a replay was queued since this attempt began. (A
            // lower one: written by a relay of an earlier version, which does
            // not keep it; no replay since as far as this relay can tell.)
            let replayed_since = stored.replays > round;
            mine = !replayed_since && (is_success(outcome) || number >= stored.attempts);
            tracing::info!(
                key,
                kept = mine,
                round,
                stored_round = stored.replays,
                "another relay wrote this delivery's result meanwhile; this relay's outcome is merged into it"
            );
            row = stored;
            let seen = attempt.is_some_and(|a| recorded(&row, a));
            // This attempt's failure recorded already with a replay's mark
            // applied (due at once, the step restarted), by an earlier try
            // of this settle whose NAK failed (a pull client's acknowledgement
            // sent again): it stands, not applied again as a dead letter.
            if mine
                && seen
                && read_step != 0
                && row.step == 0
                && !row.replay_asked
                && replay_mark_applies(attempt, outcome)
            {
                if let DeliveryState::Retrying { .. } = row.state {
                    return Ok(Recorded::Mine(row, at, true));
                }
            }
            match (mine, attempt) {
                (true, _) if seen => row.apply(None, outcome, now_ms),
                (true, _) => row.apply(attempt, outcome, now_ms),
                (false, Some(a)) if !seen => join_history(&mut row, a),
                (false, _) => return Ok(Recorded::Theirs),
            }
            if mine {
                replayed = row.apply_replay_mark(read_step, attempt, outcome, now_ms);
            }
        }
    }
}

/// The subscriber got it: no later attempt can do better.
fn is_success(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Delivered | Outcome::Skipped)
}

/// Whether `a` is in the result's history already: the same attempt, sent
/// at the same time (a pull client's acknowledgement sent again rebuilds
/// the attempt, its duration counted anew).
fn recorded(row: &ResultRow, a: &Attempt) -> bool {
    row.history.iter().any(|h| h.attempt == a.attempt && h.at_ms == a.at_ms)
}

/// An attempt, told late, in its place in a newer result's history.
fn join_history(row: &mut ResultRow, a: &Attempt) {
    row.remember(a);
    row.attempts = row.attempts.max(a.attempt);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A settle sent again (a pull client's acknowledgement after its NAK
    /// failed) rebuilds its attempt with another duration: the same attempt
    /// all the same (compared whole, it was applied again as a new one: a
    /// replay's mark applied by the first try then made a dead letter).
    #[test]
    fn an_attempt_sent_again_is_known_by_its_number_and_time() {
        let a = Attempt {
            attempt: 3,
            at_ms: 1_700_000_000_000,
            duration_ms: 40,
            status: None,
            error: Some("lease expired: no answer from the pull client".into()),
        };
        let mut row = ResultRow::new(a.at_ms);
        row.remember(&a);
        assert!(recorded(
            &row,
            &Attempt {
                duration_ms: 95,
                ..a.clone()
            }
        ));
        assert!(!recorded(
            &row,
            &Attempt {
                attempt: 4,
                ..a.clone()
            }
        ));
        assert!(!recorded(
            &row,
            &Attempt {
                at_ms: a.at_ms + 1,
                ..a
            }
        ));
    }
}
