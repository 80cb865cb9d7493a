//! The room a local media directory's downloads in flight hold above the
//! free-space floor, so that several at once do not each pass the check
//! with a size that fits alone and then all stop at the floor.
//!
//! Owns the ledger of one directory (shared by every `LocalStore` clone of
//! it, reloads included): the bytes each download in flight reserved and
//! has not written yet, and the bytes of its partial file. A download
//! reserves what it announced (`Content-Length`) before its first byte, or
//! [`STEP`] at a time as a chunked body grows; the bytes it writes turn its
//! reservation into used disk, and what is left goes when it ends. Does not
//! own the writes or the floor's value (`super::local`, `super::settings`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::storage::StoreError;

/// How much a download without `Content-Length` reserves at a time.
pub const STEP: u64 = 8 << 20;

/// The reservations of one media directory.
#[derive(Debug, Default)]
pub struct Ledger {
    totals: Mutex<Totals>,
}

#[derive(Debug, Default)]
struct Totals {
    /// Reserved and not written yet, all downloads in flight.
    held: u64,
    /// Written to partial files, all downloads in flight.
    written: u64,
}

/// One download's share of the [`Ledger`]; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<Ledger>,
    /// Bytes reserved in all (written or not).
    reserved: u64,
    /// Reserved and not written yet.
    held: u64,
    written: u64,
}

impl Ledger {
    /// A reservation holding nothing yet.
    pub fn start(self: &Arc<Self>) -> Reservation {
        Reservation {
            ledger: self.clone(),
            reserved: 0,
            held: 0,
            written: 0,
        }
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Reservation {
    /// Bytes reserved in all.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Reserve `want` more bytes above `min_free` on the disk of `root`, or
    /// at least `need` (a chunked body's next chunk, when a whole step does
    /// not fit). Fails with [`StoreError::LowSpace`] when the disk has no
    /// room for `need` even if every other download in flight gave its room
    /// and its partial file back (a file that does not fit: a try), and with
    /// [`StoreError::RoomHeld`] when only they are in the way (no try: the
    /// URL waits for them to end).
    pub fn grow(&mut self, root: &Path, min_free: u64, want: u64, need: u64) -> Result<u64, StoreError> {
        let mut t = self.ledger.totals();
        let available = fs4::available_space(root).map_err(StoreError::io("statvfs", root))?;
        let room = available.saturating_sub(min_free);
        let free = room.saturating_sub(t.held);
        let got = if free >= want {
            want
        } else if free >= need {
            need
        } else {
            // The others' reservations and partial files may all go (failed
            // or duplicate downloads): this one's own held bytes stay needed.
            let others_written = t.written - self.written;
            let err = if room.saturating_add(others_written) >= self.held.saturating_add(need) {
                StoreError::RoomHeld {
                    path: root.to_path_buf(),
                    available,
                    held: t.held - self.held,
                    min_free,
                }
            } else {
                StoreError::LowSpace {
                    path: root.to_path_buf(),
                    available,
                    min_free,
                }
            };
            return Err(err);
        };
        t.held += got;
        self.held += got;
        self.reserved += got;
        Ok(got)
    }

    /// `n` more bytes reached the partial file (the disk, not a buffer).
    pub fn wrote(&mut self, n: u64) {
        let mut t = self.ledger.totals();
        let d = n.min(self.held);
        t.held -= d;
        self.held -= d;
        t.written += n;
        self.written += n;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut t = self.ledger.totals();
        t.held -= self.held;
        t.written -= self.written;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(l: &Ledger) -> (u64, u64) {
        let t = l.totals();
        (t.held, t.written)
    }

    #[test]
    fn a_second_download_that_fits_only_alone_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Ledger::default());
        // Half the disk's free space above the floor: room enough that other
        // writers to this disk meanwhile change nothing.
        let available = fs4::available_space(dir.path()).unwrap();
        let (floor, room) = (available - available / 2, available / 2);
        let big = room / 10 * 6;
        let mut a = ledger.start();
        assert_eq!(a.grow(dir.path(), floor, big, big).unwrap(), big);
        let mut b = ledger.start();
        let held = b.grow(dir.path(), floor, big, big).unwrap_err();
        assert!(matches!(held, StoreError::RoomHeld { .. }), "{held}");
        // A chunk that fits in what is left is granted.
        assert_eq!(b.grow(dir.path(), floor, big, 1 << 20).unwrap(), 1 << 20);
        let never = b.grow(dir.path(), floor, 2 * room, 2 * room).unwrap_err();
        assert!(matches!(never, StoreError::LowSpace { .. }), "{never}");
        drop(a);
        let mut c = ledger.start();
        assert_eq!(c.grow(dir.path(), floor, big, big).unwrap(), big);
        drop((b, c));
        assert_eq!(totals(&ledger), (0, 0));
    }

    #[test]
    fn written_bytes_turn_reserved_room_into_used_disk() {
        let ledger = Arc::new(Ledger::default());
        let mut a = ledger.start();
        let dir = tempfile::tempdir().unwrap();
        a.grow(dir.path(), 0, 100, 100).unwrap();
        a.wrote(60);
        assert_eq!(totals(&ledger), (40, 60));
        a.wrote(60);
        assert_eq!(totals(&ledger), (0, 120));
        drop(a);
        assert_eq!(totals(&ledger), (0, 0));
    }
}
