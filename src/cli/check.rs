//! `hookrelay check-config`: load and validate the file (errors name the
//! file, key and problem), print the warnings, what each route's preset set,
//! the media store, and where TLS certificates come from — no secret shown.

use std::process::ExitCode;

use super::Cli;
use crate::config::Config;

pub(super) fn check_config(cli: &Cli) -> ExitCode {
    match Config::load(&cli.config) {
        Ok(c) => {
            // What the start would refuse, said before it.
            if let Some(why) = crate::start_refusal::of(&c) {
                eprintln!("error: {}: {why}", cli.config.display());
                return ExitCode::from(2);
            }
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(w) = embedded_store_left(&c).or_else(|| crate::store::sled::floor_warning(&c)) {
                eprintln!("warning: {w}");
            }
            if let Some(w) = c
                .archives_media()
                .then(|| crate::media::settings::floor_warning(&c))
                .flatten()
            {
                eprintln!("warning: {w}");
            }
            for r in c.routes.iter().filter(|r| !r.preset_report.is_empty()) {
                println!("route {:?}:", r.name);
                for line in &r.preset_report {
                    println!("  {line}");
                }
            }
            if c.archives_media() {
                println!("media store: {}", describe_media_store(&c.media.store));
            }
            let n = |count: usize, one: &str| match count {
                1 => format!("1 {one}"),
                n => format!("{n} {one}s"),
            };
            println!(
                "{}: OK ({}, {})",
                cli.config.display(),
                n(c.routes.len(), "route"),
                n(c.subscribers().count(), "subscriber")
            );
            if let Some(tls) = tls_summary(&c) {
                println!("{tls}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// A cluster-mode relay whose `store.path` still holds an embedded store.
fn embedded_store_left(c: &Config) -> Option<String> {
    match c.store.backend {
        crate::config::StoreBackend::Nats(_) => crate::store::sled::left_behind_warning(&c.store.path),
        crate::config::StoreBackend::Sled => None,
    }
}

/// What `check-config` says about TLS: the certificate files and what they
/// hold, or where ACME certificates will come from and be kept.
fn tls_summary(c: &Config) -> Option<String> {
    Some(match c.server.tls.as_ref()? {
        crate::config::TlsSource::Files(f) => match crate::tls::load_files(f) {
            Ok((_, cert)) => {
                if let Some(e) = crate::tls::not_valid_at(f, &cert, std::time::SystemTime::now()) {
                    eprintln!("warning: {e}; a reload that would put it in place of another certificate is refused");
                }
                for w in crate::tls::file_warnings(f) {
                    eprintln!("warning: {w}");
                }
                if let Some(w) = crate::tls::public_url_uncovered(c.server.public_url.as_deref(), &cert.names) {
                    eprintln!("warning: {w}");
                }
                if cert.names.is_empty() {
                    eprintln!(
                        "warning: {}: the certificate names no host (no subjectAltName): TLS clients will refuse it",
                        f.cert.display()
                    );
                }
                format!(
                    "TLS: certificate {} for {} (expires {})",
                    f.cert.display(),
                    crate::tls::CertInfo::names_shown(&cert.names),
                    crate::tls::rfc3339(cert.not_after)
                )
            }
            // Validation loaded it a moment ago; say so rather than guess.
            Err(e) => format!("TLS: certificate {}: {e}", f.cert.display()),
        },
        crate::config::TlsSource::Acme(a) => {
            if let Some(w) = crate::tls::public_url_uncovered(c.server.public_url.as_deref(), &a.domains) {
                eprintln!("warning: {w}");
            }
            format!(
            "TLS: ACME certificate for {} from {} (TLS-ALPN-01 on the listener; account and certificate kept in {})",
            a.domains.join(", "),
            crate::auth::redact_url(&a.directory),
            crate::acme::state_dir(&c.store.path).display()
            )
        }
    })
}

/// The media store in one line (no secrets).
fn describe_media_store(s: &crate::config::MediaStoreConfig) -> String {
    match s {
        crate::config::MediaStoreConfig::Local(dir) => format!("directory {}", dir.display()),
        crate::config::MediaStoreConfig::S3(s3) => format!(
            "s3://{}/{} at {}",
            s3.bucket,
            s3.prefix,
            s3.endpoint.as_deref().unwrap_or("AWS")
        ),
    }
}
