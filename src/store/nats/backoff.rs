//! The pause between tries of a write NATS did not take (a stream electing
//! a leader, an answer lost): 50 ms, doubled each time up to 1 s, until a
//! deadline.

use std::time::Duration;

use tokio::time::Instant;

/// Pauses between tries until `give_up`.
pub(super) struct Backoff {
    pause: Duration,
    give_up: Instant,
}

impl Backoff {
    pub(super) fn until(give_up: Instant) -> Backoff {
        Backoff {
            pause: Duration::from_millis(50),
            give_up,
        }
    }

    /// Wait before the next try: false (at once) when it would start at or
    /// after the deadline.
    pub(super) async fn wait(&mut self) -> bool {
        if Instant::now() + self.pause >= self.give_up {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        true
    }
}
