//! Holding messages of a shared consumer: every message this relay received
//! is held from the moment it arrives, renewed with confirmed progress
//! acknowledgements so NATS does not hand it to another relay, and trusted
//! to be this relay's only while the chain of confirmed renewals never left a
//! gap NATS could have used: a message NATS may have handed out again (the
//! relay was paused, NATS was away, a renewal did not get through in time) is
//! *lost* and must not be sent from here any more. Used by [`super::follow`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use tokio::time::Instant;

/// The longest this relay keeps a message from the others after it last
/// started it (a push attempt or a pull hand-out, each after a [`confirm`]);
/// after it a message whose record failed goes to another relay. A pull
/// hand-out stays this relay's for its lease (at most
/// [`MAX_PULL_LEASE`](crate::config::MAX_PULL_LEASE)), then its lapse (at
/// most one more lease: `delivery::pull::task`), then while its result is
/// recorded: the hold must outlast all three, or NATS hands the message to
/// another relay while this one still accepts its holder's acknowledgement.
const MAX_HOLD: Duration = Duration::from_secs(2 * crate::config::MAX_PULL_LEASE.as_secs() + RECORD_MARGIN_SECS);
/// Time left for recording after a lease and its lapse.
const RECORD_MARGIN_SECS: u64 = 600;
const _: () = assert!(MAX_HOLD.as_secs() > 2 * crate::config::MAX_PULL_LEASE.as_secs());
/// How often the renewing task looks at the takeover in force.
const CHECK_TAKEOVER: Duration = Duration::from_secs(1);

/// One held message.
pub(super) struct Hold {
    acker: Arc<Acker>,
    /// When it arrived or was last confirmed for a start (the hold ends
    /// [`MAX_HOLD`] later).
    started: Instant,
    /// When the last renewal NATS confirmed was sent (first: the arrival).
    confirmed: Instant,
    /// NATS may have handed it to another relay: do not send it from here.
    lost: bool,
}

/// Held messages by stream sequence.
pub(super) type Held = Arc<Mutex<HashMap<u64, Hold>>>;

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<u64, Hold>> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a held message stays this relay's unrenewed: the relay's own
/// `takeover`, or the consumer's ack wait when that is shorter (lowered by
/// `apply-cluster-settings` while the relay runs: NATS hands a message out
/// again after its ack wait, whatever the relay started with). Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Takeover {
    own: Duration,
    /// The consumer's ack wait as last read (ms; 0 until read).
    cluster_ms: Arc<AtomicU64>,
}

impl Takeover {
    pub fn new(own: Duration) -> Takeover {
        Takeover {
            own,
            cluster_ms: Arc::default(),
        }
    }

    /// The consumer's ack wait, as NATS says it is now. Zero (NATS's
    /// default, 30 s) or under a second (no relay sets that: `takeover` is
    /// at least 5 s) is not taken: it would mean renewing without pause and
    /// counting every held message lost.
    pub fn set_cluster(&self, ack_wait: Duration) {
        if ack_wait < Duration::from_secs(1) {
            return;
        }
        let ms = u64::try_from(ack_wait.as_millis()).unwrap_or(u64::MAX);
        self.cluster_ms.store(ms, Ordering::Relaxed);
    }

    /// The shorter of this relay's `takeover` and the consumer's ack wait.
    pub fn get(&self) -> Duration {
        match self.cluster_ms.load(Ordering::Relaxed) {
            0 => self.own,
            ms => self.own.min(Duration::from_millis(ms)),
        }
    }
}

/// The gap between confirmed renewals after which a message counts as lost:
/// half of `takeover` (NATS's ack wait), leaving the other half for the time
/// a message spends between NATS and this relay, and for clock drift.
fn lapse(takeover: Duration) -> Duration {
    takeover / 2
}

/// How often held messages are renewed: several renewals fit in a lapse.
pub(super) fn renew_period(takeover: Duration) -> Duration {
    takeover / 5
}

/// A message confirmed this recently is still ours without asking NATS.
fn fresh(takeover: Duration) -> Duration {
    renew_period(takeover).min(Duration::from_secs(1))
}

/// Hold a message that just arrived; false when it was held already (NATS
/// handed it to this relay again, after an outage longer than `takeover`):
/// the copy here is the one to work on, and it is this relay's again (NATS
/// gave it here), so it is not queued a second time. A message read during
/// or just after a pause of this process counts as held since the pause
/// began: it may have waited in the socket through it, while NATS, not
/// renewed, handed it to another relay ([`crate::clock::pauses`]). On its
/// first hand-out (`first_stored_ms`: when NATS stored it, by NATS's clock)
/// no longer than since it was stored: NATS cannot have handed it out
/// before, and one stored after the pause (a callback the relay took once
/// it ran again) is fresh (a re-soak: 600 of them went to `takeover` as
/// lost when every message read in the second after a pause counted so).
pub(super) fn hold(held: &Held, seq: u64, acker: Arc<Acker>, first_stored_ms: Option<u64>) -> bool {
    let now = Instant::now();
    let mut unseen = crate::clock::pauses::unseen_for();
    if let (false, Some(stored)) = (unseen.is_zero(), first_stored_ms) {
        let wall = crate::clock::time_of_day()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        unseen = unseen.min(Duration::from_millis(wall.saturating_sub(stored)));
    }
    let arrived = now.checked_sub(unseen).unwrap_or(now);
    let mut h = lock(held);
    if let Some(m) = h.get_mut(&seq) {
        m.acker = acker;
        m.confirmed = arrived;
        m.lost = false;
        return false;
    }
    h.insert(
        seq,
        Hold {
            acker,
            started: now,
            confirmed: arrived,
            lost: false,
        },
    );
    true
}

/// Stop holding the message: it was settled, or it should come again after
/// `takeover` (possibly to another relay).
pub(super) fn release(held: &Held, seq: u64) {
    lock(held).remove(&seq);
}

/// Everything held, no longer held (to give it back at once).
pub(super) fn drain(held: &Held) -> Vec<Arc<Acker>> {
    lock(held).drain().map(|(_, h)| h.acker).collect()
}

/// Whether the message is held and not lost, without asking NATS.
pub(super) fn holds(held: &Held, seq: u64, takeover: Duration) -> bool {
    let mut h = lock(held);
    let Some(m) = h.get_mut(&seq) else { return false };
    if m.confirmed.elapsed() >= lapse(takeover) {
        m.lost = true;
    }
    !m.lost
}

/// Whether this relay still owns the message and NATS can record what
/// happens to it: held, never lost, and confirmed just now (a renewal is
/// sent and must be answered unless the last one is [`fresh`]). False while
/// NATS is unreachable, so nothing is started that could not be recorded.
pub(super) async fn confirm(held: &Held, seq: u64, takeover: Duration) -> bool {
    let acker = {
        let mut h = lock(held);
        let Some(m) = h.get_mut(&seq) else { return false };
        let age = m.confirmed.elapsed();
        if age >= lapse(takeover) {
            m.lost = true;
        }
        if m.lost {
            return false;
        }
        if age < fresh(takeover) {
            m.started = Instant::now();
            return true;
        }
        m.acker.clone()
    };
    let ok = renew(held, seq, acker, takeover).await;
    if ok {
        if let Some(m) = lock(held).get_mut(&seq) {
            m.started = Instant::now();
        }
    }
    ok
}

/// Send one renewal and wait for NATS to confirm it; whether the message is
/// still ours afterwards.
async fn renew(held: &Held, seq: u64, acker: Arc<Acker>, takeover: Duration) -> bool {
    let sent = Instant::now();
    let answered = tokio::time::timeout(renew_period(takeover), acker.double_ack_with(AckKind::Progress))
        .await
        .is_ok_and(|r| r.is_ok());
    let mut h = lock(held);
    let Some(m) = h.get_mut(&seq) else { return false };
    // NATS took the renewal before it answered: if the answer came within a
    // lapse of the last confirmed renewal, NATS never had a chance to hand
    // the message out again.
    if m.confirmed.elapsed() >= lapse(takeover) {
        m.lost = true;
    } else if answered && !m.lost {
        m.confirmed = m.confirmed.max(sent);
    }
    answered && !m.lost
}

/// Renew every held message each [`renew_period`], so only a relay that
/// stopped (died, paused, lost NATS) hands them over. Lost messages are
/// still renewed (one may be in flight: it should not be sent a third time);
/// a message held [`MAX_HOLD`] since it was last started is let go.
pub(super) async fn keep_held(held: Held, takeover: Takeover) {
    let mut last = Instant::now();
    loop {
        // Looked at every second: a takeover lowered meanwhile applies at
        // once, not after the old period.
        let next = last + renew_period(takeover.get());
        if Instant::now() < next {
            tokio::time::sleep_until(next.min(Instant::now() + CHECK_TAKEOVER)).await;
            continue;
        }
        last = Instant::now();
        let takeover = takeover.get();
        let due: Vec<(u64, Arc<Acker>)> = {
            let mut h = lock(&held);
            h.retain(|_, m| m.started.elapsed() < MAX_HOLD);
            h.iter().map(|(seq, m)| (*seq, m.acker.clone())).collect()
        };
        let renewals = due.into_iter().map(|(seq, acker)| {
            let held = held.clone();
            async move {
                renew(&held, seq, acker, takeover).await;
            }
        });
        futures_util::future::join_all(renewals).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorter_of_the_relays_takeover_and_a_sensible_ack_wait() {
        let t = Takeover::new(Duration::from_secs(30));
        assert_eq!(t.get(), Duration::from_secs(30), "not read yet");
        t.set_cluster(Duration::from_secs(5));
        assert_eq!(t.get(), Duration::from_secs(5));
        t.set_cluster(Duration::ZERO);
        t.set_cluster(Duration::from_millis(1));
        assert_eq!(
            t.get(),
            Duration::from_secs(5),
            "zero or sub-second ack waits are not taken"
        );
        t.set_cluster(Duration::from_secs(60));
        assert_eq!(t.get(), Duration::from_secs(30), "never longer than the relay's own");
    }
}
