//! The registered topology (routes and their subscribers): set up now or,
//! while NATS does not let us, in the background; and which subscribers an
//! event is fanned out to meanwhile.
//!
//! A subscriber gets only the events that name it in their fan-out (its
//! consumer starts at its stream's first message, [`super::consumer`], and
//! passes over events naming other subscribers). So an event names a
//! subscriber in its fan-out only once its consumer exists
//! (set-up recorded it as created or found), whatever the registered
//! topology says: a reload that adds a subscriber while NATS has a hiccup
//! (a request timing out, no leader, NATS away) starts its fan-out when the
//! set-up, tried again in the background, has created the consumer — never
//! an event answered `200` for it that its consumer would skip. Each
//! consumer counts on its own: one that cannot be created (a limit, a
//! conflicting consumer) keeps only its own subscriber out, not the others
//! added with it. After a restart nothing is stored before every consumer
//! exists (ingest answers `503` until the set-up is done).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{read, setup, NatsStore, Shared};
use crate::store::{StoreError, Topology};

impl Shared {
    /// Of `subs`, those the registered topology has on `route` now and whose
    /// consumers exist (recorded by set-up).
    ///
    /// Refused ([`StoreError::RouteChanged`]) when the registered topology
    /// has none of a non-empty `subs` on `route`: a reload renamed or removed
    /// the route, or replaced all of its subscribers, since the request read
    /// its config. Refused as well when none of those left has a consumer
    /// yet (the route's subscribers were all replaced and set-up has not
    /// created the new consumers): an added subscriber without a consumer is
    /// left out only while another listed one remains. The topology is registered before the relay's config is
    /// swapped (and before NATS is set up, which may take seconds): judged
    /// here, the event is never stored for nobody during that gap.
    pub(super) fn on_route_now(&self, route: &str, mut subs: Vec<String>) -> Result<Vec<String>, StoreError> {
        let topology = self.topology.read().unwrap_or_else(|e| e.into_inner());
        let consumers = self.consumers.read().unwrap_or_else(|e| e.into_inner());
        let on_route = |sub: &String| topology.routes.iter().any(|(r, s)| r == route && s.contains(sub));
        let exists = |sub: &String| consumers.get(route).is_some_and(|c| c.contains(sub));
        let listed = !subs.is_empty();
        subs.retain(on_route);
        if listed && subs.is_empty() {
            return Err(StoreError::RouteChanged(route.to_string()));
        }
        subs.retain(exists);
        // None of them has a consumer yet (replaced by subscribers whose
        // consumers set-up has not created): stored now, the event would be
        // for nobody (the consumers created later start at the log's head,
        // but an event stored for none of them is listed for nobody).
        // Refused for a retry instead.
        if listed && subs.is_empty() {
            return Err(StoreError::RouteChanged(route.to_string()));
        }
        Ok(subs)
    }
}

impl Shared {
    /// A set-up finished: no failure left to say.
    fn set_up_done(&self) {
        *self.set_up_error.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A set-up try failed: kept for readiness to say, logged at `error`
    /// when the reason is new (at `debug` while it repeats, every few seconds).
    fn set_up_failed(&self, e: &setup::SetUpError) {
        let why = e.to_string();
        let old = self
            .set_up_error
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(why.clone());
        match old.as_ref() == Some(&why) {
            true => tracing::debug!(error = %why, "NATS set-up failed again; retrying"),
            false => tracing::error!(error = %why, "NATS set-up failed; retrying (/readyz says why)"),
        }
    }
}

/// Set up the registered topology once NATS lets us; ends when it is.
pub(super) async fn retry_set_up(shared: Arc<Shared>) {
    let done = |s: &Shared| read(&s.set_up_for).as_ref() == Some(&read(&s.topology));
    loop {
        let mut wait = Duration::from_millis(250);
        while !done(&shared) {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            if !shared.connected() {
                continue;
            }
            match shared.set_up(&mut setup::SetUp::new(setup::Mode::Keep)).await {
                Ok(()) => {
                    *shared.problem.write().unwrap_or_else(|e| e.into_inner()) = None;
                    shared.set_up_done();
                    tracing::info!("NATS JetStream set up; serving");
                }
                Err(setup::SetUpError::Mismatch(m)) => {
                    // Logged once: it stays until the cluster or this config changes.
                    let old = shared
                        .problem
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .replace(m.clone());
                    if old.as_ref() != Some(&m) {
                        tracing::error!(error = %m, "this relay's store settings differ from the cluster's; not serving");
                    }
                }
                Err(e) => shared.set_up_failed(&e),
            }
        }
        shared.retrying.store(false, Ordering::Release);
        // A registration that came in meanwhile saw `retrying` and left it to us.
        if done(&shared) || shared.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

impl NatsStore {
    /// Set the topology up now if NATS answers, else keep trying in the
    /// background (ingest answers 503 until then). When the relay is already
    /// serving (a reload), readiness stays: an unchanged topology does
    /// nothing, a changed one gets its new streams and consumers. Refused
    /// when the cluster's retention, replicas or takeover differ from this
    /// relay's (see [`setup`]). A subscriber added here is left out of the
    /// fan-out until its consumer exists ([`Shared::on_route_now`]).
    pub async fn register(&self, topology: &Topology) -> Result<(), StoreError> {
        let s = &self.shared;
        if read(&s.set_up_for).as_ref() == Some(topology) {
            *s.topology.write().unwrap_or_else(|e| e.into_inner()) = topology.clone();
            return Ok(());
        }
        let before = std::mem::replace(
            &mut *s.topology.write().unwrap_or_else(|e| e.into_inner()),
            topology.clone(),
        );
        if s.connected() {
            let mut plan = setup::SetUp::new(setup::Mode::Keep);
            match tokio::time::timeout(Duration::from_secs(10), s.set_up(&mut plan)).await {
                Ok(Ok(())) => {
                    s.set_up_done();
                    return Ok(());
                }
                Ok(Err(setup::SetUpError::Mismatch(m))) => {
                    *s.topology.write().unwrap_or_else(|e| e.into_inner()) = before;
                    return Err(StoreError::Incompatible(m));
                }
                Ok(Err(e)) => s.set_up_failed(&e),
                Err(_) => tracing::warn!("NATS set-up is slow; retrying in the background"),
            }
        } else if let Some(why) = s.refused.get() {
            tracing::error!(servers = ?s.servers, error = %why, "NATS refused this relay's credentials (store.nats); answering 503 until it accepts them");
        } else {
            tracing::warn!(servers = ?s.servers, "NATS is not reachable yet; answering 503 until it is");
        }
        if !s.retrying.swap(true, Ordering::AcqRel) {
            tokio::spawn(retry_set_up(s.clone()));
        }
        Ok(())
    }
}
