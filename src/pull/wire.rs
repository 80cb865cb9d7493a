//! The pull API's wire format, shared by the relay (which answers) and
//! `hookrelay forward` (which asks): the JSON shapes, the query parameters
//! and their limits, the header that tells forwarders apart.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Names the forwarder process a lease belongs to (any short token, e.g. a
/// random id per process). Pullers that send none share one identity.
pub const FORWARDER_HEADER: &str = "hookrelay-forwarder";
/// Longest forwarder id.
pub const MAX_FORWARDER_ID: usize = 64;

/// `max` when the request gives none, and the most one request may ask for.
pub const DEFAULT_MAX: usize = 10;
pub const MAX_PER_PULL: usize = 100;
/// `wait` when the request gives none, and the longest allowed (below the
/// 60 s many proxies allow an idle request).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
pub const MAX_WAIT: Duration = Duration::from_secs(55);
/// How many bytes of messages one pull answer carries at most: the relay
/// stops adding messages once the next would take the answer past it (a
/// message larger than that alone is still sent, by itself); what is left
/// waits, not leased, for the next pull. Bounds what the relay holds for
/// one answer, and keeps it readable by `hookrelay forward`
/// ([`MAX_ANSWER`]).
pub const ANSWER_BUDGET: usize = 32 << 20;
/// Bytes of one message in an answer besides its base64 body and the
/// strings [`message_size`] is given: the JSON names, the id twice, the
/// timestamp, the attempt header, `hookrelay-source` (generous).
pub const MESSAGE_OVERHEAD: usize = 1024;
/// The largest callback body `hookrelay forward` can receive: one message
/// of it (with up to 64 KiB of headers) next to a full [`ANSWER_BUDGET`]
/// still fits in [`MAX_ANSWER`]. A relay whose `server.max_body` is larger
/// warns at start when it has pull subscribers.
pub const MAX_FORWARDED_BODY: usize = 160 << 20;
/// Bytes of a pull answer `hookrelay forward` reads at most. The relay's
/// answers are at most [`ANSWER_BUDGET`], or one message alone when that one
/// is larger, so this is the budget plus one message of
/// [`MAX_FORWARDED_BODY`] (more than needed: either one, not both, plus the
/// envelope).
pub const MAX_ANSWER: usize = 256 << 20;
const _: () = assert!(ANSWER_BUDGET + message_size(MAX_FORWARDED_BODY, 64 << 10) + 1024 <= MAX_ANSWER);

/// What a message of `body` bytes takes in a pull answer, at most: its body
/// in base64 and [`MESSAGE_OVERHEAD`], with `strings` (the bytes of its
/// route, content type, media header and signatures), counted twice for
/// JSON escapes.
pub const fn message_size(body: usize, strings: usize) -> usize {
    body.div_ceil(3) * 4 + MESSAGE_OVERHEAD + strings * 2
}

/// The largest acknowledgement body (further capped by `server.max_body`):
/// room for every id a subscriber can have leased.
pub const MAX_ACK_BODY: usize = 64 * 1024;
/// Ids in one acknowledgement at most (`ids`, `retry` and `release` together).
pub const MAX_ACK_IDS: usize = 1000;
/// The longest `error` of a [`LocalAnswer`], in characters.
pub const MAX_LOCAL_ERROR: usize = 300;
/// The HTTP statuses a [`LocalAnswer`] may carry.
const STATUSES: std::ops::RangeInclusive<u16> = 100..=599;

/// One message handed out by `GET /pull/{subscriber}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The event id, also in `headers["webhook-id"]`: the same on every offer.
    pub id: String,
    pub route: String,
    /// 1 for the first offer; grows with hand-backs and expired leases.
    pub attempt: u32,
    /// To send with the body: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature` (when the subscriber has a secret), `content-type`
    /// (when the provider sent one), `hookrelay-attempt`, and for an
    /// `after_archive` subscriber `hookrelay-media` (its event's archived media),
    /// and `hookrelay-source: poll` for a result recovered by polling.
    pub headers: BTreeMap<String, String>,
    /// The provider's body, base64 (standard alphabet, padded).
    pub body: String,
    /// Which round of delivery this offer is, in cluster mode (an opaque
    /// token): the same on every offer of the event's delivery (its
    /// retries, another relay's offer after a takeover, a replay while it
    /// is still pending); another for each operator's replay of a finished
    /// delivery. A forwarder that delivered the id in this round
    /// acknowledges it again unsent; in another round, it posts it. Absent
    /// on the embedded store (and from relays before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<String>,
}

/// The answer of `GET /pull/{subscriber}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Messages {
    pub messages: Vec<Message>,
    /// The subscriber's lease in milliseconds: a message not acknowledged
    /// within it is offered again (a forwarder warns when its local timeout
    /// is not below it). Absent from relays before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// The body of `POST /pull/{subscriber}/ack`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// Delivered: done for good.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Handed back: offered again after the subscriber's retry schedule's
    /// next delay, a dead letter once it is exhausted.
    #[serde(default)]
    pub retry: Vec<String>,
    /// Not finished (a forwarder that stops): offered again at once, without
    /// using a step of the retry schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release: Vec<String>,
    /// What the local service answered, by handed-back id (optional, only ids
    /// in `retry`): kept in the relay's attempt history. Advisory: an entry
    /// the relay cannot use is left out (named in the answer's `warnings`),
    /// never a reason to refuse the acknowledgement. Absent from forwarders
    /// before it was added; relays before it refuse the field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub local: BTreeMap<String, LocalAnswer>,
    /// The attempt number each id was handed out with (optional, any of the
    /// ids): an id whose lease the relay now holds for another attempt (its
    /// lease ran out and it was offered again) is refused (`409`, named), so
    /// the answer to an earlier hand-out never settles a later one the
    /// client has not seen yet. Absent from forwarders before it was added;
    /// relays before it refuse the field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attempts: BTreeMap<String, u32>,
}

/// What the local service answered a message that was handed back: its HTTP
/// status, or why there was none. Fields added later are ignored by this
/// version (it is passed between relays of a cluster too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The wait the local service's `Retry-After` asked for (on 429, 502,
    /// 503, 504), in milliseconds: the retry waits at least that, capped by
    /// the subscriber's `max_retry_after`, as for a push subscriber. Absent
    /// from forwarders before it was added; ignored by relays before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl LocalAnswer {
    /// From a local delivery's result (the status, or why there is none),
    /// always usable ([`Self::check`]): a status outside 100–599 (HTTP
    /// libraries accept up to 999) is told as an error, control characters
    /// become spaces, the error is cut to [`MAX_LOCAL_ERROR`] characters.
    pub fn of(result: &Result<http::StatusCode, String>) -> LocalAnswer {
        let error = |e: &str| {
            let clean: String = e
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_LOCAL_ERROR)
                .collect();
            Some(if clean.trim().is_empty() {
                "no answer".to_string()
            } else {
                clean
            })
        };
        match result {
            Ok(s) if STATUSES.contains(&s.as_u16()) && !s.is_success() => LocalAnswer {
                status: Some(s.as_u16()),
                error: None,
                retry_after_ms: None,
            },
            Ok(s) => LocalAnswer {
                status: None,
                error: error(&format!("answered with status {}, handed back", s.as_u16())),
                retry_after_ms: None,
            },
            Err(e) => LocalAnswer {
                status: None,
                error: error(e),
                retry_after_ms: None,
            },
        }
    }

    /// Why the relay cannot record it, if it cannot: a status outside
    /// 100–599 or a success (a hand-back is not one), an error that is empty,
    /// too long or has control characters (it reaches the logs), neither given.
    pub fn check(&self) -> Result<(), String> {
        match (&self.status, &self.error) {
            (Some(s), _) if !STATUSES.contains(s) => Err(format!("status {s} is not an HTTP status")),
            (Some(s), _) if (200..300).contains(s) => Err(format!("status {s} is a success, not a hand-back")),
            (_, Some(e)) if e.trim().is_empty() => Err("error is empty".into()),
            (_, Some(e)) if e.chars().count() > MAX_LOCAL_ERROR => {
                Err(format!("error is longer than {MAX_LOCAL_ERROR} characters"))
            }
            (_, Some(e)) if e.chars().any(char::is_control) => Err("error has control characters".into()),
            (None, None) => Err("give status and/or error".into()),
            _ => Ok(()),
        }
    }

    /// How the relay's history says it: `the local service answered HTTP 503`.
    pub fn describe(&self) -> String {
        match (&self.status, &self.error) {
            (Some(s), Some(e)) => format!("the local service answered HTTP {s}: {e}"),
            (Some(s), None) => format!("the local service answered HTTP {s}"),
            (None, Some(e)) => format!("no answer from the local service: {e}"),
            (None, None) => String::new(),
        }
    }
}

/// The answer to an acknowledgement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    pub acknowledged: usize,
    pub retried: usize,
    pub dead: usize,
    /// `local` entries left out, each with why (the rest was recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The answer when some ids are not leased to the caller: nothing changed,
/// or (cluster mode, `applied` given) the others were applied at the
/// relays that lease them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotLeased {
    pub error: String,
    pub not_leased: Vec<String>,
    /// What the ids not named did; absent when nothing was changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Acked>,
    /// Of `not_leased`, the ids acknowledged as delivered whose delivery the
    /// relay records as delivered already (an earlier acknowledgement
    /// whose answer was lost): the client may forget them. Absent when
    /// none, and from relays before it was added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
    /// Of `not_leased`, the ids acknowledged as delivered the relay cannot
    /// tell about now (its store not answering, their record unreadable, or
    /// more than it looks up at once): whether they were recorded is not
    /// known, so not "not recorded" either. Absent when none, and from
    /// relays before it was added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

/// A long-poll's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub wait: Duration,
    pub max: usize,
}

/// `wait` (e.g. `30s`, `500ms`, or whole seconds) and `max` from a query
/// string; anything else, or either given twice, is refused with the reason.
pub fn parse_params(query: Option<&str>) -> Result<Params, String> {
    let mut wait = None;
    let mut max = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "wait" if wait.is_some() => return Err("wait is given twice".into()),
            "max" if max.is_some() => return Err("max is given twice".into()),
            "wait" => wait = Some(parse_wait(&v)?),
            "max" => max = Some(parse_max(&v)?),
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: use wait (e.g. 30s) and max (1 to {MAX_PER_PULL}); the token goes \
                     in Authorization: Bearer"
                ))
            }
        }
    }
    Ok(Params {
        wait: wait.unwrap_or(DEFAULT_WAIT),
        max: max.unwrap_or(DEFAULT_MAX),
    })
}

fn parse_wait(v: &str) -> Result<Duration, String> {
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(v)
            .map_err(|_| format!("invalid wait {v:?}: use a duration such as 30s or 500ms (at most 55s)"))?,
    };
    if d > MAX_WAIT {
        return Err(format!("wait {v:?} is too long: at most 55s"));
    }
    Ok(d)
}

fn parse_max(v: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PER_PULL).contains(n))
        .ok_or_else(|| format!("invalid max {v:?}: use 1 to {MAX_PER_PULL}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_have_defaults_and_limits() {
        assert_eq!(
            parse_params(None),
            Ok(Params {
                wait: DEFAULT_WAIT,
                max: DEFAULT_MAX
            })
        );
        let p = parse_params(Some("wait=500ms&max=100")).unwrap();
        assert_eq!((p.wait, p.max), (Duration::from_millis(500), 100));
        assert_eq!(parse_params(Some("wait=0")).unwrap().wait, Duration::ZERO);
        assert_eq!(parse_params(Some("wait=12")).unwrap().wait, Duration::from_secs(12));
        for (q, needle) in [
            ("max=0", "invalid max"),
            ("max=101", "invalid max"),
            ("max=-1", "invalid max"),
            ("wait=soon", "invalid wait"),
            ("wait=10m", "too long"),
            ("wait=1s&wait=2s", "twice"),
            ("token=abc", "Authorization"),
        ] {
            let e = parse_params(Some(q)).unwrap_err();
            assert!(e.contains(needle), "{q}: {e}");
        }
    }

    #[test]
    fn ack_bodies_refuse_unknown_fields() {
        let a: Ack = serde_json::from_str(r#"{"ids": ["evt_1"]}"#).unwrap();
        assert_eq!((a.ids.len(), a.retry.len()), (1, 0));
        assert!(serde_json::from_str::<Ack>(r#"{"id": ["evt_1"]}"#).is_err());
        assert!(serde_json::from_str::<Ack>(r#"{"ids": [1]}"#).is_err());
    }
}
