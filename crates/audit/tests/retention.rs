#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Retention: pruning old segments keeps the rest verifiable and provable, and a tampered
//! summary is caught.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use keyscope_audit::merkle::verify_inclusion;
use keyscope_audit::{AuditLog, Options, Verification, prove_inclusion, prune, verify};
use keyscope_jose::b64;
use serde_json::{Map, Value, json};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("keyscope-retention-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn event(n: u64, time: &str) -> Map<String, Value> {
    match json!({"Operation": "Send", "UserId": format!("u{n}"), "CreationTime": time, "pad": "x".repeat(200)})
    {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// 120 old records and 30 new ones, in batches of 10, in segments of about 4 KiB.
fn build(dir: &Dir) {
    let log = AuditLog::open_with(
        &dir.0,
        Options {
            segment_bytes: 4096,
        },
    )
    .unwrap();
    for batch in 0..15u64 {
        let time = if batch < 12 {
            "2020-01-01T00:00:00Z"
        } else {
            "2099-01-01T00:00:00Z"
        };
        let events = (0..10).map(|i| event(batch * 10 + i, time)).collect();
        for result in log.append_all(events) {
            result.unwrap();
        }
    }
    log.close();
}

fn segments(dir: &Dir) -> usize {
    fs::read_dir(dir.0.join("segments")).unwrap().count()
}

#[test]
fn pruning_keeps_the_rest_verifiable_and_provable() {
    let dir = Dir::new("keep");
    build(&dir);
    let before = segments(&dir);
    assert!(before > 3, "test needs several segments, got {before}");

    let report = prune(&dir.0, Duration::from_secs(86_400)).unwrap();
    assert!(report.segments_removed > 0);
    assert!(report.records_pruned > 0 && report.records_pruned <= 120);
    assert_eq!(segments(&dir), before - report.segments_removed);

    match verify(&dir.0, None).unwrap() {
        Verification::Intact { records, .. } => assert_eq!(records, 150),
        Verification::Failed(why) => panic!("{why}"),
    }
    // Pruned records are gone; kept ones are still provable against the latest checkpoint.
    assert!(prove_inclusion(&dir.0, 1).is_err());
    for seq in [report.records_pruned + 1, 140, 150] {
        let proof = prove_inclusion(&dir.0, seq).unwrap();
        let decode =
            |t: &str| -> [u8; 32] { b64::decode_url(t.as_bytes()).unwrap().try_into().unwrap() };
        let path: Vec<_> = proof.path.iter().map(|h| decode(h)).collect();
        assert!(verify_inclusion(
            &decode(&proof.leaf_hash),
            seq - 1,
            proof.tree_size,
            &path,
            &proof.checkpoint.root_hash().unwrap()
        ));
    }
    // The log still opens and appends after pruning, and everything still verifies.
    let log = AuditLog::open_with(
        &dir.0,
        Options {
            segment_bytes: 4096,
        },
    )
    .unwrap();
    assert_eq!(log.append(event(999, "2099-01-01T00:00:00Z")).unwrap(), 151);
    log.close();
    assert!(matches!(
        verify(&dir.0, None).unwrap(),
        Verification::Intact { records: 151, .. }
    ));
    // Pruning again with nothing old enough changes nothing.
    let again = prune(&dir.0, Duration::from_secs(86_400)).unwrap();
    assert_eq!(again.segments_removed, 0);
}

#[test]
fn a_tampered_pruning_summary_is_caught() {
    let dir = Dir::new("tamper");
    build(&dir);
    prune(&dir.0, Duration::from_secs(86_400)).unwrap();
    let path = dir.0.join("pruned.json");
    let original = fs::read_to_string(&path).unwrap();
    let mut summary: Value = serde_json::from_str(&original).unwrap();

    // A changed frontier no longer matches the signed root.
    let mut changed = summary.clone();
    changed["peaks"][0] = json!(b64::encode_url(&[7u8; 32]));
    fs::write(&path, changed.to_string()).unwrap();
    assert!(matches!(
        verify(&dir.0, None).unwrap(),
        Verification::Failed(_)
    ));
    assert!(AuditLog::open(&dir.0).is_err());

    // A changed last leaf breaks the first kept record's hash link.
    summary["last_leaf"] = json!(b64::encode_url(&[9u8; 32]));
    fs::write(&path, summary.to_string()).unwrap();
    match verify(&dir.0, None).unwrap() {
        Verification::Failed(why) => assert!(why.contains("prev") || why.contains("hash"), "{why}"),
        Verification::Intact { .. } => panic!("tampered summary accepted"),
    }

    // Deleting the summary leaves a log that starts in the middle.
    fs::remove_file(&path).unwrap();
    match verify(&dir.0, None).unwrap() {
        Verification::Failed(why) => assert!(why.contains("segment starts at record"), "{why}"),
        Verification::Intact { .. } => panic!("log without its beginning accepted"),
    }
}

#[test]
fn the_segment_being_written_is_never_pruned() {
    let dir = Dir::new("current");
    let log = AuditLog::open_with(
        &dir.0,
        Options {
            segment_bytes: 1 << 20,
        },
    )
    .unwrap();
    for n in 0..20 {
        log.append(event(n, "2020-01-01T00:00:00Z")).unwrap();
    }
    log.close();
    let report = prune(&dir.0, Duration::from_secs(86_400)).unwrap();
    assert_eq!(report.segments_removed, 0);
    assert!(matches!(
        verify(&dir.0, None).unwrap(),
        Verification::Intact { records: 20, .. }
    ));
}

#[test]
fn a_log_held_by_a_writer_verifies_up_to_its_last_checkpoint() {
    use std::io::Write;
    let dir = Dir::new("live");
    let log = AuditLog::open(&dir.0).unwrap();
    for n in 0..5 {
        log.append(event(n, "2099-01-01T00:00:00Z")).unwrap();
    }
    // A batch being written right now: a record line after the last checkpoint.
    let segment = fs::read_dir(dir.0.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = fs::read(&segment).unwrap();
    let end = bytes.iter().position(|&b| b == 0).unwrap();
    let mut file = fs::OpenOptions::new().write(true).open(&segment).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(end as u64)).unwrap();
    file.write_all(b"{\"Operation\":\"Send\",\"prev\":\"x\",\"seq\":6}\n")
        .unwrap();
    drop(file);
    match verify(&dir.0, None).unwrap() {
        Verification::Intact { records, .. } => assert_eq!(records, 5),
        Verification::Failed(why) => panic!("a live log was reported damaged: {why}"),
    }
    // The same bytes with no writer holding the log are an unacknowledged tail.
    log.close();
    match verify(&dir.0, None).unwrap() {
        Verification::Failed(why) => {
            assert!(why.contains("after its last signed checkpoint"), "{why}")
        }
        Verification::Intact { .. } => panic!("an unacknowledged tail passed"),
    }
    drop(log);
}
