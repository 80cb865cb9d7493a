//! `[store] backend` and `nats = { … }` (cluster mode): servers, credentials
//! from any secret source, TLS to NATS, replicas; route and subscriber names
//! that NATS can carry in stream and consumer names.

use std::time::Duration;

use super::Validator;
use crate::config::raw::RawStore;
use crate::config::values::{NatsAuth, NatsConfig, Route, StoreBackend};
use crate::config::ConfigError;

/// `store.nats.takeover` unless set.
const DEFAULT_TAKEOVER: Duration = Duration::from_secs(30);
const MIN_TAKEOVER: Duration = Duration::from_secs(5);

impl Validator<'_> {
    pub(super) fn backend(&self, s: &RawStore) -> Result<StoreBackend, ConfigError> {
        match s.backend.get_ref().as_str() {
            "sled" => {
                if let Some(n) = &s.nats {
                    return Err(self.err(
                        "store.nats",
                        Some(n.span()),
                        "store.nats is set but store.backend is \"sled\": set backend = \"nats\" or remove it",
                    ));
                }
                Ok(StoreBackend::Sled)
            }
            "nats" => {
                let Some(n) = &s.nats else {
                    return Err(self.err(
                        "store.nats",
                        Some(s.backend.span()),
                        "backend = \"nats\" needs store.nats = { servers = [\"nats://host:4222\", …] }",
                    ));
                };
                let span = Some(n.span());
                let n = n.get_ref();
                if n.servers.is_empty() {
                    return Err(self.err(
                        "store.nats.servers",
                        span,
                        "list at least one server (every node of the cluster)",
                    ));
                }
                let mut servers = Vec::new();
                for (i, url) in n.servers.iter().enumerate() {
                    let u = url.get_ref();
                    // A port no connection can have (`:0`, `:`) was taken,
                    // and the relay never connected; a path or query is no
                    // part of a NATS server's address (a `?token=` in it is
                    // a secret in the config's plain text, as user:pass is).
                    let why = if !(u.parse::<async_nats::ServerAddr>().is_ok()
                        && ["nats://", "tls://"].iter().any(|p| u.starts_with(p)))
                    {
                        Some("invalid server")
                    } else if crate::config::url_port::unusable_port(u) {
                        Some("a port from 1 to 65535 is needed in server")
                    } else if !url::Url::parse(u)
                        .is_ok_and(|p| matches!(p.path(), "" | "/") && p.query().is_none() && p.fragment().is_none())
                    {
                        Some("no path, query or fragment belongs in server")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        return Err(self.err(
                            format!("store.nats.servers[{i}]"),
                            Some(url.span()),
                            format!(
                                "{why} {:?} (use e.g. \"nats://10.0.0.1:4222\" or \"tls://nats.internal:4222\")",
                                crate::auth::redact_url(u)
                            ),
                        ));
                    }
                    if let Ok(parsed) = url::Url::parse(u) {
                        if !parsed.username().is_empty() || parsed.password().is_some() {
                            return Err(self.err(
                                format!("store.nats.servers[{i}]"),
                                Some(url.span()),
                                format!(
                                    "{:?} has credentials in the URL: list the server without them and use \
                                     store.nats.user and password (or token, or credentials)",
                                    crate::auth::redact_url(u)
                                ),
                            ));
                        }
                    }
                    servers.push(u.clone());
                }
                let given = [
                    n.credentials.is_some(),
                    n.token.is_some(),
                    n.user.is_some() || n.password.is_some(),
                ];
                if given.iter().filter(|g| **g).count() > 1 {
                    return Err(self.err("store.nats", span, "use one of credentials, token or user + password"));
                }
                let secret = |key: &str, src: &toml::Spanned<crate::config::SecretSource>| {
                    src.get_ref()
                        .resolve_text(self)
                        .map(crate::auth::Secret::new)
                        .map_err(|m| self.err(key, Some(src.span()), m))
                };
                let auth = if let Some(c) = &n.credentials {
                    let creds = secret("store.nats.credentials", c)?;
                    if !crate::auth::credential_text(&creds).contains("BEGIN NATS USER JWT") {
                        return Err(self.err(
                            "store.nats.credentials",
                            Some(c.span()),
                            "not a NATS .creds file (no \"BEGIN NATS USER JWT\" section)",
                        ));
                    }
                    NatsAuth::Credentials(creds)
                } else if let Some(t) = &n.token {
                    NatsAuth::Token(secret("store.nats.token", t)?)
                } else if n.user.is_some() || n.password.is_some() {
                    match (&n.user, &n.password) {
                        (Some(user), Some(p)) if !user.is_empty() => NatsAuth::UserPassword {
                            user: user.clone(),
                            password: secret("store.nats.password", p)?,
                        },
                        _ => return Err(self.err("store.nats", span, "user and password go together")),
                    }
                } else {
                    NatsAuth::None
                };
                let ca_file = match &n.ca_file {
                    Some(p) => {
                        let path = self.existing_file("store.nats.ca_file", p)?;
                        if let Err(e) = crate::tls::load_roots(Some(&path)) {
                            return Err(self.err("store.nats.ca_file", Some(p.span()), e.to_string()));
                        }
                        Some(path)
                    }
                    None => None,
                };
                if !matches!(n.replicas, 1 | 3 | 5) {
                    return Err(self.err(
                        "store.nats.replicas",
                        span,
                        "use 1, 3 or 5 (3 for a cluster that survives a node)",
                    ));
                }
                let takeover = n.takeover.as_ref().map_or(DEFAULT_TAKEOVER, |t| t.get_ref().0);
                if takeover < MIN_TAKEOVER {
                    let at = n.takeover.as_ref().map(|t| t.span());
                    return Err(self.err("store.nats.takeover", at, "use at least 5s"));
                }
                Ok(StoreBackend::Nats(NatsConfig {
                    servers,
                    auth,
                    ca_file,
                    replicas: n.replicas,
                    takeover,
                }))
            }
            other => Err(self.err(
                "store.backend",
                Some(s.backend.span()),
                format!("unknown backend {other:?}: use \"sled\" (embedded) or \"nats\" (cluster)"),
            )),
        }
    }

    /// `[store]` keys of the embedded store written in a cluster-mode file:
    /// they do nothing there.
    pub(super) fn nats_unused_keys(&self) -> Vec<String> {
        let Some(doc) = self.table() else {
            return Vec::new();
        };
        let Some(store) = doc.get("store").and_then(|s| s.as_table()) else {
            return Vec::new();
        };
        ["cache", "min_free", "compression"]
            .into_iter()
            .filter(|k| store.contains_key(*k))
            .map(|k| {
                format!(
                    "{}: key `store.{k}`: it applies to the embedded store only; with backend = \"nats\" it does \
                     nothing (remove it)",
                    self.file.display()
                )
            })
            .collect()
    }

    /// NATS stream, subject and consumer names carry route and subscriber
    /// names, and event ids a 16-bit tag of the route's name: two routes with
    /// one tag are refused here (the relay's NATS set-up stopped at them, so
    /// it never became ready, or after a reload their callbacks got 503).
    pub(super) fn nats_names(&self, routes: &[Route]) -> Result<(), ConfigError> {
        let ok = crate::store::nats::layout::name_fits;
        let mut tags: std::collections::HashMap<u16, (usize, &str)> = std::collections::HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            if let Some((j, other)) = tags.insert(crate::store::nats::layout::route_tag(&r.name), (i, &r.name)) {
                return Err(self.err(
                    format!("routes[{i}].name"),
                    None,
                    format!(
                        "with backend = \"nats\" event ids carry a 16-bit tag of the route's name, and {:?} has \
                         the tag of routes[{j}] {other:?}: rename one of them (any other name will do)",
                        r.name
                    ),
                ));
            }
            if !ok(&r.name) {
                return Err(self.err(
                    format!("routes[{i}].name"),
                    None,
                    format!(
                        "with backend = \"nats\" names use letters, digits, '-' and '_' only: {:?}",
                        r.name
                    ),
                ));
            }
            for (j, s) in r.subscribers.iter().enumerate() {
                if !ok(&s.name) {
                    return Err(self.err(
                        format!("routes[{i}].subscribers[{j}].name"),
                        None,
                        format!(
                            "with backend = \"nats\" names use letters, digits, '-' and '_' only: {:?}",
                            s.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
