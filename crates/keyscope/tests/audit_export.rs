#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! End-to-end tests of `keyscope audit search` and `keyscope audit export`: every test spawns
//! the real binary, fills a log with `keyscope audit append`, and checks exit codes, stdout and
//! stderr.
//!
//! Exit codes: 0 ok (also when nothing matches), 1 the log does not verify, 2 usage or input
//! error.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, Value, json};

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
            "keyscope-audit-export-test-{}-{}-{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn s(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The result of one run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Stdout as JSON objects, one per line.
    fn json_lines(&self) -> Vec<Map<String, Value>> {
        self.stdout
            .lines()
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(map)) => map,
                other => panic!("not a JSON object line ({other:?}): {line:?} in {self:?}"),
            })
            .collect()
    }
}

/// Runs `keyscope ARGS`; `stdin` is piped when given, `/dev/null` otherwise. The environment's
/// KEYSCOPE_DATA_DIR is removed so that only `--data-dir` counts.
fn keyscope<I, A>(args: I, stdin: Option<&[u8]>) -> Run
where
    I: IntoIterator<Item = A>,
    A: AsRef<OsStr>,
{
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("KEYSCOPE_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = command.spawn().expect("spawn keyscope");
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let output = child.wait_with_output().expect("wait for keyscope");
    if let Some(writer) = writer {
        writer.join().expect("stdin writer");
    }
    Run {
        code: output
            .status
            .code()
            .unwrap_or_else(|| panic!("keyscope was killed by a signal: {output:?}")),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `keyscope audit SUB --data-dir DIR ARGS…`
fn audit(sub: &str, dir: &TempDir, args: &[&str]) -> Run {
    let mut all = vec!["audit", sub, "--data-dir", dir.s()];
    all.extend_from_slice(args);
    keyscope(all, None)
}

/// Appends events through the CLI and checks the acknowledgements.
fn append(dir: &TempDir, events: &[Value]) {
    let input: String = events.iter().map(|e| format!("{e}\n")).collect();
    let run = keyscope(
        ["audit", "append", "--data-dir", dir.s()],
        Some(input.as_bytes()),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let seqs: Vec<u64> = run
        .json_lines()
        .iter()
        .map(|ack| ack["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), events.len(), "{run:?}");
}

/// The events of the standard log; record N is `events()[N - 1]`.
fn events() -> Vec<Value> {
    vec![
        // 1
        json!({
            "Operation": "SignIn",
            "CreationTime": "2026-11-20T08:00:00Z",
            "OrganizationId": "t-contoso",
            "UserId": "alice@contoso.example",
            "AppId": "app-mail",
            "ClientIPAddress": "203.0.113.5",
            "ResultStatus": "Success",
            "TokenId": "jti-1",
        }),
        // 2
        json!({
            "Operation": "TokenIssued",
            "CreationTime": "2026-11-20T08:00:01Z",
            "OrganizationId": "t-contoso",
            "UserId": "alice@contoso.example",
            "TokenId": "jti-1",
            "KeyId": "k1",
            "Issuer": "https://ks.example/t/contoso",
        }),
        // 3
        json!({
            "Operation": "MailItemsAccessed",
            "CreationTime": "2026-11-21T09:30:00.250000Z",
            "OrganizationId": "t-contoso",
            "UserId": "Alice@Contoso.example",
            "AppId": "app-mail",
            "ClientAppId": "client-mail",
            "ClientIPAddress": "203.0.113.5",
            "ClientInfoString": "Client=REST;Keyscope",
            "SessionId": "sess-3",
            "MailboxOwnerUPN": "alice@contoso.example",
            "MailAccessType": "Bind",
            "OperationCount": 2,
            "Folders": [{
                "Path": "\\Inbox",
                "FolderItems": [
                    {"InternetMessageId": "<m1@contoso.example>"},
                    {"InternetMessageId": "<m2@contoso.example>"}
                ]
            }],
            "TokenId": "jti-1",
            "KeyId": "k1",
            "Issuer": "https://ks.example/t/contoso",
        }),
        // 4
        json!({
            "Operation": "SignIn",
            "CreationTime": "2026-11-21T23:59:59.999999Z",
            "OrganizationId": "t-fabrikam",
            "UserId": "mallory@fabrikam.example",
            "ClientIPAddress": "198.51.100.66",
            "ResultStatus": "Failure",
            "Reason": "bad_signature",
        }),
        // 5
        json!({
            "Operation": "Send",
            "CreationTime": "2026-11-22T00:00:00Z",
            "OrganizationId": "t-contoso",
            "UserId": "bob@contoso.example",
            "SessionId": "sess-5",
            "MailboxOwnerUPN": "bob@contoso.example",
        }),
        // 6
        json!({
            "Operation": "KeyRevoked",
            "CreationTime": "2026-11-22T12:00:00Z",
            "OrganizationId": "t-contoso",
            "KeyId": "k1",
        }),
        // 7
        json!({
            "Operation": "Alert",
            "CreationTime": "2026-11-23T00:00:00Z",
        }),
        // 8
        json!({
            "Operation": "CustomThing",
            "CreationTime": "2026-11-23T06:00:00Z",
            "OrganizationId": "t-fabrikam",
            "UserId": "carol@fabrikam.example",
        }),
        // 9
        json!({
            "Operation": "SignIn",
            "CreationTime": "2026-11-24T00:00:00Z",
            "OrganizationId": "t-contoso",
            "UserId": "bob@contoso.example",
        }),
    ]
}

/// A data directory holding the standard log.
fn standard_log(label: &str) -> TempDir {
    let dir = TempDir::new(label);
    append(&dir, &events());
    dir
}

/// The seqs `search --json ARGS` prints (and checks the exit code is 0).
fn seqs(dir: &TempDir, args: &[&str]) -> Vec<u64> {
    let mut all = args.to_vec();
    all.push("--json");
    let run = audit("search", dir, &all);
    assert_eq!(run.code, 0, "{args:?}: {run:?}");
    run.json_lines()
        .iter()
        .map(|record| record["seq"].as_u64().unwrap())
        .collect()
}

/// The record lines of the segment files, as written.
fn stored_lines(dir: &TempDir) -> Vec<String> {
    let segments = dir.path().join("audit").join("segments");
    let mut files: Vec<PathBuf> = fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        // Record lines only: not checkpoint lines, nor any preallocated (zero-filled) tail.
        .filter(|line| line.starts_with('{') && !line.starts_with("{\"checkpoint\""))
        .collect()
}

fn ual_seq(record: &Map<String, Value>) -> u64 {
    property(record, "seq").unwrap().parse().unwrap()
}

fn property(record: &Map<String, Value>, name: &str) -> Option<String> {
    record["OperationProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Name"] == name)
        .map(|p| p["Value"].as_str().expect("string values").to_owned())
}

fn is_uuid_v5(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        && groups[2].starts_with('5')
        && groups[3].starts_with(['8', '9', 'a', 'b'])
}

fn is_ual_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        })
}

// ---------------------------------------------------------------------------------------------
// search
// ---------------------------------------------------------------------------------------------

#[test]
fn search_filters_one_at_a_time() {
    let dir = standard_log("filters");
    assert_eq!(seqs(&dir, &[]), (1..=9).collect::<Vec<_>>());

    // --op: exact, repeatable.
    assert_eq!(seqs(&dir, &["--op", "SignIn"]), [1, 4, 9]);
    assert_eq!(
        seqs(&dir, &["--op", "SignIn", "--op", "Send"]),
        [1, 4, 5, 9]
    );
    assert_eq!(seqs(&dir, &["--op", "CustomThing"]), [8]);
    assert!(seqs(&dir, &["--op", "signin"]).is_empty());

    // --user: case-insensitive, repeatable.
    assert_eq!(seqs(&dir, &["--user", "alice@contoso.example"]), [1, 2, 3]);
    assert_eq!(
        seqs(
            &dir,
            &[
                "--user",
                "ALICE@CONTOSO.EXAMPLE",
                "--user",
                "carol@fabrikam.example"
            ]
        ),
        [1, 2, 3, 8]
    );
    assert!(seqs(&dir, &["--user", "alice"]).is_empty(), "no substring");

    // --tenant: exact, repeatable.
    assert_eq!(seqs(&dir, &["--tenant", "t-fabrikam"]), [4, 8]);
    assert_eq!(
        seqs(&dir, &["--tenant", "t-fabrikam", "--tenant", "t-contoso"]),
        [1, 2, 3, 4, 5, 6, 8, 9]
    );
    assert!(seqs(&dir, &["--tenant", "T-FABRIKAM"]).is_empty());

    // --since inclusive, --until exclusive; a bare date is midnight UTC.
    assert_eq!(seqs(&dir, &["--since", "2026-11-22"]), [5, 6, 7, 8, 9]);
    assert_eq!(seqs(&dir, &["--until", "2026-11-22"]), [1, 2, 3, 4]);
    assert_eq!(
        seqs(&dir, &["--since", "2026-11-22T00:00:00Z"]),
        [5, 6, 7, 8, 9]
    );
    assert_eq!(
        seqs(&dir, &["--until", "2026-11-21T23:59:59.999999Z"]),
        [1, 2, 3]
    );
    assert_eq!(
        seqs(&dir, &["--since", "2026-11-21T23:59:59.999999Z"]),
        [4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        seqs(&dir, &["--since", "2026-11-21T09:30:00.25Z"]),
        [3, 4, 5, 6, 7, 8, 9],
        "compared as times, not as text"
    );
    assert!(seqs(&dir, &["--since", "2026-11-25"]).is_empty());
    assert!(
        seqs(&dir, &["--since", "2026-11-23", "--until", "2026-11-22"]).is_empty(),
        "an empty window matches nothing"
    );

    // --limit: the first N matches in log order.
    assert_eq!(seqs(&dir, &["--limit", "2"]), [1, 2]);
    assert_eq!(seqs(&dir, &["--op", "SignIn", "--limit", "2"]), [1, 4]);
    assert_eq!(seqs(&dir, &["--limit", "100"]).len(), 9);
    assert!(seqs(&dir, &["--limit", "0"]).is_empty());
}

#[test]
fn search_filters_combined() {
    let dir = standard_log("combined");
    assert_eq!(
        seqs(&dir, &["--op", "SignIn", "--tenant", "t-contoso"]),
        [1, 9]
    );
    assert_eq!(
        seqs(
            &dir,
            &[
                "--op",
                "SignIn",
                "--user",
                "BOB@contoso.example",
                "--since",
                "2026-11-23"
            ]
        ),
        [9]
    );
    assert_eq!(
        seqs(
            &dir,
            &[
                "--tenant",
                "t-contoso",
                "--op",
                "KeyRevoked",
                "--op",
                "Send",
                "--until",
                "2026-11-22T12:00:00Z"
            ]
        ),
        [5]
    );
    assert_eq!(
        seqs(
            &dir,
            &[
                "--since",
                "2026-11-21",
                "--until",
                "2026-11-23",
                "--tenant",
                "t-contoso"
            ]
        ),
        [3, 5, 6]
    );
    assert_eq!(
        seqs(
            &dir,
            &[
                "--user",
                "alice@contoso.example",
                "--user",
                "mallory@fabrikam.example",
                "--op",
                "SignIn",
                "--op",
                "MailItemsAccessed",
                "--since",
                "2026-11-21"
            ]
        ),
        [3, 4]
    );
    assert!(seqs(&dir, &["--op", "Alert", "--user", "alice@contoso.example"]).is_empty());
}

#[test]
fn search_json_prints_the_stored_records() {
    let dir = standard_log("json");
    let run = audit("search", &dir, &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    // Byte for byte what the log holds, seq and prev included.
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), stored_lines(&dir));
    let records = run.json_lines();
    for (index, (record, event)) in records.iter().zip(events()).enumerate() {
        assert_eq!(record["seq"], json!(index + 1));
        assert!(record["prev"].is_string());
        for (name, value) in event.as_object().unwrap() {
            assert_eq!(&record[name], value, "record {}: {name}", index + 1);
        }
        assert_eq!(record.len(), event.as_object().unwrap().len() + 2);
    }
    // Filtered output is the same lines, filtered.
    let filtered = audit("search", &dir, &["--json", "--op", "Send"]);
    assert_eq!(
        filtered.stdout.lines().collect::<Vec<_>>(),
        [stored_lines(&dir)[4].as_str()]
    );
}

#[test]
fn search_table() {
    let dir = standard_log("table");
    let run = audit("search", &dir, &["--op", "SignIn", "--op", "Alert"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 4 + 1, "{}", run.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "seq",
            "CreationTime",
            "Operation",
            "OrganizationId",
            "UserId",
            "AppId",
            "ClientIPAddress"
        ]
    );
    assert_eq!(lines[5], "4 records");
    let cells = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(lines[1]),
        [
            "1",
            "2026-11-20T08:00:00Z",
            "SignIn",
            "t-contoso",
            "alice@contoso.example",
            "app-mail",
            "203.0.113.5"
        ]
    );
    assert_eq!(
        cells(lines[2]),
        [
            "4",
            "2026-11-21T23:59:59.999999Z",
            "SignIn",
            "t-fabrikam",
            "mallory@fabrikam.example",
            "-",
            "198.51.100.66"
        ]
    );
    assert_eq!(
        cells(lines[3]),
        ["7", "2026-11-23T00:00:00Z", "Alert", "-", "-", "-", "-"]
    );
    assert_eq!(cells(lines[4])[0], "9");
    // Aligned: each column starts at the same offset on every line.
    let offsets = |line: &str| -> Vec<usize> {
        let mut offsets = Vec::new();
        let mut previous = ' ';
        for (i, c) in line.char_indices() {
            if c != ' ' && previous == ' ' {
                offsets.push(i);
            }
            previous = c;
        }
        offsets
    };
    for line in &lines[1..5] {
        assert_eq!(offsets(line), offsets(lines[0]), "{}", run.stdout);
        assert!(!line.ends_with(' '));
    }
}

#[test]
fn search_without_matches_exits_zero() {
    let dir = standard_log("nomatch");
    let run = audit("search", &dir, &["--user", "nobody@example"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().last(), Some("0 records"));
    assert_eq!(run.stdout.lines().count(), 2, "header and count: {run:?}");
    let run = audit("search", &dir, &["--user", "nobody@example", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "");
}

#[test]
fn invalid_times_are_usage_errors() {
    let dir = standard_log("badtime");
    for bad in [
        "yesterday",
        "2026-13-01",
        "2026-02-30",
        "2026-11-22 10:00:00Z",
        "2026-11-22T10:00:00",
        "2026-11-22T10:00:00+01:00",
        "1700000000",
        "",
    ] {
        for flag in ["--since", "--until"] {
            for (sub, extra) in [("search", None), ("export", Some("jsonl"))] {
                let mut args = vec![flag, bad];
                if let Some(format) = extra {
                    args.extend(["--format", format]);
                }
                let run = audit(sub, &dir, &args);
                assert_eq!(run.code, 2, "{sub} {flag} {bad:?}: {run:?}");
                assert!(run.stdout.is_empty(), "{run:?}");
                assert!(
                    run.stderr.contains(flag) && run.stderr.contains("RFC 3339"),
                    "{run:?}"
                );
            }
        }
    }
}

#[test]
fn usage_errors() {
    let dir = standard_log("usage");
    for args in [
        vec!["search", "--limit", "-1"],
        vec!["search", "--limit", "many"],
        vec!["export"],
        vec!["export", "--format", "csv"],
    ] {
        let mut all = vec!["audit"];
        all.extend(&args);
        all.extend(["--data-dir", dir.s()]);
        let run = keyscope(&all, None);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    let empty = TempDir::new("nolog");
    for (sub, args) in [("search", vec![]), ("export", vec!["--format", "ual"])] {
        let run = audit(sub, &empty, &args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("no audit log"), "{run:?}");
    }
}

#[test]
fn a_tampered_log_does_not_verify() {
    let dir = standard_log("tampered");
    let segments = dir.path().join("audit").join("segments");
    let file = fs::read_dir(&segments)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("mallory@fabrikam.example"));
    fs::write(
        &file,
        text.replace("mallory@fabrikam.example", "nobody@fabrikam.example"),
    )
    .unwrap();
    for args in [
        vec!["search"],
        vec!["search", "--json", "--op", "Send"],
        vec!["export", "--format", "jsonl"],
        vec!["export", "--format", "ual"],
    ] {
        let mut all = vec!["audit"];
        all.extend(&args);
        all.extend(["--data-dir", dir.s()]);
        let run = keyscope(&all, None);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("the audit log does not verify"),
            "{run:?}"
        );
        assert!(!run.stdout.contains("nobody"), "{run:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// export
// ---------------------------------------------------------------------------------------------

#[test]
fn export_jsonl_writes_every_record_as_stored() {
    let dir = standard_log("jsonl");
    let run = audit("export", &dir, &["--format", "jsonl"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), events().len());
    assert_eq!(lines, stored_lines(&dir));
    for (index, record) in run.json_lines().iter().enumerate() {
        assert_eq!(record["seq"], json!(index + 1));
        assert_eq!(record["Operation"], events()[index]["Operation"]);
    }
    // The same records as search --json.
    assert_eq!(run.stdout, audit("search", &dir, &["--json"]).stdout);

    let window = audit(
        "export",
        &dir,
        &[
            "--format",
            "jsonl",
            "--since",
            "2026-11-21",
            "--until",
            "2026-11-23",
        ],
    );
    assert_eq!(window.code, 0, "{window:?}");
    let seqs: Vec<u64> = window
        .json_lines()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5, 6]);
}

#[test]
fn export_ual_maps_what_has_an_equivalent() {
    let dir = standard_log("ual");
    let run = audit("export", &dir, &["--format", "ual"]);
    assert_eq!(run.code, 0, "{run:?}");
    let records = run.json_lines();
    assert_eq!(
        records.iter().map(ual_seq).collect::<Vec<_>>(),
        [1, 3, 4, 5, 9]
    );
    // TokenIssued, KeyRevoked, Alert and CustomThing are skipped and counted.
    assert!(run.stderr.contains("4 skipped"), "{run:?}");
    for operation in ["TokenIssued", "KeyRevoked", "Alert", "CustomThing"] {
        assert!(run.stderr.contains(operation), "{run:?}");
    }

    let mut ids = BTreeSet::new();
    for record in &records {
        assert!(
            is_ual_time(record["CreationTime"].as_str().unwrap()),
            "{record:?}"
        );
        let id = record["Id"].as_str().unwrap();
        assert!(is_uuid_v5(id), "{id}");
        assert!(ids.insert(id.to_owned()), "unique: {id}");
        assert_eq!(record["UserType"], 0);
        assert_eq!(record["Version"], 1);
        assert_eq!(record["UserKey"], record["UserId"]);
        assert!(
            ["Succeeded", "Failed"].contains(&record["ResultStatus"].as_str().unwrap()),
            "{record:?}"
        );
        assert!(!record.contains_key("prev") && !record.contains_key("seq"));
        for entry in record["OperationProperties"].as_array().unwrap() {
            let entry = entry.as_object().unwrap();
            assert_eq!(entry.len(), 2);
            assert!(entry["Name"].is_string() && entry["Value"].is_string());
        }
    }

    let sign_in = &records[0];
    assert_eq!(sign_in["Operation"], "UserLoggedIn");
    assert_eq!(sign_in["RecordType"], 15);
    assert_eq!(sign_in["Workload"], "AzureActiveDirectory");
    assert_eq!(sign_in["CreationTime"], "2026-11-20T08:00:00");
    assert_eq!(sign_in["OrganizationId"], "t-contoso");
    assert_eq!(sign_in["UserId"], "alice@contoso.example");
    assert_eq!(sign_in["ResultStatus"], "Succeeded");
    assert_eq!(sign_in["ClientIP"], "203.0.113.5");
    assert_eq!(sign_in["ClientIPAddress"], "203.0.113.5");
    assert_eq!(property(sign_in, "TokenId").as_deref(), Some("jti-1"));

    let mail = &records[1];
    assert_eq!(mail["Operation"], "MailItemsAccessed");
    assert_eq!(mail["RecordType"], 50);
    assert_eq!(mail["Workload"], "Exchange");
    assert_eq!(mail["CreationTime"], "2026-11-21T09:30:00");
    assert_eq!(mail["UserId"], "Alice@Contoso.example");
    assert_eq!(mail["ClientIP"], "203.0.113.5");
    let source = &events()[2];
    for field in [
        "Folders",
        "OperationCount",
        "MailboxOwnerUPN",
        "ClientIPAddress",
        "ClientInfoString",
        "AppId",
        "ClientAppId",
        "SessionId",
    ] {
        assert_eq!(mail[field], source[field], "{field}");
    }
    assert_eq!(
        mail["OperationProperties"][0],
        json!({"Name": "MailAccessType", "Value": "Bind"})
    );
    assert!(!mail.contains_key("MailAccessType"));
    assert_eq!(property(mail, "TokenId").as_deref(), Some("jti-1"));
    assert_eq!(property(mail, "KeyId").as_deref(), Some("k1"));
    assert_eq!(
        property(mail, "Issuer").as_deref(),
        Some("https://ks.example/t/contoso")
    );
    assert_eq!(property(mail, "seq").as_deref(), Some("3"));

    let failed = &records[2];
    assert_eq!(failed["Operation"], "UserLoginFailed");
    assert_eq!(failed["RecordType"], 15);
    assert_eq!(failed["ResultStatus"], "Failed");
    assert_eq!(
        failed["CreationTime"], "2026-11-21T23:59:59",
        "cut, not rounded"
    );
    assert_eq!(property(failed, "Reason").as_deref(), Some("bad_signature"));

    let send = &records[3];
    assert_eq!(send["Operation"], "Send");
    assert_eq!(send["RecordType"], 2);
    assert_eq!(send["Workload"], "Exchange");
    assert_eq!(send["CreationTime"], "2026-11-22T00:00:00");
    assert_eq!(send["SessionId"], "sess-5");
    assert_eq!(send["MailboxOwnerUPN"], "bob@contoso.example");

    let implicit = &records[4];
    assert_eq!(
        implicit["Operation"], "UserLoggedIn",
        "no ResultStatus: success"
    );
    assert_eq!(implicit["ResultStatus"], "Succeeded");
    assert!(!implicit.contains_key("ClientIP"));
}

#[test]
fn ual_ids_are_stable_and_per_log() {
    let dir = standard_log("ids");
    let first = audit("export", &dir, &["--format", "ual"]);
    let second = audit("export", &dir, &["--format", "ual"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.stdout, second.stdout, "deterministic");

    // Appending does not change the Ids of earlier records.
    append(
        &dir,
        &[json!({"Operation": "Send", "CreationTime": "2026-11-25T00:00:00Z"})],
    );
    let third = audit("export", &dir, &["--format", "ual"]);
    assert!(third.stdout.starts_with(&first.stdout), "{third:?}");
    assert_eq!(third.stdout.lines().count(), 6);

    // Another log (another audit key) gives other Ids to the same records.
    let other = standard_log("ids-other");
    let elsewhere = audit("export", &other, &["--format", "ual"]);
    let ids = |run: &Run| -> BTreeSet<String> {
        run.json_lines()
            .iter()
            .map(|r| r["Id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(ids(&first).is_disjoint(&ids(&elsewhere)));
}

#[test]
fn export_ual_window() {
    let dir = standard_log("ualwindow");
    let run = audit(
        "export",
        &dir,
        &["--format", "ual", "--since", "2026-11-22"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let records = run.json_lines();
    assert_eq!(records.iter().map(ual_seq).collect::<Vec<_>>(), [5, 9]);
    assert!(run.stderr.contains("3 skipped"), "{run:?}");

    let run = audit(
        "export",
        &dir,
        &["--format", "ual", "--until", "2026-11-20T08:00:00Z"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("0 skipped"), "{run:?}");
}
