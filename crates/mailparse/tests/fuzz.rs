#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Property tests: hostile input never panics and limits hold.

use keyscope_mime::{EmailBodyPart, Limits, MimeError, parse_message};
use proptest::prelude::*;

fn count(p: &EmailBodyPart) -> usize {
    1 + p.sub_parts.iter().flatten().map(count).sum::<usize>()
}

fn depth(p: &EmailBodyPart) -> usize {
    p.sub_parts
        .iter()
        .flatten()
        .map(|s| 1 + depth(s))
        .max()
        .unwrap_or(0)
}

fn check(raw: &[u8], limits: &Limits) {
    match parse_message(raw, limits) {
        Ok(m) => {
            assert!(raw.len() <= limits.max_size);
            assert!(count(&m.body_structure) <= limits.max_parts);
            assert!(depth(&m.body_structure) <= limits.max_depth);
            assert!(m.preview.chars().count() <= 256);
            let _ = m.to_json();
            for p in m.text_body.iter().chain(&m.html_body).chain(&m.attachments) {
                let id = p.part_id.as_deref().unwrap();
                assert_eq!(m.part_bytes(id).unwrap().len() as u64, p.size);
                if let Some(v) = m.body_value(id, 7) {
                    assert!(v.value.len() <= 7);
                }
            }
        }
        Err(MimeError::TooLarge { .. }) => assert!(raw.len() > limits.max_size),
        Err(_) => {}
    }
}

fn mime_soup() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop::sample::select(vec![
        "From: a@b\r\n",
        "Subject: =?utf-8?B?w6k=?=\r\n",
        "Content-Type: multipart/mixed; boundary=X\r\n",
        "Content-Type: multipart/alternative; boundary=X\r\n",
        "Content-Type: message/rfc822\r\n",
        "Content-Type: text/html; charset=iso-8859-1\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "\r\n",
        "--X\r\n",
        "--X--\r\n",
        "=C3=\r\n",
        "aGVsbG8=\r\n",
        "<p>hi</p>",
        "Content-Disposition: attachment; filename*=utf-8''%C3%A9\r\n",
        "Content-Type: image/png\r\n",
        "\n",
        "\r",
        ":",
        "=?",
        "?=",
    ]);
    prop::collection::vec(atoms, 0..80).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&raw, &Limits::default());
    }

    #[test]
    fn mime_like_input_never_panics_and_respects_limits(
        raw in mime_soup(),
        max_size in 0usize..4096,
        max_parts in 1usize..8,
        max_depth in 0usize..4,
    ) {
        check(&raw, &Limits { max_size, max_parts, max_depth });
        check(&raw, &Limits::default());
    }
}

#[test]
fn deeply_nested_multipart_is_rejected() {
    let mut raw = String::from("From: a@b\r\n");
    for i in 0..50 {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=B{i}\r\n\r\n--B{i}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\nleaf\r\n");
    let limits = Limits {
        max_depth: 10,
        ..Limits::default()
    };
    assert_eq!(
        parse_message(raw.as_bytes(), &limits).unwrap_err(),
        MimeError::TooDeep { limit: 10 }
    );
}
