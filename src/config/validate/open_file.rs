//! A config file other users of the machine can read (`0644`, as a file
//! made by an editor or copied from the repository is) that holds a secret
//! written inline (a token, a signing secret, a password, an API or S3
//! secret key, a subscriber header's value, a password in a subscriber
//! URL): any of them can read it, unless a directory on its way keeps them
//! out. A warning naming the file, its mode and one such key (never the
//! secret), suggesting `chmod 600` or a `{ file, env, credential }` source.
//! The shipped examples (route token `change-me`, the example signing
//! secret), known to everyone anyway, do not count, so the shipped config
//! as it is is not warned about.

use std::os::unix::fs::PermissionsExt;

use super::placeholder::{PLACEHOLDER_SIGNING_SECRET, PLACEHOLDER_TOKEN};
use super::Validator;

/// The keys whose string values are secrets written inline (any table:
/// routes, subscribers, pull, signature, provider, admin, NATS, S3; an S3
/// `access_key` names the key, its `secret_key` is the secret).
const SECRET_KEYS: [&str; 7] = [
    "tokens",
    "token",
    "secret",
    "password",
    "credentials",
    "api_key",
    "secret_key",
];

/// The examples the shipped config and the README write out.
const EXAMPLES: [&str; 2] = [PLACEHOLDER_TOKEN, PLACEHOLDER_SIGNING_SECRET];

impl Validator<'_> {
    pub(super) fn open_file_warning(&self) -> Option<String> {
        let meta = std::fs::metadata(self.file).ok()?;
        let mode = meta.permissions().mode();
        if !meta.is_file() || mode & 0o004 == 0 || !reachable_by_others(self.file) {
            return None;
        }
        let key = inline_secret(self.table()?, "")?;
        Some(format!(
            "{}: key `{key}`: a secret written inline (this one, perhaps others) in a file every user of this \
             machine can read (mode {:o}): `chmod 600` it (the daemon's user must still read it), or give the secret as {{ file = … }}, \
             {{ env = … }} or {{ credential = … }}",
            self.file.display(),
            mode & 0o777
        ))
    }
}

/// Whether every directory on the way to `file` lets other users through
/// (`o+x`): one that does not keeps them from it whatever its own mode.
fn reachable_by_others(file: &std::path::Path) -> bool {
    let Ok(real) = std::fs::canonicalize(file) else {
        return true;
    };
    real.ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).map_or(true, |m| m.permissions().mode() & 0o001 != 0))
}

/// The key path of a secret written inline under `table` (the first in
/// the TOML crate's order of keys).
fn inline_secret(table: &toml::Table, path: &str) -> Option<String> {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    let real = |v: &toml::Value| v.as_str().is_some_and(|s| !EXAMPLES.contains(&s));
    for (k, v) in table {
        let here = join(k);
        match (k.as_str(), v) {
            // What a subscriber's JSON filter compares: not secrets.
            ("filter", _) => {}
            // Every header value is given as a secret source.
            ("headers", toml::Value::Table(h)) => {
                if let Some((name, _)) = h.iter().find(|(_, v)| real(v)) {
                    return Some(format!("{here}.{name}"));
                }
            }
            ("url", toml::Value::String(u)) if has_password(u) => return Some(here),
            (k, toml::Value::String(_)) if SECRET_KEYS.contains(&k) && real(v) => return Some(here),
            (k, toml::Value::Array(a)) if SECRET_KEYS.contains(&k) => {
                if let Some(i) = a.iter().position(real) {
                    return Some(format!("{here}[{i}]"));
                }
            }
            (_, toml::Value::Table(t)) => {
                if let Some(found) = inline_secret(t, &here) {
                    return Some(found);
                }
            }
            (_, toml::Value::Array(a)) => {
                for (i, item) in a.iter().enumerate() {
                    if let Some(t) = item.as_table() {
                        if let Some(found) = inline_secret(t, &format!("{here}[{i}]")) {
                            return Some(found);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// A URL with a password in it (`https://user:password@host/`: sent as
/// Basic authentication).
fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}
