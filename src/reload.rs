//! Applying a new configuration to a running daemon (SIGHUP): what can change
//! in place changes (certificate files are read again), what needs a restart
//! is logged (ACME settings among them: ACME certificates renew on their
//! own), and a file that cannot be applied changes nothing (certificate
//! files that cannot be read, whose key does not fit, or whose certificate
//! is expired or not yet valid among them, unless that certificate is the
//! one being served already).

use crate::config::{Config, ConfigError, StoreBackend, TlsSource};
use crate::delivery::DeliveryError;
use crate::media::SetupError;
use crate::state::{conn_settings, App};
use crate::store::{StoreError, Topology};
use crate::tls::{self, TlsError};

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Media(#[from] SetupError),
    /// What the next start would refuse (it exits 2: not restarted).
    #[error("{0}")]
    NextStart(String),
}

/// Apply `new` (over the running configuration). Everything that can fail
/// is done before anything is changed.
pub async fn apply(app: &App, mut new: Config) -> Result<(), ReloadError> {
    // Compared with what the daemon started with, not with the previous
    // file: a change still waiting for a restart is named at every reload,
    // and one undone is not.
    let running = &app.started_with;
    if new.server.listen != running.server.listen {
        tracing::warn!("server.listen changed; it takes effect after a restart");
    }
    if new.admin.listen != running.admin.listen {
        tracing::warn!("admin.listen changed; it takes effect after a restart");
    }
    // What the next start would refuse (it exits 2, which the unit does not
    // restart), weeks later perhaps, is refused now, judged on the file as
    // `check-config` judges it (its store, not the running one).
    if let Some(why) = crate::start_refusal::of(&new) {
        return Err(ReloadError::NextStart(why));
    }
    // The store in use stays until the restart: what follows `store.path`
    // (the media archive's default directory under it, the disk its floor
    // is measured on, the archive's owner tag) follows the one in use.
    if new.store.path != running.store.path {
        if new.media.store_given {
            tracing::warn!("store.path changed; it takes effect after a restart");
        } else {
            new.media.store = crate::config::MediaStoreConfig::Local(running.store.path.join("media"));
            tracing::warn!(
                "store.path changed; it takes effect after a restart (with the media archive's directory \
                 under it, media.store being left out)"
            );
        }
        new.store.path = running.store.path.clone();
    }
    for (changed, key) in [
        (new.store.cache_bytes != running.store.cache_bytes, "store.cache"),
        (new.store.min_free != running.store.min_free, "store.min_free"),
        (new.store.compression != running.store.compression, "store.compression"),
        // Compared whole, credentials included (Debug would hide a changed one).
        (new.store.backend != running.store.backend, "store.nats"),
        (new.log.level != running.log.level, "log.level"),
        (new.log.format != running.log.format, "log.format"),
    ] {
        if changed {
            tracing::warn!("{key} changed; it takes effect after a restart");
        }
    }
    // Cluster mode: these are the cluster's, shared by every relay (the
    // streams' max_age and copies, the consumers' ack_wait); a reload never
    // changes them.
    // Judged by the backend running, whatever the new file says (one
    // switched back to the embedded store with a lower retention swept the
    // cluster's tasks with it: change review).
    if let StoreBackend::Nats(old) = &running.store.backend {
        let (replicas, takeover) = match &new.store.backend {
            StoreBackend::Nats(n) => (n.replicas != old.replicas, n.takeover != old.takeover),
            StoreBackend::Sled => (false, false),
        };
        let shared: Vec<&str> = [
            (new.store.retention != running.store.retention, "store.retention"),
            (replicas, "store.nats.replicas"),
            (takeover, "store.nats.takeover"),
        ]
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect();
        if !shared.is_empty() {
            tracing::warn!(
                "{} changed; in cluster mode a reload does not change it: the setting is shared by every relay; \
                 change it for the whole cluster with `hookrelay apply-cluster-settings`, then restart the relays \
                 with the new value (a relay whose value differs from the cluster's refuses to start)",
                shared.join(", ")
            );
        }
        // Nor does the retention sweep follow it: it would delete the
        // cluster's expected tasks registered before the new cutoff, open
        // ones too, for every relay.
        new.store.retention = running.store.retention;
    }
    // A shorter retention applies at the next sweep (within a minute), and
    // what it removes cannot come back: said now, with what goes.
    let in_force = app.live().config.store.retention;
    if new.store.retention < in_force {
        tracing::warn!(
            from = %humantime::format_duration(in_force),
            to = %humantime::format_duration(new.store.retention),
            "store.retention lowered: the next sweep, within a minute, removes the finished events (with their \
             dedupe keys), dead letters and settled expected tasks older than the new value"
        );
    }
    // What needs a restart stays as it runs until then: the media archive's
    // disk floor follows `store.min_free` and the backend (a floor lowered
    // under a store still refusing callbacks at the old one lets downloads
    // take the space ingest keeps).
    new.store.cache_bytes = running.store.cache_bytes;
    new.store.min_free = running.store.min_free;
    new.store.compression = running.store.compression;
    new.store.backend = running.store.backend.clone();
    new.log = running.log.clone();
    // Compared with what the listeners run, not with the previous file: a
    // change that needed a restart is still pending after further reloads.
    let certificate = match (&new.server.tls, &app.tls, &app.acme) {
        (Some(TlsSource::Files(files)), Some(served), None) => {
            let (cfg, cert) = tls::load_files(files)?;
            for w in tls::file_warnings(files) {
                tracing::warn!("{w}");
            }
            if let Some(w) = tls::public_url_uncovered(new.server.public_url.as_deref(), &cert.names) {
                tracing::warn!("{w}");
            }
            match tls::not_valid_at(files, &cert, crate::clock::time_of_day()) {
                None => Some((cfg, cert)),
                // The certificate being served already (expired since, or
                // never valid): refusing would protect nothing and keep the
                // rest of the file (a new token, an allowlist) from applying.
                Some(e) if served.certificate().as_ref() == Some(&cert) => {
                    tracing::error!("{e}; it is the certificate being served already: the rest of the reload applies");
                    None
                }
                // Served, it would fail every handshake: keep the one being served.
                Some(e) => return Err(e.into()),
            }
        }
        (Some(TlsSource::Acme(settings)), Some(_), Some(running)) => {
            if settings != running.settings() {
                tracing::warn!("server.tls.acme changed; it takes effect after a restart");
            }
            None
        }
        (Some(_), Some(_), _) => {
            tracing::warn!("switching between certificate files and ACME takes effect after a restart");
            None
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            tracing::warn!("turning TLS on or off takes effect after a restart");
            None
        }
        (None, None, _) => None,
    };
    for w in &new.warnings {
        tracing::warn!("{w}");
    }
    let media = crate::media::ArchiveSettings::build(&new, Some(&app.media.settings()))?;
    let subscribers: Vec<_> = new.subscribers().cloned().collect();
    // Before the store is told: a subscriber the new file removes is ended
    // there (left out of new events), which only an applied reload may do.
    let prepared = app.delivery.prepare(&subscribers)?;
    // Until the config is swapped (or this fails), a callback the store
    // refuses for the new topology waits for the swap (ingest).
    let _pending = app.reload_begins();
    app.store.register(&Topology::of(&new)).await?;
    // Nothing below can fail. The verifier knows the new routes before a
    // new lane can take a delivery of one that verifies.
    app.delivery.verifier().configure(&new, &media.providers);
    app.delivery.apply(prepared);
    if let (Some((cfg, cert)), Some(current)) = (certificate, &app.tls) {
        let days_left = cert
            .not_after
            .duration_since(std::time::SystemTime::now())
            .map_or(0, |d| d.as_secs() / 86_400);
        tracing::info!(names = %cert.names.join(","), serial = %cert.serial, days_left,
            "certificate files read again");
        if let Some(old) = current.certificate() {
            if !old.names.is_empty() && !shares_a_name(&old.names, &cert.names) {
                tracing::warn!(old_names = %old.names.join(","), new_names = %cert.names.join(","),
                    "the certificate read again covers none of the names the one it replaces served \
                     (the wrong file linked?); clients asking for the old names will refuse it");
            }
        }
        current.set(cfg, Some(cert));
    }
    app.listener_settings.set(conn_settings(&new));
    app.connections.set_limit(new.server.max_connections);
    app.bodies.set_limit(new.server.max_body_memory, new.server.max_body);
    let routes = new.routes.len();
    if new.archives_media() {
        // The next start compares with the store in use now.
        crate::media::last_store::remember(&app.started_with.store.path, &media.store.location());
    }
    // A store the reload opened (a bucket renamed, keys rotated) is checked
    // now, as at start; so is one a route archives to for the first time.
    let check =
        new.archives_media() && (!app.media.settings().shares_store(&media) || !app.live().config.archives_media());
    app.media.update(media);
    if check {
        app.media.check_store(app.metrics.media_store_unavailable.clone());
    } else if !new.archives_media() {
        app.media.forget_store_checks(&app.metrics.media_store_unavailable);
    }
    warn_dedupe_history(&app.live().config, &new);
    app.set_live(new);
    tracing::info!(routes, subscribers = subscribers.len(), "configuration reloaded");
    Ok(())
}

/// Dedupe memory is kept per route name and key: a reload that renames a
/// route (same path, new name) or changes how a route keys its callbacks
/// (`dedupe_key`, a `preset` that brings its own key, or a `standard-webhooks`
/// signature added or removed: its routes key by `webhook-id`) starts a new dedupe
/// history for it. Said in a warning, so that a duplicate delivery after it
/// is not a surprise.
fn warn_dedupe_history(old: &Config, new: &Config) {
    for (i, r) in new.routes.iter().enumerate() {
        match old.routes.iter().find(|o| o.name == r.name) {
            Some(o) if o.dedupe_key != r.dedupe_key => tracing::warn!(
                route = %r.name,
                "routes[{i}] ({}): the dedupe key changed (dedupe_key, preset, or a standard-webhooks signature, \
                 which keys by webhook-id): retries of callbacks accepted before this reload will not be \
                 recognised as duplicates",
                r.name
            ),
            Some(_) => {}
            None => {
                let renamed = old
                    .routes
                    .iter()
                    .find(|o| o.path == r.path && !new.routes.iter().any(|n| n.name == o.name));
                if let Some(o) = renamed {
                    tracing::warn!(
                        route = %r.name,
                        old_name = %o.name,
                        path = %r.path,
                        "routes[{i}]: route {} renamed to {} (same path): renaming a route starts a new dedupe \
                         history, so retries of callbacks accepted before this reload will not be recognised as \
                         duplicates; deliveries still pending on {} stay parked under that name until a route of \
                         that name is configured again",
                        o.name,
                        r.name,
                        o.name
                    );
                }
            }
        }
    }
}

/// Whether a certificate for `new` names serves any host one for `old`
/// served: a name of one covers a name of the other, either way round (old
/// `*.example.com`, new `a.example.com`: clients of `a` keep working).
fn shares_a_name(old: &[String], new: &[String]) -> bool {
    old.iter().any(|o| new.iter().any(|n| covers(n, o) || covers(o, n)))
}

/// Whether certificate name `cert` (maybe a `*.` wildcard) covers host `name`.
fn covers(cert: &str, name: &str) -> bool {
    if cert.eq_ignore_ascii_case(name) {
        return true;
    }
    match (cert.strip_prefix("*."), name.split_once('.')) {
        (Some(suffix), Some((_, rest))) => rest.eq_ignore_ascii_case(suffix),
        _ => false,
    }
}

/// After a refused reload: a line saying so when the certificate files of
/// the running configuration hold another certificate than the one served
/// (a renewal, e.g. by certbot's deploy hook): it was not applied.
pub fn unapplied_certificate(app: &App) -> Option<String> {
    let live = app.live();
    let Some(TlsSource::Files(files)) = &live.config.server.tls else {
        return None;
    };
    let served = app.tls.as_ref()?.certificate()?;
    // Read as the reload read it (a byte order mark hid the leaf here, so a
    // CA's serial was named: change review, stop 66).
    let on_disk = tls::first_certificate_in(&files.cert)?;
    (on_disk.serial != served.serial).then(|| {
        format!(
            "the certificate files changed and were NOT applied: {} holds serial {} (names {}, expires {}), \
             the old certificate (serial {}, expires {}) is still served; fix what the reload refused and reload again",
            files.cert.display(),
            on_disk.serial,
            tls::CertInfo::names_shown(&on_disk.names),
            tls::rfc3339(on_disk.not_after),
            served.serial,
            tls::rfc3339(served.not_after),
        )
    })
}

/// How long a reload may take to read the config file and the files it
/// names: reading a FIFO nobody writes to, or a stalled network mount, would
/// otherwise hold the reload (and a second SIGHUP behind it) for ever.
const CONFIG_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads that took longer than [`CONFIG_READ_LIMIT`] and are still blocked
/// (their threads cannot be stopped), with the file each is on.
static BLOCKED: std::sync::Mutex<Vec<(std::thread::JoinHandle<()>, std::path::PathBuf)>> =
    std::sync::Mutex::new(Vec::new());

/// The most reads left blocked at once. A later read of a file a blocked
/// read is on fails at once ([`crate::config::blocked_reads`]), so each
/// blocked file holds one thread; past this many (reads blocked on as many
/// files), reloads are refused at once until one ends or hookrelay restarts.
/// Only threads are looked at here, never files: a `stat` on a stalled
/// mount would hold the caller, here the daemon's signal loop.
const MAX_BLOCKED_READS: usize = 8;

/// [`Config::load_bound`] on a thread of its own, so that a read that blocks
/// holds neither the runtime nor a stop (SIGTERM ends the daemon meanwhile:
/// the thread does not keep the process), bounded by [`CONFIG_READ_LIMIT`];
/// the error names the file it was blocked on (the config, or a file it
/// names).
pub async fn read_config(
    file: std::path::PathBuf,
    bound: crate::config::Bound,
) -> Result<Config, crate::config::ConfigError> {
    let shown = file.clone();
    let stuck = |message: String| crate::config::ConfigError::whole_file(&shown, message);
    {
        let mut blocked = BLOCKED.lock().unwrap_or_else(|e| e.into_inner());
        blocked.retain(|(thread, _)| !thread.is_finished());
        if blocked.len() >= MAX_BLOCKED_READS {
            let mut files: Vec<String> = blocked.iter().map(|(_, f)| f.display().to_string()).collect();
            files.dedup();
            return Err(stuck(format!(
                "{} earlier reloads are still blocked reading {} (a FIFO nobody writes to, or a stalled disk or \
                 mount?): no reload is read until one of those reads ends, or hookrelay is restarted",
                blocked.len(),
                files.join(", ")
            )));
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("config-read".into()).spawn(move || {
        let _ = tx.send(Config::load_bound(&file, &bound));
    });
    let thread = match spawned {
        Ok(t) => t,
        Err(e) => return Err(stuck(format!("cannot start reading the file: {e}"))),
    };
    match tokio::time::timeout(CONFIG_READ_LIMIT, rx).await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(_)) => Err(stuck("reading the file ended without an answer".into())),
        Err(_) => {
            let id = thread.thread().id();
            let on = crate::config::blocked_reads::reading_on(id).unwrap_or_else(|| shown.clone());
            crate::config::blocked_reads::mark_blocked(id);
            let message = format!(
                "reading {} took longer than {} s: a FIFO nobody writes to, or a stalled disk or mount?",
                on.display(),
                CONFIG_READ_LIMIT.as_secs()
            );
            BLOCKED.lock().unwrap_or_else(|e| e.into_inner()).push((thread, on));
            Err(stuck(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(l: &[&str]) -> Vec<String> {
        l.iter().map(|n| n.to_string()).collect()
    }

    /// The "covers none of the names" warning looks at wildcards on both
    /// certificates (review 39, finding 8).
    #[test]
    fn a_certificate_read_again_shares_a_name_through_a_wildcard_on_either_side() {
        let (wild, a, b) = (
            names(&["*.example.com"]),
            names(&["a.example.com"]),
            names(&["b.example.org"]),
        );
        assert!(shares_a_name(&wild, &a), "old wildcard, new host under it");
        assert!(shares_a_name(&a, &wild), "old host, new wildcard over it");
        assert!(shares_a_name(&a, &names(&["A.example.com"])));
        assert!(!shares_a_name(&a, &b));
        assert!(!shares_a_name(&wild, &names(&["x.a.example.com"])));
        assert!(!shares_a_name(&wild, &b));
    }
}
