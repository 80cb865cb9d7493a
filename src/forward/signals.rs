//! The signals that stop `hookrelay forward`: SIGTERM, SIGINT (Ctrl-C) and
//! SIGHUP (the terminal or ssh session it ran in closed) stop it cleanly;
//! a second one, a second or more after the first, stops it at once. SIGHUP
//! ignored when it started (`nohup`) stays ignored: it keeps running past
//! the logout it was started to survive.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// Turn `stop` true at the first stop signal; exit the process (128 + the
/// signal) at a second one a second or more later.
pub(super) fn spawn(stop: watch::Sender<bool>) {
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        let ignored = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| hangup_ignored(&s));
        let mut hup = match ignored {
            true => None,
            false => signal(SignalKind::hangup()).ok(),
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = recv(&mut hup) => {}
        }
        tracing::info!("stopping: no new pulls; finishing messages in progress (a second signal stops at once)");
        let _ = stop.send(true);
        // A second Ctrl-C (or SIGTERM) does not wait for the grace: what
        // was not acknowledged is offered again when its lease runs out.
        // One within a second of the first is the same one sent twice (a
        // wrapper forwarding the terminal's Ctrl-C to its process group).
        let first = tokio::time::Instant::now();
        let code = loop {
            let code = tokio::select! {
                _ = term.recv() => 143,
                _ = int.recv() => 130,
                _ = recv(&mut hup) => 129,
            };
            if first.elapsed() >= std::time::Duration::from_secs(1) {
                break code;
            }
        };
        tracing::warn!(
            "stopping at once (a second signal): messages being delivered, and those delivered whose \
             acknowledgement was not sent, are offered again when their leases run out (a failed attempt each; \
             the local service may get them again)"
        );
        std::process::exit(code);
    });
}

/// The next signal of `s`; never without one.
async fn recv(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Whether `/proc/self/status` (its text) says SIGHUP is ignored: bit 0 of
/// the `SigIgn` mask (signal 1).
fn hangup_ignored(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & 1 == 1)
}

#[cfg(test)]
#[test]
fn a_hangup_ignored_is_read_from_the_mask() {
    assert!(hangup_ignored(
        "Name:\thookrelay\nSigIgn:\t0000000000000001\nSigCgt:\t0\n"
    ));
    assert!(hangup_ignored("SigIgn:\t0000000000001001\n"));
    assert!(!hangup_ignored("SigIgn:\t0000000000001000\n"));
    assert!(!hangup_ignored("SigIgn:\tzz\n"));
    assert!(!hangup_ignored(""));
}
