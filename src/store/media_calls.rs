//! The `Store` methods of the media archive: the archiver's work source,
//! its outcomes, and what the admin API, deliveries and media retention read
//! (the values that cross the seam: [`super::media`]).

use std::collections::HashSet;

use super::*;

impl Store {
    /// The archiver's view of the media work (one per daemon).
    pub fn media_source(&self) -> MediaSource {
        match &self.backend {
            Backend::Sled(s) => MediaSource::Sled(s.media_source()),
            Backend::Nats(s) => MediaSource::Nats(s.media_source()),
        }
    }

    /// Record an archive try. Returns once applied; an event whose media is
    /// now all final has its waiting deliveries made due.
    pub async fn record_media(&self, ticket: &MediaTicket, outcome: MediaOutcome) -> Result<(), StoreError> {
        match (&self.backend, ticket) {
            (Backend::Sled(s), MediaTicket::Sled(t)) => s.record_media(t, outcome).await,
            (Backend::Nats(s), MediaTicket::Nats(t)) => s.record_media(t, outcome).await,
            _ => Err(StoreError::Corrupt("media work of another store".into())),
        }
    }

    /// The media of an event, in the order its pointers found them; None when
    /// it named none. Asked before every `after_archive` delivery (sled: a
    /// few point reads, fine on the async workers).
    pub async fn event_media(&self, id: EventId) -> Result<Option<Vec<MediaItem>>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.event_media(id),
            Backend::Nats(s) => s.event_media(id).await,
        }
    }

    /// An operator's retry of an event's failed media URLs: each is due
    /// again now, from the start of the `media.retry` schedule, as if a new
    /// callback had named it; how many. None when the store has no media
    /// of the event (unknown, named none, or waiting for its verification).
    pub async fn retry_media(&self, id: EventId) -> Result<Option<usize>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.retry_media(id).await,
            Backend::Nats(s) => s.retry_media(id).await,
        }
    }

    /// A stored file by its SHA-256 (lower-case hex), while a URL refers to it.
    pub async fn media_file(&self, sha256: String) -> Result<Option<MediaFile>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.media_file(&sha256)).await,
            Backend::Nats(s) => s.media_file(sha256).await,
        }
    }

    /// Which of `digests` a URL still names as its stored file (media
    /// retention's last check before it deletes the others).
    pub async fn media_referenced(&self, digests: Vec<String>) -> Result<HashSet<String>, StoreError> {
        match &self.backend {
            // The `F` index rows, which a sweep removes only with their URL.
            Backend::Sled(s) => {
                s.blocking(move |s| {
                    let mut kept = HashSet::new();
                    for d in digests {
                        if s.media_file(&d)?.is_some() {
                            kept.insert(d);
                        }
                    }
                    Ok(kept)
                })
                .await
            }
            Backend::Nats(s) => s.media_referenced(digests).await,
        }
    }

    /// The most recently finished media URLs (newest first) and the ones
    /// waiting for a try, up to `limit` each.
    pub async fn recent_media(&self, limit: usize) -> Result<(Vec<MediaItem>, Vec<MediaItem>), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.blocking(move |s| s.recent_media(limit)).await,
            Backend::Nats(s) => s.recent_media(limit).await,
        }
    }

    /// Media retention: forget the URLs that became final before `cutoff_ms`.
    /// Returns how many, and the digests of files no URL refers to any more
    /// (the caller deletes them, then reports them settled with
    /// [`media_released_settled`](Self::media_released_settled); until then
    /// every pass returns them again). Works in bounded steps.
    pub async fn sweep_media(&self, cutoff_ms: u64) -> Result<(usize, Vec<String>), StoreError> {
        each!(self, s => s.sweep_media(cutoff_ms).await)
    }

    /// Media retention settled these released digests (deleted, not
    /// there, or named by a URL again): forget them. The others stay
    /// released and [`sweep_media`](Self::sweep_media) returns them again.
    pub async fn media_released_settled(&self, digests: Vec<String>) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        each!(self, s => s.media_released_settled(digests).await)
    }

    /// Media URLs waiting for a try (`None`: not known now, NATS away).
    pub fn media_queue(&self) -> Option<u64> {
        each!(self, s => s.media_queue())
    }
}
