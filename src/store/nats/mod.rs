//! The cluster backend: NATS JetStream, shared by several relays (see
//! [`layout`] for where everything lives). Only this module knows NATS.
//!
//! A relay may start while NATS is away: it connects in the background, sets
//! up its streams, bucket and consumers as soon as it can, and until then
//! ingest answers 503 (the provider retries) — never 200 for what is not
//! stored. The `200` follows the publish acknowledged by the stream's quorum.

mod backlog;
mod backoff;
mod by_key;
mod claim;
mod connect;
pub use connect::{too_old, MIN_SERVER};
mod consumer;
mod dead_letter;
mod depth;
mod early;
mod event;
mod event_read;
mod follow;
mod give_back;
mod hold;
pub mod layout;
mod lost;
mod media;
mod media_retry;
mod media_source;
mod media_sweep;
mod peer;
mod publish;
mod query;
mod queue;
mod record;
mod result_read;
mod result_write;
mod setup;
mod source;
mod task_query;
mod task_work;
mod tasks;
mod topology;
mod torn_task;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, kv, stream};
use tokio::sync::Mutex;

pub use media_source::{NatsMediaCursor, NatsMediaTicket};
pub use source::{NatsCursor, NatsTicket};

use super::{Accepted, NewEvent, StoreError, Topology};
use crate::config::NatsConfig;

/// How long an ingest waits for a definite answer before it answers 503.
const APPEND_BUDGET: Duration = Duration::from_secs(3);
/// Room an event's headers may need beside the body within `max_payload`.
const MAX_HEADERS: usize = 64 * 1024;
/// Work that NATS hands out at most this much before its due time is done
/// now; earlier, it goes back with the remaining delay.
const EARLY_MS: u64 = 50;
/// The window in which a repeated publish with the same nonce is a no-op.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a stopping relay waits for NATS to take what it still buffers.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// How long recording an attempt may take: its result written and its
/// dead letter published (each tried again for `RESULT_PATIENCE` while NATS
/// has no leader for them), the message settled.
pub const RECORD_PATIENCE: Duration = Duration::from_secs(2 * result_write::RESULT_PATIENCE.as_secs() + 2);

/// The NATS store. Cheap to clone.
#[derive(Clone)]
pub struct NatsStore {
    shared: Arc<Shared>,
}

/// What every part of the backend uses.
pub(super) struct Shared {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Copies of every stream and bucket.
    replicas: usize,
    /// `max_age` of every stream and bucket.
    retention: Duration,
    /// How long a relay that stopped answering for a delivery holds it
    /// before another one gets it.
    pub(super) takeover: Duration,
    /// The routes and subscribers to set up, as last registered.
    topology: RwLock<Topology>,
    /// Streams, bucket and consumers have been set up (for some topology):
    /// the relay serves. A reload does not take it back.
    ready: AtomicBool,
    /// The topology last set up completely.
    set_up_for: RwLock<Option<Topology>>,
    /// The subscribers' consumers known to exist, by route then subscriber:
    /// each recorded as set-up creates or finds it, even when a later step
    /// fails. The relay deletes none.
    consumers: RwLock<HashMap<String, HashSet<String>>>,
    /// A background set-up is running (it ends once `topology` is set up).
    retrying: AtomicBool,
    /// Why set-up cannot finish, when trying again does not help (the
    /// cluster's settings differ from this relay's).
    problem: RwLock<Option<String>>,
    /// Why the last set-up failed (other than settings that differ):
    /// readiness says it, not only the log (cluster review, stop 65).
    set_up_error: RwLock<Option<String>>,
    /// The `max_payload` warning was given (once, not at each set-up try).
    payload_warned: AtomicBool,
    /// Why NATS refused this relay's connection (credentials), until it connects.
    refused: connect::Refused,
    /// One setup at a time.
    setting_up: Mutex<()>,
    /// Route name by its tag in event ids.
    tags: RwLock<HashMap<u16, String>>,
    /// Stream handles, by route.
    streams: RwLock<HashMap<String, stream::Stream>>,
    /// The results bucket, once it exists.
    results: RwLock<Option<kv::Store>>,
    /// The media bucket and work stream, once they exist.
    media: RwLock<Option<kv::Store>>,
    media_work: RwLock<Option<stream::Stream>>,
    /// The archivers' backlog (URLs waiting or being fetched), cluster-wide.
    media_depth: Arc<depth::Depth>,
    /// The tasks bucket and work stream, once they exist.
    tasks: RwLock<Option<kv::Store>>,
    task_work: RwLock<Option<stream::Stream>>,
    /// This relay's reconciler's view of the task work (started on its first look).
    task_follower: std::sync::Mutex<Option<follow::Follower>>,
    /// Task work messages this relay holds while it polls them, by task hash.
    held_tasks: std::sync::Mutex<HashMap<String, (u64, Arc<async_nats::jetstream::message::Acker>)>>,
    /// Servers, for messages (without any userinfo).
    servers: Vec<String>,
    /// `server.max_body`: checked against the servers' `max_payload`.
    max_body: usize,
    /// Messages JetStream stored for this relay since start (publishes it
    /// acknowledged, bucket writes included): `hookrelay_store_writes_total`.
    writes: AtomicU64,
    /// What the last look at each removed subscriber's messages found, by
    /// (route, subscriber): see [`backlog`].
    removed_scans: std::sync::Mutex<HashMap<(String, String), backlog::RemovedScan>>,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Shared {
    /// JetStream stored `n` more messages for this relay.
    pub(super) fn wrote(&self, n: u64) {
        self.writes.fetch_add(n, Ordering::Relaxed);
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Why this relay cannot store events now.
    fn not_serving(&self) -> StoreError {
        if let Some(why) = self.refused.get() {
            return unavailable(format!("NATS refused this relay's credentials (store.nats): {why}"));
        }
        if !self.connected() {
            return unavailable("NATS is not reachable");
        }
        match read(&self.problem) {
            Some(p) => StoreError::Incompatible(p),
            None => match read(&self.set_up_error) {
                Some(e) => unavailable(format!("the streams are not set up yet (the last try: {e})")),
                None => unavailable("the streams are not set up yet"),
            },
        }
    }

    fn stream(&self, route: &str) -> Result<stream::Stream, StoreError> {
        read(&self.streams)
            .get(route)
            .cloned()
            .ok_or_else(|| unavailable(format!("the stream of route {route:?} is not set up yet")))
    }

    fn results(&self) -> Result<kv::Store, StoreError> {
        read(&self.results).ok_or_else(|| unavailable("the results bucket is not set up yet"))
    }

    fn route_of_tag(&self, tag: u16) -> Option<String> {
        read(&self.tags).get(&tag).cloned()
    }
}

/// A subscriber's durable consumer (created or brought up to date by
/// `set_up`); where a new one starts is [`consumer`]'s.
pub(super) fn consumer_config(route: &str, sub: &str, takeover: Duration) -> pull::Config {
    pull::Config {
        durable_name: Some(layout::consumer(sub)),
        ack_policy: AckPolicy::Explicit,
        ack_wait: takeover,
        max_deliver: -1,
        // NAK-delayed retries count here: the relay bounds concurrency itself.
        max_ack_pending: -1,
        deliver_policy: DeliverPolicy::All,
        filter_subjects: vec![layout::event_filter(route), layout::replay_subject(route, sub)],
        ..Default::default()
    }
}

impl NatsStore {
    /// Connect (in the background when NATS is away) to the cluster.
    pub async fn open(cfg: &NatsConfig, retention: Duration, max_body: usize) -> Result<NatsStore, StoreError> {
        // Messages read after a pause of this process are judged by it
        // (`hold`); started here too for a store opened without the daemon.
        crate::clock::pauses::start();
        let refused = connect::Refused::default();
        let (client, js) = connect::connect(cfg, refused.clone()).await?;
        Ok(NatsStore {
            shared: Arc::new(Shared {
                client,
                js,
                replicas: cfg.replicas,
                retention,
                takeover: cfg.takeover,
                topology: RwLock::new(Topology { routes: Vec::new() }),
                ready: AtomicBool::new(false),
                set_up_for: RwLock::default(),
                consumers: RwLock::default(),
                retrying: AtomicBool::new(false),
                problem: RwLock::default(),
                set_up_error: RwLock::default(),
                payload_warned: AtomicBool::new(false),
                refused,
                setting_up: Mutex::new(()),
                tags: RwLock::default(),
                streams: RwLock::default(),
                results: RwLock::default(),
                media: RwLock::default(),
                media_work: RwLock::default(),
                media_depth: Arc::default(),
                tasks: RwLock::default(),
                task_work: RwLock::default(),
                task_follower: std::sync::Mutex::default(),
                held_tasks: std::sync::Mutex::default(),
                servers: cfg.servers.iter().map(|u| crate::auth::redact_url(u)).collect(),
                max_body,
                writes: AtomicU64::new(0),
                removed_scans: std::sync::Mutex::default(),
            }),
        })
    }

    /// `hookrelay apply-cluster-settings`: set the topology up with this
    /// config's retention, replicas and takeover, changing existing objects
    /// whose settings differ (also the route streams and consumers it does
    /// not name); what changed, one line each.
    pub async fn apply_settings(&self, topology: &Topology) -> Result<Vec<String>, StoreError> {
        let s = &self.shared;
        *s.topology.write().unwrap_or_else(|e| e.into_inner()) = topology.clone();
        if !s.connected() {
            return Err(unavailable(match s.refused.get() {
                Some(why) => format!("NATS refused the credentials in store.nats: {why}"),
                None => format!("NATS is not reachable at {}", s.servers.join(",")),
            }));
        }
        let mut plan = setup::SetUp::new(setup::Mode::Apply);
        tokio::time::timeout(Duration::from_secs(60), async {
            s.set_up(&mut plan).await?;
            s.apply_to_the_rest(&mut plan).await
        })
        .await
        .map_err(|_| unavailable("NATS did not answer in time"))?
        .map_err(unavailable)?;
        Ok(plan.changes)
    }

    pub async fn append(&self, ev: NewEvent) -> Result<Accepted, StoreError> {
        let s = &self.shared;
        if !s.ready.load(Ordering::Acquire) || !s.connected() {
            return Err(s.not_serving());
        }
        let route = ev.meta.route.clone();
        let stream = s.stream(&route)?;
        let subject = layout::event_subject(&route, &ev.dedupe_hash);
        let nonce = ulid::Ulid::new().to_string();
        let mut meta = ev.meta;
        // A reload since the request read its config removed one of these
        // from the route: the event is not for it in any view (as on one host).
        meta.subscribers = match s.on_route_now(&route, meta.subscribers) {
            Ok(subs) => subs,
            // Refused only if not a duplicate (as sled finds duplicates
            // first): a retry of a callback already stored is `200
            // duplicate`, not `503` then stored again on the renamed route.
            Err(refused) => {
                let first = tokio::time::timeout(APPEND_BUDGET, claim::holder(&stream, &subject))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten();
                let Some(h) = first else { return Err(refused) };
                let accepted = Accepted {
                    id: layout::event_id(&route, h.seq, h.time_ms),
                    duplicate: true,
                };
                if let Some(mark) = ev.task {
                    if let Err(e) = s.mark_task(&route, &mark, meta.origin, &accepted).await {
                        tracing::warn!(route = %route, task_id = %mark.task_id, error = %e,
                            "event stored, but its expected task could not be marked yet; its next poll settles it");
                    }
                }
                return Ok(accepted);
            }
        };
        let headers = event::headers(&meta, &ev.media, ev.media_after_verify, &nonce);
        let room = s
            .client
            .server_info()
            .max_payload
            .saturating_sub(event::size(&headers) + 64);
        if ev.body.len() > room {
            return Err(StoreError::TooLarge(room));
        }
        // The media's work and rows before the event: an event never names
        // media nobody will fetch.
        let failed_media = match !ev.media.is_empty() && !ev.media_after_verify {
            true => tokio::time::timeout(APPEND_BUDGET, s.register_media(&route, &ev.media))
                .await
                .map_err(|_| unavailable("NATS did not answer in time"))??,
            false => Vec::new(),
        };
        // A new callback naming a URL that failed for good has it tried
        // again, before the event is seen (its `after_archive` deliveries
        // then wait for the new try); a duplicate callback does not. Not
        // done (NATS away now): the URL stays failed, as the event's media
        // then says.
        if !failed_media.is_empty() {
            let held = tokio::time::timeout(APPEND_BUDGET, claim::holder(&stream, &subject))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            if held.is_none() {
                for hash in failed_media {
                    if let Err(e) = s.retry_url(&hash, &route).await {
                        tracing::warn!(url_hash = %hash, error = %e,
                            "a new callback names a media URL that failed for good; it could not be queued again now");
                    }
                }
            }
        }
        let (mark, origin) = (ev.task.clone(), meta.origin);
        let accepted = match claim::claim(&s.js, &stream, &subject, &nonce, headers, ev.body, APPEND_BUDGET)
            .await
            .map_err(unavailable)?
        {
            claim::Claim::New { seq } => {
                s.wrote(1);
                Accepted {
                    id: layout::event_id(&route, seq, meta.received_ms),
                    duplicate: false,
                }
            }
            claim::Claim::Duplicate { seq, time_ms } => Accepted {
                id: layout::event_id(&route, seq, time_ms),
                duplicate: true,
            },
        };
        if let Some(mark) = mark {
            // The event is stored: a task left open here is settled by its next poll.
            if let Err(e) = s.mark_task(&route, &mark, origin, &accepted).await {
                tracing::warn!(route = %route, task_id = %mark.task_id, error = %e,
                    "event stored, but its expected task could not be marked yet; its next poll settles it");
            }
        }
        Ok(accepted)
    }

    pub fn work_source(&self, subscriber: &str) -> Result<NatsCursor, StoreError> {
        let topology = read(&self.shared.topology);
        let route = topology
            .routes
            .iter()
            .find(|(_, subs)| subs.iter().any(|s| s == subscriber))
            .map(|(r, _)| r.clone())
            .ok_or_else(|| StoreError::UnknownSubscriber(subscriber.to_string()))?;
        Ok(NatsCursor::open(self.shared.clone(), route, subscriber.to_string()))
    }

    /// JetStream takes this relay's writes: one small row is written (a
    /// full JetStream still answers requests, and the relay must not say it
    /// is ready while every callback gets `503`).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let s = &self.shared;
        if !s.connected() {
            return Err(s.not_serving());
        }
        s.js.query_account().await.map_err(unavailable)?;
        if !s.ready.load(Ordering::Acquire) {
            return Err(s.not_serving());
        }
        let lost = lost::missing(s).await?;
        if !lost.is_empty() {
            return Err(lost::set_up_again(s, &lost));
        }
        s.tasks_bucket()?
            .put(layout::PROBE_KEY, bytes::Bytes::from_static(b"1"))
            .await
            .map_err(|e| unavailable(format!("a write to JetStream failed: {e}")))?;
        Ok(())
    }

    /// Messages JetStream stored for this relay since start.
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    pub fn describe(&self) -> String {
        format!("{} (replicas {})", self.shared.servers.join(","), self.shared.replicas)
    }

    /// Send what the client still buffers (acknowledgements, give-backs).
    /// Bounded: with NATS away a flush waits for ever, and what it would send
    /// is redelivered after `takeover` anyway.
    pub async fn close(&self) {
        let flush = self.shared.client.flush();
        if tokio::time::timeout(CLOSE_FLUSH, flush).await.is_err() {
            tracing::warn!(
                "NATS did not take the last acknowledgements within {}s: after takeover another relay \
                 gets what this relay held — a delivery whose result was recorded is only acknowledged \
                 then, not sent again",
                CLOSE_FLUSH.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod late_attempt_tests;
#[cfg(test)]
mod mark_tests;
#[cfg(test)]
mod media_tests;
