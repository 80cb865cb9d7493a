//! Delivery: fans every stored event out to its subscribers.
//!
//! Each push subscriber has its own [`lane`], a task that reads that
//! subscriber's work from the store, runs [`attempt`]s under its concurrency,
//! [`rate`] limit and [`circuit`], and follows its [`retry`] schedule. Each
//! pull subscriber has a [`pull`] lane instead: the same work source, handed
//! out to the private side under leases and advanced by its
//! acknowledgements. An `after_archive` subscriber's deliveries (push or
//! pull) wait for their event's media ([`media_gate`]). This module knows
//! neither sled nor how ingest answers.

pub mod attempt;
pub mod circuit;
mod client;
mod handover;
mod held;
mod lane;
pub mod media_gate;
pub mod pull;
mod rate;
mod recent;
pub mod removed;
pub mod retry;
pub mod verify_claims;
pub mod verify_gate;
pub mod verify_media;
pub mod verify_off;
mod verify_records;
mod verify_task;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The longest each kind of work can have been scheduled ahead, for the
/// embedded store's start-up check ([`crate::store::Store::bring_in_due`]):
/// a retry waits at most its schedule's longest delay or its `Retry-After`
/// cap (on a `verify = "fetch"` route, also a provider look-up's longest
/// wait); an `after_archive` delivery waiting for media at most
/// [`media_gate::MEDIA_RECHECK`]; an expected task's next poll at most
/// [`crate::reconcile::longest_wait`]; a media download's retry at most
/// [`crate::media::longest_wait`].
pub fn due_caps(config: &crate::Config) -> crate::store::DueCaps {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let look_up = verify_gate::GAVE_UP
        .max(verify_gate::LAGGING)
        .max(crate::provider::BackoffPolicy::default().longest());
    let subscribers = config
        .routes
        .iter()
        .flat_map(|r| r.subscribers.iter().map(move |s| (r, s)))
        .map(|(r, s)| {
            let mut retry = s.retry.longest_delay();
            if r.verify == crate::config::Verify::Fetch {
                retry = retry.max(look_up);
            }
            crate::store::DueCap {
                subscriber: s.name.clone(),
                retry_ms: ms(retry),
                media_ms: s.after_archive.then(|| ms(media_gate::MEDIA_RECHECK)),
            }
        })
        .collect();
    let tasks = config
        .routes
        .iter()
        .filter_map(|r| Some((r.name.clone(), ms(crate::reconcile::longest_wait(&r.reconcile?)))))
        .collect();
    crate::store::DueCaps {
        subscribers,
        tasks,
        media_ms: ms(crate::media::longest_wait(&config.media.retry)),
    }
}

pub use client::SendError;
pub use lane::Lane;
pub use pull::PullLane;

use crate::config::Subscriber;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tls::TlsError;

/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));
/// Header carrying the attempt number (1 for the first try).
pub const ATTEMPT_HEADER: &str = "hookrelay-attempt";

/// Why subscribers could not be (re)configured; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("subscriber {subscriber:?}: {source}")]
    Client { subscriber: String, source: TlsError },
}

/// Subscribers ready to be applied ([`Delivery::prepare`]): everything that
/// can fail is done.
pub struct Prepared<'a> {
    /// Push subscribers and their clients.
    push: Vec<(&'a Subscriber, client::LaneClient)>,
    pull: Vec<&'a Subscriber>,
}

/// The delivery side: a lane per configured subscriber.
#[derive(Clone)]
pub struct Delivery {
    /// Where lanes take their work from and record what happened.
    store: Store,
    metrics: Arc<Metrics>,
    /// Push lanes by subscriber name.
    lanes: Arc<RwLock<HashMap<String, Arc<Lane>>>>,
    /// Pull lanes by subscriber name (a name is in one map or the other).
    pulls: Arc<RwLock<HashMap<String, Arc<PullLane>>>>,
    /// `verify = "fetch"` routes: asked before each delivery of a callback.
    verifier: Arc<verify_gate::Verifier>,
    /// Each subscriber's lanes run one after another.
    turns: Arc<handover::Turns>,
    /// Each subscriber's rate limiter, kept across its lanes.
    limiters: Arc<rate::Limiters>,
    /// Push lanes stopped by a reload, finishing their attempts in flight.
    retiring: Arc<std::sync::Mutex<Vec<Arc<Lane>>>>,
    /// Pull lanes stopped by a reload, serving acknowledgements of their
    /// leases until the last one is over ([`handover`]).
    retiring_pulls: Arc<std::sync::Mutex<Vec<Arc<PullLane>>>>,
    /// A shutdown began ([`Self::retire_push`]): a reload's [`Self::apply`]
    /// racing it changes no lane (a lane it started would never be retired).
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Delivery {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Delivery {
            store,
            metrics,
            lanes: Arc::default(),
            pulls: Arc::default(),
            verifier: Arc::default(),
            turns: Arc::default(),
            limiters: Arc::default(),
            retiring: Arc::default(),
            retiring_pulls: Arc::default(),
            stopping: Default::default(),
        }
    }

    /// The verification settings and verdicts shared by every lane.
    pub fn verifier(&self) -> &verify_gate::Verifier {
        &self.verifier
    }

    /// Every pull lane, by subscriber name.
    pub fn pull_lanes(&self) -> Vec<Arc<PullLane>> {
        let mut v: Vec<_> = self
            .pulls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|l| l.subscriber().name.clone());
        v
    }

    /// The pull lane of subscriber `name`, if it is a configured pull subscriber.
    pub fn pull_lane(&self, name: &str) -> Option<Arc<PullLane>> {
        self.pulls.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// The pull lanes of subscriber `name` stopped by a reload that still
    /// serve acknowledgements of their leases, newest first.
    pub fn retiring_pull_lanes(&self, name: &str) -> Vec<Arc<PullLane>> {
        let retiring = self.retiring_pulls.lock().unwrap_or_else(|e| e.into_inner());
        retiring
            .iter()
            .rev()
            .filter(|l| !l.has_ended() && l.subscriber().name == name)
            .cloned()
            .collect()
    }

    /// Messages the pull lanes of subscriber `name` stopped by a reload
    /// still lease (their forwarders may acknowledge them).
    pub fn stopped_pull_leased(&self, name: &str) -> usize {
        self.retiring_pull_lanes(name).iter().map(|l| l.leased()).sum()
    }

    /// The subscribers whose pull lanes stopped by a reload still lease
    /// messages, with how many.
    pub fn stopped_pull_leases(&self) -> std::collections::BTreeMap<String, usize> {
        let retiring = self.retiring_pulls.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::collections::BTreeMap::new();
        for lane in retiring.iter().filter(|l| !l.has_ended() && l.leased() > 0) {
            *out.entry(lane.subscriber().name.clone()).or_default() += lane.leased();
        }
        out
    }

    /// Every lane, by subscriber name.
    pub fn lanes(&self) -> Vec<Arc<Lane>> {
        let mut v: Vec<_> = self
            .lanes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|l| l.subscriber().name.clone());
        v
    }

    /// Start, update or stop lanes to match the configured subscribers (which
    /// the store must know: [`Store::register`]): [`Self::prepare`], then
    /// [`Self::apply`].
    pub fn configure(&self, subscribers: &[Subscriber]) -> Result<(), DeliveryError> {
        self.apply(self.prepare(subscribers)?);
        Ok(())
    }

    /// Everything [`Self::apply`] needs that can fail: every push
    /// subscriber's client (its CA file read). Changes nothing, so a reload
    /// does it before the store is told the new subscribers.
    pub fn prepare<'a>(&self, subscribers: &'a [Subscriber]) -> Result<Prepared<'a>, DeliveryError> {
        let mut ready = Prepared {
            push: Vec::with_capacity(subscribers.len()),
            pull: Vec::new(),
        };
        for s in subscribers {
            if s.pull().is_some() {
                ready.pull.push(s);
                continue;
            }
            let client = client::build(s).map_err(|source| DeliveryError::Client {
                subscriber: s.name.clone(),
                source,
            })?;
            ready.push.push((s, client));
        }
        Ok(ready)
    }

    /// Start, update or stop lanes to match `prepared` (whose subscribers
    /// the store must know: [`Store::register`]); cannot fail. The work of a
    /// removed subscriber stays in the store (reported by the admin API). A
    /// stopped lane's attempts in flight finish and are recorded, and a new
    /// lane of the same subscriber starts after them ([`handover`]); it goes
    /// on with the subscriber's rate limiter ([`rate::Limiters`]).
    pub fn apply(&self, prepared: Prepared<'_>) {
        let Prepared {
            push: ready,
            pull: pulled,
        } = prepared;
        let mut lanes = self.lanes.write().unwrap_or_else(|e| e.into_inner());
        let mut pulls = self.pulls.write().unwrap_or_else(|e| e.into_inner());
        // Checked under the lanes' lock, which `retire_push` takes to list them.
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::info!("a reload's delivery changes are not applied: the relay is stopping");
            return;
        }
        let push_names: HashMap<&str, &str> = ready.iter().map(|(s, _)| (s.name.as_str(), s.route.as_str())).collect();
        let pull_names: HashMap<&str, &str> = pulled.iter().map(|s| (s.name.as_str(), s.route.as_str())).collect();
        // A subscriber moved to another route (a route renamed, or the
        // subscriber listed under another) gets a new lane over the new
        // route's work; the old route's pending work stays in the store,
        // listed as removed, as a removed subscriber's does, and is delivered
        // when the subscriber is on that route again.
        let moved = |name: &str, route: &str| {
            let now = push_names.get(name).or_else(|| pull_names.get(name));
            if now.is_some_and(|r| *r != route) {
                tracing::info!(
                    subscriber = %name,
                    from = %route,
                    to = %now.copied().unwrap_or_default(),
                    "subscriber moved to another route; its pending work of the old route stays in the store"
                );
            }
        };
        let mut retiring = self.retiring.lock().unwrap_or_else(|e| e.into_inner());
        retiring.retain(|lane| !lane.has_ended());
        lanes.retain(|name, lane| {
            let route = lane.subscriber().route.clone();
            let keep = push_names.get(name.as_str()) == Some(&route.as_str());
            if !keep {
                lane.retire();
                retiring.push(lane.clone());
                if !push_names.contains_key(name.as_str()) && !pull_names.contains_key(name.as_str()) {
                    tracing::info!(subscriber = %name, "subscriber removed from config; its pending work stays in the store");
                }
                moved(name, &route);
            }
            keep
        });
        let mut retiring_pulls = self.retiring_pulls.lock().unwrap_or_else(|e| e.into_inner());
        retiring_pulls.retain(|lane| !lane.has_ended());
        pulls.retain(|name, lane| {
            let route = lane.subscriber().route.clone();
            let keep = pull_names.get(name.as_str()) == Some(&route.as_str());
            if !keep {
                lane.signal_stop();
                retiring_pulls.push(lane.clone());
                if !push_names.contains_key(name.as_str()) && !pull_names.contains_key(name.as_str()) {
                    tracing::info!(subscriber = %name, "subscriber removed from config; its pending work stays in the store");
                }
                moved(name, &route);
            }
            keep
        });
        for (s, client) in ready {
            let limiter = self.limiters.get(&s.name, s.rate);
            if let Some(lane) = lanes.get(&s.name) {
                lane.update(s, client, limiter);
                continue;
            }
            let opening = self.turns.open(&self.store, &s.name);
            let (lane, mut stop) = Lane::new(s, client, limiter, opening.depth());
            lanes.insert(s.name.clone(), lane.clone());
            let (store, metrics, verifier) = (self.store.clone(), self.metrics.clone(), self.verifier.clone());
            let name = s.name.clone();
            let task = tokio::spawn({
                let lane = lane.clone();
                async move {
                    let Some((source, turn)) = opening.source(&store, &name, &mut stop).await else {
                        return;
                    };
                    lane::run(lane, store, source, metrics, verifier, stop, turn.held()).await;
                }
            });
            lane.set_task(task);
        }
        for s in pulled {
            if let Some(lane) = pulls.get(&s.name) {
                lane.update(s);
                continue;
            }
            let opening = self.turns.open(&self.store, &s.name);
            let lane = PullLane::start(
                s,
                self.store.clone(),
                opening,
                (self.turns.closed(), self.turns.forgetting()),
                self.metrics.clone(),
                self.verifier.clone(),
            );
            pulls.insert(s.name.clone(), lane);
        }
    }

    /// Stop the pull lanes: long-polls waiting are answered at once (so a
    /// shutdown does not wait for them), leases are forgotten. A shutdown
    /// starts here: no lane waiting for its turn (a push lane behind the pull
    /// lane of its subscriber) starts after it.
    pub async fn stop_pulls(&self) {
        self.turns.close();
        self.turns.forget_leases();
        let pulls = self.take_pulls();
        for lane in &pulls {
            lane.signal_stop();
        }
        for lane in pulls {
            lane.stop().await;
        }
    }

    /// A shutdown's first step for pull deliveries, while the listeners
    /// still take requests: every pull lane stops handing out (pulls are
    /// answered "shutting down"; no lane waiting for its turn starts) and
    /// serves its forwarders' acknowledgements of what it leases, until the
    /// last or `deadline`. A lease forgotten at the stop is offered again
    /// after the restart: a forwarder whose local service had the message
    /// meanwhile acknowledged it to a relay gone, and a new forwarder, or
    /// the subscriber switched to push, sent it again (chaos soak, stop 67).
    /// [`Self::stop_pulls`] forgets what is left.
    pub async fn finish_pulls(&self, deadline: tokio::time::Instant) {
        self.turns.close();
        let lanes: Vec<Arc<PullLane>> = {
            let pulls = self.pulls.read().unwrap_or_else(|e| e.into_inner());
            let retiring = self.retiring_pulls.lock().unwrap_or_else(|e| e.into_inner());
            pulls.values().chain(retiring.iter()).cloned().collect()
        };
        for lane in &lanes {
            lane.signal_stop();
        }
        if lanes.iter().any(|l| l.leased() > 0) {
            tracing::info!(
                leased = lanes.iter().map(|l| l.leased()).sum::<usize>(),
                "stopping: waiting for the forwarders' acknowledgements of the messages they lease (within \
                 server.shutdown_grace)"
            );
        }
        while lanes.iter().any(|l| !l.has_ended()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Said, as for push attempts: a message sent twice is explained.
        let left: usize = lanes.iter().filter(|l| !l.has_ended()).map(|l| l.leased()).sum();
        if left > 0 {
            tracing::info!(
                leased = left,
                "stopping with messages leased to forwarders not acknowledged within server.shutdown_grace (each \
                 is offered again after the restart, if its subscriber is still a pull subscriber in the config)"
            );
        }
    }

    fn take_pulls(&self) -> Vec<Arc<PullLane>> {
        let mut pulls: Vec<_> = self
            .pulls
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, l)| l)
            .collect();
        pulls.append(&mut self.retiring_pulls.lock().unwrap_or_else(|e| e.into_inner()));
        pulls
    }

    /// A shutdown's first step for push deliveries: every lane stops taking
    /// work, its attempts in flight go on and are recorded as they end,
    /// until [`Self::stop`] abandons what is left. Each attempt a stop
    /// abandons is sent again after the restart: a lane that went on
    /// starting attempts while the listeners drained made every restart
    /// repeat a few (hostile review, stop 65). Lanes a reload retired that
    /// are still finishing are told too: what they have not started sending
    /// is left for the restart at once (hostile review, stop 66).
    pub fn retire_push(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        for lane in self.push_lanes_running() {
            lane.retire_for_shutdown();
        }
    }

    /// The configured push lanes and those a reload retired that have not
    /// ended yet.
    fn push_lanes_running(&self) -> Vec<Arc<Lane>> {
        let mut lanes = self.lanes();
        let retiring = self.retiring.lock().unwrap_or_else(|e| e.into_inner());
        lanes.extend(retiring.iter().filter(|l| !l.has_ended()).cloned());
        lanes
    }

    /// Wait until every push lane has ended, a reload's retired ones too
    /// (after [`Self::retire_push`]: its attempts in flight answered, or
    /// given up at their timeout).
    pub async fn push_ended(&self) {
        let ended = || self.push_lanes_running().iter().all(|l| l.has_ended());
        while !ended() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stop every lane and wait for it; attempts in flight and leases are
    /// abandoned (their work stays in the store and is sent again after a
    /// restart). Every lane is told before any is waited for, and no lane
    /// waiting for its turn gets it.
    pub async fn stop(&self) {
        self.turns.close();
        let pulls = self.take_pulls();
        let mut lanes: Vec<Arc<Lane>> = self
            .lanes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, l)| l)
            .collect();
        lanes.append(&mut self.retiring.lock().unwrap_or_else(|e| e.into_inner()));
        for lane in &pulls {
            lane.signal_stop();
        }
        for lane in &lanes {
            lane.signal_stop();
        }
        for lane in pulls {
            lane.stop().await;
        }
        for lane in lanes {
            lane.stop().await;
        }
    }
}
