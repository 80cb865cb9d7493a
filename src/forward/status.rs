//! What the forwarder is doing, for a person or for the logs: counters and
//! the connection state, shown as one live status line (redrawn with `\r`)
//! when stderr is a terminal, and as structured log lines otherwise (state
//! changes and one line per message). Never shows the token.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How often the terminal line is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    Connecting,
    Connected,
    /// The relay cannot be reached (or answers 5xx); the next try is due then.
    Away {
        why: String,
        until: Instant,
    },
}

pub struct Status {
    /// The relay's pull URL as shown (no credentials: the token is a header).
    relay: String,
    /// Draw a status line (stderr is a terminal) instead of logging each event.
    terminal: bool,
    delivered: AtomicU64,
    handed_back: AtomicU64,
    /// Offered again after a 2xx here whose acknowledgement the relay did
    /// not confirm: acknowledged again, not posted twice.
    not_twice: AtomicU64,
    in_flight: AtomicUsize,
    /// Local deliveries failed since the last one delivered.
    failing: std::sync::atomic::AtomicU32,
    link: Mutex<Link>,
    last_message: Mutex<Option<Instant>>,
}

impl Status {
    pub fn new(relay: String, terminal: bool) -> Status {
        Status {
            relay,
            terminal,
            delivered: AtomicU64::new(0),
            handed_back: AtomicU64::new(0),
            not_twice: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            failing: std::sync::atomic::AtomicU32::new(0),
            link: Mutex::new(Link::Connecting),
            last_message: Mutex::new(None),
        }
    }

    fn set_link(&self, new: Link) -> Link {
        std::mem::replace(&mut *self.link.lock().unwrap_or_else(|e| e.into_inner()), new)
    }

    /// The relay answered a pull.
    pub fn connected(&self) {
        if self.set_link(Link::Connected) != Link::Connected {
            tracing::info!(relay = %self.relay, "connected to the relay; waiting for messages");
        }
    }

    /// Whether the relay answered the last pull.
    pub fn is_connected(&self) -> bool {
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) == Link::Connected
    }

    /// The relay is away; trying again after `retry_in`.
    pub fn away(&self, why: &str, retry_in: Duration) {
        let was = self.set_link(Link::Away {
            why: why.to_string(),
            until: Instant::now() + retry_in,
        });
        if !matches!(was, Link::Away { .. }) {
            if why.contains("CaUsedAsEndEntity") {
                // The CA given is the very certificate served: no --ca-file helps.
                tracing::error!(relay = %self.relay, error = %why,
                    "the relay serves a CA's certificate (basicConstraints CA:TRUE) as its own, which TLS clients refuse even when given it with --ca-file: the relay needs a server certificate (CA:FALSE; its check-config says so); trying again with back-off");
            } else if untrusted_certificate(why) {
                // Not an outage: it stays so until the CA is given.
                tracing::error!(relay = %self.relay, error = %why,
                    "the relay's TLS certificate does not verify (an unknown CA, another host name or out of its dates): pass the CA that signed it with --ca-file, or check the URL's host and the certificate; trying again with back-off");
            } else {
                tracing::warn!(relay = %self.relay, error = %why, "relay unreachable; reconnecting with back-off");
            }
        } else {
            tracing::debug!(relay = %self.relay, error = %why, retry_in_ms = retry_in.as_millis() as u64, "relay still unreachable");
        }
    }

    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        *self.last_message.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Local deliveries failed in a row (since the last one delivered).
    pub fn failing(&self) -> u32 {
        self.failing.load(Ordering::Relaxed)
    }

    /// A message still being delivered (`posting`), or brought by a pull the
    /// stop cut short, when the forwarder stopped: released to the relay
    /// (counted with the handed back).
    pub fn cut(&self, posting: bool) {
        if posting {
            self.landed();
        }
        self.handed_back.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer in flight (never below none: a delivery aborted between
    /// its answer and its outcome's record is counted once).
    fn landed(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A message was POSTed locally: delivered (2xx) or to be handed back.
    pub fn finished(&self, id: &str, attempt: u32, result: &Result<http::StatusCode, String>, took: Duration) {
        self.landed();
        let ms = took.as_millis() as u64;
        // A `410` is the service's answer, not its failure (as a push
        // subscriber's circuit breaker counts it).
        let answered = |s: &http::StatusCode| {
            use crate::delivery::retry::{classify, Verdict};
            matches!(
                classify(*s, None, crate::clock::time_of_day()),
                Verdict::Delivered | Verdict::Gone
            )
        };
        match result.as_ref().is_ok_and(answered) {
            true => self.failing.store(0, Ordering::Relaxed),
            false => _ = self.failing.fetch_add(1, Ordering::Relaxed),
        }
        match result {
            Ok(s) if s.is_success() => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(event = %id, attempt, status = s.as_u16(), ms, "delivered to the local service");
            }
            Ok(s) => {
                self.handed_back.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(event = %id, attempt, status = s.as_u16(), ms, "local service refused; handing back");
            }
            Err(e) => {
                self.handed_back.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(event = %id, attempt, error = %e, ms, "local service unreachable; handing back");
            }
        }
    }

    /// `id` was offered again after the local service answered it 2xx here
    /// (its acknowledgement did not reach the relay in time): acknowledged
    /// again without posting it a second time.
    pub fn acknowledged_again(&self, id: &str, attempt: u32) {
        self.not_twice.fetch_add(1, Ordering::Relaxed);
        tracing::info!(event = %id, attempt, "offered again, but already delivered here (its acknowledgement did not \
            reach the relay in time): acknowledging it without sending it twice");
    }

    /// `id` was offered again while its delivery here was still running
    /// (its lease ran out first, or the relay restarted): that delivery's
    /// answer settles the new lease, and it is not posted a second time.
    /// Counted with [`Self::acknowledged_again`] (the warning said "not
    /// sent twice" while the stop's count said 0: pause soak, stop 78).
    pub fn offered_while_delivering(&self, id: &str, attempt: u32) {
        self.not_twice.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(event = %id, attempt,
            "offered again while still being delivered here (its lease ran out — keep --timeout \
             below the subscriber's lease — or the relay restarted and forgot it); not sent twice");
    }

    /// The status line as shown on a terminal.
    pub fn line(&self) -> String {
        let link = match &*self.link.lock().unwrap_or_else(|e| e.into_inner()) {
            Link::Connecting => "connecting".to_string(),
            Link::Connected => "connected".to_string(),
            Link::Away { why, until } => format!(
                "relay away, retry in {:.0}s ({})",
                until.saturating_duration_since(Instant::now()).as_secs_f64().ceil(),
                why.chars().take(60).collect::<String>()
            ),
        };
        let last = match *self.last_message.lock().unwrap_or_else(|e| e.into_inner()) {
            None => "none yet".to_string(),
            Some(t) => format!("{}s ago", t.elapsed().as_secs()),
        };
        let not_twice = match self.not_twice() {
            0 => String::new(),
            n => format!(" · {n} not sent twice"),
        };
        format!(
            "hookrelay forward {} · {link} · {} delivered · {} handed back{not_twice} · {} in flight · last message {last}",
            self.relay,
            self.delivered.load(Ordering::Relaxed),
            self.handed_back.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
        )
    }

    /// Redraw the line on a terminal until `stop`; ends it with a newline.
    pub async fn show(&self, mut stop: watch::Receiver<bool>) {
        if !self.terminal {
            return;
        }
        let mut tick = tokio::time::interval(REDRAW);
        loop {
            {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{}", self.line());
                let _ = err.flush();
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "\r\x1b[2K{}", self.line());
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    pub fn handed_back(&self) -> u64 {
        self.handed_back.load(Ordering::Relaxed)
    }
    pub fn not_twice(&self) -> u64 {
        self.not_twice.load(Ordering::Relaxed)
    }
}

/// Whether a connection error is the relay's certificate failing
/// verification (rustls: "invalid peer certificate: UnknownIssuer", …).
fn untrusted_certificate(why: &str) -> bool {
    why.contains("invalid peer certificate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_where_it_stands() {
        let s = Status::new("https://hooks.example.com/pull/laptop".into(), false);
        assert!(s.line().contains("connecting"), "{}", s.line());
        s.connected();
        s.started();
        s.started();
        s.finished("evt_a", 1, &Ok(http::StatusCode::OK), Duration::from_millis(3));
        s.finished(
            "evt_b",
            1,
            &Ok(http::StatusCode::INTERNAL_SERVER_ERROR),
            Duration::from_millis(3),
        );
        let line = s.line();
        for part in [
            "connected",
            "1 delivered",
            "1 handed back",
            "0 in flight",
            "last message 0s ago",
        ] {
            assert!(line.contains(part), "{line} lacks {part:?}");
        }
        assert!(!line.contains("not sent twice"), "{line}");
        s.acknowledged_again("evt_a", 2);
        assert!(s.line().contains("1 handed back · 1 not sent twice"), "{}", s.line());
        s.away("connection refused", Duration::from_secs(4));
        assert!(
            s.line().contains("relay away, retry in 4s (connection refused)"),
            "{}",
            s.line()
        );
    }
}
