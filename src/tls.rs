//! TLS setup: the only module that builds rustls configurations.
//!
//! Server side: TLS 1.2 and 1.3 only, ring provider, ALPN `h2` and `http/1.1`,
//! certificate chain and key (RSA, ECDSA, Ed25519) from PEM files. The live
//! configuration sits behind a lock so SIGHUP can swap in renewed certificates
//! for new connections. Client side (deliveries): system roots plus an optional
//! private CA file, webpki roots when the system has none.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The PEM files of a server certificate (chain) and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Why a certificate, key or CA file cannot be used (the message names the file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn fail(msg: String) -> TlsError {
    TlsError(msg)
}

/// Install ring as the process-wide rustls provider (idempotent).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read a PEM certificate chain and private key into a server configuration.
pub fn load_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| fail(format!("cannot read certificate {}: {e}", files.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("invalid certificate PEM in {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(fail(format!("no certificate found in {}", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| fail(format!("no usable private key in {}: {e}", files.key.display())))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| fail(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            fail(format!(
                "certificate {} and key {} do not fit: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The server configuration in use; SIGHUP replaces it, new connections take the new one.
#[derive(Clone)]
pub struct Reloadable {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl Reloadable {
    pub fn new(cfg: Arc<ServerConfig>) -> Self {
        Reloadable {
            current: Arc::new(RwLock::new(cfg)),
        }
    }

    pub fn get(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, cfg: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }
}

/// Trust anchors for outbound HTTPS: the system's roots (webpki roots when the
/// system has none) plus, when given, every certificate in `ca_file`.
pub fn load_roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(format!("cannot read CA file {}: {e}", path.display())))?
        {
            let cert = cert.map_err(|e| fail(format!("invalid PEM in CA file {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| fail(format!("unusable CA certificate in {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(fail(format!("no certificate found in CA file {}", path.display())));
        }
    }
    Ok(roots)
}

/// Client configuration for deliveries (the connector adds ALPN h2 + http/1.1).
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let roots = load_roots(ca_file)?;
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| fail(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}
