//! `keyscope bench audit`: durable appends per second under concurrency, and verification
//! throughput, measured on a temporary log on this machine's own disk.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keyscope_audit::{AuditLog, Verification};
use serde_json::{Map, Value, json};

use crate::input::print_json;

/// Writer counts measured, as the issue asks.
const WRITERS: [usize; 3] = [1, 8, 64];

/// A realistic mailbox-access event (about 400 bytes once recorded).
fn sample_event(writer: usize, n: u64) -> Map<String, Value> {
    let event = json!({
        "Operation": "MailItemsAccessed",
        "OrganizationId": "contoso",
        "UserId": format!("user{writer}@contoso.example"),
        "AppId": "app-outlook-web",
        "ClientIPAddress": "203.0.113.7",
        "ClientInfoString": "Client=OWA;Mozilla/5.0",
        "SessionId": format!("s-{writer}"),
        "TokenId": format!("jti-{writer}-{n}"),
        "KeyId": "contoso-2026-11",
        "MailAccessType": "Bind",
        "MailboxOwnerUPN": format!("user{writer}@contoso.example"),
        "OperationCount": 1,
    });
    match event {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

struct Row {
    writers: usize,
    /// `"task"` (async tasks on a two-thread runtime, as the services append) or `"thread"`
    /// (one OS thread per writer, blocking in `append`).
    kind: &'static str,
    appends_per_second: f64,
    records: u64,
}

pub fn run(seconds: u64, dir: Option<PathBuf>, as_json: bool) -> anyhow::Result<ExitCode> {
    if !(1..=60).contains(&seconds) {
        bail!("--seconds must be between 1 and 60");
    }
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let root = base.join(format!("keyscope-bench-audit-{}", std::process::id()));
    let result = measure(&root, Duration::from_secs(seconds));
    let _ = std::fs::remove_dir_all(&root);
    let (rows, verified, verify_seconds) = result?;

    if as_json {
        let appends: Vec<_> = rows
            .iter()
            .map(|r| json!({"writers": r.writers, "kind": r.kind, "appends_per_second": r.appends_per_second.round(), "records": r.records}))
            .collect();
        print_json(&json!({
            "seconds_per_measurement": seconds,
            "appends": appends,
            "verify": {
                "records": verified,
                "records_per_second": (verified as f64 / verify_seconds).round(),
            },
            "optimized_build": !cfg!(debug_assertions),
        }));
    } else {
        if cfg!(debug_assertions) {
            eprintln!("note: this is a debug build; use `cargo run --release` for real numbers");
        }
        crate::input::outln!("durable appends (fsync before acknowledgement), {seconds} s each:");
        for r in &rows {
            crate::input::outln!(
                "  {:>3} writers ({:<6}) {:>10.0} appends/s  ({} records)",
                r.writers,
                r.kind,
                r.appends_per_second,
                r.records
            );
        }
        crate::input::outln!(
            "verification: {:.0} records/s ({verified} records in {verify_seconds:.2} s)",
            verified as f64 / verify_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(root: &std::path::Path, budget: Duration) -> anyhow::Result<(Vec<Row>, u64, f64)> {
    let mut rows = Vec::new();
    let mut largest: Option<(u64, PathBuf)> = None;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    for kind in ["task", "thread"] {
        for writers in WRITERS {
            let dir = root.join(format!("{kind}-{writers}"));
            let log = Arc::new(AuditLog::open(&dir).context("cannot open the benchmark log")?);
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            if kind == "task" {
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..writers)
                        .map(|writer| {
                            let (log, stop, done) =
                                (Arc::clone(&log), Arc::clone(&stop), Arc::clone(&done));
                            tokio::spawn(async move {
                                let mut n = 0u64;
                                while !stop.load(Ordering::Relaxed) {
                                    if log.append_async(sample_event(writer, n)).await.is_err() {
                                        break;
                                    }
                                    n += 1;
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                            })
                        })
                        .collect();
                    tokio::time::sleep(budget).await;
                    stop.store(true, Ordering::Relaxed);
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            } else {
                let handles: Vec<_> = (0..writers)
                    .map(|writer| {
                        let (log, stop, done) =
                            (Arc::clone(&log), Arc::clone(&stop), Arc::clone(&done));
                        std::thread::spawn(move || {
                            let mut n = 0u64;
                            while !stop.load(Ordering::Relaxed) {
                                if log.append(sample_event(writer, n)).is_err() {
                                    break;
                                }
                                n += 1;
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                    })
                    .collect();
                std::thread::sleep(budget);
                stop.store(true, Ordering::Relaxed);
                for handle in handles {
                    let _ = handle.join();
                }
            }
            let elapsed = start.elapsed().as_secs_f64();
            log.close();
            let records = done.load(Ordering::Relaxed);
            rows.push(Row {
                writers,
                kind,
                appends_per_second: records as f64 / elapsed,
                records,
            });
            if largest.as_ref().is_none_or(|(n, _)| records > *n) {
                largest = Some((records, dir));
            }
        }
    }
    let Some((_, dir)) = largest else {
        bail!("nothing was appended");
    };
    let audit_dir = keyscope_audit::audit_dir(&dir);
    // AuditLog::open was given the directory itself; verify that directory.
    let target = if audit_dir.exists() { audit_dir } else { dir };
    let start = Instant::now();
    let verification = keyscope_audit::verify(&target, None)?;
    let verify_seconds = start.elapsed().as_secs_f64();
    match verification {
        Verification::Intact { records, .. } => Ok((rows, records, verify_seconds)),
        Verification::Failed(why) => bail!("the benchmark log does not verify: {why}"),
    }
}
