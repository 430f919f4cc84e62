//! From raw RFC 5322 octets to a stored email: blob ids, the parsed summary kept beside the
//! message, the lower-cased search keys, and filing in one account transaction.

use std::collections::BTreeSet;

use keyscope_mime::{EmailAddress, Limits, ParsedMessage};
use keyscope_store::{EmailRecord, MailTx, NewEmail, SearchKeys};
use serde_json::{Map, Value};

use crate::MailError;

/// How much body text is kept for `body`/`text` search, in bytes.
pub const SEARCH_BODY_BYTES: usize = 64 * 1024;

/// The MIME limits for stored messages.
pub fn mime_limits() -> Limits {
    Limits {
        max_size: usize::try_from(crate::MAX_UPLOAD_BYTES).unwrap_or(usize::MAX),
        ..Limits::default()
    }
}

/// A blob's id: `G` followed by the hex SHA-256 of its content (content addressing: the same
/// octets are stored once).
pub fn blob_id(data: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut id = String::with_capacity(65);
    id.push('G');
    for byte in digest.as_ref() {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// The blob id of a body part: the message's blob id, `_`, the part id.
pub fn part_blob_id(message_blob_id: &str, part_id: &str) -> String {
    format!("{message_blob_id}_{part_id}")
}

/// Splits a body part's blob id into (message blob id, part id).
pub fn split_part_blob_id(blob_id: &str) -> Option<(&str, &str)> {
    let (message, part) = blob_id.split_once('_')?;
    let well_formed = message.len() == 65
        && message.starts_with('G')
        && !part.is_empty()
        && part.len() <= 10
        && part.bytes().all(|b| b.is_ascii_digit());
    well_formed.then_some((message, part))
}

/// Checks and lower-cases a keyword (RFC 8621 §4.1.1: 1–255 of `%x21-7e` except
/// `( ) { ] % * " \`).
pub fn normalize_keyword(keyword: &str) -> Option<String> {
    let ok = !keyword.is_empty()
        && keyword.len() <= 255
        && keyword
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b));
    ok.then(|| keyword.to_ascii_lowercase())
}

/// The header properties kept beside each email so that `Email/get` of the usual properties
/// needs no parse: exactly the RFC 8621 names.
pub const SUMMARY_PROPERTIES: [&str; 13] = [
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
];

fn summary_json(parsed: &ParsedMessage) -> String {
    let full = parsed.to_json();
    let mut summary = Map::new();
    for name in SUMMARY_PROPERTIES {
        summary.insert(
            name.to_owned(),
            full.get(name).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(summary).to_string()
}

fn address_key(addresses: Option<&Vec<EmailAddress>>) -> String {
    let mut out = String::new();
    for address in addresses.into_iter().flatten() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        if let Some(name) = &address.name {
            out.push_str(name);
            out.push(' ');
        }
        out.push('<');
        out.push_str(&address.email);
        out.push('>');
    }
    out.to_lowercase()
}

fn search_keys(parsed: &ParsedMessage) -> SearchKeys {
    let mut body = String::new();
    for part in parsed.text_body.iter().chain(&parsed.html_body) {
        let Some(value) = part
            .part_id
            .as_deref()
            .and_then(|id| parsed.body_value(id, SEARCH_BODY_BYTES))
        else {
            continue;
        };
        if body.len() + value.value.len() > SEARCH_BODY_BYTES {
            break;
        }
        body.push_str(&value.value);
        body.push('\n');
    }
    SearchKeys {
        subject: parsed.subject.clone().unwrap_or_default().to_lowercase(),
        from: address_key(parsed.from.as_ref()),
        to: address_key(parsed.to.as_ref()),
        cc: address_key(parsed.cc.as_ref()),
        bcc: address_key(parsed.bcc.as_ref()),
        body: body.to_lowercase(),
    }
}

/// How a message's `receivedAt` is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// This time (Unix seconds).
    At(i64),
    /// The date of the most recent (topmost) `Received` header, else now: `Email/import`'s
    /// default (RFC 8621 §4.8).
    LastReceived,
    /// The `Date` header, else now: archives imported by an operator keep their order.
    Sent,
}

/// The date of the topmost `Received` header (after its last `;`).
fn last_received(parsed: &ParsedMessage) -> Option<i64> {
    let header = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("received"))?;
    let (_, date) = header.value.rsplit_once(';')?;
    keyscope_mime::as_date(date.trim())
        .as_deref()
        .and_then(crate::time::parse_rfc3339)
}

/// What filing a message needs besides its octets.
#[derive(Debug, Clone)]
pub struct Filing {
    /// Mailboxes (at least one; the caller checked they exist).
    pub mailbox_ids: BTreeSet<String>,
    /// Keywords (normalised).
    pub keywords: BTreeSet<String>,
    /// When it arrived.
    pub arrival: Arrival,
}

/// Parses `raw` and files it in the transaction's account: blob, email row, thread, change
/// log. Returns the stored record.
pub async fn file_message(
    tx: &mut MailTx,
    raw: &[u8],
    filing: &Filing,
) -> Result<EmailRecord, MailError> {
    let parsed = keyscope_mime::parse_message(raw, &mime_limits())?;
    let blob = blob_id(raw);
    let now = crate::unix_now();
    tx.put_blob(&blob, raw, "message/rfc822", now).await?;
    let own: Vec<String> = parsed.message_id.clone().unwrap_or_default();
    let mut parents: Vec<String> = parsed.in_reply_to.clone().unwrap_or_default();
    parents.extend(parsed.references.clone().unwrap_or_default());
    parents.truncate(100);
    let sent_at = parsed
        .sent_at
        .as_deref()
        .and_then(crate::time::parse_rfc3339);
    let record = EmailRecord {
        id: crate::account::new_id('e'),
        blob_id: blob,
        thread_id: String::new(),
        message_id: own.first().cloned(),
        received_at: match filing.arrival {
            Arrival::At(at) => at,
            Arrival::LastReceived => last_received(&parsed).unwrap_or(now),
            Arrival::Sent => sent_at.unwrap_or(now),
        },
        sent_at,
        size: i64::try_from(raw.len()).unwrap_or(i64::MAX),
        keywords: filing.keywords.clone(),
        mailbox_ids: filing.mailbox_ids.clone(),
        summary: summary_json(&parsed),
    };
    let new = NewEmail {
        record,
        own_message_ids: own.into_iter().take(10).collect(),
        parent_message_ids: parents,
        search: search_keys(&parsed),
    };
    let thread_id = tx.insert_email(&new, &crate::account::new_id('t')).await?;
    Ok(EmailRecord {
        thread_id,
        ..new.record
    })
}

/// Removes the `Bcc` header field (with its folded lines) from a message's header section, so
/// that delivered copies do not reveal blind-copied recipients.
pub fn strip_bcc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        if line == b"\r\n" || line == b"\n" {
            // End of the header section: the body is copied untouched.
            out.extend_from_slice(rest);
            return out;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            skipping = line.len() >= 4
                && line
                    .get(..4)
                    .is_some_and(|name| name.eq_ignore_ascii_case(b"bcc:"));
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids() {
        let id = blob_id(b"hello");
        assert_eq!(id.len(), 65);
        assert!(keyscope_jmap::is_valid_id(&id));
        let part = part_blob_id(&id, "3");
        assert!(keyscope_jmap::is_valid_id(&part));
        assert_eq!(split_part_blob_id(&part), Some((id.as_str(), "3")));
        assert_eq!(split_part_blob_id(&id), None);
        assert_eq!(split_part_blob_id("G_1"), None);
    }

    #[test]
    fn keywords() {
        assert_eq!(normalize_keyword("$Seen").as_deref(), Some("$seen"));
        for bad in ["", "a b", "a(b", "a%", "ä", &"x".repeat(256)] {
            assert_eq!(normalize_keyword(bad), None, "{bad}");
        }
    }

    #[test]
    fn bcc_is_removed_with_its_folded_lines() {
        let raw = b"From: a@x\r\nBcc: secret@y,\r\n  other@z\r\nTo: b@x\r\n\r\nBcc: in body\r\n";
        assert_eq!(
            strip_bcc(raw),
            b"From: a@x\r\nTo: b@x\r\n\r\nBcc: in body\r\n".to_vec()
        );
    }
}
