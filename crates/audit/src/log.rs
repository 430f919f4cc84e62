//! The append side: one writer thread, group commit, recovery on open.
//!
//! Appenders hand their events to the writer and block. The writer takes everything that is
//! waiting as one batch, writes the records and a signed checkpoint line in one `write`, calls
//! `fdatasync` once, and only then answers every appender in the batch with its `seq`. Under
//! load each fsync is shared by as many appenders as are waiting (group commit).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use keyscope_jose::{SigningKey, b64};
use serde_json::{Map, Value};

use crate::AuditError;
use crate::checkpoint::{Checkpoint, load_or_create_key};
use crate::event::{check_event, format_time, now_micros};
use crate::fsutil::sync_parent;
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::scan::{ScanOptions, genesis_prev, list_segments, scan, segment_name, segments_dir};

/// Most records in one segment file before a new one is started.
pub const SEGMENT_RECORDS: u64 = 1_000_000;

/// Most events committed in one batch.
const MAX_BATCH: usize = 4096;

struct Request {
    event: Map<String, Value>,
    reply: SyncSender<Result<u64, AuditError>>,
}

/// An open audit log. Cheap to share: `append` takes `&self` and may be called from many
/// threads at once.
pub struct AuditLog {
    sender: Mutex<Option<Sender<Request>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    latest: Arc<Mutex<Option<Checkpoint>>>,
    dir: PathBuf,
    _lock: File,
}

struct Writer {
    segments: PathBuf,
    file: File,
    segment_records: u64,
    next_seq: u64,
    prev: Hash,
    has_prev: bool,
    frontier: Frontier,
    key: SigningKey,
    latest: Arc<Mutex<Option<Checkpoint>>>,
    failed: Option<String>,
}

impl AuditLog {
    /// Opens (or creates) the log in `audit_dir`, recovering from an interrupted append:
    /// anything after the last checkpoint was never acknowledged and is cut off. A log that
    /// does not verify is refused rather than appended to.
    pub fn open(audit_dir: &Path) -> Result<AuditLog, AuditError> {
        fs::create_dir_all(segments_dir(audit_dir)).map_err(|e| AuditError::io(audit_dir, e))?;
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
        let (key, public) = load_or_create_key(audit_dir)?;
        let scanned = scan(audit_dir, &public, ScanOptions::default())?;
        if let Some(defect) = scanned.defect {
            return Err(AuditError::Corrupt(format!(
                "the audit log does not verify ({defect}); run `keyscope audit verify` and investigate before appending"
            )));
        }

        // Cut off the unacknowledged tail: segments after the one holding the last checkpoint,
        // and that segment's bytes after the checkpoint line.
        let committed = scanned.committed.clone();
        let segments = list_segments(audit_dir)?;
        let keep = |path: &PathBuf| committed.segment.as_ref() == Some(path);
        let mut seen_committed = false;
        for (_, path) in &segments {
            if keep(path) {
                seen_committed = true;
            } else if seen_committed || committed.segment.is_none() {
                fs::remove_file(path).map_err(|e| AuditError::io(path, e))?;
            }
        }
        let (file, segment_records) = match &committed.segment {
            Some(path) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| AuditError::io(path, e))?;
                file.set_len(committed.offset)
                    .map_err(|e| AuditError::io(path, e))?;
                file.sync_all().map_err(|e| AuditError::io(path, e))?;
                let first = segments
                    .iter()
                    .find(|(_, p)| p == path)
                    .map_or(1, |(first, _)| *first);
                (file, committed.records + 1 - first)
            }
            None => (new_segment(audit_dir, 1)?, 0),
        };
        // The tree state of the acknowledged prefix (the first scan may have read a tail).
        let scanned = if scanned.records == committed.records {
            scanned
        } else {
            scan(audit_dir, &public, ScanOptions::default())?
        };
        let (frontier, prev) = (scanned.frontier, scanned.last_leaf);
        let latest = Arc::new(Mutex::new(scanned.last_checkpoint));
        let writer = Writer {
            segments: segments_dir(audit_dir),
            file,
            segment_records,
            next_seq: committed.records + 1,
            prev: prev.unwrap_or_default(),
            has_prev: prev.is_some(),
            frontier,
            key,
            latest: Arc::clone(&latest),
            failed: None,
        };
        let (sender, receiver) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("keyscope-audit-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|e| AuditError::io(audit_dir, e))?;
        Ok(AuditLog {
            sender: Mutex::new(Some(sender)),
            worker: Mutex::new(Some(worker)),
            latest,
            dir: audit_dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Appends one event and returns its sequence number once it is durable (written, fsynced
    /// and covered by a signed checkpoint). `CreationTime` is set to now when absent.
    pub fn append(&self, mut event: Map<String, Value>) -> Result<u64, AuditError> {
        check_event(&event).map_err(AuditError::Event)?;
        if !event.contains_key("CreationTime") {
            event.insert(
                "CreationTime".to_owned(),
                Value::String(format_time(now_micros())),
            );
        }
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let guard = self.sender.lock().map_err(|_| AuditError::Closed)?;
            let sender = guard.as_ref().ok_or(AuditError::Closed)?;
            sender
                .send(Request { event, reply })
                .map_err(|_| AuditError::Closed)?;
        }
        answer.recv().map_err(|_| AuditError::Closed)?
    }

    /// Appends several events at once and returns each one's result in order, once durable.
    /// The events travel to the writer together, so they share fsyncs with each other and
    /// with other appenders; a refused event does not affect the others.
    pub fn append_all(&self, events: Vec<Map<String, Value>>) -> Vec<Result<u64, AuditError>> {
        let mut pending = Vec::with_capacity(events.len());
        {
            let guard = self.sender.lock();
            let sender = guard.as_ref().ok().and_then(|g| g.as_ref());
            for mut event in events {
                if let Err(e) = check_event(&event) {
                    pending.push(Err(AuditError::Event(e)));
                    continue;
                }
                if !event.contains_key("CreationTime") {
                    event.insert(
                        "CreationTime".to_owned(),
                        Value::String(format_time(now_micros())),
                    );
                }
                let (reply, answer) = mpsc::sync_channel(1);
                let sent = sender.is_some_and(|s| s.send(Request { event, reply }).is_ok());
                pending.push(if sent {
                    Ok(answer)
                } else {
                    Err(AuditError::Closed)
                });
            }
        }
        pending
            .into_iter()
            .map(|p| p.and_then(|answer| answer.recv().map_err(|_| AuditError::Closed)?))
            .collect()
    }

    /// The latest signed checkpoint (covers every acknowledged record).
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.latest.lock().ok().and_then(|c| c.clone())
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops accepting events and waits until everything handed in is durable.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Ok(mut worker) = self.worker.lock()
            && let Some(handle) = worker.take()
        {
            let _ = handle.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn new_segment(audit_dir: &Path, first_seq: u64) -> Result<File, AuditError> {
    let path = segments_dir(audit_dir).join(segment_name(first_seq));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    sync_parent(&path)?;
    Ok(file)
}

impl Writer {
    fn run(mut self, receiver: Receiver<Request>) {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            batch.extend(receiver.try_iter().take(MAX_BATCH - 1));
            let result = self.commit(&batch);
            for (index, request) in batch.into_iter().enumerate() {
                let answer = match &result {
                    Ok(first_seq) => Ok(first_seq + index as u64),
                    Err(e) => Err(e.clone()),
                };
                let _ = request.reply.send(answer);
            }
        }
    }

    /// Writes a batch and its checkpoint durably; returns the first seq of the batch.
    fn commit(&mut self, batch: &[Request]) -> Result<u64, AuditError> {
        if let Some(why) = &self.failed {
            return Err(AuditError::Failed(why.clone()));
        }
        if self.segment_records >= SEGMENT_RECORDS {
            let audit_dir = self
                .segments
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            self.file = new_segment(&audit_dir, self.next_seq)?;
            self.segment_records = 0;
        }
        let first_seq = self.next_seq;
        let mut frontier = self.frontier.clone();
        let (mut prev, mut has_prev) = (self.prev, self.has_prev);
        let mut buffer = Vec::with_capacity(batch.len() * 320 + 400);
        for (index, request) in batch.iter().enumerate() {
            let mut record = request.event.clone();
            record.insert("seq".to_owned(), Value::from(first_seq + index as u64));
            let prev_text = if has_prev {
                b64::encode_url(&prev)
            } else {
                genesis_prev()
            };
            record.insert("prev".to_owned(), Value::String(prev_text));
            let line =
                serde_json::to_vec(&record).map_err(|e| AuditError::Failed(e.to_string()))?;
            let leaf = leaf_hash(&line);
            frontier.push(leaf);
            prev = leaf;
            has_prev = true;
            buffer.extend_from_slice(&line);
            buffer.push(b'\n');
        }
        let checkpoint = Checkpoint::sign(
            &self.key,
            frontier.size(),
            &frontier.root(),
            format_time(now_micros()),
        )?;
        let mut line = Map::new();
        line.insert(
            "checkpoint".to_owned(),
            serde_json::to_value(&checkpoint).map_err(|e| AuditError::Failed(e.to_string()))?,
        );
        buffer.extend_from_slice(Value::Object(line).to_string().as_bytes());
        buffer.push(b'\n');

        let written = self
            .file
            .write_all(&buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // The file may now end in a partial batch; recovery on the next open cuts it off.
            let why = format!("audit log write failed: {error}");
            self.failed = Some(why.clone());
            return Err(AuditError::Failed(why));
        }
        self.frontier = frontier;
        self.prev = prev;
        self.has_prev = has_prev;
        self.next_seq = first_seq + batch.len() as u64;
        self.segment_records += batch.len() as u64;
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(checkpoint);
        }
        Ok(first_seq)
    }
}
