#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `keyscope bench audit` runs end to end and reports every writer count; the numbers
//! themselves are not asserted (a benchmark reports, a test checks behaviour).

use std::process::Command;

#[test]
fn bench_audit_reports_every_writer_count_and_verification() {
    let dir =
        std::env::temp_dir().join(format!("keyscope-bench-audit-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["bench", "audit", "--seconds", "1", "--json", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let appends = report["appends"].as_array().unwrap();
    let mut seen: Vec<(u64, String)> = appends
        .iter()
        .map(|row| {
            assert!(row["appends_per_second"].as_f64().unwrap() > 0.0);
            (
                row["writers"].as_u64().unwrap(),
                row["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (1, "task"),
            (1, "thread"),
            (8, "task"),
            (8, "thread"),
            (64, "task"),
            (64, "thread")
        ]
        .map(|(n, k)| (n, k.to_owned()))
    );
    assert!(report["verify"]["records"].as_u64().unwrap() > 0);
    // The temporary logs are removed afterwards.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);

    let bad = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["bench", "audit", "--seconds", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
