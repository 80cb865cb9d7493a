//! The two shapes of shared state the cluster backend builds on besides the
//! event streams: key-value buckets (results, media URLs, expected tasks)
//! and work queues whose one message per piece of work is handed to one
//! relay at a time and NAKed until it is due again (the archiver's, the
//! reconciler's). Setting them up, and reading every key's latest value in
//! one pass.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{kv, stream};
use bytes::Bytes;
use futures_util::TryStreamExt;

use super::setup::{SetUp, SetUpError};
use super::{unavailable, Shared};
use crate::store::StoreError;

impl Shared {
    /// A bucket keeping one value per key, replicated like the streams;
    /// `max_age` zero keeps values until deleted. An existing bucket's
    /// settings are checked like a stream's (see [`super::setup`]).
    pub(super) async fn bucket(
        &self,
        plan: &mut SetUp,
        name: &str,
        max_age: Duration,
    ) -> Result<kv::Store, SetUpError> {
        let cfg = kv::Config {
            bucket: name.into(),
            history: 1,
            max_age,
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let stream = format!("KV_{name}");
        if !self.check_stream(plan, &stream, max_age).await? {
            // Strictly, as for streams (setup.rs): a relay starting at the
            // same moment may have created it with other settings.
            match self.js.create_key_value(cfg.clone()).await {
                Ok(kv) => return Ok(kv),
                Err(e) => {
                    self.created_meanwhile(plan, &stream, max_age, format!("bucket {name}: {e}"))
                        .await?
                }
            }
        }
        Ok(self
            .js
            .create_or_update_key_value(cfg)
            .await
            .map_err(|e| format!("bucket {name}: {e}"))?)
    }

    /// A work-queue stream on `subjects` with the durable consumer that the
    /// relays share: a message goes to one relay at a time and to another
    /// one `takeover` after the first stopped renewing it.
    pub(super) async fn work_queue(
        &self,
        plan: &mut SetUp,
        name: &str,
        subjects: String,
        consumer: &str,
        max_age: Duration,
    ) -> Result<stream::Stream, SetUpError> {
        let work = self
            .ensure_stream(
                plan,
                stream::Config {
                    name: name.into(),
                    subjects: vec![subjects],
                    num_replicas: self.replicas,
                    storage: stream::StorageType::File,
                    retention: stream::RetentionPolicy::WorkQueue,
                    max_age,
                    duplicate_window: duplicate_window(max_age),
                    ..Default::default()
                },
            )
            .await?;
        let cfg = pull::Config {
            durable_name: Some(consumer.into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.takeover,
            max_deliver: -1,
            max_ack_pending: -1,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        };
        self.ensure_consumer(plan, &work, cfg).await?;
        Ok(work)
    }

    /// Publish the work message for the piece of work named `hash` (a URL,
    /// a task) on `subject`, de-duplicated by that name for two minutes;
    /// its stream sequence once the stream stored it.
    pub(super) async fn publish_work<T: serde::Serialize>(
        &self,
        subject: String,
        hash: &str,
        msg: &T,
    ) -> Result<u64, StoreError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(super::event::NONCE, hash);
        let body = Bytes::from(serde_json::to_vec(msg).expect("serializes"));
        let ack = self
            .js
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        self.wrote(1);
        Ok(ack.sequence)
    }

    /// The latest value of every key of `bucket` starting with `prefix` (up
    /// to `limit`): (the key after the prefix, value). See [`Self::each_latest`].
    pub(super) async fn latest_values(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>, StoreError> {
        let mut out = Vec::new();
        self.each_latest(bucket, prefix, |key, value| {
            out.push((key.to_string(), value));
            out.len() < limit
        })
        .await?;
        Ok(out)
    }

    /// `visit` the latest value of every key of `bucket` starting with
    /// `prefix` (the key after the prefix, value), the key written longest
    /// ago first, until it answers false: streamed by one ordered consumer
    /// on the bucket's stream rather than a round trip per key, nothing
    /// kept. Deleted keys are left out.
    pub(super) async fn each_latest(
        &self,
        bucket: &str,
        prefix: &str,
        mut visit: impl FnMut(&str, Bytes) -> bool,
    ) -> Result<(), StoreError> {
        let stream = self.js.get_stream(format!("KV_{bucket}")).await.map_err(unavailable)?;
        let subject_prefix = format!("$KV.{bucket}.{prefix}");
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{subject_prefix}>"),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(());
        }
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        while let Some(m) = messages.try_next().await.map_err(unavailable)? {
            let pending = m.info().map(|i| i.pending).unwrap_or(0);
            let key = m.subject.as_str().strip_prefix(&subject_prefix).unwrap_or_default();
            // A deleted or purged key's last message is an empty marker.
            if !key.is_empty() && !m.payload.is_empty() && !visit(key, m.payload.clone()) {
                break;
            }
            if pending == 0 {
                break;
            }
        }
        Ok(())
    }
}

/// The de-duplication window of a stream whose messages live `max_age`
/// (zero: no limit): JetStream refuses a window longer than the age.
pub(super) fn duplicate_window(max_age: Duration) -> Duration {
    if max_age.is_zero() {
        super::DUPLICATE_WINDOW
    } else {
        super::DUPLICATE_WINDOW.min(max_age)
    }
}

/// A key's JSON value with its revision; None when absent or deleted. A
/// read that timed out (a direct get drawn by a hung replica) is asked
/// again of the bucket's leader ([`get_json_on_leader`]).
pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
    bucket: &kv::Store,
    key: &str,
) -> Result<Option<(T, u64)>, StoreError> {
    let entry = match bucket.entry(key).await {
        Ok(entry) => entry,
        Err(e) if e.kind() == kv::EntryErrorKind::TimedOut => return get_json_on_leader(bucket, key).await,
        Err(e) => return Err(unavailable(e)),
    };
    match entry {
        Some(e) if e.operation == kv::Operation::Put => {
            let value = serde_json::from_slice(&e.value).map_err(|_| StoreError::Corrupt(key.to_string()))?;
            Ok(Some((value, e.revision)))
        }
        _ => Ok(None),
    }
}

/// [`get_json`] read on the bucket's stream leader, which has every write
/// its quorum acknowledged: a key's read from a replica (a direct get) can
/// miss one written a moment ago.
pub(super) async fn get_json_on_leader<T: serde::de::DeserializeOwned>(
    bucket: &kv::Store,
    key: &str,
) -> Result<Option<(T, u64)>, StoreError> {
    let subject = format!("{}{key}", bucket.prefix);
    match bucket.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => {
            if matches!(m.headers.get("KV-Operation").map(|v| v.as_str()), Some("DEL" | "PURGE")) {
                return Ok(None);
            }
            let value = serde_json::from_slice(&m.payload).map_err(|_| StoreError::Corrupt(key.to_string()))?;
            Ok(Some((value, m.sequence)))
        }
        Err(e) if e.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

/// Write a key that must be new: its revision, or None when it exists.
pub(super) async fn create_json<T: serde::Serialize>(
    bucket: &kv::Store,
    key: String,
    value: &T,
) -> Result<Option<u64>, StoreError> {
    let bytes = Bytes::from(serde_json::to_vec(value).expect("serializes"));
    match bucket.create(key, bytes).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}
