//! `verify = "fetch"` routes: before a callback is delivered, its task is
//! looked up at the provider and the callback must agree with the record
//! (task, outcome, result URLs, failure code: [`crate::provider::verify`]).
//! A disagreeing callback is held as `unverified` (a dead letter whose error
//! says why, counted in `hookrelay_unverified_total`): not delivered, but
//! visible, and an operator's replay of the event delivers it. A provider
//! that cannot be asked, or whose record lags behind the callback, parks the
//! delivery and asks again: never a silent drop.
//!
//! Owns the per-route verification settings (following reloads) and a
//! bounded memory of verdicts, so the subscribers of one event cost one
//! status call. Results recovered by polling are the provider's own record
//! and are not checked again.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use crate::config::{Config, Verify};
use crate::metrics::Metrics;
use crate::provider::{verify, Action, ErrorKind, Product, ProviderClient, Verdict};
use crate::store::{Event, EventId, Origin, Outcome};

/// Verdicts remembered (oldest forgotten first once full).
const REMEMBER: usize = 10_000;
/// Asked again after this when the record has not caught up with the callback.
pub const LAGGING: Duration = Duration::from_secs(10);

/// What a delivery of a checked route should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Not a checked route, or the record agrees (or an operator released it).
    Go,
    /// Ask again at `due_ms` (provider unreachable, rate limited, record behind).
    Wait { due_ms: u64 },
    /// The record disagrees: hold it.
    Hold { reason: String },
}

impl Check {
    /// What to record for a delivery that does not go now (None: it goes).
    /// A wait is a retry without an attempt (a media deferral would be due at
    /// once); a hold is a dead letter saying why, counted and logged.
    pub fn outcome(self, metrics: &Metrics, subscriber: &str, event: &Event) -> Option<Outcome> {
        match self {
            Check::Go => None,
            Check::Wait { due_ms } => Some(Outcome::Retry { due_ms }),
            Check::Hold { reason } => {
                metrics
                    .unverified
                    .get_or_create(&crate::metrics::RouteLabels {
                        route: event.meta.route.clone(),
                    })
                    .inc();
                tracing::warn!(subscriber, event = %event.id, reason = %reason,
                    "callback held as unverified: the provider's record disagrees");
                Some(Outcome::Dead {
                    error: format!("unverified: {reason}"),
                })
            }
        }
    }
}

/// Event → None (agrees) or the disagreement; and the order they came in.
type Verdicts = (HashMap<EventId, Option<String>>, std::collections::VecDeque<EventId>);

/// The routes that verify and what is known about their events.
#[derive(Default)]
pub struct Verifier {
    /// Route name → its product and the client for its key.
    routes: RwLock<HashMap<String, (Product, ProviderClient)>>,
    /// Settled verdicts (agree or disagree), in order of arrival for forgetting.
    verdicts: Mutex<Verdicts>,
    /// Events an operator replayed: delivered without asking again.
    released: Mutex<HashSet<EventId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Verifier {
    /// Take the routes with `verify = "fetch"` from a (new) config;
    /// `providers` are the clients by route name (one per key, shared).
    pub fn configure(&self, config: &Config, providers: &HashMap<String, ProviderClient>) {
        let routes = config
            .routes
            .iter()
            .filter(|r| r.verify == Verify::Fetch)
            .filter_map(|r| Some((r.name.clone(), (r.product()?, providers.get(&r.name)?.clone()))))
            .collect();
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
    }

    /// An operator asked for the event again: deliver it as it is.
    pub fn release(&self, id: EventId) {
        lock(&self.released).insert(id);
    }

    fn remember(&self, id: EventId, verdict: Option<String>) {
        let mut v = lock(&self.verdicts);
        if v.0.insert(id, verdict).is_none() {
            v.1.push_back(id);
        }
        while v.1.len() > REMEMBER {
            if let Some(old) = v.1.pop_front() {
                v.0.remove(&old);
            }
        }
    }

    /// Whether `event` may be delivered now.
    pub async fn check(&self, event: &Event) -> Check {
        if event.meta.origin == Origin::Poll {
            return Check::Go;
        }
        let Some((product, client)) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&event.meta.route)
            .cloned()
        else {
            return Check::Go;
        };
        if lock(&self.released).contains(&event.id) {
            return Check::Go;
        }
        if let Some(known) = lock(&self.verdicts).0.get(&event.id) {
            return match known {
                None => Check::Go,
                Some(reason) => Check::Hold { reason: reason.clone() },
            };
        }
        let later = |d: Duration| Check::Wait {
            due_ms: crate::clock::now_ms() + d.as_millis() as u64,
        };
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&event.body) else {
            return self.settle(event.id, Some("the callback is not JSON".into()));
        };
        let Some(task_id) = product.callback_task_id(&body).map(str::to_string) else {
            return self.settle(event.id, Some("the callback names no task id".into()));
        };
        match client.record(product, &task_id).await {
            Ok(record) => match verify(&body, &record) {
                Verdict::Agree => self.settle(event.id, None),
                Verdict::Disagree(why) => self.settle(event.id, Some(why)),
                Verdict::NotTerminalYet => later(LAGGING),
            },
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Rejected) => self.settle(
                event.id,
                Some(format!("the provider has no record of task {task_id:?}: {e}")),
            ),
            Err(e) => {
                tracing::warn!(route = %event.meta.route, event = %event.id, error = %e,
                    "cannot verify the callback at the provider; asking again later");
                match e.action {
                    Action::RetryLater { after } => later(after.max(Duration::from_secs(1))),
                    Action::GiveUp => later(LAGGING),
                }
            }
        }
    }

    fn settle(&self, id: EventId, disagreement: Option<String>) -> Check {
        self.remember(id, disagreement.clone());
        match disagreement {
            None => Check::Go,
            Some(reason) => Check::Hold { reason },
        }
    }
}
