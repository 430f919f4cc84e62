//! The append side: one writer thread, group commit, recovery on open.
//!
//! Appenders put their events in a shared queue (taking the next sequence number as they do)
//! and wait. The writer takes everything queued as one batch, writes the records and a signed
//! checkpoint line in one `write`, calls `fdatasync` once, then publishes the new committed
//! sequence number and wakes every waiter with one broadcast. Under load each fsync is shared
//! by as many appenders as are waiting (group commit), and the writer never pays one wake-up
//! per appender.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Instant;

use keyscope_jose::{SigningKey, b64};
use keyscope_metrics::{Buckets, Counter, Histogram};
use serde_json::{Map, Value};

use crate::AuditError;
use crate::checkpoint::{Checkpoint, load_or_create_key};
use crate::event::{check_event, format_time, now_micros};
use crate::fsutil::sync_parent;
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::scan::{ScanOptions, genesis_prev, list_segments, scan, segment_name, segments_dir};

/// How a log is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Size at which a segment is closed and a new one started (default [`SEGMENT_BYTES`]).
    /// Retention prunes whole segments, so this is also its granularity.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// Size at which a segment is closed and a new one started.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Segments grow in preallocated steps of this size. Writing into blocks that already exist
/// lets `fdatasync` skip the file-system journal (no size or extent change): measured here,
/// 0.22 ms per sync instead of 0.45–2.5 ms for a growing file. The unused end is zero bytes.
pub const PREALLOCATE_BYTES: u64 = 4 * 1024 * 1024;

/// What appenders and the writer share.
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when events are queued or the log is closing.
    work: Condvar,
    /// Signalled (broadcast) when a batch is committed or has failed; one per batch
    /// generation parity, so that a commit wakes only the appenders of that batch and not
    /// those already queued for the next one.
    committed: [Condvar; 2],
}

struct QueueState {
    /// Queued events, already serialised by their appenders (so that this work runs in
    /// parallel with the writer's fsync, not on the writer thread).
    pending: Vec<Vec<u8>>,
    /// When each pending event was queued (same order), for the append latency.
    queued_at: Vec<Instant>,
    /// The sequence number the next queued event gets.
    next_seq: u64,
    /// Everything up to here is durable.
    committed: u64,
    /// Set when a write failed: no later append is acknowledged.
    failed: Option<String>,
    closing: bool,
    /// The generation the batch now being filled will have.
    generation: u64,
    /// Whether the writer sleeps waiting for work (only then does queueing wake it).
    writer_idle: bool,
    /// Async appenders waiting, by batch generation parity (see [`AppendFuture`]).
    wakers: [Vec<Waker>; 2],
}

impl Queue {
    fn lock(&self) -> Result<MutexGuard<'_, QueueState>, AuditError> {
        self.state
            .lock()
            .map_err(|_| AuditError::Failed("audit writer panicked".to_owned()))
    }
}

/// What the writer has done, for `/metrics`. Updated by the writer thread only (atomics; the
/// appenders' path is unchanged but for one `Instant` per queued event).
#[derive(Debug)]
pub struct WriterStats {
    /// Per record: from being queued to being durable (written, fsynced, covered by a signed
    /// checkpoint), in seconds. What an appender waits, minus its own wake-up.
    pub append_latency: Histogram,
    /// Per batch: writing the batch and its checkpoint and the `fdatasync`, in seconds.
    pub commit_duration: Histogram,
    /// Batches committed (each one write, one checkpoint, one `fdatasync`).
    pub batches: Counter,
    /// Records committed.
    pub records: Counter,
    /// File syncs (`fdatasync` per batch, plus preallocation and new segments).
    pub fsyncs: Counter,
    /// Batches that failed to be written (the log then refuses appends until reopened).
    pub failures: Counter,
}

impl Default for WriterStats {
    fn default() -> WriterStats {
        WriterStats {
            append_latency: Histogram::new(&Buckets::latency()),
            commit_duration: Histogram::new(&Buckets::latency()),
            batches: Counter::new(),
            records: Counter::new(),
            fsyncs: Counter::new(),
            failures: Counter::new(),
        }
    }
}

/// A queued event's place, to wait on: its seq and the generation of its batch.
struct Ticket(u64, u64);

/// An open audit log. Cheap to share: `append` takes `&self` and may be called from many
/// threads at once.
pub struct AuditLog {
    queue: Arc<Queue>,
    worker: Mutex<Option<JoinHandle<()>>>,
    latest: Arc<Mutex<Option<Checkpoint>>>,
    dir: PathBuf,
    /// Held (flock) while the log is open; released by `close`.
    lock: Mutex<Option<File>>,
    taps: Taps,
    stats: Arc<WriterStats>,
}

struct Writer {
    segments: PathBuf,
    /// Size at which a new segment is started.
    segment_bytes: u64,
    /// Preallocation step.
    step: u64,
    file: File,
    /// Where the next batch goes in the current segment.
    offset: u64,
    /// Bytes preallocated (zeros written) in the current segment.
    allocated: u64,
    next_seq: u64,
    prev: Hash,
    has_prev: bool,
    frontier: Frontier,
    key: SigningKey,
    latest: Arc<Mutex<Option<Checkpoint>>>,
    taps: Taps,
    stats: Arc<WriterStats>,
}

/// Subscribers to committed records (live detection): each gets every batch once durable.
type Taps = Arc<Mutex<Vec<std::sync::mpsc::Sender<Arc<[u8]>>>>>;

impl AuditLog {
    /// Opens (or creates) the log in `audit_dir` with default [`Options`].
    pub fn open(audit_dir: &Path) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(audit_dir, Options::default())
    }

    /// Opens (or creates) the log in `audit_dir`, recovering from an interrupted append:
    /// anything after the last checkpoint was never acknowledged and is cut off. A log that
    /// does not verify is refused rather than appended to.
    pub fn open_with(audit_dir: &Path, options: Options) -> Result<AuditLog, AuditError> {
        let step = options.segment_bytes.clamp(1, PREALLOCATE_BYTES);
        fs::create_dir_all(segments_dir(audit_dir)).map_err(|e| AuditError::io(audit_dir, e))?;
        let lock = crate::fsutil::lock_log(audit_dir)?;
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
        for (first, path) in &segments {
            if scanned.pruned > 0 && *first <= scanned.pruned {
                // Left behind by an interrupted prune: the summary already covers it.
                fs::remove_file(path).map_err(|e| AuditError::io(path, e))?;
                continue;
            }
            if keep(path) {
                seen_committed = true;
            } else if seen_committed || committed.segment.is_none() {
                fs::remove_file(path).map_err(|e| AuditError::io(path, e))?;
            }
        }
        let file = match &committed.segment {
            Some(path) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| AuditError::io(path, e))?;
                erase_after(&file, committed.offset).map_err(|e| AuditError::io(path, e))?;
                file
            }
            None => new_segment(audit_dir, 1, step)?,
        };
        let allocated = file
            .metadata()
            .map_err(|e| AuditError::io(audit_dir, e))?
            .len();
        // The tree state of the acknowledged prefix (the first scan may have read a tail).
        let scanned = if scanned.records == committed.records {
            scanned
        } else {
            scan(audit_dir, &public, ScanOptions::default())?
        };
        let (frontier, prev) = (scanned.frontier, scanned.last_leaf);
        let latest = Arc::new(Mutex::new(scanned.last_checkpoint));
        let taps: Taps = Arc::default();
        let stats = Arc::new(WriterStats::default());
        let writer = Writer {
            segments: segments_dir(audit_dir),
            segment_bytes: options.segment_bytes,
            step,
            file,
            offset: committed.offset,
            allocated,
            next_seq: committed.records + 1,
            prev: prev.unwrap_or_default(),
            has_prev: prev.is_some(),
            frontier,
            key,
            latest: Arc::clone(&latest),
            taps: Arc::clone(&taps),
            stats: Arc::clone(&stats),
        };
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                pending: Vec::new(),
                queued_at: Vec::new(),
                next_seq: committed.records + 1,
                committed: committed.records,
                failed: None,
                closing: false,
                generation: 0,
                writer_idle: false,
                wakers: [Vec::new(), Vec::new()],
            }),
            work: Condvar::new(),
            committed: [Condvar::new(), Condvar::new()],
        });
        let writer_queue = Arc::clone(&queue);
        let worker = std::thread::Builder::new()
            .name("keyscope-audit-writer".to_owned())
            .spawn(move || writer.run(&writer_queue))
            .map_err(|e| AuditError::io(audit_dir, e))?;
        Ok(AuditLog {
            queue,
            worker: Mutex::new(Some(worker)),
            latest,
            dir: audit_dir.to_path_buf(),
            lock: Mutex::new(Some(lock)),
            taps,
            stats,
        })
    }

    /// Every record committed from now on, batch by batch as the log's own lines
    /// (`{…,"prev":…,"seq":N}` each ending in a newline), sent once the batch is durable.
    /// Live detection reads this; the channel ends when the log closes. The receiver must
    /// keep up or buffer: the writer never waits for it.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<Arc<[u8]>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        if let Ok(mut taps) = self.taps.lock() {
            taps.push(sender);
        }
        receiver
    }

    /// What the writer has done so far: append latency, batches, fsyncs (for `/metrics`).
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The highest sequence number that is durable.
    pub fn committed_seq(&self) -> u64 {
        self.queue.state.lock().map_or(0, |s| s.committed)
    }

    /// Appends one event and returns its sequence number once it is durable (written, fsynced
    /// and covered by a signed checkpoint). `CreationTime` is set to now when absent.
    pub fn append(&self, event: Map<String, Value>) -> Result<u64, AuditError> {
        let ticket = self.enqueue(vec![event])?.into_iter().next();
        match ticket {
            Some(Ok(ticket)) => self.wait(&ticket),
            Some(Err(e)) => Err(e),
            None => Err(AuditError::Closed),
        }
    }

    /// Appends one event without blocking a thread: the event is queued at once, and the
    /// returned future resolves to its sequence number once it is durable. For async
    /// services, where thousands of concurrent requests must not each hold a thread.
    pub fn append_async(&self, event: Map<String, Value>) -> AppendFuture {
        let ticket = match self.enqueue(vec![event]) {
            Ok(tickets) => tickets
                .into_iter()
                .next()
                .unwrap_or(Err(AuditError::Closed)),
            Err(e) => Err(e),
        };
        AppendFuture {
            queue: Arc::clone(&self.queue),
            ticket: Some(ticket),
        }
    }

    /// Appends several events at once and returns each one's result in order, once durable.
    /// The events travel to the writer together, so they share fsyncs with each other and
    /// with other appenders; a refused event does not affect the others.
    pub fn append_all(&self, events: Vec<Map<String, Value>>) -> Vec<Result<u64, AuditError>> {
        let count = events.len();
        match self.enqueue(events) {
            Ok(tickets) => tickets
                .into_iter()
                .map(|t| t.and_then(|ticket| self.wait(&ticket)))
                .collect(),
            Err(e) => (0..count).map(|_| Err(e.clone())).collect(),
        }
    }

    /// Checks events, stamps their time and queues them under one lock.
    fn enqueue(
        &self,
        events: Vec<Map<String, Value>>,
    ) -> Result<Vec<Result<Ticket, AuditError>>, AuditError> {
        let mut checked = Vec::with_capacity(events.len());
        for mut event in events {
            checked.push(match check_event(&event) {
                Ok(()) => {
                    if !event.contains_key("CreationTime") {
                        event.insert(
                            "CreationTime".to_owned(),
                            Value::String(format_time(now_micros())),
                        );
                    }
                    serde_json::to_vec(&event).map_err(|e| AuditError::Failed(e.to_string()))
                }
                Err(e) => Err(AuditError::Event(e)),
            });
        }
        let queued_at = Instant::now();
        let mut state = self.queue.lock()?;
        if state.closing {
            return Err(AuditError::Closed);
        }
        if let Some(why) = &state.failed {
            return Err(AuditError::Failed(why.clone()));
        }
        let tickets = checked
            .into_iter()
            .map(|event| {
                event.map(|event| {
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    state.pending.push(event);
                    state.queued_at.push(queued_at);
                    Ticket(seq, state.generation)
                })
            })
            .collect();
        let wake_writer = state.writer_idle;
        drop(state);
        if wake_writer {
            self.queue.work.notify_one();
        }
        Ok(tickets)
    }

    fn wait(&self, ticket: &Ticket) -> Result<u64, AuditError> {
        let mut state = self.queue.lock()?;
        loop {
            if state.committed >= ticket.0 {
                return Ok(ticket.0);
            }
            if let Some(why) = &state.failed {
                return Err(AuditError::Failed(why.clone()));
            }
            let parity = usize::from(ticket.1 % 2 == 1);
            let Some(committed) = self.queue.committed.get(parity) else {
                return Err(AuditError::Closed);
            };
            state = committed
                .wait(state)
                .map_err(|_| AuditError::Failed("audit writer panicked".to_owned()))?;
        }
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
        if let Ok(mut state) = self.queue.state.lock() {
            state.closing = true;
        }
        self.queue.work.notify_all();
        if let Ok(mut worker) = self.worker.lock()
            && let Some(handle) = worker.take()
        {
            let _ = handle.join();
        }
        // Subscribers see the end of the stream.
        if let Ok(mut taps) = self.taps.lock() {
            taps.clear();
        }
        // Everything is durable: another process (or a prune) may take the log now.
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

/// The future of [`AuditLog::append_async`].
pub struct AppendFuture {
    queue: Arc<Queue>,
    ticket: Option<Result<Ticket, AuditError>>,
}

impl Future for AppendFuture {
    type Output = Result<u64, AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ticket = match self.ticket.as_ref() {
            None => return Poll::Ready(Err(AuditError::Closed)),
            Some(Err(_)) => {
                let error = match self.ticket.take() {
                    Some(Err(e)) => e,
                    _ => AuditError::Closed,
                };
                return Poll::Ready(Err(error));
            }
            Some(Ok(ticket)) => Ticket(ticket.0, ticket.1),
        };
        let Ok(mut state) = self.queue.lock() else {
            return Poll::Ready(Err(AuditError::Failed("audit writer panicked".to_owned())));
        };
        if state.committed >= ticket.0 {
            return Poll::Ready(Ok(ticket.0));
        }
        if let Some(why) = &state.failed {
            return Poll::Ready(Err(AuditError::Failed(why.clone())));
        }
        if let Some(wakers) = state.wakers.get_mut(usize::from(ticket.1 % 2 == 1)) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Creates a segment file, preallocated with zeros (see [`SEGMENT_BYTES`]).
fn new_segment(audit_dir: &Path, first_seq: u64, step: u64) -> Result<File, AuditError> {
    let path = segments_dir(audit_dir).join(segment_name(first_seq));
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    preallocate(&file, 0, step).map_err(|e| AuditError::io(&path, e))?;
    sync_parent(&path)?;
    Ok(file)
}

/// Writes zeros over `[from, to)` and syncs, so that later writes there change no metadata.
fn preallocate(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1024 * 1024];
    let mut position = from;
    while position < to {
        let chunk = usize::try_from((to - position).min(zeros.len() as u64)).unwrap_or(0);
        file.write_all_at(zeros.get(..chunk).unwrap_or_default(), position)?;
        position += chunk as u64;
    }
    file.sync_all()
}

/// Zeroes everything after `offset` that is not zero yet: the unacknowledged tail of an
/// interrupted append becomes free space again. The whole rest of the file is examined (a
/// torn batch can leave fragments anywhere in it).
fn erase_after(file: &File, offset: u64) -> std::io::Result<()> {
    let length = file.metadata()?.len();
    let mut position = offset;
    let mut buffer = vec![0u8; 1024 * 1024];
    let zeros = vec![0u8; 1024 * 1024];
    while position < length {
        let chunk = usize::try_from((length - position).min(buffer.len() as u64)).unwrap_or(0);
        let Some(window) = buffer.get_mut(..chunk) else {
            break;
        };
        file.read_exact_at(window, position)?;
        if window.iter().any(|&b| b != 0) {
            file.write_all_at(zeros.get(..chunk).unwrap_or_default(), position)?;
        }
        position += chunk as u64;
    }
    file.sync_all()
}

impl Writer {
    fn run(mut self, queue: &Queue) {
        loop {
            let batch = {
                let Ok(mut state) = queue.state.lock() else {
                    return;
                };
                while state.pending.is_empty() && !state.closing {
                    state.writer_idle = true;
                    state = match queue.work.wait(state) {
                        Ok(state) => state,
                        Err(_) => return,
                    };
                    state.writer_idle = false;
                }
                if state.pending.is_empty() {
                    return; // closing, and everything handed in is committed
                }
                // The batch takes the whole queue, so every waiter of this generation is in it;
                // later appenders get the next generation.
                let generation = state.generation;
                state.generation += 1;
                (
                    generation,
                    std::mem::take(&mut state.pending),
                    std::mem::take(&mut state.queued_at),
                    state.failed.clone(),
                )
            };
            let (generation, batch, queued_at, failed) = batch;
            let count = batch.len() as u64;
            // After a failed write the file may end in a partial batch: nothing more is
            // written until the log is reopened (and recovered).
            let result = match failed {
                Some(why) => Err(AuditError::Failed(why)),
                None => self.commit(batch),
            };
            let durable = Instant::now();
            let committed = result.is_ok();
            if let Ok(mut state) = queue.state.lock() {
                match result {
                    Ok(first_seq) => state.committed = first_seq + count - 1,
                    Err(e) => state.failed = Some(e.to_string()),
                }
            }
            let parity = usize::from(generation % 2 == 1);
            let wakers = queue
                .state
                .lock()
                .ok()
                .and_then(|mut state| state.wakers.get_mut(parity).map(std::mem::take))
                .unwrap_or_default();
            for waker in wakers {
                waker.wake();
            }
            if let Some(condvar) = queue.committed.get(parity) {
                condvar.notify_all();
            }
            // Accounted after the wake-ups, so that waiters do not wait for it.
            if committed {
                for at in queued_at {
                    self.stats
                        .append_latency
                        .observe_duration(durable.saturating_duration_since(at));
                }
                self.stats.records.add(count);
            } else {
                self.stats.failures.inc();
            }
        }
    }

    /// Writes a batch and its checkpoint durably; returns the first seq of the batch.
    fn commit(&mut self, batch: Vec<Vec<u8>>) -> Result<u64, AuditError> {
        let first_seq = self.next_seq;
        let mut frontier = self.frontier.clone();
        let (mut prev, mut has_prev) = (self.prev, self.has_prev);
        let count = batch.len() as u64;
        let mut buffer =
            Vec::with_capacity(batch.iter().map(|e| e.len() + 80).sum::<usize>() + 400);
        for (index, event) in batch.into_iter().enumerate() {
            // The record is the event object with `prev` and `seq` added at its end (both are
            // reserved, so they cannot already be there).
            let Some(body) = event.strip_suffix(b"}") else {
                return Err(AuditError::Failed(
                    "an event did not serialise to an object".into(),
                ));
            };
            let prev_text = if has_prev {
                b64::encode_url(&prev)
            } else {
                genesis_prev()
            };
            let start = buffer.len();
            buffer.extend_from_slice(body);
            buffer.extend_from_slice(b",\"prev\":\"");
            buffer.extend_from_slice(prev_text.as_bytes());
            buffer.extend_from_slice(b"\",\"seq\":");
            buffer.extend_from_slice((first_seq + index as u64).to_string().as_bytes());
            buffer.push(b'}');
            let leaf = leaf_hash(buffer.get(start..).unwrap_or_default());
            frontier.push(leaf);
            prev = leaf;
            has_prev = true;
            buffer.push(b'\n');
        }
        let records_end = buffer.len();
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

        // A batch that does not fit starts a new segment (a batch larger than a whole segment
        // simply grows it).
        if self.offset > 0 && self.offset + buffer.len() as u64 > self.segment_bytes {
            let audit_dir = self
                .segments
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            self.file = new_segment(&audit_dir, first_seq, self.step)?;
            self.stats.fsyncs.add(2);
            self.offset = 0;
            self.allocated = self.step;
        }
        let end = self.offset + buffer.len() as u64;
        if end > self.allocated {
            let target = end.max(self.allocated + self.step);
            self.stats.fsyncs.inc();
            if let Err(error) = preallocate(&self.file, self.allocated, target) {
                return Err(AuditError::Failed(format!(
                    "audit log preallocation failed: {error}"
                )));
            }
            self.allocated = target;
        }
        let started = Instant::now();
        let written = self
            .file
            .write_all_at(&buffer, self.offset)
            .and_then(|()| self.file.sync_data());
        self.stats.fsyncs.inc();
        self.stats
            .commit_duration
            .observe_duration(started.elapsed());
        if let Err(error) = written {
            // The file may now end in a partial batch; recovery on the next open cuts it off.
            return Err(AuditError::Failed(format!(
                "audit log write failed: {error}"
            )));
        }
        self.frontier = frontier;
        self.prev = prev;
        self.has_prev = has_prev;
        self.next_seq = first_seq + count;
        self.offset += buffer.len() as u64;
        self.stats.batches.inc();
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(checkpoint);
        }
        if let Ok(mut taps) = self.taps.lock()
            && !taps.is_empty()
        {
            let records: Arc<[u8]> = Arc::from(buffer.get(..records_end).unwrap_or_default());
            taps.retain(|tap| tap.send(Arc::clone(&records)).is_ok());
        }
        Ok(first_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::task::Wake;

    struct ThreadWaker(std::thread::Thread);

    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                return value;
            }
            std::thread::park();
        }
    }

    fn event(n: u64) -> Map<String, Value> {
        let mut event = Map::new();
        event.insert("Operation".into(), "Send".into());
        event.insert("n".into(), n.into());
        event
    }

    #[test]
    fn subscribers_get_every_committed_record_once() {
        let dir = std::env::temp_dir().join(format!("ks-audit-tap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AuditLog::open(&dir).unwrap();
        log.append(event(0)).unwrap();
        let tap = log.subscribe();
        let results = log.append_all((1..=5).map(event).collect());
        assert!(results.iter().all(Result::is_ok));
        log.close();
        let lines: Vec<Vec<u8>> = tap
            .iter()
            .flat_map(|batch| {
                batch
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect();
        let seqs: Vec<u64> = lines
            .iter()
            .map(|l| {
                serde_json::from_slice::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
        assert_eq!(log.committed_seq(), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writer_stats_count_every_record_and_batch() {
        let dir = std::env::temp_dir().join(format!("ks-audit-stats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AuditLog::open(&dir).unwrap();
        log.append(event(0)).unwrap();
        assert!(
            log.append_all((1..=9).map(event).collect())
                .iter()
                .all(Result::is_ok)
        );
        let stats = log.stats();
        // Accounted just after the wake-up: wait for the writer to get there.
        let started = std::time::Instant::now();
        while (stats.records.get() < 10 || stats.append_latency.snapshot().count() < 10)
            && started.elapsed() < std::time::Duration::from_secs(10)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let latency = stats.append_latency.snapshot();
        assert_eq!(latency.count(), 10);
        assert!(latency.sum > 0.0);
        assert_eq!(stats.records.get(), 10);
        let batches = stats.batches.get();
        assert!((2..=10).contains(&batches), "{batches}");
        assert!(stats.fsyncs.get() >= batches);
        assert_eq!(stats.commit_duration.snapshot().count(), batches);
        assert_eq!(stats.failures.get(), 0);
        log.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn async_appends_from_many_threads_are_all_durable_once() {
        let dir = std::env::temp_dir().join(format!("keyscope-log-async-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let log = Arc::new(AuditLog::open(&dir).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    // Many futures in flight at once, then awaited: they share batches.
                    let futures: Vec<_> = (0..200)
                        .map(|n| log.append_async(event(t * 1000 + n)))
                        .collect();
                    futures
                        .into_iter()
                        .map(|f| block_on(f).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for thread in threads {
            for seq in thread.join().unwrap() {
                assert!(seen.insert(seq), "seq {seq} twice");
            }
        }
        assert_eq!(seen, (1..=800).collect::<HashSet<u64>>());
        // A refused event resolves to its error at once.
        let mut bad = Map::new();
        bad.insert("UserId".into(), "x".into());
        assert!(matches!(
            block_on(log.append_async(bad)),
            Err(AuditError::Event(_))
        ));
        log.close();
        assert!(matches!(
            crate::verify(&dir, None).unwrap(),
            crate::Verification::Intact { records: 800, .. }
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
