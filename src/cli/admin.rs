//! The admin subcommands' client of the running daemon's admin API (the
//! daemon owns the store): where it is, how to authenticate, one call.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::auth::Secret;

/// Where the admin API is and how to authenticate.
pub struct AdminTarget {
    /// e.g. `http://127.0.0.1:9090`
    pub base: String,
    pub token: Option<Secret>,
    /// Where the token came from (named when it is refused).
    pub token_from: String,
}

/// How long the CLI waits for a whole answer of the admin API.
const ANSWER_TIME: Duration = Duration::from_secs(30);

/// How long it waits for the answer to a state change (a replay of every
/// dead letter re-queues them one by one: in cluster mode a few thousand a
/// minute at worst). One the CLI gives up on still runs to its end.
const CHANGE_TIME: Duration = Duration::from_secs(600);

/// The largest answer the CLI reads: the largest the API gives (10,000
/// events or dead letters, a few MiB) many times over.
const MAX_ANSWER: usize = 64 << 20;

/// Call the admin API; the parsed JSON answer, or a message for the user.
pub async fn call(target: &AdminTarget, method: Method, path_and_query: &str) -> Result<Value, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri = format!("{}{}", target.base.trim_end_matches('/'), path_and_query);
    let change = method == Method::POST;
    let mut req = Request::builder()
        .method(method)
        .uri(&uri)
        // The API takes state changes (replay) only with a JSON content type, which
        // a cross-site HTML form cannot send; the body itself is empty.
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(t) = &target.token {
        req = req.header(http::header::AUTHORIZATION, crate::auth::bearer(t));
    }
    let req = req.body(Empty::new()).map_err(|e| {
        let hint = if target.base.contains("://") {
            ""
        } else {
            " (give --admin as http://HOST:PORT)"
        };
        format!("invalid admin URL {uri}: {e}{hint}")
    })?;
    // One bound on the whole exchange, the answer's body included, and a cap
    // on its size: a wrong server that trickles or streams an answer ends the
    // command rather than holding it (and its memory) for ever.
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| {
            format!(
                "cannot reach the daemon's admin API at {} (is hookrelay running?): {}",
                target.base,
                crate::error_chain::error_chain(&e)
            )
        })?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => format!(
                    "the answer from {uri} is larger than {} MiB: ask for fewer (--limit), or check that --admin is the daemon's admin.listen",
                    MAX_ANSWER >> 20
                ),
                None => format!("reading the answer from {uri}: {e}"),
            })?
            .to_bytes();
        Ok::<_, String>((status, content_type, body))
    };
    let bound = if change { CHANGE_TIME } else { ANSWER_TIME };
    let (status, content_type, body) = tokio::time::timeout(bound, exchange).await.map_err(|_| {
        let still = match change {
            true => "; what it was asked goes on to its end there (its log says what it did)",
            false => "",
        };
        format!(
            "the daemon at {} did not answer within {}s ({uri}){still}",
            target.base,
            bound.as_secs()
        )
    })??;
    // Whatever answered may quote the request, its Authorization among it
    // (an echo server, a proxy's debug page), in its body or its
    // Content-Type (both named below): the token is never printed.
    let (body, content_type) = match &target.token {
        Some(t) => (
            crate::auth::redact_secret(body, t),
            content_type.map(|c| {
                let c = crate::auth::redact_secret(Bytes::from(c), t);
                String::from_utf8_lossy(&c).into_owned()
            }),
        ),
        None => (body, content_type),
    };
    // Every answer of the API is a JSON object; anything else (a web page,
    // a proxy's error page) is another server's, named with its start.
    let value = serde_json::from_slice::<Value>(&body).ok().filter(Value::is_object);
    if status == StatusCode::UNAUTHORIZED {
        return Err(match &target.token {
            Some(_) => format!(
                "the admin API at {} refused the token from {} (the daemon's is its config's admin.token; \
                 --token and HOOKRELAY_ADMIN_TOKEN come before the config file)",
                target.base, target.token_from
            ),
            None => format!(
                "the admin API at {} wants a token: set admin.token in the config, --token or \
                 HOOKRELAY_ADMIN_TOKEN",
                target.base
            ),
        });
    }
    let Some(value) = value else {
        return Err(format!(
            "{status} from {uri} is not the admin API's JSON (Content-Type: {}; it begins: {:?}): is --admin the \
             daemon's admin.listen?",
            content_type.as_deref().unwrap_or("none"),
            start_of(&body)
        ));
    };
    if !status.is_success() {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_string);
        return Err(format!("{status} from {uri}: {msg}"));
    }
    Ok(value)
}

/// The first characters of an answer that is not the API's, to name it.
fn start_of(body: &[u8]) -> String {
    const SHOWN: usize = 200;
    let text = String::from_utf8_lossy(body);
    let mut start: String = text.trim().chars().take(SHOWN).collect();
    if text.trim().chars().nth(SHOWN).is_some() {
        start.push('…');
    }
    start
}

/// An `--admin` URL (or `HOOKRELAY_ADMIN`) the token may be sent to: an
/// absolute http(s) URL with a host, a port a connection can have (`http::Uri`
/// reads `:9O90` as no port, which would send the token to port 80), and no
/// credentials (never used; the token goes with `--token`).
fn check_base(base: &str) -> Result<(), String> {
    let shown = crate::auth::redact_url(base);
    let bad = |why: &str| {
        Err(format!(
            "invalid admin URL {shown:?} (--admin or HOOKRELAY_ADMIN): {why}; nothing was sent"
        ))
    };
    let Ok(uri) = base.parse::<http::Uri>() else {
        return bad("not a URL (as http://127.0.0.1:9090)");
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return bad("must be an absolute http:// URL with a host (as http://127.0.0.1:9090)");
    }
    // The client has no TLS: an https URL would fail as if the daemon were down.
    if uri.scheme_str() == Some("https") {
        return bad(
            "the admin subcommands speak plain http to admin.listen (give it as http://HOST:PORT; an https proxy \
             in front of it is for browsers, or run them on the relay's host)",
        );
    }
    if uri.query().is_some() || base.contains('#') {
        return bad("no query or fragment: the subcommands add the API's paths to it");
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return bad("credentials in it are not used: give the admin token with --token or admin.token");
    }
    if crate::config::unusable_port(base) {
        return bad("the port must be a number from 1 to 65535");
    }
    Ok(())
}

/// Whether `base` (an `--admin` URL, checked) is the admin API listening on
/// `listen`, on its port: at its very address (`::ffff:127.0.0.1` is
/// `127.0.0.1`), or, when it listens on every address of a family, at a
/// loopback address of that family. Another loopback address (`[::1]` for
/// `127.0.0.1`, `127.0.0.1` for `[::]` made IPv6-only), a name (`localhost`
/// may resolve to `::1` first) or a name-like literal (`127.0.0.1.` goes to
/// DNS) may reach another listener: refused (the change reviews, stop 63).
fn same_api(base: &str, listen: std::net::SocketAddr) -> bool {
    use std::net::IpAddr;
    let Ok(uri) = base.parse::<http::Uri>() else {
        return false;
    };
    let port = uri.port_u16().unwrap_or(80);
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let at = listen.ip().to_canonical();
    let same = match host.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(ip) if at.is_unspecified() => ip.is_loopback() && ip.is_ipv4() == at.is_ipv4(),
        Ok(ip) => ip == at,
        Err(_) => false,
    };
    port == listen.port() && same
}

/// Where the admin API is: `--admin`/`--token` first; the config file only for
/// what they leave open, and then only its `admin.listen` / `admin.token`. A
/// file named with `--config` or `HOOKRELAY_CONFIG` must exist; without one,
/// a missing `config.toml` means the defaults.
pub fn target(cli: &super::Cli) -> Result<AdminTarget, String> {
    let (config, admin, token) = (
        cli.config.as_path(),
        cli.admin.as_deref().map(str::trim),
        cli.token.as_deref(),
    );
    if let Some(base) = admin {
        check_base(base)?;
    }
    if let (Some(base), Some(token)) = (admin, token) {
        return Ok(AdminTarget {
            base: base.to_string(),
            token: Some(Secret::new(token)),
            token_from: cli.token_from.into(),
        });
    }
    // A token from a config nobody named (./config.toml, or the packaged one
    // a shell's command falls back to) goes only to that config's own admin
    // API: `--admin` naming another would have it sent there (change review,
    // stop 63).
    let guard = admin.is_some() && token.is_none() && !cli.config_given;
    // A link leading nowhere is read (and its error names it), not taken for no file.
    let from_config = if config.symlink_metadata().is_ok() {
        Some(
            crate::config::admin_client(config, admin.is_none() || guard, token.is_none())
                .map_err(|e| e.to_string())?,
        )
    } else if cli.config_given {
        return Err(format!(
            "{}: cannot read file: it does not exist (named by --config or HOOKRELAY_CONFIG; the admin \
             API's address and token come from it)",
            config.display()
        ));
    } else {
        None
    };
    if let (true, Some(base), Some((Some(listen), Some(_)))) = (guard, admin, &from_config) {
        if !same_api(base, *listen) {
            return Err(format!(
                "--admin (or HOOKRELAY_ADMIN) {base} is not the admin API of {} (its admin.listen is \
                 {listen}): its admin.token is sent only there; give the token of {base} with --token or \
                 HOOKRELAY_ADMIN_TOKEN, or name the config with --config",
                config.display()
            ));
        }
    }
    let base = match (admin, &from_config) {
        (Some(a), _) => a.to_string(),
        (None, Some((Some(listen), _))) => format!("http://{listen}"),
        (None, _) => "http://127.0.0.1:9090".into(),
    };
    let token_from = match token {
        Some(_) => cli.token_from.to_string(),
        None => format!("admin.token in {}", config.display()),
    };
    let token = token.map(Secret::new).or_else(|| from_config.and_then(|(_, t)| t));
    Ok(AdminTarget {
        base,
        token,
        token_from,
    })
}

#[cfg(test)]
mod same_api_tests {
    use super::same_api;

    #[test]
    fn only_the_configs_own_admin_api_gets_its_token() {
        let at = |l: &str| l.parse().unwrap();
        for (base, listen, same) in [
            ("http://127.0.0.1:9090", "127.0.0.1:9090", true),
            ("http://127.0.0.1:9090/", "127.0.0.1:9090", true),
            ("http://localhost:9090", "127.0.0.1:9090", false),
            ("http://127.0.0.1.:9090", "127.0.0.1:9090", false),
            ("http://[::ffff:127.0.0.1]:9090", "127.0.0.1:9090", true),
            ("http://127.0.0.1:9091", "127.0.0.1:9090", false),
            ("http://[::1]:9090", "127.0.0.1:9090", false),
            ("http://127.0.0.2:9090", "127.0.0.1:9090", false),
            ("http://relay2:9090", "127.0.0.1:9090", false),
            ("http://127.0.0.1:9090", "0.0.0.0:9090", true),
            ("http://127.0.0.5:9090", "0.0.0.0:9090", true),
            ("http://[::1]:9090", "0.0.0.0:9090", false),
            ("http://[::1]:9090", "[::]:9090", true),
            ("http://127.0.0.1:9090", "[::]:9090", false),
            ("http://[::1]:9090", "[::1]:9090", true),
            ("http://10.0.0.7:9090", "10.0.0.7:9090", true),
            ("http://10.0.0.8:9090", "10.0.0.7:9090", false),
            ("http://localhost:9090", "10.0.0.7:9090", false),
            ("http://127.0.0.1", "127.0.0.1:80", true),
        ] {
            assert_eq!(same_api(base, at(listen)), same, "{base} for {listen}");
        }
    }
}
