//! `hookrelay init`: a first working config with fresh random secrets (from the
//! operating system's CSPRNG, [`super::gen_token`] / [`super::gen_secret`]) and
//! the next steps. Two layouts: the secrets inline in a `0600` file (running by
//! hand), or `--systemd`: a `0644` config that reads them as systemd credentials,
//! each in its own `0600` file under `DIR/secrets/` (the packaged
//! `/etc/hookrelay/config.toml` is this layout, written by [`super::assets`]).
//!
//! Secrets are printed only where the user must copy one into another system:
//! the callback URL for the provider carries the route token. The subscriber
//! secret and the admin token stay in their files. Validation is the config
//! module's: the text is parsed like `check-config` before anything is written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;

/// Credential (and file) names of the secrets under `--systemd`; the packaged
/// unit's `LoadCredential=` lines and postinst use the same names.
pub const ROUTE_TOKEN: &str = "route-token";
pub const SUBSCRIBER_SECRET: &str = "subscriber-secret";
pub const ADMIN_TOKEN: &str = "admin-token";

/// The route `init` writes; the callback URL is `http://LISTEN{ROUTE_PATH}?token=…`.
pub const ROUTE_PATH: &str = "/hooks/main";

#[derive(clap::Args)]
pub struct InitArgs {
    /// Directory to write config.toml into (created if missing).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Replace existing files instead of refusing.
    #[arg(long)]
    pub force: bool,
    /// Secrets as systemd credentials in DIR/secrets/ (one 0600 file each, for the
    /// unit's LoadCredential=), the store in /var/lib/hookrelay: e.g.
    /// `sudo hookrelay init --systemd --dir /etc/hookrelay`.
    #[arg(long)]
    pub systemd: bool,
    /// Address the daemon takes callbacks on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the admin API (health, metrics, CLI).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Where your service receives the deliveries.
    #[arg(long, default_value = "http://127.0.0.1:9000/callbacks")]
    pub subscriber_url: String,
}

/// What a fresh config looks like apart from its secrets.
pub struct Settings<'a> {
    /// Where callbacks arrive; also the origin of the printed callback URL.
    pub listen: SocketAddr,
    /// Where the admin API (and so the CLI) is.
    pub admin_listen: SocketAddr,
    /// The one subscriber: the user's service, which verifies the signatures.
    pub subscriber_url: &'a str,
    /// `"data"` next to the config, or the unit's StateDirectory.
    pub store_path: &'a str,
    /// Where the config and its `secrets/` live (named in the systemd
    /// layout's header: how to check the file as the unit sees it).
    pub dir: &'a str,
}

impl Settings<'_> {
    /// The packaged config: localhost listeners, the store in the unit's StateDirectory.
    pub fn packaged() -> Settings<'static> {
        Settings {
            listen: "127.0.0.1:8080".parse().expect("address"),
            admin_listen: "127.0.0.1:9090".parse().expect("address"),
            subscriber_url: "http://127.0.0.1:9000/callbacks",
            store_path: "/var/lib/hookrelay/data",
            dir: "/etc/hookrelay",
        }
    }
}

/// A fresh set of secrets (no `Debug`: nothing prints them by accident).
pub(super) struct Secrets {
    /// What the provider presents (`?token=` or a bearer token) to the route.
    route_token: String,
    /// What deliveries are signed with; the subscriber verifies with it.
    subscriber_secret: String,
    /// Keeps other local users off the admin API (event bodies, replays).
    admin_token: String,
}

impl Secrets {
    fn generate() -> Secrets {
        Secrets {
            route_token: super::gen_token(),
            subscriber_secret: super::gen_secret(),
            admin_token: super::gen_token(),
        }
    }

    /// (credential name, value), in the order they are written.
    fn named(&self) -> [(&'static str, &str); 3] {
        [
            (ROUTE_TOKEN, &self.route_token),
            (SUBSCRIBER_SECRET, &self.subscriber_secret),
            (ADMIN_TOKEN, &self.admin_token),
        ]
    }
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The config text: with the `secrets` inline, or (`None`) each one read from
/// the systemd credential of its name.
pub(super) fn render(s: &Settings<'_>, secrets: Option<&Secrets>) -> String {
    let secret = |name: &str| match secrets {
        Some(values) => quoted(values.named().iter().find(|(n, _)| *n == name).expect("known secret").1),
        None => format!("{{ credential = {} }}", quoted(name)),
    };
    let header = if secrets.is_none() {
        format!(
            "# hookrelay configuration (`hookrelay init --systemd` layout); no secret is in this file.\n\
             # The secrets are systemd credentials: {{ credential = \"NAME\" }} reads\n\
             # $CREDENTIALS_DIRECTORY/NAME, which the unit fills from the 0600 file secrets/NAME next\n\
             # to this file (LoadCredential=). A new secret: write its file, add a LoadCredential=\n\
             # line (systemctl edit hookrelay), restart. Check this file as the unit sees it:\n\
             #   sudo CREDENTIALS_DIRECTORY={dir}/secrets hookrelay check-config --config {dir}/config.toml",
            dir = s.dir
        )
    } else {
        "# hookrelay configuration, written by `hookrelay init` with fresh random secrets.\n\
         # The secrets are inline: keep this file private (mode 0600).\n\
         # Check it: hookrelay check-config --config FILE"
            .to_string()
    };
    // Under the unit (a dynamic user, which cannot read a root-only key) the
    // certificate and key are credentials too; systemd copies them when the
    // unit starts, so a renewed certificate needs a restart.
    let tls = if secrets.is_none() {
        format!(
            "# tls = {{ cert = \"/run/credentials/hookrelay.service/tls-cert\", key = \"/run/credentials/hookrelay.service/tls-key\" }}\n\
             #   with LoadCredential=tls-cert:/etc/letsencrypt/live/NAME/fullchain.pem and\n\
             #   LoadCredential=tls-key:/etc/letsencrypt/live/NAME/privkey.pem (systemctl edit hookrelay); the key\n\
             #   stays root-only. A renewed certificate needs `systemctl restart hookrelay` (a reload keeps the\n\
             #   credentials the unit started with): see systemd/README.md. Or let hookrelay renew: tls = {{ acme = ... }}\n\
             #   With CREDENTIALS_DIRECTORY set, as in the check above, a path under /run/credentials/UNIT/ is\n\
             #   read from that directory: to check before the restart, link the files there as the unit names\n\
             #   them (sudo ln -s /etc/letsencrypt/live/NAME/fullchain.pem {dir}/secrets/tls-cert, same for tls-key)",
            dir = s.dir
        )
    } else {
        "# tls = { cert = \"tls/cert.pem\", key = \"tls/key.pem\" }".to_string()
    };
    format!(
        r#"{header}
# Apply changes with SIGHUP (systemctl reload hookrelay). Every key is documented in the
# README and the annotated reference config.toml (from the .deb: both in /usr/share/doc/hookrelay/).
# Relative paths are relative to this file.

[server]
{listen_note}
listen = [{listen}]
{tls}
max_body = "1MiB"

[store]
path = {store}
retention = "14d"

[admin]
listen = {admin}
# Needed by the admin API and the CLI (which reads it from this file).
token = {admin_token}

[[routes]]
name = "main"
path = {path}
# The provider calls {raw_path}?token=… or sends Authorization: Bearer ….
tokens = [{route_token}]
# If your provider signs its callbacks, check the signature too, e.g.
{signature_example}

[[routes.subscribers]]
name = "app"
url = {url}
# Deliveries are signed with it (Standard Webhooks: webhook-id, webhook-timestamp,
# webhook-signature); your service verifies them with the same secret.
secret = {subscriber_secret}
"#,
        listen_note = if s.listen.ip().is_loopback() {
            "# Localhost: put a TLS reverse proxy in front, or listen publicly with server.tls."
        } else {
            "# Not loopback: plain HTTP, and the token is in the callback URL: set server.tls, or let\n\
             # only a TLS reverse proxy reach this address."
        },
        // Under the unit the provider's secret is a credential too: the
        // file is every local user's to read (packaging review, stop 62:
        // the example was inline, under a header saying no secret is here).
        signature_example = match secrets {
            Some(_) => "# signature = { scheme = \"standard-webhooks\", secret = \"whsec_…\" }".to_string(),
            None => format!(
                "# signature = {{ scheme = \"standard-webhooks\", secret = {{ credential = \"provider-secret\" }} }}\n\
                 #   with the provider's whsec_… in {dir}/secrets/provider-secret (mode 0600) and\n\
                 #   LoadCredential=provider-secret:{dir}/secrets/provider-secret (systemctl edit hookrelay)",
                dir = s.dir
            ),
        },
        listen = quoted(&s.listen.to_string()),
        store = quoted(s.store_path),
        admin = quoted(&s.admin_listen.to_string()),
        admin_token = secret(ADMIN_TOKEN),
        path = quoted(ROUTE_PATH),
        raw_path = ROUTE_PATH,
        route_token = secret(ROUTE_TOKEN),
        url = quoted(s.subscriber_url),
        subscriber_secret = secret(SUBSCRIBER_SECRET),
    )
}

/// `--systemd` writes a config every local user can read (the unit's
/// dynamic user reads it; the secrets are credentials): a subscriber URL
/// with `user:password@` in it, or a query parameter named like a
/// credential (`?key=`, `?token=`), would put a secret there, under a
/// header saying there is none.
fn refuse_credentials_in_url(url: &str) -> Result<(), String> {
    let Ok(u) = url::Url::parse(url) else {
        return Ok(()); // check-config's parse names what is wrong with it
    };
    let secret_query = u
        .query_pairs()
        .any(|(k, _)| crate::auth::looks_secret(&k.to_ascii_lowercase()));
    if u.username().is_empty() && u.password().is_none() && !secret_query {
        return Ok(());
    }
    Err(format!(
        "nothing written: --subscriber-url {} holds credentials (user:password@, or a query parameter such as \
         `key` or `token`), and --systemd writes \
         config.toml readable by every local user (the unit's dynamic user reads it; the secrets are \
         systemd credentials): give the URL without them, then (for a password) add to the subscriber \
         headers = {{ Authorization = {{ credential = \"subscriber-auth\" }} }}, write \
         \"Basic <base64 of user:password>\" to secrets/subscriber-auth (mode 0600) and a \
         LoadCredential=subscriber-auth:<dir>/secrets/subscriber-auth line to the unit",
        crate::auth::redact_url(url)
    ))
}

pub fn run(args: &InitArgs) -> ExitCode {
    match init(args) {
        Ok(steps) => {
            print!("{steps}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Write the files; the next steps to print.
fn init(args: &InitArgs) -> Result<String, String> {
    // The directory named, before any of what would be written under it.
    if let Ok(m) = std::fs::metadata(&args.dir) {
        if !m.is_dir() {
            return Err(format!(
                "nothing written: --dir {}: it is a file, not a directory",
                args.dir.display()
            ));
        }
    }
    let secrets = Secrets::generate();
    let shown_dir = std::path::absolute(&args.dir).unwrap_or_else(|_| args.dir.clone());
    let shown_dir = shown_dir.display().to_string();
    let settings = Settings {
        listen: args.listen,
        admin_listen: args.admin_listen,
        subscriber_url: &args.subscriber_url,
        store_path: if args.systemd {
            "/var/lib/hookrelay/data"
        } else {
            "data"
        },
        dir: &shown_dir,
    };
    if args.systemd {
        refuse_credentials_in_url(&args.subscriber_url)?;
    }
    let config_path = args.dir.join("config.toml");
    let inline = render(&settings, Some(&secrets));
    // The same text check-config would see (with the credentials resolved).
    Config::parse(&config_path, &inline).map_err(|e| format!("nothing written: {e}"))?;

    let secrets_dir = args.dir.join("secrets");
    let mut targets = vec![config_path.clone()];
    if args.systemd {
        targets.extend(secrets.named().iter().map(|(name, _)| secrets_dir.join(name)));
    }
    if !args.force {
        let existing: Vec<String> = targets
            .iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            let (verb, it) = if existing.len() == 1 {
                ("exists", "it")
            } else {
                ("exist", "them")
            };
            return Err(format!(
                "{} already {verb}: not overwriting {it} (use --force to replace {it})",
                existing.join(", ")
            ));
        }
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    if args.systemd {
        create_private_dir(&secrets_dir)?;
        for (name, value) in secrets.named() {
            write_file(&secrets_dir.join(name), &format!("{value}\n"), 0o600, args.force)?;
        }
        write_file(&config_path, &render(&settings, None), 0o644, args.force)?;
    } else {
        write_file(&config_path, &inline, 0o600, args.force)?;
    }
    let dir = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());
    // A provider cannot call 0.0.0.0 or [::]: the host is the operator's to
    // fill in; this host tries it on loopback.
    let port = args.listen.port();
    let (host, local) = match args.listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => (format!("YOUR-HOST:{port}"), format!("127.0.0.1:{port}")),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => (format!("YOUR-HOST:{port}"), format!("[::1]:{port}")),
        _ => (args.listen.to_string(), args.listen.to_string()),
    };
    let url = |host: &str| format!("http://{host}{ROUTE_PATH}?token={}", secrets.route_token);
    Ok(if args.systemd {
        super::init_steps::systemd(&dir, &url(&host), &url(&local), &args.subscriber_url)
    } else {
        super::init_steps::by_hand(
            &dir.join("config.toml"),
            &url(&host),
            &url(&local),
            &args.subscriber_url,
        )
    })
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make {} private: {e}", dir.display()))
}

/// Write `text` to a new file created with `mode` (never readable by others,
/// not even for a moment); `--force` removed what was there (a symlink is
/// replaced, not followed).
fn write_file(path: &Path, text: &str, mode: u32, replace: bool) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if replace {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
    }
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    // The umask may have taken bits away from a 0644 file: say exactly what it is.
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}
