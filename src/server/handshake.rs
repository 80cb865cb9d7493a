//! Failed TLS handshakes on the public listeners, counted by reason in
//! `hookrelay_tls_handshake_failures_total`. Most are noise (scanners, a
//! client that went away, plain HTTP on the TLS port: debug only), but a
//! client that refuses the relay's certificate (an alert about it: an
//! unknown CA, a chain without its intermediate, expired, a signature that
//! does not verify, a host name it does not cover) may be a provider unable
//! to deliver any callback while `hookrelay_tls_cert_valid` stays 1: that
//! one is a warning, at most once a minute ([`OnceAMinute`]).

use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::AlertDescription as A;

use super::once_a_minute::OnceAMinute;
use crate::metrics::ReasonLabels;

/// Why a handshake failed, as the metric's label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The client sent an alert about the certificate.
    CertificateRefused,
    /// No protocol version, cipher suite or key exchange in common.
    Incompatible,
    /// Not done within `server.read_timeout`.
    Timeout,
    Other,
}

impl Failure {
    pub fn of(e: &std::io::Error) -> Failure {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return Failure::Other;
        };
        match tls {
            rustls::Error::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                // Its signature did not verify against what the client trusts.
                | A::DecryptError,
            ) => Failure::CertificateRefused,
            rustls::Error::AlertReceived(A::ProtocolVersion | A::HandshakeFailure | A::InsufficientSecurity)
            | rustls::Error::PeerIncompatible(_) => Failure::Incompatible,
            _ => Failure::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Failure::CertificateRefused => "certificate_refused",
            Failure::Incompatible => "incompatible",
            Failure::Timeout => "timeout",
            Failure::Other => "other",
        }
    }
}

static REFUSED: Mutex<OnceAMinute> = Mutex::new(OnceAMinute::new());

/// Count a failed handshake from `peer` (`error`: none for a timeout), and
/// log it.
pub fn failed(counter: &Family<ReasonLabels, Counter>, peer: std::net::SocketAddr, error: Option<&std::io::Error>) {
    let why = error.map_or(Failure::Timeout, Failure::of);
    counter.get_or_create(&ReasonLabels { reason: why.label() }).inc();
    let shown = error.map_or_else(|| "timed out".to_string(), |e| e.to_string());
    if why != Failure::CertificateRefused {
        tracing::debug!(peer = %peer, error = %shown, "TLS handshake failed");
        return;
    }
    match REFUSED.lock().unwrap_or_else(|p| p.into_inner()).note(Instant::now()) {
        Some(earlier) => tracing::warn!(
            peer = %peer.ip(), error = %shown, earlier_in_the_last_minute = earlier,
            "a client refused the relay's TLS certificate (it does not trust its CA, the chain lacks an \
             intermediate, it expired for that client, or the client asked for a host name it does not cover, as \
             a monitor or scanner reaching the address may): a provider that does so cannot deliver callbacks; \
             check the certificate's chain and names (this warning at most once a minute, each one at debug; \
             counted in hookrelay_tls_handshake_failures_total)"
        ),
        None => tracing::debug!(peer = %peer, error = %shown, "TLS handshake failed: certificate refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart_by_the_rustls_error() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(
            Failure::of(&io(rustls::Error::AlertReceived(A::UnknownCA))),
            Failure::CertificateRefused
        );
        assert_eq!(
            Failure::of(&io(rustls::Error::AlertReceived(A::ProtocolVersion))),
            Failure::Incompatible
        );
        assert_eq!(
            Failure::of(&io(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoCipherSuitesInCommon
            ))),
            Failure::Incompatible
        );
        assert_eq!(Failure::of(&std::io::Error::other("reset")), Failure::Other);
    }
}
