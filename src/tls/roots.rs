//! Trust anchors for outbound HTTPS: the system's roots (webpki's when the
//! system has none) plus, when given, every certificate in a `ca_file`.
//!
//! The system's are read once for the clients a start or a reload builds
//! together and shared by them: each push subscriber read and parsed the
//! whole trust store for its own client (about 2 ms and 115 KiB each: 6 s
//! and 365 MB at 3,000 subscribers, and a reload held callback answers as
//! long; scale review, stop 73). Read again once [`FRESH`] has passed, so a
//! reload after the system's store changed takes the new one.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::RootCertStore;

use super::{fail, pem, TlsError};

/// How long the system's roots, once read, serve the clients built after.
const FRESH: Duration = Duration::from_secs(10);

/// The system's roots as last read, and when.
static SYSTEM: Mutex<Option<(Instant, Arc<RootCertStore>)>> = Mutex::new(None);

fn system_roots() -> Arc<RootCertStore> {
    cached(&SYSTEM, Instant::now(), || {
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// What `cache` holds if it was read less than [`FRESH`] before `now`, else
/// `read` again (kept with `now`).
fn cached(
    cache: &Mutex<Option<(Instant, Arc<RootCertStore>)>>,
    now: Instant,
    read: impl FnOnce() -> RootCertStore,
) -> Arc<RootCertStore> {
    let mut cached = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, roots)) = cached.as_ref() {
        if now.saturating_duration_since(*at) < FRESH {
            return roots.clone();
        }
    }
    let roots = Arc::new(read());
    *cached = Some((now, roots.clone()));
    roots
}

/// The system's roots, with every certificate in `ca_file` added when given
/// (then a store of its own; without one, the shared store).
pub fn load_roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, TlsError> {
    let system = system_roots();
    let Some(path) = ca_file else {
        return Ok(system);
    };
    let mut roots = (*system).clone();
    let mut added = 0;
    let pem = crate::config::small_file::read(path, crate::config::small_file::PEM_MAX)
        .map_err(|e| fail(format!("cannot read CA file {}: {e}", path.display())))?;
    for cert in pem::certificates(&pem).map_err(|e| fail(format!("invalid PEM in CA file {}: {e}", path.display())))? {
        roots
            .add(cert)
            .map_err(|e| fail(format!("unusable CA certificate in {}: {e}", path.display())))?;
        added += 1;
    }
    if added == 0 {
        return Err(fail(format!("no certificate found in CA file {}", path.display())));
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients built together share one read of the system's store.
    #[test]
    fn clients_built_together_share_the_systems_roots() {
        let (a, b) = (load_roots(None).unwrap(), load_roots(None).unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!a.is_empty());
    }

    /// A reload after [`FRESH`] reads the system's store again (a CA the
    /// operator added since is trusted); one within it does not.
    #[test]
    fn the_systems_roots_are_read_again_once_stale() {
        let cache = Mutex::new(None);
        let reads = std::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            RootCertStore::empty()
        };
        let t0 = Instant::now();
        let first = cached(&cache, t0, read);
        let within = cached(&cache, t0 + FRESH - Duration::from_millis(1), read);
        assert!(Arc::ptr_eq(&first, &within) && reads.get() == 1);
        let stale = cached(&cache, t0 + FRESH, read);
        assert!(!Arc::ptr_eq(&first, &stale) && reads.get() == 2);
        let after = cached(&cache, t0 + FRESH + Duration::from_secs(1), read);
        assert!(
            Arc::ptr_eq(&stale, &after) && reads.get() == 2,
            "kept from its own read"
        );
    }
}
