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
    /// good after one dip under the floor).
    pub fn low_space(&self, lacking: bool) -> Option<String> {
        let margin = room_margin(self.inner.min_free);
        let check = self.inner.space_check();
        let settled = {
            let mut since = self.inner.above_floor_since.lock().unwrap_or_else(|e| e.into_inner());
            match (&check, *since) {
                (Err(_), _) => *since = None,
                (Ok(_), None) => *since = Some(Instant::now()),
                (Ok(_), Some(_)) => {}
            }
            since.is_some_and(|t| t.elapsed() >= ROOM_SETTLES)
        };
        match check {
            Err(why) => Some(why),
            Ok(Some(room)) if lacking && room < margin && !settled => Some(format!(
                "disk nearly full: {} KiB free above store.min_free ({} KiB) under {}; ready again at {} KiB above it, \
                 or after {} s above it",
                room >> 10,
                self.inner.min_free >> 10,
                self.inner.path.display(),
                margin >> 10,
                ROOM_SETTLES.as_secs()
            )),
            Ok(_) => None,
        }
    }
}
