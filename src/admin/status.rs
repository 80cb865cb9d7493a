//! `/api/status`: what is running. Version, uptime, the public listeners and
//! how they do TLS, the configured routes (the console's route filters), the
//! store, each served certificate (names and expiry; for ACME also the
//! renewal and failure state), and the last reload (refused: why). Reads no store rows, so it
//! stays cheap however large the store is (in cluster mode one stream list
//! from JetStream for the store's size).

use serde_json::{json, Value};

use super::{rfc3339, ApiResult};
use crate::config::TlsSource;
use crate::state::App;
use crate::tls::CertInfo;

pub(super) async fn status(app: &App) -> ApiResult {
    let now = crate::clock::now_ms();
    let tls = app.tls_kind();
    let listeners: Vec<Value> = app
        .ingest_addrs
        .iter()
        .map(|a| json!({ "addr": a.to_string(), "tls": tls }))
        .collect();
    let (backend, location) = app.store.describe();
    // In cluster mode read from JetStream's stream info (no messages); null
    // while NATS cannot be read.
    let size = app.store.size().await.ok();
    let mut store = json!({
        "backend": backend,
        "path": location,
        "size_bytes": size.map(|s| s.bytes),
    });
    if app.store.is_clustered() {
        store["messages"] = json!(size.and_then(|s| s.messages));
    }
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": rfc3339(app.started_ms),
        "uptime_seconds": now.saturating_sub(app.started_ms) / 1000,
        "ready": app.ready(),
        "not_ready_because": app.not_ready_because(),
        "listeners": listeners,
        "routes": app.live().config.routes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        "store": store,
        "certificates": certificates(app),
        "last_reload": app.last_reload().map(|r| json!({
            "at": rfc3339(r.at_ms),
            "applied": r.refused.is_none(),
            "refused_because": r.refused,
        })),
    }))
}

/// The served certificates: none without TLS, else one (all listeners share it).
fn certificates(app: &App) -> Vec<Value> {
    if let Some(acme) = &app.acme {
        let st = acme.status();
        let settings = acme.settings();
        let mut state = st.to_json();
        state["domains"] = json!(settings.domains);
        state["directory"] = json!(crate::auth::redact_url(&settings.directory));
        state["state_dir"] = json!(acme.dir().display().to_string());
        return vec![json!({
            "source": "acme",
            "certificate": st.certificate.as_ref().map(CertInfo::to_json),
            "acme": state,
        })];
    }
    let Some(tls) = &app.tls else {
        return Vec::new();
    };
    // The file last loaded; after a pending switch to ACME the config names no file.
    let file = match &app.live().config.server.tls {
        Some(TlsSource::Files(f)) => Some(f.cert.display().to_string()),
        _ => None,
    };
    vec![json!({
        "source": "file",
        "certificate": tls.certificate().as_ref().map(CertInfo::to_json),
        "cert_file": file,
    })]
}
