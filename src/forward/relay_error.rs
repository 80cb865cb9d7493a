//! Why a request to the relay got no usable answer ([`RelayError`]), and
//! whether asking again later can help.

use http::StatusCode;

use super::client::MAX_ANSWER;
use crate::pull::wire;

/// Why a request to the relay got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Not reachable, reset, TLS failure, timeout: try again later.
    #[error("{0}")]
    Away(String),
    /// 401: unknown subscriber or wrong token.
    #[error("the relay refused the token (unknown pull subscriber or wrong token)")]
    Refused,
    /// The relay answered, but with more than [`MAX_ANSWER`] bytes (its
    /// declared length, when it said one): a message larger than this
    /// forwarder can take.
    #[error(
        "the relay's answer ({}) is larger than the {} MiB this forwarder reads: a message with a body over {} MiB \
         (the relay's server.max_body allows it), which hookrelay forward cannot receive, or a relay older than \
         this forwarder, whose answers have no size bound (lower --concurrency); the relay offers what it leased \
         again when the leases run out (a failed attempt each)",
        .0.map_or("size unknown".to_string(), |n| format!("{n} bytes")),
        MAX_ANSWER >> 20,
        wire::MAX_FORWARDED_BODY >> 20
    )]
    TooLarge(Option<u64>),
    /// 409 on an acknowledgement: these ids are not leased to us any more;
    /// the others were applied when `rest_applied` (a cluster relay), else
    /// nothing was changed. `delivered`: those of them the relay records
    /// as delivered already (an earlier acknowledgement's answer was lost);
    /// `unknown`: those it could not tell about now.
    #[error("{} ids are not leased to this forwarder", .ids.len())]
    NotLeased {
        ids: Vec<String>,
        rest_applied: bool,
        delivered: Vec<String>,
        unknown: Vec<String>,
    },
    /// Another answer: status and the relay's message.
    #[error("HTTP {0}: {1}")]
    Status(StatusCode, String),
}

impl RelayError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            // The next answer may be smaller (other messages, in other answers).
            RelayError::Away(_) | RelayError::TooLarge(_) => true,
            // 408: the relay's read timeout (a slow link); 200 here is an
            // answer that was not the relay's (a captive portal, a proxy):
            // an acknowledgement is sent again; a pull stops the forwarder
            // (`pump.rs`: it may have leased messages it cannot read).
            RelayError::Status(s, _) => {
                s.is_server_error()
                    || matches!(
                        *s,
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT | StatusCode::OK
                    )
            }
            RelayError::Refused | RelayError::NotLeased { .. } => false,
        }
    }
}
