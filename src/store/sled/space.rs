//! Room on the embedded store's disk: how much there is above
//! `store.min_free` (the writer refuses new events under it), and whether a
//! relay that found none has it again (readiness, with a margin so a disk
//! hovering at the floor does not flip it at every look).

use std::time::{Duration, Instant};

use super::{Inner, SledStore};

/// The room above `store.min_free` the disk must have again before a relay
/// that found none is ready: an eighth of the floor, 1 to 64 MiB.
fn room_margin(min_free: u64) -> u64 {
    (min_free / 8).clamp(1 << 20, 64 << 20)
}

/// How long the disk must stay above `store.min_free`, if not by
/// [`room_margin`], before a relay that found no room is ready again.
const ROOM_SETTLES: Duration = Duration::from_secs(10);

/// A dip under `store.min_free` this soon after the relay was ready again
/// by the margin makes the next return need [`ROOM_SETTLES`] (something on
/// the disk takes and frees more than the margin, again and again).
const FLAP_WINDOW: Duration = Duration::from_secs(60);

/// What the looks at the free space found.
pub(super) struct RoomWatch {
    /// Since when every look found the disk above `min_free` (`None`: the
    /// last look found it under).
    above_since: Option<Instant>,
    /// When a relay that lacked room last had it again.
    back_at: Option<Instant>,
    /// The disk dipped again within [`FLAP_WINDOW`] of that: the margin
    /// alone no longer makes the relay ready, only [`ROOM_SETTLES`] do.
    flapping: bool,
}

impl RoomWatch {
    pub(super) fn new() -> Self {
        RoomWatch {
            above_since: Some(Instant::now()),
            back_at: None,
            flapping: false,
        }
    }
}

impl Inner {
    /// Whether the disk has room for more events: the bytes above
    /// `store.min_free` (`None`: no floor, or the free space unknown); the
    /// reason when not.
    pub(super) fn space_check(&self) -> Result<Option<u64>, String> {
        if self.min_free == 0 {
            return Ok(None);
        }
        match fs4::available_space(&self.path) {
            Ok(free) if free < self.min_free => Err(format!(
                "disk nearly full: {} MiB free under {}, store.min_free is {} MiB",
                free >> 20,
                self.path.display(),
                self.min_free >> 20
            )),
            Ok(free) => Ok(Some(free - self.min_free)),
            Err(_) => Ok(None),
        }
    }
}

impl SledStore {
    /// Why there is no room for callbacks, if there is none: below
    /// `store.min_free`, or, when the relay already `lacking` room found
    /// none, less than [`room_margin`] above it for under [`ROOM_SETTLES`]
    /// (a disk whose usual free space lies in the margin is not ready for
    /// good after one dip under the floor); and a disk that dipped again
    /// within [`FLAP_WINDOW`] of the relay's last return needs the
    /// [`ROOM_SETTLES`] whatever its room (so a file larger than the margin
    /// written and deleted every second does not flip `/readyz` each time).
    pub fn low_space(&self, lacking: bool) -> Option<String> {
        let margin = room_margin(self.inner.min_free);
        let check = self.inner.space_check();
        let mut w = self.inner.room_watch.lock().unwrap_or_else(|e| e.into_inner());
        let room = match check {
            Err(why) => {
                w.above_since = None;
                if !lacking && w.back_at.is_some_and(|t| t.elapsed() < FLAP_WINDOW) {
                    w.flapping = true;
                }
                return Some(why);
            }
            Ok(room) => room,
        };
        let since = *w.above_since.get_or_insert_with(Instant::now);
        if !lacking {
            return None;
        }
        let settled = since.elapsed() >= ROOM_SETTLES;
        let by_margin = room.is_none_or(|r| r >= margin) && !w.flapping;
        if settled || by_margin {
            w.back_at = Some(Instant::now());
            w.flapping &= !settled;
            return None;
        }
        let (min_free, path) = (self.inner.min_free >> 10, self.inner.path.display());
        let room = room.unwrap_or(0) >> 10;
        Some(if w.flapping {
            format!(
                "disk nearly full: {room} KiB free above store.min_free ({min_free} KiB) under {path}, under it again \
                 within {} s of the last return; ready again after {} s above it",
                FLAP_WINDOW.as_secs(),
                ROOM_SETTLES.as_secs()
            )
        } else {
            format!(
                "disk nearly full: {room} KiB free above store.min_free ({min_free} KiB) under {path}; ready again at \
                 {} KiB above it, or after {} s above it",
                margin >> 10,
                ROOM_SETTLES.as_secs()
            )
        })
    }
}
