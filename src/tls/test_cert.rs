//! A self-signed certificate for one name, made for a unit test (the
//! integration tests have their own, `tests/common/certs.rs`).

/// A new key and a certificate for `name` signed with it.
pub(crate) fn self_signed(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert, key)
}
