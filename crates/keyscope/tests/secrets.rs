#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Key custody from the outside: runs the real server, exercises issuance, errors, rotation
//! and revocation, then recovers every private signing key the way an attacker with the data
//! directory AND the master key would (the documented sealed format), and checks that none of
//! those keys, nor the master key, nor a client secret or password, appears anywhere else:
//! the server's logs, the CLI's error output, the database files or the audit log. Also checks
//! what the running process exposes: core dumps disabled (limit 0).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use keyscope_jose::b64;

const BIN: &str = env!("CARGO_BIN_EXE_keyscope");

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request; returns (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn cli(dir: &Path, args: &[&str], stdin: Option<&str>, log: &mut String) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("KEYSCOPE_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn form_basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        b64::encode_std(format!("{id}:{secret}").as_bytes())
    )
}

/// Every file under `dir`, except the master key file itself.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.file_name().is_some_and(|n| n != "master.key") {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Opens a sealed key with the documented format (what an attacker holding both the
/// database and the master key could do) and returns the PKCS#8 DER.
fn unseal(master: &[u8], kid: &str, realm: &str, alg: &str, sealed: &[u8]) -> Vec<u8> {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"keyscope master key v1");
    let prk = salt.extract(master);
    let info = [b"keyscope sealed signing key v1".as_slice()];
    let okm = prk.expand(&info, Len).unwrap();
    let mut key = [0u8; 32];
    okm.fill(&mut key).unwrap();
    let mut aad = Vec::new();
    for part in [
        "keyscope-sealed-key-v1",
        kid,
        &format!("keyscope-realm:{realm}"),
        alg,
    ] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    assert_eq!(sealed[0], 1, "sealed format version");
    let nonce = Nonce::try_assume_unique_for_key(&sealed[1..13]).unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
    let mut data = sealed[13..].to_vec();
    key.open_in_place(nonce, Aad::from(aad), &mut data)
        .expect("the sealed key opens with the master key")
        .to_vec()
}

/// The 32-byte private scalar inside an EC P-256 PKCS#8 (ECPrivateKey: 02 01 01 04 20 d).
fn ec_private_scalar(pkcs8: &[u8]) -> Vec<u8> {
    let at = pkcs8
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("an ECPrivateKey");
    pkcs8[at + 5..at + 37].to_vec()
}

#[test]
fn no_private_key_master_key_or_secret_leaves_custody() {
    let dir = std::env::temp_dir().join(format!("keyscope-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port();
    let log_path = dir.with_extension("server.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut server = Server {
        child: Command::new(BIN)
            .args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&dir)
            .env_remove("KEYSCOPE_MASTER_KEY")
            .env("RUST_LOG", "debug")
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap(),
    };
    let start = Instant::now();
    while std::panic::catch_unwind(|| http(port, "GET", "/healthz", &[], "").0).ok() != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // What the running process exposes: no core dumps.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        &fields[4..6],
        ["0", "0"],
        "core dumps must be disabled: {core}"
    );

    let mut cli_errors = String::new();
    let password = "correct horse battery staple";
    cli(
        &dir,
        &["tenant", "create", "contoso"],
        None,
        &mut cli_errors,
    );
    cli(
        &dir,
        &[
            "user",
            "add",
            "--tenant",
            "contoso",
            "alice",
            "--password-stdin",
        ],
        Some(password),
        &mut cli_errors,
    );
    let app = cli(
        &dir,
        &[
            "app",
            "add",
            "--tenant",
            "contoso",
            "--name",
            "daemon",
            "--confidential",
            "--json",
        ],
        None,
        &mut cli_errors,
    );
    let app: serde_json::Value = serde_json::from_str(&app).unwrap();
    let (id, secret) = (
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap().to_owned(),
    );
    // Wait for the server's next poll to pick up the new tenant (and its key).
    let seen = Instant::now();
    while !http(port, "GET", "/t/contoso/jwks", &[], "")
        .1
        .contains("\"kid\"")
    {
        assert!(
            seen.elapsed() < Duration::from_secs(30),
            "the tenant never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let good = form_basic(id, &secret);
    let (status, body) = http(
        port,
        "POST",
        "/t/contoso/token",
        &[form[0], ("Authorization", &good)],
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200, "{body}");
    // Failures of every kind, so that error paths are in the logs too.
    let bad = form_basic(id, "not-the-secret");
    assert_eq!(
        http(
            port,
            "POST",
            "/t/contoso/token",
            &[form[0], ("Authorization", &bad)],
            "grant_type=client_credentials"
        )
        .0,
        401
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/t/contoso/token",
            &[form[0], ("Authorization", &good)],
            "grant_type=password"
        )
        .0,
        400
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/t/contoso/token",
            &[("Authorization", &good)],
            "{}"
        )
        .0,
        400
    );
    let token = cli(
        &dir,
        &["token", "issue", "--tenant", "contoso", "--user", "alice"],
        None,
        &mut cli_errors,
    );
    assert_eq!(token.trim().split('.').count(), 3);
    cli(
        &dir,
        &["key", "rotate", "--tenant", "contoso", "--now"],
        None,
        &mut cli_errors,
    );
    cli(
        &dir,
        &["token", "issue", "--tenant", "nope", "--user", "alice"],
        None,
        &mut cli_errors,
    );
    let keys = cli(&dir, &["key", "list", "--json"], None, &mut cli_errors);
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    let first = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "retiring")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    cli(
        &dir,
        &["key", "revoke", &first, "--reason", "drill"],
        None,
        &mut cli_errors,
    );
    // The server notices the revocation on its next poll (every 250 ms); allow a loaded
    // machine some slack (the latency itself is measured in identity_cli.rs).
    let bearer = format!("Bearer {}", token.trim());
    let revoked_at = Instant::now();
    let mut status = 0;
    while revoked_at.elapsed() < Duration::from_secs(10) {
        status = http(
            port,
            "GET",
            "/t/contoso/userinfo",
            &[("Authorization", &bearer)],
            "",
        )
        .0;
        if status == 401 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status, 401, "a token of a revoked key is refused");

    // Stop the server the way an operator does.
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown: {exit:?}");

    // Recover every key from the store with the master key (the attacker's view).
    let master_text = std::fs::read_to_string(dir.join("master.key")).unwrap();
    let master = b64::decode_url(master_text.trim().as_bytes()).unwrap();
    assert_eq!(master.len(), 32);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records = runtime.block_on(async {
        let store = keyscope_store::Store::open_sqlite(&dir).await.unwrap();
        let keys = store.keys().await.unwrap();
        store.close().await;
        keys
    });
    assert!(records.len() >= 3, "consumer key, tenant key, rotated key");
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("master key".into(), master.clone()),
        (
            "master key text".into(),
            master_text.trim().as_bytes().to_vec(),
        ),
        ("client secret".into(), secret.as_bytes().to_vec()),
        ("password".into(), password.as_bytes().to_vec()),
    ];
    for record in &records {
        let sealed = b64::decode_url(record.key_reference.as_bytes()).unwrap();
        let pkcs8 = unseal(&master, &record.kid, &record.realm_id, &record.alg, &sealed);
        let d = ec_private_scalar(&pkcs8);
        needles.push((format!("{} d", record.kid), d.clone()));
        needles.push((
            format!("{} d base64url", record.kid),
            b64::encode_url(&d).into_bytes(),
        ));
        needles.push((
            format!("{} d base64", record.kid),
            b64::encode_std(&d).into_bytes(),
        ));
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        needles.push((format!("{} d hex", record.kid), hex.into_bytes()));
        needles.push((format!("{} pkcs8", record.kid), pkcs8));
    }

    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("server log".into(), std::fs::read(&log_path).unwrap()),
        ("CLI error output".into(), cli_errors.into_bytes()),
    ];
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    assert!(paths.iter().any(|p| p.ends_with("keyscope.db")));
    assert!(paths.iter().any(|p| p.to_string_lossy().contains("audit")));
    for path in paths {
        haystacks.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    for (place, bytes) in &haystacks {
        for (what, needle) in &needles {
            assert!(!contains(bytes, needle), "{what} found in {place}");
        }
    }
    // The log did say something (the search above is not vacuous).
    assert!(
        haystacks[0].1.len() > 100,
        "server log: {}",
        String::from_utf8_lossy(&haystacks[0].1)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log_path);
}
