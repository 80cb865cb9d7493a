//! The certificate resolver inside the ACME listener configuration: ordinary
//! handshakes get the current certificate; TLS-ALPN-01 validation handshakes
//! (ALPN exactly `acme-tls/1`, RFC 8737) get the answer of the order in
//! progress, if any, and nothing otherwise. A renewal swaps the current
//! certificate in place, so the listener's `ServerConfig` never changes.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Default)]
pub struct Resolver {
    /// What ordinary clients get; kept through failed renewals.
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// The challenge answers of the order in progress (rustls-acme's resolver
    /// during an order); `None` between orders, so validation handshakes fail.
    challenge: RwLock<Option<Arc<dyn ResolvesServerCert>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("acme::Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn set_current(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    pub fn set_challenge(&self, order: Option<Arc<dyn ResolvesServerCert>>) {
        *self.challenge.write().unwrap_or_else(|e| e.into_inner()) = order;
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if rustls_acme::is_tls_alpn_challenge(&hello) {
            let order = self.challenge.read().unwrap_or_else(|e| e.into_inner()).clone();
            return order?.resolve(hello);
        }
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
