//! The ACME listener configuration on a real listener (`server::serve`, real
//! sockets and TLS): validation handshakes get the challenge answer of the
//! order in progress and are closed without HTTP; ordinary clients get the
//! current certificate and are served. Also: the state directory's place and
//! a cached certificate served from the start. Orders against a real CA are
//! in `tests/acme*.rs` (pebble).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::server::{self, ConnLimit, ConnSettings, ListenerOptions, Settings};

const DOMAIN: &str = "hooks.example.test";

/// A self-signed certificate for DOMAIN as an ACME bundle (key, then chain).
fn bundle() -> (Vec<u8>, CertificateDer<'static>) {
    let (cert, key) = crate::tls::test_cert::self_signed(DOMAIN);
    let pem = format!("{}\n{}", key.serialize_pem(), cert.pem());
    (pem.into_bytes(), cert.der().clone())
}

fn settings() -> AcmeSettings {
    AcmeSettings {
        domains: vec![DOMAIN.into()],
        email: "ops@example.test".into(),
        // Never contacted: these tests do not run the renewal loop.
        directory: "https://127.0.0.1:9/dir".into(),
        ca_file: None,
    }
}

/// What an order in progress answers validation handshakes with.
#[derive(Debug)]
struct Answer(Arc<CertifiedKey>);

impl ResolvesServerCert for Answer {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn client(trust: &CertificateDer<'static>, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn connect(
    addr: std::net::SocketAddr,
    c: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    c.connect(ServerName::try_from(DOMAIN).unwrap(), tcp).await
}

/// Send a request on `tls`; everything the server sends back until it closes
/// (the read times out after 5 s: the listener's timeouts are 30 s).
async fn exchange(mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Result<Vec<u8>, &'static str> {
    // The server may already have closed: a failed write is fine, the read tells.
    let _ = tls
        .write_all(b"GET / HTTP/1.1\r\nhost: hooks.example.test\r\nconnection: close\r\n\r\n")
        .await;
    let mut got = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut got)).await {
        Err(_) => Err("the connection stayed open"),
        // Closed without close_notify (an error) or with it: closed either way.
        Ok(_) => Ok(got),
    }
}

#[tokio::test]
async fn validation_handshakes_get_the_challenge_and_are_closed_without_http() {
    crate::tls::install_provider();
    let state = tempfile::tempdir().unwrap();
    let acme = Acme::new(&settings(), state.path(), Options::default(), Counter::default()).unwrap();
    let (current_pem, current_der) = bundle();
    let (key, info) = crate::tls::parse_bundle(&current_pem).unwrap();
    acme.inner.install(key, info);
    let (challenge_pem, challenge_der) = bundle();
    let (challenge_key, _) = crate::tls::parse_bundle(&challenge_pem).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = ListenerOptions {
        tls: Some(crate::tls::Reloadable::new(acme.server_config().unwrap(), None)),
        settings: Settings::new(ConnSettings {
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            http2_max_streams: 8,
            grace: Duration::from_secs(1),
        }),
        connections: ConnLimit::new(16),
        handshake_failures: Default::default(),
    };
    let svc = |_req, _peer| async { http::Response::new(http_body_util::Full::new(Bytes::from_static(b"served"))) };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(server::serve(listener, opts, svc, stop_rx));
    let validator = client(&challenge_der, ACME_TLS_ALPN);
    let browser = client(&current_der, b"http/1.1");

    // No order in progress: a validation handshake gets no certificate at all.
    assert!(connect(addr, &validator).await.is_err());

    acme.inner.resolver.set_challenge(Some(Arc::new(Answer(challenge_key))));
    let tls = connect(addr, &validator).await.expect("validation handshake");
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(ACME_TLS_ALPN));
    assert_eq!(conn.peer_certificates().unwrap()[0], challenge_der);
    let got = exchange(tls).await.expect("closed after the validation handshake");
    assert!(
        got.is_empty(),
        "HTTP served on a validation connection: {:?}",
        String::from_utf8_lossy(&got)
    );

    // Meanwhile ordinary clients get the current certificate and HTTP.
    let tls = connect(addr, &browser)
        .await
        .expect("ordinary handshake during an order");
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], current_der);
    let got = String::from_utf8(exchange(tls).await.unwrap()).unwrap();
    assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("served"), "{got}");

    // The order is over: validation handshakes fail again.
    acme.inner.resolver.set_challenge(None);
    assert!(connect(addr, &validator).await.is_err());
    let _ = stop.send(true);
    server.await.unwrap();
}

#[test]
fn state_lives_beside_the_store() {
    assert_eq!(
        state_dir(Path::new("/var/lib/hookrelay/data")),
        Path::new("/var/lib/hookrelay/acme")
    );
    assert_eq!(state_dir(Path::new("data")), Path::new("acme"));
}

#[tokio::test]
async fn a_cached_certificate_is_served_from_the_start() {
    let state = tempfile::tempdir().unwrap();
    let s = settings();
    let (pem, der) = bundle();
    let dir = cache::StateDir::open(state.path()).unwrap();
    cache::StateDir::write(&dir.cert_file(&s.domains, &s.directory), &pem).unwrap();
    let acme = Acme::new(&s, state.path(), Options::default(), Counter::default()).unwrap();
    let st = acme.status();
    let info = st.certificate.clone().expect("the cached certificate");
    assert_eq!(info, CertInfo::from_der(&der).unwrap());
    assert_eq!(info.names, [DOMAIN]);
    assert_eq!(st.renew_at, Some(info.renew_at(1.0 / 3.0)));
    assert_eq!((st.failures, st.consecutive_failures), (0, 0));
    let json = st.to_json();
    assert_eq!(json["failures"], 0);
    assert!(json["last_error"].is_null() && json["next_attempt"].is_null(), "{json}");

    // Another directory (another CA or account), or another list of names
    // that overlaps it: served while one for the new settings is ordered at
    // once (review 35, finding 2). Names it does not cover: not served.
    let other = AcmeSettings {
        directory: "https://127.0.0.1:9/other".into(),
        ..s.clone()
    };
    let more = AcmeSettings {
        domains: vec!["more.hookrelay.test".into(), DOMAIN.to_uppercase()],
        ..s.clone()
    };
    for changed in [other, more] {
        let acme = Acme::new(&changed, state.path(), Options::default(), Counter::default()).unwrap();
        let st = acme.status();
        assert_eq!(st.certificate.as_ref(), Some(&info), "{:?}", changed.domains);
        assert!(st.renew_at.unwrap() <= crate::clock::time_of_day());
    }
    let elsewhere = AcmeSettings {
        domains: vec!["elsewhere.hookrelay.test".into()],
        ..s
    };
    let acme = Acme::new(&elsewhere, state.path(), Options::default(), Counter::default()).unwrap();
    assert!(acme.status().certificate.is_none());
}

#[test]
fn the_cache_file_name_ignores_the_order_and_case_of_the_domains() {
    let state = tempfile::tempdir().unwrap();
    let dir = cache::StateDir::open(state.path()).unwrap();
    let d = "https://ca.example/dir";
    assert_eq!(
        dir.cert_file(&["b.example".into(), "A.example".into()], d),
        dir.cert_file(&["a.example".into(), "b.example".into()], d)
    );
    assert_ne!(
        dir.cert_file(&["a.example".into()], d),
        dir.cert_file(&["a.example".into(), "b.example".into()], d)
    );
}
