//! One archive try of one URL: download and store it; on 403/404/410, when
//! the URL's route has a provider key, ask the provider once for a fresh URL
//! (`POST /api/v1/common/download-url`) and download that. Then decide what
//! the store records: stored, retry on the media schedule, or failed for good
//! — or, while the media disk is below `media.min_free` before the GET, a
//! wait that is no try: the URL is looked at again after [`low_space_wait`]
//! with its tries and step unchanged. A file refused as it is written (it
//! does not fit above the floor) is a try like any other failure, so one that
//! never fits ends as failed instead of being fetched again for ever.
//!
//! Logs name the URL without its query ([`super::shown`]); error texts name
//! hosts, never URLs.

use std::sync::Arc;
use std::time::Duration;

use super::settings::ArchiveSettings;
use super::shown::shown;
use super::{archive, ArchiveError, Stored};
use crate::clock;
use crate::metrics::Metrics;
use crate::store::{MediaOutcome, MediaWork, Store, StoredFile};

/// Why a try did not store the file.
struct Failure {
    message: String,
    /// A later try may work (network, 5xx, timeouts, a rate-limited refresh).
    retryable: bool,
    /// How long the server (or the provider) asked us to wait.
    retry_after: Option<Duration>,
    /// The media disk was below its floor before the try began: not the
    /// URL's fault, no try. (A file refused while it was written counts as a
    /// try: it may be one that never fits, which must end as failed.)
    low_space: bool,
}

/// The longest wait of a URL for the media disk to get above `min_free`.
const LOW_SPACE_WAIT_MAX: Duration = Duration::from_secs(60);

/// How long a URL waits for space before it is looked at again: the first
/// delay of `media.retry` (jittered), at most a minute.
fn low_space_wait(s: &ArchiveSettings) -> Duration {
    s.retry
        .next_delay(0, None)
        .unwrap_or(LOW_SPACE_WAIT_MAX)
        .min(LOW_SPACE_WAIT_MAX)
}

impl From<ArchiveError> for Failure {
    fn from(e: ArchiveError) -> Failure {
        Failure {
            low_space: false,
            retryable: e.retryable(),
            retry_after: match &e {
                ArchiveError::Fetch(f) => f.retry_after(),
                ArchiveError::Store(_) => None,
            },
            message: e.to_string(),
        }
    }
}

/// Download, and refresh once through the provider when the URL expired.
async fn try_once(s: &ArchiveSettings, metrics: &Metrics, w: &MediaWork) -> Result<Stored, Failure> {
    // No GET while the disk is low (the file could not be kept, and a signed
    // URL's provider may count the download).
    let room = s.store.check_room();
    let low = matches!(&room, Err(e) if e.is_low_space());
    match (metrics.media_low_space.set(i64::from(low)) == 1, low) {
        (false, true) => tracing::warn!(
            store = %s.store.describe(),
            "media disk below media.min_free: downloads and after_archive deliveries wait for room"
        ),
        (true, false) => tracing::info!("media disk above media.min_free again: downloads go on"),
        _ => {}
    }
    if let Err(e) = room {
        if low {
            return Err(Failure {
                low_space: true,
                ..Failure::from(ArchiveError::Store(e))
            });
        }
    }
    let gone = match archive(&s.fetcher, &s.store, &w.url).await {
        Err(e) if e.is_gone() => e,
        other => return other.map_err(Failure::from),
    };
    let Some(client) = s.providers.get(&w.route) else {
        // No key to ask with: the status is the answer.
        return Err(Failure::from(gone));
    };
    let fresh = match client.download_url(&w.url).await {
        Ok(u) => {
            metrics.media_refresh("ok");
            u
        }
        Err(pe) => {
            metrics.media_refresh("failed");
            return Err(Failure {
                message: format!("{gone}; asking the provider for a fresh URL failed: {pe}"),
                retryable: pe.is_retryable(),
                retry_after: pe.retry_after(),
                low_space: false,
            });
        }
    };
    tracing::info!(url = %shown(&w.url), "media URL expired; downloading the fresh URL the provider gave");
    archive(&s.fetcher, &s.store, &fresh).await.map_err(|e| {
        let mut f = Failure::from(e);
        f.message = format!("{gone}; the provider's fresh URL then failed too: {}", f.message);
        f
    })
}

/// Run one try and record it; whether the record was written (if not, the
/// store is failing: the work stays handed out until the restart that follows).
pub(super) async fn run(settings: Arc<ArchiveSettings>, store: Store, metrics: Arc<Metrics>, w: MediaWork) -> bool {
    let started = tokio::time::Instant::now();
    let url = shown(&w.url);
    let attempt = w.attempts + 1;
    let outcome = match try_once(&settings, &metrics, &w).await {
        Ok(st) => {
            metrics.media_file("stored");
            metrics.media_bytes.inc_by(st.size);
            tracing::info!(url = %url, sha256 = %st.sha256, size = st.size, location = %st.location,
                ms = started.elapsed().as_millis() as u64, attempt, "media stored");
            MediaOutcome::Stored(StoredFile {
                location: st.location,
                sha256: st.sha256,
                size: st.size,
                content_type: st.content_type,
            })
        }
        Err(f) if f.low_space => {
            metrics.media_file("low_space");
            let delay = low_space_wait(&settings);
            tracing::info!(url = %url, error = %f.message, retry_in_ms = delay.as_millis() as u64,
                "media disk below media.min_free; the download waits (no try counted)");
            MediaOutcome::Wait {
                due_ms: clock::now_ms() + delay.as_millis() as u64,
                error: f.message,
            }
        }
        Err(f) if f.retryable => match settings.retry.next_delay(w.step, f.retry_after) {
            Some(delay) => {
                metrics.media_file("retry");
                tracing::info!(url = %url, attempt, error = %f.message, retry_in_ms = delay.as_millis() as u64,
                    "media download failed; will retry");
                MediaOutcome::Retry {
                    due_ms: clock::now_ms() + delay.as_millis() as u64,
                    error: f.message,
                }
            }
            None => {
                metrics.media_file("failed");
                let error = format!("{} (gave up after {attempt} tries)", f.message);
                tracing::warn!(url = %url, attempt, error = %error, "media download gave up");
                MediaOutcome::Failed { error }
            }
        },
        Err(f) => {
            metrics.media_file("failed");
            tracing::warn!(url = %url, attempt, error = %f.message, "media download failed for good");
            MediaOutcome::Failed { error: f.message }
        }
    };
    match store.record_media(&w.ticket, outcome).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(url = %url, error = %e, "cannot record the media result; it is tried again after a restart");
            false
        }
    }
}
