//! TLS setup: the only module that builds rustls configurations.
//!
//! Server side: TLS 1.2 and 1.3 only, ring provider, ALPN `h2` and `http/1.1`,
//! certificate chain and key (RSA, ECDSA, Ed25519) from PEM files, or any
//! certificate resolver (ACME: `crate::acme` decides what it serves). The live
//! configuration sits behind a lock, with what its file certificate says
//! ([`CertInfo`]), so SIGHUP can swap in renewed certificates for new
//! connections. Client side (deliveries, the ACME directory): system roots
//! plus an optional private CA file, webpki roots when the system has none.

mod cert;
mod expiry;
mod pem;
mod roots;
#[cfg(test)]
pub(crate) mod test_cert;

use std::path::Path;

pub use roots::load_roots;
use std::sync::{Arc, RwLock};

use rustls::pki_types::CertificateDer;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};

pub use cert::{parse_bundle, rfc3339, CertInfo};
pub use expiry::ExpiryWatch;

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
    load_files(files).map(|(cfg, _)| cfg)
}

/// What the first certificate of the PEM file at `path` says, if it can be
/// read (as [`load_files`] reads it: bounded, a byte order mark passed over).
pub fn first_certificate_in(path: &Path) -> Option<CertInfo> {
    let pem = crate::config::small_file::read(path, crate::config::small_file::PEM_MAX).ok()?;
    let certs = pem::certificates(&pem).ok()?;
    CertInfo::from_der(certs.first()?).ok()
}

/// Read a PEM certificate chain and private key: the server configuration,
/// and what the end-entity certificate says (names, expiry).
pub fn load_files(files: &TlsFiles) -> Result<(Arc<ServerConfig>, CertInfo), TlsError> {
    let read = |path: &Path, what: &str| {
        crate::config::small_file::read(path, crate::config::small_file::PEM_MAX)
            .map_err(|e| fail(format!("cannot read {what} {}: {e}", path.display())))
    };
    let certs = pem::certificates(&read(&files.cert, "certificate")?)
        .map_err(|e| fail(format!("invalid certificate PEM in {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(fail(format!("no certificate found in {}", files.cert.display())));
    }
    let info = CertInfo::from_der(&certs[0]).map_err(|e| fail(format!("{}: {e}", files.cert.display())))?;
    let key = pem::private_key(&read(&files.key, "private key")?)
        .map_err(|e| fail(format!("no usable private key in {}: {e}", files.key.display())))?;
    // A key of a kind or size ring does not sign with is named as such, not
    // as a key that does not fit its certificate.
    let signing = provider().key_provider.load_private_key(key.clone_key()).map_err(|e| {
        fail(format!(
            "the private key in {} cannot be used: {e} (keys that work: RSA of 2048 to 8192 bits, ECDSA P-256 or \
             P-384, Ed25519)",
            files.key.display()
        ))
    })?;
    let builder = || {
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| fail(format!("TLS versions: {e}")))
    };
    // Which later certificate the key fits, if the first is not its own: a
    // chain written in the wrong order (intermediates first).
    let fits_later = |certs: &[CertificateDer<'static>]| {
        (1..certs.len()).find(|&i| {
            CertifiedKey::new(vec![certs[i].clone()], signing.clone())
                .keys_match()
                .is_ok()
        })
    };
    let all = certs.clone();
    let n = all.len();
    let mut cfg = builder()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match fits_later(&all) {
            Some(i) => fail(format!(
                "the key {} fits certificate {} of the {n} in {}, not the first: the server's own certificate must \
             come first, then the intermediates (the chain is written in the wrong order?)",
                files.key.display(),
                i + 1,
                files.cert.display()
            )),
            None => fail(format!(
                "certificate {} and key {} do not fit: {e}",
                files.cert.display(),
                files.key.display()
            )),
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), info))
}

/// When the certificate's `names` (or ACME's domains) do not cover the host
/// of `server.public_url`, the URL providers call back: every provider
/// reaching it fails the handshake (many hang up without an alert, so no
/// refusal is even counted; TLS review, stop 79). A wildcard covers one
/// label.
pub fn public_url_uncovered(public_url: Option<&str>, names: &[String]) -> Option<String> {
    let url: http::Uri = public_url?.parse().ok()?;
    if url.scheme_str() != Some("https") {
        return None;
    }
    let host = url
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let covers = |name: &String| {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => name == host,
        }
    };
    if names.is_empty() || names.iter().any(covers) {
        return None;
    }
    Some(format!(
        "server.public_url's host {host} is not among the certificate's names ({}): providers calling back there \
         fail the handshake",
        CertInfo::names_shown(names)
    ))
}

/// What is wrong with certificate files that still load, naming the file:
/// a server certificate without the intermediate(s) after it (see
/// [`cert::lacks_chain`]), a CA's certificate served as the server's
/// ([`cert::is_ca`]), a private key every user of the host can read. None
/// for files that cannot be read (loading them says why).
pub fn file_warnings(files: &TlsFiles) -> Vec<String> {
    let mut out = Vec::new();
    let read = crate::config::small_file::read(&files.cert, crate::config::small_file::PEM_MAX);
    let certs = read
        .ok()
        .and_then(|pem| pem::certificates(&pem).ok())
        .unwrap_or_default();
    if cert::lacks_chain(&certs) {
        out.push(format!(
            "certificate {} holds no chain: only the server's own certificate, issued by a CA, with no \
             intermediate certificate after it (a file cut short, or cert.pem where fullchain.pem was meant?); \
             clients that do not already have the intermediate will fail the handshake",
            files.cert.display()
        ));
    }
    if certs.first().is_some_and(|c| cert::is_ca(c)) {
        out.push(format!(
            "certificate {} is a CA's certificate (basicConstraints CA:TRUE, as `openssl req -x509` makes by \
             default), not a server's: rustls and other webpki clients (`hookrelay forward`, many subscribers' and \
             providers' libraries) refuse it even when given it as their CA (CaUsedAsEndEntity); make it with \
             `-addext basicConstraints=critical,CA:FALSE`, or sign a server certificate with that CA",
            files.cert.display()
        ));
    }
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(&files.key).map_or(0, |m| m.permissions().mode() & 0o777);
    if key_mode & 0o004 != 0 {
        out.push(format!(
            "private key {} can be read by every user of this host (mode {key_mode:o}): `chmod 600` it (the \
             daemon's user must still read it), or give it as a systemd credential",
            files.key.display(),
        ));
    }
    out
}

/// Why the certificate read from `files` cannot be served at `now` (it
/// expired, or is not valid yet: every handshake would fail), if it cannot.
pub fn not_valid_at(files: &TlsFiles, cert: &CertInfo, now: std::time::SystemTime) -> Option<TlsError> {
    if now >= cert.not_after {
        Some(fail(format!(
            "certificate {} expired at {} (every handshake would fail)",
            files.cert.display(),
            rfc3339(cert.not_after)
        )))
    } else if now < cert.not_before {
        Some(fail(format!(
            "certificate {} is not valid before {} (every handshake would fail)",
            files.cert.display(),
            rfc3339(cert.not_before)
        )))
    } else {
        None
    }
}

/// A server configuration whose certificates come from `resolver` (it never
/// needs replacing: the resolver swaps what it serves), offering ALPN `h2`,
/// `http/1.1` and then `extra_alpn` (ACME: `acme-tls/1` for validations).
pub fn resolver_server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    extra_alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| fail(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.alpn_protocols.extend(extra_alpn.iter().map(|p| p.to_vec()));
    Ok(Arc::new(cfg))
}

/// The server configuration in use; SIGHUP replaces it, new connections take the new one.
#[derive(Clone)]
pub struct Reloadable {
    current: Arc<RwLock<Served>>,
}

struct Served {
    config: Arc<ServerConfig>,
    /// What the file certificate in `config` says (status, expiry metric);
    /// `None` when a resolver decides (ACME reports its own).
    certificate: Option<CertInfo>,
}

impl Reloadable {
    pub fn new(config: Arc<ServerConfig>, certificate: Option<CertInfo>) -> Self {
        Reloadable {
            current: Arc::new(RwLock::new(Served { config, certificate })),
        }
    }

    pub fn get(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).config.clone()
    }

    /// What the certificate being served says, when it came from files.
    pub fn certificate(&self) -> Option<CertInfo> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .certificate
            .clone()
    }

    pub fn set(&self, config: Arc<ServerConfig>, certificate: Option<CertInfo>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Served { config, certificate };
    }
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
