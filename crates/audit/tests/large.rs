#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Segments with thousands of lines are parsed on two threads; a change anywhere in them must
//! still be named exactly, as in the small logs of `tamper.rs`.

use std::fs;
use std::path::PathBuf;

use keyscope_audit::{AuditLog, Verification, verify};
use serde_json::{Map, Value, json};

const RECORDS: u64 = 3000;

fn build(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-large-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let log = AuditLog::open(&dir).unwrap();
    for chunk in 0..(RECORDS / 100) {
        let events: Vec<Map<String, Value>> = (0..100)
            .map(
                |i| match json!({"Operation": "Send", "UserId": format!("user{}", chunk * 100 + i)})
                {
                    Value::Object(map) => map,
                    _ => unreachable!(),
                },
            )
            .collect();
        for result in log.append_all(events) {
            result.unwrap();
        }
    }
    log.close();
    dir
}

fn segment(dir: &std::path::Path) -> PathBuf {
    fs::read_dir(dir.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

fn problem(dir: &std::path::Path) -> String {
    match verify(dir, None).unwrap() {
        Verification::Failed(why) => why,
        Verification::Intact { .. } => panic!("tampering not detected"),
    }
}

#[test]
fn an_intact_large_log_verifies() {
    let dir = build("intact");
    assert!(matches!(
        verify(&dir, None).unwrap(),
        Verification::Intact {
            records: RECORDS,
            ..
        }
    ));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn changes_in_the_second_half_of_a_large_segment_are_named() {
    for (target, label) in [(2345u64, "late"), (1501, "middle"), (17, "early")] {
        let dir = build(label);
        let path = segment(&dir);
        let mut bytes = fs::read(&path).unwrap();
        let needle = format!("\"UserId\":\"user{}\"", target - 1);
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap();
        // user1234 -> uSer1234: still valid JSON, different bytes.
        bytes[at + 11] = b'S';
        fs::write(&path, &bytes).unwrap();
        let why = problem(&dir);
        assert!(why.starts_with(&format!("record {target}:")), "{why}");
        assert!(AuditLog::open(&dir).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_deleted_line_late_in_a_large_segment_is_named() {
    let dir = build("delete");
    let path = segment(&dir);
    let text = fs::read(&path).unwrap();
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let lines: Vec<&[u8]> = text[..end].split(|&b| b == b'\n').collect();
    let victim = lines
        .iter()
        .position(|l| l.ends_with(b"\"seq\":2800}"))
        .unwrap();
    let mut rebuilt = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i != victim && !line.is_empty() {
            rebuilt.extend_from_slice(line);
            rebuilt.push(b'\n');
        }
    }
    fs::write(&path, &rebuilt).unwrap();
    let why = problem(&dir);
    assert!(why.starts_with("record 2800:"), "{why}");
    let _ = fs::remove_dir_all(&dir);
}
