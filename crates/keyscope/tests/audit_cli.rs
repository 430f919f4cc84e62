#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! End-to-end tests of `keyscope audit append|verify|checkpoint|proof`: every test spawns the
//! real program, and the crash test kills it with SIGKILL while it appends.
//!
//! Exit codes: 0 ok / intact, 1 the log does not verify, 2 a usage or input error.

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use keyscope_audit::merkle;
use keyscope_jose::b64;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_keyscope");

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "keyscope-audit-cli-test-{}-{}-{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The data directory (`--data-dir`).
    fn data(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn audit(&self) -> PathBuf {
        self.0.join("audit")
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The result of one run of the binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    fn describe(&self) -> String {
        format!(
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("KEYSCOPE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn append(dir: &TempDir, stdin: &[u8]) -> Run {
    run(&["audit", "append", "--data-dir", dir.data()], stdin)
}

fn verify_json(dir: &TempDir) -> Run {
    run(
        &["audit", "verify", "--data-dir", dir.data(), "--json"],
        b"",
    )
}

/// The seqs printed by `audit append`, in order.
fn acknowledged(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            assert_eq!(value.as_object().unwrap().len(), 1, "{line}");
            value["seq"].as_u64().unwrap()
        })
        .collect()
}

fn event_lines(from: u64, count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for n in from..from + count {
        out.extend_from_slice(
            json!({"Operation": "Send", "UserId": "u@contoso.example", "Note": "abcdefgh", "n": n})
                .to_string()
                .as_bytes(),
        );
        out.push(b'\n');
    }
    out
}

/// A log with several batches: one `audit append` run per entry of `runs`.
fn build(dir: &TempDir, runs: &[u64]) -> u64 {
    let mut next = 1;
    for &count in runs {
        let result = append(dir, &event_lines(next, count));
        assert_eq!(result.code, 0, "{}", result.describe());
        assert_eq!(
            acknowledged(&result.stdout),
            (next..next + count).collect::<Vec<_>>()
        );
        next += count;
    }
    next - 1
}

/// The segment files, in order.
fn segments(dir: &TempDir) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir.audit().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    paths
}

/// The written part of a segment file. A segment may be preallocated, its unused end zero
/// bytes; a record line never holds a zero byte (JSON escapes control characters).
fn data_len(bytes: &[u8]) -> usize {
    bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())
}

/// Every complete line of every segment, in order.
fn all_lines(dir: &TempDir) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for path in segments(dir) {
        let bytes = fs::read(&path).unwrap();
        let data = &bytes[..data_len(&bytes)];
        let mut parts: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        parts.pop(); // after the last newline
        lines.extend(parts);
    }
    lines
}

fn is_checkpoint(line: &[u8]) -> bool {
    line.starts_with(b"{\"checkpoint\":")
}

/// The single segment of a small log, as lines.
fn single_segment(dir: &TempDir) -> (PathBuf, Vec<Vec<u8>>) {
    let paths = segments(dir);
    assert_eq!(paths.len(), 1);
    (paths[0].clone(), all_lines(dir))
}

/// Replaces the written part of a segment, keeping a preallocated file's length.
fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let old = fs::read(path).unwrap();
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    if data_len(&old) < old.len() && bytes.len() < old.len() {
        bytes.resize(old.len(), 0);
    }
    fs::write(path, bytes).unwrap();
}

/// A power cut during a write: the unfinished line after the last complete one is cut at a
/// random point and followed by garbage; where the segment is preallocated the rest stays
/// zero bytes, otherwise the file ends there.
fn tear_last_write(dir: &TempDir, rng: &mut XorShift) {
    let last = segments(dir).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let length = bytes.len();
    let end = data_len(&bytes);
    let complete = bytes[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let partial = (end - complete) as u64;
    bytes.truncate(complete + usize::try_from(rng.below(partial + 1)).unwrap());
    for _ in 0..1 + rng.below(24) {
        let pick = usize::try_from(rng.below(GARBAGE.len() as u64)).unwrap();
        bytes.push(GARBAGE[pick]);
    }
    if rng.below(3) == 0 {
        // A torn write can also leave a complete garbage line behind.
        bytes.extend_from_slice(b"\n{\"seq\":");
    }
    if end < length && bytes.len() < length {
        bytes.resize(length, 0);
    }
    fs::write(&last, &bytes).unwrap();
}

fn seq_of(line: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

/// A small deterministic generator, seeded from the iteration number (never the clock).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// append
// ---------------------------------------------------------------------------------------------

#[test]
fn append_acknowledges_exactly_the_valid_lines_and_names_the_refused_ones() {
    let dir = TempDir::new("mixed");
    let oversized = format!(
        "{{\"Operation\":\"Send\",\"Note\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let input = [
        r#"{"Operation":"SignIn","UserId":"a@contoso.example"}"#, // 1
        "not json",                                               // 2
        r#"{"Operation":"Send","UserId":"b@contoso.example"}"#,   // 3
        r#"{"UserId":"no-operation@contoso.example"}"#,           // 4
        &oversized,                                               // 5
        "",                                                       // 6
        r#"{"Operation":"Alert","Reason":"r"}"#,                  // 7
        r#"{"Operation":"Send","seq":5}"#,                        // 8
        r#"{"Operation":"KeyCreated","KeyId":"k1"}"#,             // 9
    ]
    .join("\n")
        + "\n";
    let result = append(&dir, input.as_bytes());
    assert_eq!(result.code, 2, "{}", result.describe());
    assert_eq!(acknowledged(&result.stdout), vec![1, 2, 3, 4]);
    for refused in [2, 4, 5, 8] {
        assert!(
            result.stderr.contains(&format!("line {refused}:")),
            "line {refused} should be named: {}",
            result.stderr
        );
    }
    for accepted in [1, 3, 6, 7, 9] {
        assert!(
            !result.stderr.contains(&format!("line {accepted}:")),
            "line {accepted} was not refused: {}",
            result.stderr
        );
    }
    assert!(
        result.stderr.contains("4 line(s) refused"),
        "{}",
        result.stderr
    );
    // The oversized line is refused without being stored or echoed.
    assert!(result.stderr.len() < 4096, "{}", result.stderr.len());

    let verified = verify_json(&dir);
    assert_eq!(verified.code, 0, "{}", verified.describe());
    assert_eq!(verified.json()["intact"], json!(true));
    assert_eq!(verified.json()["records"], json!(4));

    // The stored records are the valid lines, in order.
    let operations: Vec<String> = all_lines(&dir)
        .iter()
        .filter(|l| !is_checkpoint(l))
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["Operation"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(operations, ["SignIn", "Send", "Alert", "KeyCreated"]);

    // A later run continues the numbering; a clean run exits 0.
    let result = append(&dir, &event_lines(100, 3));
    assert_eq!(result.code, 0, "{}", result.describe());
    assert_eq!(acknowledged(&result.stdout), vec![5, 6, 7]);
    let result = run(&["audit", "verify", "--data-dir", dir.data()], b"");
    assert_eq!(result.code, 0, "{}", result.describe());
    assert!(
        result.stdout.contains("intact: 7 records"),
        "{}",
        result.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// verify and checkpoint
// ---------------------------------------------------------------------------------------------

#[test]
fn verify_names_a_changed_record() {
    let dir = TempDir::new("flip");
    let total = build(&dir, &[5, 10, 1, 8]);
    let (path, mut lines) = single_segment(&dir);
    // A record in the middle of a batch (its successor is a record, not a checkpoint).
    let index = (1..lines.len() - 1)
        .find(|&i| !is_checkpoint(&lines[i]) && !is_checkpoint(&lines[i + 1]) && i > 6)
        .unwrap();
    let target = seq_of(&lines[index]);
    let at = lines[index]
        .windows(8)
        .position(|w| w == b"abcdefgh")
        .unwrap();
    lines[index][at + 2] = b'Z';
    write_lines(&path, &lines);

    let result = run(&["audit", "verify", "--data-dir", dir.data()], b"");
    assert_eq!(result.code, 1, "{}", result.describe());
    assert!(result.stdout.contains("NOT INTACT"), "{}", result.stdout);
    assert!(
        result.stdout.contains(&format!("record {target}:")),
        "{}",
        result.stdout
    );

    let result = verify_json(&dir);
    assert_eq!(result.code, 1, "{}", result.describe());
    let answer = result.json();
    assert_eq!(answer["intact"], json!(false));
    let problem = answer["problem"].as_str().unwrap();
    assert!(problem.contains(&format!("record {target}:")), "{problem}");

    // Appending to it is refused, and changes nothing.
    let before = fs::read(&path).unwrap();
    let result = append(&dir, &event_lines(1000, 1));
    assert_eq!(result.code, 2, "{}", result.describe());
    assert!(result.stdout.is_empty());
    assert!(
        result.stderr.contains("does not verify"),
        "{}",
        result.stderr
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    // Neither a checkpoint nor a proof is given out for it.
    let result = run(&["audit", "checkpoint", "--data-dir", dir.data()], b"");
    assert_eq!(result.code, 2, "{}", result.describe());
    let result = run(
        &["audit", "proof", "--data-dir", dir.data(), "--seq", "1"],
        b"",
    );
    assert_eq!(result.code, 2, "{}", result.describe());
    assert!(total > target);
}

#[test]
fn verify_against_a_saved_checkpoint_catches_a_cut_off_end() {
    let dir = TempDir::new("cut");
    let total = build(&dir, &[4, 6, 3]);
    let saved = dir.join("saved-checkpoint.json");
    let result = run(
        &[
            "audit",
            "checkpoint",
            "--data-dir",
            dir.data(),
            "--out",
            saved.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(result.code, 0, "{}", result.describe());
    let printed = result.json();
    assert_eq!(printed["size"], json!(total));
    let file: Value = serde_json::from_slice(&fs::read(&saved).unwrap()).unwrap();
    assert_eq!(file, printed);

    let with_saved = [
        "audit",
        "verify",
        "--data-dir",
        dir.data(),
        "--checkpoint",
        saved.to_str().unwrap(),
    ];
    let result = run(&with_saved, b"");
    assert_eq!(result.code, 0, "{}", result.describe());

    // Cut the last batch and its checkpoint off.
    let (path, lines) = single_segment(&dir);
    let checkpoints: Vec<usize> = (0..lines.len())
        .filter(|&i| is_checkpoint(&lines[i]))
        .collect();
    assert!(checkpoints.len() >= 3);
    let keep = checkpoints[checkpoints.len() - 2];
    write_lines(&path, &lines[..=keep]);
    // On its own the shorter log verifies: it is complete up to a signed checkpoint.
    let result = run(&["audit", "verify", "--data-dir", dir.data()], b"");
    assert_eq!(result.code, 0, "{}", result.describe());
    // The saved checkpoint shows that records are missing.
    let result = run(&with_saved, b"");
    assert_eq!(result.code, 1, "{}", result.describe());
    assert!(result.stdout.contains("shorter"), "{}", result.stdout);
    let mut as_json = with_saved.to_vec();
    as_json.push("--json");
    let result = run(&as_json, b"");
    assert_eq!(result.code, 1, "{}", result.describe());
    assert!(
        result.json()["problem"]
            .as_str()
            .unwrap()
            .contains("shorter")
    );

    // An unreadable saved checkpoint is an input error.
    fs::write(&saved, b"{not json").unwrap();
    let result = run(&with_saved, b"");
    assert_eq!(result.code, 2, "{}", result.describe());
}

#[test]
fn commands_on_a_missing_log_are_input_errors() {
    let dir = TempDir::new("missing");
    let nowhere = dir.join("does-not-exist");
    let nowhere = nowhere.to_str().unwrap();
    for args in [
        vec!["audit", "verify", "--data-dir", nowhere],
        vec!["audit", "verify", "--data-dir", nowhere, "--json"],
        vec!["audit", "checkpoint", "--data-dir", nowhere],
        vec!["audit", "proof", "--data-dir", nowhere, "--seq", "1"],
    ] {
        let result = run(&args, b"");
        assert_eq!(result.code, 2, "{args:?}: {}", result.describe());
        assert!(result.stdout.is_empty(), "{args:?}: {}", result.stdout);
        assert!(result.stderr.contains("no audit log"), "{}", result.stderr);
    }
    // verify does not create anything.
    assert!(!Path::new(nowhere).exists());
}

// ---------------------------------------------------------------------------------------------
// proof
// ---------------------------------------------------------------------------------------------

#[test]
fn proof_prints_an_inclusion_path_that_verifies() {
    let dir = TempDir::new("proof");
    let total = build(&dir, &[3, 9, 1, 20]);
    let lines = all_lines(&dir);
    let records: Vec<&Vec<u8>> = lines.iter().filter(|l| !is_checkpoint(l)).collect();
    for seq in [1, 2, 7, 16, total] {
        let result = run(
            &[
                "audit",
                "proof",
                "--data-dir",
                dir.data(),
                "--seq",
                &seq.to_string(),
            ],
            b"",
        );
        assert_eq!(result.code, 0, "{}", result.describe());
        let proof = result.json();
        assert_eq!(proof["seq"], json!(seq));
        assert_eq!(proof["tree_size"], json!(total));
        let decode = |v: &Value| -> merkle::Hash {
            b64::decode_url(v.as_str().unwrap().as_bytes())
                .unwrap()
                .try_into()
                .unwrap()
        };
        let leaf = decode(&proof["leaf_hash"]);
        let index = usize::try_from(seq - 1).unwrap();
        assert_eq!(leaf, merkle::leaf_hash(records[index]));
        let path: Vec<merkle::Hash> = proof["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(decode)
            .collect();
        let root = decode(&proof["checkpoint"]["root"]);
        assert_eq!(proof["checkpoint"]["size"], json!(total));
        assert!(merkle::verify_inclusion(
            &leaf,
            seq - 1,
            total,
            &path,
            &root
        ));
    }
    for bad in ["0".to_owned(), (total + 1).to_string(), "999999".to_owned()] {
        let result = run(
            &["audit", "proof", "--data-dir", dir.data(), "--seq", &bad],
            b"",
        );
        assert_eq!(result.code, 2, "--seq {bad}: {}", result.describe());
        assert!(result.stdout.is_empty());
        assert!(result.stderr.contains("no record"), "{}", result.stderr);
    }
    let result = run(
        &["audit", "proof", "--data-dir", dir.data(), "--seq", "-1"],
        b"",
    );
    assert_eq!(result.code, 2, "{}", result.describe());
}

// ---------------------------------------------------------------------------------------------
// Crashes
// ---------------------------------------------------------------------------------------------

/// Lines written to one killed `audit append` at most; after that the feeder keeps stdin open
/// (so the child waits for more rather than finishing) until the kill. Bounds the log's growth.
const MAX_LINES_PER_RUN: u64 = 12_000;

/// Bytes a torn write leaves behind.
const GARBAGE: &[u8] = b"{}\":,0123456789abcXYZ \x00\xff";

#[test]
fn killed_appends_never_lose_an_acknowledged_record() {
    const ITERATIONS: u64 = 24;
    let dir = TempDir::new("crash");
    // Create the log and its key first: a crash during first-use key creation is its own test
    // (crash_during_key_creation_is_recovered), and must not make this one flaky.
    let first = append(&dir, &event_lines(0, 1));
    assert_eq!(first.code, 0, "{}", first.describe());
    assert_eq!(acknowledged(&first.stdout), vec![1]);

    // (seq, n) for every acknowledged record: the i-th acknowledgement of a run is the i-th line
    // written to it.
    let mut acked: Vec<(u64, u64)> = vec![(1, 0)];
    let mut records = 1;
    let mut next_n = 1;
    let mut torn_writes = 0;
    let mut killed_with_acks = 0;
    let mut waited_for_ack = 0;
    let mut interrupted = 0;
    for iteration in 0..ITERATIONS {
        let mut rng = XorShift::new(iteration + 1);
        let delay = 5 + rng.below(146);
        // Usually the delay counts from the first acknowledgement, so the kill lands while
        // batches are being written whatever the start-up time (opening a log scans it);
        // one run in four counts from the spawn, so some kills land during start-up and
        // recovery instead.
        let after_first_ack = rng.below(4) != 0;
        let mut child = Command::new(BIN)
            .args(["audit", "append", "--data-dir", dir.data()])
            .env_remove("KEYSCOPE_DATA_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let start_n = next_n;
        let feeder = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut writer = BufWriter::new(stdin);
                let mut n = start_n;
                while n < start_n + MAX_LINES_PER_RUN {
                    let line = json!({"Operation": "Send", "UserId": "u", "n": n}).to_string();
                    if writeln!(writer, "{line}").is_err() {
                        return;
                    }
                    n += 1;
                }
                let _ = writer.flush();
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let (first_ack, got_ack) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut seqs = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Only a complete {"seq":N} counts as an acknowledgement.
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && let Some(seq) = value["seq"].as_u64()
                {
                    seqs.push(seq);
                    let _ = first_ack.send(seq);
                }
            }
            seqs
        });
        if after_first_ack {
            waited_for_ack += 1;
            let first = got_ack.recv_timeout(Duration::from_secs(30));
            assert!(first.is_ok(), "iteration {iteration}: no acknowledgement");
        }
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        feeder.join().unwrap();
        let seqs = reader.join().unwrap();

        // This run's acknowledgements continue the log without a gap, in order.
        assert_eq!(
            seqs,
            (records + 1..records + 1 + seqs.len() as u64).collect::<Vec<_>>(),
            "iteration {iteration}"
        );
        if !seqs.is_empty() {
            killed_with_acks += 1;
        }
        acked.extend(
            seqs.iter()
                .enumerate()
                .map(|(i, &s)| (s, start_n + i as u64)),
        );
        next_n = start_n + MAX_LINES_PER_RUN;

        // Did the kill interrupt a batch (data after the last checkpoint line)? Counted only:
        // a batch goes out in one write, so a kill rarely lands inside one.
        let bytes = fs::read(segments(&dir).pop().unwrap()).unwrap();
        let data = &bytes[..data_len(&bytes)];
        let last_line = data[..data.len().saturating_sub(1)]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if !data.ends_with(b"\n") || !is_checkpoint(&data[last_line..]) {
            interrupted += 1;
        }

        // About every other iteration, a power cut on top: the tail after the last complete
        // line is torn, with a few bytes of garbage where the rest of the write should be.
        if rng.below(2) == 0 {
            torn_writes += 1;
            tear_last_write(&dir, &mut rng);
        }

        // Restart: open recovers (cuts off the unacknowledged tail) and exits cleanly.
        let restart = append(&dir, b"");
        assert_eq!(
            restart.code,
            0,
            "iteration {iteration} (killed after {delay} ms): {}",
            restart.describe()
        );
        assert!(restart.stdout.is_empty());
        let verified = verify_json(&dir);
        assert_eq!(
            verified.code,
            0,
            "iteration {iteration} (killed after {delay} ms): {}",
            verified.describe()
        );
        let answer = verified.json();
        assert_eq!(answer["intact"], json!(true));
        let now = answer["records"].as_u64().unwrap();
        let highest = acked.last().unwrap().0;
        assert!(
            highest <= now,
            "iteration {iteration}: record {highest} was acknowledged, the log has {now}"
        );
        assert!(now >= records, "records never go away");
        records = now;

        // Every acknowledged record is on disk exactly once, with the event it acknowledged.
        let mut on_disk: Vec<Option<u64>> = vec![None; usize::try_from(records + 1).unwrap()];
        let mut count = 0;
        for line in all_lines(&dir).iter().filter(|l| !is_checkpoint(l)) {
            let value: Value = serde_json::from_slice(line).unwrap();
            let seq = usize::try_from(value["seq"].as_u64().unwrap()).unwrap();
            assert!(on_disk[seq].is_none(), "record {seq} twice");
            on_disk[seq] = Some(value["n"].as_u64().unwrap());
            count += 1;
        }
        assert_eq!(count, records);
        for &(seq, n) in &acked {
            assert_eq!(
                on_disk[usize::try_from(seq).unwrap()],
                Some(n),
                "iteration {iteration}: acknowledged record {seq}"
            );
        }
    }
    assert!(torn_writes > 0);
    eprintln!(
        "{ITERATIONS} kills ({waited_for_ack} after the first acknowledgement, {interrupted} \
         inside a batch), {torn_writes} torn writes, {} records acknowledged, {records} in \
         the log",
        acked.len()
    );
    assert!(waited_for_ack >= ITERATIONS / 2, "{waited_for_ack}");
    assert!(killed_with_acks >= waited_for_ack);
    // The log still takes appends after all that.
    let result = append(&dir, &event_lines(next_n, 2));
    assert_eq!(result.code, 0, "{}", result.describe());
    assert_eq!(acknowledged(&result.stdout), vec![records + 1, records + 2]);
    assert_eq!(verify_json(&dir).code, 0);
}

/// The audit key is created on first use, before any record. A crash in the middle of that
/// (the private key file created but not yet written, or written but the public key not yet)
/// must not leave a log that can never be opened or verified: the restart (an append with
/// empty stdin) must succeed and the log then verify.
#[test]
fn crash_during_key_creation_is_recovered() {
    // Produce a real key pair and segment layout, then roll it back to each crash point.
    let template = TempDir::new("key-template");
    let result = append(&template, b"");
    assert_eq!(result.code, 0, "{}", result.describe());
    let private = fs::read(template.audit().join("audit-key.private.jwk")).unwrap();

    let crash_points: [(&str, &[u8]); 2] = [
        ("private key file created, nothing written yet", b""),
        ("private key written, public key not yet", &private),
    ];
    let mut failures = Vec::new();
    for (what, private_contents) in crash_points {
        let dir = TempDir::new("key-crash");
        fs::create_dir_all(dir.audit().join("segments")).unwrap();
        fs::write(dir.audit().join("audit-key.private.jwk"), private_contents).unwrap();
        let restart = append(&dir, b"");
        let verified = run(&["audit", "verify", "--data-dir", dir.data()], b"");
        let appended = append(&dir, &event_lines(1, 2));
        let verified_after = run(&["audit", "verify", "--data-dir", dir.data()], b"");
        if restart.code != 0 || verified.code != 0 || appended.code != 0 || verified_after.code != 0
        {
            failures.push(format!(
                "crash with {what}:\n restart: {}\n verify: {}\n append: {}\n verify: {}",
                restart.describe(),
                verified.describe(),
                appended.describe(),
                verified_after.describe()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Whatever an interrupted write left after the acknowledged data, a restart that succeeds
/// must leave a log that verifies (recovery and verification agree on what the tail is). Here
/// the write of a large batch was torn so that its first megabytes never reached the disk but
/// a later piece did: zero bytes, then a fragment.
#[test]
fn a_successful_recovery_leaves_a_log_that_verifies() {
    let dir = TempDir::new("stray");
    let total = build(&dir, &[3, 4]);
    let last = segments(&dir).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let fragment = br#"{"Operation":"Send","UserId":"u","seq":99"#;
    let at = data_len(&bytes) + 2 * 1024 * 1024;
    if bytes.len() < at + fragment.len() {
        bytes.resize(at + fragment.len(), 0);
    }
    bytes[at..at + fragment.len()].copy_from_slice(fragment);
    fs::write(&last, &bytes).unwrap();

    let restart = append(&dir, b"");
    let verified = verify_json(&dir);
    assert!(
        restart.code == 2 || verified.code == 0,
        "the restart reported success but the log does not verify:\nrestart: {}\nverify: {}",
        restart.describe(),
        verified.describe()
    );
    if restart.code == 0 {
        assert_eq!(verified.json()["records"], json!(total));
        let result = append(&dir, &event_lines(100, 2));
        assert_eq!(result.code, 0, "{}", result.describe());
        assert_eq!(verify_json(&dir).code, 0);
    }
}
