//! Whether a relay that found no room on the store's disk (under
//! `store.min_free`) has it again: readiness with a hysteresis, so that a
//! disk hovering at the floor, or something on it taking and freeing more
//! than the margin again and again, does not flip `/readyz` (and log a pair
//! of lines) at every look. Callbacks do not wait for it: the writer takes
//! them as soon as the disk is above the floor.

use std::time::{Duration, Instant};

/// How long the disk must stay above the floor, when not by the margin,
/// before a relay that found no room is ready again.
pub(super) const ROOM_SETTLES: Duration = Duration::from_secs(10);

/// A dip under the floor this soon after the relay was last ready again
/// counts as a flap: the margin no longer makes it ready, and each flap in
/// a row doubles the time the disk must stay above the floor, up to this.
pub(super) const FLAP_WINDOW: Duration = Duration::from_secs(60);

/// What a look at the disk found.
#[derive(Clone, Copy, Debug)]
pub(super) enum Look {
    /// Under the floor.
    Under,
    /// Above the floor by this many bytes.
    Above(u64),
    /// No floor, or the free space could not be read: nothing to judge.
    Unknown,
}

/// What readiness makes of a look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Room for callbacks: ready (as far as the disk goes).
    Room,
    /// Under the floor.
    Under,
    /// Back above the floor by less than the margin, for less than `settle`.
    InMargin { room: u64, settle: Duration },
    /// Back above the floor after a flap: ready once it has stayed there
    /// for `settle` (`so_far` now).
    Settling { settle: Duration, so_far: Duration },
}

/// The looks so far.
pub(super) struct RoomWatch {
    /// Since when every look found the disk above the floor (`None`: the
    /// last look found it under).
    above_since: Option<Instant>,
    /// When a relay that lacked room last had it again.
    back_at: Option<Instant>,
    /// Dips in a row, each within [`FLAP_WINDOW`] of the return before it.
    flaps: u32,
}

impl RoomWatch {
    pub(super) fn new(now: Instant) -> Self {
        RoomWatch {
            above_since: Some(now),
            back_at: None,
            flaps: 0,
        }
    }

    /// How long the disk must stay above the floor before a relay that
    /// lacks room is ready without the margin: [`ROOM_SETTLES`], doubled
    /// for each flap after the first, at most [`FLAP_WINDOW`].
    fn settle(&self) -> Duration {
        let doublings = self.flaps.saturating_sub(1).min(8);
        (ROOM_SETTLES * (1 << doublings)).min(FLAP_WINDOW)
    }

    /// Take in a look at `now` by a relay `lacking` room (not ready for want
    /// of it) or not, with `margin` the room that makes it ready at once.
    pub(super) fn look(&mut self, look: Look, lacking: bool, margin: u64, now: Instant) -> Verdict {
        let room = match look {
            Look::Under => {
                self.above_since = None;
                if !lacking {
                    let flap = self
                        .back_at
                        .is_some_and(|t| now.saturating_duration_since(t) < FLAP_WINDOW);
                    self.flaps = if flap { self.flaps.saturating_add(1) } else { 0 };
                }
                return Verdict::Under;
            }
            Look::Above(room) => Some(room),
            Look::Unknown => None,
        };
        let since = *self.above_since.get_or_insert(now);
        if !lacking {
            return Verdict::Room;
        }
        let (settle, so_far) = (self.settle(), now.saturating_duration_since(since));
        let by_margin = self.flaps == 0 && room.is_none_or(|r| r >= margin);
        if so_far >= settle || by_margin || room.is_none() {
            self.back_at = Some(now);
            return Verdict::Room;
        }
        let room = room.unwrap_or_default();
        if self.flaps == 0 {
            Verdict::InMargin { room, settle }
        } else {
            Verdict::Settling { settle, so_far }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: u64 = 1 << 20;
    const SMALL: Look = Look::Above(1 << 10);
    const BIG: Look = Look::Above(8 << 20);

    /// A watch at `t0`, and a relay's readiness as `App::look_at_space`
    /// keeps it: lacking room from a look that found none until one finds it.
    struct Relay {
        w: RoomWatch,
        t0: Instant,
        lacking: bool,
    }

    impl Relay {
        fn new() -> Self {
            let t0 = Instant::now();
            Relay {
                w: RoomWatch::new(t0),
                t0,
                lacking: false,
            }
        }

        fn at(&mut self, secs: u64, look: Look) -> Verdict {
            let v = self
                .w
                .look(look, self.lacking, MARGIN, self.t0 + Duration::from_secs(secs));
            self.lacking = v != Verdict::Room;
            v
        }
    }

    #[test]
    fn one_dip_returns_by_the_margin_or_after_ten_seconds() {
        let mut r = Relay::new();
        assert_eq!(r.at(0, BIG), Verdict::Room);
        assert_eq!(r.at(1, Look::Under), Verdict::Under);
        assert_eq!(r.at(2, BIG), Verdict::Room);
        // Long after: a dip is no flap.
        assert_eq!(r.at(70, Look::Under), Verdict::Under);
        let v = r.at(71, SMALL);
        assert_eq!(
            v,
            Verdict::InMargin {
                room: 1 << 10,
                settle: ROOM_SETTLES
            }
        );
        assert_eq!(
            r.at(80, SMALL),
            Verdict::InMargin {
                room: 1 << 10,
                settle: ROOM_SETTLES
            }
        );
        assert_eq!(r.at(81, SMALL), Verdict::Room);
    }

    #[test]
    fn flaps_in_a_row_double_the_wait_up_to_a_minute_and_end_outside_the_window() {
        let mut r = Relay::new();
        r.at(1, Look::Under);
        assert_eq!(r.at(2, BIG), Verdict::Room);
        // Under again within the minute: the margin no longer counts.
        r.at(3, Look::Under);
        let v = r.at(4, BIG);
        assert_eq!(
            v,
            Verdict::Settling {
                settle: ROOM_SETTLES,
                so_far: Duration::ZERO
            }
        );
        assert_eq!(r.at(14, BIG), Verdict::Room);
        let mut t = 14;
        for want in [20, 40, 60, 60] {
            r.at(t + 1, Look::Under);
            let v = r.at(t + 2, BIG);
            let settle = Duration::from_secs(want);
            assert_eq!(
                v,
                Verdict::Settling {
                    settle,
                    so_far: Duration::ZERO
                }
            );
            assert_ne!(r.at(t + 1 + want, BIG), Verdict::Room, "{want} s");
            assert_eq!(r.at(t + 2 + want, BIG), Verdict::Room, "{want} s");
            t += 2 + want;
        }
        // A dip more than a minute after the last return: the margin again.
        r.at(t + 61, Look::Under);
        assert_eq!(r.at(t + 62, BIG), Verdict::Room);
    }

    #[test]
    fn a_dip_resets_the_time_above_the_floor() {
        let mut r = Relay::new();
        r.at(1, Look::Under);
        r.at(2, SMALL);
        r.at(9, Look::Under);
        assert_ne!(r.at(10, SMALL), Verdict::Room);
        assert_ne!(r.at(19, SMALL), Verdict::Room);
        assert_eq!(r.at(20, SMALL), Verdict::Room);
    }

    #[test]
    fn free_space_that_cannot_be_read_does_not_hold_the_relay() {
        let mut r = Relay::new();
        r.at(1, Look::Under);
        r.at(2, BIG);
        r.at(3, Look::Under);
        assert_eq!(r.at(4, Look::Unknown), Verdict::Room);
    }

    #[test]
    fn a_relay_with_room_is_ready_whatever_it_holds() {
        let mut r = Relay::new();
        assert_eq!(r.at(0, SMALL), Verdict::Room);
        assert_eq!(r.at(1, Look::Unknown), Verdict::Room);
    }
}
