#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Fixture-based tests asserting RFC 8621 Email properties.

use keyscope_mime::{
    EmailAddress, EmailBodyPart, HeaderForm, Limits, MimeError, ParsedMessage, as_addresses,
    as_date, as_grouped_addresses, as_message_ids, as_text, as_urls, form_allowed,
    parse_header_property, parse_message,
};
use serde_json::json;

fn load(name: &str) -> ParsedMessage {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(path).unwrap();
    parse_message(&raw, &Limits::default()).unwrap()
}

fn ids(parts: &[EmailBodyPart]) -> Vec<&str> {
    parts
        .iter()
        .map(|p| p.part_id.as_deref().unwrap())
        .collect()
}

fn addr(name: Option<&str>, email: &str) -> EmailAddress {
    EmailAddress {
        name: name.map(str::to_string),
        email: email.to_string(),
    }
}

#[test]
fn plain_text_metadata() {
    let m = load("plain.eml");
    assert_eq!(m.message_id, Some(vec!["plain.1@example.com".to_string()]));
    assert_eq!(m.in_reply_to, Some(vec!["parent@example.com".to_string()]));
    assert_eq!(
        m.references,
        Some(vec![
            "root@example.com".to_string(),
            "parent@example.com".to_string()
        ])
    );
    assert_eq!(
        m.from,
        Some(vec![addr(Some("Alice Example"), "alice@example.com")])
    );
    assert_eq!(m.sender, Some(vec![addr(None, "bot@example.com")]));
    assert_eq!(
        m.to,
        Some(vec![
            addr(Some("Bob"), "bob@example.org"),
            addr(None, "carol@example.net")
        ])
    );
    // Group syntax flattened by asAddresses.
    assert_eq!(
        m.cc,
        Some(vec![
            addr(None, "dave@example.com"),
            addr(Some("Eve E."), "eve@example.com")
        ])
    );
    assert_eq!(m.bcc, None);
    assert_eq!(m.reply_to, Some(vec![addr(None, "replies@example.com")]));
    assert_eq!(m.subject.as_deref(), Some("Hello world"));
    assert_eq!(m.sent_at.as_deref(), Some("2026-02-03T10:15:30-05:00"));
    assert_eq!(m.size, 605);

    // Single-part message: the root is the only body part.
    let root = &m.body_structure;
    assert_eq!(root.part_id.as_deref(), Some("1"));
    assert_eq!(root.r#type, "text/plain");
    assert_eq!(root.charset.as_deref(), Some("utf-8"));
    assert_eq!(root.headers.len(), 15);
    assert_eq!(root.headers[3].name, "References");
    assert_eq!(
        root.headers[3].value,
        " <root@example.com>\n <parent@example.com>"
    );
    assert_eq!(ids(&m.text_body), ["1"]);
    assert_eq!(ids(&m.html_body), ["1"]);
    assert!(m.attachments.is_empty());
    assert!(!m.has_attachment);
    assert_eq!(m.preview, "Hi Bob, This is a plain text message.");
    let v = m.body_value("1", 0).unwrap();
    assert_eq!(v.value, "Hi Bob,\n\nThis   is a    plain\ntext message.\n");
    assert!(!v.is_encoding_problem && !v.is_truncated);
    assert_eq!(m.part_bytes("1").unwrap(), v.value.as_bytes());
}

#[test]
fn plain_text_header_forms() {
    let m = load("plain.eml");
    assert_eq!(
        m.header_property("subject", HeaderForm::Raw, false),
        json!(" Hello\n  world")
    );
    assert_eq!(
        m.header_property("Subject", HeaderForm::Text, false),
        json!("Hello world")
    );
    assert_eq!(
        m.header_property("X-Custom", HeaderForm::Text, true),
        json!(["one", "two"])
    );
    assert_eq!(
        m.header_property("X-Custom", HeaderForm::Raw, false),
        json!(" two")
    );
    assert_eq!(
        m.header_property("X-Missing", HeaderForm::Raw, false),
        json!(null)
    );
    assert_eq!(
        m.header_property("X-Missing", HeaderForm::Raw, true),
        json!([])
    );
    assert_eq!(
        m.header_property("Cc", HeaderForm::GroupedAddresses, false),
        json!([{"name": "Friends", "addresses": [
            {"name": null, "email": "dave@example.com"},
            {"name": "Eve E.", "email": "eve@example.com"}]}])
    );
    assert_eq!(
        m.header_property("List-Unsubscribe", HeaderForm::Urls, false),
        json!(["mailto:unsub@example.com", "https://example.com/unsub?id=1"])
    );
    assert_eq!(
        m.header_property("References", HeaderForm::MessageIds, true),
        json!([["root@example.com", "parent@example.com"]])
    );
    assert_eq!(
        m.header_property("Date", HeaderForm::Date, false),
        json!("2026-02-03T10:15:30-05:00")
    );
}

#[test]
fn header_form_functions() {
    assert_eq!(
        as_text(" =?UTF-8?Q?caf=C3=A9?= au\r\n lait"),
        "café au lait"
    );
    assert_eq!(
        as_addresses(" \"Doe, J\" <j@x.org>, k@y.org"),
        vec![addr(Some("Doe, J"), "j@x.org"), addr(None, "k@y.org")]
    );
    let g = as_grouped_addresses(" a@x.org, G: b@x.org;");
    assert_eq!(
        g.iter().map(|g| g.name.as_deref()).collect::<Vec<_>>(),
        [None, Some("G")]
    );
    assert_eq!(
        as_message_ids(" <a@b> <c@d>"),
        Some(vec!["a@b".into(), "c@d".into()])
    );
    assert_eq!(as_message_ids(" "), None);
    assert_eq!(
        as_date(" Mon, 1 Jan 2024 00:00:00 +0930"),
        Some("2024-01-01T00:00:00+09:30".into())
    );
    assert_eq!(as_date(" garbage"), None);
    assert_eq!(
        as_urls(" <http://a/>, (c) <mailto:b@c>"),
        Some(vec!["http://a/".into(), "mailto:b@c".into()])
    );
    assert_eq!(as_urls(" none"), None);
}

#[test]
fn header_property_names_and_allowed_forms() {
    let p = parse_header_property("header:From:asAddresses:all").unwrap();
    assert_eq!(
        (p.name.as_str(), p.form, p.all),
        ("From", HeaderForm::Addresses, true)
    );
    let p = parse_header_property("header:X-Foo").unwrap();
    assert_eq!((p.form, p.all), (HeaderForm::Raw, false));
    let p = parse_header_property("header:List-Post:asURLs").unwrap();
    assert_eq!(p.form, HeaderForm::Urls);
    assert!(parse_header_property("header:From:asBogus").is_none());
    assert!(parse_header_property("header::asText").is_none());
    assert!(parse_header_property("subject").is_none());
    assert!(form_allowed("From", HeaderForm::Addresses));
    assert!(!form_allowed("From", HeaderForm::Date));
    assert!(form_allowed("X-Anything", HeaderForm::Date));
    assert!(!form_allowed("Received", HeaderForm::Text));
    assert!(form_allowed("Received", HeaderForm::Raw));
}

#[test]
fn alternative_text_and_html() {
    let m = load("alternative.eml");
    let root = &m.body_structure;
    assert_eq!(root.r#type, "multipart/alternative");
    assert_eq!(root.part_id, None);
    assert_eq!(root.charset, None);
    let subs = root.sub_parts.as_ref().unwrap();
    assert_eq!(
        subs.iter().map(|p| p.r#type.as_str()).collect::<Vec<_>>(),
        ["text/plain", "text/html"]
    );
    assert_eq!(ids(&m.text_body), ["2"]);
    assert_eq!(ids(&m.html_body), ["3"]);
    assert!(m.attachments.is_empty());
    assert!(!m.has_attachment);
    assert_eq!(m.preview, "Plain version");
    assert_eq!(
        m.body_value("3", 0).unwrap().value,
        "<html><body><p>HTML <b>version</b></p></body></html>"
    );
    assert_eq!(subs[0].size, 13);
}

#[test]
fn mixed_with_pdf_attachment() {
    let m = load("mixed_pdf.eml");
    assert_eq!(ids(&m.text_body), ["2"]);
    assert_eq!(ids(&m.html_body), ["2"]);
    assert_eq!(ids(&m.attachments), ["3"]);
    let pdf = &m.attachments[0];
    assert_eq!(pdf.r#type, "application/pdf");
    assert_eq!(pdf.name.as_deref(), Some("report.pdf"));
    assert_eq!(pdf.disposition.as_deref(), Some("attachment"));
    assert_eq!(pdf.charset, None);
    let bytes = m.part_bytes("3").unwrap();
    assert!(bytes.starts_with(b"%PDF-1.4"));
    assert_eq!(pdf.size, bytes.len() as u64);
    assert!(m.has_attachment);
    assert_eq!(
        m.body_value("3", 0),
        None,
        "no body value for non-text parts"
    );
    assert_eq!(m.sent_at.as_deref(), Some("2026-02-05T12:00:00+01:00"));
}

#[test]
fn inline_image_in_related() {
    let m = load("related_inline.eml");
    assert_eq!(ids(&m.text_body), ["2"]);
    assert_eq!(ids(&m.html_body), ["4"]);
    assert_eq!(ids(&m.attachments), ["5"]);
    let img = &m.attachments[0];
    assert_eq!(img.r#type, "image/png");
    assert_eq!(img.cid.as_deref(), Some("logo@example.com"));
    assert_eq!(img.size, 16);
    assert!(m.part_bytes("5").unwrap().starts_with(b"\x89PNG"));
    // Referenced from the HTML by cid: so not a "real" attachment.
    assert!(!m.has_attachment);
    assert_eq!(m.sent_at.as_deref(), Some("2026-02-06T09:30:00+05:30"));
}

#[test]
fn encoded_words_and_quoted_printable() {
    let m = load("encoded_words.eml");
    assert_eq!(m.subject.as_deref(), Some("Hello 🌍 café"));
    assert_eq!(
        m.from,
        Some(vec![addr(Some("André Pirard"), "andre@example.be")])
    );
    assert_eq!(m.to, Some(vec![addr(Some("山田太郎"), "taro@example.jp")]));
    assert_eq!(m.sent_at.as_deref(), Some("2026-02-07T23:59:59-08:00"));
    let v = m.body_value("1", 0).unwrap();
    assert_eq!(v.value, "Café crème brûlée €5 and a soft line break.\n");
    assert_eq!(m.part_bytes("1").unwrap(), v.value.as_bytes());
    assert_eq!(m.body_structure.size, v.value.len() as u64);
    // Truncation on a char boundary: "Caf" + 'é' (2 bytes) cut at 4 -> "Caf".
    let t = m.body_value("1", 4).unwrap();
    assert_eq!(t.value, "Caf");
    assert!(t.is_truncated);
    let t = m.body_value("1", 5).unwrap();
    assert_eq!(t.value, "Café");
    assert!(m.preview.starts_with("Café crème"));
}

#[test]
fn base64_body() {
    let m = load("base64_body.eml");
    let v = m.body_value("1", 0).unwrap();
    assert_eq!(v.value, "Grüße aus Köln!\nZweite Zeile.\n");
    assert_eq!(
        m.part_bytes("1").unwrap(),
        "Grüße aus Köln!\nZweite Zeile.\n".as_bytes()
    );
    assert_eq!(m.preview, "Grüße aus Köln! Zweite Zeile.");
}

#[test]
fn iso_8859_1_body() {
    let m = load("latin1.eml");
    let part = &m.body_structure;
    assert_eq!(part.charset.as_deref(), Some("iso-8859-1"));
    let v = m.body_value("1", 0).unwrap();
    assert_eq!(v.value, "Voilà un café très français.\n");
    assert!(!v.is_encoding_problem);
    // The blob keeps the original octets (charset is not converted).
    assert_eq!(
        m.part_bytes("1").unwrap(),
        b"Voil\xe0 un caf\xe9 tr\xe8s fran\xe7ais.\n"
    );
    assert_eq!(part.size, 29);
}

#[test]
fn message_rfc822_attachment() {
    let m = load("rfc822_attachment.eml");
    assert_eq!(ids(&m.text_body), ["2"]);
    assert_eq!(ids(&m.attachments), ["3"]);
    let att = &m.attachments[0];
    assert_eq!(att.r#type, "message/rfc822");
    assert_eq!(
        att.sub_parts, None,
        "embedded messages are leaves in bodyStructure"
    );
    assert_eq!(att.name.as_deref(), Some("original.eml"));
    let inner = m.part_bytes("3").unwrap();
    assert!(inner.starts_with(b"Message-ID: <orig@example.com>"));
    assert!(inner.ends_with(b"Original body."));
    // The embedded message can itself be parsed.
    let inner = parse_message(inner, &Limits::default()).unwrap();
    assert_eq!(inner.subject.as_deref(), Some("Original"));
    assert!(m.has_attachment);
}

#[test]
fn no_message_id_and_bad_date() {
    let m = load("no_message_id.eml");
    assert_eq!(m.message_id, None);
    assert_eq!(m.in_reply_to, None);
    assert_eq!(m.references, None);
    assert_eq!(m.sent_at, None);
    assert_eq!(m.subject.as_deref(), Some("No id"));
    assert_eq!(m.body_structure.charset.as_deref(), Some("us-ascii"));
    let j = m.to_json();
    assert_eq!(j["messageId"], json!(null));
    assert_eq!(j["sentAt"], json!(null));
}

#[test]
fn broken_boundary_is_an_opaque_part() {
    let m = load("broken_boundary.eml");
    let root = &m.body_structure;
    assert_eq!(root.part_id.as_deref(), Some("1"));
    assert_eq!(root.r#type, "application/octet-stream");
    assert_eq!(root.sub_parts, None);
    assert!(m.text_body.is_empty());
    assert!(m.html_body.is_empty());
    assert_eq!(ids(&m.attachments), ["1"]);
    assert!(m.part_bytes("1").unwrap().starts_with(b"--ACTUAL"));
    assert_eq!(m.preview, "");
}

#[test]
fn json_property_names() {
    let m = load("mixed_pdf.eml");
    let j = m.to_json();
    for key in [
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
        "size",
        "headers",
        "bodyStructure",
        "textBody",
        "htmlBody",
        "attachments",
        "hasAttachment",
        "preview",
    ] {
        assert!(j.get(key).is_some(), "missing {key}");
    }
    let bs = &j["bodyStructure"];
    assert_eq!(bs["partId"], json!(null));
    assert_eq!(bs["subParts"][1]["partId"], json!("3"));
    assert_eq!(bs["subParts"][1]["type"], json!("application/pdf"));
    assert_eq!(bs["subParts"][1]["subParts"], json!(null));
    assert_eq!(j["textBody"][0]["charset"], json!("utf-8"));
    let bv = m.body_values_json(["2", "3", "99"], 3);
    assert_eq!(
        bv,
        json!({"2": {"value": "See", "isEncodingProblem": false, "isTruncated": true}})
    );
}

#[test]
fn limits_are_enforced() {
    let raw = std::fs::read(format!(
        "{}/tests/fixtures/related_inline.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let small = Limits {
        max_size: 100,
        ..Limits::default()
    };
    assert!(matches!(
        parse_message(&raw, &small),
        Err(MimeError::TooLarge { .. })
    ));
    let few = Limits {
        max_parts: 4,
        ..Limits::default()
    };
    assert_eq!(
        parse_message(&raw, &few).unwrap_err(),
        MimeError::TooManyParts { limit: 4 }
    );
    assert!(
        parse_message(
            &raw,
            &Limits {
                max_parts: 5,
                ..Limits::default()
            }
        )
        .is_ok()
    );
    let shallow = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    assert_eq!(
        parse_message(&raw, &shallow).unwrap_err(),
        MimeError::TooDeep { limit: 1 }
    );
    assert!(
        parse_message(
            &raw,
            &Limits {
                max_depth: 2,
                ..Limits::default()
            }
        )
        .is_ok()
    );
    assert_eq!(
        parse_message(b"", &Limits::default()).unwrap_err(),
        MimeError::NotAMessage
    );
}
