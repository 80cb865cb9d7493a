//! `[[routes.subscribers]]`: URL (credentials become Basic auth) or pull
//! settings (in [`super::pull`]), signing secrets, extra headers (never ours),
//! CA file, filter and the delivery settings inherited from `[delivery]`.

use http::{HeaderName, HeaderValue, Uri};
use toml::Spanned;

use super::{valid_name, SubscriberDefaults, Validator};
use crate::config::raw::RawSubscriber;
use crate::config::secret::{decode_whsec, SecretSource};
use crate::config::values::{Endpoint, Subscriber};
use crate::config::ConfigError;

impl Validator<'_> {
    /// A subscriber with `secret = []`: a warning, not a refusal (it ran
    /// before, as unsigned), as an empty list reads like "signed" and signs
    /// nothing.
    pub(super) fn unsigned_warnings(&self, key: &str, subs: &[RawSubscriber]) -> Vec<String> {
        subs.iter()
            .enumerate()
            .filter(|(_, s)| s.secret.as_ref().is_some_and(|l| l.get_ref().0.is_empty()))
            .map(|(k, _)| {
                format!(
                    "{}: key `{key}.subscribers[{k}].secret`: the list of secrets is empty, so its deliveries \
                     are sent unsigned: give one (`hookrelay gen-secret`), or leave `secret` out to say so",
                    self.file.display()
                )
            })
            .collect()
    }

    pub(super) fn subscriber(
        &self,
        key: &str,
        route: &str,
        s: RawSubscriber,
        d: &SubscriberDefaults,
    ) -> Result<Subscriber, ConfigError> {
        let name = s.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(self.err(
                format!("{key}.name"),
                Some(s.name.span()),
                format!("invalid name {name:?}: use letters, digits, '-', '_' or '.'"),
            ));
        }
        let (endpoint, basic_auth) = match (&s.url, &s.pull) {
            (Some(url), None) => {
                let (url, basic) = self.push_url(key, url)?;
                (Endpoint::Push(url), basic)
            }
            (None, Some(pull)) => {
                self.push_only_keys(key, &s)?;
                (Endpoint::Pull(self.pull(key, pull)?), None)
            }
            (Some(_), Some(pull)) => {
                return Err(self.err(
                    format!("{key}.pull"),
                    Some(pull.span()),
                    "give either url (the relay pushes to it) or pull (the private side fetches), not both",
                ))
            }
            (None, None) => {
                return Err(self.err(
                    format!("{key}.url"),
                    Some(s.name.span()),
                    format!(
                        "subscriber {name:?} needs url = \"https://…\" (the relay pushes to it) or \
                         pull = {{ token = {{ env = \"…\" }}, lease = \"60s\" }} (the private side fetches)"
                    ),
                ))
            }
        };
        let mut keys = Vec::new();
        if let Some(list) = &s.secret {
            let many = list.get_ref().0.len() > 1;
            for (j, sec) in list.get_ref().0.iter().enumerate() {
                let k = if many {
                    format!("{key}.secret[{j}]")
                } else {
                    format!("{key}.secret")
                };
                let value = sec.resolve_text(self).map_err(|m| self.err(&k, Some(list.span()), m))?;
                keys.push(decode_whsec(&value).map_err(|m| self.err(&k, Some(list.span()), m))?);
            }
        }
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for (h, v) in &s.headers {
            let hkey = format!("{key}.headers.{h}");
            let span = Some(v.span());
            let name = HeaderName::try_from(h.as_str())
                .map_err(|_| self.err(&hkey, span.clone(), format!("invalid header name {h:?}")))?;
            if is_reserved_header(&name) {
                return Err(self.err(
                    &hkey,
                    span,
                    format!(
                        "header {h:?} is set by hookrelay (body framing, content type, host, webhook-* and \
                         hookrelay-* headers) and cannot be configured"
                    ),
                ));
            }
            if headers.iter().any(|(n, _)| *n == name) {
                return Err(self.err(
                    &hkey,
                    span,
                    format!("header {h:?} is configured twice (names ignore case)"),
                ));
            }
            // Any secret source; an inline value may be empty (a header, not a secret).
            let (text, secret) = match v.get_ref() {
                SecretSource::Inline(t) => (t.clone(), false),
                src => (
                    src.resolve_text(self).map_err(|m| self.err(&hkey, span.clone(), m))?,
                    true,
                ),
            };
            let mut value = HeaderValue::try_from(text).map_err(|_| self.err(&hkey, span, "invalid header value"))?;
            value.set_sensitive(secret || name == http::header::AUTHORIZATION);
            headers.push((name, value));
        }
        if let Some(basic) = basic_auth {
            if headers.iter().any(|(n, _)| n == http::header::AUTHORIZATION) {
                let url_span = s.url.as_ref().map(|u| u.span());
                return Err(self.err(
                    format!("{key}.url"),
                    url_span,
                    "the URL has credentials and headers sets Authorization: use one of them",
                ));
            }
            headers.push((http::header::AUTHORIZATION, basic));
        }
        let ca_file = match &s.ca_file {
            Some(p) => {
                let path = self.existing_file(&format!("{key}.ca_file"), p)?;
                if let Err(e) = crate::tls::load_roots(Some(&path)) {
                    return Err(self.err(format!("{key}.ca_file"), Some(p.span()), e.to_string()));
                }
                Some(path)
            }
            None => None,
        };
        if let Some(why) = s.filter.keys().find_map(|p| super::pointer_problem(p)) {
            return Err(self.err(format!("{key}.filter"), None, why));
        }
        let retry = match (&s.retry, s.max_retry_after) {
            (None, None) => d.retry.clone(),
            (steps, cap) => self.schedule(
                &format!("{key}.retry"),
                steps
                    .as_ref()
                    .map_or_else(|| d.retry.steps().to_vec(), |v| v.iter().map(|d| d.0).collect()),
                cap.map_or(d.retry.max_retry_after(), |c| c.0),
            )?,
        };
        let concurrency = self.concurrency(
            &format!("{key}.concurrency"),
            s.concurrency.as_ref().map(Spanned::span),
            s.concurrency.as_ref().map_or(d.concurrency, |c| *c.get_ref()),
        )?;
        let timeout = s.timeout.as_ref().map_or(d.timeout, |t| t.get_ref().0);
        if timeout.is_zero() {
            return Err(self.err(
                format!("{key}.timeout"),
                s.timeout.as_ref().map(Spanned::span),
                "must be greater than 0",
            ));
        }
        let circuit_threshold = s
            .circuit_threshold
            .as_ref()
            .map_or(d.circuit_threshold, |c| *c.get_ref());
        if circuit_threshold == 0 {
            return Err(self.err(
                format!("{key}.circuit_threshold"),
                s.circuit_threshold.as_ref().map(Spanned::span),
                "must be at least 1",
            ));
        }
        Ok(Subscriber {
            name,
            route: route.to_string(),
            endpoint,
            keys,
            headers,
            ca_file,
            filter: s.filter.into_iter().collect(),
            timeout,
            retry,
            concurrency,
            rate: s.rate.as_ref().map(|r| *r.get_ref()).or(d.rate),
            circuit_threshold,
            after_archive: s.after_archive,
        })
    }

    /// A push subscriber's URL: absolute http(s); credentials in it become
    /// `Authorization: Basic` (the URL is kept without them).
    fn push_url(&self, key: &str, url: &Spanned<String>) -> Result<(Uri, Option<HeaderValue>), ConfigError> {
        let url_err = |m: String| self.err(format!("{key}.url"), Some(url.span()), m);
        // Messages show the URL without its credentials, path or query: any
        // of them may be the subscriber's secret.
        let shown = crate::auth::shown_target(url.get_ref());
        if let Some(problem) = unclear_userinfo(url.get_ref()) {
            return Err(url_err(format!("invalid URL {shown:?}: {problem}")));
        }
        let parsed: Uri = url
            .get_ref()
            .parse()
            .map_err(|e| url_err(format!("invalid URL {shown:?}: {e}")))?;
        if !(matches!(parsed.scheme_str(), Some("http" | "https")) && parsed.host().is_some_and(|h| !h.is_empty())) {
            return Err(url_err(format!(
                "invalid URL {shown:?}: must be an absolute http:// or https:// URL with a host"
            )));
        }
        if crate::config::unusable_port(url.get_ref()) {
            return Err(url_err(format!("invalid URL {shown:?}: the port must be 1 to 65535")));
        }
        split_userinfo(parsed).map_err(url_err)
    }
}

/// Why a URL's credentials cannot be told from the rest, if they cannot: a
/// password with a raw `?` or `#` and an `@` ended the host early, the rest
/// taken for a query, and the relay delivered to the password's start as the
/// host (`http://user:p@ss?w@host/x` went to `ss`; observability review,
/// stop 62). Refused only there: credentials, then a query or fragment right
/// after the host that holds an `@`. An `@` in a path (`/users/@me`), in a
/// query without credentials, or a fragment stay as they were; a password
/// starting with digits then `?` (`user:1234?x@host`) reads as a port and
/// cannot be told apart.
fn unclear_userinfo(raw: &str) -> Option<&'static str> {
    let rest = raw.split_once("://").map_or(raw, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') && tail.starts_with(['?', '#']) && tail.contains('@') {
        return Some(
            "it has credentials and an `@` after a `?` or `#` right after the host, so where the password \
             ends is unclear: percent-encode `@`, `/`, `?` and `#` in a user name or password \
             (%40, %2F, %3F, %23)",
        );
    }
    None
}

/// Headers a delivery's meaning or framing depends on: hookrelay sets them.
fn is_reserved_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-length"
            | "transfer-encoding"
            | "host"
            | "content-type"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
    ) || n.starts_with("webhook-")
        || n.starts_with("hookrelay-")
}

/// Take `user:password@` out of a subscriber URL: the URL without it, and the
/// `Authorization: Basic` value to send instead (marked sensitive).
fn split_userinfo(url: Uri) -> Result<(Uri, Option<HeaderValue>), String> {
    use base64::Engine;
    let authority = url.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Ok((url, None));
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut credentials: Vec<u8> = percent_encoding::percent_decode_str(user).collect();
    credentials.push(b':');
    credentials.extend(percent_encoding::percent_decode_str(password));
    let mut value = HeaderValue::try_from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    ))
    .expect("base64 is a valid header value");
    value.set_sensitive(true);
    let mut parts = url.into_parts();
    parts.authority = Some(
        host.parse()
            .map_err(|_| "invalid URL: the host after the credentials is not valid".to_string())?,
    );
    let url = Uri::from_parts(parts).map_err(|e| format!("invalid URL without its credentials: {e}"))?;
    Ok((url, Some(value)))
}
