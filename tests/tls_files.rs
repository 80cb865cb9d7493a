//! Certificate files caught in a bad state by a reload (README, systemd:
//! "Certificate files that cannot be read, whose key does not fit … refuse
//! the reload"): a renewal half-written when SIGHUP comes, or a key of
//! another certificate. The reload is refused, the certificate being served
//! stays (a real TLS handshake that trusts only it still succeeds) and the
//! error names the file and says what is wrong with it.

use crate::common;

use common::*;

/// A config serving `tls.crt` and `tls.key` in `dir`, its one subscriber down.
fn tls_config(dir: &std::path::Path) -> TestConfig {
    TestConfig::new(dir)
        .tls(&dir.join("tls.crt"), &dir.join("tls.key"))
        .subscriber(Subscriber::new("s", DOWN))
}

/// The served certificate is `cert`: a client trusting only it completes
/// a handshake and gets a callback answered.
async fn serves(addr: std::net::SocketAddr, cert: &TestCert) -> bool {
    tls_connect(addr, &cert.der, &[b"http/1.1"]).await.is_ok()
        && tls_callback(addr, &cert.der, false).await.1 == http::StatusCode::OK
}

/// A renewal caught half-written (the new certificate in place, its key
/// cut off mid-file): refused, and the error said only `missing section end
/// marker: [80, 82, 73, 86, 65, 84, 69, 32, 75, 69, 89]`, the bytes of
/// `PRIVATE KEY` as a list of numbers. It now says the file is cut short and
/// which line it lacks. Once the key is whole, the next reload applies.
#[tokio::test]
async fn a_half_written_key_refuses_the_reload_and_says_the_file_is_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::write(dir.path(), "tls");
    let h = start(&tls_config(dir.path())).await;
    let addr = h.ingest_addrs[0];
    assert!(serves(addr, &old).await);

    let new = TestCert::write(dir.path(), "tls");
    let key_path = dir.path().join("tls.key");
    let whole = std::fs::read(&key_path).unwrap();
    std::fs::write(&key_path, &whole[..whole.len() / 2]).unwrap();
    let why = h.reload().await.expect_err("a half-written key is refused").to_string();
    assert!(why.contains(&key_path.display().to_string()), "{why}");
    assert!(
        why.contains("cut short") && why.contains("-----END PRIVATE KEY-----"),
        "{why}"
    );
    assert!(!why.contains("[80, 82"), "{why}");
    assert!(serves(addr, &old).await, "the old certificate is no longer served");
    assert!(!serves(addr, &new).await);

    std::fs::write(&key_path, &whole).unwrap();
    h.reload().await.expect("the whole key is applied");
    assert!(serves(addr, &new).await, "the renewed certificate is not served");
    h.shutdown().await;
}

/// A chain cut off in its second certificate (the intermediate): refused,
/// naming the certificate file and the `CERTIFICATE` section cut short.
#[tokio::test]
async fn a_half_written_chain_refuses_the_reload_naming_the_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::write(dir.path(), "tls");
    let h = start(&tls_config(dir.path())).await;
    let addr = h.ingest_addrs[0];

    let new = TestCert::write(dir.path(), "tls");
    let other = TestCert::write(dir.path(), "other");
    let cert_path = dir.path().join("tls.crt");
    let mut chain = std::fs::read(&cert_path).unwrap();
    let intermediate = std::fs::read(&other.cert).unwrap();
    chain.extend_from_slice(&intermediate[..intermediate.len() / 2]);
    std::fs::write(&cert_path, chain).unwrap();
    let why = h
        .reload()
        .await
        .expect_err("a half-written chain is refused")
        .to_string();
    assert!(
        why.contains(&cert_path.display().to_string())
            && why.contains("cut short")
            && why.contains("-----END CERTIFICATE-----"),
        "{why}"
    );
    assert!(serves(addr, &old).await, "the old certificate is no longer served");
    assert!(!serves(addr, &new).await);
    h.shutdown().await;
}

/// The renewed certificate with the key of another one (a deploy hook that
/// copied the wrong key): refused, naming both files; the old one stays.
#[tokio::test]
async fn a_key_of_another_certificate_refuses_the_reload_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::write(dir.path(), "tls");
    let h = start(&tls_config(dir.path())).await;
    let addr = h.ingest_addrs[0];

    TestCert::write(dir.path(), "tls");
    let other = TestCert::write(dir.path(), "other");
    std::fs::copy(&other.key, dir.path().join("tls.key")).unwrap();
    let why = h
        .reload()
        .await
        .expect_err("a key that does not fit is refused")
        .to_string();
    for file in ["tls.crt", "tls.key"] {
        assert!(why.contains(&dir.path().join(file).display().to_string()), "{why}");
    }
    assert!(why.contains("do not fit"), "{why}");
    assert!(serves(addr, &old).await, "the old certificate is no longer served");
    h.shutdown().await;
}

/// A chain written in the wrong order (the intermediate first, the
/// server's own certificate after it): refused, saying so, not that the key
/// does not fit (an operator would check the key). TLS review, stop 53.
#[tokio::test]
async fn a_chain_in_the_wrong_order_is_refused_naming_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::write(dir.path(), "tls");
    let h = start(&tls_config(dir.path())).await;
    let addr = h.ingest_addrs[0];
    // A new certificate and key, with another certificate put before it.
    let new = TestCert::write(dir.path(), "tls");
    let first = TestCert::write(dir.path(), "first");
    let mut reversed = std::fs::read(&first.cert).unwrap();
    reversed.extend(std::fs::read(&new.cert).unwrap());
    std::fs::write(dir.path().join("tls.crt"), reversed).unwrap();
    let why = h
        .reload()
        .await
        .expect_err("a chain in the wrong order is refused")
        .to_string();
    assert!(
        why.contains("certificate 2 of") && why.contains("must come first") && !why.contains("do not fit"),
        "{why}"
    );
    assert!(serves(addr, &old).await, "the old certificate is no longer served");
    h.shutdown().await;
}

/// A certificate issued by `ca` (its key written beside it) as `dir/NAME.crt`
/// and `dir/NAME.key`; `with_chain` puts the CA certificate after it, as a
/// `fullchain.pem` does. Returns the certificate file.
fn write_issued(dir: &std::path::Path, name: &str, with_chain: bool) -> std::path::PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test Intermediate");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let mut pem = leaf.pem();
    if with_chain {
        pem.push_str(&ca.pem());
    }
    let cert = dir.join(format!("{name}.crt"));
    std::fs::write(&cert, pem).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    cert
}

/// The first `warning:` line of `check-config` on a config serving `tls.crt`.
fn check_config_chain_warning(dir: &std::path::Path) -> Option<String> {
    let path = tls_config(dir).write();
    let (ok, out, err) = cli(&["check-config", "-c", path.to_str().unwrap()]);
    assert!(ok && out.contains("OK"), "a warning is not an error: {out} {err}");
    err.lines()
        .find(|l| l.starts_with("warning:") && l.contains("no chain"))
        .map(String::from)
}

/// A CA-issued certificate file cut between its two PEM blocks (or
/// `cert.pem` given for `fullchain.pem`) loads as the leaf alone, and clients
/// without the intermediate fail. check-config, the start and a reload warn,
/// naming the file; a full chain or a self-signed certificate does not.
#[tokio::test]
async fn a_ca_issued_certificate_without_its_chain_is_warned_about_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_issued(dir.path(), "tls", false);
    let warning = check_config_chain_warning(dir.path()).expect("no warning for a leaf without its chain");
    assert!(warning.contains(&cert.display().to_string()), "{warning}");
    assert!(warning.contains("intermediate"), "{warning}");

    write_issued(dir.path(), "tls", true);
    assert_eq!(
        check_config_chain_warning(dir.path()),
        None,
        "a full chain is not warned about"
    );
    TestCert::write(dir.path(), "tls");
    assert_eq!(
        check_config_chain_warning(dir.path()),
        None,
        "a self-signed certificate is not warned about"
    );

    // The real binary: at start, and at each reload with such a file in place.
    write_issued(dir.path(), "tls", false);
    let bin = Bin::start(&tls_config(dir.path()).write(), &[]);
    let limit = std::time::Duration::from_secs(20);
    log_until(|| bin.log_text(), "holds no chain", limit).await;
    write_issued(dir.path(), "tls", true);
    bin.signal("HUP");
    log_until(|| bin.log_text(), "configuration reloaded", limit).await;
    write_issued(dir.path(), "tls", false);
    bin.signal("HUP");
    log_until(
        || bin.log_text().replacen("configuration reloaded", "", 1),
        "configuration reloaded",
        limit,
    )
    .await;
    let log = bin.log_text();
    assert_eq!(log.matches("holds no chain").count(), 2, "{log}");
    assert!(log.contains(&cert.display().to_string()), "{log}");
}

/// The `warning:` lines of `check-config` on a config serving `tls.crt`
/// that say `what`.
fn check_config_warnings(dir: &std::path::Path, what: &str) -> Vec<String> {
    let path = tls_config(dir).write();
    let (ok, out, err) = cli(&["check-config", "-c", path.to_str().unwrap()]);
    assert!(ok && out.contains("OK"), "a warning is not an error: {out} {err}");
    err.lines()
        .filter(|l| l.starts_with("warning:") && l.contains(what))
        .map(String::from)
        .collect()
}

/// The review of stop 59: a CA's certificate (`CA:TRUE`, what `openssl req
/// -x509` makes by default) served as the relay's own loads, and rustls
/// clients (`hookrelay forward` given it as its CA) then refuse it; a
/// private key every user can read was taken without a word. Both are
/// warned about, naming the file; a server certificate and a 0600 key are not.
#[tokio::test]
async fn a_ca_certificate_served_as_the_relays_or_a_world_readable_key_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_path = TestCert::write_as_ca(dir.path(), "tls").key;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ca = check_config_warnings(dir.path(), "CA:TRUE");
    assert!(
        ca.len() == 1 && ca[0].contains("tls.crt") && ca[0].contains("CaUsedAsEndEntity"),
        "{ca:?}"
    );
    let readable = check_config_warnings(dir.path(), "private key");
    assert!(
        readable.len() == 1 && readable[0].contains("tls.key") && readable[0].contains("644"),
        "{readable:?}"
    );
    // A server certificate, its key kept 0600.
    TestCert::write(dir.path(), "tls");
    assert_eq!(check_config_warnings(dir.path(), "CA:TRUE"), Vec::<String>::new());
    assert_eq!(check_config_warnings(dir.path(), "private key"), Vec::<String>::new());
}

/// A key ring cannot sign with (RSA of 1024 bits) is named as such, not as
/// one that does not fit its certificate (it does); the old one stays.
#[tokio::test]
async fn a_key_of_an_unusable_kind_is_named_so() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::write(dir.path(), "tls");
    let h = start(&tls_config(dir.path())).await;
    let addr = h.ingest_addrs[0];
    std::fs::write(dir.path().join("tls.crt"), RSA_1024_CERT).unwrap();
    std::fs::write(dir.path().join("tls.key"), RSA_1024_KEY).unwrap();
    let why = h.reload().await.expect_err("refused").to_string();
    assert!(why.contains(&dir.path().join("tls.key").display().to_string()), "{why}");
    assert!(
        why.contains("cannot be used") && why.contains("RSA of 2048 to 8192 bits"),
        "{why}"
    );
    assert!(!why.contains("do not fit"), "{why}");
    assert!(serves(addr, &old).await, "the old certificate is no longer served");
    h.shutdown().await;
}

/// A self-signed RSA-1024 certificate (valid until 2126) and its key
/// (openssl req -x509 -newkey rsa:1024 -days 36500), made for this test only.
const RSA_1024_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIICBjCCAW+gAwIBAgIULKHy3M+f4rCM1sfoPggqmIgbW/wwDQYJKoZIhvcNAQEL\nBQAwFDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMzE4MDA0NVoYDzIxMjYx\nMTA5MTgwMDQ1WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwgZ8wDQYJKoZIhvcNAQEB\nBQADgY0AMIGJAoGBALwd3LIclHDoCHvYnW+e8G91TqK1aVGjq+J/4czBqnARLrfy\nfIYq5OdwxxJdKXLV8iH/S41EqtmVlvXucw5rMojNthCp0hS8//zJWdSzN1yxcYXH\nRcS9P6eOP9CG7CWHVd5HoUB6R2W/3zJSUMNBkRtPbKUE+KOZPJM+WfcHPsB3AgMB\nAAGjUzBRMB0GA1UdDgQWBBR1p3Cd633iAPOybdMhdB8A1fLa+zAfBgNVHSMEGDAW\ngBR1p3Cd633iAPOybdMhdB8A1fLa+zAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3\nDQEBCwUAA4GBAACf7nH6gD5v7uGHXIyaXpBuOkQqV2HZD5zlzaRR4qKs2bZ0+PEF\nPlbi+ply8hh+2fV79YHOzFvOqBWrHox85TwFFKqqwnMTEtHtaGTdqTgGN8gQs471\ngoAk/FxW8l2rYB4QBUKJp6vGGrJxaU9ohmwk0iQ3ehKQ1L2HjH8Xqu5N\n-----END CERTIFICATE-----\n";
const RSA_1024_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBALwd3LIclHDoCHvY\nnW+e8G91TqK1aVGjq+J/4czBqnARLrfyfIYq5OdwxxJdKXLV8iH/S41EqtmVlvXu\ncw5rMojNthCp0hS8//zJWdSzN1yxcYXHRcS9P6eOP9CG7CWHVd5HoUB6R2W/3zJS\nUMNBkRtPbKUE+KOZPJM+WfcHPsB3AgMBAAECgYBbo9h9U/rkPcTUQCQB2lWalnTm\nQqW5xZfYUR/4lWeoDFbL+W68FW1JaeEwiv3EGYFJGor9mLP6JytRRwX5wjLtKBKo\nfT5l6nhdizkyyPd9s0i6pqrdy6+G42i7AjueDRbtedI+mcf9WnAQnT2KhLlr/XhL\nEHR2rWJI3PxkbFsIYQJBAOHwFb7boY3EdRoTI4ZH/bGI7rIOhYpt0Tw53qvzLsBn\nVVh6KYYQ8aQcC82mTF6oa34JNPxHL09RzXWowFMJJG8CQQDVJYIxAW0RQcjMbPTd\n4tMiTf5BGN5xPc9u2EzDCkggpsOwJS2IsgKcTeD8q46OEr8P4fdI5Lc6j9cgOocn\n7/h5AkBLnfzJKdzCA9Rla65iDModlwS8Vxvenq5+h6e8yOEGyA7KU+h91EHreO+C\nXnwE2j1Pq2kuXey5kVlAXcAwikjFAkASINyP2nUyUIwJhwLUlGQsuMF1O+4/Z2hr\nHw54UDmOPWDLbH4Q8EL0lFMcamL3hnSlnyxvELTc0DsVzKSOKwTRAkEA24K3Mbtt\n5Z9EEgz4KoNhPj39w4RLBnrICyyMyvFMesoiR2sZrDf5GC4sTl9nnFYQb5rtcgEz\nzvu+Oi8I6x2EPA==\n-----END PRIVATE KEY-----\n";

/// The review of stop 59: a client refusing the relay's certificate (a
/// provider without its CA, a chain lacking an intermediate) failed its
/// handshake at debug only, counted nowhere, while `tls_cert_valid` said 1.
/// It is a warning now (once a minute) and counted by reason; plain HTTP
/// on the TLS port (a scanner) is counted as `other`, at debug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refusing_the_certificate_is_counted_and_warned_about() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    // Another CA (its own name: rcgen gives every certificate the same one).
    let mut ca = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Another CA");
    let other = ca.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
    let bin = Bin::start(&tls_config(dir.path()).write(), &[]);
    // Trusting another CA: the client refuses the certificate (alert unknown_ca).
    for _ in 0..3 {
        assert!(tls_connect(bin.addr, other.der(), &[b"http/1.1"]).await.is_err());
    }
    let mut plain = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let _ = plain.read(&mut [0u8; 512]).await;
    let count = |reason: &str| format!("hookrelay_tls_handshake_failures_total{{reason=\"{reason}\"}}");
    let m = metrics_until(
        bin.admin,
        std::time::Duration::from_secs(10),
        "the failures counted",
        |m| {
            m.iter().any(|(k, v)| *k == count("certificate_refused") && *v == 3.0)
                && m.iter().any(|(k, v)| *k == count("other") && *v == 1.0)
        },
    )
    .await;
    assert!(!m.iter().any(|(k, _)| *k == count("timeout")), "{m:?}");
    log_until(
        || bin.log_text(),
        "a client refused the relay's TLS certificate",
        std::time::Duration::from_secs(10),
    )
    .await;
    let log = bin.log_text();
    assert_eq!(
        log.matches("a client refused the relay's TLS certificate").count(),
        1,
        "{log}"
    );
}

/// A certificate that does not cover `server.public_url`'s host (the URL
/// providers call back) is warned about by `check-config` and at the start;
/// it was taken without a word, and providers failed every handshake, many
/// without an alert (TLS review, stop 79). One that covers it, or a
/// wildcard over it, is not warned about.
#[tokio::test]
async fn a_certificate_not_covering_the_public_url_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    TestCert::write(dir.path(), "tls");
    let with_url = |url: &str| {
        let path = tls_config(dir.path()).public_url(url).write();
        let (ok, out, err) = cli(&["check-config", "-c", path.to_str().unwrap()]);
        assert!(ok && out.contains("OK"), "a warning is not an error: {out} {err}");
        err.lines()
            .filter(|l| l.starts_with("warning:") && l.contains("public_url's host"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let warned = with_url("https://hooks.example.com/base");
    assert!(
        warned.len() == 1 && warned[0].contains("hooks.example.com") && warned[0].contains("localhost"),
        "{warned:?}"
    );
    assert_eq!(with_url("https://localhost:8443"), Vec::<String>::new());
    TestCert::write_for(dir.path(), "tls", &["*.example.com"]);
    assert_eq!(with_url("https://hooks.example.com"), Vec::<String>::new());
    assert_eq!(
        with_url("https://a.hooks.example.com").len(),
        1,
        "a wildcard covers one label"
    );
    // The start says it too.
    let path = tls_config(dir.path()).public_url("https://other.example.net").write();
    let bin = Bin::start(&path, &[]);
    log_until(
        || bin.log_text(),
        "public_url's host other.example.net",
        std::time::Duration::from_secs(10),
    )
    .await;
}

/// Plain HTTP sent to the TLS listener (a provider given `http://`) is
/// answered `400` in plain HTTP saying to use https://; it got a TLS alert
/// before, which clients show as garbage (TLS review, stop 79). A TLS client
/// is served as before.
#[tokio::test]
async fn plain_http_to_the_tls_listener_is_answered_400_saying_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "tls");
    let h = start(&tls_config(dir.path())).await;
    let addr = h.ingest_addrs[0];
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"POST /hooks/runway HTTP/1.1\r\nhost: relay\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), plain.read_to_end(&mut got))
        .await
        .expect("answered and closed")
        .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 400 ") && got.contains("use https://"),
        "{got:?}"
    );
    assert!(serves(addr, &cert).await, "a TLS client after it");
    h.shutdown().await;
}
