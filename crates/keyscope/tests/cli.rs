#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! End-to-end tests of the `keyscope` binary: every test spawns the real program with
//! `std::process::Command` and checks exit codes, stdout JSON and the files it writes.
//!
//! Exit codes: 0 accepted / ok, 1 a negative answer, 2 a usage or input error.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use keyscope_jose::{SigningKey, b64};
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_keyscope");

/// The validation time used by every `token verify` call (never the wall clock).
const NOW: i64 = 1_800_000_000;
const AUDIENCE: &str = "https://mail.keyscope.example";
const ISSUER: &str = "https://ks.example/t/contoso";
const CONSUMERS: &str = "https://ks.example/consumers";

const CORPUS_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/wycheproof/json_web_signature_test.json"
);

/// Members that must never appear in a public key set.
const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "keyscope-cli-test-{}-{}-{label}",
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

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The result of one run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Stdout as exactly one JSON object on one line.
    fn json(&self) -> Map<String, Value> {
        assert_eq!(
            self.stdout.lines().count(),
            1,
            "stdout must be one line of JSON: {self:?}"
        );
        match serde_json::from_str::<Value>(self.stdout.trim()) {
            Ok(Value::Object(map)) => map,
            other => panic!("stdout is not a JSON object ({other:?}): {self:?}"),
        }
    }
}

/// Runs `keyscope ARGS`; `stdin` is piped when given, `/dev/null` otherwise.
fn keyscope<I, A>(args: I, stdin: Option<&[u8]>) -> Run
where
    I: IntoIterator<Item = A>,
    A: AsRef<OsStr>,
{
    let mut command = Command::new(BIN);
    command
        .args(args)
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
        // A separate thread, so a program that stops reading cannot deadlock the test; a
        // broken pipe (the program exited without reading) is not an error here.
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

/// A usage or input error: exit 2, nothing on stdout, an explanation on stderr.
#[track_caller]
fn assert_usage_error(run: &Run, what: &str) {
    assert_eq!(run.code, 2, "{what}: expected exit 2: {run:?}");
    assert!(
        run.stdout.is_empty(),
        "{what}: stdout must be empty: {run:?}"
    );
    assert!(
        !run.stderr.trim().is_empty(),
        "{what}: expected a message on stderr: {run:?}"
    );
}

/// A rejection: exit 1 and exactly `{"valid":false,"reason":REASON,"detail":"…"}`.
#[track_caller]
fn assert_rejected(run: &Run, reason: &str, what: &str) {
    assert_eq!(run.code, 1, "{what}: expected exit 1: {run:?}");
    let out = run.json();
    let mut names: Vec<&str> = out.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["detail", "reason", "valid"], "{what}: {run:?}");
    assert_eq!(out["valid"], json!(false), "{what}: {run:?}");
    assert_eq!(out["reason"], json!(reason), "{what}: {run:?}");
    assert!(
        out["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: detail must be a non-empty string: {run:?}"
    );
}

/// An acceptance: exit 0 and exactly `{"valid":true,"claims":…,"kid":…,"alg":…,"issuer":…}`.
#[track_caller]
fn assert_accepted(run: &Run, claims: &Value, kid: &str, alg: &str, issuer: &str, what: &str) {
    assert_eq!(run.code, 0, "{what}: expected exit 0: {run:?}");
    let out = run.json();
    let mut names: Vec<&str> = out.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["alg", "claims", "issuer", "kid", "valid"],
        "{what}: {run:?}"
    );
    assert_eq!(out["valid"], json!(true), "{what}");
    assert_eq!(&out["claims"], claims, "{what}");
    assert_eq!(out["kid"], json!(kid), "{what}");
    assert_eq!(out["alg"], json!(alg), "{what}");
    assert_eq!(out["issuer"], json!(issuer), "{what}");
}

/// `keyscope key generate`; returns the run.
fn key_generate(dir: &Path, alg: &str, kid: &str, issuer: Option<&str>, as_json: bool) -> Run {
    let mut args = vec![
        "key",
        "generate",
        "--alg",
        alg,
        "--kid",
        kid,
        "--out",
        s(dir),
    ];
    if let Some(issuer) = issuer {
        args.extend(["--issuer", issuer]);
    }
    if as_json {
        args.push("--json");
    }
    keyscope(args, None)
}

/// Generates a key with the CLI and loads its private JWK for signing.
fn generate(dir: &Path, alg: &str, kid: &str, issuer: Option<&str>) -> SigningKey {
    let run = key_generate(dir, alg, kid, issuer, false);
    assert_eq!(run.code, 0, "key generate {alg} {kid}: {run:?}");
    let bytes = fs::read(dir.join(format!("{kid}.private.jwk"))).expect("private JWK written");
    SigningKey::from_private_jwk(&bytes).expect("private JWK loads")
}

/// RFC 9068 access-token claims valid at [`NOW`].
fn claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "sub": "u-5f2c9a71",
        "aud": AUDIENCE,
        "exp": NOW + 570,
        "iat": NOW - 30,
        "nbf": NOW - 30,
        "jti": "01JDZ8M4Q8K2VJ7W3X9T6R5N4P",
        "client_id": "app-outlook-web",
        "tid": "contoso",
        "scope": "mail.read",
    })
}

fn sign(key: &SigningKey, typ: &str, claims: &Value) -> String {
    let mut header = Map::new();
    header.insert("typ".into(), typ.into());
    key.sign_compact(header, claims.to_string().as_bytes())
        .expect("sign")
}

/// `keyscope token verify ARGS`.
fn verify(args: &[&str], stdin: Option<&[u8]>) -> Run {
    keyscope(["token", "verify"].iter().chain(args), stdin)
}

/// Every file under `root` with its contents (directories listed with `None`).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                out.insert(path.clone(), None);
                pending.push(path);
            } else {
                out.insert(path.clone(), Some(fs::read(&path).expect("read file")));
            }
        }
    }
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("read JSON file")).expect("file is JSON")
}

fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

#[track_caller]
fn assert_public_only(jwks: &Value) {
    for key in jwks["keys"].as_array().expect("keys array") {
        let key = key.as_object().expect("key is an object");
        for member in PRIVATE_MEMBERS {
            assert!(
                !key.contains_key(member),
                "jwks.json leaks private member {member:?}: {key:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. key generate
// ---------------------------------------------------------------------------------------------

#[test]
fn key_generate_writes_private_key_and_public_set() {
    let tmp = TempDir::new("keygen");
    let dir = tmp.join("keys");

    let run = key_generate(&dir, "ES256", "k-es", Some(ISSUER), true);
    assert_eq!(run.code, 0, "{run:?}");
    let out = run.json();
    assert_eq!(out["kid"], json!("k-es"));
    assert_eq!(out["alg"], json!("ES256"));
    let private_path = dir.join("k-es.private.jwk");
    let jwks_path = dir.join("jwks.json");
    assert_eq!(out["private_jwk"], json!(s(&private_path)));
    assert_eq!(out["jwks"], json!(s(&jwks_path)));

    let mode = fs::metadata(&private_path)
        .expect("private JWK exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "private key mode is {mode:o}");
    let private: Value = read_json(&private_path);
    assert!(private.get("d").is_some(), "the private JWK holds d");
    SigningKey::from_private_jwk(&fs::read(&private_path).unwrap()).expect("private JWK loads");

    let jwks = read_json(&jwks_path);
    assert_eq!(jwks_kids(&jwks), ["k-es"]);
    assert_eq!(jwks["keys"][0]["issuer"], json!(ISSUER));
    assert_public_only(&jwks);

    // More keys in the same directory are appended to the same set.
    for (alg, kid) in [("EdDSA", "k-ed"), ("RS256", "k-rs")] {
        let run = key_generate(&dir, alg, kid, None, true);
        assert_eq!(run.code, 0, "{alg}: {run:?}");
        let out = run.json();
        assert_eq!(out["kid"], json!(kid));
        assert_eq!(out["alg"], json!(alg));
        assert_eq!(
            out["private_jwk"],
            json!(s(&dir.join(format!("{kid}.private.jwk"))))
        );
        assert_eq!(out["jwks"], json!(s(&jwks_path)));
        let path = dir.join(format!("{kid}.private.jwk"));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{kid}: mode {mode:o}");
        SigningKey::from_private_jwk(&fs::read(&path).unwrap()).expect("private JWK loads");
    }
    let jwks = read_json(&jwks_path);
    assert_eq!(jwks_kids(&jwks), ["k-es", "k-ed", "k-rs"]);
    assert_public_only(&jwks);
    // The raw text too: no private member name appears anywhere as a JSON key.
    let text = fs::read_to_string(&jwks_path).unwrap();
    for member in PRIVATE_MEMBERS {
        assert!(
            !text.contains(&format!("\"{member}\":")) && !text.contains(&format!("\"{member}\" :")),
            "jwks.json text contains {member:?}: {text}"
        );
    }

    // The human output works too.
    let run = key_generate(&dir, "ES256", "k-human", None, false);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("k-human"), "{run:?}");
}

#[test]
fn key_generate_refuses_an_existing_kid_without_overwriting() {
    let tmp = TempDir::new("keygen-dup");
    let dir = tmp.join("keys");
    generate(&dir, "ES256", "k1", Some(ISSUER));
    let before = snapshot(tmp.path());

    for alg in ["ES256", "EdDSA", "RS256"] {
        let run = key_generate(&dir, alg, "k1", Some(ISSUER), true);
        assert_usage_error(&run, &format!("same kid again ({alg})"));
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "a refused kid must leave the private key and jwks.json untouched"
        );
    }
}

#[test]
fn key_generate_refuses_path_like_kids() {
    let tmp = TempDir::new("keygen-path");
    // Two levels deep, so that even `../../evil` would land inside the snapshot.
    let dir = tmp.join("nest").join("keys");
    generate(&dir, "ES256", "k0", None);
    let before = snapshot(tmp.path());

    for kid in ["../evil", "a/b", "../../evil", ".hidden", "a b", ""] {
        let run = key_generate(&dir, "ES256", kid, None, false);
        assert_usage_error(&run, &format!("kid {kid:?}"));
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "kid {kid:?}: nothing may be written"
        );
    }
    assert!(!tmp.join("evil.private.jwk").exists());
    assert!(!tmp.join("nest").join("evil.private.jwk").exists());
    assert!(!dir.join("a").exists());

    // A fresh directory that does not exist yet: still nothing written outside it.
    let fresh = tmp.join("fresh");
    for kid in ["../evil", "a/b"] {
        let run = key_generate(&fresh, "EdDSA", kid, None, false);
        assert_usage_error(&run, &format!("kid {kid:?} into a new dir"));
        let mut after = snapshot(tmp.path());
        after.retain(|path, _| !path.starts_with(&fresh));
        assert_eq!(
            after, before,
            "kid {kid:?}: nothing written outside the new dir"
        );
        assert!(!tmp.join("evil.private.jwk").exists());
        assert!(!fresh.join("a").exists());
    }
}

// ---------------------------------------------------------------------------------------------
// 2. token verify
// ---------------------------------------------------------------------------------------------

#[test]
fn token_verify_accepts_each_algorithm() {
    let tmp = TempDir::new("verify-ok");
    let dir = tmp.path();
    let jwks = dir.join("jwks.json");
    let at = NOW.to_string();
    for (alg, kid) in [("ES256", "k-es"), ("EdDSA", "k-ed"), ("RS256", "k-rs")] {
        let key = generate(dir, alg, kid, Some(ISSUER));
        let claims = claims(ISSUER);
        let token = sign(&key, "at+jwt", &claims);
        let run = verify(
            &[
                "--issuer",
                ISSUER,
                "--audience",
                AUDIENCE,
                "--jwks",
                s(&jwks),
                "--at",
                &at,
                &token,
            ],
            None,
        );
        assert_accepted(&run, &claims, kid, alg, ISSUER, alg);
    }
}

#[test]
fn token_verify_rejections() {
    let tmp = TempDir::new("verify-reject");
    let dir = tmp.join("keys");
    let jwks_path = dir.join("jwks.json");
    let jwks = s(&jwks_path);
    let key = generate(&dir, "ES256", "k1", Some(ISSUER));
    let claims = claims(ISSUER);
    let token = sign(&key, "at+jwt", &claims);
    let at = NOW.to_string();

    // The baseline is accepted, so each rejection below is caused by its one change.
    let base = ["--issuer", ISSUER, "--audience", AUDIENCE, "--jwks", jwks];
    let with = |extra: &[&str], token: &str| -> Run {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        if !extra.contains(&"--at") {
            args.extend(["--at", &at]);
        }
        args.push(token);
        verify(&args, None)
    };
    assert_accepted(
        &with(&[], &token),
        &claims,
        "k1",
        "ES256",
        ISSUER,
        "baseline",
    );

    let late = (NOW + 10_000).to_string();
    assert_rejected(&with(&["--at", &late], &token), "expired", "--at after exp");

    let run = verify(
        &[
            "--issuer",
            ISSUER,
            "--audience",
            "https://other.example",
            "--jwks",
            jwks,
            "--at",
            &at,
            &token,
        ],
        None,
    );
    assert_rejected(&run, "audience_mismatch", "other audience");

    let run = verify(
        &[
            "--issuer",
            "https://other.example",
            "--audience",
            AUDIENCE,
            "--jwks",
            jwks,
            "--at",
            &at,
            &token,
        ],
        None,
    );
    assert_rejected(&run, "issuer_mismatch", "other issuer");

    assert_rejected(
        &with(&["--revoked-kid", "k1"], &token),
        "key_revoked",
        "--revoked-kid",
    );
    assert_rejected(
        &with(&["--token-type", "jwt"], &token),
        "token_type_mismatch",
        "--token-type jwt on an at+jwt token",
    );
    assert_rejected(
        &with(&["--tenant", "fabrikam"], &token),
        "tenant_mismatch",
        "--tenant fabrikam",
    );
    // The allowed tenant is accepted.
    assert_accepted(
        &with(&["--tenant", "contoso"], &token),
        &claims,
        "k1",
        "ES256",
        ISSUER,
        "--tenant contoso",
    );

    // alg none, with the real kid.
    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}).to_string();
    let none_token = format!(
        "{}.{}.",
        b64::encode_url(none_header.as_bytes()),
        b64::encode_url(claims.to_string().as_bytes())
    );
    assert_rejected(&with(&[], &none_token), "alg_not_allowed", "alg none");

    assert_rejected(&with(&[], "garbage"), "malformed", "garbage");
    assert_rejected(&with(&[], "a.b.c"), "malformed", "a.b.c");

    // Too large, through stdin.
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["--at", &at, "-"]);
    let huge = "a".repeat(20_000);
    assert_rejected(
        &verify(&args, Some(huge.as_bytes())),
        "too_large",
        "20000 bytes on stdin",
    );

    // A key that is not in the set.
    let other_dir = tmp.join("other");
    let stranger = generate(&other_dir, "ES256", "stranger", Some(ISSUER));
    let stranger_token = sign(&stranger, "at+jwt", &claims);
    assert_rejected(&with(&[], &stranger_token), "unknown_key", "unknown kid");

    // The same kid, a different key: the signature does not verify.
    let impostor = generate(&other_dir, "ES256", "k1", Some(ISSUER));
    let impostor_token = sign(&impostor, "at+jwt", &claims);
    assert_rejected(
        &with(&[], &impostor_token),
        "bad_signature",
        "same kid, other key",
    );
}

#[test]
fn token_verify_reads_stdin() {
    let tmp = TempDir::new("verify-stdin");
    let dir = tmp.path();
    let jwks_path = dir.join("jwks.json");
    let key = generate(dir, "EdDSA", "k1", Some(ISSUER));
    let claims = claims(ISSUER);
    let token = sign(&key, "at+jwt", &claims);
    let at = NOW.to_string();
    let args = [
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
        "--jwks",
        s(&jwks_path),
        "--at",
        &at,
        "-",
    ];

    let padded = format!("\n  \t{token} \r\n\n");
    assert_accepted(
        &verify(&args, Some(padded.as_bytes())),
        &claims,
        "k1",
        "EdDSA",
        ISSUER,
        "token on stdin with surrounding whitespace",
    );
    assert_accepted(
        &verify(&args, Some(token.as_bytes())),
        &claims,
        "k1",
        "EdDSA",
        ISSUER,
        "token on stdin",
    );

    let mut bad = token.clone().into_bytes();
    bad.extend_from_slice(&[0xff, 0xfe, 0x80]);
    assert_rejected(
        &verify(&args, Some(&bad)),
        "malformed",
        "non-UTF-8 bytes on stdin",
    );
    assert_rejected(
        &verify(&args, Some(&[0xc3, 0x28, b'\n'])),
        "malformed",
        "invalid UTF-8 on stdin",
    );
}

#[test]
fn token_verify_trusts_key_issuers_when_no_issuer_is_given() {
    let tmp = TempDir::new("verify-noiss");
    let bound = tmp.join("bound");
    let key = generate(&bound, "ES256", "k1", Some(ISSUER));
    let claims = claims(ISSUER);
    let token = sign(&key, "at+jwt", &claims);
    let at = NOW.to_string();

    let jwks = bound.join("jwks.json");
    let run = verify(
        &[
            "--audience",
            AUDIENCE,
            "--jwks",
            s(&jwks),
            "--at",
            &at,
            &token,
        ],
        None,
    );
    assert_accepted(&run, &claims, "k1", "ES256", ISSUER, "issuer from the key");

    // A token from another issuer is still refused.
    let other = sign(&key, "at+jwt", &self::claims("https://other.example"));
    let run = verify(
        &[
            "--audience",
            AUDIENCE,
            "--jwks",
            s(&jwks),
            "--at",
            &at,
            &other,
        ],
        None,
    );
    assert_rejected(&run, "issuer_mismatch", "issuer not named by any key");

    // A key without an issuer member: the operator must name the issuer.
    let unbound = tmp.join("unbound");
    let key = generate(&unbound, "ES256", "k2", None);
    let token = sign(&key, "at+jwt", &claims);
    let jwks = unbound.join("jwks.json");
    let run = verify(
        &[
            "--audience",
            AUDIENCE,
            "--jwks",
            s(&jwks),
            "--at",
            &at,
            &token,
        ],
        None,
    );
    assert_usage_error(&run, "no --issuer and a key without issuer");
    assert!(
        run.stderr.contains("issuer"),
        "the message names the problem: {run:?}"
    );
    // Naming it makes the same token acceptable.
    let run = verify(
        &[
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--jwks",
            s(&jwks),
            "--at",
            &at,
            &token,
        ],
        None,
    );
    assert_accepted(&run, &claims, "k2", "ES256", ISSUER, "explicit issuer");
}

/// Storm-0558: a consumer key signs a token for an enterprise tenant. The signature is
/// valid and both issuers are trusted, but the key belongs to the other issuer.
#[test]
fn token_verify_storm_0558_key_issuer_binding() {
    let tmp = TempDir::new("storm");
    let dir = tmp.path();
    let consumer = generate(dir, "ES256", "consumer-1", Some(CONSUMERS));
    let contoso = generate(dir, "ES256", "contoso-1", Some(ISSUER));
    let jwks = dir.join("jwks.json");
    assert_eq!(
        jwks_kids(&read_json(&jwks)),
        ["consumer-1", "contoso-1"],
        "both keys in one set"
    );
    let claims = claims(ISSUER);
    let at = NOW.to_string();
    let args = |token: &str| -> Run {
        verify(
            &[
                "--issuer",
                CONSUMERS,
                "--issuer",
                ISSUER,
                "--jwks",
                s(&jwks),
                "--at",
                &at,
                token,
            ],
            None,
        )
    };

    let forged = sign(&consumer, "at+jwt", &claims);
    assert_rejected(
        &args(&forged),
        "key_issuer_mismatch",
        "contoso token signed by the consumer key",
    );

    let genuine = sign(&contoso, "at+jwt", &claims);
    assert_accepted(
        &args(&genuine),
        &claims,
        "contoso-1",
        "ES256",
        ISSUER,
        "contoso token signed by the contoso key",
    );

    // The consumer key still works for its own issuer.
    let consumer_claims = self::claims(CONSUMERS);
    let own = sign(&consumer, "at+jwt", &consumer_claims);
    assert_accepted(
        &args(&own),
        &consumer_claims,
        "consumer-1",
        "ES256",
        CONSUMERS,
        "consumer token signed by the consumer key",
    );
}

#[test]
fn token_verify_operator_input_errors() {
    let tmp = TempDir::new("verify-usage");
    let dir = tmp.join("keys");
    let key = generate(&dir, "ES256", "k1", Some(ISSUER));
    let token = sign(&key, "at+jwt", &claims(ISSUER));
    let good_jwks = dir.join("jwks.json");
    let at = NOW.to_string();
    let run_with = |jwks: &Path, extra: &[&str]| -> Run {
        let mut args = vec!["--issuer", ISSUER, "--jwks", s(jwks), "--at", &at];
        args.extend_from_slice(extra);
        args.push(&token);
        verify(&args, None)
    };
    // The baseline works.
    assert_eq!(run_with(&good_jwks, &[]).code, 0);

    assert_usage_error(
        &run_with(&tmp.join("missing.json"), &[]),
        "missing --jwks file",
    );

    let not_json = tmp.join("not-json.json");
    fs::write(&not_json, "this is not JSON {").unwrap();
    assert_usage_error(&run_with(&not_json, &[]), "JWKS that is not JSON");

    let public = read_json(&good_jwks)["keys"][0].clone();
    let duplicate = tmp.join("duplicate.json");
    fs::write(
        &duplicate,
        json!({"keys": [public.clone(), public.clone()]}).to_string(),
    )
    .unwrap();
    assert_usage_error(&run_with(&duplicate, &[]), "JWKS with a duplicate kid");

    let private_jwk = read_json(&dir.join("k1.private.jwk"));
    let mut leaky = public.clone();
    leaky["d"] = private_jwk["d"].clone();
    let with_private = tmp.join("with-private.json");
    fs::write(&with_private, json!({"keys": [leaky]}).to_string()).unwrap();
    assert_usage_error(
        &run_with(&with_private, &[]),
        "JWKS with a private member d",
    );
    // The private JWK file itself (a single JWK holding d) is refused as a key set too.
    assert_usage_error(
        &run_with(&dir.join("k1.private.jwk"), &[]),
        "private JWK passed as --jwks",
    );

    let empty = tmp.join("empty.json");
    fs::write(&empty, r#"{"keys":[]}"#).unwrap();
    assert_usage_error(&run_with(&empty, &[]), "empty key set");

    assert_usage_error(&run_with(&good_jwks, &["--leeway", "601"]), "--leeway 601");
    assert_eq!(
        run_with(&good_jwks, &["--leeway", "600"]).code,
        0,
        "--leeway 600 is allowed"
    );
    assert_usage_error(
        &run_with(&good_jwks, &["--token-type", "bogus"]),
        "--token-type bogus",
    );
    assert_usage_error(&run_with(&good_jwks, &["--bogus-flag"]), "unknown flag");

    let run = verify(
        &["--issuer", ISSUER, "--jwks", s(&good_jwks), "--at", &at],
        None,
    );
    assert_usage_error(&run, "missing TOKEN argument");

    let run = verify(&["--issuer", ISSUER, &token], None);
    assert_usage_error(&run, "missing --jwks");
}

// ---------------------------------------------------------------------------------------------
// 3. token inspect
// ---------------------------------------------------------------------------------------------

#[test]
fn token_inspect() {
    let tmp = TempDir::new("inspect");
    let key = generate(tmp.path(), "ES256", "k1", Some(ISSUER));
    let claims = claims(ISSUER);
    let token = sign(&key, "at+jwt", &claims);

    let run = keyscope(["token", "inspect", &token, "--json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    let out = run.json();
    assert_eq!(out["verified"], json!(false));
    assert_eq!(out["claims"], claims);
    assert_eq!(out["header"]["alg"], json!("ES256"));
    assert_eq!(out["header"]["kid"], json!("k1"));
    assert_eq!(out["header"]["typ"], json!("at+jwt"));

    // Inspect does not check the signature: a token signed by nobody trusted still decodes.
    let run = keyscope(["token", "inspect", "-", "--json"], Some(token.as_bytes()));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["claims"], claims);

    let run = keyscope(["token", "inspect", &token], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("UNVERIFIED"), "{run:?}");
    assert!(run.stdout.contains("contoso"), "{run:?}");

    for garbage in ["garbage", "a.b.c", ""] {
        let run = keyscope(["token", "inspect", garbage], None);
        assert_eq!(run.code, 1, "inspect {garbage:?}: {run:?}");
        let run = keyscope(["token", "inspect", garbage, "--json"], None);
        assert_eq!(run.code, 1, "inspect --json {garbage:?}: {run:?}");
        assert_eq!(run.json()["valid"], json!(false), "{run:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. jws verify against Wycheproof
// ---------------------------------------------------------------------------------------------

/// Vectors where Keyscope disagrees with the label on purpose (see
/// `crates/trust/tests/wycheproof.rs`): a key accepts exactly its own alg, and ES512/P-521 is
/// not supported. Each must be refused with `alg_not_allowed`.
const DEVIATIONS: [u64; 4] = [346, 347, 350, 351];

#[test]
fn jws_verify_wycheproof_signature_vectors() {
    let text = match fs::read_to_string(CORPUS_FILE) {
        Ok(text) => text,
        Err(error) => {
            if std::env::var("KEYSCOPE_SKIP_CORPUS").as_deref() == Ok("1") {
                println!(
                    "skipping: {CORPUS_FILE} is unavailable ({error}) and KEYSCOPE_SKIP_CORPUS=1"
                );
                return;
            }
            panic!(
                "corpus file {CORPUS_FILE} is unavailable ({error}); put the shared corpus \
                 beside the clone (../shared/corpus) or set KEYSCOPE_SKIP_CORPUS=1 to skip"
            );
        }
    };
    let file: Value = serde_json::from_str(&text).expect("the vector file is JSON");
    let groups = file["testGroups"].as_array().expect("testGroups");
    let tmp = TempDir::new("wycheproof");

    // For symmetric groups (no public key): any ES256 key from the corpus.
    let es256_key = groups
        .iter()
        .filter_map(|g| g.get("public"))
        .find(|k| k["alg"] == json!("ES256") && k["kty"] == json!("EC"))
        .expect("the corpus holds an ES256 public key");
    let es256_path = tmp.join("es256-for-hmac.jwk");
    fs::write(&es256_path, es256_key.to_string()).unwrap();

    let mut ran = 0usize;
    let mut asymmetric = 0usize;
    let mut symmetric = 0usize;
    let mut accepted = 0usize;
    let mut deviations_seen = 0usize;
    let mut text_payloads = 0usize;
    let mut binary_payloads = 0usize;
    let mut failures: Vec<String> = Vec::new();

    for (index, group) in groups.iter().enumerate() {
        let key_path = match group.get("public") {
            Some(public) => {
                let path = tmp.join(&format!("group-{index}.jwk"));
                fs::write(&path, public.to_string()).unwrap();
                Some(path)
            }
            None => None,
        };
        let jwks = key_path.as_deref().unwrap_or(&es256_path);
        for vector in group["tests"].as_array().expect("tests") {
            let tc_id = vector["tcId"].as_u64().expect("tcId");
            let Some(jws) = vector.get("jws") else {
                continue; // JWE: not a signature vector.
            };
            let token = match jws {
                Value::String(token) => token.clone(),
                other => other.to_string(),
            };
            let label_valid = match vector["result"].as_str() {
                Some("valid") => true,
                Some("invalid") => false,
                other => panic!("tcId {tc_id}: unexpected result {other:?}"),
            };
            let context = format!(
                "tcId {tc_id} ({:?}, group {:?}, labelled {})",
                vector["comment"], group["comment"], vector["result"]
            );
            ran += 1;
            let run = keyscope(
                ["jws", "verify", "--jwks", s(jwks), "--", token.as_str()],
                None,
            );
            let out = match serde_json::from_str::<Value>(run.stdout.trim()) {
                Ok(Value::Object(out)) if run.stdout.lines().count() == 1 => out,
                _ => {
                    failures.push(format!("{context}: stdout is not one JSON object: {run:?}"));
                    continue;
                }
            };

            let expected_code = if key_path.is_none() {
                symmetric += 1;
                1
            } else {
                asymmetric += 1;
                if DEVIATIONS.contains(&tc_id) {
                    deviations_seen += 1;
                    if !label_valid {
                        failures.push(format!(
                            "{context}: listed as a deviation but labelled invalid"
                        ));
                    }
                    if out.get("reason") != Some(&json!("alg_not_allowed")) {
                        failures.push(format!(
                            "{context}: deviation must be refused with alg_not_allowed: {run:?}"
                        ));
                    }
                    1
                } else if label_valid {
                    0
                } else {
                    1
                }
            };
            if run.code != expected_code {
                failures.push(format!(
                    "{context}: exit {} instead of {expected_code}: {run:?}",
                    run.code
                ));
                continue;
            }
            if run.code == 0 {
                accepted += 1;
                if out.get("valid") != Some(&json!(true)) {
                    failures.push(format!("{context}: exit 0 without \"valid\":true: {run:?}"));
                }
                let payload_segment = token.split('.').nth(1).unwrap_or_default();
                match b64::decode_url(payload_segment.as_bytes()) {
                    Err(error) => failures.push(format!(
                        "{context}: accepted, but its payload is not base64url ({error})"
                    )),
                    // A text payload is printed as text.
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => {
                            text_payloads += 1;
                            if out.get("payload") != Some(&json!(text)) {
                                failures.push(format!(
                                    "{context}: payload {:?} differs from the decoded payload \
                                     {text:?}",
                                    out.get("payload")
                                ));
                            }
                        }
                        // A binary payload (the `normalPayload` vectors are bytes E0..FF) has
                        // no text: "payload" is null and "payload_b64" carries the bytes.
                        Err(error) => {
                            binary_payloads += 1;
                            let bytes = error.into_bytes();
                            if out.get("payload") != Some(&Value::Null)
                                || out.get("payload_b64") != Some(&json!(b64::encode_url(&bytes)))
                            {
                                failures.push(format!(
                                    "{context}: binary payload must be \"payload\":null with \
                                     \"payload_b64\": {run:?}"
                                ));
                            }
                        }
                    },
                }
            } else {
                if out.get("valid") != Some(&json!(false)) {
                    failures.push(format!(
                        "{context}: exit 1 without \"valid\":false: {run:?}"
                    ));
                }
                if !out.get("reason").is_some_and(Value::is_string) {
                    failures.push(format!("{context}: exit 1 without a reason: {run:?}"));
                }
            }
        }
    }

    println!(
        "wycheproof json_web_signature_test.json through `keyscope jws verify`: {ran} vectors \
         ran ({asymmetric} with a public key, {symmetric} symmetric rejected), {accepted} \
         accepted ({text_payloads} text payloads, {binary_payloads} binary), {deviations_seen} \
         listed deviations"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} vectors disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        ran,
        usize::try_from(file["numberOfTests"].as_u64().expect("numberOfTests")).unwrap(),
        "every vector ran"
    );
    assert_eq!(
        deviations_seen,
        DEVIATIONS.len(),
        "every deviation is in the file"
    );
    assert!(symmetric > 0, "the symmetric groups ran");
    assert!(
        text_payloads > 0,
        "no accepted vector had a text payload to compare"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. bench verify
// ---------------------------------------------------------------------------------------------

#[test]
fn bench_verify_json() {
    let run = keyscope(["bench", "verify", "--seconds", "1", "--json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    let out = run.json();
    let results = out["results"].as_array().expect("results array");
    for alg in ["ES256", "EdDSA", "RS256"] {
        let row = results
            .iter()
            .find(|r| r["alg"] == json!(alg))
            .unwrap_or_else(|| panic!("no result for {alg}: {run:?}"));
        for field in ["full_per_second", "bare_per_second"] {
            let rate = row[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{alg} {field}: {row}"));
            assert!(rate > 0.0, "{alg} {field} = {rate}");
        }
    }

    assert_usage_error(
        &keyscope(["bench", "verify", "--seconds", "0"], None),
        "--seconds 0",
    );
}

// ---------------------------------------------------------------------------------------------
// 6. top level
// ---------------------------------------------------------------------------------------------

#[test]
fn help_and_no_arguments() {
    let run = keyscope(["--help"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("token"), "{run:?}");

    let run = keyscope(std::iter::empty::<&str>(), None);
    assert_usage_error(&run, "no arguments");

    let run = keyscope(["no-such-command"], None);
    assert_usage_error(&run, "unknown subcommand");
}
