//! `keyscope bench http`: an open-loop HTTP/1.1 load generator for latency at a fixed rate.
//!
//! Closed-loop tools (wrk) send the next request only when the last one returned, so a slow
//! response delays the requests behind it and they are never measured ("coordinated
//! omission"). Here request *i* is due at `start + i / rate`, and its latency is counted from
//! when it was due, not from when a connection got round to sending it: a stall shows up in
//! the percentiles the way users would feel it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::input::print_json;

/// `keyscope bench http` arguments.
#[derive(clap::Args, Debug)]
pub struct HttpArgs {
    /// The URL (http://host:port/path).
    #[arg(long)]
    url: String,
    /// The method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// A request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A file holding the request body.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Requests per second to offer.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds to run (after a one-second warm-up at the same rate).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Persistent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("--url must start with http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("--url needs an IP address and port, got {authority:?}"))?;
    Ok((addr, authority.to_owned(), path.to_owned()))
}

/// Reads one response off a persistent connection; returns its status.
async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> anyhow::Result<u16> {
    buffer.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = String::from_utf8_lossy(buffer.get(..head_end).unwrap_or_default()).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .context("the benchmark needs Content-Length responses")?;
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-body");
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    Ok(status)
}

struct Outcome {
    latencies_us: Vec<u64>,
    errors: u64,
}

pub fn run(args: HttpArgs) -> anyhow::Result<ExitCode> {
    if !(1..=600).contains(&args.seconds) || args.rate == 0 || args.connections == 0 {
        bail!("--seconds must be 1..=600, --rate and --connections positive");
    }
    let (addr, host, path) = parse_url(&args.url)?;
    let body = match &args.body_file {
        Some(file) => std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        None => Vec::new(),
    };
    let mut request = format!("{} {path} HTTP/1.1\r\nHost: {host}\r\n", args.method);
    for header in &args.headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);
    let request = Arc::new(request);
    let warmup = args.rate;
    let total = warmup + args.rate * args.seconds;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(200);
        let interval_ns = 1_000_000_000 / args.rate;
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            let next = Arc::clone(&next);
            let request = Arc::clone(&request);
            tasks.push(tokio::spawn(async move {
                let mut outcome = Outcome {
                    latencies_us: Vec::new(),
                    errors: 0,
                };
                let mut stream = tokio::net::TcpStream::connect(addr).await.ok();
                let mut buffer = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + Duration::from_nanos(i * interval_ns);
                    tokio::time::sleep_until(due.into()).await;
                    let ok = async {
                        if stream.is_none() {
                            stream = Some(tokio::net::TcpStream::connect(addr).await?);
                        }
                        let s = stream.as_mut().context("no connection")?;
                        s.write_all(&request).await?;
                        read_response(s, &mut buffer).await
                    }
                    .await;
                    let latency = due.elapsed();
                    match ok {
                        Ok(status) if (200..300).contains(&status) => {
                            if i >= warmup {
                                outcome
                                    .latencies_us
                                    .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                            }
                        }
                        _ => {
                            outcome.errors += 1;
                            stream = None;
                        }
                    }
                }
                outcome
            }));
        }
        let mut all = Outcome {
            latencies_us: Vec::new(),
            errors: 0,
        };
        for task in tasks {
            if let Ok(mut o) = task.await {
                all.latencies_us.append(&mut o.latencies_us);
                all.errors += o.errors;
            }
        }
        (all, start.elapsed())
    });
    let (mut outcome, elapsed) = outcome;
    outcome.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let n = outcome.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let index = ((p / 100.0) * (n as f64 - 1.0)).round() as usize;
        outcome
            .latencies_us
            .get(index.min(n - 1))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let measured = outcome.latencies_us.len();
    let achieved = measured as f64 / (elapsed.as_secs_f64() - 1.0).max(0.001);
    if args.json {
        print_json(&json!({
            "offered_rate": args.rate, "seconds": args.seconds, "connections": args.connections,
            "measured": measured, "errors": outcome.errors, "achieved_rate": achieved.round(),
            "p50_ms": pct(50.0), "p90_ms": pct(90.0), "p99_ms": pct(99.0),
            "p999_ms": pct(99.9), "max_ms": pct(100.0),
        }));
    } else {
        crate::input::outln!(
            "offered {} req/s for {} s on {} connections: {measured} measured, {} errors, ~{achieved:.0} req/s",
            args.rate,
            args.seconds,
            args.connections,
            outcome.errors
        );
        crate::input::outln!(
            "latency from due time: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            pct(50.0),
            pct(90.0),
            pct(99.0),
            pct(99.9),
            pct(100.0)
        );
    }
    Ok(if outcome.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_NEGATIVE)
    })
}
