//! One archive try of one URL: download and store it; on 403/404/410, when
//! the URL's route has a provider key, ask the provider once for a fresh URL
//! (`POST /api/v1/common/download-url`) and download that. Then decide what
//! the store records: stored, retry on the media schedule, or failed for good
//! — or, while the store cannot take files before the GET (the media disk
//! below `media.min_free`, an object store failing its probe), a wait that is
//! no try: the URL is looked at again after [`store_wait`] with its tries and
//! step unchanged. So is a download that finds the room it needs above the
//! floor held by other downloads in flight (`super::room`): it is dropped
//! after the answer's headers (or where its chunked body outgrew what it
//! could reserve) and looked at again the same way. A file refused as it is
//! written (it does not fit above the floor even without the others, an
//! upload that fails) is a try like any other failure, so one that never
//! fits ends as failed instead of being fetched again for ever.
//!
//! Logs name the URL without its query ([`super::shown`]); error texts name
//! hosts, never URLs.

use std::sync::Arc;
use std::time::Duration;

use super::settings::ArchiveSettings;
use super::shown::shown;
use super::storage::StoreError;
use super::{archive_held, ArchiveError, DigestHold, DigestLocks, Stored};
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
    /// The store could not take files before the try began (the media disk
    /// below its floor: `low_space`; the object store failing its probe:
    /// `store_unavailable`): not the URL's fault, no try. (A file refused
    /// while it was written counts as a try: it may be one that never fits,
    /// which must end as failed.)
    wait: Option<&'static str>,
}

/// Answers 403, 404 or 410 in a row (see [`GoneCounts`]) of a URL before it
/// fails for good: on a route without a provider key (nothing to refresh it
/// with), or with one when the provider would not refresh it or its fresh
/// URL was gone too.
const GONE_TRIES: u32 = 3;

/// By URL: the consecutive 403/404/410 answers of a URL, so that [`GONE_TRIES`] counts that answer only (a URL that failed
/// twice with a 503 or a timeout still gets its three tries for a 404). In
/// memory: a restart (or another relay of a cluster taking the work) starts
/// the count again, which only ever gives more tries. An entry goes when the
/// URL's try ends otherwise; the map is emptied past [`GONE_COUNTED`] URLs.
#[derive(Clone, Default)]
pub struct GoneCounts(Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>);

/// URLs counted in [`GoneCounts`] at most (each one a pending retry).
const GONE_COUNTED: usize = 100_000;

impl GoneCounts {
    /// One more gone answer for `url`: how many in a row now.
    fn count(&self, url: &str) -> u32 {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= GONE_COUNTED && !m.contains_key(url) {
            m.clear();
        }
        let n = m.entry(url.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// `url`'s try ended with another answer (or for good).
    fn forget(&self, url: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(url);
    }

    /// A gone answer (or a refresh refused after one), counted: tried again
    /// until it is the [`GONE_TRIES`]-th in a row, then final.
    fn counted(&self, mut f: Failure, url: &str) -> Failure {
        let tries = self.count(url);
        if tries < GONE_TRIES {
            f.retryable = true;
            f.message = format!(
                "{} (answer {tries} of {GONE_TRIES} in a row before it is final)",
                f.message
            );
        } else {
            self.forget(url);
            f.message = format!("{} ({tries} times in a row)", f.message);
        }
        f
    }
}

/// The longest wait of a URL for the store to take files again.
const STORE_WAIT_MAX: Duration = Duration::from_secs(60);

/// The longest a URL can wait for its next try: its retry schedule's longest
/// delay (or `Retry-After` cap), or a wait for the store.
pub fn longest_wait(retry: &crate::delivery::retry::RetrySchedule) -> Duration {
    retry.longest_delay().max(STORE_WAIT_MAX)
}

/// How long a URL waits for the store before it is looked at again: the
/// first delay of `media.retry` (jittered), at most a minute.
fn store_wait(s: &ArchiveSettings) -> Duration {
    s.retry
        .next_delay(0, None)
        .unwrap_or(STORE_WAIT_MAX)
        .min(STORE_WAIT_MAX)
}

impl From<ArchiveError> for Failure {
    fn from(e: ArchiveError) -> Failure {
        Failure {
            // Downloads in flight hold the room this file needs: a wait for
            // them, put off like a low disk, no try (see `super::room`).
            wait: matches!(&e, ArchiveError::Store(StoreError::RoomHeld { .. })).then_some("low_space"),
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
/// The file's digest stays locked in `files` until the hold returned with it
/// is dropped (after the record).
async fn try_once(
    s: &ArchiveSettings,
    metrics: &Metrics,
    w: &MediaWork,
    files: &DigestLocks,
    in_force: &std::sync::Weak<super::Archiver>,
) -> Result<(Stored, DigestHold), Failure> {
    // No GET while the store cannot take the file (and a signed URL's
    // provider may count the download).
    let ready = s.store.check_ready().await;
    let wait = match &ready {
        Err(e @ StoreError::LowSpace { .. }) => Some(("low_space", e.to_string())),
        Err(e @ StoreError::Unavailable { .. }) => Some(("store_unavailable", e.to_string())),
        _ => None,
    };
    // The gauge tells of the store in force, not of one a reload replaced
    // while this try was taken. (The archiver is not held past these lines:
    // a download holding it would keep a dropped daemon's archiver going.)
    let archiver = || in_force.upgrade();
    if archiver().is_none_or(|a| a.settings().shares_store(s)) {
        let gauge = &metrics.media_store_unavailable;
        match (gauge.set(i64::from(wait.is_some())) == 1, &wait) {
            (false, Some((_, why))) => {
                tracing::warn!(
                    error = %why,
                    "the media store cannot take files: downloads and after_archive deliveries wait until it can"
                );
                // Looked at again until it takes files, as at start: the
                // gauge clears when it is mended with no download due.
                if let Some(a) = archiver() {
                    a.check_store_found_failing(gauge.clone());
                }
            }
            (true, None) => {
                tracing::info!(store = %s.store.describe(), "the media store takes files again: downloads go on")
            }
            _ => {}
        }
    }
    if let (Err(e), Some((label, _))) = (ready, wait) {
        return Err(Failure {
            wait: Some(label),
            ..Failure::from(ArchiveError::Store(e))
        });
    }
    let gone = match archive_held(&s.fetcher, &s.store, &w.url, files).await {
        Err(e) if e.is_gone() => e,
        other => {
            s.gone.forget(&w.url);
            return other.map_err(Failure::from);
        }
    };
    // Counted whether or not the route has a key: a CDN may not have the
    // object it was just told about yet (eventual consistency right after
    // the callback), and a provider then refuses to refresh a URL that has
    // not expired (or its fresh URL is not there yet either).
    let Some(client) = s.providers.get(&w.route) else {
        // No key to ask with: the status is the answer, once it has been
        // given a few times over the retry schedule.
        return Err(s.gone.counted(Failure::from(gone), &w.url));
    };
    let fresh = match client.download_url(&w.url).await {
        Ok(u) => {
            metrics.media_refresh("ok");
            u
        }
        Err(pe) => {
            metrics.media_refresh("failed");
            // A URL the provider's message quotes is shown without its
            // query (the provider client's doing, `media::shown::urls_shown`).
            let f = Failure {
                message: format!(
                    "{gone}; asking the provider for a fresh URL failed: {}",
                    own_query_hidden(&pe.cause(), &w.url)
                ),
                retryable: pe.is_retryable(),
                retry_after: pe.retry_after(),
                wait: None,
            };
            // Not asked (the provider busy, away): this try does not count.
            // Refused (it will not refresh this URL, which has not expired
            // or is not its own; or the key: wrong, out of credits, which an
            // operator may fix meanwhile): counted as the gone answer it
            // follows, so the URL gets its three tries before it fails.
            return Err(if f.retryable { f } else { s.gone.counted(f, &w.url) });
        }
    };
    tracing::info!(url = %shown(&w.url), "media URL expired; downloading the fresh URL the provider gave");
    match archive_held(&s.fetcher, &s.store, &fresh, files).await {
        Ok(stored) => {
            s.gone.forget(&w.url);
            Ok(stored)
        }
        Err(e) => {
            let again = e.is_gone();
            let mut f = Failure::from(e);
            f.message = format!("{gone}; the provider's fresh URL then failed too: {}", f.message);
            if !again {
                // Another answer: the row of gone answers is broken.
                s.gone.forget(&w.url);
                return Err(f);
            }
            Err(s.gone.counted(f, &w.url))
        }
    }
}

/// `text` without `url`'s query where it is quoted alone (a URL quoted
/// whole is shown without it already: `urls_shown`). Only a query long
/// enough to be a signature is looked for (a short one would match words).
fn own_query_hidden(text: &str, url: &str) -> String {
    let query = url
        .split('#')
        .next()
        .unwrap_or(url)
        .split_once('?')
        .map_or("", |(_, q)| q);
    match query.len() >= 16 {
        true => text.replace(query, "…"),
        false => text.to_string(),
    }
}

/// Run one try and record it; whether the record was written (if not, the
/// store is failing: the work stays handed out until the restart that follows).
/// A stored file's digest stays locked in `files` until the record is
/// written, so media retention cannot delete the file meanwhile.
pub(super) async fn run(
    settings: Arc<ArchiveSettings>,
    store: Store,
    metrics: Arc<Metrics>,
    files: DigestLocks,
    w: MediaWork,
    in_force: std::sync::Weak<super::Archiver>,
) -> bool {
    let started = tokio::time::Instant::now();
    let url = shown(&w.url);
    let attempt = w.attempts + 1;
    let mut hold = DigestHold::default();
    let tried = match try_once(&settings, &metrics, &w, &files, &in_force).await {
        // A reload may have changed the store while the file was downloaded.
        Ok((st, held)) => {
            let now = || in_force.upgrade().map(|a| a.settings());
            super::store_changed::into_store_in_force(settings.clone(), now, st, held, &files)
                .await
                .map_err(|message| Failure {
                    message,
                    retryable: true,
                    retry_after: None,
                    wait: Some("store_changed"),
                })
        }
        Err(f) => Err(f),
    };
    let outcome = match tried {
        Ok((st, held)) => {
            hold = held;
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
        Err(Failure {
            wait: Some(label),
            message,
            ..
        }) => {
            metrics.media_file(label);
            let delay = store_wait(&settings);
            // The store's state is logged once when it changes (above); each URL's wait only at debug.
            tracing::debug!(url = %url, error = %message, retry_in_ms = delay.as_millis() as u64,
                "the media store cannot take files now; the download waits (no try counted)");
            MediaOutcome::Wait {
                due_ms: clock::now_ms() + delay.as_millis() as u64,
                error: message,
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
                settings.gone.forget(&w.url);
                metrics.media_file("failed");
                let error = format!("{} (gave up after {attempt} tries)", f.message);
                tracing::warn!(url = %url, attempt, error = %error, "media download gave up");
                MediaOutcome::Failed { error }
            }
        },
        Err(f) => {
            settings.gone.forget(&w.url);
            metrics.media_file("failed");
            tracing::warn!(url = %url, attempt, error = %f.message, "media download failed for good");
            MediaOutcome::Failed { error: f.message }
        }
    };
    let recorded = store.record_media(&w.ticket, outcome).await;
    drop(hold);
    match recorded {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(url = %url, error = %e, "cannot record the media result; it is recorded or tried again after a restart (in cluster mode once nats.takeover has passed)");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_asked_urls_query_is_hidden_where_quoted_alone() {
        let url = "https://cdn.example/x.mp4?Signature=abcdef0123456789&Expires=1";
        let said = "signature Signature=abcdef0123456789&Expires=1 has expired";
        assert_eq!(super::own_query_hidden(said, url), "signature … has expired");
        // A short query would match ordinary words: left alone.
        assert_eq!(super::own_query_hidden("expired at 1", "https://h/x?1"), "expired at 1");
    }
}
