//! What `hookrelay init` prints after writing the files: how to run the daemon,
//! the callback URL for the provider (the one place a secret is printed: the
//! provider needs the route token), how the subscriber verifies signatures,
//! the CLI, and systemd. Only text; [`super::init`] writes the files.

use std::path::Path;

use super::init::{ADMIN_TOKEN, ROUTE_TOKEN, SUBSCRIBER_SECRET};

/// How a subscriber checks a delivery, for both layouts; `where_secret` says
/// where its secret is.
fn verify(subscriber_url: &str, where_secret: &str) -> String {
    // Credentials in the URL (userinfo, or a capability path) are the
    // subscriber's, not the provider's: not printed.
    let subscriber_url = crate::auth::shown_target(subscriber_url);
    format!(
        r#"  3. Your service at {subscriber_url} receives every callback, signed as
     Standard Webhooks do with the subscriber's secret ({where_secret}):
       webhook-signature: v1,BASE64(HMAC-SHA256(KEY, webhook-id "." webhook-timestamp "." BODY))
     KEY is the base64 after "whsec_", decoded; also refuse a webhook-timestamp more than
     a few minutes old. Any Standard Webhooks library does both.
"#
    )
}

/// `url` for the provider, `local` to try it from this host.
fn callback(url: &str, local: &str) -> String {
    format!(
        r#"  2. Give your provider this callback URL. It carries the route's token: treat it as
     a secret. Behind a TLS reverse proxy (or with server.tls), use your public https://
     origin with the same path and query.
       {url}
     Try it:
       curl -s -X POST '{local}' -H 'content-type: application/json' -d '{{"hello":"world"}}'
"#
    )
}

/// Next steps for a config with its secrets inline.
pub fn by_hand(config: &Path, url: &str, local: &str, subscriber_url: &str) -> String {
    let config = config.display();
    format!(
        r#"Wrote {config} (mode 0600: the secrets are in it).

Next steps:
  1. Start the daemon (check the file any time with `hookrelay check-config --config {config}`):
       hookrelay run --config {config}
{callback}{verify}  4. Watch it; the CLI reads admin.listen and admin.token from the file:
       hookrelay --config {config} events
       hookrelay --config {config} subscribers
  5. As a systemd service: install the .deb (its /etc/hookrelay/config.toml gets fresh secrets
     of its own, kept in /etc/hookrelay/secrets), or from source run
       sudo hookrelay init --systemd --dir /etc/hookrelay
     and follow systemd/README.md. The service runs as a dynamic user: it cannot read a
     0600 file with inline secrets, so under systemd they are credentials.
"#,
        callback = callback(url, local),
        verify = verify(subscriber_url, "routes.subscribers.secret in the file"),
    )
}

/// Next steps for the `--systemd` layout: the config in `dir`, the secrets in `dir/secrets`.
pub fn systemd(dir: &Path, url: &str, local: &str, subscriber_url: &str) -> String {
    let d = dir.display();
    let creds: String = [ROUTE_TOKEN, SUBSCRIBER_SECRET, ADMIN_TOKEN]
        .iter()
        .map(|n| format!("       LoadCredential={n}:{d}/secrets/{n}\n"))
        .collect();
    format!(
        r#"Wrote {d}/config.toml (mode 0644, no secrets in it) and one 0600 file per secret in
{d}/secrets/: {ROUTE_TOKEN}, {SUBSCRIBER_SECRET}, {ADMIN_TOKEN}.

Next steps:
  1. The unit hands the secrets to the daemon as credentials. The packaged unit has these
     lines; with systemd/hookrelay.service add them (sudo systemctl edit hookrelay):
       [Service]
{creds}     then start it (or restart it, if it runs already):
       sudo systemctl daemon-reload && sudo systemctl enable --now hookrelay
     Check the file as the unit sees it:
       sudo CREDENTIALS_DIRECTORY={d}/secrets hookrelay check-config --config {d}/config.toml
{callback}{verify}  4. Watch it; the CLI reads admin.listen and admin.token (a credential) from the file:
       sudo CREDENTIALS_DIRECTORY={d}/secrets hookrelay --config {d}/config.toml subscribers
       journalctl -u hookrelay -f
"#,
        callback = callback(url, local),
        verify = verify(subscriber_url, &format!("sudo cat {d}/secrets/{SUBSCRIBER_SECRET}")),
    )
}
