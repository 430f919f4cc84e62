//! Whole JSON documents read as a stream: arrays of records, `{"value":[…]}` and
//! `{"records":[…]}` envelopes, pretty-printed objects, one after another. The elements are
//! handed over one at a time as they are parsed; the document is never held in memory.

use std::fmt;
use std::io::{self, BufRead};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::input::{Budget, Limited, skip_blank};
use super::{ENVELOPES, Format, MAX_RECORD_BYTES, Sink};

/// The reader's state: where records go and how many elements were read.
struct State<'s, 'a> {
    sink: &'s mut Sink<'a>,
    /// Elements read so far (the 1-based number of the last one).
    elements: u64,
    budget: Budget,
}

/// Reads JSON documents until the end of the input. A syntax error (or an element larger than
/// [`MAX_RECORD_BYTES`]) is reported once, with the number of the element being read, and ends
/// the read; what was read before stays read.
pub(super) fn read(mut input: impl BufRead, sink: &mut Sink<'_>) -> io::Result<()> {
    let budget = Budget::new(MAX_RECORD_BYTES as u64);
    let mut state = State {
        sink,
        elements: 0,
        budget: budget.clone(),
    };
    loop {
        let Some(next) = skip_blank(&mut input)? else {
            return Ok(());
        };
        let reached = state.elements + 1;
        if next != b'{' && next != b'[' {
            state
                .sink
                .bad(reached, "unexpected data: not a JSON object or array");
            return Ok(());
        }
        budget.reset();
        let mut deserializer = serde_json::Deserializer::from_reader(Limited {
            inner: &mut input,
            budget: budget.clone(),
        });
        if let Err(error) = Top(&mut state).deserialize(&mut deserializer) {
            let reached = state.elements + 1;
            if budget.exceeded() {
                state.sink.bad(
                    reached,
                    format!("element is longer than {MAX_RECORD_BYTES} bytes; reading stopped"),
                );
            } else if error.is_io() {
                return Err(io::Error::from(error));
            } else {
                state
                    .sink
                    .bad(reached, format!("invalid JSON; reading stopped: {error}"));
            }
            return Ok(());
        }
    }
}

impl State<'_, '_> {
    /// Streams the elements of an array, each handed to the sink as soon as it is parsed.
    fn stream<'de, A: SeqAccess<'de>>(&mut self, mut seq: A) -> Result<(), A::Error> {
        loop {
            self.budget.reset();
            match seq.next_element::<Value>()? {
                Some(element) => {
                    self.elements += 1;
                    self.sink.value(self.elements, element);
                }
                None => break,
            }
        }
        self.budget.reset();
        Ok(())
    }
}

/// A top-level document.
struct Top<'r, 's, 'a>(&'r mut State<'s, 'a>);

impl<'de> DeserializeSeed<'de> for Top<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.0.stream(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let envelopes = state.sink.format != Format::Keyscope;
        let mut members = Map::new();
        let mut streamed = false;
        while let Some(key) = map.next_key::<String>()? {
            if envelopes && ENVELOPES.contains(&key.as_str()) {
                match map.next_value_seed(Member(&mut *state))? {
                    Some(value) => {
                        members.insert(key, value);
                    }
                    None => streamed = true,
                }
            } else {
                let value: Value = map.next_value()?;
                members.insert(key, value);
            }
        }
        if !streamed {
            state.elements += 1;
            state.sink.object(state.elements, members);
        }
        Ok(())
    }
}

/// A member of a top-level object that may be an envelope's array: streamed (`None`) when it
/// is an array, returned as a value otherwise.
struct Member<'r, 's, 'a>(&'r mut State<'s, 'a>);

impl<'de> DeserializeSeed<'de> for Member<'_, '_, '_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Member<'_, '_, '_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.stream(seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        use serde::Deserialize;
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use crate::import::{Format, Unparseable, read_from};
    use crate::record::Record;

    fn run(input: &str, format: Format) -> (Vec<Record>, Vec<Unparseable>) {
        let mut records = Vec::new();
        let mut bad = Vec::new();
        read_from(
            input.as_bytes(),
            "doc",
            format,
            &mut |r| records.push(r),
            &mut |u| bad.push(u),
            &mut |_| {},
        )
        .unwrap();
        (records, bad)
    }

    #[test]
    fn arrays_and_envelopes() {
        let (records, bad) = run(
            "[\n {\"Operation\":\"A\"},\n 7,\n {\"Operation\":\"B\"}\n]\n[{\"Operation\":\"C\"}]",
            Format::Ual,
        );
        let lines: Vec<u64> = records.iter().map(|r| r.origin.line).collect();
        assert_eq!(lines, vec![1, 3, 4]);
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (bad[0].line, bad[0].reason.as_str()),
            (2, "not a JSON object")
        );

        let (records, bad) = run(
            "{\"@odata.context\":\"x\",\"value\":[{\"id\":\"1\",\"createdDateTime\":\"2023-06-15T10:11:12Z\",\"status\":{\"errorCode\":0}},{\"id\":\"2\",\"createdDateTime\":\"2023-06-15T10:11:13Z\",\"status\":{\"errorCode\":1}}],\"@odata.nextLink\":\"y\"}",
            Format::Entra,
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].str("Operation"), Some("UserLoginFailed"));
        assert_eq!(records[1].origin.line, 2);
    }

    #[test]
    fn pretty_objects() {
        let (records, bad) = run(
            "{\n  \"Operation\": \"A\",\n  \"value\": 3\n}\n{\n  \"Operation\": \"B\"\n}\n",
            Format::Ual,
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].event["value"], 3);
        assert_eq!(records[1].origin.line, 2);
    }

    #[test]
    fn broken_documents_keep_what_was_read() {
        let (records, bad) = run(
            "[{\"Operation\":\"A\"},{\"Operation\":\"B\"},{\"Operation\":",
            Format::Ual,
        );
        assert_eq!(records.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert!(bad[0].reason.contains("invalid JSON"), "{}", bad[0].reason);

        let (records, bad) = run("[{\"Operation\":\"A\"} {\"Operation\":\"B\"}]", Format::Ual);
        assert_eq!(records.len(), 1);
        assert_eq!(bad[0].line, 2);

        let (records, bad) = run("[{\"Operation\":\"A\"}] trailing", Format::Ual);
        assert_eq!(records.len(), 1);
        assert_eq!(bad[0].line, 2);

        let deep = format!("[{}{}]", "[".repeat(200), "]".repeat(200));
        let (records, bad) = run(&deep, Format::Ual);
        assert!(records.is_empty());
        assert_eq!(bad.len(), 1);
    }

    #[test]
    fn large_elements_stop_the_document() {
        let big = "a".repeat(super::MAX_RECORD_BYTES + 1);
        let input = format!(
            "[{{\"Operation\":\"A\"}},{{\"Operation\":\"{big}\"}},{{\"Operation\":\"C\"}}]"
        );
        let (records, bad) = run(&input, Format::Ual);
        assert_eq!(records.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 2);
        assert!(bad[0].reason.contains("longer than"), "{}", bad[0].reason);
    }
}
