//! What a served certificate says about itself ([`CertInfo`]: names, validity,
//! serial, read from the end-entity certificate's DER), and the PEM bundle an
//! ACME order leaves (private key first, then the chain) turned into a rustls
//! `CertifiedKey`.
//!
//! Used for file certificates (expiry metric, status) and ACME certificates
//! (the same, plus the renewal time). Not here: when to renew (`crate::acme`),
//! building server configurations (the parent module).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use super::{fail, TlsError};

/// Names and validity of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names and IP addresses of the subjectAltName extension, in
    /// certificate order: what clients will accept it for.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    /// The expiry metric and the renewal time derive from it.
    pub not_after: SystemTime,
    /// Hex serial number: tells a renewed certificate from the one it replaces.
    pub serial: String,
}

/// What a certificate without subjectAltName names is shown as.
pub const NO_NAMES: &str = "no names (no subjectAltName: TLS clients will refuse it)";

fn unix(t: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0))
}

/// RFC 3339, seconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl CertInfo {
    /// Read an end-entity certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, TlsError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| fail(format!("invalid certificate: {e}")))?;
        let validity = cert.validity();
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => names.push((*n).to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            names.push(std::net::Ipv4Addr::from(a).to_string());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            names.push(std::net::Ipv6Addr::from(a).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(CertInfo {
            names,
            not_before: unix(validity.not_before.timestamp()),
            not_after: unix(validity.not_after.timestamp()),
            serial: hex::encode(cert.raw_serial()),
        })
    }

    /// The time at which less than `remaining` (a fraction of the whole
    /// validity, e.g. 1/3) is left: when to renew.
    pub fn renew_at(&self, remaining: f64) -> SystemTime {
        let lifetime = self.not_after.duration_since(self.not_before).unwrap_or_default();
        let keep = lifetime.mul_f64(remaining.clamp(0.0, 1.0));
        self.not_after.checked_sub(keep).unwrap_or(self.not_before)
    }

    /// Unix time of `not_after`: the value of `hookrelay_tls_cert_expiry_seconds`.
    pub fn expiry_unix(&self) -> i64 {
        self.not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// Its names for people: a certificate without any is named as the problem.
    pub fn names_shown(names: &[String]) -> String {
        if names.is_empty() {
            NO_NAMES.to_string()
        } else {
            names.join(", ")
        }
    }

    /// Whether TLS clients accept it at `t` (by its dates).
    pub fn valid_at(&self, t: SystemTime) -> bool {
        self.not_before <= t && t < self.not_after
    }

    /// For the admin API: names, validity (RFC 3339), seconds left (0 once
    /// expired), serial; once expired also `expired: true` and since when;
    /// before its validity begins `not_yet_valid: true` and in how long
    /// (it was shown as healthy while every handshake failed; TLS review,
    /// stop 66).
    pub fn to_json(&self) -> serde_json::Value {
        let now = crate::clock::time_of_day();
        let left = self.not_after.duration_since(now).map_or(0, |d| d.as_secs());
        let mut v = serde_json::json!({
            "names": self.names,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
            "expires_in_seconds": left,
            "expired": now >= self.not_after,
            "serial": self.serial,
        });
        if let Ok(ago) = now.duration_since(self.not_after) {
            v["expired_seconds_ago"] = ago.as_secs().into();
        }
        v["not_yet_valid"] = (now < self.not_before).into();
        if let Ok(until) = self.not_before.duration_since(now) {
            v["valid_in_seconds"] = until.as_secs().into();
        }
        v
    }
}

/// Whether a certificate file's chain (end-entity certificate first) is the
/// end-entity certificate alone although a CA issued it (its issuer is not
/// its subject): clients that do not already hold the intermediate cannot
/// build a path to their roots. A file cut between two PEM blocks (a copy or
/// a renewal caught half-way) reads this way, as does a `cert.pem` given
/// where `fullchain.pem` was meant.
pub fn lacks_chain(chain: &[rustls::pki_types::CertificateDer<'_>]) -> bool {
    let [leaf] = chain else { return false };
    match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => cert.issuer().as_raw() != cert.subject().as_raw(),
        Err(_) => false,
    }
}

/// Whether a certificate is a CA's (basicConstraints `CA:TRUE`, as
/// `openssl req -x509` makes by default): webpki clients (rustls, so
/// `hookrelay forward` and many subscribers' libraries) refuse it as a
/// server's certificate (`CaUsedAsEndEntity`), even when it is the CA given.
pub fn is_ca(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, c)| c.basic_constraints().ok().flatten().map(|b| b.value.ca))
        .unwrap_or(false)
}

/// A key and chain in one PEM text, as an ACME order leaves them (and as the
/// ACME state directory keeps them): the rustls key to serve, and what it says.
pub fn parse_bundle(pem: &[u8]) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let chain = super::pem::certificates(pem).map_err(|e| fail(format!("invalid certificate PEM: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| fail("no certificate in the bundle".into()))?;
    let info = CertInfo::from_der(leaf)?;
    let key = super::pem::private_key(pem).map_err(|e| fail(format!("no usable private key in the bundle: {e}")))?;
    let certified = CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| fail(format!("certificate and key do not fit: {e}")))?;
    Ok((Arc::new(certified), info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_certificate_not_valid_yet_says_so_and_when() {
        let now = crate::clock::time_of_day();
        let day = Duration::from_secs(86_400);
        let info = |not_before, not_after| CertInfo {
            names: vec!["a.example".into()],
            not_before,
            not_after,
            serial: "01".into(),
        };
        let v = info(now + 30 * day, now + 60 * day).to_json();
        assert_eq!(v["not_yet_valid"], true, "{v}");
        let until = v["valid_in_seconds"].as_u64().unwrap();
        assert!((30 * 86_400 - 5..=30 * 86_400).contains(&until), "{v}");
        let v = info(now - day, now + day).to_json();
        assert!(v["not_yet_valid"] == false && v["valid_in_seconds"].is_null(), "{v}");
    }
}
