//! Subscribers removed from the config whose work the store keeps: which
//! they are (for `/api/subscribers`), with the routes a subscriber was moved
//! from whose work is kept, and the warning at start for those with
//! deliveries still pending (a reload logs its own line as it stops
//! their lanes).

use super::Delivery;
use crate::store::{Store, SubscriberStats};

impl Delivery {
    /// The route of the configured subscriber `name` (push or pull).
    pub fn configured_route(&self, name: &str) -> Option<String> {
        let push = self.lanes.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        if let Some(lane) = push {
            return Some(lane.subscriber().route.clone());
        }
        let pull = self.pulls.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        pull.map(|lane| lane.subscriber().route.clone())
    }

    /// Whether `s` is the work of a configured subscriber on its configured
    /// route (not of a route it was moved from).
    pub fn is_current(&self, s: &SubscriberStats) -> bool {
        self.configured_route(&s.name)
            .is_some_and(|route| s.route.as_ref().is_none_or(|r| *r == route))
    }

    /// Attempts still out on the lanes a reload stopped for subscriber
    /// `name` on `route` (`None`: any route), as they finish: a removed or
    /// moved subscriber's row and gauge show them (they read 0 while its
    /// old lane was still waiting for answers; lifecycle review, stop 66).
    pub fn retired_in_flight(&self, name: &str, route: Option<&str>) -> usize {
        let retiring = self.retiring.lock().unwrap_or_else(|e| e.into_inner());
        retiring
            .iter()
            .filter(|l| !l.has_ended())
            .filter(|l| l.subscriber().name == name && route.is_none_or(|r| l.subscriber().route == r))
            .map(|l| l.in_flight())
            .sum()
    }

    /// The subscribers among `stats` removed from the config whose
    /// deliveries are still pending or dead, and the routes subscribers were
    /// moved from with deliveries still pending there, in `stats`' order.
    pub fn removed<'a>(&self, stats: &'a [SubscriberStats]) -> Vec<&'a SubscriberStats> {
        stats
            .iter()
            .filter(|s| !self.is_current(s) && (s.backlog > 0 || s.dead_letters > 0))
            .collect()
    }
}

/// Once at start (the lanes configured): a warning for every subscriber the
/// config no longer has whose deliveries are still pending, so a subscriber
/// deleted by mistake is noticed. A store that cannot be read now (NATS
/// gone since it was opened) skips it.
pub async fn warn_at_start(store: Store, delivery: Delivery) {
    let stats = match store.subscriber_stats().await {
        Ok(stats) => stats,
        Err(e) => {
            tracing::debug!(error = %e, "removed subscribers not looked for at start");
            return;
        }
    };
    for s in delivery.removed(&stats).into_iter().filter(|s| s.backlog > 0) {
        if let Some(now) = delivery.configured_route(&s.name) {
            tracing::warn!(
                subscriber = %s.name,
                route = s.route.as_deref().map(tracing::field::display),
                now_on = %now,
                pending = s.backlog,
                "subscriber moved to another route has pending deliveries of its old route in the store; \
                 they are kept, delivered when it is on that route again, and listed as removed by \
                 `hookrelay subscribers` (GET /api/subscribers)"
            );
            continue;
        }
        tracing::warn!(
            subscriber = %s.name,
            route = s.route.as_deref().map(tracing::field::display),
            pending = s.backlog,
            "subscriber not in the config has pending deliveries in the store; they are kept, \
             delivered if it comes back, and listed as removed by `hookrelay subscribers` (GET /api/subscribers)"
        );
    }
}
