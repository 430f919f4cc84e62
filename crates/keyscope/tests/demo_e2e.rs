#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `keyscope demo storm-0558` end to end: the real binary runs the whole drill (its own
//! `keyscope up`, admin commands, mail client and attacker) and every row of its summary is
//! asserted.

mod common;

use common::*;

/// The summary, in order: (id, expected outcome).
const ROWS: [(&str, &str); 16] = [
    ("control-genuine-users", "signed in, mail read"),
    (
        "consumer-key-forges-enterprise-token",
        "refused key_issuer_mismatch",
    ),
    ("alert-key-issuer-mismatch", "alert within 1 s"),
    ("enterprise-key-forges-token", "refused token_not_issued"),
    ("alert-not-issued", "alert within 1 s"),
    (
        "enterprise-key-crosses-tenants",
        "refused key_issuer_mismatch",
    ),
    ("probe-alg-none", "refused alg_not_allowed"),
    ("probe-embedded-jwk", "refused unsupported_header"),
    ("probe-unknown-kid", "refused unknown_key"),
    ("alert-unknown-key-burst", "alert within 1 s"),
    ("replay-after-revocation-consumer", "refused key_revoked"),
    ("alert-revoked-key", "alert within 1 s"),
    ("replay-after-revocation-enterprise", "refused key_revoked"),
    (
        "report-attacker-reach",
        "0 accepted, 0 mail items; all attempts listed",
    ),
    ("tenants-notified", "notified: consumers, contoso, fabrikam"),
    ("audit-log", "intact, every attempt recorded"),
];

/// Runs the drill with its temporary directory under `tmp`.
fn drill(tmp: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(BIN);
    // None of the developer's KEYSCOPE_* settings (whichever exist) or RUST_LOG.
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("KEYSCOPE_") || n == "RUST_LOG")
        {
            command.env_remove(name);
        }
    }
    command
        .env("TMPDIR", &tmp.0)
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .args(["demo", "storm-0558"])
        .args(args)
        .stdin(Stdio::null());
    let started = Instant::now();
    let output = command.output().unwrap();
    println!("demo storm-0558 {args:?}: {:?}", started.elapsed());
    Run {
        code: output.status.code().expect("killed by a signal"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every row is there, in order, with its expected outcome observed.
fn assert_summary(document: &Value) {
    let summary = document["summary"].as_array().unwrap();
    let ids: Vec<&str> = summary.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ROWS.map(|(id, _)| id), "{document:#}");
    for (row, (id, expected)) in summary.iter().zip(ROWS) {
        assert_eq!(row["expected"], expected, "{id}: {row}");
        assert_eq!(row["observed"], row["expected"], "{id}: {row}");
        assert_eq!(row["held"], true, "{id}: {row}");
        assert!(!row["attack"].as_str().unwrap().is_empty(), "{id}");
    }
    // The particulars behind the rows.
    let detail = |id: &str| {
        summary
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["detail"].as_str())
            .unwrap()
            .to_owned()
    };
    assert!(detail("alert-key-issuer-mismatch").contains("ms after the request"));
    assert!(
        detail("audit-log").contains("17 of 17 attacker requests recorded"),
        "{}",
        detail("audit-log")
    );
    assert_eq!(document["passed"], true);
}

fn parse(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{run:?}");
    // One JSON document on stdout and nothing else.
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

#[test]
fn storm_0558_json_every_defence_holds_and_the_directory_goes() {
    let tmp = TempDir::new("demo-json");
    let run = drill(&tmp, &["--json"], &[]);
    let document = parse(&run);
    assert_summary(&document);
    assert_eq!(document["drill"], "storm-0558");
    assert!(document["naive"].is_null());
    assert!(document["duration_ms"].as_u64().unwrap() > 0);
    println!("the drill took {} ms", document["duration_ms"]);
    // Eight steps, each with its events; the attacker's first forgery is in step 3.
    let steps = document["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8, "{steps:#?}");
    let step3 = steps[2]["events"].as_array().unwrap();
    assert!(
        step3
            .iter()
            .any(|e| e["actor"] == "keyscope" && e["ok"] == true),
        "{step3:#?}"
    );
    // The story went to stderr, the temporary directory is gone and nothing else was left.
    assert!(run.stderr.contains("Summary"), "{}", run.stderr);
    let data_dir = PathBuf::from(document["data_dir"].as_str().unwrap());
    assert!(data_dir.starts_with(&tmp.0), "{data_dir:?}");
    assert!(!data_dir.exists(), "{data_dir:?} was not removed");
    assert_eq!(fs::read_dir(&tmp.0).unwrap().count(), 0);
}

#[test]
fn storm_0558_naive_shows_the_mailbox_a_2023_validator_would_have_opened() {
    let tmp = TempDir::new("demo-naive");
    let run = drill(&tmp, &["--naive", "--json", "--keep"], &[]);
    let document = parse(&run);
    assert_summary(&document);
    let naive = &document["naive"];
    assert_eq!(naive["accepted"], true, "{naive:#}");
    assert_eq!(naive["key_realm"], "consumers");
    assert!(
        naive["key_issuer"]
            .as_str()
            .unwrap()
            .ends_with("/consumers"),
        "{naive}"
    );
    assert!(
        naive["token_iss"].as_str().unwrap().ends_with("/t/contoso"),
        "{naive}"
    );
    assert_eq!(naive["tid"], "contoso");
    let opened = &naive["would_open"];
    assert!(
        opened["mailbox"].as_str().unwrap().starts_with("alice@"),
        "{opened}"
    );
    assert_eq!(opened["total"], 3);
    let subjects: Vec<&str> = opened["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&"Fabrikam term sheet (confidential)"),
        "{subjects:?}"
    );
    // With --keep the directory stays, private, with the evidence in it.
    let data_dir = PathBuf::from(document["data_dir"].as_str().unwrap());
    assert_eq!(document["kept"], true);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&data_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let alerts = fs::read_to_string(data_dir.join("alerts.jsonl")).unwrap();
    assert!(alerts.contains("ks-token-key-issuer-mismatch"));
    audit_verify(&data_dir.join("data"));
}

#[test]
fn storm_0558_tells_the_story_in_plain_text_ignoring_the_callers_settings() {
    let tmp = TempDir::new("demo-text");
    // Settings of a real deployment in the caller's environment must not reach the drill.
    let run = drill(
        &tmp,
        &[],
        &[
            ("KEYSCOPE_MASTER_KEY", "not-a-master-key"),
            ("KEYSCOPE_DATA_DIR", "/nonexistent/keyscope"),
            ("KEYSCOPE_RULES", "/nonexistent/rules"),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // Not a terminal: no colour codes.
    assert!(!run.stdout.contains('\u{1b}'), "{}", run.stdout);
    for text in [
        " 1  A fresh Keyscope",
        "refused key_issuer_mismatch (HTTP 401)",
        "Summary",
        "#  ATTACK",
        "Every defence held (16 of 16)",
    ] {
        assert!(run.stdout.contains(text), "{text:?} in {}", run.stdout);
    }
    // The table's columns line up: OBSERVED starts at the same place on every row.
    let table: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.contains("#  ATTACK"))
        .take(ROWS.len() + 1)
        .collect();
    let column = table[0].find("OBSERVED").unwrap();
    for line in &table[1..] {
        assert!(line.ends_with("yes"), "{line}");
        assert!(
            line[..column].ends_with("  "),
            "misaligned: {line:?} (column {column})"
        );
    }
    assert_eq!(fs::read_dir(&tmp.0).unwrap().count(), 0);
}
