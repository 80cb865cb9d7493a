//! The cluster backend: NATS JetStream, shared by several relays (see
//! [`layout`] for where everything lives). Only this module knows NATS.
//!
//! A relay may start while NATS is away: it connects in the background, sets
//! up its streams, bucket and consumers as soon as it can, and until then
//! ingest answers 503 (the provider retries) — never 200 for what is not
//! stored. The `200` follows the publish acknowledged by the stream's quorum.

mod claim;
mod connect;
mod event;
mod follow;
mod hold;
pub mod layout;
mod media;
mod media_source;
mod peer;
mod query;
mod queue;
mod record;
mod source;
mod task_work;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use tokio::sync::Mutex;

pub use media_source::{NatsMediaCursor, NatsMediaTicket};
pub use source::{NatsCursor, NatsTicket};

use super::result::ResultRow;
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
    /// Streams, bucket and consumers exist for `topology`.
    ready: AtomicBool,
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
    media_depth: Arc<AtomicU64>,
    /// The tasks bucket and work stream, once they exist.
    tasks: RwLock<Option<kv::Store>>,
    task_work: RwLock<Option<stream::Stream>>,
    /// This relay's reconciler's view of the task work (started on its first look).
    task_follower: std::sync::Mutex<Option<follow::Follower>>,
    /// Task work messages this relay holds while it polls them, by task hash.
    held_tasks: std::sync::Mutex<HashMap<String, (u64, Arc<async_nats::jetstream::message::Acker>)>>,
    /// Servers, for messages.
    servers: Vec<String>,
    /// `server.max_body`: checked against the servers' `max_payload`.
    max_body: usize,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Shared {
    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
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

    pub(super) async fn result(&self, key: &str) -> Result<Option<(ResultRow, u64)>, StoreError> {
        queue::get_json(&self.results()?, key).await
    }

    pub(super) async fn put_result(&self, key: &str, row: &ResultRow) -> Result<(), StoreError> {
        let value = Bytes::from(serde_json::to_vec(row).expect("serializes"));
        self.results()?.put(key, value).await.map_err(unavailable)?;
        Ok(())
    }

    /// Create or update the streams, bucket and consumers of the topology.
    async fn set_up(&self) -> Result<(), String> {
        let _one = self.setting_up.lock().await;
        connect::check_server(&self.client, &self.js).await?;
        let max_payload = self.client.server_info().max_payload;
        if max_payload < self.max_body + MAX_HEADERS {
            tracing::warn!(
                max_payload,
                max_body = self.max_body,
                "NATS max_payload is smaller than server.max_body plus room for headers: larger callbacks get 413; raise max_payload in the nats-server config"
            );
        }
        let topology = read(&self.topology);
        let mut streams = HashMap::new();
        let mut tags: HashMap<u16, String> = HashMap::new();
        for (route, subs) in &topology.routes {
            if let Some(other) = tags.insert(layout::route_tag(route), route.clone()) {
                return Err(format!(
                    "routes {other:?} and {route:?} have the same tag in event ids: rename one of them"
                ));
            }
            let cfg = stream::Config {
                name: layout::stream(route),
                subjects: vec![layout::event_filter(route), layout::replay_filter(route)],
                num_replicas: self.replicas,
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: self.retention,
                duplicate_window: DUPLICATE_WINDOW.min(self.retention),
                allow_direct: true,
                ..Default::default()
            };
            self.js
                .create_or_update_stream(cfg)
                .await
                .map_err(|e| format!("stream {}: {e}", layout::stream(route)))?;
            let s = self
                .js
                .get_stream(layout::stream(route))
                .await
                .map_err(|e| format!("stream {}: {e}", layout::stream(route)))?;
            for sub in subs {
                consumer(&s, route, sub, self.takeover).await?;
            }
            streams.insert(route.clone(), s);
        }
        self.js
            .create_or_update_stream(stream::Config {
                name: layout::DEAD.into(),
                subjects: vec!["hr.dl.>".into()],
                num_replicas: self.replicas,
                storage: stream::StorageType::File,
                max_messages_per_subject: 1,
                max_age: self.retention,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("stream {}: {e}", layout::DEAD))?;
        let results = self.bucket(layout::RESULTS, self.retention).await?;
        let (media, media_work) = self.set_up_media().await?;
        *self.media.write().unwrap_or_else(|e| e.into_inner()) = Some(media);
        let (tasks, task_work) = self.set_up_tasks().await?;
        *self.tasks.write().unwrap_or_else(|e| e.into_inner()) = Some(tasks);
        *self.task_work.write().unwrap_or_else(|e| e.into_inner()) = Some(task_work);
        *self.media_work.write().unwrap_or_else(|e| e.into_inner()) = Some(media_work);
        *self.streams.write().unwrap_or_else(|e| e.into_inner()) = streams;
        *self.tags.write().unwrap_or_else(|e| e.into_inner()) = tags;
        *self.results.write().unwrap_or_else(|e| e.into_inner()) = Some(results);
        self.ready.store(true, Ordering::Release);
        Ok(())
    }
}

/// A subscriber's consumer, set up by `set_up`.
pub(super) async fn existing_consumer(s: &stream::Stream, sub: &str) -> Result<PullConsumer, String> {
    s.get_consumer::<pull::Config>(&layout::consumer(sub))
        .await
        .map_err(|e| format!("consumer {}: {e}", layout::consumer(sub)))
}

/// A subscriber's durable consumer, created or brought up to date; a new one
/// starts at the tail of the log.
pub(super) async fn consumer(
    s: &stream::Stream,
    route: &str,
    sub: &str,
    takeover: Duration,
) -> Result<PullConsumer, String> {
    let name = layout::consumer(sub);
    s.create_consumer(pull::Config {
        durable_name: Some(name.clone()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: takeover,
        max_deliver: -1,
        // NAK-delayed retries count here: the relay bounds concurrency itself.
        max_ack_pending: -1,
        deliver_policy: DeliverPolicy::New,
        filter_subjects: vec![layout::event_filter(route), layout::replay_subject(route, sub)],
        ..Default::default()
    })
    .await
    .map_err(|e| format!("consumer {name}: {e}"))
}

impl NatsStore {
    /// Connect (in the background when NATS is away) to the cluster.
    pub async fn open(cfg: &NatsConfig, retention: Duration, max_body: usize) -> Result<NatsStore, StoreError> {
        let (client, js) = connect::connect(cfg).await?;
        Ok(NatsStore {
            shared: Arc::new(Shared {
                client,
                js,
                replicas: cfg.replicas,
                retention,
                takeover: cfg.takeover,
                topology: RwLock::new(Topology { routes: Vec::new() }),
                ready: AtomicBool::new(false),
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
                servers: cfg.servers.clone(),
                max_body,
            }),
        })
    }

    /// Set the topology up now if NATS answers, else keep trying in the
    /// background (ingest answers 503 until then).
    pub async fn register(&self, topology: &Topology) -> Result<(), StoreError> {
        *self.shared.topology.write().unwrap_or_else(|e| e.into_inner()) = topology.clone();
        self.shared.ready.store(false, Ordering::Release);
        if self.shared.connected() {
            match tokio::time::timeout(Duration::from_secs(10), self.shared.set_up()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => tracing::error!(error = %e, "NATS set-up failed; retrying"),
                Err(_) => tracing::warn!("NATS set-up is slow; retrying in the background"),
            }
        } else {
            tracing::warn!(servers = ?self.shared.servers, "NATS is not reachable yet; answering 503 until it is");
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(250);
            loop {
                tokio::time::sleep(wait).await;
                if shared.ready.load(Ordering::Acquire) {
                    return;
                }
                if shared.connected() {
                    match shared.set_up().await {
                        Ok(()) => {
                            tracing::info!("NATS JetStream set up; serving");
                            return;
                        }
                        Err(e) => tracing::error!(error = %e, "NATS set-up failed; retrying"),
                    }
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        });
        Ok(())
    }

    pub async fn append(&self, ev: NewEvent) -> Result<Accepted, StoreError> {
        let s = &self.shared;
        if !s.ready.load(Ordering::Acquire) || !s.connected() {
            return Err(unavailable("NATS is not reachable"));
        }
        let route = ev.meta.route.clone();
        let stream = s.stream(&route)?;
        let subject = layout::event_subject(&route, &ev.dedupe_hash);
        let nonce = ulid::Ulid::new().to_string();
        let headers = event::headers(&ev.meta, &ev.media, &nonce);
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
        if !ev.media.is_empty() {
            tokio::time::timeout(APPEND_BUDGET, s.register_media(&route, &ev.media))
                .await
                .map_err(|_| unavailable("NATS did not answer in time"))??;
        }
        let (mark, origin) = (ev.task.clone(), ev.meta.origin);
        let accepted = match claim::claim(&s.js, &stream, &subject, &nonce, headers, ev.body, APPEND_BUDGET)
            .await
            .map_err(unavailable)?
        {
            claim::Claim::New { seq } => Accepted {
                id: layout::event_id(&route, seq, ev.meta.received_ms),
                duplicate: false,
            },
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

    /// JetStream answers this relay's requests.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let s = &self.shared;
        if !s.connected() {
            return Err(unavailable("not connected to NATS"));
        }
        s.js.query_account().await.map_err(unavailable)?;
        if !s.ready.load(Ordering::Acquire) {
            return Err(unavailable("the streams are not set up yet"));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!("{} (replicas {})", self.shared.servers.join(","), self.shared.replicas)
    }

    pub async fn close(&self) {
        let _ = self.shared.client.flush().await;
    }
}
