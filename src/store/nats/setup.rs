//! Setting up the objects the relays share (streams, buckets, consumers)
//! without letting one relay change the cluster behind the others' backs.
//!
//! Three settings of a relay's config are cluster-wide once written into
//! those objects: `store.retention` (their `max_age`), `store.nats.replicas`
//! (their copies) and `store.nats.takeover` (the consumers' `ack_wait`). A
//! relay creates what is missing with its own values and leaves what exists
//! as it is when the values agree; when they differ it refuses
//! ([`SetUpError::Mismatch`], naming the setting and both values) and
//! changes nothing. Only `hookrelay apply-cluster-settings` ([`Mode::Apply`])
//! rewrites them, and lists what it changed.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, PullConsumer};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream;
use async_nats::jetstream::ErrorCode;

use super::{layout, Shared};

/// What to do with an existing object whose settings differ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Mode {
    /// Refuse: a relay never changes the cluster's settings.
    Keep,
    /// Rewrite them (the operator's explicit action).
    Apply,
}

/// One run of the set-up: its mode and, when applying, what it changed.
pub(super) struct SetUp {
    pub mode: Mode,
    pub changes: Vec<String>,
}

impl SetUp {
    pub fn new(mode: Mode) -> SetUp {
        SetUp {
            mode,
            changes: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub(super) enum SetUpError {
    /// The cluster's objects have other settings than this relay's config:
    /// not fixed by trying again.
    Mismatch(String),
    /// Anything else (NATS away, a timeout): tried again.
    Failed(String),
}

impl From<String> for SetUpError {
    fn from(e: String) -> SetUpError {
        SetUpError::Failed(e)
    }
}

impl std::fmt::Display for SetUpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetUpError::Mismatch(m) | SetUpError::Failed(m) => f.write_str(m),
        }
    }
}

fn age(d: Duration) -> String {
    if d.is_zero() {
        "no limit".into()
    } else {
        format!("{:?}", humantime::format_duration(d).to_string())
    }
}

/// One setting that differs: (config key, the cluster's value, this relay's).
struct Differs {
    key: &'static str,
    cluster: String,
    here: String,
}

/// The error of a relay whose settings differ from the cluster's `object`.
fn mismatch(object: &str, diffs: &[Differs]) -> String {
    let list: Vec<String> = diffs
        .iter()
        .map(|d| {
            format!(
                "{} is {} in this relay's config but {} in the cluster",
                d.key, d.here, d.cluster
            )
        })
        .collect();
    let keep: Vec<String> = diffs.iter().map(|d| format!("{} = {}", d.key, d.cluster)).collect();
    format!(
        "{} ({object}); these settings are shared by every relay and a relay does not change them: \
         set {} in this relay's config like on the others, or change them for the whole cluster on purpose \
         with `hookrelay apply-cluster-settings --config FILE` (FILE with the new values), then give every relay those values",
        list.join("; "),
        keep.join(", ")
    )
}

/// A relay's consumer starts at its stream's first message (`All`, with the
/// metadata of [`super::consumer`]), or at its tail (`New`: created by an
/// earlier version); NATS cannot change it later. An existing consumer with
/// our filters and one of those two keeps its own start and metadata,
/// whichever relay created it; any other stays refused as before (not ours).
fn keep_start(cfg: &mut pull::Config, existing: &async_nats::jetstream::consumer::Config) {
    use async_nats::jetstream::consumer::DeliverPolicy;
    let filters = |one: &str, many: &[String]| {
        let mut f = many.to_vec();
        if !one.is_empty() {
            f.push(one.to_string());
        }
        f.sort();
        f
    };
    let ours = matches!(existing.deliver_policy, DeliverPolicy::New | DeliverPolicy::All)
        && matches!(cfg.deliver_policy, DeliverPolicy::New | DeliverPolicy::All)
        && filters(&cfg.filter_subject, &cfg.filter_subjects)
            == filters(&existing.filter_subject, &existing.filter_subjects);
    if ours {
        cfg.deliver_policy = existing.deliver_policy;
        cfg.metadata = existing.metadata.clone();
    }
}

impl Shared {
    /// Check the existing stream `name` (a bucket's is `KV_<bucket>`)
    /// against `max_age` and this relay's replicas: Ok when it is absent
    /// (`false`) or agrees, or when applying (the change is listed).
    pub(super) async fn check_stream(
        &self,
        plan: &mut SetUp,
        name: &str,
        max_age: Duration,
    ) -> Result<bool, SetUpError> {
        let info = match self.js.get_stream(name).await {
            Ok(s) => s.cached_info().config.clone(),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => return Ok(false),
                _ => return Err(SetUpError::Failed(format!("stream {name}: {e}"))),
            },
        };
        let mut diffs = Vec::new();
        if info.max_age != max_age {
            diffs.push(Differs {
                key: "store.retention",
                cluster: age(info.max_age),
                here: age(max_age),
            });
        }
        if info.num_replicas != self.replicas {
            diffs.push(Differs {
                key: "store.nats.replicas",
                cluster: info.num_replicas.to_string(),
                here: self.replicas.to_string(),
            });
        }
        self.differs(plan, &format!("stream {name}"), diffs)?;
        Ok(true)
    }

    /// After a strict create of the stream `name` failed: another relay may
    /// have created it between the check and the create (two relays started
    /// at the same moment on an empty cluster). Compare with what is there
    /// now, so the later relay refuses rather than rewrite the first one's
    /// settings; if it is still absent, the create's own error stands.
    pub(super) async fn created_meanwhile(
        &self,
        plan: &mut SetUp,
        name: &str,
        max_age: Duration,
        create_error: String,
    ) -> Result<(), SetUpError> {
        match self.check_stream(plan, name, max_age).await? {
            true => Ok(()),
            false => Err(SetUpError::Failed(create_error)),
        }
    }

    /// Create `cfg`'s stream, or bring it up to date (keeping the cluster's
    /// settings, which [`check_stream`](Self::check_stream) compared). A
    /// stream found absent is created strictly (never over one another relay
    /// created in the meantime).
    pub(super) async fn ensure_stream(
        &self,
        plan: &mut SetUp,
        cfg: stream::Config,
    ) -> Result<stream::Stream, SetUpError> {
        Ok(self.ensure_stream_created(plan, cfg).await?.0)
    }

    /// [`ensure_stream`](Self::ensure_stream), and whether this call created it.
    pub(super) async fn ensure_stream_created(
        &self,
        plan: &mut SetUp,
        cfg: stream::Config,
    ) -> Result<(stream::Stream, bool), SetUpError> {
        let name = cfg.name.clone();
        if !self.check_stream(plan, &name, cfg.max_age).await? {
            match self.js.create_stream(cfg.clone()).await {
                Ok(s) => return Ok((s, true)),
                Err(e) => {
                    self.created_meanwhile(plan, &name, cfg.max_age, format!("stream {name}: {e}"))
                        .await?
                }
            }
        }
        self.js
            .create_or_update_stream(cfg)
            .await
            .map_err(|e| format!("stream {name}: {e}"))?;
        let s = self
            .js
            .get_stream(&name)
            .await
            .map_err(|e| format!("stream {name}: {e}"))?;
        Ok((s, false))
    }

    /// Create the consumer `cfg` on `s`, or bring it up to date; its
    /// `ack_wait` (`store.nats.takeover`) is compared like a stream's settings.
    /// One found absent is created strictly: if another relay created it in
    /// the meantime, that one is compared instead of overwritten. Where one
    /// of ours starts (see [`keep_start`]) is its own.
    pub(super) async fn ensure_consumer(
        &self,
        plan: &mut SetUp,
        s: &stream::Stream,
        mut cfg: pull::Config,
    ) -> Result<PullConsumer, SetUpError> {
        let name = cfg.durable_name.clone().unwrap_or_default();
        let object = format!("consumer {name} of stream {}", s.cached_info().config.name);
        for last_look in [false, true] {
            match s.consumer_info(&name).await {
                Ok(info) if info.config.ack_wait != cfg.ack_wait => {
                    let diffs = vec![Differs {
                        key: "store.nats.takeover",
                        cluster: age(info.config.ack_wait),
                        here: age(cfg.ack_wait),
                    }];
                    self.differs(plan, &object, diffs)?;
                    keep_start(&mut cfg, &info.config);
                    break;
                }
                Ok(info) => {
                    keep_start(&mut cfg, &info.config);
                    break;
                }
                Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
                    match s.create_consumer_strict(cfg.clone()).await {
                        Ok(c) => return Ok(c),
                        Err(e) if last_look => return Err(SetUpError::Failed(format!("{object}: {e}"))),
                        Err(_) => continue,
                    }
                }
                Err(e) => return Err(SetUpError::Failed(format!("{object}: {e}"))),
            }
        }
        Ok(s.create_consumer(cfg).await.map_err(|e| format!("{object}: {e}"))?)
    }

    fn differs(&self, plan: &mut SetUp, object: &str, diffs: Vec<Differs>) -> Result<(), SetUpError> {
        if diffs.is_empty() {
            return Ok(());
        }
        match plan.mode {
            Mode::Keep => Err(SetUpError::Mismatch(mismatch(object, &diffs))),
            Mode::Apply => {
                // Once each: a route's stream is checked before and in its
                // creation (it was listed twice).
                for d in diffs {
                    let change = format!("{object}: {} {} -> {}", d.key, d.cluster, d.here);
                    if !plan.changes.contains(&change) {
                        plan.changes.push(change);
                    }
                }
                Ok(())
            }
        }
    }

    /// Create (or check, and bring up to date) every object of the topology:
    /// the shared ones first, so a relay whose settings differ stops before
    /// it created anything.
    pub(super) async fn set_up(&self, plan: &mut SetUp) -> Result<(), SetUpError> {
        let _one = self.setting_up.lock().await;
        super::connect::check_server(&self.client, &self.js).await?;
        let max_payload = self.client.server_info().max_payload;
        if max_payload < self.max_body + super::MAX_HEADERS
            && !self.payload_warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                max_payload,
                max_body = self.max_body,
                "NATS max_payload is smaller than server.max_body plus room for headers: larger callbacks get 413; raise max_payload in the nats-server config"
            );
        }
        let topology = super::read(&self.topology);
        let mut tags = std::collections::HashMap::new();
        for (route, _) in &topology.routes {
            if let Some(other) = tags.insert(layout::route_tag(route), route.clone()) {
                return Err(SetUpError::Failed(format!(
                    "routes {other:?} and {route:?} have the same tag in event ids: rename one of them"
                )));
            }
        }
        self.ensure_stream(
            plan,
            stream::Config {
                name: layout::DEAD.into(),
                subjects: vec!["hr.dl.>".into()],
                num_replicas: self.replicas,
                storage: stream::StorageType::File,
                max_messages_per_subject: 1,
                max_age: self.retention,
                allow_direct: true,
                ..Default::default()
            },
        )
        .await?;
        let results = self.bucket(plan, layout::RESULTS, self.retention).await?;
        let (media, media_work) = self.set_up_media(plan).await?;
        let (tasks, task_work) = self.set_up_tasks(plan).await?;
        let mut streams = std::collections::HashMap::new();
        for (route, subs) in &topology.routes {
            let cfg = stream::Config {
                name: layout::stream(route),
                subjects: vec![layout::event_filter(route), layout::replay_filter(route)],
                num_replicas: self.replicas,
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: self.retention,
                duplicate_window: super::queue::duplicate_window(self.retention),
                allow_direct: true,
                ..Default::default()
            };
            let mut cfg = cfg;
            if !self.check_stream(plan, &cfg.name, cfg.max_age).await? {
                cfg.first_sequence = Some(super::lost::first_free_seq(&results, route).await?);
            }
            let (mut s, created) = self.ensure_stream_created(plan, cfg).await?;
            for sub in subs {
                let mut consumer = super::consumer_config(route, sub, self.takeover);
                // One created now starts at the stream's first message (see
                // `consumer`): never past an event another relay stored
                // naming this subscriber before the consumer existed. In a
                // stream this set-up created nothing was settled before.
                if !created {
                    super::consumer::from_the_start(&mut s, &mut consumer).await?;
                }
                self.ensure_consumer(plan, &s, consumer).await?;
                // Fanned out to from now on, whatever fails later in this set-up.
                let mut consumers = self.consumers.write().unwrap_or_else(|e| e.into_inner());
                consumers.entry(route.clone()).or_default().insert(sub.clone());
            }
            streams.insert(route.clone(), s);
        }
        *self.media.write().unwrap_or_else(|e| e.into_inner()) = Some(media);
        *self.tasks.write().unwrap_or_else(|e| e.into_inner()) = Some(tasks);
        *self.task_work.write().unwrap_or_else(|e| e.into_inner()) = Some(task_work);
        *self.media_work.write().unwrap_or_else(|e| e.into_inner()) = Some(media_work);
        *self.streams.write().unwrap_or_else(|e| e.into_inner()) = streams;
        *self.tags.write().unwrap_or_else(|e| e.into_inner()) = tags;
        *self.results.write().unwrap_or_else(|e| e.into_inner()) = Some(results);
        *self.set_up_for.write().unwrap_or_else(|e| e.into_inner()) = Some(topology);
        self.ready.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

impl Shared {
    /// `apply-cluster-settings` only: the route streams (`HR_EV_*`) of routes
    /// this config does not have, and every consumer on a route stream that
    /// this config does not name (removed subscribers), brought to this
    /// config's retention, replicas and takeover too: the settings are the
    /// cluster's, not one config's routes'. Each change is listed.
    pub(super) async fn apply_to_the_rest(&self, plan: &mut SetUp) -> Result<(), SetUpError> {
        use futures_util::TryStreamExt;
        let topology = super::read(&self.topology);
        let names: Vec<String> = self
            .js
            .stream_names()
            .try_collect()
            .await
            .map_err(|e| format!("listing the streams: {e}"))?;
        for name in names {
            let Some(route) = name.strip_prefix(layout::STREAM_PREFIX) else {
                continue;
            };
            let subs = topology.routes.iter().find(|(r, _)| r == route).map(|(_, s)| s);
            if subs.is_none() && self.check_stream(plan, &name, self.retention).await? {
                let mut s = self
                    .js
                    .get_stream(&name)
                    .await
                    .map_err(|e| format!("stream {name}: {e}"))?;
                let mut cfg = s
                    .info()
                    .await
                    .map_err(|e| format!("stream {name}: {e}"))?
                    .config
                    .clone();
                if (cfg.max_age, cfg.num_replicas) != (self.retention, self.replicas) {
                    cfg.max_age = self.retention;
                    cfg.num_replicas = self.replicas;
                    cfg.duplicate_window = super::queue::duplicate_window(self.retention);
                    self.js
                        .update_stream(cfg)
                        .await
                        .map_err(|e| format!("stream {name}: {e}"))?;
                }
            }
            let s = self
                .js
                .get_stream(&name)
                .await
                .map_err(|e| format!("stream {name}: {e}"))?;
            let consumers: Vec<async_nats::jetstream::consumer::Info> = s
                .consumers()
                .try_collect()
                .await
                .map_err(|e| format!("consumers of stream {name}: {e}"))?;
            for info in consumers {
                let named = info
                    .name
                    .strip_prefix(layout::CONSUMER_PREFIX)
                    .is_some_and(|sub| subs.is_some_and(|subs| subs.iter().any(|s| s == sub)));
                if named || info.config.ack_wait == self.takeover {
                    continue;
                }
                let object = format!("consumer {} of stream {name}", info.name);
                let diffs = vec![Differs {
                    key: "store.nats.takeover",
                    cluster: age(info.config.ack_wait),
                    here: age(self.takeover),
                }];
                self.differs(plan, &object, diffs)?;
                let mut cfg = info.config.clone();
                cfg.ack_wait = self.takeover;
                s.update_consumer(cfg).await.map_err(|e| format!("{object}: {e}"))?;
            }
        }
        Ok(())
    }
}
