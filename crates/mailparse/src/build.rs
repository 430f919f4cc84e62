//! Building the raw message for a JMAP `Email/set` create (RFC 8621 §4.6).
//!
//! [`build_message`] validates an Email object given by a client, fetches
//! the blobs its body parts reference through a callback and serialises
//! an RFC 5322 message with the `mail-builder` crate (MIME tree, transfer
//! encodings, RFC 2047 header encoding, boundaries). Top-level header
//! fields are written here so that `header:{name}:asRaw` values reach the
//! message octet for octet.
//!
//! Rules applied (RFC 8621 §4.6, plus the limits of this implementation):
//!
//! * `mailboxIds`, `keywords` and `receivedAt` belong to the store and are
//!   ignored; the server-set `id`, `blobId`, `threadId`, `size`,
//!   `hasAttachment` and `preview` are invalid, and so is `headers`, on the
//!   Email and on every EmailBodyPart ("the client must set each header
//!   field as an individual property"). Unknown properties are invalid.
//! * Header properties may only use the `asRaw` or `asText` forms (with or
//!   without `:all`), and only forms RFC 8621 §4.1.2 allows for the field.
//!   No two properties may represent the same header field. `Content-*`
//!   fields may not be set on the Email; on an EmailBodyPart the fields
//!   derived from its properties (`Content-Type`, `Content-Disposition`,
//!   `Content-ID`, `Content-Language`, `Content-Location`) and
//!   `Content-Transfer-Encoding` may not be set. The root body part may
//!   not repeat a header field given on the Email.
//! * `bodyStructure` excludes `textBody`, `htmlBody` and `attachments`.
//!   `textBody` holds at most one `text/plain` part, `htmlBody` at most one
//!   `text/html` part; both give `multipart/alternative`, and attachments
//!   wrap the body in `multipart/mixed`. Without any body an empty
//!   `text/plain` body is written.
//! * A leaf part has exactly one of `partId` (whose text is
//!   `bodyValues[partId].value`; `charset` and `size` must then be
//!   omitted) and `blobId` (fetched through the callback; `size` is
//!   ignored). `bodyValues` entries may not have `isEncodingProblem` or
//!   `isTruncated` set to true.
//! * Line breaks in `bodyValues` text (LF, CRLF or a lone CR) are written
//!   as CRLF, so they read back as LF.
//! * The message is at most [`Limits::max_size`] octets; `bodyStructure`
//!   nests at most [`Limits::max_depth`] levels and has at most
//!   [`Limits::max_parts`] parts.
//!
//! Defaults: `sentAt` absent or null gives a `Date` from the caller's
//! clock; `messageId` absent, null or empty gives a generated
//! `<random@domain>`; a leaf part without `type` is `text/plain` when it
//! has a `partId` and `application/octet-stream` when it has a `blobId`;
//! a part with `subParts` defaults to `multipart/mixed`. `name` goes into
//! the `filename` parameter of `Content-Disposition` when a `disposition`
//! is given, else into the `name` parameter of `Content-Type`. Raw values
//! of header properties on body parts are unfolded and stripped of leading
//! white space (the serialiser refolds them).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use mail_builder::headers::{
    Header, HeaderType, address::Address, content_type::ContentType, message_id::MessageId,
    raw::Raw, text::Text,
};
use mail_builder::mime::{BodyPart, MimePart};
use serde_json::{Map, Value, json};

use crate::{HeaderForm, Limits, form_allowed, parse_header_property};

/// Why [`build_message`] refused to build a message: what a JMAP server
/// needs to report the `SetError` of an `Email/set` create.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// `invalidProperties`: some properties are malformed or break a rule
    /// of RFC 8621 §4.6.
    #[error("invalid properties {properties:?}: {description}")]
    InvalidProperties {
        /// The offending top-level property names, without duplicates.
        properties: Vec<String>,
        /// What is wrong, for a human.
        description: String,
    },
    /// `blobNotFound`: blobs referenced by body parts do not exist.
    #[error("blobs not found: {}", blob_ids.join(", "))]
    BlobNotFound {
        /// Every missing blob id, without duplicates (the `notFound` list).
        blob_ids: Vec<String>,
    },
    /// `tooLarge`: the message would exceed the size limit.
    #[error("the message would be larger than {limit} octets")]
    TooLarge {
        /// The configured limit ([`Limits::max_size`]).
        limit: usize,
    },
}

impl BuildError {
    /// The JMAP `SetError` type: `invalidProperties`, `blobNotFound` or `tooLarge`.
    pub fn set_error_type(&self) -> &'static str {
        match self {
            Self::InvalidProperties { .. } => "invalidProperties",
            Self::BlobNotFound { .. } => "blobNotFound",
            Self::TooLarge { .. } => "tooLarge",
        }
    }

    /// A human description of the error.
    pub fn description(&self) -> String {
        match self {
            Self::InvalidProperties { description, .. } => description.clone(),
            other => other.to_string(),
        }
    }

    /// The `SetError` object (RFC 8620 §5.3, RFC 8621 §4.6): `type`,
    /// `description`, plus `properties` or `notFound` where they apply.
    pub fn to_set_error(&self) -> Value {
        let mut v = json!({
            "type": self.set_error_type(),
            "description": self.description(),
        });
        if let Value::Object(map) = &mut v {
            match self {
                Self::InvalidProperties { properties, .. } => {
                    map.insert("properties".into(), json!(properties));
                }
                Self::BlobNotFound { blob_ids } => {
                    map.insert("notFound".into(), json!(blob_ids));
                }
                Self::TooLarge { .. } => {}
            }
        }
        v
    }
}

/// Builds the raw message for an `Email/set` create with [`Limits::default`].
/// See [`build_message_with_limits`].
pub fn build_message(
    email: &Map<String, Value>,
    blobs: &dyn Fn(&str) -> Option<Vec<u8>>,
    now_rfc3339: &str,
    message_id_domain: &str,
) -> Result<Vec<u8>, BuildError> {
    build_message_with_limits(
        email,
        blobs,
        now_rfc3339,
        message_id_domain,
        &Limits::default(),
    )
}

/// Builds the raw RFC 5322 message for the Email object `email` of an
/// `Email/set` create (RFC 8621 §4.6; rules in the [module
/// documentation](self)).
///
/// `blobs` returns the octets of a blob id, or `None` if there is no such
/// blob. `now_rfc3339` (an RFC 3339 date-time) becomes the `Date` header
/// field when the Email has no `sentAt`; `message_id_domain` is the right
/// side of a generated Message-ID (`localhost` if it is not a valid domain
/// name). The result is at most `limits.max_size` octets and parses back
/// with [`crate::parse_message`] under the same `limits`. Never panics.
pub fn build_message_with_limits(
    email: &Map<String, Value>,
    blobs: &dyn Fn(&str) -> Option<Vec<u8>>,
    now_rfc3339: &str,
    message_id_domain: &str,
    limits: &Limits,
) -> Result<Vec<u8>, BuildError> {
    let mut cx = Ctx {
        blobs,
        limits,
        body_values: BTreeMap::new(),
        invalid: Vec::new(),
        missing: Vec::new(),
        content: 0,
        parts: 0,
        top_names: BTreeSet::new(),
    };
    let headers = cx.top_headers(email, now_rfc3339, message_id_domain);
    cx.body_values(email.get("bodyValues"));
    let root = cx.body(email)?;

    if !cx.invalid.is_empty() {
        let mut properties: Vec<String> = Vec::new();
        for (p, _) in &cx.invalid {
            if !properties.contains(p) {
                properties.push(p.clone());
            }
        }
        let description = cx
            .invalid
            .iter()
            .map(|(p, d)| format!("{p}: {d}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(BuildError::InvalidProperties {
            properties,
            description,
        });
    }
    if !cx.missing.is_empty() {
        return Err(BuildError::BlobNotFound {
            blob_ids: cx.missing,
        });
    }
    let Some(root) = root else {
        return Err(BuildError::InvalidProperties {
            properties: Vec::new(),
            description: "no body could be built".into(),
        });
    };

    let mut out: Vec<u8> = Vec::new();
    let has_mime_version = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("MIME-Version"));
    for (name, value) in &headers {
        out.extend_from_slice(name.as_bytes());
        match value {
            TopValue::Exact(raw) => {
                out.push(b':');
                out.extend_from_slice(raw.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            TopValue::Typed(h) => {
                out.extend_from_slice(b": ");
                h.write_header(&mut out, name.len() + 2)
                    .map_err(|_| serialise_failed())?;
            }
        }
    }
    if !has_mime_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut body: Vec<u8> = Vec::new();
        root.write_part(&mut body).map(|_| body)
    }));
    match written {
        Ok(Ok(body)) => out.extend_from_slice(&body),
        _ => return Err(serialise_failed()),
    }
    if out.len() > limits.max_size {
        return Err(BuildError::TooLarge {
            limit: limits.max_size,
        });
    }
    Ok(out)
}

fn serialise_failed() -> BuildError {
    BuildError::InvalidProperties {
        properties: Vec::new(),
        description: "the message could not be serialised".into(),
    }
}

// ---------------------------------------------------------------------------
// Value checks.
// ---------------------------------------------------------------------------

/// Single-line text: no control characters except TAB.
fn check_text(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err("must not contain control characters or line breaks".into());
    }
    Ok(())
}

/// A msg-id (or Content-ID) without angle brackets.
fn check_msg_id(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 900 {
        return Err("a message id must have 1 to 900 characters".into());
    }
    if !s
        .bytes()
        .all(|b| (33..=126).contains(&b) && b != b'<' && b != b'>')
    {
        return Err(format!(
            "message id {s:?} must be printable ASCII without spaces or angle brackets"
        ));
    }
    Ok(())
}

fn check_email(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(format!(
            "email {s:?} must be non-empty, without white space, control characters or angle brackets"
        ));
    }
    Ok(())
}

/// RFC 2045 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (33..=126).contains(&b) && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

fn check_media_type(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    match lower.split_once('/') {
        Some((t, st)) if is_token(t) && is_token(st) => Ok(lower),
        _ => Err(format!("{s:?} is not a media type (type/subtype)")),
    }
}

/// A raw header field value: folding only as CRLF followed by white space
/// and some text, no other control characters.
fn check_raw(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\r' => {
                let folded = b.get(i + 1) == Some(&b'\n')
                    && matches!(b.get(i + 2), Some(b' ' | b'\t'))
                    && b.get(i + 2..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(|&&x| x != b'\r')
                        .any(|x| !matches!(x, b' ' | b'\t'));
                if !folded {
                    return Err(
                        "line breaks are only allowed as CRLF followed by white space and text"
                            .into(),
                    );
                }
                i += 2;
            }
            b'\t' => i += 1,
            c if c < 0x20 || c == 0x7f => {
                return Err("must not contain control characters".into());
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Removes folding (CRLF before white space) and leading white space.
fn unfold(s: &str) -> String {
    s.replace("\r\n", "").trim_start().to_string()
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !d.starts_with('.')
        && !d.ends_with('.')
}

fn random_token(seed: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let state = RandomState::new();
    let mut out = String::with_capacity(32);
    for lane in 0u8..2 {
        let mut h = state.build_hasher();
        h.write_u64(n);
        h.write_u8(lane);
        h.write(seed.as_bytes());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

// ---------------------------------------------------------------------------
// Dates.
// ---------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &str, from: usize, len: usize) -> Option<u32> {
    let part = s.get(from..from + len)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// RFC 3339 `date-time` to an RFC 5322 `date-time` in the same offset
/// (fractional seconds dropped).
fn rfc3339_to_rfc5322(s: &str) -> Option<String> {
    const DOW: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let year = i64::from(digits(s, 0, 4)?);
    let month = digits(s, 5, 2)?;
    let day = digits(s, 8, 2)?;
    let hour = digits(s, 11, 2)?;
    let minute = digits(s, 14, 2)?;
    let second = digits(s, 17, 2)?;
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = frac.get(n..)?;
    }
    let zone = match rest {
        "Z" | "z" => "+0000".to_string(),
        _ => {
            let sign = rest.get(..1).filter(|c| *c == "+" || *c == "-")?;
            if rest.len() != 6 || rest.get(3..4) != Some(":") {
                return None;
            }
            let oh = digits(rest, 1, 2)?;
            let om = digits(rest, 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            format!("{sign}{oh:02}{om:02}")
        }
    };
    if !(1900..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let dow = DOW.get(usize::try_from(days.rem_euclid(7)).ok()?)?;
    let mon = MON.get(usize::try_from(month - 1).ok()?)?;
    Some(format!(
        "{dow}, {day} {mon} {year:04} {hour:02}:{minute:02}:{second:02} {zone}"
    ))
}

// ---------------------------------------------------------------------------
// The builder.
// ---------------------------------------------------------------------------

/// A top-level header field value.
enum TopValue {
    /// Written as `Name:` + the value, octet for octet.
    Exact(String),
    /// Written as `Name: ` + the encoded value.
    Typed(HeaderType<'static>),
}

/// What a body part must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Any,
    Text,
    Html,
}

/// Convenience properties and the header fields they represent.
const CONVENIENCE: [(&str, &str); 11] = [
    ("from", "From"),
    ("sender", "Sender"),
    ("replyTo", "Reply-To"),
    ("to", "To"),
    ("cc", "Cc"),
    ("bcc", "Bcc"),
    ("subject", "Subject"),
    ("sentAt", "Date"),
    ("messageId", "Message-ID"),
    ("inReplyTo", "In-Reply-To"),
    ("references", "References"),
];

const STORE_OWNED: [&str; 3] = ["mailboxIds", "keywords", "receivedAt"];
const SERVER_SET: [&str; 6] = [
    "id",
    "blobId",
    "threadId",
    "size",
    "hasAttachment",
    "preview",
];
const BODY_PROPS: [&str; 5] = [
    "bodyStructure",
    "textBody",
    "htmlBody",
    "attachments",
    "bodyValues",
];
/// Header fields of a body part derived from its properties.
const DERIVED: [&str; 6] = [
    "content-type",
    "content-disposition",
    "content-id",
    "content-language",
    "content-location",
    "content-transfer-encoding",
];

struct Ctx<'a> {
    blobs: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    limits: &'a Limits,
    body_values: BTreeMap<String, String>,
    /// (top-level property, description)
    invalid: Vec<(String, String)>,
    missing: Vec<String>,
    /// Content octets gathered so far.
    content: usize,
    /// Body parts seen so far.
    parts: usize,
    /// Lower-case names of the header fields set on the Email.
    top_names: BTreeSet<String>,
}

/// One value of a `header:` property: the instances it sets.
fn header_instances(v: &Value, all: bool) -> Result<Vec<&str>, String> {
    match (v, all) {
        (Value::Null, _) => Ok(Vec::new()),
        (Value::String(s), false) => Ok(vec![s.as_str()]),
        (Value::Array(items), true) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .ok_or_else(|| "instances must be strings".to_string())
            })
            .collect(),
        (_, false) => Err("must be a string or null".into()),
        (_, true) => Err("must be an array of strings or null".into()),
    }
}

/// A header field value in the given form (asRaw or asText).
fn header_value(instance: &str, form: HeaderForm, top_level: bool) -> Result<TopValue, String> {
    match form {
        HeaderForm::Raw => {
            check_raw(instance)?;
            if top_level {
                Ok(TopValue::Exact(instance.to_string()))
            } else {
                Ok(TopValue::Typed(Raw::new(unfold(instance)).into()))
            }
        }
        HeaderForm::Text => {
            check_text(instance)?;
            Ok(TopValue::Typed(Text::new(instance.to_string()).into()))
        }
        _ => Err("only the asRaw and asText forms can be set".into()),
    }
}

fn parse_addresses(v: &Value) -> Result<Vec<Address<'static>>, String> {
    let Value::Array(items) = v else {
        return Err("must be an array of EmailAddress objects or null".into());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(format!("item {i} is not an EmailAddress object"));
        };
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) => {
                check_text(n).map_err(|e| format!("item {i} name {e}"))?;
                let n = n.trim();
                (!n.is_empty()).then(|| n.to_string())
            }
            Some(_) => return Err(format!("item {i} name must be a string or null")),
        };
        let Some(Value::String(email)) = obj.get("email") else {
            return Err(format!("item {i} needs an email string"));
        };
        let email = email.trim();
        check_email(email).map_err(|e| format!("item {i}: {e}"))?;
        out.push(Address::new_address(name, email.to_string()));
    }
    Ok(out)
}

fn parse_ids(v: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err("must be an array of message ids or null".into());
    };
    items
        .iter()
        .map(|i| {
            let s = i.as_str().ok_or("message ids must be strings")?;
            check_msg_id(s)?;
            Ok(s.to_string())
        })
        .collect()
}

impl Ctx<'_> {
    fn bad(&mut self, property: &str, description: impl Into<String>) {
        self.invalid
            .push((property.to_string(), description.into()));
    }

    /// Validates the top-level properties and returns the header fields.
    fn top_headers(
        &mut self,
        email: &Map<String, Value>,
        now: &str,
        domain: &str,
    ) -> Vec<(String, TopValue)> {
        // Which properties represent which header field.
        let mut by_field: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for key in email.keys() {
            if let Some((_, field)) = CONVENIENCE.iter().find(|(p, _)| p == key) {
                by_field
                    .entry(field.to_ascii_lowercase())
                    .or_default()
                    .push(key);
            } else if let Some(hp) = parse_header_property(key) {
                by_field
                    .entry(hp.name.to_ascii_lowercase())
                    .or_default()
                    .push(key);
            }
        }
        for (field, props) in &by_field {
            if props.len() > 1 {
                for p in props {
                    self.bad(
                        p,
                        format!("header field {field} is given by more than one property"),
                    );
                }
            }
        }
        self.top_names = by_field.keys().cloned().collect();

        let mut out: Vec<(String, TopValue)> = Vec::new();
        // Convenience properties, in a conventional order.
        for (prop, field) in CONVENIENCE {
            let Some(v) = email.get(prop).filter(|v| !v.is_null()) else {
                continue;
            };
            let value: Result<Option<HeaderType<'static>>, String> = match prop {
                "subject" => match v {
                    Value::String(s) => check_text(s).map(|()| Some(Text::new(s.clone()).into())),
                    _ => Err("must be a string or null".into()),
                },
                "sentAt" => match v.as_str().and_then(rfc3339_to_rfc5322) {
                    Some(d) => Ok(Some(Raw::new(d).into())),
                    None => Err("must be an RFC 3339 date-time or null".into()),
                },
                "messageId" | "inReplyTo" | "references" => parse_ids(v).map(|ids| {
                    (!ids.is_empty()).then(|| MessageId::new_list(ids.into_iter()).into())
                }),
                _ => parse_addresses(v)
                    .map(|list| (!list.is_empty()).then(|| Address::new_list(list).into())),
            };
            match value {
                Ok(Some(h)) => out.push((field.to_string(), TopValue::Typed(h))),
                Ok(None) => {}
                Err(e) => self.bad(prop, e),
            }
        }

        // Everything else.
        for (key, v) in email {
            let key = key.as_str();
            if CONVENIENCE.iter().any(|(p, _)| *p == key)
                || STORE_OWNED.contains(&key)
                || BODY_PROPS.contains(&key)
            {
                continue;
            }
            if SERVER_SET.contains(&key) {
                self.bad(key, "is set by the server");
                continue;
            }
            if key == "headers" {
                self.bad(
                    key,
                    "must not be given: set each header field as a header:{name} property",
                );
                continue;
            }
            let Some(hp) = parse_header_property(key) else {
                self.bad(key, "is not an Email property");
                continue;
            };
            if hp.name.to_ascii_lowercase().starts_with("content-") {
                self.bad(key, "Content-* header fields can only be set on body parts");
                continue;
            }
            if !matches!(hp.form, HeaderForm::Raw | HeaderForm::Text) {
                self.bad(key, "only the asRaw and asText forms can be set");
                continue;
            }
            if !form_allowed(&hp.name, hp.form) {
                self.bad(key, "this form is not allowed for this header field");
                continue;
            }
            let instances = match header_instances(v, hp.all) {
                Ok(i) => i,
                Err(e) => {
                    self.bad(key, e);
                    continue;
                }
            };
            for instance in instances {
                match header_value(instance, hp.form, true) {
                    Ok(value) => out.push((hp.name.clone(), value)),
                    Err(e) => self.bad(key, e),
                }
            }
        }

        // Defaults for Date and Message-ID.
        let has = |out: &[(String, TopValue)], n: &str| {
            out.iter().any(|(k, _)| k.eq_ignore_ascii_case(n))
        };
        if !has(&out, "Date") {
            match rfc3339_to_rfc5322(now) {
                Some(d) => out.push(("Date".into(), TopValue::Typed(Raw::new(d).into()))),
                None => self.bad(
                    "sentAt",
                    format!("not given, and the server time {now:?} is not an RFC 3339 date-time"),
                ),
            }
        }
        if !has(&out, "Message-ID") && !self.invalid.iter().any(|(p, _)| p == "messageId") {
            let domain = if valid_domain(domain) {
                domain
            } else {
                "localhost"
            };
            let id = format!("{}@{domain}", random_token(now));
            out.push((
                "Message-ID".into(),
                TopValue::Typed(MessageId::new(id).into()),
            ));
        }
        // The root body part shares the header block: it may not repeat
        // these either.
        for n in ["date", "message-id", "mime-version"] {
            self.top_names.insert(n.to_string());
        }
        out
    }

    fn body_values(&mut self, v: Option<&Value>) {
        const P: &str = "bodyValues";
        let map = match v {
            None | Some(Value::Null) => return,
            Some(Value::Object(map)) => map,
            Some(_) => {
                self.bad(P, "must be an object");
                return;
            }
        };
        for (id, bv) in map {
            let Value::Object(obj) = bv else {
                self.bad(P, format!("{id:?} is not an EmailBodyValue object"));
                continue;
            };
            for flag in ["isEncodingProblem", "isTruncated"] {
                match obj.get(flag) {
                    None | Some(Value::Bool(false)) => {}
                    Some(Value::Bool(true)) => {
                        self.bad(P, format!("{id:?}: {flag} must not be true"));
                    }
                    Some(_) => self.bad(P, format!("{id:?}: {flag} must be a boolean")),
                }
            }
            match obj.get("value") {
                Some(Value::String(s)) => {
                    self.body_values.insert(id.clone(), s.clone());
                }
                _ => self.bad(P, format!("{id:?}: value must be a string")),
            }
        }
    }

    /// The root body part, or `None` when an error was recorded.
    fn body(
        &mut self,
        email: &Map<String, Value>,
    ) -> Result<Option<MimePart<'static>>, BuildError> {
        let given = |k: &str| email.get(k).filter(|v| !v.is_null());
        let structure = given("bodyStructure");
        let triple: Vec<&str> = ["textBody", "htmlBody", "attachments"]
            .into_iter()
            .filter(|k| given(k).is_some())
            .collect();
        if let Some(s) = structure {
            if !triple.is_empty() {
                self.bad(
                    "bodyStructure",
                    "cannot be given with textBody, htmlBody or attachments",
                );
                for k in &triple {
                    self.bad(k, "cannot be given with bodyStructure");
                }
                return Ok(None);
            }
            return self.part(s, "bodyStructure", "bodyStructure", 0, Want::Any, true);
        }

        let single = |this: &mut Self, key: &str| -> Option<Option<&Value>> {
            match given(key) {
                None => Some(None),
                Some(Value::Array(items)) if items.len() <= 1 => Some(items.first()),
                Some(_) => {
                    this.bad(key, "must be an array of at most one EmailBodyPart");
                    None
                }
            }
        };
        let (Some(text), Some(html)) = (single(self, "textBody"), single(self, "htmlBody")) else {
            return Ok(None);
        };
        let attachments: &[Value] = match given("attachments") {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.bad("attachments", "must be an array of EmailBodyPart objects");
                return Ok(None);
            }
        };
        // The multipart/alternative and multipart/mixed containers built
        // here count against the part limit as well.
        self.parts += usize::from(text.is_some() && html.is_some());
        self.parts += usize::from(!attachments.is_empty());
        let text_is_root = html.is_none() && attachments.is_empty();
        let html_is_root = text.is_none() && attachments.is_empty();
        let text = match text {
            Some(v) => self.part(v, "textBody", "textBody/0", 0, Want::Text, text_is_root)?,
            None => None,
        };
        let html = match html {
            Some(v) => self.part(v, "htmlBody", "htmlBody/0", 0, Want::Html, html_is_root)?,
            None => None,
        };
        let mut atts = Vec::with_capacity(attachments.len());
        for (i, a) in attachments.iter().enumerate() {
            if let Some(p) = self.part(
                a,
                "attachments",
                &format!("attachments/{i}"),
                1,
                Want::Any,
                false,
            )? {
                atts.push(p);
            }
        }
        let body = match (text, html) {
            (Some(t), Some(h)) => Some(MimePart::new(
                ContentType::new("multipart/alternative"),
                vec![t, h],
            )),
            (t, h) => t.or(h),
        };
        if atts.is_empty() {
            return Ok(Some(body.unwrap_or_else(|| {
                MimePart::new(
                    ContentType::new("text/plain").attribute("charset", "utf-8"),
                    BodyPart::Text(String::new().into()),
                )
            })));
        }
        let mut children = Vec::with_capacity(atts.len() + 1);
        children.extend(body);
        children.extend(atts);
        Ok(Some(MimePart::new(
            ContentType::new("multipart/mixed"),
            children,
        )))
    }

    /// Builds one EmailBodyPart. `Ok(None)` when an error was recorded.
    fn part(
        &mut self,
        v: &Value,
        prop: &str,
        path: &str,
        depth: usize,
        want: Want,
        is_root: bool,
    ) -> Result<Option<MimePart<'static>>, BuildError> {
        let errors_before = self.invalid.len();
        let missing_before = self.missing.len();
        let Value::Object(obj) = v else {
            self.bad(prop, format!("{path} is not an EmailBodyPart object"));
            return Ok(None);
        };
        self.parts += 1;
        if self.parts > self.limits.max_parts {
            self.bad(
                prop,
                format!("more than {} body parts", self.limits.max_parts),
            );
            return Ok(None);
        }
        if depth > self.limits.max_depth {
            self.bad(
                prop,
                format!("{path}: nested deeper than {}", self.limits.max_depth),
            );
            return Ok(None);
        }

        let string = |this: &mut Self, key: &str| -> Option<String> {
            match obj.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    this.bad(prop, format!("{path}/{key} must be a string or null"));
                    None
                }
            }
        };
        let type_given = string(self, "type");
        let part_id = string(self, "partId");
        let blob_id = string(self, "blobId");
        let charset = string(self, "charset");
        let name = string(self, "name");
        let disposition = string(self, "disposition");
        let cid = string(self, "cid");
        let location = string(self, "location");
        let sub_parts = obj.get("subParts").filter(|v| !v.is_null());

        // Part-level headers, and unknown keys.
        let mut extra: Vec<(String, TopValue)> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (key, value) in obj {
            match key.as_str() {
                "type" | "partId" | "blobId" | "charset" | "name" | "disposition" | "cid"
                | "location" | "subParts" | "size" | "language" => continue,
                "headers" => {
                    self.bad(
                        prop,
                        format!("{path}/headers must not be given: use header:{{name}} properties"),
                    );
                    continue;
                }
                _ => {}
            }
            let Some(hp) = parse_header_property(key) else {
                self.bad(
                    prop,
                    format!("{path}/{key} is not an EmailBodyPart property"),
                );
                continue;
            };
            let lower = hp.name.to_ascii_lowercase();
            if DERIVED.contains(&lower.as_str()) {
                self.bad(
                    prop,
                    format!(
                        "{path}/{key}: {} is derived from the part's properties",
                        hp.name
                    ),
                );
                continue;
            }
            if !seen.insert(lower.clone()) {
                self.bad(
                    prop,
                    format!(
                        "{path}: header field {} is given by more than one property",
                        hp.name
                    ),
                );
                continue;
            }
            if is_root && self.top_names.contains(&lower) {
                self.bad(
                    prop,
                    format!(
                        "{path}/{key}: header field {} is already set on the Email",
                        hp.name
                    ),
                );
                continue;
            }
            if !form_allowed(&hp.name, hp.form) {
                self.bad(
                    prop,
                    format!("{path}/{key}: form not allowed for this header field"),
                );
                continue;
            }
            let instances = match header_instances(value, hp.all) {
                Ok(i) => i,
                Err(e) => {
                    self.bad(prop, format!("{path}/{key} {e}"));
                    continue;
                }
            };
            for instance in instances {
                match header_value(instance, hp.form, false) {
                    Ok(v) => extra.push((hp.name.clone(), v)),
                    Err(e) => self.bad(prop, format!("{path}/{key} {e}")),
                }
            }
        }

        let language: Option<Vec<String>> = match obj.get("language") {
            None | Some(Value::Null) => None,
            Some(Value::Array(tags))
                if tags.iter().all(|t| {
                    t.as_str().is_some_and(|t| {
                        !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
                }) =>
            {
                Some(
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                )
            }
            Some(_) => {
                self.bad(
                    prop,
                    format!("{path}/language must be an array of language tags"),
                );
                None
            }
        };
        let media_type = match type_given.as_deref().map(check_media_type) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                self.bad(prop, format!("{path}/type: {e}"));
                None
            }
            None => None,
        };
        let disposition = match disposition {
            Some(d) if is_token(d.trim()) => Some(d.trim().to_ascii_lowercase()),
            Some(d) => {
                self.bad(prop, format!("{path}/disposition {d:?} is not a token"));
                None
            }
            None => None,
        };
        if let Some(e) = name.as_deref().and_then(|n| check_text(n).err()) {
            self.bad(prop, format!("{path}/name {e}"));
        }
        if let Some(e) = cid.as_deref().and_then(|c| check_msg_id(c).err()) {
            self.bad(prop, format!("{path}/cid: {e}"));
        }
        if let Some(loc) = location.as_deref()
            && (loc.is_empty() || loc.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            self.bad(
                prop,
                format!("{path}/location must be a URI without white space"),
            );
        }
        if let Some(c) = charset.as_deref()
            && !is_token(c)
        {
            self.bad(prop, format!("{path}/charset {c:?} is not a token"));
        }

        let mut cte: Option<&'static str> = None;
        let mut part = if let Some(sub) = sub_parts {
            // A multipart.
            let mtype = media_type.unwrap_or_else(|| "multipart/mixed".to_string());
            if want != Want::Any {
                self.bad(
                    prop,
                    format!("{path} must be a single part, not a multipart"),
                );
            }
            if !mtype.starts_with("multipart/") {
                self.bad(
                    prop,
                    format!("{path}: a part with subParts must be multipart/*"),
                );
            }
            for (key, given) in [
                ("partId", part_id.is_some()),
                ("blobId", blob_id.is_some()),
                ("charset", charset.is_some()),
            ] {
                if given {
                    self.bad(
                        prop,
                        format!("{path}/{key} must not be given on a multipart"),
                    );
                }
            }
            let items: &[Value] = match sub {
                Value::Array(items) if !items.is_empty() => items,
                _ => {
                    self.bad(prop, format!("{path}/subParts must be a non-empty array"));
                    &[]
                }
            };
            let mut children = Vec::with_capacity(items.len());
            for (i, child) in items.iter().enumerate() {
                let child_path = format!("{path}/subParts/{i}");
                if let Some(c) = self.part(child, prop, &child_path, depth + 1, Want::Any, false)? {
                    children.push(c);
                }
            }
            let mut ct = ContentType::new(mtype);
            if disposition.is_none()
                && let Some(n) = &name
            {
                ct = ct.attribute("name", n.clone());
            }
            MimePart::new(ct, children)
        } else {
            // A leaf.
            let mtype = match (media_type, &part_id, want) {
                (Some(t), _, _) => t,
                (None, _, Want::Text) => "text/plain".into(),
                (None, _, Want::Html) => "text/html".into(),
                (None, Some(_), Want::Any) => "text/plain".into(),
                (None, None, Want::Any) => "application/octet-stream".into(),
            };
            match want {
                Want::Text if mtype != "text/plain" => {
                    self.bad(prop, format!("{path}/type must be text/plain"));
                }
                Want::Html if mtype != "text/html" => {
                    self.bad(prop, format!("{path}/type must be text/html"));
                }
                _ => {}
            }
            if mtype.starts_with("multipart/") {
                self.bad(prop, format!("{path}: a multipart/* part needs subParts"));
            }
            let mut ct = ContentType::new(mtype.clone());
            let contents: BodyPart<'static> = match (&part_id, &blob_id) {
                (Some(_), Some(_)) | (None, None) => {
                    self.bad(
                        prop,
                        format!("{path} needs exactly one of partId and blobId"),
                    );
                    BodyPart::Binary(Vec::new().into())
                }
                (Some(id), None) => {
                    if charset.is_some() {
                        self.bad(prop, format!("{path}/charset must be omitted with partId"));
                    }
                    if obj.get("size").is_some_and(|s| !s.is_null()) {
                        self.bad(prop, format!("{path}/size must be omitted with partId"));
                    }
                    let text = match self.body_values.get(id) {
                        Some(t) => t.clone(),
                        None => {
                            self.bad(prop, format!("{path}/partId {id:?} is not in bodyValues"));
                            String::new()
                        }
                    };
                    let text = crlf_lines(&text);
                    self.grow(text.len())?;
                    if mtype.starts_with("text/") {
                        ct = ct.attribute("charset", "utf-8");
                    }
                    BodyPart::Text(text.into())
                }
                (None, Some(id)) => {
                    let data = match (self.blobs)(id) {
                        Some(d) => d,
                        None => {
                            if !self.missing.contains(id) {
                                self.missing.push(id.clone());
                            }
                            Vec::new()
                        }
                    };
                    self.grow(data.len())?;
                    if let Some(c) = &charset {
                        ct = ct.attribute("charset", c.clone());
                    }
                    BodyPart::Binary(data.into())
                }
            };
            if disposition.is_none()
                && let Some(n) = &name
            {
                ct = ct.attribute("name", n.clone());
            }
            // The body of a message/rfc822 (or message/global) part is a
            // message: refuse content that is not one.
            if matches!(mtype.as_str(), "message/rfc822" | "message/global") {
                let data: &[u8] = match &contents {
                    BodyPart::Text(t) => t.as_bytes(),
                    BodyPart::Binary(b) => b,
                    BodyPart::Multipart(_) => &[],
                };
                let is_message = starts_with_field(data)
                    && crate::parse_message(data, self.limits).is_ok_and(|m| !m.headers.is_empty());
                if !is_message && self.missing.len() == missing_before {
                    self.bad(
                        prop,
                        format!("{path}: the content of a {mtype} part must be a message"),
                    );
                }
            }
            // RFC 2046 §5.2.1: no base64 for message/rfc822; send as is
            // when the octets allow it.
            cte = match &contents {
                BodyPart::Binary(d) if mtype.starts_with("message/") && fits_8bit(d) => {
                    Some(if d.is_ascii() { "7bit" } else { "8bit" })
                }
                _ => None,
            };
            MimePart::new(ct, contents)
        };

        if let Some(d) = disposition {
            let mut cd = ContentType::new(d);
            if let Some(n) = name {
                cd = cd.attribute("filename", n);
            }
            part = part.header("Content-Disposition", HeaderType::from(cd));
        }
        if let Some(c) = cid {
            part = part.cid(c);
        }
        if let Some(l) = language {
            part = part.language(l.join(", "));
        }
        if let Some(l) = location {
            part = part.location(l);
        }
        for (name, value) in extra {
            let value = match value {
                TopValue::Typed(h) => h,
                TopValue::Exact(raw) => Raw::new(raw).into(),
            };
            part = part.header(name, value);
        }
        if let Some(cte) = cte {
            part = part.transfer_encoding(cte);
        }
        if self.invalid.len() > errors_before || self.missing.len() > missing_before {
            return Ok(None);
        }
        Ok(Some(part))
    }

    /// Accounts for `n` more content octets.
    fn grow(&mut self, n: usize) -> Result<(), BuildError> {
        self.content = self.content.saturating_add(n);
        if self.content > self.limits.max_size {
            return Err(BuildError::TooLarge {
                limit: self.limits.max_size,
            });
        }
        Ok(())
    }
}

/// Whether `data` starts with a header field (`name:`), as a message does.
fn starts_with_field(data: &[u8]) -> bool {
    let name_len = data
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && b != b':')
        .count();
    name_len > 0 && data.get(name_len) == Some(&b':')
}

/// Text with every line break (CRLF, lone LF or lone CR) written as CRLF,
/// the only line break RFC 5322 allows.
fn crlf_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `data` can go unencoded as 7bit/8bit: no NUL, no bare CR, and
/// lines of at most 998 octets.
fn fits_8bit(data: &[u8]) -> bool {
    !data.contains(&0)
        && data.split(|&b| b == b'\n').all(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.len() <= 998 && !line.contains(&b'\r')
        })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use crate::{EmailAddress, HeaderForm, parse_message};

    const NOW: &str = "2026-03-04T05:06:07Z";

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn no_blobs(_: &str) -> Option<Vec<u8>> {
        None
    }

    fn build(v: Value) -> Result<Vec<u8>, BuildError> {
        build_message(&obj(v), &no_blobs, NOW, "example.org")
    }

    fn build_with(
        v: Value,
        blobs: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Vec<u8>, BuildError> {
        build_message(&obj(v), blobs, NOW, "example.org")
    }

    fn invalid(v: Value) -> Vec<String> {
        match build(v) {
            Err(BuildError::InvalidProperties { properties, .. }) => properties,
            other => panic!("expected invalidProperties, got {other:?}"),
        }
    }

    fn addr(name: Option<&str>, email: &str) -> EmailAddress {
        EmailAddress {
            name: name.map(str::to_string),
            email: email.to_string(),
        }
    }

    fn blobs(id: &str) -> Option<Vec<u8>> {
        match id {
            "bin" => Some((0..=255u8).collect()),
            "img" => Some(b"\x89PNG\r\n\x1a\nfake".to_vec()),
            "msg" => Some(b"From: x@y\r\nSubject: inner\r\n\r\ninner body\r\n".to_vec()),
            "notes" => Some(b"line one\nline two\n".to_vec()),
            _ => None,
        }
    }

    #[test]
    fn round_trip_text_message() {
        let raw = build(json!({
            "mailboxIds": {"m1": true},
            "keywords": {"$draft": true},
            "receivedAt": "2026-01-01T00:00:00Z",
            "from": [{"name": "André Pirard", "email": "andre@example.be"}],
            "to": [
                {"name": "Bob, Jr.", "email": "bob@example.com"},
                {"email": "carol@example.com"}
            ],
            "cc": [{"name": "山田太郎", "email": "taro@example.jp"}],
            "bcc": [{"name": null, "email": "hidden@example.com"}],
            "replyTo": [{"email": "replies@example.com"}],
            "sender": [{"email": "sender@example.com"}],
            "subject": "Hello 🌍 café, a subject long enough to need folding when it is written out",
            "sentAt": "2024-01-02T03:04:05+02:00",
            "messageId": ["abc.123@example.com"],
            "inReplyTo": ["parent@example.com"],
            "references": ["root@example.com", "parent@example.com"],
            "textBody": [{"partId": "t", "type": "text/plain"}],
            "bodyValues": {"t": {"value": "Hi Bob,\n\nCafé crème €5.\nA line with = sign.\n"}}
        }))
        .unwrap();
        let m = parse_message(&raw, &Limits::default()).unwrap();
        assert_eq!(
            m.from,
            Some(vec![addr(Some("André Pirard"), "andre@example.be")])
        );
        assert_eq!(
            m.to,
            Some(vec![
                addr(Some("Bob, Jr."), "bob@example.com"),
                addr(None, "carol@example.com")
            ])
        );
        assert_eq!(m.cc, Some(vec![addr(Some("山田太郎"), "taro@example.jp")]));
        assert_eq!(m.bcc, Some(vec![addr(None, "hidden@example.com")]));
        assert_eq!(m.reply_to, Some(vec![addr(None, "replies@example.com")]));
        assert_eq!(m.sender, Some(vec![addr(None, "sender@example.com")]));
        assert_eq!(
            m.subject.as_deref(),
            Some("Hello 🌍 café, a subject long enough to need folding when it is written out")
        );
        assert_eq!(m.sent_at.as_deref(), Some("2024-01-02T03:04:05+02:00"));
        assert_eq!(m.message_id, Some(vec!["abc.123@example.com".to_string()]));
        assert_eq!(m.in_reply_to, Some(vec!["parent@example.com".to_string()]));
        assert_eq!(
            m.references,
            Some(vec![
                "root@example.com".to_string(),
                "parent@example.com".to_string()
            ])
        );
        assert_eq!(m.body_structure.r#type, "text/plain");
        assert_eq!(m.body_structure.charset.as_deref(), Some("utf-8"));
        let id = m.text_body[0].part_id.clone().unwrap();
        assert_eq!(
            m.body_value(&id, 0).unwrap().value,
            "Hi Bob,\n\nCafé crème €5.\nA line with = sign.\n"
        );
        assert!(!m.has_attachment);
        // Store-owned properties do not reach the message.
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("$draft") && !text.contains("m1"));
        assert!(text.contains("MIME-Version: 1.0\r\n"));
        assert!(text.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn text_and_html_make_multipart_alternative() {
        let raw = build(json!({
            "from": [{"email": "a@example.com"}],
            "subject": "alt",
            "textBody": [{"partId": "1"}],
            "htmlBody": [{"partId": "2", "type": "text/html"}],
            "bodyValues": {
                "1": {"value": "plain text", "isTruncated": false},
                "2": {"value": "<p>rich <b>text</b></p>", "isEncodingProblem": false}
            }
        }))
        .unwrap();
        let m = parse_message(&raw, &Limits::default()).unwrap();
        assert_eq!(m.body_structure.r#type, "multipart/alternative");
        assert_eq!(m.text_body.len(), 1);
        assert_eq!(m.html_body.len(), 1);
        assert_eq!(m.text_body[0].r#type, "text/plain");
        assert_eq!(m.html_body[0].r#type, "text/html");
        let t = m.text_body[0].part_id.clone().unwrap();
        let h = m.html_body[0].part_id.clone().unwrap();
        assert_eq!(m.body_value(&t, 0).unwrap().value, "plain text");
        assert_eq!(
            m.body_value(&h, 0).unwrap().value,
            "<p>rich <b>text</b></p>"
        );
        assert!(m.attachments.is_empty());
        assert_eq!(m.preview, "plain text");
    }

    #[test]
    fn attachments_make_multipart_mixed() {
        let raw = build_with(
            json!({
                "from": [{"email": "a@example.com"}],
                "textBody": [{"partId": "1"}],
                "htmlBody": [{"partId": "2"}],
                "bodyValues": {"1": {"value": "see attached"}, "2": {"value": "<p>see attached</p>"}},
                "attachments": [
                    {"blobId": "bin", "type": "application/octet-stream", "name": "données.bin",
                     "disposition": "attachment", "size": 999},
                    {"blobId": "notes", "type": "text/plain", "charset": "us-ascii",
                     "name": "notes.txt", "disposition": "attachment",
                     "header:X-Part-Note:asText": "a note"}
                ]
            }),
            &blobs,
        )
        .unwrap();
        let m = parse_message(&raw, &Limits::default()).unwrap();
        assert_eq!(m.body_structure.r#type, "multipart/mixed");
        let subs = m.body_structure.sub_parts.as_ref().unwrap();
        assert_eq!(subs[0].r#type, "multipart/alternative");
        assert_eq!(m.attachments.len(), 2);
        let bin = &m.attachments[0];
        assert_eq!(bin.name.as_deref(), Some("données.bin"));
        assert_eq!(bin.disposition.as_deref(), Some("attachment"));
        assert_eq!(
            m.part_bytes(bin.part_id.as_deref().unwrap()).unwrap(),
            blobs("bin").unwrap().as_slice()
        );
        assert_eq!(bin.size, 256);
        let notes = &m.attachments[1];
        assert_eq!(notes.r#type, "text/plain");
        assert_eq!(notes.charset.as_deref(), Some("us-ascii"));
        assert_eq!(
            notes.header_property("X-Part-Note", HeaderForm::Text, false),
            json!("a note")
        );
        let id = notes.part_id.as_deref().unwrap();
        assert_eq!(m.body_value(id, 0).unwrap().value, "line one\nline two\n");
        assert!(m.has_attachment);
        assert_eq!(m.text_body[0].r#type, "text/plain");
        assert_eq!(m.html_body[0].r#type, "text/html");
    }

    #[test]
    fn body_structure_round_trip() {
        let raw = build_with(
            json!({
                "from": [{"email": "a@example.com"}],
                "bodyStructure": {
                    "type": "multipart/mixed",
                    "header:X-Root:asRaw": " root value",
                    "subParts": [
                        {"type": "multipart/related", "subParts": [
                            {"partId": "h", "type": "text/html", "language": ["en", "fr-CA"]},
                            {"blobId": "img", "type": "image/png", "cid": "logo@example.com",
                             "disposition": "inline", "location": "https://example.com/logo.png"}
                        ]},
                        {"blobId": "msg", "type": "message/rfc822", "disposition": "attachment",
                         "name": "fwd.eml"},
                        {"blobId": "bin"}
                    ]
                },
                "bodyValues": {"h": {"value": "<img src=\"cid:logo@example.com\">"}}
            }),
            &blobs,
        )
        .unwrap();
        let m = parse_message(&raw, &Limits::default()).unwrap();
        let root = &m.body_structure;
        assert_eq!(root.r#type, "multipart/mixed");
        assert_eq!(
            m.header_property("X-Root", HeaderForm::Raw, false),
            json!(" root value")
        );
        let subs = root.sub_parts.as_ref().unwrap();
        assert_eq!(subs.len(), 3);
        let related = subs[0].sub_parts.as_ref().unwrap();
        assert_eq!(related[0].language, Some(vec!["en".into(), "fr-CA".into()]));
        assert_eq!(related[1].cid.as_deref(), Some("logo@example.com"));
        assert_eq!(related[1].disposition.as_deref(), Some("inline"));
        assert_eq!(
            related[1].location.as_deref(),
            Some("https://example.com/logo.png")
        );
        assert_eq!(
            m.part_bytes(related[1].part_id.as_deref().unwrap())
                .unwrap(),
            blobs("img").unwrap().as_slice()
        );
        assert_eq!(subs[1].r#type, "message/rfc822");
        assert_eq!(subs[1].name.as_deref(), Some("fwd.eml"));
        assert_eq!(
            m.part_bytes(subs[1].part_id.as_deref().unwrap()).unwrap(),
            blobs("msg").unwrap().as_slice()
        );
        assert_eq!(subs[2].r#type, "application/octet-stream");
        assert_eq!(subs[2].disposition, None);
        // The inline image is referenced from the HTML: not an attachment
        // a user needs to see; the forwarded message and the blob are.
        assert!(m.has_attachment);
        assert_eq!(m.html_body.len(), 1);
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.contains(
                "filename=\"fwd.eml\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\nFrom: x@y\r\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn defaults_for_date_message_id_and_empty_body() {
        let a = build(json!({"from": [{"email": "a@example.com"}]})).unwrap();
        let b = build(json!({"from": [{"email": "a@example.com"}], "messageId": null})).unwrap();
        let ma = parse_message(&a, &Limits::default()).unwrap();
        let mb = parse_message(&b, &Limits::default()).unwrap();
        assert_eq!(ma.sent_at.as_deref(), Some("2026-03-04T05:06:07Z"));
        let ida = ma.message_id.unwrap().remove(0);
        let idb = mb.message_id.unwrap().remove(0);
        assert!(ida.ends_with("@example.org"), "{ida}");
        assert_ne!(ida, idb);
        assert_eq!(ma.body_structure.r#type, "text/plain");
        // An invalid domain falls back to localhost.
        let c =
            build_message(&obj(json!({"subject": "x"})), &no_blobs, NOW, "bad domain>").unwrap();
        let mc = parse_message(&c, &Limits::default()).unwrap();
        assert!(mc.message_id.unwrap()[0].ends_with("@localhost"));
    }

    #[test]
    fn header_properties() {
        let raw = build(json!({
            "header:X-Raw:asRaw": " exact\r\n  folded value",
            "header:X-Text:asText": "Grüße",
            "header:List-Id:asText": "Team list <team.example.com>",
            "header:Comments:asText:all": ["one", "two"],
            "header:X-Default": " no form means raw",
            "header:Date:asRaw": " Tue, 2 Jan 2024 03:04:05 +0000",
            "header:Message-ID:asRaw": " <given@example.com>"
        }))
        .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("X-Raw: exact\r\n  folded value\r\n"));
        assert!(text.contains("X-Default: no form means raw\r\n"));
        assert_eq!(text.matches("Date:").count(), 1);
        assert_eq!(text.matches("Message-ID:").count(), 1);
        let m = parse_message(&raw, &Limits::default()).unwrap();
        assert_eq!(
            m.header_property("X-Text", HeaderForm::Text, false),
            json!("Grüße")
        );
        assert_eq!(
            m.header_property("Comments", HeaderForm::Text, true),
            json!(["one", "two"])
        );
        assert_eq!(m.message_id, Some(vec!["given@example.com".to_string()]));
        assert_eq!(m.sent_at.as_deref(), Some("2024-01-02T03:04:05Z"));
    }

    #[test]
    fn store_and_server_properties() {
        assert!(
            build(json!({"mailboxIds": {"a": true}, "keywords": {}, "receivedAt": NOW})).is_ok()
        );
        for p in [
            "id",
            "blobId",
            "threadId",
            "size",
            "hasAttachment",
            "preview",
            "headers",
        ] {
            assert_eq!(invalid(json!({p: null})), [p], "{p}");
        }
        assert_eq!(invalid(json!({"bogus": 1})), ["bogus"]);
    }

    #[test]
    fn invalid_header_properties() {
        assert_eq!(
            invalid(json!({"header:From:asAddresses": [{"email": "a@b"}]})),
            ["header:From:asAddresses"]
        );
        assert_eq!(
            invalid(json!({"header:From:asText": "x"})),
            ["header:From:asText"]
        );
        let mut p = invalid(json!({"subject": "a", "header:Subject:asText": "b"}));
        p.sort();
        assert_eq!(p, ["header:Subject:asText", "subject"]);
        let mut p = invalid(json!({"header:X-A:asRaw": " a", "header:x-a:asText": "b"}));
        p.sort();
        assert_eq!(p, ["header:X-A:asRaw", "header:x-a:asText"]);
        assert_eq!(
            invalid(json!({"header:Content-Type:asRaw": " text/plain"})),
            ["header:Content-Type:asRaw"]
        );
        assert_eq!(invalid(json!({"subject": "a\r\nBcc: x@y"})), ["subject"]);
        assert_eq!(
            invalid(json!({"header:X:asRaw": " a\nb"})),
            ["header:X:asRaw"]
        );
        assert_eq!(
            invalid(json!({"header:X:asRaw": " a\r\nb"})),
            ["header:X:asRaw"]
        );
        assert_eq!(
            invalid(json!({"header:X:asRaw": " a\r\n "})),
            ["header:X:asRaw"]
        );
        assert_eq!(
            invalid(json!({"header:X:asRaw": ["a"]})),
            ["header:X:asRaw"]
        );
        assert_eq!(
            invalid(json!({"header:X:asRaw:all": "a"})),
            ["header:X:asRaw:all"]
        );
        assert_eq!(invalid(json!({"from": [{"email": "a b@c"}]})), ["from"]);
        assert_eq!(invalid(json!({"to": [{"email": "<a@c>"}]})), ["to"]);
        assert_eq!(invalid(json!({"to": "a@c"})), ["to"]);
        assert_eq!(invalid(json!({"messageId": ["<a@b>"]})), ["messageId"]);
        assert_eq!(invalid(json!({"references": ["a b@c"]})), ["references"]);
        assert_eq!(
            invalid(json!({"sentAt": "2023-02-29T00:00:00Z"})),
            ["sentAt"]
        );
        assert_eq!(invalid(json!({"sentAt": "yesterday"})), ["sentAt"]);
        let e = build_message(&obj(json!({})), &no_blobs, "not a date", "example.org");
        assert!(matches!(e, Err(BuildError::InvalidProperties { .. })));
    }

    #[test]
    fn invalid_body_properties() {
        let bv = json!({"1": {"value": "x"}, "2": {"value": "y"}});
        let mut p = invalid(json!({
            "bodyStructure": {"partId": "1"}, "textBody": [{"partId": "1"}], "bodyValues": bv
        }));
        p.sort();
        assert_eq!(p, ["bodyStructure", "textBody"]);
        assert_eq!(
            invalid(json!({"textBody": [{"partId": "1"}, {"partId": "2"}], "bodyValues": bv})),
            ["textBody"]
        );
        assert_eq!(
            invalid(json!({"textBody": [{"partId": "1", "type": "text/html"}], "bodyValues": bv})),
            ["textBody"]
        );
        assert_eq!(
            invalid(json!({"htmlBody": [{"partId": "1", "type": "text/plain"}], "bodyValues": bv})),
            ["htmlBody"]
        );
        assert_eq!(
            invalid(json!({"textBody": [{"partId": "1"}],
                           "bodyValues": {"1": {"value": "x", "isTruncated": true}}})),
            ["bodyValues"]
        );
        assert_eq!(
            invalid(json!({"textBody": [{"partId": "1"}],
                           "bodyValues": {"1": {"value": "x", "isEncodingProblem": true}}})),
            ["bodyValues"]
        );
        assert_eq!(
            invalid(json!({"textBody": [{"partId": "9"}], "bodyValues": bv})),
            ["textBody"]
        );
        for part in [
            json!({"partId": "1", "charset": "utf-8"}),
            json!({"partId": "1", "size": 1}),
            json!({"partId": "1", "blobId": "bin"}),
            json!({}),
            json!({"partId": "1", "headers": []}),
            json!({"partId": "1", "header:Content-Transfer-Encoding:asRaw": " base64"}),
            json!({"partId": "1", "header:Content-Type:asRaw": " text/plain"}),
            json!({"partId": "1", "header:Content-Disposition:asText": "inline"}),
            json!({"partId": "1", "header:Subject:asText": "clash with the Email"}),
            json!({"partId": "1", "header:Date:asRaw": " clash with the default"}),
            json!({"partId": "1", "type": "multipart/mixed"}),
            json!({"partId": "1", "type": "text"}),
            json!({"partId": "1", "disposition": "in line"}),
            json!({"partId": "1", "cid": "<x@y>"}),
            json!({"partId": "1", "language": "en"}),
            json!({"partId": "1", "location": "a b"}),
            json!({"partId": "1", "bogus": true}),
            json!({"partId": "1", "type": "message/rfc822"}),
            json!({"type": "multipart/mixed", "subParts": []}),
            json!({"type": "text/plain", "subParts": [{"partId": "1"}]}),
            json!({"partId": "1", "subParts": [{"partId": "2"}]}),
            json!("not an object"),
        ] {
            assert_eq!(
                invalid(json!({"subject": "s", "bodyStructure": part, "bodyValues": bv})),
                ["bodyStructure"],
                "{part}"
            );
        }
        // message/rfc822 content must be a message.
        let e = build_with(
            json!({"attachments": [{"blobId": "bin", "type": "message/rfc822"}]}),
            &blobs,
        );
        assert!(
            matches!(&e, Err(BuildError::InvalidProperties { properties, .. }) if properties == &["attachments"]),
            "{e:?}"
        );
        assert!(
            build_with(
                json!({"attachments": [{"blobId": "msg", "type": "message/rfc822"}]}),
                &blobs
            )
            .is_ok()
        );
        // A non-root part may set Subject; the root may not repeat one.
        assert!(
            build(
                json!({"subject": "s", "bodyValues": bv, "bodyStructure": {"subParts": [
                    {"partId": "1", "header:Subject:asText": "inner"}
                ]}})
            )
            .is_ok()
        );
    }

    #[test]
    fn missing_blobs_are_reported_together() {
        let e = build_with(
            json!({"attachments": [{"blobId": "nope"}, {"blobId": "bin"}, {"blobId": "gone"},
                                   {"blobId": "nope"}]}),
            &blobs,
        )
        .unwrap_err();
        assert_eq!(
            e,
            BuildError::BlobNotFound {
                blob_ids: vec!["nope".into(), "gone".into()]
            }
        );
        assert_eq!(
            e.to_set_error(),
            json!({"type": "blobNotFound", "description": e.description(),
                   "notFound": ["nope", "gone"]})
        );
        let e = build(json!({"id": "x"})).unwrap_err();
        assert_eq!(e.to_set_error()["type"], "invalidProperties");
        assert_eq!(e.to_set_error()["properties"], json!(["id"]));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_size: 300,
            max_parts: 4,
            max_depth: 2,
        };
        let big = "x".repeat(400);
        let e = build_message_with_limits(
            &obj(json!({"textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": big}}})),
            &no_blobs,
            NOW,
            "example.org",
            &limits,
        );
        assert_eq!(e, Err(BuildError::TooLarge { limit: 300 }));
        assert_eq!(
            e.unwrap_err().to_set_error(),
            json!({"type": "tooLarge", "description": "the message would be larger than 300 octets"})
        );
        // Headers push a small body over the limit.
        let e = build_message_with_limits(
            &obj(
                json!({"subject": "s".repeat(250), "textBody": [{"partId": "1"}],
                        "bodyValues": {"1": {"value": "hi"}}}),
            ),
            &no_blobs,
            NOW,
            "example.org",
            &limits,
        );
        assert_eq!(e, Err(BuildError::TooLarge { limit: 300 }));
        let deep = json!({"subParts": [{"subParts": [{"subParts": [{"partId": "1"}]}]}]});
        let e = build_message_with_limits(
            &obj(json!({"bodyStructure": deep, "bodyValues": {"1": {"value": "x"}}})),
            &no_blobs,
            NOW,
            "example.org",
            &Limits {
                max_size: 10_000,
                ..limits
            },
        );
        assert!(
            matches!(&e, Err(BuildError::InvalidProperties { description, .. }) if description.contains("nested deeper")),
            "{e:?}"
        );
        let wide = json!({"subParts": [{"partId": "1"}, {"partId": "1"}, {"partId": "1"}, {"partId": "1"}]});
        let e = build_message_with_limits(
            &obj(json!({"bodyStructure": wide, "bodyValues": {"1": {"value": "x"}}})),
            &no_blobs,
            NOW,
            "example.org",
            &Limits {
                max_size: 10_000,
                ..limits
            },
        );
        assert!(
            matches!(&e, Err(BuildError::InvalidProperties { description, .. }) if description.contains("body parts")),
            "{e:?}"
        );
    }

    #[test]
    fn deeply_nested_input_parses_back_within_limits() {
        let limits = Limits::default();
        let mut part = json!({"partId": "1"});
        for _ in 0..limits.max_depth {
            part = json!({"subParts": [part]});
        }
        let raw =
            build(json!({"bodyStructure": part, "bodyValues": {"1": {"value": "deep"}}})).unwrap();
        let m = parse_message(&raw, &limits).unwrap();
        assert_eq!(m.text_body.len(), 1);
        let part = json!({"subParts": [part]});
        assert!(
            build(json!({"bodyStructure": part, "bodyValues": {"1": {"value": "deep"}}})).is_err()
        );
    }

    #[test]
    fn dates() {
        let d = |s| rfc3339_to_rfc5322(s);
        assert_eq!(
            d("2024-01-02T03:04:05+02:00").as_deref(),
            Some("Tue, 2 Jan 2024 03:04:05 +0200")
        );
        assert_eq!(
            d("1970-01-01t00:00:00.123456Z").as_deref(),
            Some("Thu, 1 Jan 1970 00:00:00 +0000")
        );
        assert_eq!(
            d("2000-02-29T23:59:60-00:00").as_deref(),
            Some("Tue, 29 Feb 2000 23:59:60 -0000")
        );
        assert_eq!(
            d("2100-12-31T12:00:00-09:30").as_deref(),
            Some("Fri, 31 Dec 2100 12:00:00 -0930")
        );
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+2:00",
            "2024-01-01T00:00:00.Z",
            "1899-12-31T00:00:00Z",
            "2024-01-01T00:00:00+24:00",
            "+024-01-01T00:00:00Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn text_line_breaks_become_crlf() {
        assert_eq!(crlf_lines("a\nb\r\nc\rd\r"), "a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(crlf_lines(""), "");
    }

    #[test]
    fn raw_value_checks() {
        assert!(check_raw(" a\r\n\tb").is_ok());
        assert!(check_raw("").is_ok());
        assert!(check_raw(" ünïcode").is_ok());
        assert!(check_raw(" a\r\n").is_err());
        assert!(check_raw(" a\r\n \r\n b").is_err());
        assert!(check_raw(" a\rb").is_err());
        assert!(check_raw(" a\0b").is_err());
        assert_eq!(unfold(" a\r\n b"), "a b");
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            prop::sample::select(vec![
                "1",
                "bin",
                "img",
                "msg",
                "text/plain",
                "text/html",
                "multipart/mixed",
                "message/rfc822",
                "attachment",
                "inline",
                "a@b",
                "2024-01-02T03:04:05Z",
                "",
                " raw\r\n value",
                "x\ny",
            ])
            .prop_map(|s| json!(s)),
        ];
        let keys = prop::sample::select(vec![
            "partId",
            "blobId",
            "type",
            "subParts",
            "charset",
            "name",
            "disposition",
            "cid",
            "language",
            "location",
            "value",
            "email",
            "isTruncated",
            "size",
            "headers",
            "header:X:asRaw",
            "header:Content-Type:asRaw",
            "header:Subject:asText:all",
        ]);
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..5).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    /// Mostly valid EmailBodyPart trees, sometimes with junk.
    fn arb_part() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let opt = |v: Vec<&'static str>| prop::option::of(prop::sample::select(v));
        let leaf = (
            prop_oneof![
                prop::sample::select(vec!["1", "2", "1", "missing"]).prop_map(|i| ("partId", i)),
                prop::sample::select(vec!["bin", "img", "msg", "notes", "missing"])
                    .prop_map(|i| ("blobId", i)),
            ],
            opt(vec![
                "text/plain",
                "text/html",
                "image/png",
                "message/rfc822",
                "application/pdf",
                "multipart/mixed",
                "bad type",
            ]),
            opt(vec!["inline", "attachment", "x-custom"]),
            opt(vec!["file.txt", "fïchier.png", ""]),
            opt(vec!["c1@x", "c2@x"]),
            prop::option::weighted(0.1, arb_json()),
        )
            .prop_map(|((kind, id), ty, disp, name, cid, junk)| {
                let mut p =
                    json!({kind: id, "type": ty, "disposition": disp, "name": name, "cid": cid});
                if let Some(j) = junk {
                    p["header:X-Junk:asRaw"] = j;
                }
                p
            });
        leaf.prop_recursive(4, 24, 4, |inner| {
            (
                prop::sample::select(vec![
                    "multipart/mixed",
                    "multipart/alternative",
                    "multipart/related",
                    "multipart/mixed",
                    "multipart/alternative",
                    "multipart/related",
                    "text/plain",
                ]),
                prop::collection::vec(inner, 1..4),
            )
                .prop_map(|(ty, subs)| json!({"type": ty, "subParts": subs}))
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn arbitrary_email_objects_never_panic(
            structure in arb_json(),
            text in arb_json(),
            attachments in arb_json(),
            values in arb_json(),
            to in arb_json(),
            use_structure in proptest::prelude::any::<bool>(),
        ) {
            let mut email = json!({"to": to, "bodyValues": values, "subject": "s"});
            if use_structure {
                email["bodyStructure"] = structure;
            } else {
                email["textBody"] = text;
                email["attachments"] = attachments;
            }
            if let Ok(raw) = build_with(email, &blobs) {
                proptest::prop_assert!(parse_message(&raw, &Limits::default()).is_ok());
            }
        }

        #[test]
        fn built_messages_parse_back(
            structure in arb_part(),
            attachments in proptest::collection::vec(arb_part(), 0..3),
            subject in "[^\\p{Cc}]{0,100}",
            text in "(?s).{0,200}",
            use_structure in proptest::prelude::any::<bool>(),
        ) {
            let mut email = json!({
                "from": [{"name": "Ünïcode Name", "email": "a@example.com"}],
                "subject": subject.clone(),
                "bodyValues": {"1": {"value": text.clone()}, "2": {"value": "<p>x</p>"}},
            });
            if use_structure {
                email["bodyStructure"] = structure;
            } else {
                email["textBody"] = json!([{"partId": "1"}]);
                email["attachments"] = json!(attachments);
            }
            match build_with(email, &blobs) {
                Ok(raw) => {
                    let m = parse_message(&raw, &Limits::default()).unwrap();
                    proptest::prop_assert_eq!(
                        m.subject.as_deref().unwrap_or_default().trim(),
                        subject.trim()
                    );
                    proptest::prop_assert_eq!(
                        m.from.clone(),
                        Some(vec![addr(Some("Ünïcode Name"), "a@example.com")])
                    );
                    if !use_structure {
                        let id = m.text_body[0].part_id.clone().unwrap();
                        proptest::prop_assert_eq!(
                            m.body_value(&id, 0).unwrap().value,
                            text.replace("\r\n", "\n").replace('\r', "\n")
                        );
                    }
                }
                Err(e) => {
                    proptest::prop_assert!(!e.description().is_empty());
                }
            }
        }
    }
}
