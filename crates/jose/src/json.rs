//! Strict JSON for JOSE headers, claims and key sets.
//!
//! RFC 7515 §5.2 lets a parser either reject duplicate member names or take the last one. Taking
//! the last one means two parsers can read different claims out of the same token (one sees
//! `"sub":"alice"`, the next `"sub":"admin"`), so Keyscope rejects duplicates at every depth
//! (names compared after unescaping). Nesting is bounded, and the text must be UTF-8 without
//! lone surrogates, with nothing after the value.
//!
//! The checks live in one place, a scanner that validates the whole text without building it.
//! Validation of every token goes through the scanner alone ([`scan_object`]), which locates the
//! top-level members and decodes only the ones that are asked for; building a
//! `serde_json::Value` ([`parse_value`]) scans first and then lets serde_json build from text
//! already known to be strict.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value};
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

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// A validated JSON value, located in its text but not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawValue<'a> {
    kind: Kind,
    text: &'a str,
}

impl<'a> RawValue<'a> {
    /// The value's JSON type.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The value's exact JSON text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The decoded string, for a string value. Borrowed unless it contains escapes.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        if self.kind != Kind::String {
            return None;
        }
        // The scan already validated the string: without escapes it is its own content.
        if !self.text.contains('\\') {
            return self
                .text
                .get(1..self.text.len().saturating_sub(1))
                .map(Cow::Borrowed);
        }
        let mut scanner = Scanner::new(self.text);
        scanner.pos = 1;
        scanner.string(true).ok()
    }

    /// The number, for a number value: integers exactly, other values as `f64`.
    pub fn as_number(&self) -> Option<Number> {
        if self.kind != Kind::Number {
            return None;
        }
        // Common case first: a short integer, accumulated without the generic parser.
        let (negative, digits) = match self.text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.text),
        };
        if digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()) {
            let magnitude = digits
                .bytes()
                .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
            return Some(Number::Int(if negative { -magnitude } else { magnitude }));
        }
        self.text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Number::Float)
    }

    /// The elements of an array value.
    pub fn array_items(&self) -> Option<Vec<RawValue<'a>>> {
        if self.kind != Kind::Array {
            return None;
        }
        let mut scanner = Scanner::new(self.text);
        let mut items = Vec::new();
        scanner.array(0, Some(&mut items)).ok()?;
        Some(items)
    }
}

/// A JSON number, as far as JOSE needs one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// Fits an `i64` exactly.
    Int(i64),
    /// Anything else (finite).
    Float(f64),
}

impl Number {
    /// Whole seconds since the epoch (fractions floored), or `None` beyond ±2^53, where a
    /// value is no time and would lose precision.
    pub fn as_numeric_date(self) -> Option<i64> {
        const LIMIT: i64 = 1 << 53;
        let seconds = match self {
            Number::Int(i) => i,
            Number::Float(f) if f.is_finite() && f.abs() < LIMIT as f64 => f.floor() as i64,
            Number::Float(_) => return None,
        };
        (seconds.abs() < LIMIT).then_some(seconds)
    }
}

/// A validated JSON object: its members, located but not decoded.
#[derive(Debug, Clone)]
pub struct ObjectView<'a> {
    members: Vec<(Cow<'a, str>, RawValue<'a>)>,
}

impl<'a> ObjectView<'a> {
    /// The member of this name.
    pub fn get(&self, name: &str) -> Option<RawValue<'a>> {
        self.members
            .iter()
            .find(|(member, _)| member == name)
            .map(|(_, value)| *value)
    }

    /// Whether the member exists.
    pub fn contains(&self, name: &str) -> bool {
        self.members.iter().any(|(member, _)| member == name)
    }

    /// All members in document order (names unescaped).
    pub fn members(&self) -> &[(Cow<'a, str>, RawValue<'a>)] {
        &self.members
    }

    /// The member's string value; `None` when absent or not a string.
    pub fn get_str(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).and_then(|v| v.as_str())
    }
}

/// Validates `bytes` as one strict JSON object and locates its members.
pub fn scan_object(bytes: &[u8]) -> Result<ObjectView<'_>, JsonError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| JsonError::Syntax(format!("not UTF-8 ({e})")))?;
    let mut scanner = Scanner::new(text);
    scanner.whitespace();
    let mut members = Vec::with_capacity(16);
    let kind = if scanner.peek() == Some(b'{') {
        scanner.object(0, Some(&mut members))?
    } else {
        scanner.value(0)?
    };
    scanner.end()?;
    if kind != Kind::Object {
        return Err(JsonError::NotObject);
    }
    Ok(ObjectView { members })
}

/// Validates `bytes` as one strict JSON value of any type.
pub fn validate(bytes: &[u8]) -> Result<Kind, JsonError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| JsonError::Syntax(format!("not UTF-8 ({e})")))?;
    let mut scanner = Scanner::new(text);
    scanner.whitespace();
    let kind = scanner.value(0)?;
    scanner.end()?;
    Ok(kind)
}

/// Parses one strict JSON value into a `serde_json::Value`.
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    validate(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| JsonError::Syntax(e.to_string()))
}

/// Parses a strict JSON object into a `serde_json` map.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotObject),
    }
}

fn syntax<T>(what: &str, at: usize) -> Result<T, JsonError> {
    Err(JsonError::Syntax(format!("{what} at byte {at}")))
}

/// Member names seen in one object. Names are compared by a cheap hash first, so that the
/// usual case (all names distinct) costs no string comparison; a large object (an attacker's
/// thousands of members) switches to a hash set so that the check stays linear.
struct SeenNames<'a> {
    list: Vec<(u64, Cow<'a, str>)>,
    set: Option<HashSet<Cow<'a, str>>>,
}

impl<'a> SeenNames<'a> {
    const LINEAR_LIMIT: usize = 16;

    fn new() -> Self {
        SeenNames {
            list: Vec::with_capacity(Self::LINEAR_LIMIT),
            set: None,
        }
    }

    fn quick_hash(name: &str) -> u64 {
        // FNV-1a: fast on short names; collisions only cost a string comparison.
        name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// Records a name; `false` if it was already there.
    fn insert(&mut self, name: Cow<'a, str>) -> bool {
        if let Some(set) = &mut self.set {
            return set.insert(name);
        }
        let hash = Self::quick_hash(&name);
        if self
            .list
            .iter()
            .any(|(h, seen)| *h == hash && *seen == name)
        {
            return false;
        }
        self.list.push((hash, name));
        if self.list.len() > Self::LINEAR_LIMIT {
            self.set = Some(self.list.drain(..).map(|(_, name)| name).collect());
        }
        true
    }
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn end(&mut self) -> Result<(), JsonError> {
        self.whitespace();
        if self.pos != self.bytes.len() {
            return syntax("trailing characters", self.pos);
        }
        Ok(())
    }

    fn slice(&self, start: usize) -> &'a str {
        self.text.get(start..self.pos).unwrap_or_default()
    }

    fn value(&mut self, depth: usize) -> Result<Kind, JsonError> {
        match self.peek() {
            Some(b'{') => self.object(depth, None),
            Some(b'[') => self.array(depth, None),
            Some(b'"') => {
                self.pos += 1;
                self.string(false).map(|_| Kind::String)
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Kind::Bool),
            Some(b'f') => self.literal("false", Kind::Bool),
            Some(b'n') => self.literal("null", Kind::Null),
            Some(_) => syntax("unexpected character", self.pos),
            None => syntax("unexpected end", self.pos),
        }
    }

    fn literal(&mut self, word: &str, kind: Kind) -> Result<Kind, JsonError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word.as_bytes()) {
            self.pos += word.len();
            Ok(kind)
        } else {
            syntax("invalid literal", self.pos)
        }
    }

    /// `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`, and finite as a double.
    fn number(&mut self) -> Result<Kind, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return syntax("invalid number", start),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return syntax("invalid number", start);
            }
            self.digits();
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return syntax("invalid number", start);
            }
            self.digits();
        }
        // Numbers that overflow a double have no faithful value anywhere downstream.
        // Only an exponent or more than 300 digits can leave the range of a double.
        let text = self.slice(start);
        if (exponent || text.len() > 300) && !text.parse::<f64>().is_ok_and(f64::is_finite) {
            return syntax("number out of range", start);
        }
        Ok(Kind::Number)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn enter(depth: usize) -> Result<usize, JsonError> {
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        Ok(depth)
    }

    fn array(
        &mut self,
        depth: usize,
        mut items: Option<&mut Vec<RawValue<'a>>>,
    ) -> Result<Kind, JsonError> {
        let depth = Self::enter(depth)?;
        self.pos += 1; // '['
        self.whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Kind::Array);
        }
        loop {
            self.whitespace();
            let start = self.pos;
            let kind = self.value(depth)?;
            if let Some(items) = items.as_deref_mut() {
                items.push(RawValue {
                    kind,
                    text: self.slice(start),
                });
            }
            self.whitespace();
            match self.next() {
                Some(b',') => {}
                Some(b']') => return Ok(Kind::Array),
                _ => return syntax("expected ',' or ']'", self.pos.saturating_sub(1)),
            }
        }
    }

    fn object(
        &mut self,
        depth: usize,
        mut members: Option<&mut Vec<(Cow<'a, str>, RawValue<'a>)>>,
    ) -> Result<Kind, JsonError> {
        let depth = Self::enter(depth)?;
        self.pos += 1; // '{'
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Kind::Object);
        }
        let mut seen = SeenNames::new();
        loop {
            self.whitespace();
            if self.next() != Some(b'"') {
                return syntax("expected a member name", self.pos.saturating_sub(1));
            }
            let name = self.string(true)?;
            if !seen.insert(name.clone()) {
                return Err(JsonError::DuplicateMember(name.into_owned()));
            }
            self.whitespace();
            if self.next() != Some(b':') {
                return syntax("expected ':'", self.pos.saturating_sub(1));
            }
            self.whitespace();
            let start = self.pos;
            let kind = self.value(depth)?;
            if let Some(members) = members.as_deref_mut() {
                members.push((
                    name,
                    RawValue {
                        kind,
                        text: self.slice(start),
                    },
                ));
            }
            self.whitespace();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => return Ok(Kind::Object),
                _ => return syntax("expected ',' or '}'", self.pos.saturating_sub(1)),
            }
        }
    }

    /// Scans a string whose opening quote has been consumed. With `decode`, returns its
    /// unescaped content (borrowed when there are no escapes); without, validates only.
    fn string(&mut self, decode: bool) -> Result<Cow<'a, str>, JsonError> {
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run_start = start;
        loop {
            self.skip_plain_string_bytes();
            let Some(byte) = self.next() else {
                return syntax("unterminated string", start);
            };
            match byte {
                b'"' => {
                    let run = self.text.get(run_start..self.pos - 1).unwrap_or_default();
                    return Ok(match owned {
                        Some(mut text) => {
                            text.push_str(run);
                            Cow::Owned(text)
                        }
                        None => Cow::Borrowed(run),
                    });
                }
                b'\\' => {
                    let escape_at = self.pos - 1;
                    let decoded = self.escape()?;
                    if decode {
                        let text = owned.get_or_insert_with(String::new);
                        text.push_str(self.text.get(run_start..escape_at).unwrap_or_default());
                        text.push(decoded);
                    }
                    run_start = self.pos;
                }
                0x00..=0x1f => return syntax("control character in string", self.pos - 1),
                _ => {}
            }
        }
    }

    /// Skips string bytes that need no attention (anything but `"`, `\\` and controls), eight
    /// at a time: strings are most of a token's claims, and this loop is on the hot path.
    fn skip_plain_string_bytes(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        // Exact tests for "some byte is zero" and "some byte is below 0x20" (the classic
        // bit tricks; exact as to whether such a byte exists, which is all that is used).
        let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let special = has_zero(v ^ (ONES * u64::from(b'"')))
                | has_zero(v ^ (ONES * u64::from(b'\\')))
                | (v.wrapping_sub(ONES * 0x20) & !v & HIGHS);
            if special != 0 {
                break;
            }
            self.pos += 8;
        }
        while let Some(&byte) = self.bytes.get(self.pos) {
            if byte == b'"' || byte == b'\\' || byte < 0x20 {
                return;
            }
            self.pos += 1;
        }
    }

    fn escape(&mut self) -> Result<char, JsonError> {
        let at = self.pos;
        let simple = match self.next() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = self.hex4()?;
                return match unit {
                    0xd800..=0xdbff => {
                        if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                            return syntax("lone surrogate", at);
                        }
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return syntax("lone surrogate", at);
                        }
                        let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                        char::from_u32(code).map_or_else(|| syntax("invalid escape", at), Ok)
                    }
                    0xdc00..=0xdfff => syntax("lone surrogate", at),
                    _ => char::from_u32(unit).map_or_else(|| syntax("invalid escape", at), Ok),
                };
            }
            _ => return syntax("invalid escape", at),
        };
        Ok(simple)
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = match self.next() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return syntax("invalid \\u escape", self.pos.saturating_sub(1)),
            };
            value = (value << 4) | u32::from(digit);
        }
        Ok(value)
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
        let view = scan_object(br#" {"a":1,"b":[true,null,"x\n",1.5e3],"c":{"d":-2}} "#).unwrap();
        assert_eq!(view.get("a").unwrap().as_number(), Some(Number::Int(1)));
        assert_eq!(view.get("c").unwrap().kind(), Kind::Object);
        let items = view.get("b").unwrap().array_items().unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[2].as_str().unwrap(), "x\n");
        assert_eq!(items[3].as_number(), Some(Number::Float(1500.0)));
    }

    #[test]
    fn decodes_escapes_in_names_and_values() {
        let view = scan_object(br#"{"\u0061lg":"E\u0053256","k":"\ud83d\ude00\"\\\/"}"#).unwrap();
        assert_eq!(view.get_str("alg").unwrap(), "ES256");
        assert_eq!(view.get_str("k").unwrap(), "\u{1f600}\"\\/");
        assert!(matches!(view.get_str("alg").unwrap(), Cow::Owned(_)));
        let plain = scan_object(br#"{"a":"plain"}"#).unwrap();
        assert!(matches!(
            plain.get_str("a").unwrap(),
            Cow::Borrowed("plain")
        ));
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
        // Past the linear limit the hashed path must catch it too.
        let many: Vec<String> = (0..40).map(|i| format!("\"m{i}\":{i}")).collect();
        let text = format!("{{{},\"m7\":0}}", many.join(","));
        assert_eq!(
            scan_object(text.as_bytes()).unwrap_err(),
            JsonError::DuplicateMember("m7".into())
        );
    }

    #[test]
    fn bounds_depth() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_value(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse_value(deep.as_bytes()), Err(JsonError::TooDeep));
        // Far deeper than any parser's recursion: still our precise error, no stack overflow.
        let abyss = "[".repeat(100_000);
        assert_eq!(parse_value(abyss.as_bytes()), Err(JsonError::TooDeep));
        let objects = format!("{}1", r#"{"a":"#.repeat(100_000));
        assert_eq!(
            scan_object(objects.as_bytes()).unwrap_err(),
            JsonError::TooDeep
        );
    }

    #[test]
    fn rejects_what_strict_json_forbids() {
        let bad: [&[u8]; 22] = [
            b"{\"a\":\"\xff\"}",
            b"{} {}",
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\udc00"}"#,
            br#"{"a":"\ud800\u0041"}"#,
            b"\xef\xbb\xbf{}",
            b"{\"a\":\"\x01\"}",
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":.5}"#,
            br#"{"a":1e}"#,
            br#"{"a":+1}"#,
            br#"{"a":1e400}"#,
            br#"{"a":NaN}"#,
            br#"{"a":tru}"#,
            br#"{"a":1,}"#,
            br#"{"a" 1}"#,
            br#"{a:1}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":"\x"}"#,
            br#"{'a':1}"#,
            b"",
        ];
        for case in bad {
            assert!(
                matches!(scan_object(case), Err(JsonError::Syntax(_))),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotObject));
        assert_eq!(scan_object(b" 1 ").unwrap_err(), JsonError::NotObject);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_value(&bytes);
            let _ = scan_object(&bytes);
        }

        /// Whatever the scanner accepts, serde_json parses to an object with the same members.
        #[test]
        fn agrees_with_serde_json(text in r#"\{("[a-c\\u]{0,3}":(-?[0-9]{1,3}(\.[0-9])?|"[a-z\\"]{0,3}"|\[[0-9,]{0,5}\]|true|null)[, ]{0,2}){0,4}\}"#) {
            if let Ok(view) = scan_object(text.as_bytes()) {
                let map: Map<String, Value> = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(map.len(), view.members().len());
                for (name, raw) in view.members() {
                    let parsed: Value = serde_json::from_str(raw.text()).unwrap();
                    prop_assert_eq!(Some(&parsed), map.get(name.as_ref()));
                    if let Some(s) = raw.as_str() {
                        prop_assert_eq!(Some(s.as_ref()), parsed.as_str());
                    }
                }
            }
        }
    }
}
