//! Small durable-file helpers.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::AuditError;

/// Creates a new file with mode 0600 and the given contents, durably; never overwrites.
pub(crate) fn write_new_private(path: &Path, contents: &[u8]) -> Result<(), AuditError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AuditError::io(path, e))?;
    file.write_all(contents)
        .map_err(|e| AuditError::io(path, e))?;
    file.sync_all().map_err(|e| AuditError::io(path, e))?;
    sync_parent(path)
}

/// Replaces a file atomically (write a temporary, fsync, rename, fsync the directory).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), AuditError> {
    let temporary = path.with_extension("tmp");
    {
        let mut file = File::create(&temporary).map_err(|e| AuditError::io(&temporary, e))?;
        file.write_all(contents)
            .map_err(|e| AuditError::io(&temporary, e))?;
        file.sync_all().map_err(|e| AuditError::io(&temporary, e))?;
    }
    fs::rename(&temporary, path).map_err(|e| AuditError::io(path, e))?;
    sync_parent(path)
}

/// Makes a directory entry change (a new or renamed file) durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), AuditError> {
    if let Some(parent) = path.parent() {
        let dir = File::open(parent).map_err(|e| AuditError::io(parent, e))?;
        dir.sync_all().map_err(|e| AuditError::io(parent, e))?;
    }
    Ok(())
}

/// Takes the log's exclusive lock (`LOCK`, flock): one writer or pruner at a time. Held until
/// the returned file is dropped.
pub(crate) fn lock_log(audit_dir: &Path) -> Result<File, AuditError> {
    let lock_path = audit_dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| AuditError::io(&lock_path, e))?;
    lock.try_lock().map_err(|_| {
        AuditError::Busy(format!(
            "{} is in use by another process",
            audit_dir.display()
        ))
    })?;
    Ok(lock)
}

/// Reads a small file (a key, a summary, a checkpoint) with a size limit: a huge file in the
/// data directory is an error, not something to load.
pub(crate) fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, AuditError> {
    use std::io::Read;
    let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AuditError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(AuditError::Corrupt(format!(
            "{}: larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Whether a writer (or pruner) holds the log right now. Never creates the lock file.
pub(crate) fn log_in_use(audit_dir: &Path) -> bool {
    let Ok(lock) = OpenOptions::new().write(true).open(audit_dir.join("LOCK")) else {
        return false;
    };
    match lock.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}
