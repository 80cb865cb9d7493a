//! Media in S3-compatible object storage (object_store, ring only).
//!
//! Owns the S3 settings, the key layout (`PREFIX` + `ab/abcdef…`, the SHA-256
//! in hex) and the upload sequence: the bytes stream to a temporary key
//! (`PREFIX` + `tmp/<ulid>.part`, multipart once larger than one part, so
//! memory stays at a few parts), then are copied under their digest and the
//! temporary key is deleted. Readers never see a partial object under a
//! digest. A crash between upload and delete can leave a `tmp/` object, and
//! a crash mid-multipart (or a stop whose abort of it did not finish in time,
//! `super::s3_abort`) an unfinished multipart upload (no object: an
//! expiration rule does not remove it): a bucket lifecycle rule on
//! `PREFIX` + `tmp/` that expires objects and aborts incomplete multipart
//! uploads clears those.
//!
//! Whether the bucket takes files at all (the endpoint up, the keys right,
//! the bucket there) is checked with a small probe object before a download
//! starts, but only while the last try with the store failed (and at start),
//! so an outage of the store costs the URLs none of their tries.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, BackoffConfig, ObjectStore, ObjectStoreExt, RetryConfig};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::failing::Failing;
use super::s3_http::HyperConnector;
use super::storage::{DigestHold, DigestLocks, PutError, StoreError, Stored, StoredReader};
use crate::auth::credential_text;
use crate::config::S3Config;

/// S3 part size by default: above S3's 5 MiB minimum, small enough that the
/// parts in flight stay a few tens of MiB.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// Parts uploaded concurrently per file.
const PARTS_IN_FLIGHT: usize = 2;
/// How long the probe of a failing store may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// A failed probe is the answer for this long: the downloads due meanwhile
/// wait without asking the store each (an outage with a thousand URLs due
/// would otherwise be a probe per URL every retry delay).
const PROBE_AGAIN: Duration = Duration::from_secs(5);

/// Whether the store takes files, shared by every download.
struct Health {
    /// An upload failed since the last probe that passed (or none was
    /// made yet).
    failing: Failing,
    /// The last failed probe: when, and why.
    last_failed: Mutex<Option<(tokio::time::Instant, String)>>,
    /// One probe at a time; the others take its answer.
    probing: tokio::sync::Mutex<()>,
}

/// Settings of `[media] store = { s3 = { … } }` (secrets already resolved)
/// and what the media settings add to them.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The bucket, endpoint, region, keys and prefix as configured.
    pub s3: S3Config,
    /// Private CA (PEM) for an https endpoint with its own certificate.
    pub ca_file: Option<PathBuf>,
    /// Multipart part size (and the single-upload threshold).
    pub part_size: usize,
    /// Each request's time until its response headers arrive
    /// ([`super::s3_http::REQUEST_TIMEOUT`] in the daemon); a failed one is
    /// tried again while the first began less than this long ago.
    pub request_timeout: Duration,
}

/// A bucket (and prefix) holding archived media.
#[derive(Clone)]
pub struct S3Store {
    /// Shared by every upload; object_store clients are cheap to share.
    store: Arc<dyn ObjectStore>,
    /// For locations (`s3://bucket/key`) and `describe`.
    bucket: String,
    /// For `describe` only.
    endpoint: String,
    /// Normalised to empty or `something/`.
    prefix: String,
    /// At least S3's 5 MiB minimum part size.
    part_size: usize,
    /// Whether to probe the store before the next download. Shared by the clones.
    health: Arc<Health>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn object_err(e: object_store::Error) -> StoreError {
    StoreError::Object(readable(&e.to_string()))
}

/// An object_store error on one line: an S3 error document in it (XML,
/// several lines) is shortened to its code and message.
fn readable(text: &str) -> String {
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    // The document cut whether it has its XML prolog or not (a server
    // without one left `<StringToSign>`, `<AWSAccessKeyId>` and the rest in).
    let error_tag = text.match_indices("<Error").find(|(at, m)| {
        let next = text[at + m.len()..].chars().next();
        next.is_some_and(|c| c == '>' || c.is_whitespace())
    });
    let cut = [text.find("<?xml"), error_tag.map(|(at, _)| at)]
        .into_iter()
        .flatten()
        .min();
    let head = &text[..cut.unwrap_or(text.len())];
    let mut out = head.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(code) = field("Code") {
        out = format!("{} (S3 {code}", out.trim_end_matches(':'));
        if let Some(msg) = field("Message") {
            out.push_str(": ");
            out.push_str(&msg);
        }
        out.push(')');
    }
    out
}

impl S3Store {
    pub fn new(settings: &S3Settings) -> Result<S3Store, StoreError> {
        let connector = HyperConnector::new(settings.ca_file.as_deref(), settings.request_timeout)
            .map_err(|e| StoreError::Object(e.to_string()))?;
        let s = &settings.s3;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(credential_text(&s.access_key))
            .with_secret_access_key(credential_text(&s.secret_key))
            .with_http_connector(connector)
            // A failing request is tried twice more, while the first began
            // less than a request timeout ago: a hung store holds a download
            // slot about one timeout (object_store's default: three minutes of
            // retries, which with 300 s requests held it ten).
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: settings.request_timeout,
            });
        if let Some(ep) = &s.endpoint {
            b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://"));
        }
        let store = b.build().map_err(object_err)?;
        let mut prefix = s.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Ok(S3Store {
            store: Arc::new(store),
            bucket: s.bucket.clone(),
            endpoint: s.endpoint.clone().unwrap_or_else(|| format!("AWS {}", s.region)),
            prefix,
            part_size: settings.part_size.max(5 << 20),
            health: Arc::new(Health {
                failing: Failing::at_opening(),
                last_failed: Mutex::default(),
                probing: tokio::sync::Mutex::default(),
            }),
        })
    }

    /// Whether the store takes files now. Asks it (a small object written
    /// under `tmp/`, then removed) only while the last request failed, one
    /// probe at a time, and not again within [`PROBE_AGAIN`] of a failed
    /// one; an `Unavailable` error when it does not.
    pub(crate) async fn check_ready(&self) -> Result<(), StoreError> {
        let h = &self.health;
        if !h.failing.is_failing() {
            return Ok(());
        }
        let _one = h.probing.lock().await;
        if !h.failing.is_failing() {
            return Ok(()); // the probe before this one passed
        }
        let unavailable = |error: String| StoreError::Unavailable {
            store: self.describe(),
            error,
        };
        if let Some((at, why)) = h.last_failed.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            if at.elapsed() < PROBE_AGAIN {
                return Err(unavailable(why));
            }
        }
        let probe = ObjectPath::from(format!("{}tmp/probe-{}", self.prefix, ulid::Ulid::new()));
        // Passing, it clears the failures of before it; an upload that
        // fails while it runs keeps the store failing.
        let answer = h
            .failing
            .probe_async(async {
                let put = self.store.put(&probe, Bytes::from_static(b"hookrelay").into());
                match tokio::time::timeout(PROBE_TIMEOUT, put).await {
                    Ok(r) => r.map(|_| ()).map_err(|e| object_err(e).to_string()),
                    Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
                }
            })
            .await;
        if let Err(why) = answer {
            *h.last_failed.lock().unwrap_or_else(|e| e.into_inner()) = Some((tokio::time::Instant::now(), why.clone()));
            return Err(unavailable(why));
        }
        // The store took a file. Removing the probe may be refused (keys
        // without delete): what a lifecycle rule on tmp/ clears, like an
        // upload's temporary object.
        if let Err(e) = self.store.delete(&probe).await {
            tracing::warn!(error = %readable(&e.to_string()), "could not delete the media store's probe object (a lifecycle rule on tmp/ clears it)");
        }
        *h.last_failed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    fn failed<T>(&self, e: StoreError) -> PutError<T> {
        self.health.failing.note();
        e.into()
    }

    /// The object key of a (checked) digest.
    pub fn key_of(&self, sha256: &str) -> String {
        format!("{}{}/{}", self.prefix, &sha256[..2], sha256)
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }

    pub(crate) async fn put_stream<S, E>(
        &self,
        mut stream: S,
        content_type: Option<&str>,
        locks: Option<&DigestLocks>,
    ) -> Result<(Stored, DigestHold), PutError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Send,
    {
        let tmp = ObjectPath::from(format!("{}tmp/{}.part", self.prefix, ulid::Ulid::new()));
        let mut attributes = Attributes::new();
        if let Some(ct) = content_type {
            attributes.insert(Attribute::ContentType, ct.to_string().into());
        }
        // Aborted when the try is dropped mid-upload (the archiver stopping).
        let mut upload = super::s3_abort::Upload::new(
            BufWriter::with_capacity(self.store.clone(), tmp.clone(), self.part_size)
                .with_max_concurrency(PARTS_IN_FLIGHT)
                .with_attributes(attributes),
        );
        let writer = upload.writer();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(item) = stream.next().await {
            let chunk = match item {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    upload.settled();
                    return Err(PutError::Source(e));
                }
            };
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if let Err(e) = writer.put(chunk).await {
                let _ = writer.abort().await;
                upload.settled();
                return Err(self.failed(object_err(e)));
            }
        }
        let shutdown = writer.shutdown().await;
        upload.settled();
        if let Err(e) = shutdown {
            let _ = self.store.delete(&tmp).await;
            return Err(self.failed(StoreError::Object(readable(&e.to_string()))));
        }
        let sha256 = hex::encode(hasher.finalize());
        let key = self.key_of(&sha256);
        let final_path = ObjectPath::from(key.as_str());
        // Held from the look below until the caller's record names the file.
        let hold = match locks {
            Some(l) => l.hold(&sha256).await,
            None => DigestHold::default(),
        };
        let stored = match self.store.head(&final_path).await {
            Ok(_) => Ok(()), // the same bytes are already stored
            Err(object_store::Error::NotFound { .. }) => self.store.copy(&tmp, &final_path).await.map_err(object_err),
            Err(e) => Err(object_err(e)),
        };
        let cleanup = self.store.delete(&tmp).await;
        stored.map_err(|e| self.failed(e))?;
        if let Err(e) = cleanup {
            tracing::warn!(error = %readable(&e.to_string()), "could not delete a temporary media object (a lifecycle rule on tmp/ clears it)");
        }
        let stored = Stored {
            location: format!("s3://{}/{}", self.bucket, key),
            sha256,
            size,
            content_type: content_type.map(str::to_string),
        };
        Ok((stored, hold))
    }

    pub(crate) async fn open(&self, sha256: &str) -> Result<Option<StoredReader>, StoreError> {
        let path = ObjectPath::from(self.key_of(sha256).as_str());
        match self.store.get(&path).await {
            Ok(r) => {
                let size = r.meta.size;
                let stream = r.into_stream().map_err(std::io::Error::other).boxed();
                Ok(Some(StoredReader { size, stream }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(object_err(e)),
        }
    }

    pub(crate) async fn delete(&self, sha256: &str) -> Result<bool, StoreError> {
        let path = ObjectPath::from(self.key_of(sha256).as_str());
        // S3 deletes are idempotent and say nothing about existence: ask first.
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(object_err(e)),
        }
        self.store.delete(&path).await.map_err(object_err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn an_s3_error_document_reads_as_one_line() {
        let raw = "Error performing PUT http://s3/b/k in 5ms - Server returned non-2xx status code: 404 Not Found: \
                   <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>NoSuchBucket</Code>\n  \
                   <Message>The specified bucket does not exist</Message>\n</Error>";
        assert_eq!(
            readable(raw),
            "Error performing PUT http://s3/b/k in 5ms - Server returned non-2xx status code: 404 Not Found \
             (S3 NoSuchBucket: The specified bucket does not exist)"
        );
        assert_eq!(readable("connection refused\n  again"), "connection refused again");
        let bare = "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code>\
                    <Message>no match</Message><AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId>\
                    <StringToSign>AWS4-HMAC-SHA256</StringToSign></Error>";
        assert_eq!(
            readable(bare),
            "Server returned non-2xx status code: 403 Forbidden (S3 SignatureDoesNotMatch: no match)"
        );
        let with_namespace = bare.replace("<Error>", "<Error xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        assert_eq!(readable(&with_namespace), readable(bare));
    }
}
