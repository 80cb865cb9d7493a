//! Applying a new configuration to a running daemon (SIGHUP): what can change
//! in place changes, what needs a restart is logged, and a file that cannot be
//! applied changes nothing.

use crate::app::{topology, ReloadError};
use crate::config::Config;
use crate::state::{conn_settings, App};
use crate::tls;

/// Apply `new` over `old`. Everything that can fail is done before anything
/// is changed.
pub async fn apply(app: &App, old: &Config, new: Config) -> Result<(), ReloadError> {
    if new.server.listen != old.server.listen || new.admin.listen != old.admin.listen {
        tracing::warn!("listen addresses changed; they take effect after a restart");
    }
    for (changed, key) in [
        (new.store.path != old.store.path, "store.path"),
        (new.store.cache_bytes != old.store.cache_bytes, "store.cache"),
        (new.store.min_free != old.store.min_free, "store.min_free"),
        (new.store.compression != old.store.compression, "store.compression"),
        (new.log.level != old.log.level, "log.level"),
        (new.log.format != old.log.format, "log.format"),
    ] {
        if changed {
            tracing::warn!("{key} changed; it takes effect after a restart");
        }
    }
    let certificate = match (&new.server.tls, &app.tls) {
        (Some(files), Some(_)) => Some(tls::load_server_config(files)?),
        (Some(_), None) | (None, Some(_)) => {
            tracing::warn!("turning TLS on or off takes effect after a restart");
            None
        }
        (None, None) => None,
    };
    for w in &new.warnings {
        tracing::warn!("{w}");
    }
    let media = crate::media::ArchiveSettings::build(&new, Some(&app.media.settings()))?;
    app.store.register(&topology(&new)).await?;
    let subscribers: Vec<_> = new.subscribers().cloned().collect();
    app.delivery.configure(&subscribers)?;
    // Validated like the rest: nothing below can fail.
    if let (Some(cfg), Some(current)) = (certificate, &app.tls) {
        current.set(cfg);
    }
    app.listener_settings.set(conn_settings(&new));
    app.connections.set_limit(new.server.max_connections);
    let routes = new.routes.len();
    app.media.update(media);
    app.set_live(new);
    tracing::info!(routes, subscribers = subscribers.len(), "configuration reloaded");
    Ok(())
}
