//! The media archive in cluster mode: one row per URL in the `hr_media`
//! bucket (shared by every event naming the URL, so it is fetched once by
//! the whole cluster), one work message per URL in the `HR_MEDIA` work
//! queue that the archivers of every relay share, the archived files'
//! facts, and the reads the admin API and `after_archive` deliveries make
//! (media retention: [`super::media_sweep`]).
//!
//! Order of writes at ingest: the work message first (de-duplicated by the
//! URL's hash for two minutes), then the URL's row naming that message,
//! then the event. A relay that dies in between leaves work with no row
//! (the archiver writes the row when it takes the work) or a row with its
//! work, never a row without work. A second work message for a known URL
//! (after the de-duplication window) is acknowledged unread by whoever
//! takes it: only the message a row names is worked on.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, PullConsumer};
use async_nats::jetstream::kv;
use async_nats::jetstream::kv::UpdateErrorKind;
use async_nats::jetstream::stream;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::queue::{create_json, get_json, get_json_on_leader};
use super::{event, layout, read, unavailable, NatsStore, Shared};
use crate::store::{EventId, MediaFile, MediaItem, MediaState, StoreError, StoredFile};

/// Rows a listing looks at, or a retention pass forgets, at most (a pass
/// looks at every row for the files they name).
#[cfg(not(test))]
pub(super) const SCAN_LIMIT: usize = 50_000;
#[cfg(test)]
pub(super) const SCAN_LIMIT: usize = 20;

#[cfg(test)]
thread_local! {
    /// Tests: the next file row write on this thread fails, as when NATS
    /// fails between a try's URL row and its file row.
    pub(super) static FAIL_FILE_ROW: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A media URL's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MediaRow {
    pub url: String,
    /// The route of the first event that named it (its provider key refreshes it).
    pub route: String,
    /// The sequence of the work message in charge of this URL.
    pub work: u64,
    pub state: RowState,
    pub attempts: u32,
    /// Position in the media retry schedule.
    pub step: u32,
    pub last_error: Option<String>,
    pub at_ms: u64,
    /// How many times an archiver took the work: each take writes it, so
    /// the outcome of a take that lost its hold (its relay stalled past
    /// `takeover`) finds the row changed and is dropped, whichever of the
    /// two tries ends first. Absent in rows written before it (0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub taken: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum RowState {
    Pending {
        due_ms: u64,
    },
    Stored {
        location: String,
        sha256: String,
        size: u64,
        content_type: Option<String>,
    },
    Failed {
        error: String,
    },
}

/// What the work message carries: enough to write the row if it is missing.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WorkMessage {
    pub url: String,
    pub route: String,
    /// A retry of the URL's failure recorded at this time (the failed row's
    /// `at_ms`): it makes that row pending again, whichever sequence it has
    /// ([`super::media_retry`]). Absent from first messages (and from those
    /// of relays before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<u64>,
}

/// An archived file's facts, under its digest.
#[derive(Debug, Serialize, Deserialize)]
struct FileRow {
    size: u64,
    content_type: Option<String>,
}

impl MediaRow {
    pub fn new(url: String, route: String, work: u64, now_ms: u64) -> MediaRow {
        MediaRow {
            url,
            route,
            work,
            state: RowState::Pending { due_ms: now_ms },
            attempts: 0,
            step: 0,
            last_error: None,
            at_ms: now_ms,
            taken: 0,
        }
    }

    pub fn is_final(&self) -> bool {
        !matches!(self.state, RowState::Pending { .. })
    }

    fn item(&self) -> MediaItem {
        MediaItem {
            url: self.url.clone(),
            state: match &self.state {
                RowState::Pending { due_ms } => MediaState::Pending { due_ms: *due_ms },
                RowState::Stored {
                    location,
                    sha256,
                    size,
                    content_type,
                } => MediaState::Stored(StoredFile {
                    location: location.clone(),
                    sha256: sha256.clone(),
                    size: *size,
                    content_type: content_type.clone(),
                }),
                RowState::Failed { error } => MediaState::Failed { error: error.clone() },
            },
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            at_ms: self.at_ms,
        }
    }

    pub(super) fn sha256(&self) -> Option<&str> {
        match &self.state {
            RowState::Stored { sha256, .. } => Some(sha256),
            _ => None,
        }
    }
}

/// The archivers' shared consumer, set up by `set_up`.
pub(super) async fn existing_archiver(shared: &Shared) -> Result<PullConsumer, String> {
    let s = read(&shared.media_work).ok_or("the media work stream is not set up yet")?;
    s.get_consumer::<pull::Config>(layout::ARCHIVER)
        .await
        .map_err(|e| format!("consumer {}: {e}", layout::ARCHIVER))
}

impl Shared {
    /// The media bucket (rows stay until media retention removes them),
    /// work queue and archivers' consumer, created or brought up to date.
    pub(super) async fn set_up_media(
        &self,
        plan: &mut super::setup::SetUp,
    ) -> Result<(kv::Store, stream::Stream), super::setup::SetUpError> {
        let bucket = self.bucket(plan, layout::MEDIA, Duration::ZERO).await?;
        let work = self
            .work_queue(
                plan,
                layout::MEDIA_WORK,
                layout::media_subject("*"),
                layout::ARCHIVER,
                Duration::ZERO,
            )
            .await?;
        Ok((bucket, work))
    }

    pub(super) fn media(&self) -> Result<kv::Store, StoreError> {
        read(&self.media).ok_or_else(|| unavailable("the media bucket is not set up yet"))
    }

    pub(super) async fn media_row(&self, hash: &str) -> Result<Option<(MediaRow, u64)>, StoreError> {
        get_json(&self.media()?, &layout::media_key(hash)).await
    }

    /// Write the row of a URL first seen by its work message: its
    /// revision, or None when another work message got there first.
    pub(super) async fn create_media_row(&self, hash: &str, row: &MediaRow) -> Result<Option<u64>, StoreError> {
        let created = create_json(&self.media()?, layout::media_key(hash), row).await?;
        self.wrote(u64::from(created.is_some()));
        Ok(created)
    }

    /// Write a URL's row over the one at `revision`: its new revision, or
    /// None, and nothing written, when the row changed since.
    pub(super) async fn update_media_row(
        &self,
        hash: &str,
        row: &MediaRow,
        revision: u64,
    ) -> Result<Option<u64>, StoreError> {
        let value = Bytes::from(serde_json::to_vec(row).expect("serializes"));
        match self.media()?.update(layout::media_key(hash), value, revision).await {
            Ok(revision) => {
                self.wrote(1);
                Ok(Some(revision))
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The file row of a URL row naming a stored file.
    pub(super) async fn put_file_row(&self, state: &RowState) -> Result<(), StoreError> {
        #[cfg(test)]
        if FAIL_FILE_ROW.with(|f| f.replace(false)) {
            return Err(unavailable("a file row write failed (test)"));
        }
        if let RowState::Stored {
            sha256,
            size,
            content_type,
            ..
        } = state
        {
            let file = FileRow {
                size: *size,
                content_type: content_type.clone(),
            };
            let value = Bytes::from(serde_json::to_vec(&file).expect("serializes"));
            self.media()?
                .put(layout::file_key(sha256), value)
                .await
                .map_err(unavailable)?;
            self.wrote(1);
        }
        Ok(())
    }

    /// Make sure each URL is archived: its work message, then its row; a
    /// stored one starts its retention again. The hashes of those that
    /// failed for good: a new event naming one has it tried again
    /// ([`Self::retry_url`], by the caller: a duplicate callback does not).
    pub(super) async fn register_media(&self, route: &str, urls: &[String]) -> Result<Vec<String>, StoreError> {
        let now = crate::clock::now_ms();
        let mut failed = Vec::new();
        for url in urls {
            let hash = layout::media_hash(url);
            let msg = WorkMessage {
                url: url.clone(),
                route: route.to_string(),
                retry_of: None,
            };
            let work = self.publish_work(layout::media_subject(&hash), &hash, &msg).await?;
            let row = MediaRow::new(url.clone(), route.to_string(), work, now);
            if self.create_media_row(&hash, &row).await?.is_some() {
                continue;
            }
            match self.media_row(&hash).await? {
                Some((row, _)) if matches!(row.state, RowState::Failed { .. }) => failed.push(hash),
                Some(read) => self.restart_retention(&hash, now, read).await?,
                None => {}
            }
        }
        Ok(failed)
    }

    /// A stored URL named by a new event starts its retention again (as on
    /// a single host), so the file outlives that event's deliveries too.
    /// Written only if the row is unchanged since read (`read`); tried
    /// again once another write got in between.
    async fn restart_retention(&self, hash: &str, now: u64, read: (MediaRow, u64)) -> Result<(), StoreError> {
        let mut read = Some(read);
        for _ in 0..3 {
            let read = match read.take() {
                Some(r) => Some(r),
                None => self.media_row(hash).await?,
            };
            let Some((mut row, revision)) = read else {
                return Ok(());
            };
            if !matches!(row.state, RowState::Stored { .. }) || row.at_ms >= now {
                return Ok(());
            }
            row.at_ms = now;
            if self.update_media_row(hash, &row, revision).await?.is_some() {
                return Ok(());
            }
        }
        Err(unavailable(
            "the media row kept changing while its retention was restarted",
        ))
    }

    /// Every URL row (up to [`SCAN_LIMIT`]) with its hash: for listings.
    pub(super) async fn media_rows(&self) -> Result<Vec<(String, MediaRow)>, StoreError> {
        let values = self.latest_values(layout::MEDIA, "u.", SCAN_LIMIT).await?;
        Ok(values
            .into_iter()
            .filter_map(|(hash, v)| Some((hash, serde_json::from_slice(&v).ok()?)))
            .collect())
    }

    /// `visit` every URL row with its hash (however many), the row written
    /// longest ago first, nothing kept: media retention must see them all
    /// (a file named only by a row past a listing's limit is still named).
    pub(super) async fn each_media_row(&self, mut visit: impl FnMut(&str, MediaRow)) -> Result<(), StoreError> {
        self.each_latest(layout::MEDIA, "u.", |hash, v| {
            if let Ok(row) = serde_json::from_slice(&v) {
                visit(hash, row);
            }
            true
        })
        .await
    }
}

impl NatsStore {
    /// The media of an event, in the order its pointers found them; None
    /// when it named none.
    pub async fn event_media(&self, id: EventId) -> Result<Option<Vec<MediaItem>>, StoreError> {
        let Some((_, _, headers)) = self.find_headers(id).await? else {
            return Ok(None);
        };
        let Some(urls) = event::media(&headers) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(urls.len());
        for url in urls {
            let hash = layout::media_hash(&url);
            // A row outlives its events, but an old event can outlive a
            // row (media retention): skip those. One a replica does not
            // have yet (written as the callback was stored) is read on the
            // leader: skipped, it let an `after_archive` delivery go before
            // its media was archived; so is a `failed` one (a replica
            // behind a new callback's try again would say so: final).
            let row = match self.shared.media_row(&hash).await? {
                Some(r) if !matches!(r.0.state, RowState::Failed { .. }) => Some(r),
                _ => get_json_on_leader(&self.shared.media()?, &layout::media_key(&hash)).await?,
            };
            if let Some((row, _)) = row {
                out.push(row.item());
            }
        }
        Ok(Some(out))
    }

    /// A stored file by its digest, while a URL refers to it.
    pub async fn media_file(&self, sha256: String) -> Result<Option<MediaFile>, StoreError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match self
            .shared
            .media()?
            .entry(layout::file_key(&sha256))
            .await
            .map_err(unavailable)?
        {
            Some(e) if e.operation == kv::Operation::Put => {
                let f: FileRow =
                    serde_json::from_slice(&e.value).map_err(|_| StoreError::Corrupt(format!("file {sha256}")))?;
                Ok(Some(MediaFile {
                    sha256,
                    size: f.size,
                    content_type: f.content_type,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The most recently finished URLs (newest first) and the waiting ones
    /// (soonest due first), up to `limit` each.
    pub async fn recent_media(&self, limit: usize) -> Result<(Vec<MediaItem>, Vec<MediaItem>), StoreError> {
        let rows = self.shared.media_rows().await?;
        let (mut done, mut waiting): (Vec<MediaItem>, Vec<MediaItem>) = rows
            .into_iter()
            .map(|(_, r)| r.item())
            .partition(|i| i.state.is_final());
        done.sort_by_key(|i| std::cmp::Reverse(i.at_ms));
        let due = |i: &MediaItem| match i.state {
            MediaState::Pending { due_ms } => due_ms,
            _ => 0,
        };
        waiting.sort_by_key(due);
        done.truncate(limit);
        waiting.truncate(limit);
        Ok((done, waiting))
    }

    /// The archive work of a callback verified after it was stored
    /// (`NewEvent::media_after_verify`): its URLs registered as ingest
    /// registers them (a URL already known is left as it is, but one that
    /// failed for good is tried again, as for a new callback), so asking
    /// twice (a restart, another relay) costs nothing more unless a URL
    /// failed again in between.
    pub async fn add_verified_media(&self, route: &str, urls: &[String]) -> Result<(), StoreError> {
        let register = async {
            for hash in self.shared.register_media(route, urls).await? {
                self.shared.retry_url(&hash, route).await?;
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(3), register)
            .await
            .map_err(|_| unavailable("NATS did not answer in time"))?
    }

    /// Whether the media work of a callback stored with
    /// `media_after_verify` is still owed: it is marked so and a URL it
    /// names has no row (reads only).
    pub async fn media_deferred(&self, id: EventId) -> Result<bool, StoreError> {
        let Some((_, _, headers)) = self.find_headers(id).await? else {
            return Ok(false);
        };
        if !event::media_after_verify(&headers) {
            return Ok(false);
        }
        for url in event::media(&headers).unwrap_or_default() {
            if self.shared.media_row(&layout::media_hash(&url)).await?.is_none() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Media URLs waiting for a try, across the cluster; `None` while NATS
    /// has not confirmed the count lately.
    pub fn media_queue(&self) -> Option<u64> {
        self.shared.media_depth.known()
    }
}
