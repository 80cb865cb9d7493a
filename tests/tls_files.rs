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
