//! Certificates generated in the test (rcgen): a self-signed certificate for
//! localhost written as PEM files, and a rustls server config built from it
//! without hookrelay's code. Clients that trust it live in `client`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate for `localhost` and `127.0.0.1`.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// What a client trusts (the certificate is its own CA).
    pub der: CertificateDer<'static>,
    /// Kept to serve the certificate from a test server.
    key_der: Vec<u8>,
}

impl TestCert {
    /// A new key and certificate, written to `dir/NAME.crt` and `dir/NAME.key`
    /// (replacing what is there: a reload test swaps certificates this way).
    pub fn write(dir: &Path, name: &str) -> TestCert {
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        Self::write_params(dir, name, params)
    }

    /// As `write`, valid from 2024-01-01 until the start of `year`-`month`-01
    /// (00:00 UTC): for tests of what the daemon says about a certificate's dates.
    pub fn write_until(dir: &Path, name: &str, year: i32, month: u8) -> TestCert {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, month, 1);
        Self::write_params(dir, name, params)
    }

    /// As `write`, valid from a minute ago until `secs` from now.
    pub fn write_expiring_in(dir: &Path, name: &str, secs: u64) -> TestCert {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + (now - std::time::Duration::from_secs(60));
        params.not_after = epoch + (now + std::time::Duration::from_secs(secs));
        Self::write_params(dir, name, params)
    }

    /// As `write`, for these names instead of `localhost` and `127.0.0.1`.
    pub fn write_for(dir: &Path, name: &str, names: &[&str]) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        Self::write_params(dir, name, rcgen::CertificateParams::new(names).unwrap())
    }

    /// As `write`, with no subjectAltName at all (only a common name), which
    /// no TLS client accepts for any host.
    pub fn write_without_names(dir: &Path, name: &str) -> TestCert {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        Self::write_params(dir, name, params)
    }

    /// As `write`, but a CA's certificate (basicConstraints `CA:TRUE`, as
    /// `openssl req -x509` makes by default), which webpki clients refuse as
    /// a server's even when given it as their CA.
    pub fn write_as_ca(dir: &Path, name: &str) -> TestCert {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Self::write_params(dir, name, params)
    }

    fn write_params(dir: &Path, name: &str, params: rcgen::CertificateParams) -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        // As a real key is kept (a world-readable one is warned about).
        std::fs::set_permissions(&key_path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        TestCert {
            cert: cert_path,
            key: key_path,
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A server config presenting this certificate, offering h2 and http/1.1.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.der.clone()], key)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// As `server_config`, offering http/1.1 only: for test servers that
    /// speak HTTP/1.1 alone (the file server, the fake provider).
    pub fn http1_server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut cfg = (*self.server_config()).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}
