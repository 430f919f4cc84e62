//! A strict I-JSON (RFC 7493) parser front end.
//!
//! JMAP requires request bodies to be I-JSON (RFC 8620 §3.6.1, `notJSON`). `serde_json` alone
//! is more permissive than that: it silently keeps the last of two members with the same name.
//! [`parse`] refuses everything I-JSON refuses and bounds the work an attacker can cause:
//!
//! - the input must be at most [`JsonLimits::max_size`] bytes, checked before anything else;
//! - it must be UTF-8 (no byte order mark, no encoded surrogates, no overlong forms);
//! - it must match the RFC 8259 grammar exactly: no comments, no trailing commas, no leading
//!   zeros, no `NaN`, no single quotes, no unescaped control characters;
//! - object member names must be unique (compared after unescaping, so `"a"` and `"\u0061"`
//!   collide);
//! - strings must not contain surrogates (a lone `\uD800` escape) or Unicode noncharacters
//!   (U+FDD0..U+FDEF and U+xFFFE/U+xFFFF in every plane), literally or escaped (RFC 7493 §2.2);
//! - numbers must be representable as an IEEE 754 double (`1e400` is refused; integers that
//!   fit `i64`/`u64` stay exact);
//! - arrays and objects may nest at most [`JsonLimits::max_depth`] deep (default
//!   [`DEFAULT_MAX_DEPTH`]), so parsing never recurses deeper than that.
//!
//! The result is a plain [`serde_json::Value`].

use serde_json::{Map, Number, Value};

/// The default maximum nesting depth of arrays and objects.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// How many characters of an offending member name an error message quotes.
const NAME_QUOTE_CHARS: usize = 64;

/// Bounds applied by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Maximum input size in bytes.
    pub max_size: usize,
    /// Maximum nesting depth of arrays and objects; the top-level array or object is depth 1.
    pub max_depth: usize,
}

impl JsonLimits {
    /// Limits with the given maximum size and the [`DEFAULT_MAX_DEPTH`].
    #[must_use]
    pub const fn with_max_size(max_size: usize) -> Self {
        Self {
            max_size,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why [`parse`] refused its input. Offsets are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The input is larger than [`JsonLimits::max_size`].
    #[error("the input is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The input size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The input is not valid UTF-8.
    #[error("the input is not valid UTF-8 (at byte {offset})")]
    InvalidUtf8 {
        /// Where the invalid sequence starts.
        offset: usize,
    },
    /// The input does not match the JSON grammar.
    #[error("invalid JSON at byte {offset}: {reason}")]
    Syntax {
        /// Where the problem was found.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// An object has two members with the same name (I-JSON, RFC 7493 §2.3).
    #[error("duplicate member name {name:?} at byte {offset}")]
    DuplicateMember {
        /// Where the second occurrence starts.
        offset: usize,
        /// The member name, truncated to 64 characters.
        name: String,
    },
    /// A string contains a surrogate or a noncharacter (I-JSON, RFC 7493 §2.2).
    #[error("a string contains a surrogate or noncharacter code point at byte {offset}")]
    InvalidCodePoint {
        /// Where the string containing it starts.
        offset: usize,
    },
    /// A number cannot be represented as an IEEE 754 double (I-JSON, RFC 7493 §2.2).
    #[error("the number at byte {offset} is out of range")]
    NumberOutOfRange {
        /// Where the number starts.
        offset: usize,
    },
    /// Arrays and objects are nested deeper than [`JsonLimits::max_depth`].
    #[error("arrays and objects are nested more than {limit} deep")]
    TooDeep {
        /// The depth limit.
        limit: usize,
    },
}

/// Parses `input` as a single I-JSON text, enforcing `limits`.
///
/// # Errors
/// A [`JsonError`] describing the first problem found; see the module documentation for the
/// rules.
pub fn parse(input: &[u8], limits: &JsonLimits) -> Result<Value, JsonError> {
    if input.len() > limits.max_size {
        return Err(JsonError::TooLarge {
            size: input.len(),
            limit: limits.max_size,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| JsonError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    if text.starts_with('\u{FEFF}') {
        return Err(JsonError::Syntax {
            offset: 0,
            reason: "byte order mark",
        });
    }
    let mut parser = Parser {
        text,
        bytes: input,
        pos: 0,
        max_depth: limits.max_depth,
    };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != input.len() {
        return Err(parser.syntax("trailing characters after the JSON value"));
    }
    Ok(value)
}

/// Whether `c` is a Unicode noncharacter.
const fn is_noncharacter(c: u32) -> bool {
    (c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn syntax(&self, reason: &'static str) -> JsonError {
        JsonError::Syntax {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Parses one value; `depth` is the number of arrays/objects enclosing it.
    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.peek() {
            None => Err(self.syntax("unexpected end of input")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.syntax("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &'static [u8], value: Value) -> Result<Value, JsonError> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(value)
        } else {
            Err(self.syntax("invalid literal"))
        }
    }

    fn enter(&self, depth: usize) -> Result<(), JsonError> {
        if depth > self.max_depth {
            Err(JsonError::TooDeep {
                limit: self.max_depth,
            })
        } else {
            Ok(())
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.enter(depth)?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.syntax("expected ',' or ']' in an array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.enter(depth)?;
        self.pos += 1; // '{'
        let mut members = Map::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("expected a member name"));
            }
            let name_offset = self.pos;
            let name = self.string()?;
            if members.contains_key(&name) {
                return Err(JsonError::DuplicateMember {
                    offset: name_offset,
                    name: name.chars().take(NAME_QUOTE_CHARS).collect(),
                });
            }
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.syntax("expected ':' after a member name"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            members.insert(name, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.syntax("expected ',' or '}' in an object")),
            }
        }
    }

    /// Appends the unescaped run `start..self.pos` to `out`, checking for noncharacters.
    fn flush_run(
        &self,
        start: usize,
        string_start: usize,
        out: &mut String,
    ) -> Result<(), JsonError> {
        let run = self.text.get(start..self.pos).ok_or(JsonError::Syntax {
            offset: start,
            reason: "invalid string",
        })?;
        if !run.is_ascii() && run.chars().any(|c| is_noncharacter(u32::from(c))) {
            return Err(JsonError::InvalidCodePoint {
                offset: string_start,
            });
        }
        out.push_str(run);
        Ok(())
    }

    fn string(&mut self) -> Result<String, JsonError> {
        let string_start = self.pos;
        self.pos += 1; // '"'
        let mut out = String::new();
        let mut run_start = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.flush_run(run_start, string_start, &mut out)?;
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.flush_run(run_start, string_start, &mut out)?;
                    self.pos += 1;
                    self.escape(string_start, &mut out)?;
                    run_start = self.pos;
                }
                Some(0x00..=0x1F) => {
                    return Err(self.syntax("unescaped control character in a string"));
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Parses the escape after a backslash (at `self.pos`).
    fn escape(&mut self, string_start: usize, out: &mut String) -> Result<(), JsonError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let first = self.hex4()?;
                let code = if (0xD800..=0xDBFF).contains(&first) {
                    if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(JsonError::InvalidCodePoint {
                            offset: string_start,
                        });
                    }
                    self.pos += 2;
                    let second = self.hex4()?;
                    if !(0xDC00..=0xDFFF).contains(&second) {
                        return Err(JsonError::InvalidCodePoint {
                            offset: string_start,
                        });
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                if is_noncharacter(code) {
                    return Err(JsonError::InvalidCodePoint {
                        offset: string_start,
                    });
                }
                // Lone low surrogates are rejected by `char::from_u32`.
                let c = char::from_u32(code).ok_or(JsonError::InvalidCodePoint {
                    offset: string_start,
                })?;
                out.push(c);
                return Ok(());
            }
            _ => return Err(self.syntax("invalid escape sequence")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.syntax("invalid \\u escape")),
            };
            value = value * 16 + u32::from(digit);
            self.pos += 1;
        }
        Ok(value)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.syntax("leading zero in a number"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.syntax("expected a digit")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.syntax("expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.syntax("expected a digit in the exponent"));
            }
        }
        let text = self.text.get(start..self.pos).ok_or(JsonError::Syntax {
            offset: start,
            reason: "invalid number",
        })?;
        if integer {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::Number(n.into()));
            }
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Value::Number(n.into()));
            }
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or(JsonError::NumberOutOfRange { offset: start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Result<Value, JsonError> {
        parse(s.as_bytes(), &JsonLimits::with_max_size(1 << 20))
    }

    #[test]
    fn parses_valid_json() {
        let v = p(r#" {"a": [1, -2, 3.5, 1e2, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"], "b": {}} "#)
            .unwrap();
        assert_eq!(
            v,
            json!({"a": [1, -2, 3.5, 100.0, true, false, null, "x\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}"], "b": {}})
        );
        assert_eq!(p("0").unwrap(), json!(0));
        assert_eq!(p("-0").unwrap(), json!(0));
        assert_eq!(p("\"\"").unwrap(), json!(""));
        assert_eq!(p("[]").unwrap(), json!([]));
        assert_eq!(p("18446744073709551615").unwrap(), json!(u64::MAX));
        assert_eq!(p("-9223372036854775808").unwrap(), json!(i64::MIN));
        // Beyond u64: a (lossy but representable) double.
        assert!(p("18446744073709551616").unwrap().is_f64());
        assert_eq!(p("\"é😀\"").unwrap(), json!("é😀"));
    }

    #[test]
    fn duplicate_members_are_refused() {
        assert!(
            matches!(p(r#"{"a":1,"a":2}"#), Err(JsonError::DuplicateMember { name, .. }) if name == "a")
        );
        // Compared after unescaping.
        assert!(matches!(
            p(r#"{"a":1,"\u0061":2}"#),
            Err(JsonError::DuplicateMember { .. })
        ));
        // Nested objects too.
        assert!(matches!(
            p(r#"[{"x":{"b":1,"b":1}}]"#),
            Err(JsonError::DuplicateMember { .. })
        ));
        // Same name in different objects is fine.
        assert!(p(r#"{"a":{"a":1},"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "",
            " ",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            "{'a':1}",
            "01",
            "1.",
            ".5",
            "1e",
            "+1",
            "NaN",
            "Infinity",
            "-",
            "tru",
            "nul",
            "\"abc",
            "\"\\x\"",
            "\"\\u12G4\"",
            "{\"a\" 1}",
            "{1:2}",
            "[1]]",
            "1 2",
            "/* c */ 1",
            "\"a\u{1}\"",
            "\"tab\there\"",
        ] {
            assert!(
                matches!(p(bad), Err(JsonError::Syntax { .. })),
                "{bad:?} -> {:?}",
                p(bad)
            );
        }
    }

    #[test]
    fn unicode_rules() {
        assert!(matches!(
            parse(b"\"\xff\"", &JsonLimits::with_max_size(10)),
            Err(JsonError::InvalidUtf8 { offset: 1 })
        ));
        // CESU-8 encoded surrogate.
        assert!(matches!(
            parse(b"\"\xed\xa0\x80\"", &JsonLimits::with_max_size(10)),
            Err(JsonError::InvalidUtf8 { .. })
        ));
        assert!(matches!(p("\u{feff}{}"), Err(JsonError::Syntax { .. })));
        for bad in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800x""#,
            r#""\ud800\u0041""#,
            r#""\uffff""#,
            r#""\ufdd0""#,
            r#""\ud83f\udffe""#,
        ] {
            assert!(
                matches!(p(bad), Err(JsonError::InvalidCodePoint { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            p("\"\u{FFFE}\""),
            Err(JsonError::InvalidCodePoint { .. })
        ));
        assert!(matches!(
            p("{\"\u{FDEF}\":1}"),
            Err(JsonError::InvalidCodePoint { .. })
        ));
        assert!(p("\"\u{FFFD}\u{FDCF}\u{FDF0}\"").is_ok());
    }

    #[test]
    fn numbers_out_of_range() {
        assert!(matches!(
            p("1e400"),
            Err(JsonError::NumberOutOfRange { offset: 0 })
        ));
        assert!(matches!(
            p("[-1e999]"),
            Err(JsonError::NumberOutOfRange { offset: 1 })
        ));
        assert_eq!(p("1e-400").unwrap(), json!(0.0));
    }

    #[test]
    fn limits() {
        assert_eq!(
            parse(b"[1, 2]", &JsonLimits::with_max_size(5)),
            Err(JsonError::TooLarge { size: 6, limit: 5 })
        );
        assert!(parse(b"[1,2]", &JsonLimits::with_max_size(5)).is_ok());
        let deep_ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(p(&deep_ok).is_ok());
        let too_deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(p(&too_deep), Err(JsonError::TooDeep { limit: 64 }));
        let objects = format!("{}1{}", "{\"a\":".repeat(65), "}".repeat(65));
        assert_eq!(p(&objects), Err(JsonError::TooDeep { limit: 64 }));
        // Hostile depth does not overflow the stack.
        let hostile = "[".repeat(1_000_000);
        assert!(matches!(
            parse(hostile.as_bytes(), &JsonLimits::with_max_size(usize::MAX)),
            Err(JsonError::TooDeep { .. })
        ));
    }

    #[test]
    fn duplicate_name_is_truncated_in_error() {
        let long = "x".repeat(500);
        let doc = format!("{{\"{long}\":1,\"{long}\":2}}");
        match p(&doc) {
            Err(JsonError::DuplicateMember { name, .. }) => assert_eq!(name.len(), 64),
            other => panic!("{other:?}"),
        }
    }
}
