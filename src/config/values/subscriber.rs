//! A route's subscribers as the validated config has them: push or pull
//! ([`Endpoint`]), the pull API's paths and lease bound, and what each
//! delivery needs (keys, headers, filter, timeout, retries, rate).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use crate::auth::Secret;
use crate::config::units::Rate;
use crate::delivery::retry::RetrySchedule;

/// A private service that receives every callback of its route.
#[derive(Clone)]
pub struct Subscriber {
    /// Unique across the whole configuration; names its delivery lane and stored work.
    pub name: String,
    pub route: String,
    /// Whether the relay pushes to it or the private side pulls.
    pub endpoint: Endpoint,
    /// Decoded Standard Webhooks keys; each one signs (rotation).
    pub keys: Vec<Secret>,
    /// Sent with every delivery, replacing a header of ours of the same name;
    /// never a reserved one. Secret values are marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub ca_file: Option<PathBuf>,
    /// JSON pointer -> value that must be equal for the callback to be delivered.
    pub filter: Vec<(String, serde_json::Value)>,
    /// Per attempt, connect to last byte of the status.
    pub timeout: Duration,
    pub retry: RetrySchedule,
    pub concurrency: usize,
    pub rate: Option<Rate>,
    /// Consecutive failures that open the circuit (at least 1).
    pub circuit_threshold: u32,
    /// Wait until every media URL of the event is stored or failed for good,
    /// then deliver with the `hookrelay-media` header.
    pub after_archive: bool,
}

impl Subscriber {
    /// The URL the relay POSTs to; None for a pull subscriber.
    pub fn url(&self) -> Option<&Uri> {
        match &self.endpoint {
            Endpoint::Push(url) => Some(url),
            Endpoint::Pull(_) => None,
        }
    }

    /// The pull settings; None for a push subscriber.
    pub fn pull(&self) -> Option<&PullSettings> {
        match &self.endpoint {
            Endpoint::Push(_) => None,
            Endpoint::Pull(p) => Some(p),
        }
    }
}

/// How a subscriber's messages reach it. Its `Debug` shows a push URL as
/// [`crate::auth::shown_target`] does (its path may be its secret).
#[derive(Clone)]
pub enum Endpoint {
    /// The relay POSTs each message to this URL.
    Push(Uri),
    /// The private side fetches its messages over the pull API (`GET /pull/{name}`),
    /// for services the relay cannot connect to.
    Pull(PullSettings),
}

/// Where the pull API lives on the public listener (`/pull/{subscriber}`).
pub const PULL_PREFIX: &str = "/pull/";

/// The longest pull lease a subscriber may set: a forwarder that died holds
/// its messages this long (in cluster mode a relay keeps such a message from
/// the others for a lease plus its lapse, see `store::nats::hold`).
pub const MAX_PULL_LEASE: Duration = Duration::from_secs(3600);

/// A pull subscriber's settings.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// Presented as `Authorization: Bearer`; grants this subscriber's messages only.
    pub token: Secret,
    /// How long a message handed out stays reserved for its puller before it is
    /// offered again (with the same id).
    pub lease: Duration,
}

impl PullSettings {
    /// The public paths of a pull subscriber's API: long-poll, acknowledge.
    pub fn api_paths(name: &str) -> [String; 2] {
        [format!("{PULL_PREFIX}{name}"), format!("{PULL_PREFIX}{name}/ack")]
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Push(url) => f
                .debug_tuple("Push")
                .field(&crate::auth::shown_target(&url.to_string()))
                .finish(),
            Endpoint::Pull(p) => f.debug_tuple("Pull").field(p).finish(),
        }
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("keys", &self.keys.len())
            .field("concurrency", &self.concurrency)
            .field("after_archive", &self.after_archive)
            .finish_non_exhaustive()
    }
}
