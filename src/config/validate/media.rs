//! `[media]`: the media store (a directory, or an S3-compatible bucket with
//! credentials from any secret source), download limits, the retry schedule,
//! the address policy switch, retention and the media disk's free-space floor.

use std::path::Path;
use std::time::Duration;

use super::Validator;
use crate::auth::Secret;
use crate::config::raw::{RawMedia, RawS3};
use crate::config::secret::SecretSource;
use crate::config::values::{MediaConfig, MediaStoreConfig, S3Config};
use crate::config::ConfigError;

/// The longest `Retry-After` a media server may ask for (the schedule's own
/// delays are not capped).
const MEDIA_MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The largest file an S3 store can take: the upload is copied under its
/// digest with one `CopyObject`, which S3 allows up to 5 GiB.
const S3_MAX_SIZE: u64 = 5 << 30;

impl Validator<'_> {
    /// `store_dir` is the callback store's directory (the default media
    /// directory lives under it).
    /// A setting that cannot work as written but is taken in a narrower form
    /// adds a line to `warnings`.
    pub(super) fn media(
        &self,
        m: RawMedia,
        store_dir: &Path,
        warnings: &mut Vec<String>,
    ) -> Result<MediaConfig, ConfigError> {
        let store = match &m.store {
            None => MediaStoreConfig::Local(store_dir.join("media")),
            Some(v) => self.media_store(v)?,
        };
        if let MediaStoreConfig::Local(dir) = &store {
            // As `store.path`: a directory, or one the start can make.
            let nearest = dir
                .ancestors()
                .find_map(|p| std::fs::metadata(p).ok().map(|meta| (p, meta)));
            if let Some((p, _)) = nearest.filter(|(_, meta)| !meta.is_dir()) {
                return Err(self.err(
                    "media.store",
                    self.media_store_span(),
                    if p == dir {
                        format!("{} is not a directory", dir.display())
                    } else {
                        format!("{} is under {}, which is not a directory", dir.display(), p.display())
                    },
                ));
            }
            // A warning, not a refusal (it started before): the archive's
            // files and `tmp/` among the event store's own.
            if m.store.is_some() && dir == store_dir {
                warnings.push(format!(
                    "{}: key `media.store`: it is store.path ({}): the archive's files would sit among the event \
                     store's own; leave media.store out (the archive then goes to {}) or name another directory",
                    self.file.display(),
                    dir.display(),
                    store_dir.join("media").display()
                ));
            }
        }
        if m.max_size.0 == 0 {
            return Err(self.err("media.max_size", None, "must be greater than 0"));
        }
        let mut max_size = m.max_size.0;
        if matches!(store, MediaStoreConfig::S3(_)) && max_size > S3_MAX_SIZE {
            // A warning, not a refusal: a relay whose config once started
            // must start after an upgrade (its callbacks are at stake).
            warnings.push(format!(
                "{}: key `media.max_size`: an S3 store takes files up to 5GiB (a stored file is copied under its \
                 digest in one request, which S3 limits to 5 GiB): larger downloads are cut off at 5GiB and marked failed",
                self.file.display()
            ));
            max_size = S3_MAX_SIZE;
        }
        if m.timeout.0.is_zero() {
            return Err(self.err("media.timeout", None, "must be greater than 0"));
        }
        self.concurrency("media.concurrency", None, m.concurrency)?;
        if m.retention.0 < Duration::from_secs(60) {
            return Err(self.err("media.retention", None, "retention must be at least 1m"));
        }
        let retry = self.schedule(
            "media.retry",
            m.retry.iter().map(|d| d.0).collect(),
            MEDIA_MAX_RETRY_AFTER,
        )?;
        let ca_file = match &m.ca_file {
            Some(p) => {
                let path = self.existing_file("media.ca_file", p)?;
                if let Err(e) = crate::tls::load_roots(Some(&path)) {
                    return Err(self.err("media.ca_file", Some(p.span()), e.to_string()));
                }
                Some(path)
            }
            None => None,
        };
        Ok(MediaConfig {
            store_given: m.store.is_some(),
            store,
            max_size,
            timeout: m.timeout.0,
            concurrency: m.concurrency,
            retry,
            allow_private: m.allow_private,
            allow_networks: m.allow_networks.iter().map(|c| c.0).collect(),
            retention: m.retention.0,
            min_free: m.min_free.0,
            ca_file,
        })
    }

    /// Where `media.store` is written: its value, or the `[media.store.s3]`
    /// header when only that declares it (for error positions).
    fn media_store_span(&self) -> Option<std::ops::Range<usize>> {
        let doc = toml_edit::ImDocument::parse(self.text).ok()?;
        let store = doc.get("media")?.get("store")?;
        store.span().or_else(|| store.get("s3")?.span())
    }

    fn media_store(&self, v: &toml::Value) -> Result<MediaStoreConfig, ConfigError> {
        let span = self.media_store_span();
        const SHAPES: &str = "use a directory (store = \"media\") or store = { s3 = { bucket = \"…\", \
                              access_key = …, secret_key = … } }";
        match v {
            // Absolute, as `store.path` is (compared with it).
            toml::Value::String(dir) if !dir.trim().is_empty() => {
                Ok(MediaStoreConfig::Local(self.resolve_path(Path::new(dir))))
            }
            toml::Value::Table(t) if t.len() == 1 && t.contains_key("s3") => {
                let raw: RawS3 = t["s3"].clone().try_into().map_err(|e: toml::de::Error| {
                    self.err(
                        "media.store.s3",
                        span.clone(),
                        crate::config::without_values(e.message().trim()),
                    )
                })?;
                self.s3(raw, span)
            }
            toml::Value::Table(t) => Err(self.err(
                "media.store",
                span,
                format!(
                    "unknown store {:?}: {SHAPES}",
                    t.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                ),
            )),
            _ => Err(self.err("media.store", span, format!("not a media store: {SHAPES}"))),
        }
    }

    fn s3(&self, raw: RawS3, span: Option<std::ops::Range<usize>>) -> Result<MediaStoreConfig, ConfigError> {
        if raw.bucket.trim().is_empty() {
            return Err(self.err("media.store.s3.bucket", span, "the bucket name is empty"));
        }
        // No server takes a space or a control character in a bucket name
        // (path-style servers take a '/': a prefix, or Ceph's `tenant:`).
        if raw.bucket.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.err(
                "media.store.s3.bucket",
                span,
                "not a bucket name: it holds a space or a control character",
            ));
        }
        // AWS itself needs a region (its endpoint is named by it); an
        // S3-compatible server given by `endpoint` may take none (R2, MinIO).
        if raw.region.trim().is_empty() && raw.endpoint.is_none() {
            return Err(self.err(
                "media.store.s3.region",
                span,
                "the region is empty, and AWS's endpoint is named by it (leave it out for \"us-east-1\")",
            ));
        }
        if let Some(ep) = &raw.endpoint {
            let ok = ep.parse::<http::Uri>().ok().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
            });
            let shown = crate::auth::redact_url(ep);
            if ok && crate::config::unusable_port(ep) {
                return Err(self.err(
                    "media.store.s3.endpoint",
                    span,
                    format!("invalid endpoint {shown:?}: the port must be 1 to 65535"),
                ));
            }
            if !ok {
                return Err(self.err(
                    "media.store.s3.endpoint",
                    span,
                    format!(
                        "invalid endpoint {shown:?}: use e.g. \"http://127.0.0.1:9000\" or \"https://s3.example.com\""
                    ),
                ));
            }
            // Keys in the URL would be shown wherever the store is named
            // (logs, check-config, the media API); they have keys of their own.
            // So would a query (a pasted presigned URL's signature): an
            // endpoint is a scheme, a host and a port.
            if ep.contains(['?', '#']) {
                return Err(self.err(
                    "media.store.s3.endpoint",
                    span,
                    // Not shown: a short query part without `=` is shown
                    // by the redaction, and it is what this refuses.
                    "the endpoint has a query or fragment: give it as scheme, host and port (as \
                     \"https://s3.example.com\"); each request is signed with the keys",
                ));
            }
            if let Ok(u) = url::Url::parse(ep) {
                if !u.username().is_empty() || u.password().is_some() {
                    return Err(self.err(
                        "media.store.s3.endpoint",
                        span,
                        format!(
                            "{shown:?} has credentials in the URL: give the endpoint without them and the keys \
                             as media.store.s3.access_key and secret_key"
                        ),
                    ));
                }
            }
        }
        let secret = |name: &str, v: &Option<toml::Value>| -> Result<Secret, ConfigError> {
            let k = format!("media.store.s3.{name}");
            let v = v.as_ref().ok_or_else(|| {
                self.err(
                    &k,
                    span.clone(),
                    "required (inline, { file }, { env } or { credential })",
                )
            })?;
            SecretSource::from_value(v.clone())
                .and_then(|s| s.resolve_text(self))
                .map(Secret::new)
                .map_err(|m| self.err(&k, span.clone(), m))
        };
        Ok(MediaStoreConfig::S3(S3Config {
            access_key: secret("access_key", &raw.access_key)?,
            secret_key: secret("secret_key", &raw.secret_key)?,
            bucket: raw.bucket,
            endpoint: raw.endpoint,
            region: raw.region,
            prefix: raw.prefix,
        }))
    }
}
