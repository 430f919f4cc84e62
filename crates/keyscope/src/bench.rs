//! `keyscope bench verify`: how many validations this machine does per second on one core.
//!
//! For each signing algorithm it times the full trust path (parse, header checks, key lookup,
//! signature, claims, issuer binding, audience, time) on a realistic access token, and next
//! to it a bare aws-lc-rs verification of the same signature with the same pre-parsed key.
//! The ratio says what the strictness costs. Build with `--release` for meaningful numbers.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use keyscope_jose::Algorithm;
use keyscope_trust::sample;
use serde_json::json;

use crate::input::{print_json, unix_now};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable audit appends per second with 1, 8 and 64 concurrent writers, and
    /// verification throughput, in a temporary log on this machine's disk.
    Audit {
        /// Seconds to measure each writer count, 1 to 60.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Where to create the temporary log (default: the system temp directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Latency percentiles of an HTTP endpoint at a fixed offered rate (open loop).
    Http(crate::bench_http::HttpArgs),
    /// Validations per second of the full trust path versus bare signature verification.
    Verify {
        /// Seconds to measure each rate (two rates per algorithm), 1 to 60.
        #[arg(long, default_value_t = 2)]
        seconds: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

struct Row {
    alg: Algorithm,
    full: f64,
    bare: f64,
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Verify { seconds, json } => verify(seconds, json),
        BenchCommand::Audit { seconds, dir, json } => crate::bench_audit::run(seconds, dir, json),
        BenchCommand::Http(args) => crate::bench_http::run(args),
    }
}

fn verify(seconds: u64, json: bool) -> anyhow::Result<ExitCode> {
    if !(1..=60).contains(&seconds) {
        bail!("--seconds must be between 1 and 60");
    }
    let budget = Duration::from_secs(seconds);
    let mut rows = Vec::new();
    for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
        let s = sample::access_token(alg, unix_now()).context("building the benchmark sample")?;
        if !s.validator.validate(&s.token, s.now).is_accepted() {
            bail!("the {alg} sample token was not accepted; the benchmark would be meaningless");
        }
        let rates = sample::interleaved_rates(
            budget,
            &mut [
                &mut || {
                    black_box(s.validator.validate(black_box(&s.token), s.now));
                },
                &mut || {
                    let _ = black_box(
                        s.bare_key
                            .verify_sig(black_box(&s.signing_input), black_box(&s.signature)),
                    );
                },
            ],
        );
        let (full, bare) = match rates.as_slice() {
            [full, bare] => (*full, *bare),
            _ => bail!("measurement failed"),
        };
        rows.push(Row { alg, full, bare });
    }
    if json {
        let results: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "alg": r.alg,
                    "full_per_second": r.full.round(),
                    "bare_per_second": r.bare.round(),
                    "ratio": (r.full / r.bare * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        print_json(&json!({
            "threads": 1,
            "seconds_per_measurement": seconds,
            "optimized_build": !cfg!(debug_assertions),
            "results": results,
        }));
    } else {
        if cfg!(debug_assertions) {
            eprintln!("note: this is a debug build; use `cargo run --release` for real numbers");
        }
        crate::input::outln!("one core, {seconds} s per measurement");
        crate::input::outln!(
            "{:<6} {:>16} {:>16} {:>7}",
            "alg",
            "full path/s",
            "bare verify/s",
            "ratio"
        );
        for r in &rows {
            crate::input::outln!(
                "{:<6} {:>16.0} {:>16.0} {:>7.3}",
                r.alg.name(),
                r.full,
                r.bare,
                r.full / r.bare
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
