//! Connecting to the cluster: every server listed, one way to authenticate,
//! TLS with a private CA (ring), short timeouts so a dead node is noticed in
//! seconds, and a check that the servers can do what hookrelay needs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;

use crate::config::{NatsAuth, NatsConfig};
use crate::store::StoreError;

/// Why the servers last refused this relay's connection (wrong or missing
/// credentials), cleared once it connects: so hookrelay's own messages can
/// say "refused" where they would say "not reachable".
#[derive(Clone, Default)]
pub(super) struct Refused(Arc<Mutex<Option<String>>>);

impl Refused {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, why: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// Note what a client event says about the credentials.
    fn note(&self, event: &async_nats::Event) {
        use async_nats::{ClientError, Event, ServerError};
        match event {
            Event::Connected => self.set(None),
            Event::ServerError(ServerError::AuthorizationViolation) => self.set(Some("authorization violation".into())),
            // A failed connection attempt: its kind, e.g. "authorization violation".
            Event::ClientError(ClientError::Other(kind)) if is_refusal(kind) => self.set(Some(kind.clone())),
            _ => {}
        }
    }
}

/// An async-nats connection error kind that means the credentials were refused.
fn is_refusal(kind: &str) -> bool {
    let kind = kind.to_ascii_lowercase();
    kind.contains("authorization") || kind.contains("authentication")
}

/// Connect; when no server answers yet, the client keeps trying in the background.
pub(super) async fn connect(
    cfg: &NatsConfig,
    refused: Refused,
) -> Result<(async_nats::Client, jetstream::Context), StoreError> {
    let bad = |m: String| StoreError::Incompatible(m);
    let addrs = cfg
        .servers
        .iter()
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| bad(format!("store.nats.servers: {:?}: {e}", crate::auth::redact_url(u))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text = crate::auth::credential_text;
    let mut opts = match &cfg.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::Token(t) => async_nats::ConnectOptions::with_token(text(t)),
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), text(password))
        }
        NatsAuth::Credentials(c) => async_nats::ConnectOptions::with_credentials(&text(c))
            .map_err(|e| bad(format!("store.nats.credentials: {e}")))?,
    };
    if let Some(ca) = &cfg.ca_file {
        let tls = crate::tls::client_config(Some(ca)).map_err(|e| bad(format!("store.nats.ca_file: {e}")))?;
        opts = opts.tls_client_config(tls).require_tls(true);
    }
    let client = opts
        .name("hookrelay")
        .event_callback(move |event| {
            refused.note(&event);
            async {}
        })
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(|e| {
            let servers: Vec<String> = cfg.servers.iter().map(|u| crate::auth::redact_url(u)).collect();
            StoreError::Unavailable(format!("cannot connect to NATS {servers:?}: {e}"))
        })?;
    // A relay whose cluster is up should be ready when it starts listening.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while client.connection_state() != async_nats::connection::State::Connected
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(2));
    Ok((client, js))
}

/// The oldest nats-server hookrelay runs on: 2.10 has the multi-filter
/// consumers, and 2.10.20 the fix of clustered "expected last subject
/// sequence 0" checks (nats-server #5644, #5794: a stream leader killed could
/// leave a replica that accepted a second create, and so a second claim of
/// a callback or a result row; 2.10.19 brought the fix and broke it for R1,
/// mended in 2.10.20).
pub const MIN_SERVER: (u32, u32, u32) = (2, 10, 20);

/// Whether nats-server `version` (`2.10.18`, `2.10.18-RC.2`, `v2.11.0`) is
/// older than [`MIN_SERVER`].
pub fn too_old(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next()) < MIN_SERVER
}

/// Refuse servers older than [`MIN_SERVER`] and servers or accounts without
/// JetStream.
pub(super) async fn check_server(client: &async_nats::Client, js: &jetstream::Context) -> Result<(), String> {
    let info = client.server_info();
    if too_old(&info.version) {
        let (a, b, c) = MIN_SERVER;
        return Err(format!(
            "nats-server {} is too old: hookrelay needs {a}.{b}.{c} or newer (older ones can accept a second \
             create of a key after a node is killed: a callback stored twice, or a result row overwritten)",
            info.version
        ));
    }
    if !info.jetstream {
        return Err(format!(
            "nats-server {} ({}) has JetStream disabled",
            info.server_name, info.version
        ));
    }
    js.query_account()
        .await
        .map_err(|e| format!("JetStream is not available to this account: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::too_old;

    #[test]
    fn servers_before_the_expected_sequence_fix_are_too_old() {
        for old in ["2.9.25", "2.10.0", "2.10.17", "2.10.18-RC.2", "2.10.19", "v2.10.19"] {
            assert!(too_old(old), "{old}");
        }
        for ok in ["2.10.20", "2.10.29", "2.11.0", "v2.12.3", "2.15.1", "3.0.0-beta"] {
            assert!(!too_old(ok), "{ok}");
        }
    }
}
