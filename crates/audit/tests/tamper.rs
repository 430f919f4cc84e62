#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Tamper-evidence of the audit log, at the library level.
//!
//! Every test builds a real log of 200 records through [`AuditLog`] (batches of many records
//! through `append_all` and single `append`s, so there are many signed checkpoints), keeps the
//! latest checkpoint as an operator would keep a copy elsewhere, then changes the files on disk
//! the way an attacker (or a disk) could and checks that [`verify`] names the place, and that
//! [`AuditLog::open`] refuses to append to a log that does not verify.
//!
//! Batch boundaries depend on how the writer thread groups appends, so tests read the layout
//! back from disk instead of assuming it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyscope_audit::merkle::{self, Frontier, Hash};
use keyscope_audit::{AuditError, AuditLog, Checkpoint, Verification, prove_inclusion, verify};
use keyscope_jose::{Algorithm, SigningKey, b64};
use serde_json::{Map, Value, json};

/// Records in every test log.
const RECORDS: u64 = 200;

/// How the 200 records are handed in: 1 means a single `append`, more an `append_all` chunk.
const CHUNKS: [u64; 19] = [
    1, 12, 1, 1, 30, 5, 1, 25, 1, 9, 40, 1, 1, 20, 3, 1, 17, 1, 30,
];

/// The one segment file of a log of fewer than a million records.
const SEGMENT: &str = "segments/00000000000000000001.jsonl";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "keyscope-audit-tamper-{}-{}-{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The audit directory inside (what `AuditLog::open` and `verify` take).
    fn audit(&self) -> PathBuf {
        self.0.join("audit")
    }

    fn segment(&self) -> PathBuf {
        self.audit().join(SEGMENT)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn event(n: u64) -> Map<String, Value> {
    let value = json!({
        "Operation": "MailItemsAccessed",
        "UserId": format!("user{n:03}@contoso.example"),
        "MailAccessType": "Bind",
        "Note": "abcdefgh",
        "n": n,
    });
    value.as_object().unwrap().clone()
}

/// A log of [`RECORDS`] records, closed, and the latest checkpoint saved "elsewhere".
struct Fixture {
    dir: TempDir,
    saved: Checkpoint,
}

impl Fixture {
    fn new(label: &str) -> Fixture {
        let dir = TempDir::new(label);
        let saved = build_log(&dir.audit());
        Fixture { dir, saved }
    }

    /// A fresh copy of the log to tamper with.
    fn copy(&self, label: &str) -> TempDir {
        let copy = TempDir::new(label);
        copy_dir(&self.dir.audit(), &copy.audit());
        copy
    }
}

fn build_log(audit: &Path) -> Checkpoint {
    assert_eq!(CHUNKS.iter().sum::<u64>(), RECORDS);
    let log = AuditLog::open(audit).unwrap();
    let mut next = 1;
    for size in CHUNKS {
        if size == 1 {
            assert_eq!(log.append(event(next)).unwrap(), next);
        } else {
            let results = log.append_all((next..next + size).map(event).collect());
            let seqs: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
            assert_eq!(seqs, (next..next + size).collect::<Vec<_>>());
        }
        next += size;
    }
    let checkpoint = log.latest_checkpoint().unwrap();
    log.close();
    assert_eq!(checkpoint.size, RECORDS);
    assert_eq!(intact(audit, None), RECORDS);
    checkpoint
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Asserts the log verifies and returns its record count.
fn intact(audit: &Path, saved: Option<&Checkpoint>) -> u64 {
    match verify(audit, saved).unwrap() {
        Verification::Intact { records, .. } => records,
        Verification::Failed(why) => panic!("expected an intact log, got: {why}"),
    }
}

/// Asserts the log does not verify and returns the problem.
fn failed(audit: &Path, saved: Option<&Checkpoint>) -> String {
    match verify(audit, saved).unwrap() {
        Verification::Failed(why) => why,
        Verification::Intact { records, .. } => {
            panic!("expected verification to fail, but {records} records verified")
        }
    }
}

/// Asserts the problem names record `seq` (as "record N: …").
fn assert_names(problem: &str, seq: u64) {
    assert!(
        problem.contains(&format!("record {seq}:")),
        "the problem should name record {seq}: {problem}"
    );
}

/// Asserts `AuditLog::open` refuses the log and leaves the segment file untouched.
fn assert_open_refuses(dir: &TempDir) {
    let before = fs::read(dir.segment()).unwrap();
    match AuditLog::open(&dir.audit()) {
        Err(AuditError::Corrupt(why)) => {
            assert!(why.contains("does not verify"), "{why}");
        }
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(_) => panic!("AuditLog::open accepted a tampered log"),
    }
    assert_eq!(
        fs::read(dir.segment()).unwrap(),
        before,
        "a refused open must not change the log"
    );
}

// ---------------------------------------------------------------------------------------------
// The layout on disk
// ---------------------------------------------------------------------------------------------

/// The written part of a segment file. A segment may be preallocated, its unused end zero
/// bytes; a record line never holds a zero byte (JSON escapes control characters).
fn data_of(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn read_data(dir: &TempDir) -> Vec<u8> {
    data_of(&fs::read(dir.segment()).unwrap()).to_vec()
}

/// Replaces the written part of the segment, keeping a preallocated file's length (the zero
/// bytes after the data), as an in-place edit would.
fn write_data(dir: &TempDir, data: &[u8]) {
    let old = fs::read(dir.segment()).unwrap();
    let mut bytes = data.to_vec();
    if data_of(&old).len() < old.len() && bytes.len() < old.len() {
        bytes.resize(old.len(), 0);
    }
    fs::write(dir.segment(), bytes).unwrap();
}

/// The lines of the segment file, without their newlines.
fn read_lines(dir: &TempDir) -> Vec<Vec<u8>> {
    let bytes = read_data(dir);
    assert_eq!(bytes.last(), Some(&b'\n'));
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(lines.pop(), Some(Vec::new()));
    lines
}

fn write_lines(dir: &TempDir, lines: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    write_data(dir, &bytes);
}

fn is_checkpoint(line: &[u8]) -> bool {
    line.starts_with(b"{\"checkpoint\":")
}

fn checkpoint_of(line: &[u8]) -> Checkpoint {
    let value: Value = serde_json::from_slice(line).unwrap();
    serde_json::from_value(value["checkpoint"].clone()).unwrap()
}

fn seq_of(line: &[u8]) -> u64 {
    let value: Value = serde_json::from_slice(line).unwrap();
    value["seq"].as_u64().unwrap()
}

/// The index of record `seq`'s line.
fn line_of(lines: &[Vec<u8>], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| !is_checkpoint(l) && seq_of(l) == seq)
        .unwrap()
}

/// One committed batch: its records and the index of its checkpoint line.
#[derive(Debug, Clone, Copy)]
struct Batch {
    first: u64,
    last: u64,
    checkpoint_line: usize,
}

impl Batch {
    fn len(&self) -> u64 {
        self.last + 1 - self.first
    }
}

fn batches(lines: &[Vec<u8>]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut first = 1;
    for (index, line) in lines.iter().enumerate() {
        if is_checkpoint(line) {
            let size = checkpoint_of(line).size;
            assert!(size >= first, "a checkpoint after every non-empty batch");
            out.push(Batch {
                first,
                last: size,
                checkpoint_line: index,
            });
            first = size + 1;
        }
    }
    assert_eq!(first, RECORDS + 1);
    out
}

/// A batch of at least three records that is not the last batch (group commit makes one).
fn inner_batch_of_three(lines: &[Vec<u8>]) -> Batch {
    let all = batches(lines);
    let inner = &all[..all.len() - 1];
    *inner
        .iter()
        .filter(|b| b.len() >= 3)
        .max_by_key(|b| b.len())
        .expect("append_all of 12 to 40 events commits at least one batch of 3 or more")
}

/// Changes one byte inside the record's "Note" string: still valid JSON, same length.
fn flip_note(line: &mut [u8]) {
    let at = line
        .windows(b"abcdefgh".len())
        .position(|w| w == b"abcdefgh")
        .unwrap();
    line[at + 3] = b'X';
    let _: Value = serde_json::from_slice(line).expect("still valid JSON");
}

fn root_of(checkpoint: &Checkpoint) -> Hash {
    checkpoint.root_hash().unwrap()
}

fn decode_hash(text: &str) -> Hash {
    b64::decode_url(text.as_bytes())
        .unwrap()
        .try_into()
        .unwrap()
}

fn checkpoint_line(checkpoint: &Checkpoint) -> Vec<u8> {
    json!({ "checkpoint": checkpoint }).to_string().into_bytes()
}

// ---------------------------------------------------------------------------------------------
// An intact log
// ---------------------------------------------------------------------------------------------

#[test]
fn an_untouched_log_verifies_with_and_without_the_saved_checkpoint() {
    let fixture = Fixture::new("untouched");
    let dir = fixture.copy("copy");
    assert_eq!(intact(&dir.audit(), None), RECORDS);
    assert_eq!(intact(&dir.audit(), Some(&fixture.saved)), RECORDS);
    // Many batches, hence many checkpoints, each covering everything before it.
    let lines = read_lines(&dir);
    let all = batches(&lines);
    assert!(all.len() >= CHUNKS.len(), "{} batches", all.len());
    assert_eq!(checkpoint_of(lines.last().unwrap()), fixture.saved);
    // An older checkpoint is still a valid anchor for a longer log.
    let older = checkpoint_of(&lines[all[all.len() / 2].checkpoint_line]);
    assert_eq!(intact(&dir.audit(), Some(&older)), RECORDS);
    // Reopening an intact log appends after it.
    let log = AuditLog::open(&dir.audit()).unwrap();
    assert_eq!(log.latest_checkpoint(), Some(fixture.saved.clone()));
    assert_eq!(log.append(event(RECORDS + 1)).unwrap(), RECORDS + 1);
    log.close();
    assert_eq!(intact(&dir.audit(), Some(&fixture.saved)), RECORDS + 1);
}

// ---------------------------------------------------------------------------------------------
// Changed, removed, reordered records
// ---------------------------------------------------------------------------------------------

#[test]
fn a_changed_byte_in_the_middle_of_a_batch_names_that_record() {
    let fixture = Fixture::new("flip-middle");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let batch = inner_batch_of_three(&lines);
    let target = batch.first + 1;
    let index = line_of(&lines, target);
    flip_note(&mut lines[index]);
    write_lines(&dir, &lines);

    let problem = failed(&dir.audit(), None);
    assert_names(&problem, target);
    assert!(problem.contains("line"), "{problem}");
    let problem = failed(&dir.audit(), Some(&fixture.saved));
    assert_names(&problem, target);
    assert_open_refuses(&dir);
}

#[test]
fn a_changed_byte_in_the_last_record_of_a_batch_names_that_record() {
    let fixture = Fixture::new("flip-last");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let batch = inner_batch_of_three(&lines);
    let target = batch.last;
    let index = line_of(&lines, target);
    assert!(is_checkpoint(&lines[index + 1]));
    flip_note(&mut lines[index]);
    write_lines(&dir, &lines);

    let problem = failed(&dir.audit(), None);
    assert_names(&problem, target);
    assert!(problem.contains("checkpoint"), "{problem}");
    assert_open_refuses(&dir);
}

#[test]
fn a_changed_byte_in_the_first_and_in_a_single_record_batch_names_that_record() {
    let fixture = Fixture::new("flip-first");
    // Record 1 (the genesis record, a batch of its own).
    let dir = fixture.copy("first");
    let mut lines = read_lines(&dir);
    assert_eq!(line_of(&lines, 1), 0);
    flip_note(&mut lines[0]);
    write_lines(&dir, &lines);
    assert_names(&failed(&dir.audit(), None), 1);
    assert_open_refuses(&dir);

    // Some later batch of one record.
    let dir = fixture.copy("single");
    let mut lines = read_lines(&dir);
    let all = batches(&lines);
    let single = all[1..all.len() - 1]
        .iter()
        .find(|b| b.len() == 1)
        .expect("single appends commit batches of one");
    let index = line_of(&lines, single.first);
    flip_note(&mut lines[index]);
    write_lines(&dir, &lines);
    assert_names(&failed(&dir.audit(), None), single.first);
    assert_open_refuses(&dir);
}

/// The final batch is covered by the last checkpoint line, which is complete and correctly
/// signed: a changed record there was acknowledged and is tampering, not a torn write. The log
/// must be reported as changed at that record, and `open` must refuse it rather than "recover"
/// by cutting the acknowledged final batch off.
#[test]
fn a_changed_byte_in_the_final_batch_is_tampering_not_a_torn_write() {
    let fixture = Fixture::new("flip-final");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let target = RECORDS;
    let index = line_of(&lines, target);
    assert_eq!(index + 2, lines.len());
    flip_note(&mut lines[index]);
    write_lines(&dir, &lines);

    // Observe both verify and open before asserting, so a failure reports both.
    let problem = failed(&dir.audit(), None);
    let before = read_data(&dir);
    let opened = AuditLog::open(&dir.audit()).map(|log| log.close());
    let after = read_data(&dir);
    let records_after = match verify(&dir.audit(), None).unwrap() {
        Verification::Intact { records, .. } => records.to_string(),
        Verification::Failed(why) => why,
    };
    assert!(
        problem.contains(&format!("record {target}:")) && opened.is_err() && after == before,
        "a changed record {target} in the final (acknowledged) batch: verify said {problem:?}; \
         AuditLog::open returned {opened:?} and cut the segment from {} to {} bytes; \
         verify after open: {records_after}",
        before.len(),
        after.len()
    );
}

#[test]
fn a_record_that_is_not_json_names_that_record() {
    let fixture = Fixture::new("not-json");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let target = inner_batch_of_three(&lines).first + 1;
    let index = line_of(&lines, target);
    assert_eq!(lines[index].pop(), Some(b'}')); // drop the closing brace
    assert!(serde_json::from_slice::<Value>(&lines[index]).is_err());
    write_lines(&dir, &lines);

    let problem = failed(&dir.audit(), None);
    assert_names(&problem, target);
    assert!(problem.contains("not a valid line"), "{problem}");
    assert_open_refuses(&dir);

    // Also for the last record of the final batch.
    let dir = fixture.copy("final");
    let mut lines = read_lines(&dir);
    let index = line_of(&lines, RECORDS);
    lines[index] = b"not json at all".to_vec();
    write_lines(&dir, &lines);
    assert_names(&failed(&dir.audit(), None), RECORDS);
}

#[test]
fn a_deleted_record_names_the_missing_record() {
    let fixture = Fixture::new("delete");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let target = inner_batch_of_three(&lines).first + 1;
    lines.remove(line_of(&lines, target));
    write_lines(&dir, &lines);

    let problem = failed(&dir.audit(), None);
    assert_names(&problem, target);
    assert!(problem.contains("deleted"), "{problem}");
    assert_open_refuses(&dir);

    // Deleting the last record of a batch: its checkpoint no longer matches the count.
    let dir = fixture.copy("last-of-batch");
    let mut lines = read_lines(&dir);
    let target = inner_batch_of_three(&lines).last;
    lines.remove(line_of(&lines, target));
    write_lines(&dir, &lines);
    assert_names(&failed(&dir.audit(), None), target);
    assert_open_refuses(&dir);
}

#[test]
fn swapped_records_name_the_first_place_out_of_order() {
    let fixture = Fixture::new("swap");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let target = inner_batch_of_three(&lines).first;
    let index = line_of(&lines, target);
    assert_eq!(seq_of(&lines[index + 1]), target + 1);
    lines.swap(index, index + 1);
    write_lines(&dir, &lines);

    let problem = failed(&dir.audit(), None);
    assert_names(&problem, target);
    assert!(problem.contains("reordered"), "{problem}");
    assert_open_refuses(&dir);

    // Records swapped across batches (record lines only; the checkpoints stay in place).
    let dir = fixture.copy("across");
    let mut lines = read_lines(&dir);
    let (a, b) = (line_of(&lines, 20), line_of(&lines, 150));
    lines.swap(a, b);
    write_lines(&dir, &lines);
    assert_names(&failed(&dir.audit(), None), 20);
    assert_open_refuses(&dir);
}

#[test]
fn a_duplicated_record_names_the_place_of_the_copy() {
    let fixture = Fixture::new("duplicate");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let target = inner_batch_of_three(&lines).first;
    let index = line_of(&lines, target);
    let copy = lines[index].clone();
    lines.insert(index + 1, copy);
    write_lines(&dir, &lines);

    let problem = failed(&dir.audit(), None);
    assert_names(&problem, target + 1);
    assert!(
        problem.contains(&format!("found record {target}")),
        "{problem}"
    );
    assert_open_refuses(&dir);

    // A duplicated final record (after the last checkpoint) is an uncommitted tail.
    let dir = fixture.copy("tail");
    let mut lines = read_lines(&dir);
    let last = lines[line_of(&lines, RECORDS)].clone();
    lines.push(last);
    write_lines(&dir, &lines);
    assert!(failed(&dir.audit(), None).contains("after its last signed checkpoint"));
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

#[test]
fn truncation_in_the_middle_of_a_line_is_caught() {
    let fixture = Fixture::new("truncate");

    // In the middle of a line well inside the log (a single segment file: everything after the
    // cut is gone, and the file ends in a torn line).
    let dir = fixture.copy("inside");
    let bytes = read_data(&dir);
    let lines = read_lines(&dir);
    let index = line_of(&lines, 57);
    let start: usize = lines[..index].iter().map(|l| l.len() + 1).sum();
    // A literal truncation of the file (an attacker's `truncate`).
    fs::write(dir.segment(), &bytes[..start + lines[index].len() / 2]).unwrap();
    let problem = failed(&dir.audit(), None);
    assert!(
        problem.contains("after its last signed checkpoint"),
        "{problem}"
    );
    assert!(failed(&dir.audit(), Some(&fixture.saved)).contains("after its last signed"));

    // The same cut, but in an earlier segment of a log split into two segment files (a layout
    // Keyscope writes once a segment is full): an incomplete line inside the log.
    let dir = fixture.copy("segments");
    let lines = read_lines(&dir);
    let all = batches(&lines);
    let split = all[all.len() / 2];
    let first_part = &lines[..=split.checkpoint_line];
    let second_part = &lines[split.checkpoint_line + 1..];
    write_lines(&dir, first_part);
    let second = dir
        .audit()
        .join(format!("segments/{:020}.jsonl", split.last + 1));
    let mut bytes = Vec::new();
    for line in second_part {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    fs::write(&second, bytes).unwrap();
    assert_eq!(intact(&dir.audit(), Some(&fixture.saved)), RECORDS);
    let target = split.first;
    let bytes = read_data(&dir);
    let index = line_of(&lines, target);
    let start: usize = lines[..index].iter().map(|l| l.len() + 1).sum();
    fs::write(dir.segment(), &bytes[..start + 10]).unwrap();
    let problem = failed(&dir.audit(), None);
    assert_names(&problem, target);
    assert!(problem.contains("incomplete line"), "{problem}");
    assert_open_refuses(&dir);
}

#[test]
fn a_torn_tail_after_the_last_checkpoint_is_reported_and_recovered_on_open() {
    let fixture = Fixture::new("torn");
    let dir = fixture.copy("copy");
    let mut bytes = read_data(&dir);
    let committed = bytes.clone();
    // Half a record after the last checkpoint: an interrupted append.
    let mut record = event(RECORDS + 1);
    record.insert("seq".into(), json!(RECORDS + 1));
    let text = Value::Object(record).to_string();
    bytes.extend_from_slice(&text.as_bytes()[..text.len() / 2]);
    write_data(&dir, &bytes);
    let problem = failed(&dir.audit(), None);
    assert!(
        problem.contains("after its last signed checkpoint"),
        "{problem}"
    );
    // Recovery cuts it off; the log then verifies, and every record the saved checkpoint
    // covered is still there.
    let log = AuditLog::open(&dir.audit()).unwrap();
    log.close();
    assert_eq!(read_data(&dir), committed);
    assert_eq!(intact(&dir.audit(), Some(&fixture.saved)), RECORDS);

    // Cut in the middle of the last checkpoint line: the final batch was never acknowledged
    // as far as the disk shows.
    let dir = fixture.copy("checkpoint");
    let bytes = read_data(&dir);
    write_data(&dir, &bytes[..bytes.len() - 20]);
    let problem = failed(&dir.audit(), None);
    assert!(
        problem.contains("after its last signed checkpoint"),
        "{problem}"
    );
}

#[test]
fn removing_the_last_batches_is_only_caught_with_a_saved_checkpoint() {
    let fixture = Fixture::new("cut-batch");
    let dir = fixture.copy("copy");
    let lines = read_lines(&dir);
    let all = batches(&lines);
    let keep = all[all.len() - 2];
    write_lines(&dir, &lines[..=keep.checkpoint_line]);
    // What is left is a complete log ending in a signed checkpoint: without an anchor kept
    // elsewhere, cutting whole batches off the end cannot be told from a shorter log.
    assert_eq!(intact(&dir.audit(), None), keep.last);
    let problem = failed(&dir.audit(), Some(&fixture.saved));
    assert!(problem.contains("shorter"), "{problem}");
    assert!(
        problem.contains(&format!("{} records", keep.last)),
        "{problem}"
    );

    // Several batches.
    let dir = fixture.copy("several");
    let keep = all[3];
    write_lines(&dir, &lines[..=keep.checkpoint_line]);
    assert_eq!(intact(&dir.audit(), None), keep.last);
    assert!(failed(&dir.audit(), Some(&fixture.saved)).contains("shorter"));
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and keys
// ---------------------------------------------------------------------------------------------

#[test]
fn a_deleted_checkpoint_line() {
    let fixture = Fixture::new("delete-checkpoint");
    // The last one: the final batch is no longer covered by a signed checkpoint.
    let dir = fixture.copy("last");
    let mut lines = read_lines(&dir);
    lines.pop();
    write_lines(&dir, &lines);
    let problem = failed(&dir.audit(), None);
    assert!(
        problem.contains("after its last signed checkpoint"),
        "{problem}"
    );
    assert!(failed(&dir.audit(), Some(&fixture.saved)).contains("after its last signed"));

    // An earlier one. Each checkpoint covers every record before it, so removing one loses no
    // record and the next checkpoint still vouches for all of them: the log verifies, also
    // against the saved checkpoint and against the removed checkpoint itself. (The records
    // carry no batch boundary, so a verifier cannot tell that a checkpoint is missing.)
    let dir = fixture.copy("inner");
    let mut lines = read_lines(&dir);
    let all = batches(&lines);
    let removed = all[all.len() / 2];
    let removed_checkpoint = checkpoint_of(&lines[removed.checkpoint_line]);
    lines.remove(removed.checkpoint_line);
    write_lines(&dir, &lines);
    assert_eq!(intact(&dir.audit(), Some(&fixture.saved)), RECORDS);
    assert_eq!(intact(&dir.audit(), Some(&removed_checkpoint)), RECORDS);
}

#[test]
fn a_changed_checkpoint_is_caught() {
    let fixture = Fixture::new("change-checkpoint");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let all = batches(&lines);
    let batch = all[all.len() / 2];
    // Claim one record fewer: the signature no longer matches.
    let mut checkpoint = checkpoint_of(&lines[batch.checkpoint_line]);
    checkpoint.size -= 1;
    lines[batch.checkpoint_line] = checkpoint_line(&checkpoint);
    write_lines(&dir, &lines);
    let problem = failed(&dir.audit(), None);
    assert!(problem.contains("not signed by the audit key"), "{problem}");
    assert_open_refuses(&dir);
}

#[test]
fn a_forged_record_appended_without_a_checkpoint_fails() {
    let fixture = Fixture::new("forge-record");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    // The attacker computes the right seq and prev from the last record.
    let last = &lines[line_of(&lines, RECORDS)];
    let mut forged = event(9999);
    forged.insert("seq".into(), json!(RECORDS + 1));
    forged.insert(
        "prev".into(),
        json!(b64::encode_url(&merkle::leaf_hash(last))),
    );
    lines.push(Value::Object(forged).to_string().into_bytes());
    write_lines(&dir, &lines);

    let problem = failed(&dir.audit(), None);
    assert!(
        problem.contains("after its last signed checkpoint"),
        "{problem}"
    );
    assert!(
        problem.contains(&format!("records {}", RECORDS + 1)),
        "{problem}"
    );

    // Reopening treats it as never acknowledged and cuts it off.
    let log = AuditLog::open(&dir.audit()).unwrap();
    log.close();
    assert_eq!(read_lines(&dir).len(), lines.len() - 1);
    assert_eq!(intact(&dir.audit(), Some(&fixture.saved)), RECORDS);
}

#[test]
fn a_forged_record_with_a_checkpoint_signed_by_another_key_fails() {
    let fixture = Fixture::new("forge-checkpoint");
    let dir = fixture.copy("copy");
    let mut lines = read_lines(&dir);
    let mut frontier = Frontier::new();
    for line in lines.iter().filter(|l| !is_checkpoint(l)) {
        frontier.push(merkle::leaf_hash(line));
    }
    let last = &lines[line_of(&lines, RECORDS)];
    let mut forged = event(9999);
    forged.insert("seq".into(), json!(RECORDS + 1));
    forged.insert(
        "prev".into(),
        json!(b64::encode_url(&merkle::leaf_hash(last))),
    );
    let forged = Value::Object(forged).to_string().into_bytes();
    frontier.push(merkle::leaf_hash(&forged));
    // Same kid as the real audit key, so only the signature can tell.
    let attacker = SigningKey::generate(Algorithm::EdDsa, fixture.saved.kid.clone(), None).unwrap();
    let checkpoint = Checkpoint::sign(
        &attacker,
        RECORDS + 1,
        &frontier.root(),
        fixture.saved.time.clone(),
    )
    .unwrap();
    lines.push(forged.clone());
    lines.push(checkpoint_line(&checkpoint));
    write_lines(&dir, &lines);

    let problem = failed(&dir.audit(), None);
    assert!(
        problem.contains("not signed") || problem.contains("without the audit key"),
        "{problem}"
    );
    assert!(failed(&dir.audit(), Some(&fixture.saved)).contains("audit key"));

    // Followed by a genuine-looking continuation, the forged checkpoint is inside the log.
    let dir = fixture.copy("inside");
    let mut more = lines.clone();
    let mut next = event(10_000);
    next.insert("seq".into(), json!(RECORDS + 2));
    next.insert(
        "prev".into(),
        json!(b64::encode_url(&merkle::leaf_hash(&forged))),
    );
    let next = Value::Object(next).to_string().into_bytes();
    frontier.push(merkle::leaf_hash(&next));
    let checkpoint = Checkpoint::sign(
        &attacker,
        RECORDS + 2,
        &frontier.root(),
        fixture.saved.time.clone(),
    )
    .unwrap();
    more.push(next);
    more.push(checkpoint_line(&checkpoint));
    write_lines(&dir, &more);
    let problem = failed(&dir.audit(), None);
    assert!(problem.contains("not signed by the audit key"), "{problem}");
    assert_open_refuses(&dir);
}

#[test]
fn a_consistently_rewritten_history_needs_a_saved_checkpoint_to_be_caught() {
    let fixture = Fixture::new("rewrite");
    let dir = fixture.copy("copy");
    let lines = read_lines(&dir);
    // The attacker changes record 57, then recomputes every later prev and every checkpoint,
    // signing with a new audit key that replaces both key files.
    let attacker = SigningKey::generate(Algorithm::EdDsa, fixture.saved.kid.clone(), None).unwrap();
    let mut frontier = Frontier::new();
    let mut prev: Option<Hash> = None;
    let mut rewritten = Vec::new();
    for line in &lines {
        if is_checkpoint(line) {
            let old = checkpoint_of(line);
            assert_eq!(old.size, frontier.size());
            let new = Checkpoint::sign(&attacker, old.size, &frontier.root(), old.time).unwrap();
            rewritten.push(checkpoint_line(&new));
            continue;
        }
        let mut record: Map<String, Value> = serde_json::from_slice(line).unwrap();
        if record["seq"] == json!(57) {
            record.insert("UserId".into(), json!("someone-else@contoso.example"));
        }
        if let Some(prev) = prev {
            record.insert("prev".into(), json!(b64::encode_url(&prev)));
        }
        let text = Value::Object(record).to_string().into_bytes();
        let leaf = merkle::leaf_hash(&text);
        frontier.push(leaf);
        prev = Some(leaf);
        rewritten.push(text);
    }
    write_lines(&dir, &rewritten);
    let audit = dir.audit();
    fs::write(
        audit.join("audit-key.private.jwk"),
        attacker.to_private_jwk().unwrap().as_bytes(),
    )
    .unwrap();
    fs::write(
        audit.join("audit-key.jwk"),
        Value::Object(attacker.public_jwk_members()).to_string(),
    )
    .unwrap();

    // With the key replaced and the history recomputed, the log is self-consistent: without
    // an anchor kept outside the attacker's reach, this rewrite is undetectable.
    assert_eq!(intact(&audit, None), RECORDS);
    // The checkpoint saved elsewhere catches it.
    let problem = failed(&audit, Some(&fixture.saved));
    assert!(
        problem.contains("not signed by this log's audit key") || problem.contains("inconsistent"),
        "{problem}"
    );

    // Rewriting with the original key files kept: every checkpoint fails its signature.
    let dir = fixture.copy("old-key");
    write_lines(&dir, &rewritten);
    let problem = failed(&dir.audit(), None);
    assert!(problem.contains("not signed by the audit key"), "{problem}");
    assert_open_refuses(&dir);
}

#[test]
fn a_saved_checkpoint_of_another_history_is_inconsistent() {
    // Two logs with the same key: a checkpoint of one does not match the other's records.
    let fixture = Fixture::new("other-history");
    let dir = fixture.copy("copy");
    let lines = read_lines(&dir);
    let all = batches(&lines);
    let batch = all[all.len() / 2];
    let genuine = checkpoint_of(&lines[batch.checkpoint_line]);
    // A genuine signature over a different root needs the private key: take it from the log.
    let key =
        SigningKey::from_private_jwk(&fs::read(dir.audit().join("audit-key.private.jwk")).unwrap())
            .unwrap();
    let other = Checkpoint::sign(
        &key,
        genuine.size,
        &merkle::leaf_hash(b"other"),
        genuine.time,
    )
    .unwrap();
    let problem = failed(&dir.audit(), Some(&other));
    assert!(problem.contains("inconsistent"), "{problem}");
    // A saved checkpoint with a changed size is no longer signed.
    let mut resized = fixture.saved.clone();
    resized.size -= 1;
    assert!(failed(&dir.audit(), Some(&resized)).contains("not signed by this log's audit key"));
}

#[test]
fn a_missing_public_audit_key_is_derived_from_the_private_key() {
    // The private key is the authority: losing only the public half (a crash between writing
    // the two files) loses nothing, and opening the log writes it again.
    let fixture = Fixture::new("no-public-key");
    let dir = fixture.copy("copy");
    fs::remove_file(dir.audit().join("audit-key.jwk")).unwrap();
    assert!(matches!(
        verify(&dir.audit(), Some(&fixture.saved)),
        Ok(Verification::Intact { .. })
    ));
    AuditLog::open(&dir.audit()).unwrap().close();
    assert!(dir.audit().join("audit-key.jwk").exists());
    // Without either half there is nothing to verify with.
    fs::remove_file(dir.audit().join("audit-key.jwk")).unwrap();
    fs::remove_file(dir.audit().join("audit-key.private.jwk")).unwrap();
    assert!(matches!(
        verify(&dir.audit(), None),
        Err(AuditError::Io { .. })
    ));
}

/// Without the private key the log cannot be appended to. `open` must refuse, and must not
/// replace the public key that verifies the existing log.
#[test]
fn a_missing_private_audit_key_is_refused_without_replacing_the_public_key() {
    let fixture = Fixture::new("no-private-key");
    let dir = fixture.copy("copy");
    let public = fs::read(dir.audit().join("audit-key.jwk")).unwrap();
    let segment = fs::read(dir.segment()).unwrap();
    fs::remove_file(dir.audit().join("audit-key.private.jwk")).unwrap();
    assert!(AuditLog::open(&dir.audit()).is_err());
    assert_eq!(
        fs::read(dir.audit().join("audit-key.jwk")).unwrap(),
        public,
        "open replaced the public audit key of an existing log"
    );
    assert_eq!(fs::read(dir.segment()).unwrap(), segment);
    assert_eq!(intact(&dir.audit(), Some(&fixture.saved)), RECORDS);
}

/// The same with a log of one batch: there the only checkpoint no longer verifies, and `open`
/// must not take that as a torn write and delete the log.
#[test]
fn a_missing_private_audit_key_never_erases_the_log() {
    let dir = TempDir::new("no-private-key-one-batch");
    let log = AuditLog::open(&dir.audit()).unwrap();
    assert_eq!(log.append(event(1)).unwrap(), 1);
    let saved = log.latest_checkpoint().unwrap();
    drop(log); // closes it and releases the lock
    let segment = fs::read(dir.segment()).unwrap();
    let public = fs::read(dir.audit().join("audit-key.jwk")).unwrap();
    fs::remove_file(dir.audit().join("audit-key.private.jwk")).unwrap();

    let opened = AuditLog::open(&dir.audit()).map(|log| log.close());
    let after = fs::read(dir.segment()).unwrap_or_default();
    let public_after = fs::read(dir.audit().join("audit-key.jwk")).unwrap();
    assert!(
        opened.is_err() && after == segment && public_after == public,
        "AuditLog::open without the private key returned {opened:?}; the segment went from {} \
         to {} bytes; the public key was {}",
        segment.len(),
        after.len(),
        if public_after == public {
            "kept"
        } else {
            "replaced"
        }
    );
    assert_eq!(intact(&dir.audit(), Some(&saved)), 1);
}

// ---------------------------------------------------------------------------------------------
// Proofs
// ---------------------------------------------------------------------------------------------

#[test]
fn inclusion_proofs_verify_against_the_checkpoint_root() {
    let fixture = Fixture::new("inclusion");
    let dir = fixture.copy("copy");
    let lines = read_lines(&dir);
    let root = root_of(&fixture.saved);
    for seq in [1, 2, 3, 57, 64, 100, 128, 129, 199, 200] {
        let proof = prove_inclusion(&dir.audit(), seq).unwrap();
        assert_eq!(proof.seq, seq);
        assert_eq!(proof.tree_size, RECORDS);
        assert_eq!(proof.checkpoint, fixture.saved);
        let leaf = decode_hash(&proof.leaf_hash);
        assert_eq!(leaf, merkle::leaf_hash(&lines[line_of(&lines, seq)]));
        let path: Vec<Hash> = proof.path.iter().map(|h| decode_hash(h)).collect();
        assert!(
            merkle::verify_inclusion(&leaf, seq - 1, RECORDS, &path, &root),
            "record {seq}"
        );
        // The same path does not prove another record, nor this one at another place.
        let other = merkle::leaf_hash(&lines[line_of(&lines, seq % RECORDS + 1)]);
        assert!(!merkle::verify_inclusion(
            &other,
            seq - 1,
            RECORDS,
            &path,
            &root
        ));
        assert!(!merkle::verify_inclusion(
            &leaf,
            seq % RECORDS,
            RECORDS,
            &path,
            &root
        ));
    }
    assert!(matches!(
        prove_inclusion(&dir.audit(), 0),
        Err(AuditError::OutOfRange(_))
    ));
    assert!(matches!(
        prove_inclusion(&dir.audit(), RECORDS + 1),
        Err(AuditError::OutOfRange(_))
    ));

    // No proof from a tampered log.
    let dir = fixture.copy("tampered");
    let mut lines = read_lines(&dir);
    let index = line_of(&lines, 10);
    flip_note(&mut lines[index]);
    write_lines(&dir, &lines);
    assert!(matches!(
        prove_inclusion(&dir.audit(), 5),
        Err(AuditError::Corrupt(_))
    ));
}

#[test]
fn every_pair_of_checkpoints_is_consistent() {
    let fixture = Fixture::new("consistency");
    let dir = fixture.copy("copy");
    let lines = read_lines(&dir);
    let leaves: Vec<Hash> = lines
        .iter()
        .filter(|l| !is_checkpoint(l))
        .map(|l| merkle::leaf_hash(l))
        .collect();
    assert_eq!(leaves.len() as u64, RECORDS);
    let checkpoints: Vec<Checkpoint> = lines
        .iter()
        .filter(|l| is_checkpoint(l))
        .map(|l| checkpoint_of(l))
        .collect();
    assert!(checkpoints.len() >= CHUNKS.len());
    for checkpoint in &checkpoints {
        let size = usize::try_from(checkpoint.size).unwrap();
        assert_eq!(merkle::subtree_root(&leaves[..size]), root_of(checkpoint));
        // Every checkpoint is a valid anchor for the whole log.
        assert_eq!(intact(&dir.audit(), Some(checkpoint)), RECORDS);
    }
    for (i, old) in checkpoints.iter().enumerate() {
        for new in &checkpoints[i..] {
            let new_size = usize::try_from(new.size).unwrap();
            let old_size = usize::try_from(old.size).unwrap();
            let proof = merkle::consistency_proof(&leaves[..new_size], old_size).unwrap();
            assert!(
                merkle::verify_consistency(
                    old.size,
                    new.size,
                    &proof,
                    &root_of(old),
                    &root_of(new)
                ),
                "{} -> {}",
                old.size,
                new.size
            );
            if old.size < new.size {
                let forged = merkle::leaf_hash(b"another history");
                assert!(!merkle::verify_consistency(
                    old.size,
                    new.size,
                    &proof,
                    &forged,
                    &root_of(new)
                ));
                assert!(!merkle::verify_consistency(
                    old.size,
                    new.size,
                    &proof,
                    &root_of(old),
                    &forged
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency and refused events
// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_appends_get_every_seq_exactly_once() {
    const THREADS: u64 = 8;
    const EACH: u64 = 500;
    let dir = TempDir::new("concurrent");
    let log = Arc::new(AuditLog::open(&dir.audit()).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let mut event = event(thread * EACH + i);
                        event.insert("Thread".into(), json!(thread));
                        log.append(event).unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = Vec::new();
    for handle in handles {
        let mine = handle.join().unwrap();
        // One thread's appends are acknowledged in the order it made them.
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
        seqs.extend(mine);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=THREADS * EACH).collect::<Vec<_>>());
    let latest = log.latest_checkpoint().unwrap();
    assert_eq!(latest.size, THREADS * EACH);
    log.close();
    assert_eq!(intact(&dir.audit(), Some(&latest)), THREADS * EACH);

    // Every record is on disk once, with the "n" its thread gave it.
    let lines = read_lines(&dir);
    let mut ns: Vec<u64> = lines
        .iter()
        .filter(|l| !is_checkpoint(l))
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..THREADS * EACH).collect::<Vec<_>>());
}

#[test]
fn malformed_events_are_refused_and_the_log_stays_intact() {
    let dir = TempDir::new("malformed");
    let log = AuditLog::open(&dir.audit()).unwrap();
    assert_eq!(log.append(event(1)).unwrap(), 1);

    let mut missing = event(2);
    missing.remove("Operation");
    let mut reserved_seq = event(2);
    reserved_seq.insert("seq".into(), json!(7));
    let mut reserved_prev = event(2);
    reserved_prev.insert("prev".into(), json!("AAAA"));
    let mut bad_operation = event(2);
    bad_operation.insert("Operation".into(), json!("Send\nMail"));
    let mut bad_time = event(2);
    bad_time.insert("CreationTime".into(), json!("yesterday"));
    let mut bad_type = event(2);
    bad_type.insert("UserId".into(), json!(42));

    for bad in [
        missing.clone(),
        reserved_seq.clone(),
        reserved_prev,
        bad_operation,
        bad_time,
        bad_type,
    ] {
        let refused = log.append(bad.clone());
        assert!(
            matches!(refused, Err(AuditError::Event(_))),
            "{bad:?}: {refused:?}"
        );
    }
    // In a batch, a refused event does not affect the others.
    let results = log.append_all(vec![event(2), missing, event(3), reserved_seq, event(4)]);
    assert_eq!(results[0].as_ref().unwrap(), &2);
    assert!(matches!(results[1], Err(AuditError::Event(_))));
    assert_eq!(results[2].as_ref().unwrap(), &3);
    assert!(matches!(results[3], Err(AuditError::Event(_))));
    assert_eq!(results[4].as_ref().unwrap(), &4);
    assert_eq!(log.append(event(5)).unwrap(), 5);
    let latest = log.latest_checkpoint().unwrap();
    log.close();
    assert!(matches!(log.append(event(6)), Err(AuditError::Closed)));
    assert_eq!(intact(&dir.audit(), Some(&latest)), 5);
}
