//! A migration's word to systemd: it runs at the first start, before the
//! daemon is ready, so under `Type=notify` it asks for more time as it goes
//! (nothing is sent without `NOTIFY_SOCKET`).

/// How much more time each extension asks systemd for.
const EXTEND: std::time::Duration = std::time::Duration::from_secs(300);

/// Under systemd (`NOTIFY_SOCKET`; nothing otherwise): ask for `EXTEND` more
/// time to start (`EXTEND_TIMEOUT_USEC`) and say what is done (`STATUS`),
/// at most every few seconds unless `now`. A migration runs before the
/// daemon is ready; without this a big one outlasted the unit's start
/// timeout, and each restart began it over.
pub(super) fn keep_systemd_waiting(status: &str, now: bool) {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if !now && last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
        return;
    }
    *last = Some(Instant::now());
    let usec = u32::try_from(EXTEND.as_micros()).unwrap_or(u32::MAX);
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::ExtendTimeoutUsec(usec),
            sd_notify::NotifyState::Status(status),
        ],
    );
}
