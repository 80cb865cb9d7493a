//! The sled backend's binary row formats: the event header that precedes the
//! body in a log row, and the delivery result row. No JSON on disk: a typical
//! header is ~40 bytes, a first-try result ~20.
//!
//! Integers are LEB128 varints; strings are a varint length then UTF-8 bytes.
//! Every row starts with a format byte so a later version can read old rows.

use std::net::IpAddr;

use bytes::Bytes;

use crate::store::{Attempt, DeliveryState, EventMeta, Origin};

/// Appends to and reads from a byte buffer.
#[derive(Default)]
pub(super) struct Writer(pub Vec<u8>);

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Writer(Vec::with_capacity(n))
    }
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    pub fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
}

/// A cursor over an encoded row; every read fails cleanly on truncation.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    pub fn raw(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.raw(n)
    }
    pub fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

const HEADER_V1: u8 = 1;
/// Content types stored as one byte (their index + 1); others are spelled out.
const COMMON_TYPES: [&str; 3] = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=utf-8",
];
const LITERAL_TYPE: u8 = 255;
const FLAG_FALLBACK: u8 = 1;
const FLAG_POLL: u8 = 2;

/// What a log row holds besides the body. Names are numbers here: the backend
/// maps route and subscriber names to small numbers (see `registry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    /// Position in the route's log (1, 2, …): queue depth is a subtraction.
    pub seq: u64,
    pub meta: HeaderMeta,
    /// The subscribers (by number) the event was fanned out to at ingest.
    pub subscribers: Vec<u32>,
    /// The first 16 bytes of the dedupe hash, so retention can drop the dedupe row.
    pub dedupe: [u8; 16],
}

/// The parts of [`EventMeta`] that are stored as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeaderMeta {
    pub source: Option<IpAddr>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub dedupe_fallback: bool,
    pub origin: Origin,
}

impl HeaderMeta {
    pub fn from_meta(m: &EventMeta) -> Self {
        HeaderMeta {
            source: m.source,
            content_type: m.content_type.clone(),
            headers: m.headers.clone(),
            dedupe_fallback: m.dedupe_fallback,
            origin: m.origin,
        }
    }
}

/// A log row: header then the body, byte for byte.
pub(super) fn encode_event(h: &Header, body: &[u8]) -> Vec<u8> {
    let m = &h.meta;
    let mut w = Writer::with_capacity(48 + body.len());
    w.u8(HEADER_V1);
    w.varint(h.seq);
    let mut flags = 0;
    if m.dedupe_fallback {
        flags |= FLAG_FALLBACK;
    }
    if m.origin == Origin::Poll {
        flags |= FLAG_POLL;
    }
    w.u8(flags);
    match m.source {
        None => w.u8(0),
        Some(IpAddr::V4(v4)) => {
            w.u8(4);
            w.raw(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            w.u8(6);
            w.raw(&v6.octets());
        }
    }
    match m.content_type.as_deref() {
        None => w.u8(0),
        Some(ct) => match COMMON_TYPES.iter().position(|c| *c == ct) {
            Some(i) => w.u8(i as u8 + 1),
            None => {
                w.u8(LITERAL_TYPE);
                w.bytes(ct.as_bytes());
            }
        },
    }
    w.varint(m.headers.len() as u64);
    for (k, v) in &m.headers {
        w.bytes(k.as_bytes());
        w.bytes(v.as_bytes());
    }
    w.varint(h.subscribers.len() as u64);
    for s in &h.subscribers {
        w.varint(u64::from(*s));
    }
    w.raw(&h.dedupe);
    w.raw(body);
    w.0
}

/// The header of a log row and where the body starts.
pub(super) fn decode_header(v: &[u8]) -> Option<(Header, usize)> {
    let mut r = Reader::new(v);
    if r.u8()? != HEADER_V1 {
        return None;
    }
    let seq = r.varint()?;
    let flags = r.u8()?;
    let source = match r.u8()? {
        0 => None,
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(r.raw(4)?).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(r.raw(16)?).ok()?)),
        _ => return None,
    };
    let content_type = match r.u8()? {
        0 => None,
        LITERAL_TYPE => Some(r.string()?),
        i => Some(COMMON_TYPES.get(usize::from(i) - 1)?.to_string()),
    };
    let n = r.varint()?;
    let mut headers = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        headers.push((r.string()?, r.string()?));
    }
    let n = r.varint()?;
    let mut subscribers = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        subscribers.push(u32::try_from(r.varint()?).ok()?);
    }
    let dedupe = r.raw(16)?.try_into().ok()?;
    let body_at = v.len() - r.rest().len();
    Some((
        Header {
            seq,
            meta: HeaderMeta {
                source,
                content_type,
                headers,
                dedupe_fallback: flags & FLAG_FALLBACK != 0,
                origin: if flags & FLAG_POLL != 0 {
                    Origin::Poll
                } else {
                    Origin::Callback
                },
            },
            subscribers,
            dedupe,
        },
        body_at,
    ))
}

/// The body of a log row (a copy: rows are cache pages).
pub(super) fn body(v: &[u8], at: usize) -> Bytes {
    Bytes::copy_from_slice(&v[at..])
}

const RESULT_V1: u8 = 1;

/// What kind of error an attempt ended in, one byte per attempt (the whole
/// message is kept for the last one only): none, connection, timeout, other,
/// a pull client handed the message back (`delivery::pull::settle::HANDED_BACK`).
const ERROR_KINDS: [Option<&str>; 5] = [
    None,
    Some("connection error"),
    Some("timeout"),
    Some("request error"),
    Some("handed back by the pull client"),
];

fn error_kind(error: Option<&str>) -> u8 {
    match error {
        None => 0,
        Some(e) if e.starts_with("connection error") => 1,
        Some(e) if e.starts_with("timeout") => 2,
        Some(e) if e.starts_with("handed back by the pull client") => 4,
        Some(_) => 3,
    }
}
/// The durable state of one event's delivery to one subscriber (the same
/// value every backend keeps; encoded compactly here).
pub(super) use crate::store::result::{ResultRow, HISTORY};

fn state_code(s: &DeliveryState) -> (u8, u64) {
    match s {
        DeliveryState::Retrying { due_ms } => (0, *due_ms),
        DeliveryState::Delivered => (1, 0),
        DeliveryState::Dead => (2, 0),
        DeliveryState::Skipped => (3, 0),
        DeliveryState::Pending => (4, 0),
        DeliveryState::AwaitingMedia { due_ms } => (5, *due_ms),
    }
}

pub(super) fn encode_result(r: &ResultRow) -> Vec<u8> {
    let mut w = Writer::with_capacity(24 + r.history.len() * 10);
    w.u8(RESULT_V1);
    let (code, due) = state_code(&r.state);
    w.u8(code);
    w.varint(due);
    w.varint(u64::from(r.attempts));
    w.varint(u64::from(r.step));
    w.varint(r.at_ms);
    let start = r.history.len().saturating_sub(HISTORY);
    let hist = &r.history[start..];
    w.varint(hist.len() as u64);
    // Attempt times as deltas from the state time keep them to a few bytes.
    for a in hist {
        w.varint(u64::from(a.attempt));
        w.varint(r.at_ms.saturating_sub(a.at_ms));
        w.varint(a.duration_ms);
        w.varint(u64::from(a.status.unwrap_or(0)));
        w.u8(error_kind(a.error.as_deref()));
    }
    w.bytes(r.last_error.as_deref().unwrap_or("").as_bytes());
    w.0
}

pub(super) fn decode_result(v: &[u8]) -> Option<ResultRow> {
    let mut r = Reader::new(v);
    if r.u8()? != RESULT_V1 {
        return None;
    }
    let code = r.u8()?;
    let due = r.varint()?;
    let state = match code {
        0 => DeliveryState::Retrying { due_ms: due },
        1 => DeliveryState::Delivered,
        2 => DeliveryState::Dead,
        3 => DeliveryState::Skipped,
        4 => DeliveryState::Pending,
        5 => DeliveryState::AwaitingMedia { due_ms: due },
        _ => return None,
    };
    let attempts = u32::try_from(r.varint()?).ok()?;
    let step = u32::try_from(r.varint()?).ok()?;
    let at_ms = r.varint()?;
    let n = r.varint()?;
    let mut history = Vec::with_capacity(n.min(HISTORY as u64) as usize);
    for _ in 0..n {
        let attempt = u32::try_from(r.varint()?).ok()?;
        let ago = r.varint()?;
        let duration_ms = r.varint()?;
        let status = u16::try_from(r.varint()?).ok()?;
        let kind = r.u8()?;
        history.push(Attempt {
            attempt,
            at_ms: at_ms.saturating_sub(ago),
            duration_ms,
            status: (status != 0).then_some(status),
            error: ERROR_KINDS
                .get(usize::from(kind))
                .copied()
                .flatten()
                .map(str::to_string),
        });
    }
    let err = r.string()?;
    let last_error = (!err.is_empty()).then_some(err);
    // The last failed attempt gets its whole message back.
    if let (Some(e), Some(last)) = (&last_error, history.last_mut()) {
        if last.error.is_some() {
            last.error = Some(e.clone());
        }
    }
    Some(ResultRow {
        state,
        attempts,
        step,
        at_ms,
        history,
        last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            seq: 300,
            meta: HeaderMeta {
                source: Some("203.0.113.9".parse().unwrap()),
                content_type: Some("application/json".into()),
                headers: vec![("user-agent".into(), "kie/1".into())],
                dedupe_fallback: true,
                origin: Origin::Poll,
            },
            subscribers: vec![0, 7, 300],
            dedupe: [9; 16],
        }
    }

    #[test]
    fn event_rows_round_trip_and_keep_the_body() {
        let body = br#"{"code":200}"#;
        let row = encode_event(&header(), body);
        let (h, at) = decode_header(&row).unwrap();
        assert_eq!(h, header());
        assert_eq!(&row[at..], body);
        // Small: a format byte, seq, flags, IPv4, content type, one header, subscribers, hash.
        assert!(row.len() - body.len() <= 50, "{} header bytes", row.len() - body.len());
        let mut other = header();
        other.meta.content_type = Some("text/plain".into());
        let row = encode_event(&other, body);
        assert_eq!(decode_header(&row).unwrap().0, other);
    }

    #[test]
    fn truncated_rows_are_rejected_not_misread() {
        let row = encode_event(&header(), b"x");
        for n in 0..row.len() - 1 {
            let cut = &row[..n];
            if let Some((_, at)) = decode_header(cut) {
                assert!(at <= cut.len());
            }
        }
        assert!(decode_header(&[2, 0]).is_none(), "unknown format byte");
    }

    #[test]
    fn results_round_trip_with_history() {
        let r = ResultRow {
            state: DeliveryState::Retrying {
                due_ms: 1_700_000_010_000,
            },
            attempts: 2,
            step: 1,
            at_ms: 1_700_000_005_000,
            history: vec![
                Attempt {
                    attempt: 1,
                    at_ms: 1_700_000_000_000,
                    duration_ms: 12,
                    status: Some(500),
                    error: None,
                },
                Attempt {
                    attempt: 2,
                    at_ms: 1_700_000_004_000,
                    duration_ms: 15_000,
                    status: None,
                    error: Some("timeout after 15s".into()),
                },
            ],
            last_error: Some("timeout after 15s".into()),
        };
        assert_eq!(decode_result(&encode_result(&r)).unwrap(), r);
        let delivered = ResultRow {
            state: DeliveryState::Delivered,
            attempts: 1,
            step: 0,
            at_ms: 1_700_000_000_020,
            history: vec![Attempt {
                attempt: 1,
                at_ms: 1_700_000_000_000,
                duration_ms: 3,
                status: Some(200),
                error: None,
            }],
            last_error: None,
        };
        let bytes = encode_result(&delivered);
        assert!(bytes.len() <= 20, "first-try result is {} bytes", bytes.len());
        assert_eq!(decode_result(&bytes).unwrap(), delivered);
    }

    #[test]
    fn pull_hand_backs_and_acknowledgements_keep_their_meaning() {
        let attempt = |n: u32, error: Option<&str>| Attempt {
            attempt: n,
            at_ms: 1_700_000_000_000 + u64::from(n),
            duration_ms: 5,
            status: None,
            error: error.map(str::to_string),
        };
        let back = crate::delivery::pull::settle::HANDED_BACK;
        let r = ResultRow {
            state: DeliveryState::Delivered,
            attempts: 3,
            step: 2,
            at_ms: 1_700_000_000_010,
            history: vec![attempt(1, Some(back)), attempt(2, Some(back)), attempt(3, None)],
            last_error: None,
        };
        let got = decode_result(&encode_result(&r)).unwrap();
        assert_eq!(
            got, r,
            "hand-backs stay hand-backs, the acknowledgement has neither status nor error"
        );
    }

    #[test]
    fn history_is_capped_but_the_count_is_exact() {
        let history: Vec<Attempt> = (1..=40)
            .map(|i| Attempt {
                attempt: i,
                at_ms: 1000 + u64::from(i),
                duration_ms: 1,
                status: Some(500),
                error: None,
            })
            .collect();
        let r = ResultRow {
            state: DeliveryState::Dead,
            attempts: 40,
            step: 10,
            at_ms: 2000,
            history,
            last_error: Some("HTTP 500".into()),
        };
        let back = decode_result(&encode_result(&r)).unwrap();
        assert_eq!(back.attempts, 40);
        assert_eq!(back.history.len(), HISTORY);
        assert_eq!(back.history[0].attempt, 17);
    }

    #[test]
    fn varints_cover_the_range() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer::default();
            w.varint(v);
            assert_eq!(Reader::new(&w.0).varint(), Some(v));
        }
        assert_eq!(Reader::new(&[0x80; 11]).varint(), None, "overlong varint");
    }
}
