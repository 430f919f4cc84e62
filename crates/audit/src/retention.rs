//! Retention: removing old segments without breaking verification.
//!
//! Whole segments are pruned, oldest first, never the one being written. What they held is
//! summarised in `pruned.json`: the signed checkpoint that ended the last pruned segment, the
//! Merkle frontier at that point (the roots of its perfect subtrees) and the last record's leaf
//! hash. The frontier is bound to the checkpoint's signed root, and the last leaf to the first
//! kept record's `prev` (itself covered by later checkpoints), so a summary cannot be edited
//! without verification failing. Verification then starts from the summary instead of record 1.
//! Default: keep everything (pruning happens only when asked for).

use std::path::{Path, PathBuf};

use keyscope_jose::{Jwk, b64};
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::checkpoint::Checkpoint;
use crate::event::parse_time;
use crate::merkle::{Frontier, Hash};

/// The summary of everything pruned so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedSummary {
    /// The signed checkpoint at the end of the pruned range (its `size` = records pruned).
    pub checkpoint: Checkpoint,
    /// The frontier (perfect-subtree roots, largest first) at that size, base64url.
    pub peaks: Vec<String>,
    /// The leaf hash of the last pruned record, base64url (the next record's `prev`).
    pub last_leaf: String,
    /// When the pruning happened (RFC 3339 UTC).
    pub pruned_at: String,
}

impl PrunedSummary {
    /// Checks the summary against the audit key and returns the state to continue from.
    pub(crate) fn state(&self, public: &Jwk) -> Result<(Frontier, Hash), String> {
        if !self.checkpoint.signature_valid(public) {
            return Err("the pruning summary's checkpoint is not signed by the audit key".into());
        }
        let mut peaks = Vec::with_capacity(self.peaks.len());
        for peak in &self.peaks {
            peaks.push(decode_hash(peak).ok_or("the pruning summary has an invalid hash")?);
        }
        let frontier = Frontier::from_peaks(self.checkpoint.size, peaks)
            .ok_or("the pruning summary's frontier does not fit its size")?;
        if self.checkpoint.root_hash() != Some(frontier.root()) {
            return Err("the pruning summary's frontier does not match its signed root".into());
        }
        let last_leaf =
            decode_hash(&self.last_leaf).ok_or("the pruning summary has an invalid hash")?;
        Ok((frontier, last_leaf))
    }
}

fn decode_hash(text: &str) -> Option<Hash> {
    b64::decode_url(text.as_bytes()).ok()?.try_into().ok()
}

pub(crate) fn summary_path(audit_dir: &Path) -> PathBuf {
    audit_dir.join("pruned.json")
}

/// Reads the pruning summary, if the log was ever pruned.
pub(crate) fn load_summary(audit_dir: &Path) -> Result<Option<PrunedSummary>, AuditError> {
    let path = summary_path(audit_dir);
    if !path.exists() {
        return Ok(None);
    }
    match crate::fsutil::read_small(&path, 1024 * 1024) {
        Ok(bytes) => {
            keyscope_jose::json::validate(&bytes)
                .map_err(|e| AuditError::Corrupt(format!("{}: {e}", path.display())))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AuditError::Corrupt(format!("{}: {e}", path.display())))
        }
        Err(e) => Err(e),
    }
}

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Segment files removed.
    pub segments_removed: usize,
    /// Records now summarised (all pruned so far).
    pub records_pruned: u64,
}

/// Removes whole segments whose newest record was created before `cutoff_micros`, keeping
/// the segment being written. The log must not be open for writing elsewhere (the caller
/// holds its lock), and must verify.
pub(crate) fn prune(
    audit_dir: &Path,
    public: &Jwk,
    cutoff_micros: i64,
) -> Result<PruneReport, AuditError> {
    let scanned = crate::scan::scan(
        audit_dir,
        public,
        crate::scan::ScanOptions {
            keep_leaves: false,
            root_at: None,
            boundaries: true,
        },
    )?;
    if let Some(defect) = scanned.defect {
        return Err(AuditError::Corrupt(format!(
            "the audit log does not verify ({defect}); nothing was pruned"
        )));
    }
    // Every segment but the last may go once its newest record is older than the cutoff;
    // pruning stops at the first segment that must stay (the log is pruned from its start).
    let mut chosen = None;
    let count = scanned.boundaries.len();
    for (index, boundary) in scanned.boundaries.iter().enumerate() {
        if index + 1 == count {
            break;
        }
        let old_enough = boundary
            .newest_time
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|t| t < cutoff_micros);
        if !old_enough {
            break;
        }
        chosen = Some(index);
    }
    let previous = scanned.pruned;
    let Some(last) = chosen.and_then(|i| scanned.boundaries.get(i)) else {
        return Ok(PruneReport {
            segments_removed: 0,
            records_pruned: previous,
        });
    };
    let summary = PrunedSummary {
        checkpoint: last.checkpoint.clone(),
        peaks: last
            .frontier
            .peaks()
            .iter()
            .map(|p| b64::encode_url(p))
            .collect(),
        last_leaf: b64::encode_url(&last.last_leaf),
        pruned_at: crate::event::format_time(crate::event::now_micros()),
    };
    let text =
        serde_json::to_string_pretty(&summary).map_err(|e| AuditError::Failed(e.to_string()))?;
    // The summary is durable before any segment goes: a crash in between leaves segments the
    // summary already covers, which the scan skips and the next prune removes.
    crate::fsutil::write_atomic(&summary_path(audit_dir), text.as_bytes())?;
    let mut removed = 0;
    for boundary in scanned.boundaries.iter().take(chosen.map_or(0, |i| i + 1)) {
        std::fs::remove_file(&boundary.segment)
            .map_err(|e| AuditError::io(&boundary.segment, e))?;
        removed += 1;
    }
    crate::fsutil::sync_parent(&summary_path(audit_dir))?;
    Ok(PruneReport {
        segments_removed: removed,
        records_pruned: summary.checkpoint.size,
    })
}
