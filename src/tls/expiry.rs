//! What the log says about the served certificate as time passes: a warning
//! once when its end is near (a sixth of its lifetime left, at most 14
//! days), an error once when it expires. Before, a certificate that expired
//! while the daemon ran was said only by `hookrelay_tls_cert_valid` and the
//! status API: an operator reading the journal saw nothing (TLS review,
//! stop 79). A certificate already expired when it is first looked at was
//! logged by the start or the reload that served it.

use std::time::{Duration, SystemTime};

use super::{rfc3339, CertInfo};

/// At most this long before its end a certificate is warned about.
const WARN_BEFORE: Duration = Duration::from_secs(14 * 24 * 3600);

/// The serials already warned about, and the one said expired.
#[derive(Default)]
pub struct ExpiryWatch {
    near: Option<String>,
    expired: Option<String>,
    /// The serial looked at last (a new one starts afresh).
    seen: Option<String>,
}

/// What to log about a certificate now.
#[derive(Debug, PartialEq, Eq)]
pub enum Said {
    Near(Duration),
    Expired,
}

impl ExpiryWatch {
    /// Look at the certificate served (`acme`: it comes from ACME) at `now`
    /// and log what is new.
    pub fn look(&mut self, cert: Option<&CertInfo>, acme: bool, now: SystemTime) {
        let Some(cert) = cert else { return };
        let names = CertInfo::names_shown(&cert.names);
        match self.said(cert, now) {
            Some(Said::Near(left)) => {
                let hint = if acme {
                    "its renewal has not succeeded yet (the ACME lines above say why)"
                } else {
                    "put a renewed one in its files and reload (SIGHUP)"
                };
                tracing::warn!(serial = %cert.serial,
                    "the TLS certificate for {names} expires at {}, in {}: {hint}",
                    rfc3339(cert.not_after), humantime::format_duration(left));
            }
            Some(Said::Expired) => tracing::error!(serial = %cert.serial,
                "the TLS certificate for {names} expired at {}: every handshake fails (hookrelay_tls_cert_valid is 0 \
                 until a valid one is served)", rfc3339(cert.not_after)),
            None => {}
        }
    }

    /// What is new to say about `cert` at `now`, remembered as said.
    fn said(&mut self, cert: &CertInfo, now: SystemTime) -> Option<Said> {
        let first = self.seen.as_ref() != Some(&cert.serial);
        self.seen = Some(cert.serial.clone());
        let left = cert.not_after.duration_since(now).unwrap_or_default();
        if left.is_zero() {
            // Expired: said once; one expired when first seen was said by
            // whatever served it.
            if self.expired.as_ref() == Some(&cert.serial) {
                return None;
            }
            self.expired = Some(cert.serial.clone());
            return (!first).then_some(Said::Expired);
        }
        let lifetime = cert.not_after.duration_since(cert.not_before).unwrap_or_default();
        if left >= (lifetime / 6).min(WARN_BEFORE) || self.near.as_ref() == Some(&cert.serial) {
            return None;
        }
        self.near = Some(cert.serial.clone());
        // Rounded to the second for the log.
        Some(Said::Near(Duration::from_secs(left.as_secs())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(serial: &str, from: u64, until: u64) -> CertInfo {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        CertInfo {
            names: vec!["hooks.example.com".into()],
            not_before: t(from),
            not_after: t(until),
            serial: serial.into(),
        }
    }

    #[test]
    fn a_certificate_is_warned_about_once_near_its_end_and_said_expired_once() {
        let day = 24 * 3600;
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut w = ExpiryWatch::default();
        let c = cert("01", 0, 90 * day);
        assert_eq!(w.said(&c, at(day)), None);
        assert_eq!(w.said(&c, at(76 * day)), None, "15 days left: not yet");
        assert_eq!(
            w.said(&c, at(77 * day)),
            Some(Said::Near(Duration::from_secs(13 * day)))
        );
        assert_eq!(w.said(&c, at(80 * day)), None, "once");
        assert_eq!(w.said(&c, at(90 * day)), Some(Said::Expired));
        assert_eq!(w.said(&c, at(91 * day)), None, "once");
        // A renewed one starts afresh; a short-lived one by its sixth.
        let short = cert("02", 90 * day, 90 * day + 600);
        assert_eq!(w.said(&short, at(90 * day + 400)), None);
        assert_eq!(
            w.said(&short, at(90 * day + 550)),
            Some(Said::Near(Duration::from_secs(50)))
        );
        // Expired when first seen: said by the start or reload that served it.
        let mut w = ExpiryWatch::default();
        assert_eq!(w.said(&c, at(95 * day)), None);
        assert_eq!(w.said(&c, at(96 * day)), None);
    }
}
