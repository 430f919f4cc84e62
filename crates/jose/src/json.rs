//! Strict JSON for JOSE headers, claims and key sets.
//!
//! RFC 7515 §5.2 lets a parser either reject duplicate member names or take the last one. Taking
//! the last one means two parsers can read different claims out of the same token (one sees
//! `"sub":"alice"`, the next `"sub":"admin"`), so Keyscope rejects duplicates at every depth.
//! Nesting is bounded before the parser's own recursion could be exhausted.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use thiserror::Error;

/// The deepest nesting of arrays and objects accepted (the top-level object is depth 1).
pub const MAX_DEPTH: usize = 64;

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonError {
    /// The same member name appears twice in one object (after unescaping).
    #[error("duplicate member name {0:?}")]
    DuplicateMember(String),
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("JSON nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The text is not JSON, not UTF-8, or has trailing data.
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// The text is JSON but not an object where an object is required.
    #[error("expected a JSON object")]
    NotObject,
}

/// Parses one JSON value, rejecting duplicate member names and excessive nesting.
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    let violation = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictSeed {
        depth: 0,
        violation: &violation,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(error) => Err(violation
            .take()
            .unwrap_or_else(|| JsonError::Syntax(error.to_string()))),
    }
}

/// Parses a JSON object with the rules of [`parse_value`].
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotObject),
    }
}

/// Builds a `serde_json::Value` while checking the two rules serde_json does not enforce.
/// The violation travels beside serde's error so that callers get a precise kind, not a string.
#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    depth: usize,
    violation: &'a Cell<Option<JsonError>>,
}

impl StrictSeed<'_> {
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            self.violation.set(Some(JsonError::TooDeep));
            return Err(E::custom("nesting too deep"));
        }
        Ok(StrictSeed { depth, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(inner)?;
            match members.entry(name) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    let name = slot.key().clone();
                    self.violation.set(Some(JsonError::DuplicateMember(name)));
                    return Err(de::Error::custom("duplicate member name"));
                }
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_objects() {
        let value = parse_object(br#"{"a":1,"b":[true,null,"x",1.5],"c":{"d":-2}}"#).unwrap();
        assert_eq!(value.len(), 3);
    }

    #[test]
    fn rejects_duplicates_at_any_depth_after_unescaping() {
        assert_eq!(
            parse_value(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateMember("a".into()))
        );
        assert_eq!(
            parse_value(br#"{"x":[{"k":1,"k":1}]}"#),
            Err(JsonError::DuplicateMember("k".into()))
        );
        assert_eq!(
            parse_value(br#"{"alg":"ES256","\u0061lg":"none"}"#),
            Err(JsonError::DuplicateMember("alg".into()))
        );
    }

    #[test]
    fn bounds_depth() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_value(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse_value(deep.as_bytes()), Err(JsonError::TooDeep));
        // Far deeper than serde_json's own limit: still our precise error, no stack overflow.
        let abyss = "[".repeat(100_000);
        assert_eq!(parse_value(abyss.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn rejects_invalid_utf8_trailing_data_and_lone_surrogates() {
        assert!(matches!(
            parse_value(b"{\"a\":\"\xff\"}"),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(parse_value(b"{} {}"), Err(JsonError::Syntax(_))));
        assert!(matches!(
            parse_value(br#"{"a":"\ud800"}"#),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(
            parse_value(b"\xef\xbb\xbf{}"),
            Err(JsonError::Syntax(_))
        ));
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotObject));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_value(&bytes);
        }
    }
}
