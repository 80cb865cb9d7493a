//! The media archive's side of the seam: the values that cross it (a URL's
//! state, an archived file, the archiver's work and its outcome) and
//! [`MediaSource`], the archiver's view of its work. The `Store` methods
//! that write and read media rows are in `media_calls.rs` (but
//! [`Store::add_verified_media`], here); how a
//! backend keeps them is its own business (sled: `sled/media*.rs`).

use super::{nats, sled, Backend, EventId, Store, StoreError};

impl Store {
    /// Write the archive work of a callback stored with
    /// `media_after_verify` once it is verified: `urls` (the route's pointers
    /// over its body) are archived as if ingest had written them. Idempotent.
    pub async fn add_verified_media(&self, id: EventId, route: &str, urls: Vec<String>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.add_verified_media(id, route, urls).await,
            Backend::Nats(s) => s.add_verified_media(route, &urls).await,
        }
    }

    /// Whether the media work of a callback stored with
    /// `media_after_verify` is still left to its verification (a read, no
    /// write): sled marks it with an `E` row naming no URL, NATS with a
    /// header of the event (then a URL it names has no row yet).
    pub async fn media_deferred(&self, id: EventId) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.media_deferred(id),
            Backend::Nats(s) => s.media_deferred(id).await,
        }
    }
}

/// Where one media URL stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaState {
    /// Not archived yet (first try, or waiting for a retry at `due_ms`).
    Pending {
        due_ms: u64,
    },
    Stored(StoredFile),
    /// Failed for good (refused, too large, gone, schedule exhausted).
    Failed {
        error: String,
    },
}

impl MediaState {
    pub fn name(&self) -> &'static str {
        match self {
            MediaState::Pending { .. } => "pending",
            MediaState::Stored(_) => "stored",
            MediaState::Failed { .. } => "failed",
        }
    }
    pub fn is_final(&self) -> bool {
        !matches!(self, MediaState::Pending { .. })
    }
}

/// An archived file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// A path (local store) or `s3://bucket/key`.
    pub location: String,
    /// Lower-case hex: the file's name in the media store.
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
}

/// One media URL with its state, as the admin API and `after_archive`
/// deliveries show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    /// As the callback named it (signed URLs keep their query: show with care).
    pub url: String,
    pub state: MediaState,
    /// Downloads tried (a refresh through the provider counts with its try).
    pub attempts: u32,
    /// Why the last try failed, while retrying or for good.
    pub last_error: Option<String>,
    /// When the state was set (ms).
    pub at_ms: u64,
}

/// The archiver's piece of work: one URL.
#[derive(Debug, Clone)]
pub struct MediaWork {
    pub url: String,
    /// The route of the event that named it first, or of the latest that
    /// had it tried again after it failed (its provider key refreshes it).
    pub route: String,
    /// Tries so far (the next one is `attempts + 1`).
    pub attempts: u32,
    /// Position in the media retry schedule.
    pub step: u32,
    pub ticket: MediaTicket,
}

/// The backend's handle on a piece of media work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaTicket {
    Sled(super::sled::SledMediaTicket),
    /// Boxed: it carries the URL's row as taken.
    Nats(Box<super::nats::NatsMediaTicket>),
}

/// How one media try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOutcome {
    Stored(StoredFile),
    /// Try again at `due_ms`; `error` is why this one failed.
    Retry {
        due_ms: u64,
        error: String,
    },
    /// Not a try: the URL could not be stored for a reason that is not its
    /// own (the media disk is below `media.min_free`). Looked at again at
    /// `due_ms` with its tries and retry step unchanged; `error` says why.
    Wait {
        due_ms: u64,
        error: String,
    },
    Failed {
        error: String,
    },
}

/// A stored file as the admin API serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
}

/// The archiver's view of the media work: URLs due for a try, oldest due
/// first. Owned by the archiver.
pub enum MediaSource {
    Sled(sled::MediaCursor),
    Nats(nats::NatsMediaCursor),
}

impl MediaSource {
    /// Up to `max` URLs due at `now_ms`; never one handed out and not yet
    /// [`done`](Self::done).
    pub async fn take(&mut self, max: usize, now_ms: u64) -> Result<Vec<MediaWork>, StoreError> {
        match self {
            MediaSource::Sled(c) => c.take(max, now_ms),
            MediaSource::Nats(c) => c.take(max, now_ms).await,
        }
    }

    /// The work behind `ticket` was recorded ([`Store::record_media`]) or abandoned.
    pub async fn done(&mut self, ticket: &MediaTicket) {
        match (self, ticket) {
            (MediaSource::Sled(c), MediaTicket::Sled(t)) => c.done(t),
            (MediaSource::Nats(c), MediaTicket::Nats(t)) => c.done(t),
            _ => {}
        }
    }

    /// When the earliest waiting URL not handed out is due (ms), if any.
    pub fn next_due(&self) -> Option<u64> {
        match self {
            MediaSource::Sled(c) => c.next_due(),
            MediaSource::Nats(c) => c.next_due(),
        }
    }

    /// Resolves when media work may have been added.
    pub fn signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        match self {
            MediaSource::Sled(c) => c.signal(),
            MediaSource::Nats(c) => c.signal(),
        }
    }
}
