//! `[server]`: listen addresses, TLS (files here, the ACME block in
//! `acme.rs`), limits and timeouts.

use std::net::SocketAddr;

use toml::Spanned;

use super::Validator;
use crate::config::raw::{RawServer, RawTls};
use crate::config::values::{ServerConfig, TlsSource};
use crate::config::ConfigError;
use crate::tls::TlsFiles;

/// What `server.max_body_memory` holds besides one body of `max_body`: its
/// headers (the budget's share for one request allows as much).
const HEADER_ROOM: u64 = 64 << 10;

/// The longest `server.shutdown_grace`: a stop waits this long for requests
/// in flight; more would only keep a stop from ending.
/// Each connection is an open file; Linux's default cap on a process's
/// open files (`fs.nr_open`) is this.
const MAX_CONNECTIONS: usize = 1 << 20;
const MAX_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

impl Validator<'_> {
    /// `server.max_body_memory` that holds a body of `max_body` but not its
    /// headers too: a body of the largest size could never be received. It
    /// ran before (only the body was counted then): raised to `max_body`
    /// and 64 KiB, and said.
    pub(super) fn body_memory_warning(&self, s: &RawServer) -> Option<String> {
        let m = s.max_body_memory.as_ref()?.0;
        let floor = s.max_body.0.saturating_add(HEADER_ROOM);
        (m >= s.max_body.0 && m < floor).then(|| {
            format!(
                "{}: key `server.max_body_memory`: {m} bytes holds a body of server.max_body ({} bytes) but not its \
                 headers too, so a body of the largest size could never be received: using {floor} bytes \
                 (max_body and 64 KiB); set at least that",
                self.file.display(),
                s.max_body.0
            )
        })
    }

    pub(super) fn server(&self, s: RawServer) -> Result<ServerConfig, ConfigError> {
        if s.listen.is_empty() {
            return Err(self.err("server.listen", None, "at least one listen address is required"));
        }
        let mut listen = Vec::new();
        for (i, a) in s.listen.iter().enumerate() {
            let addr = a.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.err(
                    format!("server.listen[{i}]"),
                    Some(a.span()),
                    format!(
                        "invalid address {:?} (use e.g. \"127.0.0.1:8080\" or \"[::]:443\")",
                        a.get_ref()
                    ),
                )
            })?;
            listen.push(addr);
        }
        let tls = match &s.tls {
            Some(t) => Some(self.tls(t)?),
            None => None,
        };
        if s.max_body.0 == 0 {
            return Err(self.err("server.max_body", None, "must be greater than 0"));
        }
        if let Some(memory) = physical_memory() {
            if s.max_body.0 > memory {
                return Err(self.err(
                    "server.max_body",
                    None,
                    format!(
                        "{} bytes is more than this machine's memory ({memory} bytes): a body is held in memory while it is checked",
                        s.max_body.0
                    ),
                ));
            }
        }
        let max_body_memory = match s.max_body_memory {
            None => (128 << 20).max(s.max_body.0.saturating_mul(4)),
            Some(m) if m.0 < s.max_body.0 => {
                return Err(self.err(
                    "server.max_body_memory",
                    None,
                    format!(
                        "{} bytes is less than server.max_body ({} bytes): a body of the largest size could never be received",
                        m.0, s.max_body.0
                    ),
                ))
            }
            // Room for one body of max_body and its headers (warned about:
            // `body_memory_warning`).
            Some(m) => m.0.max(s.max_body.0.saturating_add(HEADER_ROOM)),
        };
        for (key, d) in [
            ("server.read_timeout", s.read_timeout.0),
            ("server.idle_timeout", s.idle_timeout.0),
        ] {
            if d.is_zero() {
                return Err(self.err(key, None, "must be greater than 0"));
            }
        }
        if s.shutdown_grace.0 > MAX_SHUTDOWN_GRACE {
            return Err(self.err(
                "server.shutdown_grace",
                None,
                "must be at most 1h (a stop waits this long for requests in flight)",
            ));
        }
        if s.max_connections == 0 {
            return Err(self.err("server.max_connections", None, "must be at least 1"));
        }
        if s.max_connections > MAX_CONNECTIONS {
            return Err(self.err(
                "server.max_connections",
                None,
                format!(
                    "{} is more than {MAX_CONNECTIONS} (each connection is an open file, and that is the most Linux gives a process by default)",
                    s.max_connections
                ),
            ));
        }
        if s.http2_max_streams == 0 {
            return Err(self.err("server.http2_max_streams", None, "must be at least 1"));
        }
        let public_url = s.public_url.as_ref().map(|u| self.public_url(u)).transpose()?;
        Ok(ServerConfig {
            public_url,
            listen,
            tls,
            max_body: usize::try_from(s.max_body.0).unwrap_or(usize::MAX),
            max_body_memory: usize::try_from(max_body_memory).unwrap_or(usize::MAX),
            read_timeout: s.read_timeout.0,
            idle_timeout: s.idle_timeout.0,
            trusted_proxies: s.trusted_proxies.into_iter().map(|c| c.0).collect(),
            max_connections: s.max_connections,
            http2_max_streams: s.http2_max_streams,
            shutdown_grace: s.shutdown_grace.0,
        })
    }
}

impl Validator<'_> {
    /// `server.tls`: certificate files, or an ACME block (`validate/acme.rs`), never both.
    fn tls(&self, t: &RawTls) -> Result<TlsSource, ConfigError> {
        match (&t.cert, &t.key, &t.acme) {
            (Some(cert), Some(key), None) => {
                let files = TlsFiles {
                    cert: self.existing_file("server.tls.cert", cert)?,
                    key: self.existing_file("server.tls.key", key)?,
                };
                if let Err(e) = crate::tls::load_server_config(&files) {
                    return Err(self.err("server.tls", Some(cert.span()), e.to_string()));
                }
                Ok(TlsSource::Files(files))
            }
            (None, None, Some(acme)) => Ok(TlsSource::Acme(self.acme(acme)?)),
            (_, _, Some(acme)) => Err(self.err(
                "server.tls",
                Some(acme.span()),
                "set either `cert` and `key` (certificate files) or `acme`, not both",
            )),
            (cert, key, None) => {
                let missing = if cert.is_none() { "cert" } else { "key" };
                // The line of the half that is there; `tls = {}` has no position to give.
                let there = cert.as_ref().or(key.as_ref()).map(Spanned::span);
                Err(self.err(
                    format!("server.tls.{missing}"),
                    there,
                    format!(
                        "missing `{missing}`: set `cert` and `key` (PEM files), or \
                         `acme = {{ domains = [...], email = \"...\", directory = \"https://...\" }}`"
                    ),
                ))
            }
        }
    }
}

/// Total physical memory (sysinfo(2): also where `/proc/meminfo` is hidden,
/// as under the unit's `ProcSubset=pid`); None where unknown.
fn physical_memory() -> Option<u64> {
    let info = rustix::system::sysinfo();
    // `totalram` is a C unsigned long: u64 here, u32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let total = u64::try_from(info.totalram)
        .ok()?
        .checked_mul(u64::from(info.mem_unit))?;
    (total > 0).then_some(total)
}
