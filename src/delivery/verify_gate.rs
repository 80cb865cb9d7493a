//! `verify = "fetch"` routes: before a callback is delivered, its task is
//! looked up at the provider and the callback must agree with the record
//! (task, outcome, result URLs, failure code: [`crate::provider::verify`]).
//! A disagreeing callback is held as `unverified` (a dead letter whose error
//! says why, counted in `hookrelay_unverified_total`): not delivered, but
//! visible, and an operator's replay of the event delivers it to the
//! subscribers that replay queued it for (and to no other): the store marks
//! the work it queues released ([`crate::store::Work::released`]), so the
//! release holds on whichever relay takes it, after a restart too. A provider
//! that cannot be asked, or whose record lags behind the callback, parks the
//! delivery and asks again: never a silent drop.
//!
//! Owns the per-route verification settings (following reloads), a bounded
//! memory of verdicts, so the subscribers of one event cost one status call,
//! and the records fetched, shared by every check of a task
//! ([`super::verify_records`]). Results recovered by polling are the provider's own record
//! and are not checked again. A callback's media is archived only once it
//! agrees (ingest leaves that work to the verdict; a route that stopped
//! verifying writes it at delivery, [`super::verify_media`]). Of the events
//! of one dedupe key, only the first let go is delivered
//! ([`super::verify_claims`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::{Config, Route, Verify};
use crate::dedupe::DedupeKey;
use crate::metrics::Metrics;
use crate::provider::{verify_archiving, Action, ErrorKind, Product, ProviderClient, Verdict};
use crate::store::{Event, EventId, Origin, Outcome, Store};

use super::recent::Recent;
use super::verify_claims::{Claim, Claims};
use super::verify_records::Records;

/// A record fetched for a task answers the other events of the task checked
/// within this once the task has ended (a burst of contesting callbacks
/// costs one look-up)...
pub const SHARED: Duration = Duration::from_secs(2);
/// ...and within this while it runs (its record changes: a callback checked
/// just after the task ended must not see it running).
pub const SHARED_RUNNING: Duration = Duration::from_millis(100);
/// Asked again after this when the record has not caught up with the callback.
pub const LAGGING: Duration = Duration::from_secs(10);
/// A provider that refuses the look-up for now (a bad API key, no credits,
/// a `400` such as Veo's "1080P is processing") is asked again after
/// [`LAGGING`], then twice as long each time, up to this: not every 10 s,
/// with a warning each time.
pub const GAVE_UP: Duration = Duration::from_secs(300);

/// A callback whose look-up the provider still refuses this long after it
/// was received (its stored receive time: a restart does not reset it)...
pub const REFUSED_FOR: Duration = Duration::from_secs(3600);
/// ...or that many times in a row (while remembered) is held as
/// `unverified`, as other callbacks that cannot be verified are: visible as
/// a dead letter, delivered by a replay of the event. From review 34, finding 5.
pub const REFUSALS: u32 = 20;

/// The wait before asking again after the `n`-th (0-based) refusal.
fn gave_up_wait(n: u32) -> Duration {
    LAGGING.saturating_mul(1 << n.min(8)).min(GAVE_UP)
}

/// After the `n`-th (0-based) refusal of an event received at
/// `received_ms`, at `now_ms`: the wait before asking again, or None when
/// it is time to stop asking ([`REFUSED_FOR`], [`REFUSALS`]).
fn after_refusal(n: u32, received_ms: u64, now_ms: u64) -> Option<Duration> {
    let age = Duration::from_millis(now_ms.saturating_sub(received_ms));
    let wait = gave_up_wait(n);
    (n.saturating_add(1) < REFUSALS && age + wait <= REFUSED_FOR).then_some(wait)
}

/// What a delivery of a checked route should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Not a checked route, or the record agrees (or an operator's replay
    /// released it for this subscriber).
    Go,
    /// Ask again at `due_ms` (provider unreachable, rate limited, record behind).
    Wait { due_ms: u64 },
    /// The record disagrees: hold it. `again`: the verdict was known (a
    /// replay of all dead letters re-queued it), so it is not a new one.
    Hold { reason: String, again: bool },
    /// Another event of its dedupe key was let go first: settled as a
    /// duplicate (a dead letter saying so; an event replay releases it).
    /// `checked`: that event agreed with the provider's record (false: its
    /// route no longer verifies, [`super::verify_off`]).
    Duplicate { of: EventId, checked: bool },
}

impl Check {
    /// What to record for a delivery that does not go now (None: it goes).
    /// A wait is a retry without an attempt (a media deferral would be due at
    /// once); a hold is a dead letter saying why, counted and logged.
    pub fn outcome(self, metrics: &Metrics, subscriber: &str, event: &Event) -> Option<Outcome> {
        match self {
            Check::Go => None,
            Check::Wait { due_ms } => Some(Outcome::Retry { due_ms }),
            Check::Duplicate { of, checked } => {
                let why = if checked {
                    "agreed with the provider's record first"
                } else {
                    "was let go first (stored while the route verified; it no longer does)"
                };
                tracing::info!(subscriber, event = %event.id, of = %of,
                    "callback not delivered: another event of its dedupe key {why}");
                Some(Outcome::Dead {
                    error: format!("duplicate: {of}, an event of the same dedupe key, {why}"),
                })
            }
            Check::Hold { reason, again } => {
                if again {
                    tracing::info!(subscriber, event = %event.id,
                        "callback held again as unverified; replay the event itself to deliver it");
                } else {
                    metrics
                        .unverified
                        .get_or_create(&crate::metrics::RouteLabels {
                            route: event.meta.route.clone(),
                        })
                        .inc();
                    tracing::warn!(subscriber, event = %event.id, reason = %reason,
                        "callback held as unverified: the provider's record disagrees");
                }
                Some(Outcome::Dead {
                    error: format!("{}{reason}", crate::store::result::UNVERIFIED),
                })
            }
        }
    }
}

/// A route that verifies: its product, the client for its key, its dedupe
/// key and the route itself (its media pointers).
type Checked = (Product, ProviderClient, DedupeKey, Arc<Route>);

/// The routes that verify and what is known about their events.
#[derive(Default)]
pub struct Verifier {
    /// Route name → what checking its callbacks needs.
    routes: RwLock<HashMap<String, Checked>>,
    /// Settled verdicts: None (agrees) or the disagreement.
    pub(super) verdicts: Mutex<Recent<EventId, Option<String>>>,
    /// How many times the provider refused to look each event up (back-off).
    refused: Mutex<Recent<EventId, u32>>,
    /// Records fetched lately, shared by the checks of a task.
    records: Records,
    /// Which event of each dedupe key was let go.
    pub(super) claims: Claims,
    /// Routes that do not verify now, whose events stored while they did
    /// are still settled one to a key ([`super::verify_off`]).
    unchecked: RwLock<super::verify_off::Unchecked>,
    /// The keys whose contesting callbacks overflowed (logged once each).
    overflowed: Mutex<Recent<EventId, ()>>,
    /// Route name → the route, for routes that archive media but do not
    /// verify: a callback stored while one verified may still wait for its
    /// media work ([`Verifier::deferred_media`]).
    pub(super) media_routes: RwLock<HashMap<String, Arc<Route>>>,
    /// Events whose deferred media was looked for (once each while remembered).
    pub(super) media_looked: Mutex<Recent<EventId, ()>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
            .filter_map(|r| {
                let client = providers.get(&r.name)?.clone();
                Some((
                    r.name.clone(),
                    (r.product()?, client, r.dedupe_key.clone(), Arc::new(r.clone())),
                ))
            })
            .collect();
        let mut was = self.routes.write().unwrap_or_else(|e| e.into_inner());
        {
            let mut unchecked = self.unchecked.write().unwrap_or_else(|e| e.into_inner());
            *unchecked = super::verify_off::unchecked(
                config,
                |name| was.contains_key(name),
                &unchecked,
                crate::clock::now_ms(),
            );
        }
        *was = routes;
        drop(was);
        let media = config
            .routes
            .iter()
            .filter(|r| r.verify != Verify::Fetch && !r.media.is_empty())
            .map(|r| (r.name.clone(), Arc::new(r.clone())))
            .collect();
        *self.media_routes.write().unwrap_or_else(|e| e.into_inner()) = media;
    }

    /// When this relay saw `route` stop verifying (None: it verifies, or
    /// did not while this relay ran), read without taking the route out.
    pub(super) fn stopped_verifying_at(&self, route: &str) -> Option<u64> {
        self.unchecked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .and_then(|(_, off)| *off)
    }

    /// A route that does not verify, and when this relay saw it stop
    /// verifying ([`super::verify_off`]).
    pub(super) fn unchecked_route(&self, route: &str) -> Option<(Arc<Route>, Option<u64>)> {
        self.unchecked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .cloned()
    }

    /// Whether `id` was found to agree with the provider's record (while
    /// remembered; the store's states tell the rest).
    pub fn agreed(&self, id: EventId) -> bool {
        matches!(lock(&self.verdicts).known.get(&id), Some(None))
    }

    /// Whether `id` was found to disagree with the provider's record (while
    /// remembered).
    pub fn disagreed(&self, id: EventId) -> bool {
        matches!(lock(&self.verdicts).known.get(&id), Some(Some(_)))
    }

    /// Whether the key owned by `owner` overflows for the first time (remembered).
    pub fn first_overflow(&self, owner: EventId) -> bool {
        let mut seen = lock(&self.overflowed);
        let first = !seen.known.contains_key(&owner);
        seen.insert(owner, ());
        first
    }

    /// Whether no verdict was known for `id` (another subscriber's lane,
    /// checking the same event at the same time, may have settled it first).
    fn remember(&self, id: EventId, verdict: Option<String>) -> bool {
        lock(&self.verdicts).insert(id, verdict)
    }

    /// Whether `event` may be delivered to `subscriber` now; `released`:
    /// an operator's replay of the event queued this delivery (sent as it
    /// is); `attempted`: the subscriber whose delivery this is, when it
    /// counts attempts before this one. One recorded in its history was
    /// made after the event was verified for it (its verdict may be gone
    /// from memory: a restart, newer events), so the provider is not asked
    /// again (its record may have changed since, the task aged out or its
    /// URLs signed anew). A count alone is not proof: in cluster mode it
    /// counts the hand-outs of a relay that died, maybe while it was still
    /// asking the provider; nor is another subscriber's attempt (an
    /// operator's replay may have released the event to it alone).
    pub async fn check(&self, store: &Store, event: &Event, released: bool, attempted: Option<&str>) -> Check {
        let Some((product, client, key, route)) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&event.meta.route)
            .cloned()
        else {
            if !released {
                if let Some(decided) = self.unchecked_check(store, event).await {
                    return decided;
                }
            }
            return self.deferred_media(store, event).await;
        };
        if released {
            return Check::Go;
        }
        if event.meta.origin == Origin::Poll {
            return self.claim(store, event, &key).await;
        }
        let known = lock(&self.verdicts).known.get(&event.id).cloned();
        match known {
            Some(None) => return self.claim(store, event, &key).await,
            Some(Some(reason)) => return Check::Hold { reason, again: true },
            None => {}
        }
        if let Some(subscriber) = attempted {
            if Self::attempt_recorded(store, event, subscriber).await {
                return self.claim(store, event, &key).await;
            }
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
        let urls = crate::ingest::media_urls(&route, Some(&body));
        match self.records.get(&event.meta.route, product, &client, &task_id).await {
            Ok(record) => match verify_archiving(&body, &record, &urls) {
                Verdict::Agree => {
                    // Its media is downloaded from now on (never before:
                    // ingest left that work to this point).
                    if !urls.is_empty() {
                        if let Err(e) = store.add_verified_media(event.id, &event.meta.route, urls).await {
                            tracing::warn!(route = %event.meta.route, event = %event.id, error = %e,
                                "callback verified, but its media work could not be written; asking again shortly");
                            return later(Duration::from_secs(1));
                        }
                    }
                    self.settle(event.id, None);
                    let check = self.claim(store, event, &key).await;
                    if check == Check::Go {
                        super::verify_task::settle(store, &route, event, &body).await;
                    }
                    check
                }
                Verdict::Disagree(why) => self.settle(event.id, Some(why)),
                Verdict::NotTerminalYet => later(LAGGING),
            },
            // A gateway's bare 404 page (the API redeployed) is asked again below.
            Err(e) if e.no_such_task() => self.settle(
                event.id,
                Some(format!("the provider has no record of task {task_id:?}: {e}")),
            ),
            // A task id our client will not send (empty, over 256
            // characters, a control character): no genuine callback names
            // one, and asking again cannot help. Held like an unknown task
            // (one log line, the hold's). A provider's `400` is not this: Veo
            // answers it for transient states, so it is asked again below.
            Err(e) if e.kind == ErrorKind::InvalidInput => self.settle(
                event.id,
                Some(format!(
                    "the callback's task id cannot be looked up at the provider: {e}"
                )),
            ),
            Err(e) => {
                tracing::warn!(route = %event.meta.route, event = %event.id, error = %e,
                    "cannot verify the callback at the provider; asking again later");
                match e.action {
                    Action::RetryLater { after } => later(after.max(Duration::from_secs(1))),
                    // Fails until something changes (the API key, credits,
                    // the provider's state): asked again with back-off, for
                    // a while, then held.
                    Action::GiveUp => {
                        let n = {
                            let mut refused = lock(&self.refused);
                            let n = refused.known.get(&event.id).copied().unwrap_or(0);
                            refused.insert(event.id, n.saturating_add(1));
                            n
                        };
                        match after_refusal(n, event.meta.received_ms, crate::clock::now_ms()) {
                            Some(wait) => later(wait),
                            None => self.settle(
                                event.id,
                                Some(format!(
                                    "the provider kept refusing to look task {task_id:?} up ({} times, the last: {e})",
                                    n.saturating_add(1)
                                )),
                            ),
                        }
                    }
                }
            }
        }
    }

    /// Go if `event` claims its dedupe key, else a duplicate.
    /// Whether the event's history holds an attempt to `subscriber` (made
    /// once the event was verified; a hold or a wait is no attempt).
    async fn attempt_recorded(store: &Store, event: &Event, subscriber: &str) -> bool {
        match store.event_view(event.id).await {
            Ok(Some(view)) => view
                .deliveries
                .iter()
                .any(|d| d.subscriber == subscriber && !d.history.is_empty()),
            _ => false,
        }
    }

    async fn claim(&self, store: &Store, event: &Event, key: &DedupeKey) -> Check {
        match self.claims.claim(store, event, key).await {
            Claim::Won => Check::Go,
            Claim::DuplicateOf(of) => Check::Duplicate { of, checked: true },
        }
    }

    fn settle(&self, id: EventId, disagreement: Option<String>) -> Check {
        // Counted and warned about once per callback, not once per subscriber.
        let first = self.remember(id, disagreement.clone());
        match disagreement {
            None => Check::Go,
            Some(reason) => Check::Hold { reason, again: !first },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_asked_about_again_sooner_first() {
        let s = |n| Duration::from_secs(n);
        let waits: Vec<Duration> = (0..7).map(gave_up_wait).collect();
        assert_eq!(waits, [s(10), s(20), s(40), s(80), s(160), s(300), s(300)]);
        assert_eq!(gave_up_wait(u32::MAX), GAVE_UP);
    }

    /// A refused look-up is not asked about for ever: the callback is held
    /// once it is [`REFUSED_FOR`] old, counted from its stored receive time
    /// (so a restart, which forgets the count, does not start it again), or
    /// after [`REFUSALS`] refusals. From review 34, finding 5.
    #[tokio::test(start_paused = true)]
    async fn a_look_up_refused_for_an_hour_or_twenty_times_is_asked_no_more() {
        let received = crate::clock::now_ms();
        assert_eq!(after_refusal(0, received, crate::clock::now_ms()), Some(LAGGING));
        tokio::time::advance(Duration::from_secs(50 * 60)).await;
        // After a restart the count is 0 again; the age is not.
        assert_eq!(after_refusal(0, received, crate::clock::now_ms()), Some(LAGGING));
        tokio::time::advance(Duration::from_secs(10 * 60)).await;
        assert_eq!(after_refusal(0, received, crate::clock::now_ms()), None, "an hour old");
        let now = crate::clock::now_ms();
        assert_eq!(after_refusal(REFUSALS - 2, now, now), Some(GAVE_UP));
        assert_eq!(after_refusal(REFUSALS - 1, now, now), None, "{REFUSALS} refusals");
        // Asking with back-off from the start ends within the hour.
        let mut asked_for = Duration::ZERO;
        let mut n = 0;
        while let Some(wait) = after_refusal(n, 0, asked_for.as_millis() as u64) {
            asked_for += wait;
            n += 1;
        }
        assert!(
            asked_for <= REFUSED_FOR && n < REFUSALS,
            "{n} refusals over {asked_for:?}"
        );
    }
}
