//! The event id: a ULID (time-ordered), written `evt_<ULID>`; how it is
//! parsed, shown and carried in JSON.

use ulid::Ulid;

/// An event id: a ULID (time-ordered), shown as `evt_<ULID>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub Ulid);

impl EventId {
    pub fn from_parts(ms: u64, random: u128) -> Self {
        EventId(Ulid::from_parts(ms, random))
    }
    pub fn bytes(&self) -> [u8; 16] {
        self.0.to_bytes()
    }
    pub fn from_slice(b: &[u8]) -> Option<EventId> {
        let arr: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(EventId(Ulid::from_bytes(arr)))
    }
    /// When the event was received (ms since the epoch).
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }
    /// The smallest id after this one.
    pub fn next(&self) -> EventId {
        EventId(Ulid(self.0 .0.saturating_add(1)))
    }
    pub const ZERO: EventId = EventId(Ulid(0));
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "evt_{}", self.0)
    }
}

/// As its text (`evt_<ULID>`): how the cluster backend's rows keep it.
impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("not an event id: {text:?}")))
    }
}

impl std::str::FromStr for EventId {
    type Err = ();
    /// Only the spelling [`Display`](std::fmt::Display) produces (any case):
    /// 26 base32 digits hold 130 bits, and the decoder drops the two that do
    /// not fit, so `8…` would otherwise name the event `0…`.
    fn from_str(s: &str) -> Result<Self, ()> {
        let u = s.strip_prefix("evt_").unwrap_or(s);
        let id = Ulid::from_string(u).map_err(|_| ())?;
        if !id.to_string().eq_ignore_ascii_case(u) {
            return Err(());
        }
        Ok(EventId(id))
    }
}
