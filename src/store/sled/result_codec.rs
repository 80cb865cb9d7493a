//! The delivery result row on disk: state, attempt count, schedule step and
//! the recent attempts, in varints (a first-try success is ~20 bytes), with
//! each attempt's error kept as one byte of a known kind. The value is the
//! backends' shared [`ResultRow`].

use super::codec::{Reader, Writer};
use crate::store::{Attempt, DeliveryState};

/// The durable state of one event's delivery to one subscriber (the same
/// value every backend keeps; encoded compactly here).
pub(super) use crate::store::result::{ResultRow, HISTORY};

const RESULT_V1: u8 = 1;

/// What kind of error an attempt ended in, one byte per attempt (the whole
/// message is kept for the last one only): none, connection, timeout, other,
/// a pull client handed the message back (`delivery::pull::settle::HANDED_BACK`),
/// a pull lease ran out (`delivery::pull::settle::LEASE_EXPIRED`).
const ERROR_KINDS: [Option<&str>; 6] = [
    None,
    Some("connection error"),
    Some("timeout"),
    Some("request error"),
    Some("handed back by the pull client"),
    Some("lease expired: no answer from the pull client"),
];

fn error_kind(error: Option<&str>) -> u8 {
    match error {
        None => 0,
        Some(e) if e.starts_with("connection error") => 1,
        Some(e) if e.starts_with("timeout") => 2,
        Some(e) if e.starts_with("handed back by the pull client") => 4,
        Some(e) if e.starts_with("lease expired: no answer from the pull client") => 5,
        Some(_) => 3,
    }
}

fn state_code(s: &DeliveryState) -> (u8, u64) {
    match s {
        DeliveryState::Retrying { due_ms } => (0, *due_ms),
        DeliveryState::Delivered => (1, 0),
        DeliveryState::Dead => (2, 0),
        DeliveryState::Skipped => (3, 0),
        DeliveryState::Pending => (4, 0),
        DeliveryState::AwaitingMedia { due_ms } => (5, *due_ms),
    }
}

pub(super) fn encode_result(r: &ResultRow) -> Vec<u8> {
    let mut w = Writer::with_capacity(24 + r.history.len() * 10);
    w.u8(RESULT_V1);
    let (code, due) = state_code(&r.state);
    w.u8(code);
    w.varint(due);
    w.varint(u64::from(r.attempts));
    w.varint(u64::from(r.step));
    w.varint(r.at_ms);
    let start = r.history.len().saturating_sub(HISTORY);
    let hist = &r.history[start..];
    w.varint(hist.len() as u64);
    // Attempt times as deltas from the state time keep them to a few bytes.
    for a in hist {
        w.varint(u64::from(a.attempt));
        w.varint(r.at_ms.saturating_sub(a.at_ms));
        w.varint(a.duration_ms);
        w.varint(u64::from(a.status.unwrap_or(0)));
        w.u8(error_kind(a.error.as_deref()));
    }
    w.bytes(r.last_error.as_deref().unwrap_or("").as_bytes());
    // Trailing flags, only when one is set: rows written before them end
    // here (and a row of a release alone is the `1` written before the
    // replay's mark had a bit). A hold's reason follows its bit (an earlier
    // version reads the flags it knows and stops).
    let flags = u8::from(r.released) | u8::from(r.replay_asked) << 1 | u8::from(r.held.is_some()) << 2;
    if flags != 0 {
        w.u8(flags);
    }
    if let Some(reason) = &r.held {
        w.bytes(reason.as_bytes());
    }
    w.0
}

pub(super) fn decode_result(v: &[u8]) -> Option<ResultRow> {
    let mut r = Reader::new(v);
    if r.u8()? != RESULT_V1 {
        return None;
    }
    let code = r.u8()?;
    let due = r.varint()?;
    let state = match code {
        0 => DeliveryState::Retrying { due_ms: due },
        1 => DeliveryState::Delivered,
        2 => DeliveryState::Dead,
        3 => DeliveryState::Skipped,
        4 => DeliveryState::Pending,
        5 => DeliveryState::AwaitingMedia { due_ms: due },
        _ => return None,
    };
    let attempts = u32::try_from(r.varint()?).ok()?;
    let step = u32::try_from(r.varint()?).ok()?;
    let at_ms = r.varint()?;
    let n = r.varint()?;
    let mut history = Vec::with_capacity(n.min(HISTORY as u64) as usize);
    for _ in 0..n {
        let attempt = u32::try_from(r.varint()?).ok()?;
        let ago = r.varint()?;
        let duration_ms = r.varint()?;
        let status = u16::try_from(r.varint()?).ok()?;
        let kind = r.u8()?;
        history.push(Attempt {
            attempt,
            at_ms: at_ms.saturating_sub(ago),
            duration_ms,
            status: (status != 0).then_some(status),
            error: ERROR_KINDS
                .get(usize::from(kind))
                .copied()
                .flatten()
                .map(str::to_string),
        });
    }
    let err = r.string()?;
    let last_error = (!err.is_empty()).then_some(err);
    let flags = match r.rest() {
        [] => 0,
        _ => r.u8()?,
    };
    // (Bits a later version may add are not read.)
    let (released, replay_asked) = (flags & 1 != 0, flags & 2 != 0);
    // (A reason cut off: the hold stands, the row is read.)
    let held = match flags & 4 {
        0 => None,
        _ => Some(r.string().unwrap_or_default()),
    };
    // The last failed attempt gets its whole message back.
    if let (Some(e), Some(last)) = (&last_error, history.last_mut()) {
        if last.error.is_some() {
            last.error = Some(e.clone());
        }
    }
    Some(ResultRow {
        state,
        attempts,
        step,
        at_ms,
        history,
        last_error,
        replays: 0,
        released,
        replay_asked,
        handed_out: false,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_with_history() {
        let r = ResultRow {
            state: DeliveryState::Retrying {
                due_ms: 1_700_000_010_000,
            },
            attempts: 2,
            step: 1,
            at_ms: 1_700_000_005_000,
            history: vec![
                Attempt {
                    attempt: 1,
                    at_ms: 1_700_000_000_000,
                    duration_ms: 12,
                    status: Some(500),
                    error: None,
                },
                Attempt {
                    attempt: 2,
                    at_ms: 1_700_000_004_000,
                    duration_ms: 15_000,
                    status: None,
                    error: Some("timeout after 15s".into()),
                },
            ],
            last_error: Some("timeout after 15s".into()),
            replays: 0,
            released: false,
            replay_asked: false,
            handed_out: false,
            held: None,
        };
        assert_eq!(decode_result(&encode_result(&r)).unwrap(), r);
        let delivered = ResultRow {
            state: DeliveryState::Delivered,
            attempts: 1,
            step: 0,
            at_ms: 1_700_000_000_020,
            history: vec![Attempt {
                attempt: 1,
                at_ms: 1_700_000_000_000,
                duration_ms: 3,
                status: Some(200),
                error: None,
            }],
            last_error: None,
            replays: 0,
            released: false,
            replay_asked: false,
            handed_out: false,
            held: None,
        };
        let bytes = encode_result(&delivered);
        assert!(bytes.len() <= 20, "first-try result is {} bytes", bytes.len());
        assert_eq!(decode_result(&bytes).unwrap(), delivered);
        // A replay's release is one trailing byte; a row without it (any
        // written before it) reads as not released.
        let released = ResultRow { released: true, ..r };
        let with = encode_result(&released);
        assert_eq!(
            with.len(),
            encode_result(&ResultRow {
                released: false,
                ..released.clone()
            })
            .len()
                + 1
        );
        assert_eq!(decode_result(&with).unwrap(), released);
        // A replay asked while it was due, with or without a release: the
        // same byte.
        for release in [false, true] {
            let asked = ResultRow {
                released: release,
                replay_asked: true,
                ..released.clone()
            };
            assert_eq!(encode_result(&asked).len(), with.len());
            assert_eq!(decode_result(&encode_result(&asked)).unwrap(), asked);
        }
        // A flag this version does not know is not read (the row is).
        let mut unknown = with.clone();
        *unknown.last_mut().unwrap() = 9;
        assert_eq!(decode_result(&unknown).unwrap(), released);
        // A hold (`verify = "fetch"`) keeps its reason after its flags (a
        // version that knew only the first two bits stops at them).
        let held = ResultRow {
            held: Some("the provider's record has another video_url".into()),
            ..released.clone()
        };
        let bytes = encode_result(&held);
        assert_eq!(decode_result(&bytes).unwrap(), held);
        assert_eq!(bytes[with.len() - 1], 1 | 4, "the release's byte, with the hold's bit");
    }

    #[test]
    fn pull_hand_backs_and_acknowledgements_keep_their_meaning() {
        let attempt = |n: u32, error: Option<&str>| Attempt {
            attempt: n,
            at_ms: 1_700_000_000_000 + u64::from(n),
            duration_ms: 5,
            status: None,
            error: error.map(str::to_string),
        };
        let back = crate::delivery::pull::settle::HANDED_BACK;
        let expired = crate::delivery::pull::settle::LEASE_EXPIRED;
        let r = ResultRow {
            state: DeliveryState::Delivered,
            attempts: 3,
            step: 2,
            at_ms: 1_700_000_000_010,
            history: vec![attempt(1, Some(back)), attempt(2, Some(expired)), attempt(3, None)],
            last_error: None,
            replays: 0,
            released: false,
            replay_asked: false,
            handed_out: false,
            held: None,
        };
        let got = decode_result(&encode_result(&r)).unwrap();
        assert_eq!(
            got, r,
            "hand-backs and expired leases keep their kind, the acknowledgement has neither status nor error"
        );
    }

    #[test]
    fn history_is_capped_but_the_count_is_exact() {
        let history: Vec<Attempt> = (1..=40)
            .map(|i| Attempt {
                attempt: i,
                at_ms: 1000 + u64::from(i),
                duration_ms: 1,
                status: Some(500),
                error: None,
            })
            .collect();
        let r = ResultRow {
            state: DeliveryState::Dead,
            attempts: 40,
            step: 10,
            at_ms: 2000,
            history,
            last_error: Some("HTTP 500".into()),
            replays: 0,
            released: false,
            replay_asked: false,
            handed_out: false,
            held: None,
        };
        let back = decode_result(&encode_result(&r)).unwrap();
        assert_eq!(back.attempts, 40);
        assert_eq!(back.history.len(), HISTORY);
        assert_eq!(back.history[0].attempt, 17);
    }
}
