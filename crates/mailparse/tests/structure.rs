#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! RFC 8621 §4.1.4 textBody/htmlBody/attachments algorithm on inline messages.

use keyscope_mime::{EmailBodyPart, Limits, parse_message};

fn parse(s: &str) -> keyscope_mime::ParsedMessage {
    parse_message(s.as_bytes(), &Limits::default()).unwrap()
}

fn types(parts: &[EmailBodyPart]) -> Vec<String> {
    parts
        .iter()
        .map(|p| format!("{}#{}", p.r#type, p.part_id.as_deref().unwrap()))
        .collect()
}

#[test]
fn html_only_alternative_is_copied_to_text_body() {
    let m = parse(
        "From: a@b\nContent-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/html\n\n<p>x</p>\n--B--\n",
    );
    assert_eq!(types(&m.html_body), ["text/html#2"]);
    assert_eq!(types(&m.text_body), ["text/html#2"]);
    assert_eq!(m.preview, "x");
}

#[test]
fn text_only_alternative_is_copied_to_html_body() {
    let m = parse(
        "From: a@b\nContent-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/plain\n\nhi\n--B--\n",
    );
    assert_eq!(types(&m.text_body), ["text/plain#2"]);
    assert_eq!(types(&m.html_body), ["text/plain#2"]);
}

#[test]
fn inline_image_in_mixed_goes_to_both_bodies_not_attachments() {
    let m = parse(concat!(
        "From: a@b\nContent-Type: multipart/mixed; boundary=B\n\n",
        "--B\nContent-Type: text/plain\n\nbefore\n",
        "--B\nContent-Type: image/jpeg\nContent-Disposition: inline\n\nJPEG\n",
        "--B\nContent-Type: text/plain\n\nafter\n",
        "--B--\n"
    ));
    assert_eq!(
        types(&m.text_body),
        ["text/plain#2", "image/jpeg#3", "text/plain#4"]
    );
    assert_eq!(
        types(&m.html_body),
        ["text/plain#2", "image/jpeg#3", "text/plain#4"]
    );
    assert!(m.attachments.is_empty());
    assert!(!m.has_attachment);
    assert_eq!(m.preview, "before after");
}

#[test]
fn image_inside_alternative_branch_is_also_an_attachment() {
    // Image inline inside the HTML branch of an alternative: pushed to
    // htmlBody only (textBody nulled for that branch), hence also attachments.
    let m = parse(concat!(
        "From: a@b\nContent-Type: multipart/alternative; boundary=A\n\n",
        "--A\nContent-Type: text/plain\n\nplain\n",
        "--A\nContent-Type: multipart/mixed; boundary=M\n\n",
        "--M\nContent-Type: text/html\n\n<p>rich</p>\n",
        "--M\nContent-Type: image/gif\nContent-Disposition: inline\n\nGIF\n",
        "--M--\n",
        "--A--\n"
    ));
    assert_eq!(types(&m.text_body), ["text/plain#2"]);
    assert_eq!(types(&m.html_body), ["text/html#4", "image/gif#5"]);
    assert_eq!(types(&m.attachments), ["image/gif#5"]);
    assert!(!m.has_attachment, "disposition inline");
}

#[test]
fn named_text_part_after_first_is_attachment() {
    let m = parse(concat!(
        "From: a@b\nContent-Type: multipart/mixed; boundary=B\n\n",
        "--B\nContent-Type: text/plain\n\nbody\n",
        "--B\nContent-Type: text/plain; name=notes.txt\n\nnotes\n",
        "--B\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n",
        "--B--\n"
    ));
    assert_eq!(types(&m.text_body), ["text/plain#2"]);
    assert_eq!(types(&m.attachments), ["text/plain#3", "text/calendar#4"]);
    assert_eq!(m.attachments[0].name.as_deref(), Some("notes.txt"));
    assert!(m.has_attachment);
}

#[test]
fn digest_children_default_to_message_rfc822() {
    let m = parse(concat!(
        "From: a@b\nContent-Type: multipart/digest; boundary=D\n\n",
        "--D\n\nFrom: x@y\nSubject: one\n\nbody one\n",
        "--D--\n"
    ));
    let subs = m.body_structure.sub_parts.as_ref().unwrap();
    assert_eq!(subs[0].r#type, "message/rfc822");
    assert_eq!(subs[0].charset, None);
    assert_eq!(types(&m.attachments), ["message/rfc822#2"]);
}

#[test]
fn preview_is_capped_at_256_chars() {
    let body = "word ".repeat(200);
    let m = parse(&format!("From: a@b\nSubject: long\n\n{body}"));
    assert_eq!(m.preview.chars().count(), 256);
    assert!(!m.preview.contains("  "));
}
