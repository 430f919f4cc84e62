//! `keyscope-mime`: RFC 8621 (JMAP for Mail) Email objects from raw
//! RFC 5322 messages.
//!
//! Pure functions, no I/O. [`parse_message`] turns the raw octets of a
//! message into a [`ParsedMessage`] holding the metadata properties of an
//! RFC 8621 §4.1 Email object, its `bodyStructure` tree, the flattened
//! `textBody` / `htmlBody` / `attachments` lists computed by the §4.1.4
//! algorithm, `hasAttachment` and `preview`. Header parsed forms (§4.1.2)
//! are available as free functions over raw header values and through
//! [`ParsedMessage::header_property`] for `header:{name}:as{Form}[:all]`
//! properties. [`ParsedMessage::to_json`] and friends serialise with the
//! RFC property names.
//!
//! MIME tokenising is done by the `mail-parser` crate (0.11); this crate
//! owns the JMAP semantics on top of it.
//!
//! The other direction, [`build_message`], turns the Email object of a
//! JMAP `Email/set` create (RFC 8621 §4.6) into raw octets with the
//! `mail-builder` crate. [`split_mbox`] splits an mbox file into messages.

pub mod build;
pub mod mbox;

pub use build::{BuildError, build_message, build_message_with_limits};
pub use mbox::{MboxError, looks_like_mbox, split_mbox};

use std::collections::BTreeMap;

use mail_parser::{
    Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
    decoders::{
        base64::base64_decode, html::html_to_text, quoted_printable::quoted_printable_decode,
    },
    parsers::MessageStream,
};
use serde::Serialize;
use serde_json::{Value, json};

/// Maximum number of characters in [`ParsedMessage::preview`] (RFC 8621 §4.1.4).
pub const PREVIEW_MAX_CHARS: usize = 256;

/// Resource limits applied by [`parse_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the raw message, in octets.
    pub max_size: usize,
    /// Maximum number of body parts (multipart containers included).
    pub max_parts: usize,
    /// Maximum multipart nesting depth (the root part has depth 0).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_size: 50 * 1024 * 1024,
            max_parts: 1000,
            max_depth: 20,
        }
    }
}

/// Why a raw message could not be turned into an Email object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    /// The raw message is larger than [`Limits::max_size`].
    #[error("message is {size} octets, limit is {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The message has more body parts than [`Limits::max_parts`].
    #[error("message has more than {limit} body parts")]
    TooManyParts {
        /// Configured limit.
        limit: usize,
    },
    /// Multipart nesting is deeper than [`Limits::max_depth`].
    #[error("multipart nesting deeper than {limit}")]
    TooDeep {
        /// Configured limit.
        limit: usize,
    },
    /// The input has no header section at all (empty or not a message).
    #[error("input is not an RFC 5322 message")]
    NotAMessage,
}

/// An `EmailAddress` object (RFC 8621 §4.1.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailAddress {
    /// The display name, if any.
    pub name: Option<String>,
    /// The addr-spec.
    pub email: String,
}

/// An `EmailAddressGroup` object (RFC 8621 §4.1.2.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailAddressGroup {
    /// The group display name; `None` for addresses outside any group.
    pub name: Option<String>,
    /// The addresses in the group.
    pub addresses: Vec<EmailAddress>,
}

/// An `EmailHeader` object (RFC 8621 §4.1.3): name and Raw value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailHeader {
    /// Header field name, as it appears in the message.
    pub name: String,
    /// Raw value: everything after the colon up to (excluding) the final CRLF.
    pub value: String,
}

/// An `EmailBodyPart` object (RFC 8621 §4.1.4). `blobId` is left to the
/// caller as a function of `part_id`; see [`ParsedMessage::part_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailBodyPart {
    /// Part id, unique within the Email; `None` iff the part is `multipart/*`.
    pub part_id: Option<String>,
    /// Size in octets after content-transfer decoding (0 for multiparts).
    pub size: u64,
    /// All header fields of the part, in order, Raw form.
    pub headers: Vec<EmailHeader>,
    /// Decoded `filename` (Content-Disposition) or `name` (Content-Type) parameter.
    pub name: Option<String>,
    /// Lower-case media type (`type/subtype`), defaulted per RFC 2045/2046.
    pub r#type: String,
    /// Charset parameter; `us-ascii` by default for `text/*`; `None` otherwise.
    pub charset: Option<String>,
    /// Lower-case Content-Disposition value.
    pub disposition: Option<String>,
    /// Content-Id without angle brackets.
    pub cid: Option<String>,
    /// Content-Language tags.
    pub language: Option<Vec<String>>,
    /// Content-Location value.
    pub location: Option<String>,
    /// Children of a `multipart/*` part; `None` otherwise.
    pub sub_parts: Option<Vec<EmailBodyPart>>,
}

/// An `EmailBodyValue` object (RFC 8621 §4.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailBodyValue {
    /// The decoded text content.
    pub value: String,
    /// True if malformed transfer or charset encoding was found.
    pub is_encoding_problem: bool,
    /// True if `value` was truncated.
    pub is_truncated: bool,
}

/// The header parsed forms of RFC 8621 §4.1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderForm {
    /// `asRaw`
    Raw,
    /// `asText`
    Text,
    /// `asAddresses`
    Addresses,
    /// `asGroupedAddresses`
    GroupedAddresses,
    /// `asMessageIds`
    MessageIds,
    /// `asDate`
    Date,
    /// `asURLs`
    Urls,
}

impl HeaderForm {
    /// Parses the `asForm` suffix of a header property (case-sensitive as in the RFC).
    pub fn from_suffix(s: &str) -> Option<Self> {
        Some(match s {
            "asRaw" => Self::Raw,
            "asText" => Self::Text,
            "asAddresses" => Self::Addresses,
            "asGroupedAddresses" => Self::GroupedAddresses,
            "asMessageIds" => Self::MessageIds,
            "asDate" => Self::Date,
            "asURLs" => Self::Urls,
            _ => return None,
        })
    }
}

/// A parsed `header:{name}[:as{Form}][:all]` property request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderProperty {
    /// Header field name (matched case-insensitively).
    pub name: String,
    /// Requested form (`Raw` when absent).
    pub form: HeaderForm,
    /// Whether `:all` was requested.
    pub all: bool,
}

/// Parses a `header:{name}[:as{Form}][:all]` property name. Returns `None`
/// if the property is not a well-formed header property.
pub fn parse_header_property(property: &str) -> Option<HeaderProperty> {
    let rest = property.strip_prefix("header:")?;
    let mut it = rest.split(':');
    let name = it.next().filter(|n| !n.is_empty())?;
    if !name.bytes().all(|b| (33..=126).contains(&b)) {
        return None;
    }
    let mut form = HeaderForm::Raw;
    let mut all = false;
    let mut next = it.next();
    if let Some(f) = next.and_then(HeaderForm::from_suffix) {
        form = f;
        next = it.next();
    }
    if next == Some("all") {
        all = true;
        next = it.next();
    }
    if next.is_some() {
        return None;
    }
    Some(HeaderProperty {
        name: name.to_string(),
        form,
        all,
    })
}

/// Whether RFC 8621 §4.1.2 allows `form` for header field `name`
/// (a server rejects other combinations with `invalidArguments`).
pub fn form_allowed(name: &str, form: HeaderForm) -> bool {
    const TEXT: &[&str] = &["subject", "comments", "keywords", "list-id"];
    const ADDR: &[&str] = &[
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "resent-from",
        "resent-sender",
        "resent-reply-to",
        "resent-to",
        "resent-cc",
        "resent-bcc",
    ];
    const IDS: &[&str] = &[
        "message-id",
        "in-reply-to",
        "references",
        "resent-message-id",
    ];
    const DATE: &[&str] = &["date", "resent-date"];
    const URLS: &[&str] = &[
        "list-help",
        "list-unsubscribe",
        "list-subscribe",
        "list-post",
        "list-owner",
        "list-archive",
    ];
    const RAW_ONLY: &[&str] = &["return-path", "received"];
    let lower = name.to_ascii_lowercase();
    let n = lower.as_str();
    let known = [TEXT, ADDR, IDS, DATE, URLS, RAW_ONLY]
        .iter()
        .any(|set| set.contains(&n));
    let list: &[&str] = match form {
        HeaderForm::Raw => return true,
        HeaderForm::Text => TEXT,
        HeaderForm::Addresses | HeaderForm::GroupedAddresses => ADDR,
        HeaderForm::MessageIds => IDS,
        HeaderForm::Date => DATE,
        HeaderForm::Urls => URLS,
    };
    !known || list.contains(&n)
}

// ---------------------------------------------------------------------------
// Header parsed forms over a Raw value.
// ---------------------------------------------------------------------------

fn with_crlf(raw: &str) -> Vec<u8> {
    let mut v = raw.as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

/// `asRaw`: the value unchanged.
pub fn as_raw(raw: &str) -> String {
    raw.to_string()
}

/// `asText`: unfolded, leading whitespace removed, RFC 2047 encoded words
/// decoded. (Unicode NFC normalisation is not applied.)
pub fn as_text(raw: &str) -> String {
    let bytes = with_crlf(raw);
    match MessageStream::new(&bytes).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        HeaderValue::TextList(l) => l.join(" "),
        _ => String::new(),
    }
}

fn convert_addr(a: &mail_parser::Addr<'_>) -> Option<EmailAddress> {
    let email = a.address.as_deref().unwrap_or_default().trim().to_string();
    let name = a
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if email.is_empty() && name.is_none() {
        return None;
    }
    Some(EmailAddress { name, email })
}

fn parse_address_value(raw: &str) -> Option<Address<'static>> {
    let bytes = with_crlf(raw);
    match MessageStream::new(&bytes).parse_address() {
        HeaderValue::Address(a) => Some(a.into_owned()),
        _ => None,
    }
}

/// `asGroupedAddresses`: addresses grouped; addresses outside any group are
/// in groups with a `None` name.
pub fn as_grouped_addresses(raw: &str) -> Vec<EmailAddressGroup> {
    match parse_address_value(raw) {
        Some(Address::List(list)) => vec![EmailAddressGroup {
            name: None,
            addresses: list.iter().filter_map(convert_addr).collect(),
        }],
        Some(Address::Group(groups)) => groups
            .iter()
            .map(|g| EmailAddressGroup {
                name: g.name.as_deref().map(str::to_string),
                addresses: g.addresses.iter().filter_map(convert_addr).collect(),
            })
            .collect(),
        None => Vec::new(),
    }
}

/// `asAddresses`: all addresses, group structure flattened away.
pub fn as_addresses(raw: &str) -> Vec<EmailAddress> {
    as_grouped_addresses(raw)
        .into_iter()
        .flat_map(|g| g.addresses)
        .collect()
}

/// `asMessageIds`: the msg-ids without angle brackets; `None` if the value
/// does not parse as a list of message ids.
pub fn as_message_ids(raw: &str) -> Option<Vec<String>> {
    let bytes = with_crlf(raw);
    let ids: Vec<String> = match MessageStream::new(&bytes).parse_id() {
        HeaderValue::Text(t) => vec![t.into_owned()],
        HeaderValue::TextList(l) => l.into_iter().map(|s| s.into_owned()).collect(),
        _ => return None,
    };
    let ids: Vec<String> = ids
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() { None } else { Some(ids) }
}

/// `asDate`: RFC 3339 `date-time` keeping the original offset; `None` if
/// the value is not a valid date.
pub fn as_date(raw: &str) -> Option<String> {
    let bytes = with_crlf(raw);
    match MessageStream::new(&bytes).parse_date() {
        HeaderValue::DateTime(d) if d.is_valid() => Some(d.to_rfc3339()),
        _ => None,
    }
}

/// `asURLs`: the URLs found in angle brackets (RFC 2369); `None` if none.
pub fn as_urls(raw: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find('<') {
        let after = rest.get(start + 1..).unwrap_or_default();
        let Some(end) = after.find('>') else { break };
        let url: String = after
            .get(..end)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !url.is_empty() {
            out.push(url);
        }
        rest = after.get(end + 1..).unwrap_or_default();
    }
    if out.is_empty() { None } else { Some(out) }
}

/// One header instance in the requested form, as JSON.
pub fn header_form_value(raw: &str, form: HeaderForm) -> Value {
    match form {
        HeaderForm::Raw => Value::String(as_raw(raw)),
        HeaderForm::Text => Value::String(as_text(raw)),
        HeaderForm::Addresses => json!(as_addresses(raw)),
        HeaderForm::GroupedAddresses => json!(as_grouped_addresses(raw)),
        HeaderForm::MessageIds => json!(as_message_ids(raw)),
        HeaderForm::Date => json!(as_date(raw)),
        HeaderForm::Urls => json!(as_urls(raw)),
    }
}

/// Raw values of every instance of header `name` (case-insensitive), in order.
pub fn header_values<'a>(headers: &'a [EmailHeader], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
        .collect()
}

/// Value of a `header:{name}:as{Form}[:all]` property over `headers`: with
/// `all`, an array of every instance (empty if none); otherwise the last
/// instance, or `null` if the header is absent.
pub fn header_property(headers: &[EmailHeader], name: &str, form: HeaderForm, all: bool) -> Value {
    let values = header_values(headers, name);
    if all {
        Value::Array(values.iter().map(|v| header_form_value(v, form)).collect())
    } else {
        values
            .last()
            .map_or(Value::Null, |v| header_form_value(v, form))
    }
}

// ---------------------------------------------------------------------------
// The parsed message.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PartData {
    blob: Vec<u8>,
    text: Option<String>,
    is_encoding_problem: bool,
}

/// An RFC 8621 Email object computed from a raw message.
#[derive(Debug, Clone)]
pub struct ParsedMessage {
    /// `messageId` (`header:Message-ID:asMessageIds`).
    pub message_id: Option<Vec<String>>,
    /// `inReplyTo` (`header:In-Reply-To:asMessageIds`).
    pub in_reply_to: Option<Vec<String>>,
    /// `references` (`header:References:asMessageIds`).
    pub references: Option<Vec<String>>,
    /// `sender` (`header:Sender:asAddresses`).
    pub sender: Option<Vec<EmailAddress>>,
    /// `from` (`header:From:asAddresses`).
    pub from: Option<Vec<EmailAddress>>,
    /// `to` (`header:To:asAddresses`).
    pub to: Option<Vec<EmailAddress>>,
    /// `cc` (`header:Cc:asAddresses`).
    pub cc: Option<Vec<EmailAddress>>,
    /// `bcc` (`header:Bcc:asAddresses`).
    pub bcc: Option<Vec<EmailAddress>>,
    /// `replyTo` (`header:Reply-To:asAddresses`).
    pub reply_to: Option<Vec<EmailAddress>>,
    /// `subject` (`header:Subject:asText`).
    pub subject: Option<String>,
    /// `sentAt` (`header:Date:asDate`).
    pub sent_at: Option<String>,
    /// `size`: octets of the raw message.
    pub size: u64,
    /// `headers`: the top-level header fields, Raw form.
    pub headers: Vec<EmailHeader>,
    /// `bodyStructure`.
    pub body_structure: EmailBodyPart,
    /// `textBody`.
    pub text_body: Vec<EmailBodyPart>,
    /// `htmlBody`.
    pub html_body: Vec<EmailBodyPart>,
    /// `attachments`.
    pub attachments: Vec<EmailBodyPart>,
    /// `hasAttachment`.
    pub has_attachment: bool,
    /// `preview`: up to 256 characters of plain text, whitespace collapsed.
    pub preview: String,
    parts: BTreeMap<String, PartData>,
}

/// Parses a raw RFC 5322 message into an RFC 8621 Email object.
///
/// Never panics on hostile input; enforces `limits`.
pub fn parse_message(raw: &[u8], limits: &Limits) -> Result<ParsedMessage, MimeError> {
    if raw.len() > limits.max_size {
        return Err(MimeError::TooLarge {
            size: raw.len(),
            limit: limits.max_size,
        });
    }
    let parsed = std::panic::catch_unwind(|| MessageParser::default().parse(raw))
        .ok()
        .flatten();
    let msg = parsed.ok_or(MimeError::NotAMessage)?;
    if msg.parts.is_empty() {
        return Err(MimeError::NotAMessage);
    }
    let mut b = Builder {
        raw,
        msg: &msg,
        limits,
        count: 0,
        parts: BTreeMap::new(),
    };
    let body_structure = b.convert(0, false, 0)?;
    let parts = b.parts;
    let headers = body_structure.headers.clone();
    let last = |name: &str| header_values(&headers, name).last().map(|s| s.to_string());
    let addrs = |name: &str| last(name).map(|v| as_addresses(&v));
    let ids = |name: &str| last(name).and_then(|v| as_message_ids(&v));

    let mut text_body = Vec::new();
    let mut html_body = Vec::new();
    let mut attachments = Vec::new();
    parse_structure(
        std::slice::from_ref(&body_structure),
        "mixed",
        false,
        Some(&mut html_body),
        Some(&mut text_body),
        &mut attachments,
    );
    // SHOULD: any attachment not marked inline; MAY: ignore parts embedded
    // in an HTML body part by a `cid:` reference.
    let html_texts: Vec<&str> = html_body
        .iter()
        .filter(|p| p.r#type == "text/html")
        .filter_map(|p| p.part_id.as_deref().and_then(|id| parts.get(id)))
        .filter_map(|d| d.text.as_deref())
        .collect();
    let has_attachment = attachments.iter().any(|p| {
        let embedded = p.cid.as_deref().is_some_and(|cid| {
            let needle = format!("cid:{cid}");
            html_texts.iter().any(|h| h.contains(&needle))
        });
        p.disposition.as_deref() != Some("inline") && !embedded
    });
    let mut pm = ParsedMessage {
        message_id: ids("Message-ID"),
        in_reply_to: ids("In-Reply-To"),
        references: ids("References"),
        sender: addrs("Sender"),
        from: addrs("From"),
        to: addrs("To"),
        cc: addrs("Cc"),
        bcc: addrs("Bcc"),
        reply_to: addrs("Reply-To"),
        subject: last("Subject").map(|v| as_text(&v)),
        sent_at: last("Date").and_then(|v| as_date(&v)),
        size: raw.len() as u64,
        headers,
        body_structure,
        text_body,
        html_body,
        attachments,
        has_attachment,
        preview: String::new(),
        parts,
    };
    pm.preview = pm.compute_preview();
    Ok(pm)
}

fn is_inline_media(t: &str) -> bool {
    t.starts_with("image/") || t.starts_with("audio/") || t.starts_with("video/")
}

/// RFC 8621 §4.1.4 `parseStructure`, transcribed from the pseudocode.
fn parse_structure(
    parts: &[EmailBodyPart],
    multipart_type: &str,
    in_alternative: bool,
    mut html_body: Option<&mut Vec<EmailBodyPart>>,
    mut text_body: Option<&mut Vec<EmailBodyPart>>,
    attachments: &mut Vec<EmailBodyPart>,
) {
    let text_length = text_body.as_ref().map(|t| t.len());
    let html_length = html_body.as_ref().map(|h| h.len());
    for (i, part) in parts.iter().enumerate() {
        let t = part.r#type.as_str();
        let is_multipart = t.starts_with("multipart/");
        let is_inline = part.disposition.as_deref() != Some("attachment")
            && (t == "text/plain" || t == "text/html" || is_inline_media(t))
            && (i == 0
                || (multipart_type != "related"
                    && (is_inline_media(t) || part.name.as_deref().is_none_or(str::is_empty))));
        if is_multipart {
            let sub_type = t.split_once('/').map(|(_, s)| s).unwrap_or_default();
            parse_structure(
                part.sub_parts.as_deref().unwrap_or_default(),
                sub_type,
                in_alternative || sub_type == "alternative",
                html_body.as_deref_mut(),
                text_body.as_deref_mut(),
                attachments,
            );
        } else if is_inline {
            if multipart_type == "alternative" {
                match t {
                    "text/plain" => {
                        if let Some(tb) = text_body.as_deref_mut() {
                            tb.push(part.clone());
                        }
                    }
                    "text/html" => {
                        if let Some(hb) = html_body.as_deref_mut() {
                            hb.push(part.clone());
                        }
                    }
                    _ => attachments.push(part.clone()),
                }
                continue;
            } else if in_alternative {
                if t == "text/plain" {
                    html_body = None;
                }
                if t == "text/html" {
                    text_body = None;
                }
            }
            if let Some(tb) = text_body.as_deref_mut() {
                tb.push(part.clone());
            }
            if let Some(hb) = html_body.as_deref_mut() {
                hb.push(part.clone());
            }
            if (text_body.is_none() || html_body.is_none()) && is_inline_media(t) {
                attachments.push(part.clone());
            }
        } else {
            attachments.push(part.clone());
        }
    }
    if multipart_type == "alternative"
        && let (Some(tb), Some(hb)) = (text_body, html_body)
        && let (Some(tl), Some(hl)) = (text_length, html_length)
    {
        // Found HTML part only: use it for the text body too.
        if tl == tb.len() && hl != hb.len() {
            let extra: Vec<EmailBodyPart> = hb.get(hl..).unwrap_or_default().to_vec();
            tb.extend(extra);
        }
        // Found plaintext part only: use it for the HTML body too.
        if hl == hb.len() && tl != tb.len() {
            let extra: Vec<EmailBodyPart> = tb.get(tl..).unwrap_or_default().to_vec();
            hb.extend(extra);
        }
    }
}

struct Builder<'a, 'x> {
    raw: &'a [u8],
    msg: &'a Message<'x>,
    limits: &'a Limits,
    count: usize,
    parts: BTreeMap<String, PartData>,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn strip_eol(mut b: &[u8]) -> &[u8] {
    if let Some(x) = b.strip_suffix(b"\n") {
        b = x;
        if let Some(y) = b.strip_suffix(b"\r") {
            b = y;
        }
    }
    b
}

impl Builder<'_, '_> {
    fn slice(&self, start: u32, end: u32) -> &[u8] {
        self.raw
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    fn headers(&self, part: &MessagePart<'_>) -> Vec<EmailHeader> {
        part.headers
            .iter()
            .map(|h| {
                let name_raw = self.slice(h.offset_field, h.offset_start);
                let name = lossy(name_raw);
                let name = name.trim_end().trim_end_matches(':').trim_end().to_string();
                let value = lossy(strip_eol(self.slice(h.offset_start, h.offset_end)));
                EmailHeader { name, value }
            })
            .collect()
    }

    fn convert(
        &mut self,
        idx: usize,
        parent_is_digest: bool,
        depth: usize,
    ) -> Result<EmailBodyPart, MimeError> {
        if depth > self.limits.max_depth {
            return Err(MimeError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        self.count += 1;
        if self.count > self.limits.max_parts {
            return Err(MimeError::TooManyParts {
                limit: self.limits.max_parts,
            });
        }
        let msg = self.msg;
        let Some(part) = msg.parts.get(idx) else {
            return Err(MimeError::NotAMessage);
        };
        let headers = self.headers(part);
        let ct = part.content_type();
        let declared = ct.map(|ct| {
            let main = ct.c_type.trim().to_ascii_lowercase();
            let sub = ct
                .c_subtype
                .as_deref()
                .map(|s| s.trim().to_ascii_lowercase())
                .unwrap_or_default();
            (main, sub)
        });
        let mut r#type = match &declared {
            Some((m, s)) if !m.is_empty() && !s.is_empty() => format!("{m}/{s}"),
            _ if parent_is_digest => "message/rfc822".to_string(),
            _ => "text/plain".to_string(),
        };
        let disposition = part
            .content_disposition()
            .map(|d| d.c_type.trim().to_ascii_lowercase());
        let name = part.attachment_name().map(str::to_string);
        let cid = header_values(&headers, "Content-ID")
            .last()
            .and_then(|v| as_message_ids(v))
            .and_then(|v| v.into_iter().next());
        let language = header_values(&headers, "Content-Language")
            .last()
            .map(|v| {
                as_text(v)
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty());
        let location = header_values(&headers, "Content-Location")
            .last()
            .map(|v| as_text(v))
            .filter(|v| !v.is_empty());

        // RFC 8621 §4.1.4: the charset parameter whatever the type; else
        // us-ascii for text/* (and for a missing Content-Type, whose
        // implicit type is text/plain); else null.
        let charset_param = ct
            .and_then(|c| c.attribute("charset"))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty());

        if let PartType::Multipart(children) = &part.body {
            if !r#type.starts_with("multipart/") {
                r#type = "multipart/mixed".to_string();
            }
            let is_digest = r#type == "multipart/digest";
            let mut sub_parts = Vec::with_capacity(children.len().min(64));
            for &child in children {
                sub_parts.push(self.convert(child as usize, is_digest, depth + 1)?);
            }
            return Ok(EmailBodyPart {
                part_id: None,
                size: 0,
                headers,
                name,
                r#type,
                charset: charset_param,
                disposition,
                cid,
                language,
                location,
                sub_parts: Some(sub_parts),
            });
        }
        // A leaf. If the header claimed multipart but no boundary structure
        // was found, expose it as an opaque part so partId is never null.
        if r#type.starts_with("multipart/") {
            r#type = "application/octet-stream".to_string();
        }
        let charset = match charset_param {
            Some(c) => Some(c),
            None if r#type.starts_with("text/") => Some("us-ascii".to_string()),
            None => None,
        };
        let raw_body = self.slice(part.offset_body, part.offset_end);
        let transfer_decoded = || -> Option<Vec<u8>> {
            match part.encoding {
                mail_parser::Encoding::None => Some(raw_body.to_vec()),
                mail_parser::Encoding::Base64 => base64_decode(raw_body),
                mail_parser::Encoding::QuotedPrintable => quoted_printable_decode(raw_body),
            }
        };
        let (blob, text) = match &part.body {
            PartType::Text(t) | PartType::Html(t) => (
                transfer_decoded().unwrap_or_else(|| t.as_bytes().to_vec()),
                Some(t.to_string()),
            ),
            PartType::Binary(b) | PartType::InlineBinary(b) => (b.to_vec(), None),
            PartType::Message(_) | PartType::Multipart(_) => (
                transfer_decoded().unwrap_or_else(|| raw_body.to_vec()),
                None,
            ),
        };
        let part_id = self.count.to_string();
        let size = blob.len() as u64;
        self.parts.insert(
            part_id.clone(),
            PartData {
                blob,
                text,
                is_encoding_problem: part.is_encoding_problem,
            },
        );
        Ok(EmailBodyPart {
            part_id: Some(part_id),
            size,
            headers,
            name,
            r#type,
            charset,
            disposition,
            cid,
            language,
            location,
            sub_parts: None,
        })
    }
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl ParsedMessage {
    /// Content-transfer-decoded octets of the leaf part `part_id` (what the
    /// part's `blobId` refers to). For `message/rfc822` parts this is the
    /// whole embedded message.
    pub fn part_bytes(&self, part_id: &str) -> Option<&[u8]> {
        self.parts.get(part_id).map(|p| p.blob.as_slice())
    }

    /// The `EmailBodyValue` of the `text/*` part `part_id` (each CRLF
    /// replaced with LF, as RFC 8621 §4.1.4 asks), truncated to at
    /// most `max_bytes` UTF-8 octets on a character boundary (`0` = no limit,
    /// as `maxBodyValueBytes` in RFC 8621 §4.2). `None` for unknown or
    /// non-text parts.
    pub fn body_value(&self, part_id: &str, max_bytes: usize) -> Option<EmailBodyValue> {
        let data = self.parts.get(part_id)?;
        // RFC 8621 §4.1.4: "with any CRLF replaced with a single LF".
        let normalised = data.text.as_deref()?.replace("\r\n", "\n");
        let text = normalised.as_str();
        let (value, is_truncated) = if max_bytes > 0 && text.len() > max_bytes {
            let mut end = max_bytes;
            while end > 0 && !text.is_char_boundary(end) {
                end -= 1;
            }
            (text.get(..end).unwrap_or_default().to_string(), true)
        } else {
            (text.to_string(), false)
        };
        Some(EmailBodyValue {
            value,
            is_encoding_problem: data.is_encoding_problem,
            is_truncated,
        })
    }

    /// Value of a `header:{name}:as{Form}[:all]` property on the top-level headers.
    pub fn header_property(&self, name: &str, form: HeaderForm, all: bool) -> Value {
        header_property(&self.headers, name, form, all)
    }

    fn compute_preview(&self) -> String {
        let mut out = String::new();
        for part in &self.text_body {
            let Some(text) = part
                .part_id
                .as_deref()
                .and_then(|id| self.parts.get(id))
                .and_then(|d| d.text.as_deref())
            else {
                continue;
            };
            let plain = if part.r#type == "text/html" {
                html_to_text(text)
            } else {
                text.to_string()
            };
            let collapsed = collapse_ws(&plain);
            if collapsed.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&collapsed);
            if out.chars().count() >= PREVIEW_MAX_CHARS {
                break;
            }
        }
        truncate_chars(&out, PREVIEW_MAX_CHARS)
    }

    /// The Email object as JSON with RFC 8621 property names (every
    /// property except `id`, `blobId`, `threadId`, `mailboxIds`, `keywords`
    /// and `receivedAt`, which belong to the store, and `bodyValues`, see
    /// [`ParsedMessage::body_values_json`]).
    pub fn to_json(&self) -> Value {
        json!({
            "messageId": self.message_id,
            "inReplyTo": self.in_reply_to,
            "references": self.references,
            "sender": self.sender,
            "from": self.from,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "replyTo": self.reply_to,
            "subject": self.subject,
            "sentAt": self.sent_at,
            "size": self.size,
            "headers": self.headers,
            "bodyStructure": self.body_structure.to_json(),
            "textBody": self.text_body.iter().map(EmailBodyPart::to_json).collect::<Vec<_>>(),
            "htmlBody": self.html_body.iter().map(EmailBodyPart::to_json).collect::<Vec<_>>(),
            "attachments": self.attachments.iter().map(EmailBodyPart::to_json).collect::<Vec<_>>(),
            "hasAttachment": self.has_attachment,
            "preview": self.preview,
        })
    }

    /// A `bodyValues` object for the given part ids (unknown or non-text
    /// parts are omitted), each truncated to `max_bytes` (`0` = no limit).
    pub fn body_values_json<'a>(
        &self,
        part_ids: impl IntoIterator<Item = &'a str>,
        max_bytes: usize,
    ) -> Value {
        let mut map = serde_json::Map::new();
        for id in part_ids {
            if let Some(v) = self.body_value(id, max_bytes) {
                map.insert(id.to_string(), json!(v));
            }
        }
        Value::Object(map)
    }
}

impl EmailBodyPart {
    /// The part as JSON with RFC 8621 property names (`blobId` omitted:
    /// the caller derives it from `partId`).
    pub fn to_json(&self) -> Value {
        json!({
            "partId": self.part_id,
            "size": self.size,
            "headers": self.headers,
            "name": self.name,
            "type": self.r#type,
            "charset": self.charset,
            "disposition": self.disposition,
            "cid": self.cid,
            "language": self.language,
            "location": self.location,
            "subParts": self.sub_parts.as_ref().map(|s| s.iter().map(EmailBodyPart::to_json).collect::<Vec<_>>()),
        })
    }

    /// Value of a `header:{name}:as{Form}[:all]` property on this part's headers.
    pub fn header_property(&self, name: &str, form: HeaderForm, all: bool) -> Value {
        header_property(&self.headers, name, form, all)
    }
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

    fn parse(s: &str) -> ParsedMessage {
        parse_message(s.as_bytes(), &Limits::default()).unwrap()
    }

    /// `type#partId` of each part.
    fn ids(parts: &[EmailBodyPart]) -> Vec<String> {
        parts
            .iter()
            .map(|p| format!("{}#{}", p.r#type, p.part_id.as_deref().unwrap_or("-")))
            .collect()
    }

    #[test]
    fn alternative_text_and_html() {
        let m = parse(concat!(
            "From: a@b\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n",
            "--A\r\nContent-Type: text/plain\r\n\r\nplain\r\n",
            "--A\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n",
            "--A--\r\n"
        ));
        assert_eq!(ids(&m.text_body), ["text/plain#2"]);
        assert_eq!(ids(&m.html_body), ["text/html#3"]);
        assert!(m.attachments.is_empty());
        assert!(!m.has_attachment);
        assert_eq!(m.preview, "plain");
    }

    #[test]
    fn mixed_with_inline_image_between_text_parts() {
        let m = parse(concat!(
            "From: a@b\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n",
            "--M\r\nContent-Type: text/plain\r\n\r\nbefore\r\n",
            "--M\r\nContent-Type: image/png; name=pic.png\r\n",
            "Content-Disposition: inline; filename=pic.png\r\n\r\nPNG\r\n",
            "--M\r\nContent-Type: text/plain\r\n\r\nafter\r\n",
            "--M--\r\n"
        ));
        // Inline media is displayed in place: in both bodies, and not an
        // attachment since neither body is null at this level.
        let all = ["text/plain#2", "image/png#3", "text/plain#4"];
        assert_eq!(ids(&m.text_body), all);
        assert_eq!(ids(&m.html_body), all);
        assert!(m.attachments.is_empty());
        assert!(!m.has_attachment);
        assert_eq!(m.preview, "before after");
    }

    #[test]
    fn related_html_with_image() {
        let m = parse(concat!(
            "From: a@b\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n",
            "--A\r\nContent-Type: text/plain\r\n\r\nplain\r\n",
            "--A\r\nContent-Type: multipart/related; boundary=R\r\n\r\n",
            "--R\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:i1@x\">\r\n",
            "--R\r\nContent-Type: image/gif\r\nContent-ID: <i1@x>\r\n\r\nGIF\r\n",
            "--R\r\nContent-Type: text/plain\r\n\r\nnot first in related\r\n",
            "--R--\r\n",
            "--A--\r\n"
        ));
        // Only the first part of a multipart/related is a body part.
        assert_eq!(ids(&m.text_body), ["text/plain#2"]);
        assert_eq!(ids(&m.html_body), ["text/html#4"]);
        assert_eq!(ids(&m.attachments), ["image/gif#5", "text/plain#6"]);
        // The image is referenced from the HTML by cid: (MAY be ignored);
        // the trailing text part is a real attachment.
        assert!(m.has_attachment);
    }

    #[test]
    fn related_image_referenced_by_cid_is_not_counted() {
        let m = parse(concat!(
            "From: a@b\r\nContent-Type: multipart/related; boundary=R\r\n\r\n",
            "--R\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:i1@x\">\r\n",
            "--R\r\nContent-Type: image/gif\r\nContent-ID: <i1@x>\r\n\r\nGIF\r\n",
            "--R--\r\n"
        ));
        assert_eq!(ids(&m.text_body), ["text/html#2"]);
        assert_eq!(ids(&m.html_body), ["text/html#2"]);
        assert_eq!(ids(&m.attachments), ["image/gif#3"]);
        assert!(!m.has_attachment);
    }

    #[test]
    fn text_plain_with_attachment_disposition() {
        let m = parse(concat!(
            "From: a@b\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n",
            "--M\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
            "--M\r\nContent-Type: text/plain\r\n",
            "Content-Disposition: attachment; filename=log.txt\r\n\r\nlog\r\n",
            "--M--\r\n"
        ));
        assert_eq!(ids(&m.text_body), ["text/plain#2"]);
        assert_eq!(ids(&m.html_body), ["text/plain#2"]);
        assert_eq!(ids(&m.attachments), ["text/plain#3"]);
        assert_eq!(m.attachments[0].name.as_deref(), Some("log.txt"));
        assert!(m.has_attachment);
        // Even as the first part, disposition attachment wins.
        let m = parse(concat!(
            "From: a@b\r\nContent-Type: text/plain\r\n",
            "Content-Disposition: attachment; filename=only.txt\r\n\r\ndata\r\n"
        ));
        assert!(m.text_body.is_empty() && m.html_body.is_empty());
        assert_eq!(ids(&m.attachments), ["text/plain#1"]);
    }

    #[test]
    fn message_rfc822_attachment() {
        let inner = "From: x@y\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n";
        let raw = format!(
            concat!(
                "From: a@b\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n",
                "--M\r\nContent-Type: text/plain\r\n\r\nsee forwarded\r\n",
                "--M\r\nContent-Type: message/rfc822\r\n\r\n{}",
                "\r\n--M--\r\n"
            ),
            inner
        );
        let m = parse(&raw);
        assert_eq!(ids(&m.text_body), ["text/plain#2"]);
        assert_eq!(ids(&m.attachments), ["message/rfc822#3"]);
        // No subParts for message/*, and its blob is the whole message.
        assert!(m.attachments[0].sub_parts.is_none());
        assert_eq!(m.part_bytes("3").unwrap(), inner.as_bytes());
        assert_eq!(m.attachments[0].charset, None);
        assert!(m.has_attachment);
        assert_eq!(m.preview, "see forwarded");
    }

    #[test]
    fn charset_parameter_of_non_text_parts() {
        // RFC 8621 §4.1.4: the charset parameter when present, whatever the type.
        let m = parse(concat!(
            "From: a@b\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n",
            "--M\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n",
            "--M\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n",
            "--M\r\n\r\nno content type\r\n",
            "--M--\r\n"
        ));
        let subs = m.body_structure.sub_parts.as_ref().unwrap();
        assert_eq!(subs[0].charset.as_deref(), Some("utf-8"));
        assert_eq!(subs[1].charset, None);
        assert_eq!(subs[2].charset.as_deref(), Some("us-ascii"));
        assert_eq!(m.body_structure.charset, None);
    }

    #[test]
    fn empty_name_counts_as_no_name() {
        // `!part.name` in the pseudocode is also true for "".
        let m = parse(concat!(
            "From: a@b\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n",
            "--M\r\nContent-Type: text/plain\r\n\r\none\r\n",
            // An empty encoded word: mail-parser yields Some("").
            "--M\r\nContent-Type: text/plain; name=\"=?utf-8?Q??=\"\r\n\r\ntwo\r\n",
            "--M--\r\n"
        ));
        assert_eq!(
            m.body_structure.sub_parts.as_ref().unwrap()[1]
                .name
                .as_deref(),
            Some("")
        );
        assert_eq!(ids(&m.text_body), ["text/plain#2", "text/plain#3"]);
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn body_values_replace_crlf_with_lf() {
        let m = parse("From: a@b\r\nSubject: x\r\n\r\nline one\r\nline two\r\n");
        let v = m.body_value("1", 0).unwrap();
        assert_eq!(v.value, "line one\nline two\n");
        // Truncation counts the normalised value.
        assert_eq!(m.body_value("1", 9).unwrap().value, "line one\n");
        // The blob keeps the original octets.
        assert_eq!(m.part_bytes("1").unwrap(), b"line one\r\nline two\r\n");
    }
}
