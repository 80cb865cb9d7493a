//! A JSON body that names one key twice in an object (`{"data": {…},
//! "data": {…}}`): the relay's parser takes the last, some subscribers'
//! parsers the first. On a route whose checks read the parsed body (a
//! `kie` signature names the task by a field in it; `verify = "fetch"`
//! compares fields with the provider's record), such a body passes the
//! checks as one task while a first-wins reader sees another: refused
//! there (`400`; RFC 8259 §4 says names SHOULD be unique, and no provider
//! sends them twice). Ingest review, stop 66.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// Whether `body` (JSON the relay already parsed) repeats a key in one of
/// its objects, at any depth.
pub(crate) fn repeats_a_key(body: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk.deserialize(&mut de).is_err()
}

/// Visits a whole value, failing at the first object that repeats a key.
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Walk)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(A::Error::custom("a key repeated"));
            }
            map.next_value_seed(Walk)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::repeats_a_key;

    #[test]
    fn a_key_named_twice_in_one_object_is_found_at_any_depth() {
        assert!(repeats_a_key(br#"{"data":{"task_id":"A"},"data":{"task_id":"B"}}"#));
        assert!(repeats_a_key(br#"{"data":[{"x":1,"y":2,"x":3}]}"#));
        // Escapes spell the same key.
        assert!(repeats_a_key(br#"{"a":1,"\u0061":2}"#));
        assert!(!repeats_a_key(
            br#"{"data":{"task_id":"A"},"task_id":"A","list":[{"a":1},{"a":2}]}"#
        ));
        assert!(!repeats_a_key(br#"[1, "two", null, true, 2.5, -3, {"a": {}}]"#));
    }
}
