//! `pull = { token, lease }` on a subscriber: the token (any secret source,
//! not blank), the lease (1 s to 1 h), the push-only keys a pull subscriber
//! cannot use, and route paths that would hide a pull subscriber's API.

use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::raw::{RawPull, RawSubscriber};
use crate::config::values::{PullSettings, Route};
use crate::config::ConfigError;

/// The shortest lease: a forwarder needs time to POST locally and acknowledge.
const MIN_LEASE: Duration = Duration::from_secs(1);
/// The longest lease: a forwarder that died holds its messages this long.
const MAX_LEASE: Duration = crate::config::MAX_PULL_LEASE;

impl Validator<'_> {
    pub(super) fn pull(&self, key: &str, pull: &Spanned<RawPull>) -> Result<PullSettings, ConfigError> {
        let p = pull.get_ref();
        let Some(token) = &p.token else {
            return Err(self.err(
                format!("{key}.pull.token"),
                Some(pull.span()),
                "a pull subscriber needs a token: pull = { token = { env = \"…\" }, lease = \"60s\" } \
                 (the private side presents it as Authorization: Bearer)",
            ));
        };
        let token = self.header_token(&format!("{key}.pull.token"), token)?;
        let lease = p.lease.get_ref().0;
        if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
            return Err(self.err(
                format!("{key}.pull.lease"),
                Some(p.lease.span()).filter(|s| s.end > 0).or(Some(pull.span())),
                format!(
                    "lease {} is out of range: use 1s to 1h (how long a forwarder may take for one message \
                     before it is offered again)",
                    humantime::format_duration(lease)
                ),
            ));
        }
        Ok(PullSettings { token, lease })
    }

    /// Keys that only mean something when the relay connects to the subscriber.
    pub(super) fn push_only_keys(&self, key: &str, s: &RawSubscriber) -> Result<(), ConfigError> {
        let why = "only applies to push subscribers (url): the relay never connects to a pull subscriber";
        let first_header = s.headers.iter().next();
        let found = [
            ("headers", first_header.map(|(_, v)| v.span())),
            ("ca_file", s.ca_file.as_ref().map(Spanned::span)),
            ("timeout", s.timeout.as_ref().map(Spanned::span)),
            ("concurrency", s.concurrency.as_ref().map(Spanned::span)),
            ("rate", s.rate.as_ref().map(Spanned::span)),
            ("circuit_threshold", s.circuit_threshold.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .find(|(_, span)| span.is_some());
        match found {
            Some((name, span)) => Err(self.err(format!("{key}.{name}"), span, why)),
            None => Ok(()),
        }
    }

    /// A route whose path is a pull subscriber's API path would take its
    /// requests: refuse it, naming the route's path.
    pub(super) fn pull_paths_free(
        &self,
        routes: &[Route],
        paths: &[(String, std::ops::Range<usize>)],
    ) -> Result<(), ConfigError> {
        for sub in routes
            .iter()
            .flat_map(|r| &r.subscribers)
            .filter(|s| s.pull().is_some())
        {
            let api = PullSettings::api_paths(&sub.name);
            if let Some(i) = paths.iter().position(|(p, _)| api.contains(p)) {
                return Err(self.err(
                    format!("routes[{i}].path"),
                    Some(paths[i].1.clone()),
                    format!(
                        "path {:?} is the pull API of subscriber {:?}: choose another path",
                        paths[i].0, sub.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A route path that differs from a pull subscriber's API path only as
    /// two routes' paths may not ([`super::route::path_likeness`]): a warning
    /// (requests match exactly, so both work, and a config that ran keeps
    /// running), as a typo in either URL reaches the other.
    pub(super) fn pull_path_warnings(&self, routes: &[Route]) -> Vec<String> {
        let mut out = Vec::new();
        for sub in routes
            .iter()
            .flat_map(|r| &r.subscribers)
            .filter(|s| s.pull().is_some())
        {
            let api = PullSettings::api_paths(&sub.name);
            let alike: Vec<String> = api.iter().map(|a| super::route::path_likeness(a)).collect();
            for (i, r) in routes.iter().enumerate() {
                if !api.contains(&r.path) && alike.contains(&super::route::path_likeness(&r.path)) {
                    out.push(format!(
                        "{}: key `routes[{i}].path`: {:?} differs from the pull API of subscriber {:?} only by a \
                         trailing or doubled '/' or a percent-encoded letter: a typo in either URL reaches the \
                         other; choose a path unlike it",
                        self.file.display(),
                        r.path,
                        sub.name
                    ));
                }
            }
        }
        out
    }

    /// A pull token that is also a route token: route tokens travel in the
    /// callback URL given to the provider (its logs, its dashboard), so
    /// whoever sees that URL could read and acknowledge away the
    /// subscriber's callbacks. Refused on any listener, naming both keys.
    pub(super) fn pull_tokens_not_route_tokens(&self, routes: &[Route]) -> Result<(), ConfigError> {
        for (i, r) in routes.iter().enumerate() {
            for (k, s) in r.subscribers.iter().enumerate() {
                let Some(pull) = s.pull() else { continue };
                let same = routes.iter().enumerate().find_map(|(ri, other)| {
                    let j = other.tokens.iter().position(|t| *t == pull.token)?;
                    Some(format!("routes[{ri}].tokens[{j}]"))
                });
                if let Some(route_key) = same {
                    return Err(self.err(
                        format!("routes[{i}].subscribers[{k}].pull.token"),
                        None,
                        format!(
                            "the pull token of subscriber {:?} is also the route token `{route_key}`, which \
                             the provider sees in the callback URL: whoever knows that URL could read this \
                             subscriber's callbacks; give it its own (`hookrelay gen-token`)",
                            s.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A pull token two pull subscribers share: the pull API opens the
    /// subscriber the URL names to its token, so either one's forwarder (or
    /// whoever holds that token) could read and acknowledge away the other's
    /// callbacks (a subscriber block copied for a second service, its token
    /// left). Refused, naming both keys.
    pub(super) fn pull_tokens_own(&self, routes: &[Route]) -> Result<(), ConfigError> {
        let mut seen: Vec<(&crate::auth::Secret, String, &str)> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            for (k, s) in r.subscribers.iter().enumerate() {
                let Some(pull) = s.pull() else { continue };
                let key = format!("routes[{i}].subscribers[{k}].pull.token");
                if let Some((_, first, name)) = seen.iter().find(|(t, _, _)| **t == pull.token) {
                    return Err(self.err(
                        key,
                        None,
                        format!(
                            "subscriber {:?} has the pull token of subscriber {name:?} (`{first}`): either \
                             one's forwarder could read and acknowledge the other's callbacks; give each its \
                             own (`hookrelay gen-token`)",
                            s.name
                        ),
                    ));
                }
                seen.push((&pull.token, key, &s.name));
            }
        }
        Ok(())
    }
}
