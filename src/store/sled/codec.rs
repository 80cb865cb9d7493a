//! The sled backend's binary row formats: the byte writer and reader they
//! share, and the event header that precedes the body in a log row (the
//! delivery result row is [`super::result_codec`]'s; a large body has rows of
//! its own, [`super::body_rows`]). No JSON on disk: a
//! typical header is ~40 bytes, a first-try result ~20.
//!
//! Integers are LEB128 varints; strings are a varint length then UTF-8 bytes.
//! Every row starts with a format byte so a later version can read old rows.

use std::net::IpAddr;

pub(super) use super::result_codec::{decode_result, encode_result, ResultRow};
use crate::store::{EventMeta, Origin};

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
/// The body is not in the row but in `B` rows of its own ([`super::body_rows`]);
/// the row ends with its length.
const FLAG_BODY_ROWS: u8 = 4;

/// Where a log row's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyAt {
    /// After the header, from this offset to the row's end.
    Inline(usize),
    /// In `B` rows of its own; this many bytes.
    Rows(u64),
}

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
    let mut w = write_header(h, body.len(), 0);
    w.raw(body);
    w.0
}

/// A log row whose body of `len` bytes is in `B` rows: header then the length.
pub(super) fn encode_event_without_body(h: &Header, len: usize) -> Vec<u8> {
    let mut w = write_header(h, 10, FLAG_BODY_ROWS);
    w.varint(len as u64);
    w.0
}

fn write_header(h: &Header, room: usize, mut flags: u8) -> Writer {
    let m = &h.meta;
    let mut w = Writer::with_capacity(48 + room);
    w.u8(HEADER_V1);
    w.varint(h.seq);
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
    w
}

/// The header of a log row and where its body is.
pub(super) fn decode_header(v: &[u8]) -> Option<(Header, BodyAt)> {
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
    let body_at = if flags & FLAG_BODY_ROWS != 0 {
        BodyAt::Rows(r.varint()?)
    } else {
        BodyAt::Inline(v.len() - r.rest().len())
    };
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
        assert_eq!(at, BodyAt::Inline(row.len() - body.len()));
        // Small: a format byte, seq, flags, IPv4, content type, one header, subscribers, hash.
        assert!(row.len() - body.len() <= 50, "{} header bytes", row.len() - body.len());
        let mut other = header();
        other.meta.content_type = Some("text/plain".into());
        let row = encode_event(&other, body);
        assert_eq!(decode_header(&row).unwrap().0, other);
    }

    #[test]
    fn a_row_without_its_body_keeps_the_header_and_the_length() {
        let row = encode_event_without_body(&header(), 1 << 20);
        let (h, at) = decode_header(&row).unwrap();
        assert_eq!(h, header());
        assert_eq!(at, BodyAt::Rows(1 << 20));
        assert!(row.len() <= 53, "{} bytes", row.len());
        assert!(decode_header(&row[..row.len() - 1]).is_none(), "length cut off");
    }

    #[test]
    fn truncated_rows_are_rejected_not_misread() {
        let row = encode_event(&header(), b"x");
        for n in 0..row.len() - 1 {
            let cut = &row[..n];
            if let Some((_, BodyAt::Inline(at))) = decode_header(cut) {
                assert!(at <= cut.len());
            }
        }
        assert!(decode_header(&[2, 0]).is_none(), "unknown format byte");
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
