//! `server.tls.acme = { domains, email, directory, ca_file? }`: what can be
//! checked before any CA is asked. Names must be validatable by TLS-ALPN-01
//! (no wildcards, no IP addresses), the directory must be HTTPS, `ca_file`
//! must hold certificates. What to do with the settings is `crate::acme`'s
//! business; where its state lives (beside the store) is decided at start.

use std::net::IpAddr;

use http::Uri;
use toml::Spanned;

use super::Validator;
use crate::config::raw::RawAcme;
use crate::config::values::AcmeSettings;
use crate::config::ConfigError;

const KEY: &str = "server.tls.acme";

/// The most names one certificate may hold (Let's Encrypt's limit per order).
const MAX_DOMAINS: usize = 100;

impl Validator<'_> {
    pub(super) fn acme(&self, a: &Spanned<RawAcme>) -> Result<AcmeSettings, ConfigError> {
        let raw = a.get_ref();
        if raw.domains.is_empty() {
            return Err(self.err(
                format!("{KEY}.domains"),
                Some(a.span()),
                "at least one domain is required",
            ));
        }
        if raw.domains.len() > MAX_DOMAINS {
            return Err(self.err(
                format!("{KEY}.domains"),
                Some(a.span()),
                format!(
                    "{} domains: a certificate holds at most {MAX_DOMAINS} (Let's Encrypt refuses larger orders)",
                    raw.domains.len()
                ),
            ));
        }
        let mut domains: Vec<String> = Vec::new();
        for (i, d) in raw.domains.iter().enumerate() {
            let name = d.get_ref().trim().to_ascii_lowercase();
            let bad = |why: &str| {
                self.err(
                    format!("{KEY}.domains[{i}]"),
                    Some(d.span()),
                    format!("{:?}: {why}", d.get_ref()),
                )
            };
            if name.starts_with("*.") {
                return Err(bad("wildcard names cannot be validated by TLS-ALPN-01; list each name"));
            }
            if name.parse::<IpAddr>().is_ok() {
                return Err(bad("an IP address; ACME certificates here are for DNS names"));
            }
            if name.ends_with('.') {
                return Err(bad("write it without the trailing dot (\"hooks.example.com\")"));
            }
            if !name.is_ascii() {
                return Err(bad(
                    "an internationalized name: write it in its ASCII (punycode) form, xn--…",
                ));
            }
            if name.contains('_') {
                // A host name is letters, digits and hyphens: CAs refuse `_`
                // (Let's Encrypt: "Domain name contains an invalid character").
                return Err(bad("holds `_`, which a host name cannot: CAs refuse to certify it"));
            }
            let valid = rustls::pki_types::DnsName::try_from(name.as_str()).is_ok() && name.contains('.');
            if !valid {
                return Err(bad("not a fully qualified DNS name (e.g. \"hooks.example.com\")"));
            }
            if domains.contains(&name) {
                return Err(bad("listed twice"));
            }
            domains.push(name);
        }
        let email = raw.email.get_ref().trim();
        let email = email.strip_prefix("mailto:").unwrap_or(email).to_string();
        let shaped = matches!(email.split_once('@'),
            Some((user, host)) if !user.is_empty() && host.contains('.') && !host.contains('@'));
        if !shaped || email.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
            return Err(self.err(
                format!("{KEY}.email"),
                Some(raw.email.span()),
                format!(
                    "invalid email address {:?} (use e.g. \"ops@example.com\")",
                    raw.email.get_ref()
                ),
            ));
        }
        let directory = raw.directory.get_ref().trim().to_string();
        let https = directory
            .parse::<Uri>()
            .is_ok_and(|u| u.scheme_str() == Some("https") && u.host().is_some_and(|h| !h.is_empty()));
        if !https {
            return Err(self.err(
                format!("{KEY}.directory"),
                Some(raw.directory.span()),
                format!(
                    "invalid ACME directory URL {:?}: must be an https:// URL with a host \
                     (e.g. \"https://acme-v02.api.letsencrypt.org/directory\")",
                    crate::auth::redact_url(&directory)
                ),
            ));
        }
        let ca_file = match &raw.ca_file {
            Some(p) => {
                let key = format!("{KEY}.ca_file");
                let path = self.existing_file(&key, p)?;
                if let Err(e) = crate::tls::load_roots(Some(&path)) {
                    return Err(self.err(key, Some(p.span()), e.to_string()));
                }
                Some(path)
            }
            None => None,
        };
        Ok(AcmeSettings {
            domains,
            email,
            directory,
            ca_file,
        })
    }

    /// ACME certificates, but no public listener on port 443, where the CA
    /// validates (TLS-ALPN-01): every order fails unless a TCP port forward
    /// sends 443 here, which the config cannot tell.
    pub(super) fn acme_port_warning(&self, server: &crate::config::ServerConfig) -> Option<String> {
        let acme = matches!(server.tls, Some(crate::config::values::TlsSource::Acme(_)));
        (acme && !server.listen.iter().any(|a| a.port() == 443)).then(|| {
            format!(
                "{}: key `server.listen`: no listener on port 443, where the ACME CA validates (TLS-ALPN-01): \
                 every certificate order fails unless a TCP port forward sends port 443 to one of them",
                self.file.display()
            )
        })
    }
}
