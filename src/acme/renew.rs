//! The renewal loop: sleep until the current certificate is due (or order at
//! once when there is none), run one rustls-acme order, install the result;
//! on failure log one line, count it, keep serving what we have and wait with
//! exponential back-off. Each order gets a fresh `AcmeState` that is dropped
//! when it is done, so rustls-acme's own renewal timer (fixed at a third of
//! the validity) and its own retry loop never run: the schedule is ours
//! (`pace`: the time after a success, and the daily cap).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use rustls::sign::CertifiedKey;
use rustls_acme::{EventError, EventOk};

use super::cache::OrderCache;
use super::ledger;
use super::pace;
use super::Inner;
use crate::tls::{rfc3339, CertInfo};

/// Why an order failed, and the HTTP status when the CA answered 429 (rate
/// limited) or 503 (overloaded): asked to come back later.
struct Failed {
    why: String,
    slow_down: Option<u16>,
}

impl<T: Into<String>> From<T> for Failed {
    fn from(why: T) -> Self {
        Failed {
            why: why.into(),
            slow_down: None,
        }
    }
}

/// 429 or 503 when `e` is the CA answering so. rustls-acme (0.15) keeps only
/// the status and body of an answer that is not 2xx, not its headers: the
/// CA's `Retry-After` cannot be read, so such an answer waits `retry_max`.
/// The status is only in the error's text (its type is private there).
fn asked_to_slow_down(e: &rustls_acme::OrderError) -> Option<u16> {
    let rustls_acme::OrderError::Acme(rustls_acme::acme::AcmeError::HttpRequest(e)) = e else {
        return None;
    };
    let text = e.to_string();
    let code = text.strip_prefix("non 2xx http status: ")?.get(..3)?.parse().ok()?;
    [429, 503].contains(&code).then_some(code)
}

/// Wait before the order after `n` consecutive failures (n ≥ 1): doubling
/// up to the cap, each made shorter by up to a quarter at random (`draw`,
/// 0..1; 1 is the whole wait), so that relays whose orders fail together
/// (several of them ordering the same name) do not try again in step.
fn backoff(opts: &super::Options, n: u32, draw: f64) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
    shortened(opts.retry_first.saturating_mul(factor).min(opts.retry_max), draw)
}

/// `wait` shortened by up to a quarter (`draw`, 0..1; 1 is the whole wait),
/// in whole milliseconds: the log shows it (`retry_in=47s 312ms`).
fn shortened(wait: Duration, draw: f64) -> Duration {
    Duration::from_millis((wait.as_millis() as f64 * (0.75 + 0.25 * draw.clamp(0.0, 1.0))) as u64)
}

/// Clears the challenge answers however the order ends (done, failed, timed out, aborted).
struct ChallengeGuard<'a>(&'a Inner);

impl Drop for ChallengeGuard<'_> {
    fn drop(&mut self) {
        self.0.resolver.set_challenge(None);
    }
}

pub(super) async fn run(acme: Arc<Inner>) {
    // The cap counts the certificates of earlier runs too.
    let mut issued = {
        let (path, now) = (ledger_file(&acme), crate::clock::time_of_day());
        tokio::task::spawn_blocking(move || ledger::load(&path, now))
            .await
            .unwrap_or_default()
    };
    loop {
        let due_in = acme.due_in();
        if !due_in.is_zero() {
            // Re-planned at least hourly: no timer years long (certificates
            // can be valid for years), and the due time is read afresh.
            tokio::time::sleep(due_in.min(Duration::from_secs(3600))).await;
            continue;
        }
        let now = crate::clock::time_of_day();
        if let Some(wait) = issued.wait(now) {
            acme.lock_status().next_attempt = Some(now + wait);
            tracing::warn!(
                issued_in_a_day = pace::MAX_ORDERS_PER_DAY,
                order_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())),
                "ACME: as many certificates issued in the last 24 hours as allowed; the next order waits \
                 (something keeps certificates from lasting: is the clock right?)"
            );
            // The served certificate ends before that: say it, it is an outage.
            let ends = acme.lock_status().certificate.as_ref().map(|c| c.not_after);
            if let Some(ends) = ends.filter(|end| *end < now + wait) {
                tracing::error!(
                    expires = %crate::tls::rfc3339(ends),
                    "ACME: the served certificate expires before the next order may be placed: HTTPS handshakes \
                     fail from then until a new one is issued (delete acme/issued-*.times to allow an order at once)"
                );
            }
            tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
            continue;
        }
        {
            // The cap's wait is over: no next attempt is planned while this
            // one runs (status named the past time as the next order; a
            // failure's retry keeps its time, shown beside the failures).
            let mut s = acme.lock_status();
            if s.consecutive_failures == 0 {
                s.next_attempt = None;
            }
        }
        let timeout = acme.options.attempt_timeout;
        let result = match tokio::time::timeout(timeout, order(&acme)).await {
            Ok(r) => r,
            Err(_) => Err(Failed::from(format!(
                "no certificate after {}; order abandoned",
                humantime::format_duration(timeout)
            ))),
        };
        match result {
            Ok((key, info)) => {
                let now = crate::clock::time_of_day();
                issued.record(now);
                keep(&acme, &issued).await;
                let next = pace::after_issue(&info, now, acme.options.renew_remaining, acme.options.retry_first);
                tracing::info!(
                    names = ?info.names,
                    expires = %rfc3339(info.not_after),
                    renew_at = %rfc3339(next.renew_at),
                    "ACME certificate issued; serving it to new connections"
                );
                if let Some(ahead) = next.clock_ahead {
                    tracing::warn!(
                        not_before = %rfc3339(info.not_before),
                        local_time = %rfc3339(now),
                        ahead = %humantime::format_duration(Duration::from_secs(ahead.as_secs())),
                        "the local clock looks wrong: the certificate the CA has just issued is valid from long \
                         before what this host's clock says (fix its time sync); renewal is counted from the \
                         certificate's arrival instead of its dates"
                    );
                } else if next.from_arrival {
                    // A CA handing out certificates shorter than our margin must
                    // not turn this loop into a hot one.
                    tracing::warn!(
                        renew_at = %rfc3339(next.renew_at),
                        "the new certificate is already due for renewal; waiting before the next order"
                    );
                }
                acme.install(key, info);
                acme.lock_status().renew_at = Some(next.renew_at);
            }
            Err(Failed { why: error, slow_down }) => {
                let (in_a_row, serving) = {
                    let s = acme.lock_status();
                    (s.consecutive_failures + 1, s.certificate.is_some())
                };
                // A CA that says "later" (429, 503) gets the longest wait at once.
                let wait = match slow_down {
                    Some(_) => shortened(acme.options.retry_max, fastrand::f64()),
                    None => backoff(&acme.options, in_a_row, fastrand::f64()),
                };
                acme.failed(&error, wait);
                tracing::warn!(
                    directory = %crate::auth::redact_url(&acme.settings.directory),
                    error = %error,
                    consecutive_failures = in_a_row,
                    retry_in = %humantime::format_duration(wait),
                    ca_asked_to_slow_down = slow_down.as_ref().map(tracing::field::debug),
                    serving_current_certificate = serving,
                    "ACME order failed"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The ledger of this CA and these names.
fn ledger_file(acme: &Inner) -> std::path::PathBuf {
    acme.dir.issued_file(&acme.settings.domains, &acme.settings.directory)
}

/// Write the issued times to the state directory, for the next start.
async fn keep(acme: &Inner, issued: &pace::Issued) {
    let (path, issued) = (ledger_file(acme), issued.clone());
    let file = path.clone();
    let result = tokio::task::spawn_blocking(move || ledger::save(&file, &issued))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e,
            "cannot keep the times of issued ACME certificates; a restart may order again before the daily cap allows");
    }
}

/// One order, from directory discovery to the stored bundle.
async fn order(acme: &Inner) -> Result<(Arc<CertifiedKey>, CertInfo), Failed> {
    let issued = Arc::new(Mutex::new(None::<Vec<u8>>));
    let cache = OrderCache {
        dir: acme.dir.clone(),
        issued: issued.clone(),
    };
    let state = rustls_acme::AcmeConfig::new_with_client_config(&acme.settings.domains, acme.client.clone())
        .directory(&acme.settings.directory)
        .contact(acme.contact())
        .cache(cache)
        .state();
    acme.resolver
        .set_challenge(Some(state.resolver() as Arc<dyn rustls::server::ResolvesServerCert>));
    let _clear = ChallengeGuard(acme);
    let mut state = std::pin::pin!(state);
    tracing::info!(
        domains = ?acme.settings.domains,
        directory = %crate::auth::redact_url(&acme.settings.directory),
        "ordering an ACME certificate (TLS-ALPN-01)"
    );
    loop {
        // The stream never ends; `None` would be a rustls-acme bug.
        let event = state.next().await.ok_or("the ACME client stopped unexpectedly")?;
        match event {
            Ok(EventOk::CertCacheStore) => break,
            Ok(EventOk::DeployedNewCert | EventOk::DeployedCachedCert) => {}
            Ok(EventOk::AccountCacheStore) => {
                tracing::info!(dir = %acme.dir.path().display(), "ACME account key created and stored")
            }
            Err(EventError::CertCacheStore(e)) => {
                tracing::warn!(dir = %acme.dir.path().display(), error = %e, "cannot store the new certificate; serving it anyway, the next start orders again");
                break;
            }
            Err(EventError::AccountCacheStore(e)) => {
                tracing::warn!(dir = %acme.dir.path().display(), error = %e, "cannot store the ACME account key; the next order registers another account")
            }
            Err(EventError::AccountCacheLoad(e)) => {
                tracing::warn!(dir = %acme.dir.path().display(), error = %e, "cannot read the ACME account key; registering a new account")
            }
            Err(EventError::Order(e)) => {
                return Err(Failed {
                    why: format!("order: {}", order_error(&e)),
                    slow_down: asked_to_slow_down(&e),
                })
            }
            Err(e) => return Err(e.to_string().into()),
        }
    }
    let pem = issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or("the ACME client reported a certificate but handed none over")?;
    crate::tls::parse_bundle(&pem).map_err(|e| format!("the CA's certificate is unusable: {e}").into())
}

/// An order that failed, in the CA's words: its `detail` for a refused
/// validation or order (not the client's dump of the objects, which holds
/// the challenge token), the request error otherwise.
fn order_error(e: &rustls_acme::OrderError) -> String {
    use rustls_acme::acme::Identifier;
    use rustls_acme::OrderError;
    let problem = |p: &Option<rustls_acme::acme::Problem>| {
        p.as_ref().map(|p| {
            let detail = p.detail.as_deref().unwrap_or("no detail");
            match &p.typ {
                Some(t) => format!("{detail} ({t})"),
                None => detail.to_string(),
            }
        })
    };
    match e {
        OrderError::BadAuth(auth) => {
            let Identifier::Dns(name) = &auth.identifier;
            let why = auth
                .challenges
                .iter()
                .find_map(|c| problem(&c.error))
                .unwrap_or_else(|| format!("authorization {:?}", auth.status).to_lowercase());
            format!("the CA could not validate {name}: {why}")
        }
        OrderError::BadOrder(order) => match problem(&order.error) {
            Some(why) => format!("the CA refused the order: {why}"),
            None => "the CA marked the order invalid".to_string(),
        },
        OrderError::Acme(e) => format!("request to the CA failed: {e}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_validation_is_told_in_the_cas_words_without_the_challenge_token() {
        use rustls_acme::acme::{Auth, AuthStatus, Challenge, ChallengeType, Identifier, Problem};
        let auth = Auth {
            status: AuthStatus::Invalid,
            identifier: Identifier::Dns("refused.example.com".into()),
            challenges: vec![Challenge {
                typ: ChallengeType::TlsAlpn01,
                url: "https://ca/chal/1".into(),
                token: "SECRET-TOKEN-eYx8".into(),
                error: Some(Problem {
                    typ: Some("urn:ietf:params:acme:error:unauthorized".into()),
                    detail: Some("Failed to connect to 127.0.0.1:443 for the tls-alpn-01 challenge".into()),
                }),
            }],
        };
        let text = order_error(&rustls_acme::OrderError::BadAuth(auth));
        assert_eq!(
            text,
            "the CA could not validate refused.example.com: Failed to connect to 127.0.0.1:443 for the tls-alpn-01 \
             challenge (urn:ietf:params:acme:error:unauthorized)"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = super::super::Options {
            retry_first: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            ..Default::default()
        };
        let waits: Vec<u64> = (1..=8).map(|n| backoff(&o, n, 1.0).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(&o, u32::MAX, 1.0).as_secs(), 3600);
        // Up to a quarter shorter, never longer: relays failing together
        // spread out.
        let shortest: Vec<u64> = (1..=8).map(|n| backoff(&o, n, 0.0).as_secs()).collect();
        assert_eq!(shortest, [45, 90, 180, 360, 720, 1440, 2700, 2700]);
        assert_ne!(backoff(&o, 3, 0.2), backoff(&o, 3, 0.7));
    }
}
