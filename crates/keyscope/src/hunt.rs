//! `keyscope hunt`: the detection rules over log files (Keyscope's audit export, Microsoft
//! 365 Unified Audit Log exports, Entra ID sign-in logs).
//!
//! Exit codes: 0 no findings, 1 findings, 2 rules or input that could not be used at all.
//! Unparseable lines are counted and listed, never fatal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use keyscope_detect::import::{self, Format, Unparseable};
use keyscope_detect::{Detector, Finding, RuleSet};

/// Most findings printed in the table (all of them with --json).
const MAX_TABLE_ROWS: usize = 2000;
/// Most unparseable lines listed one by one (all are counted).
const MAX_LISTED_BAD: usize = 20;
/// Inputs at least this large get a progress bar on a terminal.
const PROGRESS_FROM_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct HuntArgs {
    /// Rule directory (replaces the built-in pack; placeholder lists in DIR/data/*.yml).
    #[arg(long, value_name = "DIR", env = "KEYSCOPE_RULES")]
    rules: Option<PathBuf>,
    /// Input format; `auto` decides per file from its first bytes.
    #[arg(long, value_name = "FORMAT", default_value = "auto",
          value_parser = ["auto", "keyscope", "ual", "ual-csv", "entra"])]
    format: String,
    /// Print findings as JSON lines (one object per finding) instead of a table.
    #[arg(long)]
    json: bool,
    /// Files to hunt through, in order (a stateful rule sees them as one stream).
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
}

/// Loads `--rules DIR` or the built-in pack; every problem is an error.
pub fn load_rules(dir: Option<&Path>) -> anyhow::Result<RuleSet> {
    let set = match dir {
        Some(dir) => RuleSet::from_dir(dir)
            .with_context(|| format!("cannot load the rules in {}", dir.display()))?,
        None => RuleSet::builtin().context("cannot load the built-in rule pack")?,
    };
    Ok(set)
}

pub fn run(args: HuntArgs) -> anyhow::Result<ExitCode> {
    let format: Format = args
        .format
        .parse()
        .map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let rules = load_rules(args.rules.as_deref())?;
    // Lines no rule can select are skipped unparsed (see keyscope_detect::prefilter).
    let prefilter = keyscope_detect::Prefilter::for_rules(&rules);
    let may_match = |raw: &[u8]| prefilter.as_ref().is_none_or(|p| p.may_match(raw));
    let mut detector = Detector::new(rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let total_bytes: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let mut progress = Progress::new(total_bytes);
    let started = Instant::now();
    let mut findings: Vec<Finding> = Vec::new();
    let mut finding_count = 0u64;
    let mut bad: Vec<Unparseable> = Vec::new();
    let mut bad_count = 0u64;
    let mut records = 0u64;
    let mut failed_inputs = 0;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut done_bytes = 0u64;
    for file in &args.files {
        let mut emit = |found: Vec<Finding>| {
            for finding in found {
                finding_count += 1;
                if args.json {
                    let _ = finding.write_json_line(&mut out);
                } else if findings.len() < MAX_TABLE_ROWS {
                    findings.push(finding);
                }
            }
        };
        let result = import::read_path_filtered(
            file,
            format,
            &may_match,
            &mut |record| emit(detector.process(&record)),
            &mut |unparseable| {
                bad_count += 1;
                if bad.len() < MAX_LISTED_BAD {
                    bad.push(unparseable);
                }
            },
            &mut |bytes| progress.show(done_bytes + bytes),
        );
        match result {
            Ok((used, stats)) => {
                records += stats.records;
                if format == Format::Auto {
                    progress.note(&format!("{}: read as {used}", file.display()));
                }
            }
            Err(e) => {
                failed_inputs += 1;
                progress.note(&format!("keyscope: error: {}: {e}", file.display()));
            }
        }
        done_bytes += std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    }
    progress.finish();
    // Findings that were waiting (an accepted token whose issuance never came).
    for finding in detector.finish() {
        finding_count += 1;
        if args.json {
            let _ = finding.write_json_line(&mut out);
        } else if findings.len() < MAX_TABLE_ROWS {
            findings.push(finding);
        }
    }
    if !args.json {
        findings.sort_by_key(|f| f.time);
        let _ = write!(out, "{}", findings_table(&findings));
        if finding_count > findings.len() as u64 {
            let _ = writeln!(
                out,
                "({} more findings not shown; use --json for all)",
                finding_count - findings.len() as u64
            );
        }
    }
    let _ = out.flush();
    drop(out);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "hunted {records} records in {} file(s) with {} rules in {seconds:.2} s ({:.0} records/s): {finding_count} finding(s)",
        args.files.len(),
        detector.rules().len(),
        records as f64 / seconds.max(1e-9),
    );
    if bad_count > 0 {
        eprintln!("{bad_count} unparseable line(s), skipped:");
        for b in &bad {
            eprintln!("  {}:{}: {}", b.source, b.line, b.reason);
        }
        if bad_count > bad.len() as u64 {
            eprintln!("  … and {} more", bad_count - bad.len() as u64);
        }
    }
    if detector.forgotten() > 0 {
        eprintln!(
            "warning: {} state entries were forgotten at the memory bounds; baselines are shorter than configured",
            detector.forgotten()
        );
    }
    Ok(if failed_inputs > 0 {
        ExitCode::from(crate::EXIT_USAGE)
    } else if finding_count > 0 {
        ExitCode::from(crate::EXIT_NEGATIVE)
    } else {
        ExitCode::SUCCESS
    })
}

/// The findings as an aligned table.
pub fn findings_table(findings: &[Finding]) -> String {
    use keyscope_audit::export::printable_cell as cell;
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            let records: Vec<String> = f
                .records
                .iter()
                .take(3)
                .map(|e| match e.origin.seq {
                    Some(seq) => format!("seq {seq}"),
                    None => format!("{}:{}", e.origin.source, e.origin.line),
                })
                .collect();
            let mut records = records.join(" ");
            if f.record_count > 3 {
                records.push_str(&format!(" (+{})", f.record_count - 3));
            }
            let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
            vec![
                f.time
                    .map(keyscope_audit::event::format_time)
                    .unwrap_or_else(|| "-".into()),
                cell(&f.level),
                cell(&f.rule_id),
                opt(&f.tenant),
                opt(&f.user),
                opt(&f.app),
                opt(&f.ip),
                cell(&records),
                cell(&f.summary),
            ]
        })
        .collect();
    let mut out = keyscope_audit::export::format_columns(
        &[
            "TIME", "SEVERITY", "RULE", "TENANT", "USER", "APP", "IP", "RECORDS", "SUMMARY",
        ],
        &rows,
    );
    out.push_str(&format!("{} finding(s)\n", findings.len()));
    out
}

/// A progress bar on stderr, only when stderr is a terminal and the input is long.
struct Progress {
    total: u64,
    enabled: bool,
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            enabled: total >= PROGRESS_FROM_BYTES && std::io::stderr().is_terminal(),
            last: None,
            shown: false,
        }
    }

    fn show(&mut self, done: u64) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        let fraction = (done as f64 / self.total.max(1) as f64).clamp(0.0, 1.0);
        let width = 40;
        let filled = (fraction * width as f64) as usize;
        eprint!(
            "\r[{}{}] {:5.1}% {} / {} MiB",
            "#".repeat(filled),
            " ".repeat(width - filled),
            fraction * 100.0,
            done >> 20,
            self.total >> 20
        );
        self.shown = true;
    }

    /// A line of its own, above the bar.
    fn note(&mut self, text: &str) {
        if self.shown {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{text}");
        self.last = None;
    }

    fn finish(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
        }
    }
}
