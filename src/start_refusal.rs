//! What a start refuses before it serves, judged from the config file alone
//! (the start exits 2, which the unit does not restart): an embedded store
//! created with the other `store.compression` (read from sled's `conf`; the
//! store is not opened, it may be in use), an ACME state directory that is
//! another program's. `check-config` says it; a reload whose file it is
//! refuses it (the restart that would apply it would not start).

use crate::config::{Config, StoreBackend, TlsSource};

/// Why a start with `c` would be refused, if it would.
pub fn of(c: &Config) -> Option<String> {
    acme_state(c).or_else(|| store(c))
}

fn acme_state(c: &Config) -> Option<String> {
    match &c.server.tls {
        Some(TlsSource::Acme(_)) => crate::acme::foreign_state(&crate::acme::state_dir(&c.store.path)),
        _ => None,
    }
}

fn store(c: &Config) -> Option<String> {
    match c.store.backend {
        StoreBackend::Sled => crate::store::sled::check_compression(&c.store.path, c.store.compression)
            .err()
            .map(|e| e.to_string()),
        StoreBackend::Nats(_) => None,
    }
}
