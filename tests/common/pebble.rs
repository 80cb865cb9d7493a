//! A real ACME CA on loopback: Debian's `pebble` plus `pebble-challtestsrv`
//! as its DNS (every name resolves to 127.0.0.1, no AAAA), in a temp dir,
//! killed on drop. Pebble validates TLS-ALPN-01 on 127.0.0.1:`tls_port`, i.e.
//! on the relay's listener. Also: handshakes and requests by name (the ACME
//! domain), and a client that handshakes like the CA's validator. Clients that
//! trust pebble's root are `client::tls_client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookrelay::tls::CertInfo;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::certs::TestCert;
use super::client::tls_client;
use super::config::Acme;
use super::ports::free_port;

/// The ACME name the tests order; challtestsrv answers 127.0.0.1 for it.
pub const DOMAIN: &str = "hooks.hookrelay.test";

fn find(bin: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{bin}` not found on PATH: install pebble (apt-get install pebble)"))
}

async fn wait_listening(addr: SocketAddr, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        assert!(Instant::now() < deadline, "{what} not listening on {addr} after 20s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// The ACME directory URL (https).
    pub directory: String,
    /// Trust anchor for pebble's own HTTPS (a certificate generated here).
    pub ca_file: PathBuf,
    ca: CertificateDer<'static>,
    pub acme_addr: SocketAddr,
    mgmt_addr: SocketAddr,
    config: PathBuf,
    dns: SocketAddr,
    pebble: Option<Child>,
    challtestsrv: Child,
}

/// Renewal options for a test: renew when `renew_remaining` of a
/// certificate's validity is left, retry after 250 ms, at most every second.
pub fn fast_options(renew_remaining: f64) -> hookrelay::acme::Options {
    hookrelay::acme::Options {
        renew_remaining,
        retry_first: Duration::from_millis(250),
        retry_max: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(30),
    }
}

/// An HTTPS server on 127.0.0.1:`port` answering `hello`, with the
/// certificates `acme` gets (and the TLS-ALPN-01 answers the CA asks for);
/// send `true` to stop it.
pub async fn hello_server(
    acme: &hookrelay::acme::Acme,
    port: u16,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    use hookrelay::server::{ConnLimit, ConnSettings, ListenerOptions, Settings};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listener_opts = ListenerOptions {
        tls: Some(hookrelay::tls::Reloadable::new(acme.server_config().unwrap(), None)),
        settings: Settings::new(ConnSettings {
            read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            http2_max_streams: 8,
            grace: Duration::from_secs(1),
        }),
        connections: ConnLimit::new(16),
        handshake_failures: Default::default(),
    };
    let svc = |_req, _peer| async { http::Response::new(Full::new(Bytes::from_static(b"hello"))) };
    (
        stop_tx,
        tokio::spawn(hookrelay::server::serve(listener, listener_opts, svc, stop_rx)),
    )
}

impl Pebble {
    /// The `acme` settings of a relay asking this CA for [`DOMAIN`].
    pub fn settings(&self) -> hookrelay::config::AcmeSettings {
        hookrelay::config::AcmeSettings {
            domains: vec![DOMAIN.into()],
            email: "ops@hookrelay.test".into(),
            directory: self.directory.clone(),
            ca_file: Some(self.ca_file.clone()),
        }
    }

    /// Start the CA; it validates TLS-ALPN-01 on 127.0.0.1:`tls_port` and
    /// issues certificates valid for `validity` (pebble's default: 5 years).
    pub async fn start(tls_port: u16, validity: Option<Duration>) -> Pebble {
        let (pebble_bin, challtestsrv_bin) = (find("pebble"), find("pebble-challtestsrv"));
        let dir = tempfile::tempdir().unwrap();
        let https = TestCert::write(dir.path(), "pebble-https");
        let (ca_file, key, ca) = (https.cert, https.key, https.der);
        let acme_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mgmt_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut cfg = serde_json::json!({ "pebble": {
            "listenAddress": acme_addr.to_string(),
            "managementListenAddress": mgmt_addr.to_string(),
            "certificate": ca_file,
            "privateKey": key,
            "httpPort": 9,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(v) = validity {
            cfg["pebble"]["certificateValidityPeriod"] = v.as_secs().into();
        }
        let config = dir.path().join("pebble-config.json");
        std::fs::write(&config, cfg.to_string()).unwrap();
        let mut challtestsrv = Command::new(challtestsrv_bin)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args([
                "-dns01",
                &dns.to_string(),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pebble-challtestsrv");
        wait_listening(dns, "pebble-challtestsrv", &mut challtestsrv).await;
        let mut p = Pebble {
            directory: format!("https://{acme_addr}/dir"),
            dir,
            ca_file,
            ca,
            acme_addr,
            mgmt_addr,
            config,
            dns,
            pebble: None,
            challtestsrv,
        };
        p.pebble_bin_start(pebble_bin).await;
        p
    }

    async fn pebble_bin_start(&mut self, bin: PathBuf) {
        let log = std::fs::File::create(self.dir.path().join("pebble.log")).unwrap();
        let mut child = Command::new(bin)
            .arg("-config")
            .arg(&self.config)
            .arg("-dnsserver")
            .arg(self.dns.to_string())
            // No random validation sleeps, no injected badNonce errors, and every
            // order validated afresh (no authorization reuse).
            .envs([
                ("PEBBLE_VA_NOSLEEP", "1"),
                ("PEBBLE_WFE_NONCEREJECT", "0"),
                ("PEBBLE_AUTHZREUSE", "0"),
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn pebble");
        wait_listening(self.acme_addr, "pebble", &mut child).await;
        wait_listening(self.mgmt_addr, "pebble management", &mut child).await;
        self.pebble = Some(child);
    }

    /// The CA goes down (its DNS stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.pebble.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The CA comes back on the same addresses, with a new root.
    pub async fn restart(&mut self) {
        self.stop();
        self.pebble_bin_start(find("pebble")).await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// `[server] tls` for a relay ordering [`DOMAIN`] from this CA (its
    /// listener must be on the `tls_port` given to `start`).
    pub fn acme(&self) -> Acme {
        Acme::new([DOMAIN], "ops@hookrelay.test", &self.directory).ca_file(&self.ca_file)
    }

    /// The root that signs this run's certificates (management `/roots/0`).
    pub async fn root(&self) -> CertificateDer<'static> {
        let client = tls_client(&self.ca, &[b"http/1.1"]);
        let (status, body) = https(self.mgmt_addr, "localhost", &client, "GET", "/roots/0", Bytes::new())
            .await
            .expect("GET /roots/0 from pebble");
        assert_eq!(status, StatusCode::OK);
        CertificateDer::from_pem_slice(&body)
            .expect("pebble root PEM")
            .into_owned()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.challtestsrv.kill();
        let _ = self.challtestsrv.wait();
    }
}

async fn connect(
    addr: SocketAddr,
    name: &str,
    client: &tokio_rustls::TlsConnector,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| e.to_string())
}

/// Poll verified handshakes with [`DOMAIN`] until one presents a certificate
/// for which `pred` holds (or panic after `limit`).
pub async fn wait_cert(
    addr: SocketAddr,
    client: &tokio_rustls::TlsConnector,
    limit: Duration,
    what: &str,
    pred: impl Fn(&CertInfo) -> bool,
) -> (CertificateDer<'static>, CertInfo) {
    let deadline = Instant::now() + limit;
    loop {
        let last = match served_cert(addr, DOMAIN, client).await {
            Ok(der) => {
                let info = CertInfo::from_der(&der).unwrap();
                if pred(&info) {
                    return (der, info);
                }
                format!("serving serial {}", info.serial)
            }
            Err(e) => e,
        };
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The certificate a verified handshake with `name` at `addr` presents.
pub async fn served_cert(
    addr: SocketAddr,
    name: &str,
    client: &tokio_rustls::TlsConnector,
) -> Result<CertificateDer<'static>, String> {
    let tls = connect(addr, name, client).await?;
    let certs = tls.get_ref().1.peer_certificates().ok_or("no peer certificate")?;
    Ok(certs[0].clone().into_owned())
}

/// One HTTP/1.1 request over a verified TLS connection.
pub async fn https(
    addr: SocketAddr,
    name: &str,
    client: &tokio_rustls::TlsConnector,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let tls = connect(addr, name, client).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", name)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| "no answer in 10s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// A client that handshakes like a CA's TLS-ALPN-01 validator: ALPN
/// `acme-tls/1` only, any certificate accepted (the validator checks the
/// challenge extension, not the chain).
pub fn validator_like_client() -> tokio_rustls::TlsConnector {
    let provider = rustls::crypto::ring::default_provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider.clone()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    cfg.dangerous().set_certificate_verifier(Arc::new(AcceptAny(provider)));
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// Accepts any server certificate (signatures are still checked).
#[derive(Debug)]
struct AcceptAny(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
