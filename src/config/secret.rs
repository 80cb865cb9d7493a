//! Where a secret comes from: inline, a file, an environment variable or a
//! systemd credential (`$CREDENTIALS_DIRECTORY/NAME`, i.e. `LoadCredential=`),
//! so secrets need not sit in the config file. Resolving one yields an
//! [`auth::Secret`](crate::auth::Secret).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer};

use crate::auth::Secret;

/// How a secret is given in the config file.
#[derive(Clone)]
pub enum SecretSource {
    Inline(String),
    File { file: PathBuf },
    Env { env: String },
    Credential { credential: String },
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretSource::File { file } => write!(f, "File({})", file.display()),
            SecretSource::Env { env } => write!(f, "Env({env})"),
            SecretSource::Credential { credential } => write!(f, "Credential({credential})"),
        }
    }
}

impl SecretSource {
    pub(super) fn from_value(v: toml::Value) -> Result<SecretSource, String> {
        const EXPECTED: &str =
            "expected a string, or one of { file = \"/path\" }, { env = \"VAR\" }, { credential = \"name\" }";
        match v {
            toml::Value::String(s) => Ok(SecretSource::Inline(s)),
            toml::Value::Table(t) if t.len() == 1 => {
                let (k, v) = t.into_iter().next().expect("one entry");
                let toml::Value::String(v) = v else {
                    return Err(EXPECTED.into());
                };
                match k.as_str() {
                    "file" => Ok(SecretSource::File { file: PathBuf::from(v) }),
                    "env" => Ok(SecretSource::Env { env: v }),
                    "credential" => Ok(SecretSource::Credential { credential: v }),
                    _ => Err(format!("unknown secret source `{k}`: {EXPECTED}")),
                }
            }
            _ => Err(EXPECTED.into()),
        }
    }

    /// The value as text (a trailing newline of a file is dropped); a
    /// relative file is read beside the config file, as every path in it.
    pub(super) fn resolve_text(&self, v: &super::validate::Validator<'_>) -> Result<String, String> {
        let trimmed = |s: String| s.trim_end_matches(['\n', '\r']).to_string();
        let value = match self {
            SecretSource::Inline(s) => s.clone(),
            SecretSource::File { file } => {
                let file = v.resolve_path(file);
                super::small_file::read_text(&file, super::small_file::SECRET_MAX)
                    .map(trimmed)
                    .map_err(|e| format!("cannot read secret file {}: {e}", file.display()))?
            }
            SecretSource::Env { env } => std::env::var(env).map(trimmed).map_err(|e| match e {
                std::env::VarError::NotPresent => format!(
                    "environment variable {env} is not set (a running hookrelay has the environment it was \
                     started with: one set since reaches it at a restart; a `{{ file = … }}` secret is read \
                     again at each reload)"
                ),
                std::env::VarError::NotUnicode(_) => {
                    format!("environment variable {env} is not valid UTF-8 text")
                }
            })?,
            SecretSource::Credential { credential } => {
                let dir = credentials_dir().ok_or_else(|| {
                    format!(
                        "credential {credential:?} requested but CREDENTIALS_DIRECTORY is not set \
                         (use LoadCredential= in the unit; from a shell, point it at the files the unit \
                         loads: CREDENTIALS_DIRECTORY=/etc/hookrelay/secrets for the .deb's layout, the secrets/ \
                         beside the config for `hookrelay init --systemd`'s; check-config and the admin \
                         subcommands read a secrets/ directory beside the config file without it)"
                    )
                })?;
                let path = Path::new(&dir).join(credential);
                super::small_file::read_text(&path, super::small_file::SECRET_MAX)
                    .map(trimmed)
                    .map_err(|e| format!("cannot read credential {}: {e}", path.display()))?
            }
        };
        if value.is_empty() {
            return Err("secret is empty".into());
        }
        Ok(value)
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SecretSource::from_value(toml::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One secret or a list of them (several during a rotation).
#[derive(Debug)]
pub(super) struct SecretList(pub Vec<SecretSource>);

impl<'de> Deserialize<'de> for SecretList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::Array(items) => items
                .into_iter()
                .map(SecretSource::from_value)
                .collect::<Result<Vec<_>, _>>()
                .map(SecretList)
                .map_err(serde::de::Error::custom),
            v => SecretSource::from_value(v)
                .map(|s| SecretList(vec![s]))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Decode a Standard Webhooks secret: base64 after an optional `whsec_`
/// prefix, its `=` padding optional (the official libraries add it).
pub fn decode_whsec(s: &str) -> Result<Secret, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let b64 = s.strip_prefix("whsec_").unwrap_or(s);
    let key = LENIENT.decode(b64).map_err(|_| {
        "invalid signing secret: expected \"whsec_\" followed by base64 (generate one with: hookrelay gen-secret)"
            .to_string()
    })?;
    if key.len() < 16 {
        return Err(format!(
            "signing secret too short: its base64 decodes to {} bytes, need at least 16 (24-64 recommended); \
             expected \"whsec_\" followed by base64 (generate one with: hookrelay gen-secret)",
            key.len()
        ));
    }
    Ok(Secret::new(key))
}

/// Where credentials are read from when `CREDENTIALS_DIRECTORY` is not set:
/// the `secrets/` beside the config file, set by a command run from a shell
/// (check-config, the admin subcommands; not `run`, whose credentials are
/// the unit's) when there is one ([`read_credentials_beside`]).
static CREDENTIALS_BESIDE: OnceLock<PathBuf> = OnceLock::new();

/// Read `{ credential = "NAME" }` (and paths under `/run/credentials/UNIT/`)
/// from `dir` while `CREDENTIALS_DIRECTORY` is not set: the files the unit's
/// `LoadCredential=` lines load (`/etc/hookrelay/secrets` for the .deb's
/// layout, `DIR/secrets` for `hookrelay init --systemd`'s).
pub fn read_credentials_beside(dir: PathBuf) {
    let _ = CREDENTIALS_BESIDE.set(dir);
}

/// `CREDENTIALS_DIRECTORY`, else the directory [`read_credentials_beside`] named.
fn credentials_dir() -> Option<PathBuf> {
    // Empty is unset (a script's unset variable): not the working directory.
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| CREDENTIALS_BESIDE.get().cloned())
}

/// A file path the config names under a unit's credentials directory
/// (`/run/credentials/UNIT/NAME`, as `hookrelay init --systemd` suggests for
/// the TLS files), read from `$CREDENTIALS_DIRECTORY/NAME` when that is set.
/// Under the unit that is the same file (systemd sets it to that directory);
/// for `CREDENTIALS_DIRECTORY=/etc/hookrelay/secrets hookrelay check-config`
/// it is the file of that name there, as for `{ credential = "NAME" }`.
pub fn in_credentials_directory(path: &Path) -> std::path::PathBuf {
    in_credentials_dir(path, credentials_dir().as_deref())
}

fn in_credentials_dir(path: &Path, dir: Option<&Path>) -> std::path::PathBuf {
    let rest = path.strip_prefix("/run/credentials").ok().and_then(|unit| {
        let mut parts = unit.components();
        let unit = parts.next()?;
        let rest = parts.as_path();
        (matches!(unit, std::path::Component::Normal(_)) && !rest.as_os_str().is_empty()).then_some(rest)
    });
    match (dir, rest) {
        (Some(dir), Some(rest)) if !dir.as_os_str().is_empty() => dir.join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod credential_path_tests {
    use std::path::Path;

    #[test]
    fn a_path_under_the_units_credentials_is_read_from_the_credentials_directory() {
        let dir = Some(Path::new("/etc/hookrelay/secrets"));
        let at = |p: &str, d| super::in_credentials_dir(Path::new(p), d);
        assert_eq!(
            at("/run/credentials/hookrelay.service/tls-cert", dir),
            Path::new("/etc/hookrelay/secrets/tls-cert")
        );
        // Unset: as written. Other paths, or the directory itself: as written.
        assert_eq!(
            at("/run/credentials/hookrelay.service/tls-cert", None),
            Path::new("/run/credentials/hookrelay.service/tls-cert")
        );
        assert_eq!(at("/etc/ssl/tls.crt", dir), Path::new("/etc/ssl/tls.crt"));
        assert_eq!(
            at("/run/credentials/hookrelay.service", dir),
            Path::new("/run/credentials/hookrelay.service")
        );
        assert_eq!(at("/run/credentialsx/u/tls", dir), Path::new("/run/credentialsx/u/tls"));
    }
}
