//! `keyscope audit …`: append to, verify and prove the tamper-evident audit log.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use keyscope_audit::event::{MAX_EVENT_BYTES, now_micros};
use keyscope_audit::{AuditLog, Checkpoint, Verification, audit_dir, parse_event};
use serde_json::json;

use crate::EXIT_NEGATIVE;
use crate::input::print_json;

/// Events appended per hand-over to the writer: enough to share fsyncs, small enough that
/// acknowledgements flow steadily.
const APPEND_CHUNK: usize = 512;

#[derive(clap::Args)]
pub struct DataDir {
    /// The data directory (the log lives in DIR/audit).
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        env = "KEYSCOPE_DATA_DIR",
        default_value = "keyscope-data"
    )]
    pub path: PathBuf,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Append events read as JSON lines on stdin; prints {"seq":N} per record once durable.
    /// A refused line is reported on stderr with its line number and does not stop the rest
    /// (exit 2 at the end if any line was refused).
    Append {
        #[command(flatten)]
        data_dir: DataDir,
        /// Also write the latest checkpoint to this file when done (a copy kept elsewhere).
        #[arg(long, value_name = "FILE")]
        checkpoint_copy: Option<PathBuf>,
    },
    /// Recompute every hash link, record and checkpoint. Exit 0 when intact, 1 naming the
    /// first problem.
    Verify {
        #[command(flatten)]
        data_dir: DataDir,
        /// A checkpoint saved earlier: the log must still hold exactly what it covered.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the latest signed checkpoint as JSON.
    Checkpoint {
        #[command(flatten)]
        data_dir: DataDir,
        /// Also write it to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print an inclusion proof for record N against the latest checkpoint.
    Proof {
        #[command(flatten)]
        data_dir: DataDir,
        /// The record's sequence number.
        #[arg(long)]
        seq: u64,
    },
}

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Append {
            data_dir,
            checkpoint_copy,
        } => append(&data_dir.path, checkpoint_copy.as_deref()),
        AuditCommand::Verify {
            data_dir,
            checkpoint,
            json,
        } => verify(&data_dir.path, checkpoint.as_deref(), json),
        AuditCommand::Checkpoint { data_dir, out } => {
            let dir = existing_log(&data_dir.path)?;
            let checkpoint = match keyscope_audit::verify(&dir, None)? {
                Verification::Intact {
                    checkpoint: Some(checkpoint),
                    ..
                } => checkpoint,
                Verification::Intact {
                    checkpoint: None, ..
                } => bail!("the audit log has no checkpoint yet"),
                Verification::Failed(why) => {
                    bail!("the audit log does not verify: {why}")
                }
            };
            let text = serde_json::to_string(&checkpoint)?;
            if let Some(out) = out {
                std::fs::write(&out, format!("{text}\n"))
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Proof { data_dir, seq } => {
            let dir = existing_log(&data_dir.path)?;
            let proof = keyscope_audit::prove_inclusion(&dir, seq)?;
            print_json(&serde_json::to_value(&proof)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn existing_log(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = audit_dir(data_dir);
    if !dir.join("audit-key.jwk").exists() {
        bail!("no audit log in {}", data_dir.display());
    }
    Ok(dir)
}

fn append(data_dir: &Path, checkpoint_copy: Option<&Path>) -> anyhow::Result<ExitCode> {
    let log = AuditLog::open(&audit_dir(data_dir)).context("cannot open the audit log")?;
    let stdin = std::io::stdin().lock();
    let mut lines = BoundedLines::new(stdin, MAX_EVENT_BYTES);
    let stdout = std::io::stdout();
    let mut refused = 0usize;
    loop {
        let mut chunk = Vec::with_capacity(APPEND_CHUNK);
        let mut numbers = Vec::with_capacity(APPEND_CHUNK);
        while chunk.len() < APPEND_CHUNK {
            let Some((number, line)) = lines.next_line()? else {
                break;
            };
            let line = match line {
                Ok(line) => line,
                Err(too_long) => {
                    refused += 1;
                    eprintln!(
                        "keyscope: line {number}: event is more than {too_long} bytes, refused"
                    );
                    continue;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_event(&line, now_micros()) {
                Ok(event) => {
                    chunk.push(event);
                    numbers.push(number);
                }
                Err(error) => {
                    refused += 1;
                    eprintln!("keyscope: line {number}: {error}");
                }
            }
        }
        if chunk.is_empty() {
            break;
        }
        let results = log.append_all(chunk);
        let mut out = stdout.lock();
        for (number, result) in numbers.into_iter().zip(results) {
            match result {
                Ok(seq) => writeln!(out, "{}", json!({ "seq": seq }))?,
                Err(error) => {
                    refused += 1;
                    eprintln!("keyscope: line {number}: {error}");
                }
            }
        }
        out.flush()?;
    }
    if let (Some(path), Some(checkpoint)) = (checkpoint_copy, log.latest_checkpoint()) {
        std::fs::write(path, format!("{}\n", serde_json::to_string(&checkpoint)?))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    log.close();
    if refused > 0 {
        eprintln!("keyscope: {refused} line(s) refused");
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(data_dir: &Path, saved: Option<&Path>, as_json: bool) -> anyhow::Result<ExitCode> {
    let dir = existing_log(data_dir)?;
    let saved = saved
        .map(Checkpoint::load)
        .transpose()
        .context("cannot use the saved checkpoint")?;
    let verification = keyscope_audit::verify(&dir, saved.as_ref())?;
    match verification {
        Verification::Intact {
            records,
            checkpoint,
        } => {
            if as_json {
                print_json(&json!({
                    "intact": true,
                    "records": records,
                    "checkpoint": checkpoint,
                }));
            } else {
                println!("intact: {records} records, every hash link and checkpoint verified");
            }
            Ok(ExitCode::SUCCESS)
        }
        Verification::Failed(why) => {
            if as_json {
                print_json(&json!({ "intact": false, "problem": why }));
            } else {
                println!("NOT INTACT: {why}");
            }
            Ok(ExitCode::from(EXIT_NEGATIVE))
        }
    }
}

/// Lines from a reader with a length limit that never buffers more than the limit: a longer
/// line is skipped to its end and reported, not read into memory.
struct BoundedLines<R> {
    reader: R,
    limit: usize,
    number: usize,
}

impl<R: BufRead> BoundedLines<R> {
    fn new(reader: R, limit: usize) -> Self {
        BoundedLines {
            reader,
            limit,
            number: 0,
        }
    }

    /// The next line (without its newline), `Err(limit)` for an overlong one, `None` at end.
    #[allow(clippy::type_complexity)]
    fn next_line(&mut self) -> std::io::Result<Option<(usize, Result<Vec<u8>, usize>)>> {
        let mut line = Vec::new();
        let mut overlong = false;
        loop {
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                if line.is_empty() && !overlong {
                    return Ok(None);
                }
                break;
            }
            let (taken, done) = match buffer.iter().position(|&b| b == b'\n') {
                Some(end) => (end, true),
                None => (buffer.len(), false),
            };
            if !overlong {
                if line.len() + taken > self.limit {
                    overlong = true;
                    line.clear();
                } else {
                    line.extend_from_slice(buffer.get(..taken).unwrap_or_default());
                }
            }
            self.reader.consume(if done { taken + 1 } else { taken });
            if done {
                break;
            }
        }
        self.number += 1;
        Ok(Some((
            self.number,
            if overlong { Err(self.limit) } else { Ok(line) },
        )))
    }
}
