//! Configuration: the only module that knows TOML.
//!
//! Parsing happens in two stages: [`raw`] serde structures take human-friendly
//! values ([`units`]: "64KiB", "15s", CIDRs; [`secret`]: secrets from files,
//! the environment or systemd credentials), then [`validate`] turns them into
//! the typed [`values`] and checks what serde cannot (duplicates, missing
//! files, values that cannot work). Every error names the file, the key path,
//! its line and column, and what is wrong.

pub mod blocked_reads;
mod error;
pub mod listen;
mod locate;
mod raw;
pub mod secret;
pub mod small_file;
pub mod units;
mod url_port;
mod validate;
pub mod values;

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

pub use error::ConfigError;
pub use secret::{decode_whsec, SecretSource};
pub use units::{Cidr, Dur, Rate, Size};
pub use url_port::unusable_port;
pub use validate::{valid_name, MAX_CONCURRENCY};
pub use values::*;

use crate::auth::Secret;

/// The config file's text ([`small_file`]: a regular file, at most 4 MiB).
fn read(path: &Path) -> Result<String, ConfigError> {
    small_file::read_text(path, small_file::CONFIG_MAX)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read file: {e}")))
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::checked(path, &read(path)?, None)
    }

    /// Parse and validate config text; `file` is used in messages and to resolve
    /// relative paths (TLS files, CA files, the store) against its directory.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::checked(file, text, None)
    }

    /// [`load`](Self::load) for a reload of a daemon whose listeners are
    /// bound at `bound` (a reload does not move them): what other hosts can
    /// reach is judged by those and the file's `listen` addresses together
    /// (a file moving the admin API to loopback does not let a reload drop
    /// its token while it still listens on a public address).
    pub fn load_bound(path: &Path, bound: &Bound) -> Result<Config, ConfigError> {
        Config::checked(path, &read(path)?, Some(bound))
    }

    fn checked(file: &Path, text: &str, bound: Option<&Bound>) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = deserialize(file, text)?;
        let validator = validate::Validator::new(file, text);
        match bound {
            Some(b) => validator.bound(b),
            None => validator,
        }
        .validate(raw)
    }
}

/// Where a running daemon's listeners are bound (its `server.listen` and
/// `admin.listen` as it started): see [`Config::load_bound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub server: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// Whether `server` serves TLS (a reload turns it neither on nor off).
    pub tls: bool,
}

/// What the admin CLI takes from a config file: `admin.listen` and
/// `admin.token`, each only when asked for. Nothing else is validated or
/// resolved, so the CLI works where the daemon's other secrets (systemd
/// credentials) are not readable.
pub fn admin_client(
    path: &Path,
    want_listen: bool,
    want_token: bool,
) -> Result<(Option<SocketAddr>, Option<Secret>), ConfigError> {
    #[derive(Deserialize)]
    struct AdminOnly {
        #[serde(default)]
        admin: raw::RawAdmin,
    }
    let text = read(path)?;
    let raw: AdminOnly = deserialize(path, &text)?;
    let v = validate::Validator::new(path, &text);
    let listen = if want_listen {
        Some(v.admin_listen(&raw.admin)?)
    } else {
        None
    };
    let token = match &raw.admin.token {
        Some(t) if want_token => Some(v.admin_token(t)?),
        _ => None,
    };
    Ok((listen, token))
}

fn deserialize<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        // Spanned<T> shows up in serde's path as a private field: hide it.
        let key = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        // serde places an element's error at its array: find the element.
        let position = key
            .ends_with(']')
            .then(|| locate::span_of(text, &key))
            .flatten()
            .or(inner.span())
            .map(|s| line_col(text, s.start));
        // A syntax error names no key: the one whose value is there.
        let key = match key.as_str() {
            "." => inner
                .span()
                .and_then(|s| locate::key_at(text, s.start))
                .unwrap_or_default(),
            _ => key,
        };
        ConfigError {
            file: file.to_path_buf(),
            key,
            position,
            message: tables_by_name(&without_values(inner.message().trim())),
        }
    })
}

/// serde names a table it expected by our type for it (`expected struct
/// RawTls`): say "a table" (the key names which).
fn tables_by_name(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("struct Raw") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "struct Raw".len()..];
        let end = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        out.push_str("a table");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// serde's message without the value it refused: `invalid type: string
/// "<value>", expected a sequence` becomes `invalid type: string, expected a
/// sequence`, and the same for `invalid value:`, a `character` and an
/// `unknown variant`. The value may be a secret written with the wrong type
/// (`tokens = "<token>"` where a list is expected), and the message is logged
/// (a refused reload) and printed (`check-config`); the key, line and column
/// already say where it is. Done for every key, so no secret is missed.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        // The earliest of the forms that quote a value.
        let next = ["string \"", "character `", "unknown variant `"]
            .into_iter()
            .filter_map(|open| rest.find(open).map(|at| (at, open)))
            .min_by_key(|&(at, _)| at);
        let Some((at, open)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        out.push_str(&open[..open.len() - 2]);
        rest = &rest[at + open.len()..];
        // A string is written escaped (`{:?}`): skip `\"` and `\\` in it. A
        // character is one, raw; a variant is raw and followed by the list of
        // expected ones (identifiers), so its end is the last `, expected`.
        let end = match open {
            "string \"" => {
                let mut escaped = false;
                rest.char_indices()
                    .find(|&(_, c)| {
                        let end = !escaped && c == '"';
                        escaped = !escaped && c == '\\';
                        end
                    })
                    .map(|(i, _)| i)
            }
            "character `" => rest.char_indices().nth(1).filter(|&(_, c)| c == '`').map(|(i, _)| i),
            _ => rest
                .rfind("`, expected")
                .or_else(|| rest.rfind("`, there are no variants")),
        };
        rest = match end {
            Some(i) => &rest[i + 1..],
            // Unterminated: drop the rest rather than show part of the value.
            None => "",
        };
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod acme_tests;
#[cfg(test)]
mod admin_tests;
#[cfg(test)]
mod dedupe_key_tests;
#[cfg(test)]
mod media_tests;
#[cfg(test)]
mod open_file_tests;
#[cfg(test)]
mod pull_tests;
#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod route_token_tests;
#[cfg(test)]
mod secret_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tasks_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wrong_type_tests;
