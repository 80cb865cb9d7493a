//! Tests on tokio's paused clock: let the daemon finish what it is doing
//! before the test moves time. Only real time passes here; what the tests
//! assert is tokio's time, which stays where it is.

use std::time::{Duration, Instant};

/// Real time always given, as the fixed slice the tests used to give: the
/// daemon's own tasks (a lane woken by a timer, sockets) run meanwhile.
const AT_LEAST: Duration = Duration::from_millis(25);
/// How often the daemon is looked at.
const POLL: Duration = Duration::from_millis(5);
/// Idle this many looks in a row: done.
const IDLE_LOOKS: u32 = 3;
/// The most real time one settle waits for a busy daemon.
const AT_MOST: Duration = Duration::from_secs(10);

/// Real time passes, tokio's paused clock does not: a blocking task keeps
/// the runtime from advancing it by itself, and the daemon's tasks run.
async fn real_sleep(d: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(d))
        .await
        .unwrap();
}

/// Let real I/O (sockets, the store's writer) finish without moving time:
/// at least 25 ms, then until the daemon is idle ([`hookrelay::Handle::busy`]:
/// no attempt in flight, every store write applied) for three looks in a
/// row, at most 10 s. On a loaded machine a fixed 25 ms was not always
/// enough: a failed attempt was recorded a few clock steps late, and the
/// circuit's pause or the retry was measured from then.
pub async fn settle(h: &hookrelay::Handle) {
    let start = Instant::now();
    let mut idle = 0;
    loop {
        real_sleep(POLL).await;
        idle = if h.busy() == 0 { idle + 1 } else { 0 };
        let waited = start.elapsed();
        if (idle >= IDLE_LOOKS && waited >= AT_LEAST) || waited >= AT_MOST {
            return;
        }
    }
}
