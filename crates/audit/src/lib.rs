//! Keyscope's tamper-evident audit log.
//!
//! Every service writes its security-relevant events here: token issuance and validation,
//! sign-ins, mailbox access, key lifecycle, alerts. The log is append-only segment files with
//! an RFC 6962 Merkle tree over the records, a hash chain between consecutive records, and a
//! checkpoint (size, root, time) signed with a dedicated audit key after every committed
//! batch. An append is acknowledged only once its batch and checkpoint are fsynced; an
//! operator can later prove that nothing was edited, reordered or cut off
//! ([`verify`]), prove a record's inclusion and the consistency of two checkpoints.
//!
//! Boundaries: this crate knows files and hashes, not services. It does no network I/O
//! (copies of checkpoints to a collector are sent by the binary).
//!
//! Not yet: an index for search (search scans the log).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checkpoint;
pub mod event;
pub mod export;
mod fsutil;
pub mod log;
pub mod merkle;
pub mod retention;
pub mod scan;

use std::path::Path;

use serde_json::{Map, Value};
use thiserror::Error;

pub use checkpoint::Checkpoint;
pub use event::{EventError, parse_event};
pub use log::{AuditLog, Options, WriterStats};
pub use scan::{Defect, audit_dir};

/// Whether a process (a running server, a writer or a pruner) holds the log at `audit_dir`
/// right now; another process then hands its events over rather than opening the log.
pub fn in_use(audit_dir: &Path) -> bool {
    fsutil::log_in_use(audit_dir)
}

/// What can go wrong with the audit log.
#[derive(Debug, Clone, Error)]
pub enum AuditError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The event was refused.
    #[error(transparent)]
    Event(EventError),
    /// The audit key could not be loaded or used.
    #[error("audit key: {0}")]
    Key(String),
    /// A checkpoint file could not be read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The log on disk is not intact.
    #[error("{0}")]
    Corrupt(String),
    /// Another process holds the log.
    #[error("{0}")]
    Busy(String),
    /// A write failed; the log refuses further appends until reopened.
    #[error("{0}")]
    Failed(String),
    /// The log was closed.
    #[error("the audit log is closed")]
    Closed,
    /// A proof was asked for a record or size the log does not have.
    #[error("{0}")]
    OutOfRange(String),
}

impl AuditError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.display().to_string(),
            message: error.to_string(),
        }
    }
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every record, hash link and checkpoint matches.
    Intact {
        /// Records verified.
        records: u64,
        /// The latest checkpoint.
        checkpoint: Option<Checkpoint>,
    },
    /// The first problem found.
    Failed(String),
}

/// Recomputes everything: every record's hash link and sequence number, every checkpoint's
/// signature and root, and, when a checkpoint saved elsewhere is given, that the log still
/// holds exactly the records it covered. A log that a writer holds open may be verified: the
/// batch it is writing (after the last checkpoint) is not counted and not held against it.
pub fn verify(audit_dir: &Path, saved: Option<&Checkpoint>) -> Result<Verification, AuditError> {
    let public = checkpoint::load_public_key(audit_dir)?;
    let options = scan::ScanOptions {
        keep_leaves: false,
        root_at: saved.map(|c| c.size),
        boundaries: false,
    };
    let scanned = scan::scan(audit_dir, &public, options)?;
    if let Some(defect) = scanned.defect {
        return Ok(Verification::Failed(defect.to_string()));
    }
    // A writer holding the log is mid-batch: its unacknowledged tail is work in progress,
    // not damage, and the verified part ends at the last checkpoint.
    let live = scanned.uncommitted_tail && fsutil::log_in_use(audit_dir);
    let records = if live {
        scanned.committed.records
    } else {
        scanned.records
    };
    if scanned.uncommitted_tail && !live {
        return Ok(Verification::Failed(format!(
            "the log ends with data after its last signed checkpoint (records {} to {}, or a torn write): never acknowledged; an interrupted append, or records added without the audit key",
            scanned.committed.records + 1,
            scanned.records.max(scanned.committed.records + 1)
        )));
    }
    if let Some(saved) = saved {
        if !saved.signature_valid(&public) {
            return Ok(Verification::Failed(format!(
                "the saved checkpoint (kid {:?}) is not signed by this log's audit key: the key or the log was replaced",
                saved.kid
            )));
        }
        if records < saved.size {
            return Ok(Verification::Failed(format!(
                "the log is shorter than the saved checkpoint: {records} records, the checkpoint covers {}",
                saved.size
            )));
        }
        let root = match scanned.root_at {
            Some((_, root)) => root,
            None if saved.size == 0 => merkle::empty_root(),
            None if saved.size < scanned.pruned => {
                return Ok(Verification::Failed(format!(
                    "the saved checkpoint covers {} records, inside the pruned range (records 1 to {}): it can no longer be checked against this log",
                    saved.size, scanned.pruned
                )));
            }
            None => {
                return Ok(Verification::Failed(
                    "could not compute the root at the saved checkpoint".to_owned(),
                ));
            }
        };
        if saved.root_hash() != Some(root) {
            return Ok(Verification::Failed(format!(
                "the log is inconsistent with the saved checkpoint: its first {} records were rewritten",
                saved.size
            )));
        }
    }
    Ok(Verification::Intact {
        records,
        checkpoint: scanned.last_checkpoint,
    })
}

/// An inclusion proof for one record against the latest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InclusionProof {
    /// The record's sequence number (leaf index + 1).
    pub seq: u64,
    /// Its leaf hash, base64url.
    pub leaf_hash: String,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The audit path, base64url hashes.
    pub path: Vec<String>,
    /// The checkpoint whose root the path leads to.
    pub checkpoint: Checkpoint,
}

/// Proves that record `seq` is in the log as of its latest checkpoint.
pub fn prove_inclusion(audit_dir: &Path, seq: u64) -> Result<InclusionProof, AuditError> {
    let public = checkpoint::load_public_key(audit_dir)?;
    let scanned = scan::scan(
        audit_dir,
        &public,
        scan::ScanOptions {
            keep_leaves: true,
            root_at: None,
            boundaries: false,
        },
    )?;
    if let Some(defect) = scanned.defect {
        return Err(AuditError::Corrupt(defect.to_string()));
    }
    let checkpoint = scanned
        .last_checkpoint
        .ok_or_else(|| AuditError::OutOfRange("the log has no checkpoint yet".to_owned()))?;
    if seq == 0 || seq > checkpoint.size {
        return Err(AuditError::OutOfRange(format!(
            "no record {seq}: the latest checkpoint covers records 1 to {}",
            checkpoint.size
        )));
    }
    if seq <= scanned.pruned {
        return Err(AuditError::OutOfRange(format!(
            "record {seq} was pruned (records 1 to {} are summarised in pruned.json)",
            scanned.pruned
        )));
    }
    let kept_count = usize::try_from(checkpoint.size - scanned.pruned).unwrap_or(usize::MAX);
    let kept = scanned.leaves.get(..kept_count).unwrap_or_default();
    let index = seq - 1;
    let leaf = usize::try_from(index - scanned.pruned)
        .ok()
        .and_then(|i| kept.get(i))
        .copied()
        .ok_or_else(|| AuditError::OutOfRange(format!("no record {seq}")))?;
    let path = if scanned.pruned == 0 {
        merkle::inclusion_proof(kept, usize::try_from(index).unwrap_or(usize::MAX))
    } else {
        merkle::inclusion_proof_after_prune(&scanned.prefix, kept, index)
    }
    .ok_or_else(|| AuditError::OutOfRange(format!("no proof for record {seq}")))?;
    Ok(InclusionProof {
        seq,
        leaf_hash: keyscope_jose::b64::encode_url(&leaf),
        tree_size: checkpoint.size,
        path: path
            .iter()
            .map(|h| keyscope_jose::b64::encode_url(h))
            .collect(),
        checkpoint,
    })
}

/// Removes whole segments whose newest record is older than `older_than`, summarising them in
/// a signed pruning summary so that verification still covers the whole history (see
/// [`retention`]). Takes the log's lock: the log must not be open for writing elsewhere.
/// The segment being written is never removed.
pub fn prune(
    audit_dir: &Path,
    older_than: std::time::Duration,
) -> Result<retention::PruneReport, AuditError> {
    let _lock = fsutil::lock_log(audit_dir)?;
    let public = checkpoint::load_public_key(audit_dir)?;
    let age = i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX);
    let cutoff = event::now_micros().saturating_sub(age);
    retention::prune(audit_dir, &public, cutoff)
}

/// Reads every acknowledged record in order (for search and export), stopping at the first
/// defect with an error.
pub fn read_records(
    audit_dir: &Path,
    mut visit: impl FnMut(Map<String, Value>) -> bool,
) -> Result<(), AuditError> {
    read_raw_records(audit_dir, |_, line| {
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(record)) => visit(record),
            _ => true,
        }
    })
}

/// Reads every acknowledged record in order as its raw line (without the newline) with its
/// `seq`, after verifying the log; stops at the first defect with an error. For readers
/// that filter by bytes before parsing (the incident report over millions of records).
pub fn read_raw_records(
    audit_dir: &Path,
    mut visit: impl FnMut(u64, &[u8]) -> bool,
) -> Result<(), AuditError> {
    let public = checkpoint::load_public_key(audit_dir)?;
    let scanned = scan::scan(audit_dir, &public, scan::ScanOptions::default())?;
    if let Some(defect) = scanned.defect {
        return Err(AuditError::Corrupt(defect.to_string()));
    }
    let limit = scanned.committed.records;
    for (_, path) in scan::list_segments(audit_dir)? {
        let bytes = std::fs::read(&path).map_err(|e| AuditError::io(&path, e))?;
        for line in bytes.split(|&b| b == b'\n') {
            // Records end with `"seq":N}`; checkpoint lines and preallocated zeros do not.
            let Some(seq) = trailing_seq(line) else {
                continue;
            };
            if seq <= scanned.pruned {
                continue;
            }
            if seq > limit || !visit(seq, line) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Signs a statement about the log's contents (an incident notice to a tenant) as a compact
/// JWS with the audit key, with header `typ`. Anyone holding `audit-key.jwk` can verify it.
/// It cannot be mistaken for a checkpoint: a checkpoint's signed statement has newlines, a
/// JWS signing input never does.
pub fn sign_statement(audit_dir: &Path, typ: &str, payload: &[u8]) -> Result<String, AuditError> {
    let key = checkpoint::load_private_key(&audit_dir.join("audit-key.private.jwk"))?;
    let mut header = Map::new();
    header.insert("typ".into(), Value::String(typ.to_owned()));
    key.sign_compact(header, payload)
        .map_err(|e| AuditError::Key(e.to_string()))
}

/// The `seq` of a record line, read from its end (`…,"seq":123}`).
fn trailing_seq(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}")?;
    let at = memchr::memmem::rfind(body, b",\"seq\":")?;
    let digits = body.get(at + 7..)?;
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
