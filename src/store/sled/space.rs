//! Room on the embedded store's disk: how much there is above
//! `store.min_free` (the writer refuses new events under it), and what
//! readiness makes of it ([`super::room_watch`]), said for an operator.

use std::path::Path;
use std::time::Instant;

use super::room_watch::{Look, Verdict, FLAP_WINDOW};
use super::{Inner, SledStore};

/// The room above `store.min_free` the disk must have again before a relay
/// that found none is ready: an eighth of the floor, 1 to 64 MiB.
fn room_margin(min_free: u64) -> u64 {
    (min_free / 8).clamp(1 << 20, 64 << 20)
}

/// An embedded store's `store.min_free` larger than the whole disk holding its `path` (or its
/// nearest existing parent): never met, so every callback would be refused
/// and the relay never ready. Said by `check-config` and at start (stop
/// 66's Left: nothing said it but the refusals).
pub fn floor_warning(c: &crate::config::Config) -> Option<String> {
    match c.store.backend {
        crate::config::StoreBackend::Sled => {
            floor_beyond_disk(&c.store.path, c.store.min_free).map(|w| format!("{}: {w}", c.file.display()))
        }
        crate::config::StoreBackend::Nats(_) => None,
    }
}

fn floor_beyond_disk(path: &Path, min_free: u64) -> Option<String> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let total = fs4::total_space(existing).ok()?;
    (min_free > total).then(|| {
        format!(
            "key `store.min_free`: {} MiB is more than the whole disk holding {} ({} MiB): it is never met, so \
             every callback would be refused with 503 and the relay never ready; lower it",
            min_free >> 20,
            path.display(),
            total >> 20
        )
    })
}

impl Inner {
    /// Whether the disk has room for more events: the bytes above
    /// `store.min_free` (`None`: no floor, or the free space unknown); the
    /// reason when not (too few bytes, or too few inodes: [`crate::disk_room`]).
    pub(super) fn space_check(&self) -> Result<Option<u64>, String> {
        if self.min_free == 0 {
            return Ok(None);
        }
        let room = crate::disk_room::look(&self.path);
        if let Some(why) = room
            .as_ref()
            .ok()
            .and_then(|r| crate::disk_room::inode_shortage(&self.path, *r))
        {
            return Err(why);
        }
        match room.map(|r| r.bytes) {
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
    /// none, back above it by less than [`room_margin`] or after a flap, for
    /// less than the time [`super::room_watch::RoomWatch`] asks.
    pub fn low_space(&self, lacking: bool) -> Option<String> {
        let margin = room_margin(self.inner.min_free);
        let check = self.inner.space_check();
        let look = match &check {
            Err(_) => Look::Under,
            Ok(Some(room)) => Look::Above(*room),
            Ok(None) => Look::Unknown,
        };
        let verdict = {
            let mut w = self.inner.room_watch.lock().unwrap_or_else(|e| e.into_inner());
            w.look(look, lacking, margin, Instant::now())
        };
        let (min_free, path) = (self.inner.min_free >> 10, self.inner.path.display());
        match verdict {
            Verdict::Room => None,
            Verdict::Under => check.err(),
            Verdict::InMargin { room, settle } => Some(format!(
                "disk nearly full: {} KiB free above store.min_free ({min_free} KiB) under {path}; ready again at {} \
                 KiB above it, or after {} s above it",
                room >> 10,
                margin >> 10,
                settle.as_secs()
            )),
            Verdict::Settling { settle, so_far } => Some(format!(
                "the free space under {path} fell under store.min_free ({min_free} KiB) again within {} s of the \
                 relay becoming ready; ready once above it for {} s ({} s so far)",
                FLAP_WINDOW.as_secs(),
                settle.as_secs(),
                so_far.as_secs()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_floor_larger_than_the_disk_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("not/made/yet");
        let total = fs4::total_space(dir.path()).unwrap();
        let w = super::floor_beyond_disk(&store, total + 1).expect("never met");
        assert!(w.contains("store.min_free") && w.contains("never met"), "{w}");
        assert_eq!(super::floor_beyond_disk(&store, total / 2), None);
    }
}
