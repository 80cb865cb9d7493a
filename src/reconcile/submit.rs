//! The submit proxy (`POST /api/routes/{route}/submit?endpoint=…` on the
//! admin listener): the private service's create call, forwarded to the
//! provider with the route's API key and `callBackUrl` set to the relay's
//! public URL for the route (with its first token), the task id of the
//! answer registered as an expected task, and the provider's answer handed
//! back unchanged but for the route's tokens and the API key, should it
//! echo them (never in an admin answer).
//!
//! Only the create endpoints of the route's product are forwarded. A create
//! that got no answer is not sent again (it may have started, and billed, a
//! task): the caller gets 504 and decides.

use bytes::Bytes;
use http::StatusCode;

use crate::provider::{ErrorKind, SubmitAnswer};
use crate::state::App;
use crate::store::Task;

/// The provider's answer, and the task registered from it (None when the
/// answer named no task: a refused create).
pub struct Submitted {
    pub answer: SubmitAnswer,
    /// The expected task; None when the provider created none, or when it
    /// created one (`answer.task_id`) the store could not record within
    /// [`REGISTER_FOR`]: answered with `hookrelay-task-state: unregistered`,
    /// for the caller to register it (`POST /api/tasks`).
    pub task: Option<Task>,
}

/// How long a created task's registration is tried again before the
/// provider's answer is handed back without it (NATS electing a leader,
/// a moment of a store refusing writes).
const REGISTER_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// A create call for a route, ready to be sent ([`prepare`], then [`send`]).
pub struct Ready {
    route: String,
    endpoint: String,
    /// The route's tokens, redacted from an answer that echoes the call.
    tokens: Vec<crate::auth::Secret>,
    client: crate::provider::ProviderClient,
    call: crate::provider::CreateCall,
}

/// Check a create call for `route_name` and wait for its turn in the key's
/// create pacing: nothing is sent yet (a caller that goes away meanwhile
/// leaves nothing behind).
pub async fn prepare(app: &App, route_name: &str, endpoint: &str, body: Bytes) -> Result<Ready, (StatusCode, String)> {
    let live = app.live();
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let route = live
        .config
        .routes
        .iter()
        .find(|r| r.name == route_name)
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no route {route_name:?}")))?;
    let product = route.product().ok_or_else(|| {
        bad(format!(
            "route {route_name:?} has no provider preset (preset = \"kie-…\")"
        ))
    })?;
    let client = app.media.settings().providers.get(route_name).cloned().ok_or_else(|| {
        bad(format!(
            "route {route_name:?} has no provider key (provider = {{ api_key = … }})"
        ))
    })?;
    let public = live.config.server.public_url.as_deref().ok_or_else(|| {
        (
            StatusCode::CONFLICT,
            "server.public_url is not set: the provider would not know where to call back".to_string(),
        )
    })?;
    if !product.create_paths().contains(&endpoint) {
        return Err(bad(format!(
            "endpoint {endpoint:?} is not a create endpoint of {product}: use one of {}",
            product.create_paths().join(", ")
        )));
    }
    let mut callback_url = format!("{public}{}", route.path);
    if let Some(token) = route.tokens.first() {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", &crate::auth::credential_text(token))
            .finish();
        callback_url = format!("{callback_url}?{query}");
    }
    let call = client
        .create_call(endpoint, &body, &callback_url)
        .await
        .map_err(|e| refused(route_name, endpoint, e))?;
    Ok(Ready {
        route: route.name.clone(),
        endpoint: endpoint.to_string(),
        tokens: route.tokens.clone(),
        client,
        call,
    })
}

/// The answer for a create call that failed.
fn refused(route_name: &str, endpoint: &str, e: crate::provider::ProviderError) -> (StatusCode, String) {
    let status = match e.kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::OutcomeUnknown | ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::LocalLimit => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_GATEWAY,
    };
    tracing::warn!(route = route_name, endpoint, error = %e, "submit proxy: create call failed");
    match status {
        StatusCode::GATEWAY_TIMEOUT => (
            status,
            format!(
                "{e}: the provider may have created (and billed) the task; it was not sent again and is not \
                 expected (register it with POST /api/tasks if the provider shows it)"
            ),
        ),
        _ => (status, e.to_string()),
    }
}

/// Send a create call [`prepare`] readied, and expect the task it creates.
pub async fn send(app: &App, ready: Ready) -> Result<Submitted, (StatusCode, String)> {
    let Ready {
        route,
        endpoint,
        tokens,
        client,
        call,
    } = ready;
    let (route_name, endpoint) = (route.as_str(), endpoint.as_str());
    let mut answer = client
        .send_create(call)
        .await
        .map_err(|e| refused(route_name, endpoint, e))?;
    // An answer that echoes the create call (a debug field, a gateway's
    // page) quotes `callBackUrl`, and with it the route's token.
    for token in &tokens {
        answer.body = crate::auth::redact_secret(answer.body, token);
    }
    let Some(task_id) = answer.task_id.clone() else {
        tracing::info!(
            route = route_name,
            endpoint,
            code = answer.code,
            "submit proxy: the provider created no task"
        );
        return Ok(Submitted { answer, task: None });
    };
    // One the status endpoint cannot be asked about (nor the store keep):
    // expected, it would only be given up at its first poll.
    if !crate::provider::usable_task_id(&task_id) {
        tracing::error!(route = route_name, endpoint, task_id = ?task_id,
            "submit proxy: the provider created a task whose id cannot be polled (empty, over 256 bytes or with \
             control characters); answered with hookrelay-task-state: unregistered, it is not reconciled");
        return Ok(Submitted { answer, task: None });
    }
    let give_up = tokio::time::Instant::now() + REGISTER_FOR;
    let mut pause = std::time::Duration::from_millis(100);
    let registered = loop {
        // Each try bounded too: a NATS node that takes requests and answers
        // none would hold the caller past the 5 s, who may then send the
        // create call again (and start a second task).
        let tried = tokio::time::timeout_at(give_up, super::expect(app, route_name, task_id.clone()))
            .await
            .unwrap_or_else(|_| {
                Err(crate::store::StoreError::Unavailable(format!(
                    "no answer within {}s",
                    REGISTER_FOR.as_secs()
                )))
            });
        match tried {
            Err(e) if tokio::time::Instant::now() + pause < give_up => {
                tracing::warn!(route = route_name, task_id, error = %e,
                    "submit proxy: cannot record the expected task yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            r => break r,
        }
    };
    let task = match registered {
        Ok(t) => {
            tracing::info!(
                route = route_name,
                endpoint,
                task_id,
                "submit proxy: task created and expected"
            );
            Some(t)
        }
        Err(e) => {
            // The task exists at the provider (and is billed): hand its answer
            // back anyway; the caller can register it with POST /api/tasks.
            tracing::error!(route = route_name, task_id, error = %e,
                "submit proxy: cannot record the expected task; answered with hookrelay-task-state: unregistered \
                 (register it with POST /api/tasks once the store takes writes)");
            None
        }
    };
    Ok(Submitted { answer, task })
}
