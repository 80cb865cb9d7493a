//! The process's own pauses: stopped (`SIGSTOP`), its VM frozen, its host
//! swapping. Nothing runs meanwhile, and what reached its sockets is read
//! afterwards as if it had just come. In cluster mode that matters: NATS
//! handed a message to this relay during the pause, then (the relay not
//! renewing it) to another after `takeover`; read here after the pause, it
//! looked fresh, and both relays sent it (a cluster pause soak, stop 79: 26
//! deliveries sent twice in 17 pauses). A watch on a thread of its own ticks
//! every [`TICK`]; a gap between ticks longer than [`PAUSED`] is a pause.
//! [`unseen_for`] says how long what is read now may have waited unseen.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the watch looks.
const TICK: Duration = Duration::from_millis(50);
/// A gap between ticks this long is a pause (a loaded host delays a tick by
/// far less; a pause this short holds nothing near `takeover`'s half).
const PAUSED: Duration = Duration::from_millis(500);
/// How long after a pause what is read is taken to have waited through it:
/// time enough to read what the sockets held.
const AFTER: Duration = Duration::from_secs(1);

struct Watch {
    last_tick: Instant,
    /// The last pause seen: when it began and ended.
    last_pause: Option<(Instant, Instant)>,
}

fn watch() -> &'static Mutex<Watch> {
    static WATCH: OnceLock<Mutex<Watch>> = OnceLock::new();
    WATCH.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("hookrelay-pauses".into())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                let now = Instant::now();
                let mut w = lock(watch());
                if now.duration_since(w.last_tick) > PAUSED {
                    w.last_pause = Some((w.last_tick, now));
                }
                w.last_tick = now;
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the watch for the process's pauses");
        }
        Mutex::new(Watch {
            last_tick: Instant::now(),
            last_pause: None,
        })
    })
}

fn lock(m: &Mutex<Watch>) -> std::sync::MutexGuard<'_, Watch> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start watching (the first call of [`unseen_for`] does too).
pub fn start() {
    let _ = watch();
}

/// How long an answer that may have waited through a pause of this process
/// gets to be read once its request's deadline passed.
const PAUSED_ANSWER: Duration = Duration::from_millis(250);

/// `request` within `deadline`, as [`tokio::time::timeout_at`], but when the
/// deadline passed in a pause of this process (stopped, its VM frozen, a
/// laptop asleep), the answer may be waiting unread in the socket: the peer
/// answered in time, and a timeout recorded instead sends it again (a
/// cluster pause soak, stop 79: a subscriber's `200` became a dead letter
/// that a replay sent again). It gets [`PAUSED_ANSWER`] more to be read.
pub async fn timeout_at<F: std::future::Future>(
    deadline: tokio::time::Instant,
    request: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::pin!(request);
    match tokio::time::timeout_at(deadline, &mut request).await {
        Err(_) if !unseen_for().is_zero() => tokio::time::timeout(PAUSED_ANSWER, &mut request).await,
        done => done,
    }
}

/// How long what this process reads now may have waited unseen: through a
/// pause under way (the watch has not ticked since it began) or one that
/// ended within [`AFTER`]; zero otherwise.
pub fn unseen_for() -> Duration {
    let w = lock(watch());
    unseen(Instant::now(), w.last_tick, w.last_pause)
}

fn unseen(now: Instant, last_tick: Instant, last_pause: Option<(Instant, Instant)>) -> Duration {
    let since_tick = now.saturating_duration_since(last_tick);
    if since_tick > PAUSED {
        return since_tick;
    }
    match last_pause {
        Some((began, ended)) if now.saturating_duration_since(ended) < AFTER => now.saturating_duration_since(began),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_read_during_or_just_after_a_pause_waited_through_it() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Ticking: nothing waited.
        assert_eq!(unseen(at(1_040), at(1_000), None), Duration::ZERO);
        // Paused since the last tick, the watch not running yet.
        assert_eq!(unseen(at(9_000), at(1_000), None), Duration::from_secs(8));
        // The watch ran first: the pause it saw, for a second after it.
        let pause = Some((at(1_000), at(9_000)));
        assert_eq!(unseen(at(9_100), at(9_050), pause), Duration::from_millis(8_100));
        assert_eq!(unseen(at(10_100), at(10_050), pause), Duration::ZERO);
    }
}
