//! `keyscope bench verify`: how many validations this machine does per second on one core.
//!
//! For each signing algorithm it times the full trust path (parse, header checks, key lookup,
//! signature, claims, issuer binding, audience, time) on a realistic access token, and next
//! to it a bare aws-lc-rs verification of the same signature with the same pre-parsed key.
//! The ratio says what the strictness costs. Build with `--release` for meaningful numbers.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use keyscope_jose::Algorithm;
use keyscope_trust::sample;
use serde_json::json;

use crate::input::{print_json, unix_now};

#[derive(Subcommand)]
pub enum BenchCommand {
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
    let BenchCommand::Verify { seconds, json } = command;
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
        let (full, bare) = interleaved_rates(
            budget,
            || {
                black_box(s.validator.validate(black_box(&s.token), s.now));
            },
            || {
                let _ = black_box(
                    s.bare_key
                        .verify_sig(black_box(&s.signing_input), black_box(&s.signature)),
                );
            },
        );
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
        println!("one core, {seconds} s per measurement");
        println!(
            "{:<6} {:>16} {:>16} {:>7}",
            "alg", "full path/s", "bare verify/s", "ratio"
        );
        for r in &rows {
            println!(
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

/// Times two operations in alternating slices of about 50 ms until each has had `budget`,
/// and returns both rates in operations per second. Alternating keeps frequency scaling and
/// background load from favouring whichever ran first.
fn interleaved_rates(budget: Duration, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    const SLICE: Duration = Duration::from_millis(50);
    let mut totals = [(Duration::ZERO, 0u64); 2];
    // Warm caches and branch predictors before timing.
    for _ in 0..32 {
        a();
        b();
    }
    while totals.iter().any(|(spent, _)| *spent < budget) {
        for (index, total) in totals.iter_mut().enumerate() {
            let start = Instant::now();
            let mut done = 0u64;
            while start.elapsed() < SLICE {
                for _ in 0..16 {
                    if index == 0 { a() } else { b() }
                }
                done += 16;
            }
            total.0 += start.elapsed();
            total.1 += done;
        }
    }
    let [first, second] = totals.map(|(spent, done)| done as f64 / spent.as_secs_f64());
    (first, second)
}
