//! Reading the log back: recovery on open, `audit verify`, proofs, search and export all go
//! through one scan, so there is one definition of an intact log.
//!
//! On disk the log is a series of segment files, `segments/<first seq, 20 digits>.jsonl`. Each
//! line is either a record (a JSON object with `seq`, `prev` and the event) or a checkpoint
//! line `{"checkpoint":{…}}`. A record's leaf is its exact line bytes; `prev` is the previous
//! record's leaf hash, so a changed record is caught at its successor even before the
//! checkpoint is. A checkpoint line follows every committed batch: a record is acknowledged
//! only once the checkpoint that covers it is on disk, so anything after the last checkpoint
//! was never acknowledged.

use std::fs;
use std::path::{Path, PathBuf};

use keyscope_jose::{Jwk, b64};

use crate::AuditError;
use crate::checkpoint::Checkpoint;
use crate::merkle::{Frontier, Hash, leaf_hash};

/// Where the log lives inside a data directory.
pub fn audit_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}

pub(crate) fn segments_dir(audit_dir: &Path) -> PathBuf {
    audit_dir.join("segments")
}

pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.jsonl")
}

/// The `prev` of the first record.
pub(crate) fn genesis_prev() -> String {
    b64::encode_url(&[0u8; 32])
}

/// A place in the log that fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    /// The first record that does not match, when one can be named.
    pub seq: Option<u64>,
    /// The segment file.
    pub segment: Option<PathBuf>,
    /// The 1-based line in that segment.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(seq) = self.seq {
            write!(f, "record {seq}: ")?;
        }
        f.write_str(&self.message)?;
        if let (Some(segment), Some(line)) = (&self.segment, self.line) {
            write!(f, " ({}, line {line})", segment.display())?;
        }
        Ok(())
    }
}

/// The end of the last complete checkpoint: everything up to here was acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Records covered.
    pub records: u64,
    /// The segment holding the checkpoint line.
    pub segment: Option<PathBuf>,
    /// Byte length of that segment up to and including the checkpoint line.
    pub offset: u64,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Records read (including any uncommitted tail).
    pub records: u64,
    /// The tree over all records read.
    pub frontier: Frontier,
    /// Leaf hashes, when asked for.
    pub leaves: Vec<Hash>,
    /// The latest valid checkpoint.
    pub last_checkpoint: Option<Checkpoint>,
    /// The acknowledged prefix.
    pub committed: Committed,
    /// The leaf hash of the last record read (the next record's `prev`).
    pub last_leaf: Option<Hash>,
    /// Records after the last checkpoint, or a torn last line: never acknowledged.
    pub uncommitted_tail: bool,
    /// The first defect in the acknowledged part of the log.
    pub defect: Option<Defect>,
    /// The root of the first `n` records, for a requested `n`.
    pub root_at: Option<(u64, Hash)>,
    /// Per segment, the state at its final checkpoint (when asked for).
    pub boundaries: Vec<Boundary>,
    /// Records summarised by a pruning (none before `pruned + 1` are on disk).
    pub pruned: u64,
    /// The tree at the pruning point (empty when nothing was pruned).
    pub prefix: Frontier,
    /// Signature checks in flight (only during a scan).
    pub(crate) deferred: Option<Deferred>,
}

/// The state of the log at the end of one segment.
#[derive(Debug, Clone)]
pub struct Boundary {
    /// The segment file.
    pub segment: PathBuf,
    /// The checkpoint that ends it.
    pub checkpoint: Checkpoint,
    /// The tree at that checkpoint.
    pub frontier: Frontier,
    /// The leaf hash of the segment's last record.
    pub last_leaf: Hash,
    /// `CreationTime` of the segment's last record.
    pub newest_time: Option<String>,
}

/// Options for [`scan`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Keep every leaf hash (for proofs).
    pub keep_leaves: bool,
    /// Remember the root after this many records (to compare with a saved checkpoint).
    pub root_at: Option<u64>,
    /// Record the state at the end of every segment (for pruning).
    pub boundaries: bool,
}

/// The segment files in order, with the first seq each claims.
pub(crate) fn list_segments(audit_dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let dir = segments_dir(audit_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io(&dir, e)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io(&dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(stem) = name.strip_suffix(".jsonl") else {
            continue;
        };
        let first = stem.parse::<u64>().map_err(|_| {
            AuditError::Corrupt(format!("unexpected file {name} in {}", dir.display()))
        })?;
        segments.push((first, entry.path()));
    }
    segments.sort();
    Ok(segments)
}

/// Reads and checks the whole log. Never fails on content: problems are reported in
/// [`Scan::defect`] and [`Scan::uncommitted_tail`]; only I/O errors are errors.
pub fn scan(audit_dir: &Path, public: &Jwk, options: ScanOptions) -> Result<Scan, AuditError> {
    // Checkpoint signatures (an Ed25519 verification each, the dominant cost in a log of small
    // batches) are checked on a second thread while the main pass hashes records.
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<(usize, Checkpoint)>(4096);
        let checker = scope.spawn(move || {
            let mut first_bad = None;
            for (index, checkpoint) in receiver {
                if first_bad.is_none() && !checkpoint.signature_valid(public) {
                    first_bad = Some(index);
                }
            }
            first_bad
        });
        let mut out = Scan {
            deferred: Some(Deferred {
                sender,
                positions: Vec::new(),
            }),
            ..Scan::default()
        };
        let result = scan_pass(audit_dir, public, options, &mut out);
        let positions = out.deferred.take().map(|d| d.positions).unwrap_or_default();
        let first_bad = checker.join().unwrap_or(Some(0));
        result?;
        // A checkpoint whose signature fails comes before anything the pass stopped at (the
        // pass never goes beyond a defect), so it is the first problem.
        if let Some(index) = first_bad {
            out.defect = positions.get(index).cloned().or_else(|| {
                Some(Defect {
                    seq: None,
                    segment: None,
                    line: None,
                    message: "a checkpoint is not signed by the audit key".to_owned(),
                })
            });
            out.uncommitted_tail = true;
        }
        Ok(out)
    })
}

/// Checkpoints handed to the signature checker, with where each one is (for the report).
pub(crate) struct Deferred {
    sender: std::sync::mpsc::SyncSender<(usize, Checkpoint)>,
    positions: Vec<Defect>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").finish_non_exhaustive()
    }
}

fn scan_pass(
    audit_dir: &Path,
    public: &Jwk,
    options: ScanOptions,
    out: &mut Scan,
) -> Result<(), AuditError> {
    if let Some(summary) = crate::retention::load_summary(audit_dir)? {
        match summary.state(public) {
            Ok((frontier, last_leaf)) => {
                out.records = summary.checkpoint.size;
                out.pruned = summary.checkpoint.size;
                out.prefix = frontier.clone();
                out.frontier = frontier;
                out.last_leaf = Some(last_leaf);
                out.committed.records = summary.checkpoint.size;
                if options.root_at == Some(summary.checkpoint.size) {
                    out.root_at = Some((summary.checkpoint.size, out.frontier.root()));
                }
                out.last_checkpoint = Some(summary.checkpoint);
            }
            Err(message) => {
                out.defect = Some(Defect {
                    seq: None,
                    segment: Some(crate::retention::summary_path(audit_dir)),
                    line: None,
                    message,
                });
                return Ok(());
            }
        }
    }
    // Segments a pruning already summarised (left behind by an interrupted prune) are skipped.
    let pruned = out.pruned;
    let segments: Vec<_> = list_segments(audit_dir)?
        .into_iter()
        .filter(|(first, _)| pruned == 0 || *first > pruned)
        .collect();
    let segment_count = segments.len();
    for (index, (first_seq, path)) in segments.into_iter().enumerate() {
        let is_last = index + 1 == segment_count;
        if first_seq != out.records + 1 {
            out.defect = Some(Defect {
                seq: Some(out.records + 1),
                segment: Some(path.clone()),
                line: None,
                message: format!(
                    "segment starts at record {first_seq}, but record {} was expected (a segment is missing or misnamed)",
                    out.records + 1
                ),
            });
            return Ok(());
        }
        let bytes = fs::read(&path).map_err(|e| AuditError::io(&path, e))?;
        if !scan_segment(&bytes, &path, is_last, public, options, out) {
            return Ok(());
        }
        let ends_in_checkpoint =
            out.committed.segment.as_ref() == Some(&path) && out.committed.records == out.records;
        if options.boundaries
            && ends_in_checkpoint
            && let (Some(checkpoint), Some(last_leaf)) = (&out.last_checkpoint, out.last_leaf)
        {
            out.boundaries.push(Boundary {
                segment: path.clone(),
                checkpoint: checkpoint.clone(),
                frontier: out.frontier.clone(),
                last_leaf,
                newest_time: last_creation_time(&bytes),
            });
        }
    }
    Ok(())
}

/// The `CreationTime` of the last record line in a segment.
fn last_creation_time(bytes: &[u8]) -> Option<String> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| line.first().is_some_and(|&b| b != 0))
        .filter_map(|line| keyscope_jose::json::scan_object(line).ok())
        .rfind(|view| view.contains("seq"))
        .and_then(|view| view.get_str("CreationTime").map(|t| t.into_owned()))
}

/// Scans one segment; `false` when scanning must stop (a defect, or the end of the
/// acknowledged part). Lines are parsed and hashed on both cores first (each line on its
/// own); the checks that link lines together then run in order.
fn scan_segment(
    bytes: &[u8],
    path: &Path,
    is_last: bool,
    public: &Jwk,
    options: ScanOptions,
    out: &mut Scan,
) -> bool {
    // The complete lines, up to where the data ends (zero bytes or an incomplete line).
    let mut lines = Vec::new();
    let mut offset = 0usize;
    while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
        if rest.first() == Some(&0) {
            break;
        }
        let Some(length) = memchr::memchr(b'\n', rest) else {
            break;
        };
        lines.push((offset, offset + length));
        offset += length + 1;
    }
    let parsed = parse_lines(bytes, &lines);

    for (index, ((start, end), parsed)) in lines.iter().zip(parsed).enumerate() {
        let line_number = index + 1;
        let line = bytes.get(*start..*end).unwrap_or_default();
        let rest = bytes.get(*start..).unwrap_or_default();
        match apply_line(parsed, (Some(path), line_number), public, out, options) {
            Ok(LineKind::Record) => {}
            Ok(LineKind::Checkpoint) => {
                out.committed = Committed {
                    records: out.records,
                    segment: Some(path.to_path_buf()),
                    offset: (*end + 1) as u64,
                };
                out.uncommitted_tail = false;
            }
            Err(LineError { seq, message }) => {
                let mut defect = defect_at(out, path, line_number, &message);
                if seq.is_some() {
                    defect.seq = seq;
                }
                // A whole checkpoint line that does not verify cannot come from an interrupted
                // write (that leaves missing bytes, not different ones): damage, always.
                if is_checkpoint_line(line) {
                    out.uncommitted_tail = true;
                    out.defect = Some(defect);
                    return false;
                }
                return torn_or_tampered(rest, is_last, public, out, defect);
            }
        }
        if out.records > out.committed.records {
            out.uncommitted_tail = true;
        }
    }

    // What follows the last complete line: nothing, zero bytes (preallocated space), or the
    // remains of an interrupted write.
    let line_number = lines.len() + 1;
    let rest = bytes.get(offset..).unwrap_or_default();
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    let what = if rest.first() == Some(&0) {
        "data after the end of the segment's data"
    } else {
        "incomplete line"
    };
    let defect = defect_at(out, path, line_number, what);
    torn_or_tampered(rest, is_last, public, out, defect)
}

/// What one line says on its own, before it is linked to the lines around it.
enum Parsed {
    Record {
        seq: Option<u64>,
        /// The decoded `prev` (`None` when absent, `Some(None)` when not a 32-byte hash).
        prev: Option<Option<Hash>>,
        has_operation: bool,
        leaf: Hash,
    },
    Checkpoint(Box<Checkpoint>),
    Invalid(String),
}

/// Parses and hashes lines, on two threads when there are enough of them.
fn parse_lines(bytes: &[u8], lines: &[(usize, usize)]) -> Vec<Parsed> {
    let parse =
        |range: &(usize, usize)| parse_line(bytes.get(range.0..range.1).unwrap_or_default());
    if lines.len() < 512 {
        return lines.iter().map(parse).collect();
    }
    let (first, second) = lines.split_at(lines.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| second.iter().map(parse).collect::<Vec<_>>());
        let mut parsed: Vec<Parsed> = first.iter().map(parse).collect();
        match other.join() {
            Ok(rest) => parsed.extend(rest),
            Err(_) => parsed.extend(second.iter().map(parse)),
        }
        parsed
    })
}

fn parse_line(line: &[u8]) -> Parsed {
    let view = match keyscope_jose::json::scan_object(line) {
        Ok(view) => view,
        Err(e) => return Parsed::Invalid(format!("not a valid line: {e}")),
    };
    if let Some(raw) = view.get("checkpoint") {
        if view.members().len() != 1 {
            return Parsed::Invalid("a checkpoint line holds only the checkpoint".into());
        }
        return match serde_json::from_str::<Checkpoint>(raw.text()) {
            Ok(checkpoint) => Parsed::Checkpoint(Box::new(checkpoint)),
            Err(e) => Parsed::Invalid(format!("unreadable checkpoint: {e}")),
        };
    }
    let seq = view.get("seq").and_then(|v| match v.as_number() {
        Some(keyscope_jose::json::Number::Int(n)) => u64::try_from(n).ok(),
        _ => None,
    });
    let prev = view.get_str("prev").map(|text| {
        b64::decode_url(text.as_bytes())
            .ok()
            .and_then(|bytes| Hash::try_from(bytes).ok())
    });
    Parsed::Record {
        seq,
        prev,
        has_operation: view.contains("Operation"),
        leaf: leaf_hash(line),
    }
}

/// Decides what bytes that fail their checks at `rest` are. A checkpoint line that verifies
/// with the audit key at or after them proves that the data before it was acknowledged, so
/// they are damage to the log (fail closed: the log is refused, not cut short). Without one,
/// in the last segment, they are the unacknowledged tail of an interrupted append (or data
/// added without the audit key), which recovery removes.
fn torn_or_tampered(
    rest: &[u8],
    is_last: bool,
    public: &Jwk,
    out: &mut Scan,
    defect: Defect,
) -> bool {
    out.uncommitted_tail = true;
    if !is_last || contains_signed_checkpoint(rest, public) {
        out.defect = Some(defect);
    }
    false
}

fn contains_signed_checkpoint(bytes: &[u8], public: &Jwk) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .any(|line| is_signed_checkpoint(line, public))
}

fn is_checkpoint_line(line: &[u8]) -> bool {
    keyscope_jose::json::scan_object(line).is_ok_and(|view| view.contains("checkpoint"))
}

fn is_signed_checkpoint(line: &[u8], public: &Jwk) -> bool {
    let Ok(view) = keyscope_jose::json::scan_object(line) else {
        return false;
    };
    let Some(raw) = view.get("checkpoint") else {
        return false;
    };
    serde_json::from_str::<Checkpoint>(raw.text()).is_ok_and(|c| c.signature_valid(public))
}

fn defect_at(out: &Scan, path: &Path, line: usize, message: &str) -> Defect {
    Defect {
        seq: Some(out.records + 1),
        segment: Some(path.to_path_buf()),
        line: Some(line),
        message: message.to_owned(),
    }
}

enum LineKind {
    Record,
    Checkpoint,
}

/// Why a line failed, and which record to name when it is not the line's own.
struct LineError {
    seq: Option<u64>,
    message: String,
}

impl From<String> for LineError {
    fn from(message: String) -> LineError {
        LineError { seq: None, message }
    }
}

impl From<&str> for LineError {
    fn from(message: &str) -> LineError {
        LineError::from(message.to_owned())
    }
}

fn apply_line(
    parsed: Parsed,
    position: (Option<&Path>, usize),
    public: &Jwk,
    out: &mut Scan,
    options: ScanOptions,
) -> Result<LineKind, LineError> {
    let (seq, prev, has_operation, leaf) = match parsed {
        Parsed::Invalid(message) => return Err(LineError::from(message)),
        Parsed::Checkpoint(checkpoint) => {
            return apply_checkpoint(*checkpoint, position, public, out);
        }
        Parsed::Record {
            seq,
            prev,
            has_operation,
            leaf,
        } => (seq, prev, has_operation, leaf),
    };
    let expected = out.records + 1;
    let seq = seq.ok_or_else(|| LineError::from("record without a valid seq"))?;
    if seq != expected {
        return Err(LineError::from(format!(
            "found record {seq} where record {expected} belongs (records deleted, duplicated or reordered)"
        )));
    }
    let prev = prev.ok_or_else(|| LineError::from("record without prev"))?;
    if prev != Some(out.last_leaf.unwrap_or([0u8; 32])) {
        return Err(LineError {
            seq: Some(seq - 1),
            message: format!(
                "does not match the hash that record {seq} holds for it (record {} or record {seq} was changed)",
                seq - 1
            ),
        });
    }
    if !has_operation {
        return Err("record without Operation".into());
    }
    out.frontier.push(leaf);
    out.last_leaf = Some(leaf);
    out.records = seq;
    if options.keep_leaves {
        out.leaves.push(leaf);
    }
    if options.root_at == Some(seq) {
        out.root_at = Some((seq, out.frontier.root()));
    }
    Ok(LineKind::Record)
}

fn apply_checkpoint(
    checkpoint: Checkpoint,
    position: (Option<&Path>, usize),
    public: &Jwk,
    out: &mut Scan,
) -> Result<LineKind, LineError> {
    let unsigned = format!(
        "checkpoint for {} records is not signed by the audit key",
        checkpoint.size
    );
    match out.deferred.as_mut() {
        Some(deferred) => {
            let index = deferred.positions.len();
            deferred.positions.push(Defect {
                seq: Some(out.records + 1),
                segment: position.0.map(Path::to_path_buf),
                line: Some(position.1),
                message: unsigned.clone(),
            });
            if deferred.sender.send((index, checkpoint.clone())).is_err()
                && !checkpoint.signature_valid(public)
            {
                return Err(LineError::from(unsigned));
            }
        }
        None if !checkpoint.signature_valid(public) => return Err(LineError::from(unsigned)),
        None => {}
    }
    if checkpoint.size != out.records {
        return Err(LineError::from(format!(
            "checkpoint claims {} records where the log has {}",
            checkpoint.size, out.records
        )));
    }
    if checkpoint.root_hash() != Some(out.frontier.root()) {
        // Within a batch every record but the last is vouched for by its successor's
        // `prev`, so with an intact chain the changed record is the batch's last one
        // (or the chain itself was rewritten from an earlier record on).
        let first_of_batch = out.committed.records + 1;
        return Err(LineError {
            seq: Some(checkpoint.size),
            message: format!(
                "does not match the signed checkpoint for {} records (this record, or records from {first_of_batch} on with their hash chain rewritten, were changed)",
                checkpoint.size
            ),
        });
    }
    out.last_checkpoint = Some(checkpoint);
    Ok(LineKind::Checkpoint)
}
