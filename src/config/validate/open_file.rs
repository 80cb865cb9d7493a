//! A config file other users of the machine can read (`0644`, as a file
//! made by an editor or copied from the repository is) that holds a secret
//! written inline: any of them can read it. A warning naming the file, its
//! mode and the first such key (never the secret), suggesting `chmod 600`
//! or a `{ file, env, credential }` source. The shipped examples (route
//! token `change-me`, the example signing secret), known to everyone
//! anyway, do not count, so the shipped config as it is is not warned about.

use std::os::unix::fs::PermissionsExt;

use super::placeholder::{PLACEHOLDER_SIGNING_SECRET, PLACEHOLDER_TOKEN};
use super::Validator;

/// The keys whose string values are secrets written inline (any table:
/// routes, subscribers, pull, signature, provider, admin, NATS, S3).
const SECRET_KEYS: [&str; 8] = [
    "tokens",
    "token",
    "secret",
    "password",
    "credentials",
    "api_key",
    "access_key",
    "secret_key",
];

/// The examples the shipped config and the README write out.
const EXAMPLES: [&str; 2] = [PLACEHOLDER_TOKEN, PLACEHOLDER_SIGNING_SECRET];

impl Validator<'_> {
    pub(super) fn open_file_warning(&self) -> Option<String> {
        let meta = std::fs::metadata(self.file).ok()?;
        let mode = meta.permissions().mode();
        if !meta.is_file() || mode & 0o004 == 0 {
            return None;
        }
        let doc = self.text.parse::<toml::Table>().ok()?;
        let key = inline_secret(&doc, "")?;
        Some(format!(
            "{}: key `{key}`: a secret written inline in a file every user of this machine can read (mode {:o}): \
             `chmod 600` it (the daemon's user must still read it), or give the secret as {{ file = … }}, \
             {{ env = … }} or {{ credential = … }}",
            self.file.display(),
            mode & 0o777
        ))
    }
}

/// The key path of the first secret written inline under `table`.
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
        match v {
            toml::Value::String(_) if SECRET_KEYS.contains(&k.as_str()) && real(v) => return Some(here),
            toml::Value::Array(a) if SECRET_KEYS.contains(&k.as_str()) => {
                if let Some(i) = a.iter().position(real) {
                    return Some(format!("{here}[{i}]"));
                }
            }
            toml::Value::Table(t) => {
                if let Some(found) = inline_secret(t, &here) {
                    return Some(found);
                }
            }
            toml::Value::Array(a) => {
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
