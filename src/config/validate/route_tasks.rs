//! The keys of expected tasks: a route's `reconcile = { after, every,
//! give_up }` and `verify = "fetch"` (both need a `kie-…` preset, which names
//! the status endpoint, and a `provider` key to call it), and
//! `server.public_url`, which the submit proxy turns into `callBackUrl`.

use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::raw::RawRoute;
use crate::config::values::{Reconcile, Route, ServerConfig, StoreBackend, StoreConfig, Verify};
use crate::config::ConfigError;
use crate::preset::Preset;

impl Validator<'_> {
    /// A route's `reconcile` and `verify`.
    pub(super) fn tasks(
        &self,
        key: &str,
        r: &RawRoute,
        preset: Option<Preset>,
        has_provider: bool,
    ) -> Result<(Option<Reconcile>, Verify), ConfigError> {
        let needs = |what: &str, span: std::ops::Range<usize>| -> Result<(), ConfigError> {
            if preset.is_none() {
                return Err(self.err(
                    format!("{key}.{what}"),
                    Some(span),
                    format!("{what} needs a provider preset (preset = \"kie-…\"): it names the status endpoint"),
                ));
            }
            if !has_provider {
                return Err(self.err(
                    format!("{key}.{what}"),
                    Some(span),
                    format!(
                        "{what} asks the provider's API: set provider = {{ api_key = {{ env = \"KIE_API_KEY\" }} }}"
                    ),
                ));
            }
            Ok(())
        };
        let reconcile = match &r.reconcile {
            None => None,
            Some(rc) => {
                needs("reconcile", rc.span())?;
                let raw = rc.get_ref();
                for (name, d) in [("every", raw.every.0), ("give_up", raw.give_up.0)] {
                    if d.is_zero() {
                        return Err(self.err(
                            format!("{key}.reconcile.{name}"),
                            Some(rc.span()),
                            "must be greater than 0",
                        ));
                    }
                }
                if raw.every.0 < Duration::from_millis(100) {
                    return Err(self.err(
                        format!("{key}.reconcile.every"),
                        Some(rc.span()),
                        "must be at least 100ms (the provider suggests 30s)",
                    ));
                }
                if raw.give_up.0 <= raw.after.0 {
                    return Err(self.err(
                        format!("{key}.reconcile.give_up"),
                        Some(rc.span()),
                        format!(
                            "give_up ({}) must be longer than after ({}): the task would be given up before its first poll",
                            humantime::format_duration(raw.give_up.0),
                            humantime::format_duration(raw.after.0)
                        ),
                    ));
                }
                Some(Reconcile {
                    after: raw.after.0,
                    every: raw.every.0,
                    give_up: raw.give_up.0,
                })
            }
        };
        let verify = match &r.verify {
            None => Verify::Off,
            Some(v) => match v.get_ref().as_str() {
                "fetch" => {
                    needs("verify", v.span())?;
                    Verify::Fetch
                }
                "off" => Verify::Off,
                other => {
                    return Err(self.err(
                        format!("{key}.verify"),
                        Some(v.span()),
                        format!("unknown verify mode {other:?}: use \"fetch\" (or \"off\")"),
                    ))
                }
            },
        };
        Ok((reconcile, verify))
    }

    /// `server.public_url`: an absolute http(s) URL with no query or fragment.
    pub(super) fn public_url(&self, u: &Spanned<String>) -> Result<String, ConfigError> {
        // Shown without credentials or query values (refused because they
        // may be secrets).
        let shown = crate::auth::redact_url(u.get_ref());
        let bad = |m: &str| self.err("server.public_url", Some(u.span()), format!("{shown:?}: {m}"));
        let parsed = url::Url::parse(u.get_ref()).map_err(|e| bad(&format!("not a URL ({e})")))?;
        if crate::config::unusable_port(u.get_ref()) {
            return Err(bad("the port must be 1 to 65535"));
        }
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad(
                "must be an http(s) URL with a host, e.g. \"https://hooks.example.com\"",
            ));
        }
        if parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(bad(
                "must have no query, fragment, user name or password (the route's path is appended)",
            ));
        }
        Ok(u.get_ref().trim_end_matches('/').to_string())
    }

    /// Routes that reconcile get their tasks through the submit proxy, which
    /// needs `server.public_url` to tell the provider where to call back.
    pub(super) fn public_url_present(&self, server: &ServerConfig, routes: &[Route]) -> Result<(), ConfigError> {
        if server.public_url.is_some() {
            return Ok(());
        }
        match routes.iter().position(|r| r.reconcile.is_some()) {
            None => Ok(()),
            Some(i) => Err(self.err(
                "server.public_url",
                None,
                format!(
                    "routes[{i}] ({:?}) sets reconcile, so its tasks can be submitted through the submit proxy, which \
                     needs server.public_url (how the provider reaches this relay, e.g. \"https://hooks.example.com\")",
                    routes[i].name
                ),
            )),
        }
    }

    /// Routes whose `reconcile.give_up` is not shorter than `store.retention`
    /// in cluster mode: there a task's row and work message expire at the
    /// retention after its registration whether or not it settled, so a task
    /// still open then is polled no more (neither recovered nor given up).
    /// The embedded store keeps an open task until its reconciler settles it.
    pub(super) fn task_retention_warnings(&self, store: &StoreConfig, routes: &[Route]) -> Vec<String> {
        if !matches!(store.backend, StoreBackend::Nats(_)) {
            return Vec::new();
        }
        routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r, r.reconcile?)))
            // The poll that gives a task up comes up to one jittered `every`
            // after `give_up`.
            .filter(|(_, _, rc)| rc.give_up + rc.every.mul_f64(1.2) >= store.retention)
            .map(|(i, r, rc)| {
                format!(
                    "{}: key `routes[{i}].reconcile.give_up` (route {:?}): {} (plus up to 1.2 × `every` for the poll that \
                     gives a task up) is not shorter than `store.retention` ({}): in cluster mode an expected task expires at the retention whether or not it settled, so a \
                     task still open then is polled no more and its result is lost (no gave_up): raise \
                     store.retention or shorten give_up",
                    self.file.display(),
                    r.name,
                    humantime::format_duration(rc.give_up),
                    humantime::format_duration(store.retention),
                )
            })
            .collect()
    }
}
