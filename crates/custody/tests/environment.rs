#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `KEYSCOPE_MASTER_KEY` wins over the file. Setting a variable in a running test process is
//! `unsafe`, so the test runs itself again in a child process with the variable set.

use std::path::Path;
use std::process::Command;

use keyscope_custody::{
    CustodyError, KeySpec, KeyStore, MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKey, MasterKeyFormat,
    MasterKeySource, SealedKeyStore,
};
use keyscope_jose::{Algorithm, b64};

const KEY: [u8; 32] = [0x17; 32];
const CHILD_DIR: &str = "KEYSCOPE_CUSTODY_TEST_DIR";

/// Runs `test` in a child process of this test binary with `vars` set.
fn run_child(test: &str, vars: &[(&str, &str)]) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{test} failed in the child:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{test} did not run:\n{stdout}");
}

fn child_dir() -> Option<String> {
    std::env::var(CHILD_DIR).ok()
}

#[test]
fn child_environment_wins_over_the_file() {
    let Some(dir) = child_dir() else { return };
    let dir = Path::new(&dir);
    let (key, source) = MasterKey::load_or_create(dir).unwrap();
    assert_eq!(source, MasterKeySource::Environment);
    // The file was neither read nor created.
    assert!(!dir.join(MASTER_KEY_FILE).exists());
    // The key is the variable's: a blob sealed under KEY opens.
    let spec = KeySpec {
        kid: "k",
        issuer: "https://issuer.example",
        alg: Algorithm::Es256,
    };
    let created = SealedKeyStore::new(MasterKey::from_bytes(KEY))
        .create(&spec)
        .unwrap();
    SealedKeyStore::new(key)
        .open(&spec, &created.reference)
        .unwrap();
}

#[test]
fn environment_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    run_child(
        "child_environment_wins_over_the_file",
        &[
            (MASTER_KEY_ENV, &format!(" {}\n", b64::encode_url(&KEY))),
            (CHILD_DIR, dir.path().to_str().unwrap()),
        ],
    );
}

#[test]
fn child_bad_environment_is_an_error_not_a_fallback() {
    let Some(dir) = child_dir() else { return };
    let err = MasterKey::load_or_create(Path::new(&dir)).unwrap_err();
    assert!(matches!(
        err,
        CustodyError::MasterKeyEnv(MasterKeyFormat::WrongLength(16))
    ));
    assert!(!err.to_string().contains(&b64::encode_url(&[0x17; 16])));
    assert!(!Path::new(&dir).join(MASTER_KEY_FILE).exists());
}

#[test]
fn bad_environment_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    run_child(
        "child_bad_environment_is_an_error_not_a_fallback",
        &[
            (MASTER_KEY_ENV, &b64::encode_url(&[0x17; 16])),
            (CHILD_DIR, dir.path().to_str().unwrap()),
        ],
    );
}

#[test]
fn child_empty_environment_falls_back_to_the_file() {
    let Some(dir) = child_dir() else { return };
    let dir = Path::new(&dir);
    let (_, source) = MasterKey::load_or_create(dir).unwrap();
    assert_eq!(source, MasterKeySource::Created(dir.join(MASTER_KEY_FILE)));
}

#[test]
fn empty_environment_falls_back_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    run_child(
        "child_empty_environment_falls_back_to_the_file",
        &[
            (MASTER_KEY_ENV, ""),
            (CHILD_DIR, dir.path().to_str().unwrap()),
        ],
    );
}
