//! Where a subscriber's consumer starts, and creating it again when NATS
//! lost it while its stream stayed (deleted by hand, or by an operator's
//! mistake): without this its lanes waited for the consumer until a restart.
//!
//! A consumer is created at the first message of its stream (`All`), never
//! at the tail: a consumer created after another relay stored an event
//! naming its subscriber (the stream set up again by another relay, the
//! consumer lost) must still hand that event out. The stream's last
//! sequence when it is created goes into its metadata ([`REWOUND`]): a
//! message up to it may have been settled by the consumer before (its ack
//! state is gone with it), so its result is read before it is sent (a
//! settled one is only acknowledged; one an operator's replay queued again
//! goes with the replay's message). Messages after it are fresh, read
//! without a look at the results. A stream with nothing in it yet (the
//! common start) has nothing to look at.
//!
//! A lost consumer is noticed where it costs nothing: a pull on it fails
//! and the follower looks it up again; "consumer not found" then creates it
//! (strictly: if another relay did first, that one is taken).

use std::collections::HashMap;

use async_nats::jetstream::consumer::{pull, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::{ConsumerInfoError, ConsumerInfoErrorKind};
use async_nats::jetstream::stream;

use super::{layout, Shared};

/// Consumer metadata: the stream's last sequence when the consumer was created.
pub(super) const REWOUND: &str = "hr_rewound_to";

/// Start `cfg` at the first message of `s`, its messages so far marked as
/// possibly settled (one request: the stream's state).
pub(super) async fn from_the_start(s: &mut stream::Stream, cfg: &mut pull::Config) -> Result<(), String> {
    let name = s.cached_info().config.name.clone();
    let last = s
        .info()
        .await
        .map_err(|e| format!("stream {name}: {e}"))?
        .state
        .last_sequence;
    cfg.deliver_policy = DeliverPolicy::All;
    cfg.metadata = HashMap::from([(REWOUND.to_string(), last.to_string())]);
    Ok(())
}

/// Up to which stream sequence `c`'s messages may have been settled before it existed.
pub(super) fn rewound_to(c: &PullConsumer) -> u64 {
    c.cached_info()
        .config
        .metadata
        .get(REWOUND)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The consumer of `sub` on `route`'s stream; created again (see the module
/// doc) when NATS no longer has it while the relay serves that subscriber.
pub(super) async fn subscriber(shared: &Shared, route: &str, sub: &str) -> Option<PullConsumer> {
    let mut s = shared.stream(route).ok()?;
    let e = match s.get_consumer::<pull::Config>(&layout::consumer(sub)).await {
        Ok(c) => return Some(c),
        Err(e) => e,
    };
    let lost = e
        .downcast_ref::<ConsumerInfoError>()
        .is_some_and(|e| e.kind() == ConsumerInfoErrorKind::NotFound);
    if !lost || !serves(shared, route, sub) {
        return None;
    }
    let mut cfg = super::consumer_config(route, sub, shared.takeover);
    if let Err(e) = from_the_start(&mut s, &mut cfg).await {
        tracing::debug!(route, subscriber = sub, error = %e, "lost consumer not created again yet");
        return None;
    }
    match s.create_consumer_strict(cfg).await {
        Ok(c) => {
            tracing::warn!(route, subscriber = sub,
                "NATS lost this subscriber's consumer (deleted?); created again: what it had not settled is handed out again, settled deliveries are not sent twice");
            Some(c)
        }
        // Another relay created it first: take that one.
        Err(_) => s.get_consumer(&layout::consumer(sub)).await.ok(),
    }
}

/// The last completed set-up has `sub` on `route` (not one being removed).
fn serves(shared: &Shared, route: &str, sub: &str) -> bool {
    super::read(&shared.set_up_for).is_some_and(|t| {
        t.routes
            .iter()
            .any(|(r, subs)| r == route && subs.iter().any(|s| s == sub))
    })
}
