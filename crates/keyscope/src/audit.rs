//! `keyscope audit …`: append to, verify, prove, search and export the tamper-evident audit
//! log.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use keyscope_audit::event::{MAX_EVENT_BYTES, now_micros};
use keyscope_audit::export::{Filter, format_table, parse_time_bound, table_row, to_ual};
use keyscope_audit::{AuditError, AuditLog, Checkpoint, Verification, audit_dir, parse_event};
use serde_json::{Map, Value, json};

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
        /// Also send the latest checkpoint, when done, to a file or to an http:// or https:// endpoint
        /// (POST, JSON body): a copy kept out of an attacker's reach.
        #[arg(long, value_name = "FILE|URL")]
        checkpoint_copy: Option<crate::checkpoint_copy::Target>,
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
    /// Remove whole segments whose newest record is older than DAYS, keeping a signed summary
    /// so that verification still covers the whole history. Default retention is to keep
    /// everything: nothing is pruned unless this is run. The log must not be open elsewhere.
    Prune {
        #[command(flatten)]
        data_dir: DataDir,
        /// Age in days beyond which segments are removed (at least 1).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..=36500))]
        older_than: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an inclusion proof for record N against the latest checkpoint.
    Proof {
        #[command(flatten)]
        data_dir: DataDir,
        /// The record's sequence number.
        #[arg(long)]
        seq: u64,
    },
    /// Print the acknowledged records that match every given filter (a repeated filter means
    /// any of its values), as a table or, with --json, one stored record per line. Exit 0
    /// even when nothing matches, 1 if the log does not verify.
    Search {
        #[command(flatten)]
        data_dir: DataDir,
        /// Only this Operation (exact).
        #[arg(long = "op", value_name = "OP")]
        operations: Vec<String>,
        /// Only this UserId (case-insensitive).
        #[arg(long = "user", value_name = "U")]
        users: Vec<String>,
        /// Only this OrganizationId (exact).
        #[arg(long = "tenant", value_name = "T")]
        tenants: Vec<String>,
        #[command(flatten)]
        window: TimeWindow,
        /// At most N records (the first N in log order).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print each record as stored (JSON, with its seq), one per line.
        #[arg(long)]
        json: bool,
    },
    /// Write the acknowledged records to stdout, one JSON object per line: as stored
    /// (jsonl), or as Microsoft 365 Unified Audit Log records (ual; operations without a UAL
    /// equivalent are skipped and counted on stderr).
    Export {
        #[command(flatten)]
        data_dir: DataDir,
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        window: TimeWindow,
    },
}

/// `--since`/`--until`, compared with each record's CreationTime.
#[derive(clap::Args)]
pub struct TimeWindow {
    /// Only records at or after TIME (RFC 3339 UTC, e.g. 2026-11-22T14:52:01Z, or a date
    /// YYYY-MM-DD meaning midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = time_bound)]
    since: Option<i64>,
    /// Only records before TIME (exclusive; same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = time_bound)]
    until: Option<i64>,
}

/// The formats of `keyscope audit export`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// Every record as stored, with its seq.
    Jsonl,
    /// Microsoft 365 Unified Audit Log records (AuditData).
    Ual,
}

fn time_bound(text: &str) -> Result<i64, String> {
    parse_time_bound(text).ok_or_else(|| {
        "use RFC 3339 UTC (e.g. 2026-11-22T14:52:01Z or 2026-11-22T14:52:01.123456Z) or a date YYYY-MM-DD (midnight UTC)".to_owned()
    })
}

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Append {
            data_dir,
            checkpoint_copy,
        } => append(&data_dir.path, checkpoint_copy.as_ref()),
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
            crate::input::outln!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prune {
            data_dir,
            older_than,
            json,
        } => {
            let dir = existing_log(&data_dir.path)?;
            let age = std::time::Duration::from_secs(older_than.saturating_mul(86_400));
            let report = keyscope_audit::prune(&dir, age)?;
            if json {
                print_json(&serde_json::to_value(&report)?);
            } else if report.records_pruned == 0 {
                crate::input::outln!(
                    "nothing to prune: no closed segment is older than {older_than} days"
                );
            } else {
                crate::input::outln!(
                    "removed {} segment(s); records 1 to {} are summarised by a signed checkpoint",
                    report.segments_removed,
                    report.records_pruned
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Proof { data_dir, seq } => {
            let dir = existing_log(&data_dir.path)?;
            let proof = keyscope_audit::prove_inclusion(&dir, seq)?;
            print_json(&serde_json::to_value(&proof)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Search {
            data_dir,
            operations,
            users,
            tenants,
            window,
            limit,
            json,
        } => {
            let filter = Filter {
                operations,
                users,
                tenants,
                since: window.since,
                until: window.until,
            };
            search(&data_dir.path, &filter, limit, json)
        }
        AuditCommand::Export {
            data_dir,
            format,
            window,
        } => {
            let filter = Filter {
                since: window.since,
                until: window.until,
                ..Filter::default()
            };
            export(&data_dir.path, &filter, format)
        }
    }
}

fn existing_log(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = audit_dir(data_dir);
    if !dir.join("audit-key.jwk").exists() && !dir.join("audit-key.private.jwk").exists() {
        bail!("no audit log in {}", data_dir.display());
    }
    Ok(dir)
}

fn append(
    data_dir: &Path,
    checkpoint_copy: Option<&crate::checkpoint_copy::Target>,
) -> anyhow::Result<ExitCode> {
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
    if let (Some(target), Some(checkpoint)) = (checkpoint_copy, log.latest_checkpoint()) {
        crate::checkpoint_copy::publish(target, &checkpoint)
            .context("the events are durable, but the checkpoint copy failed")?;
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
                crate::input::outln!(
                    "intact: {records} records, every hash link and checkpoint verified"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Verification::Failed(why) => {
            if as_json {
                print_json(&json!({ "intact": false, "problem": why }));
            } else {
                crate::input::outln!("NOT INTACT: {why}");
            }
            Ok(ExitCode::from(EXIT_NEGATIVE))
        }
    }
}

/// Reads the acknowledged records that pass `filter`, in order, handing each to `visit` until
/// it returns `Ok(false)`. Exit 1 when the log does not verify; a write error of `visit` ends
/// the read and is returned.
fn read_matching(
    dir: &Path,
    filter: &Filter,
    mut visit: impl FnMut(Map<String, Value>) -> anyhow::Result<bool>,
) -> anyhow::Result<Option<ExitCode>> {
    let mut failure = None;
    let read = keyscope_audit::read_records(dir, |record| {
        if !filter.matches(&record) {
            return true;
        }
        match visit(record) {
            Ok(more) => more,
            Err(error) => {
                failure = Some(error);
                false
            }
        }
    });
    match read {
        Ok(()) => {}
        Err(AuditError::Corrupt(why)) => return Ok(Some(not_intact(&why))),
        Err(error) => return Err(error.into()),
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

fn not_intact(why: &str) -> ExitCode {
    eprintln!("keyscope: the audit log does not verify: {why}");
    ExitCode::from(EXIT_NEGATIVE)
}

fn search(
    data_dir: &Path,
    filter: &Filter,
    limit: Option<usize>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let dir = existing_log(data_dir)?;
    let limit = limit.unwrap_or(usize::MAX);
    if limit == 0 {
        if !as_json {
            crate::input::out!("{}", format_table(&[]));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut rows = Vec::new();
    let mut found = 0usize;
    let stop = read_matching(&dir, filter, |record| {
        found += 1;
        if as_json {
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
        } else {
            rows.push(table_row(&record));
        }
        Ok(found < limit)
    })?;
    if let Some(code) = stop {
        return Ok(code);
    }
    if !as_json {
        out.write_all(format_table(&rows).as_bytes())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn export(data_dir: &Path, filter: &Filter, format: ExportFormat) -> anyhow::Result<ExitCode> {
    let dir = existing_log(data_dir)?;
    // The UAL Id of a record is derived from the audit key id and its seq.
    let kid = match format {
        ExportFormat::Jsonl => String::new(),
        ExportFormat::Ual => match keyscope_audit::verify(&dir, None)? {
            Verification::Intact { checkpoint, .. } => {
                checkpoint.map(|c| c.kid).unwrap_or_default()
            }
            Verification::Failed(why) => return Ok(not_intact(&why)),
        },
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut written, mut skipped) = (0u64, std::collections::BTreeMap::<String, u64>::new());
    let stop = read_matching(&dir, filter, |record| {
        let line = match format {
            ExportFormat::Jsonl => Some(record),
            ExportFormat::Ual => {
                let ual = to_ual(&record, &kid);
                if ual.is_none() {
                    let operation = record.get("Operation").and_then(Value::as_str);
                    *skipped
                        .entry(operation.unwrap_or("(none)").to_owned())
                        .or_default() += 1;
                }
                ual
            }
        };
        if let Some(line) = line {
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        Ok(true)
    })?;
    if let Some(code) = stop {
        return Ok(code);
    }
    out.flush()?;
    if matches!(format, ExportFormat::Ual) {
        let total: u64 = skipped.values().sum();
        let detail: Vec<String> = skipped
            .iter()
            .map(|(operation, count)| format!("{operation} {count}"))
            .collect();
        if detail.is_empty() {
            eprintln!("keyscope: {written} UAL records written, 0 skipped");
        } else {
            eprintln!(
                "keyscope: {written} UAL records written, {total} skipped without a UAL equivalent ({})",
                detail.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
