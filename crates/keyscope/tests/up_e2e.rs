#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `keyscope up` as a newcomer meets it, through the real binary: started in an empty
//! directory it bootstraps an operator and the web mail client, and the printed password
//! signs in through the authorization-code flow to read the welcome mail over JMAP. Also:
//! the configuration layers (file, environment, flags) as `config show` reports them, and
//! SIGTERM under load losing no acknowledged audit record.

mod common;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

/// `keyscope up` started in `dir` with no flags but the port, its stdout read line by line.
struct Fresh {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: PathBuf,
}

impl Fresh {
    fn start(dir: &Path, extra: &[&str]) -> Fresh {
        let stderr = dir.join(format!("up-{}.err", COUNTER.fetch_add(1, Ordering::SeqCst)));
        let mut command = Command::new(BIN);
        for name in keyscope_env() {
            command.env_remove(name);
        }
        let mut child = command
            .current_dir(dir)
            .args(["up", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Fresh {
            child,
            lines,
            stderr,
        }
    }

    fn output(&self) -> String {
        let out = self.lines.lock().unwrap().join("\n");
        let err = fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("stdout:\n{out}\nstderr:\n{err}")
    }

    /// The value printed after `label` (e.g. "operator password:"), once it is printed.
    fn printed(&self, label: &str) -> String {
        let mut found = None;
        wait_until(Duration::from_secs(60), label, || {
            found = self.lines.lock().unwrap().iter().find_map(|l| {
                l.trim_start()
                    .strip_prefix(label)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            });
            found.is_some()
        });
        found.unwrap()
    }

    fn addr(&self) -> SocketAddr {
        self.printed("keyscope is up on").parse().unwrap()
    }

    fn stop(mut self) -> i32 {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {}", self.output()))
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            eprintln!("--- keyscope up output:\n{}", self.output());
        }
    }
}

fn pkce_pair() -> (String, String) {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let verifier = keyscope_jose::b64::encode_url(&bytes);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, keyscope_jose::b64::encode_url(digest.as_ref()))
}

fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    format!("/{}", rest.split_once('/').map_or("", |(_, p)| p))
}

/// Signs in as the web mail client would: authorize page, form, code, token. `None` when the
/// sign-in page refuses the password.
fn sign_in(addr: SocketAddr, username: &str, password: &str) -> Option<String> {
    let config = request(addr, "GET", "/mail/config.json", &[], b"");
    assert_eq!(config.status, 200, "{}", config.text());
    let config = config.json();
    let client_id = config["client_id"].as_str().unwrap();
    let redirect_uri = config["redirect_uri"].as_str().unwrap();
    assert_eq!(redirect_uri, format!("http://{addr}/mail/"));
    let (verifier, challenge) = pkce_pair();
    let authorize = format!(
        "{}?{}",
        path_of(config["authorization_endpoint"].as_str().unwrap()),
        form(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", "openid"),
            ("state", "s-123"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    );
    let page = request(addr, "GET", &authorize, &[], b"");
    assert_eq!(page.status, 200, "{}", page.text());
    let (action, hidden) = sign_in_form(&page.text());
    let mut fields: Vec<(&str, &str)> = hidden
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    fields.push(("username", username));
    fields.push(("password", password));
    let signed_in = request(
        addr,
        "POST",
        &path_of(&action),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form(&fields).as_bytes(),
    );
    if signed_in.status == 401 {
        return None;
    }
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    let location = signed_in.header("location").unwrap().to_owned();
    assert!(location.starts_with(redirect_uri), "{location}");
    let query = location.split_once('?').unwrap().1;
    let params: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    assert_eq!(params.get("state"), Some(&"s-123"), "{location}");
    let code = params["code"];
    let tokens = request(
        addr,
        "POST",
        &path_of(config["token_endpoint"].as_str().unwrap()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
            ("code_verifier", &verifier),
        ])
        .as_bytes(),
    );
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    Some(tokens.json()["access_token"].as_str().unwrap().to_owned())
}

fn jmap(addr: SocketAddr, api: &str, token: &str, calls: Value) -> Vec<Value> {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": calls,
    });
    let response = request(
        addr,
        "POST",
        &path_of(api),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["methodResponses"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn up_in_an_empty_directory_lets_the_operator_sign_in_and_read_mail() {
    let dir = TempDir::new("up-fresh");
    let server = Fresh::start(&dir.0, &[]);
    let addr = server.addr();
    let username = server.printed("operator username:");
    let password = server.printed("operator password:");
    let client_id = server.printed("mail client_id:");
    assert_eq!(username, "operator");
    assert!(password.len() >= 16, "{password}");
    assert_eq!(
        server.printed("sign in and read:"),
        format!("http://{addr}/mail/")
    );
    assert_eq!(
        server.printed("redirect_uri:"),
        format!("http://{addr}/mail/")
    );
    assert!(dir.join("keyscope-data/master.key").is_file());

    // The web client's page is served with a strict policy.
    let page = request(addr, "GET", "/mail/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/mail/app.js"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));

    // A wrong password is refused; the printed one signs in.
    assert!(sign_in(addr, &username, "not-the-password-at-all").is_none());
    let token = sign_in(addr, &username, &password).expect("the printed password signs in");
    let session = request(
        addr,
        "GET",
        "/.well-known/jmap",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(session.status, 200, "{}", session.text());
    let session = session.json();
    let account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        .as_str()
        .unwrap()
        .to_owned();
    let api = session["apiUrl"].as_str().unwrap().to_owned();
    let replies = jmap(
        addr,
        &api,
        &token,
        json!([
            ["Mailbox/query", {"accountId": account, "filter": {"role": "inbox"}}, "m"],
        ]),
    );
    let inbox = replies[0][1]["ids"][0].as_str().unwrap().to_owned();
    let replies = jmap(
        addr,
        &api,
        &token,
        json!([
            ["Email/query", {"accountId": account, "filter": {"inMailbox": inbox}}, "q"],
            ["Email/get", {"accountId": account, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["subject", "textBody", "bodyValues"], "fetchTextBodyValues": true}, "g"],
        ]),
    );
    let list = replies[1][1]["list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{replies:?}");
    assert_eq!(list[0]["subject"], "Welcome to Keyscope");
    let part = list[0]["textBody"][0]["partId"].as_str().unwrap();
    assert!(
        list[0]["bodyValues"][part]["value"]
            .as_str()
            .unwrap()
            .contains("keyscope demo storm-0558")
    );
    // The client_id the page uses is the one printed.
    let config = request(addr, "GET", "/mail/config.json", &[], b"").json();
    assert_eq!(config["client_id"], client_id.as_str());

    // The operator replaces the first-start password beside the running server.
    let mut command = Command::new(BIN);
    for name in keyscope_env() {
        command.env_remove(name);
    }
    let mut child = command
        .current_dir(&dir.0)
        .args([
            "user",
            "password",
            "--consumer",
            "operator",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a brand new operator passphrase\n")
        .unwrap();
    let changed = child.wait_with_output().unwrap();
    assert!(changed.status.success(), "{changed:?}");
    assert!(sign_in(addr, &username, &password).is_none());
    assert!(sign_in(addr, &username, "a brand new operator passphrase").is_some());
    assert_eq!(server.stop(), 0);

    // What happened is in the log: the sign-in and the mailbox read, by the operator.
    let data_dir = dir.join("keyscope-data");
    audit_verify(&data_dir);
    let records = audit_records(&data_dir);
    let ops: Vec<&str> = records
        .iter()
        .map(|r| r["Operation"].as_str().unwrap())
        .collect();
    for op in ["AdminAction", "SignIn", "TokenIssued", "MailItemsAccessed"] {
        assert!(ops.contains(&op), "no {op} in {ops:?}");
    }

    // A second start does not bootstrap again: the password was shown once.
    let again = Fresh::start(&dir.0, &[]);
    let addr = again.addr();
    wait_until(Duration::from_secs(30), "the banner", || {
        again
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("live detection"))
    });
    assert!(
        request(addr, "GET", "/healthz", &[], b"").status == 200,
        "{}",
        again.output()
    );
    assert!(
        !again.output().contains("operator password"),
        "{}",
        again.output()
    );
    assert_eq!(again.stop(), 0);
}

fn config_show(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    for name in keyscope_env() {
        command.env_remove(name);
    }
    command
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(["config", "show", "--json"])
        .args(args)
        .output()
        .unwrap()
}

fn option(output: &std::process::Output, key: &str) -> (Value, Value) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    let entry = &shown["options"][key];
    (entry["value"].clone(), entry["source"].clone())
}

#[test]
fn flags_beat_variables_beat_the_file_beat_defaults() {
    let dir = TempDir::new("up-config");
    let data = dir.join("keyscope-data");
    fs::create_dir_all(&data).unwrap();
    fs::write(
        data.join("keyscope.toml"),
        "listen = \"127.0.0.1:9999\"\nrotation_hours = 12\njwks_max_age = 60\n\
         database_url = \"postgres://ks:hunter2@db.internal/keyscope\"\n\
         metrics_token = \"0123456789abcdef0123\"\nrules = \"my-rules\"\n",
    )
    .unwrap();
    let shown = config_show(
        &dir.0,
        &[("KEYSCOPE_ROTATION_HOURS", "6")],
        &["--jwks-max-age", "30"],
    );
    assert_eq!(
        option(&shown, "listen"),
        (
            json!("127.0.0.1:9999"),
            json!("file keyscope-data/keyscope.toml")
        )
    );
    assert_eq!(
        option(&shown, "rotation_hours"),
        (json!("6"), json!("env KEYSCOPE_ROTATION_HOURS"))
    );
    assert_eq!(option(&shown, "jwks_max_age"), (json!("30"), json!("flag")));
    assert_eq!(
        option(&shown, "access_token_ttl"),
        (json!("600"), json!("default"))
    );
    assert_eq!(option(&shown, "alert_file").0, Value::Null);
    // Paths in the file are relative to the file.
    assert_eq!(option(&shown, "rules").0, json!("keyscope-data/my-rules"));
    // Secrets are masked, and never printed anywhere.
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("0123456789abcdef"),
        "{stdout}"
    );
    assert_eq!(
        option(&shown, "database_url").0,
        json!("postgres://ks:********@db.internal/keyscope")
    );
    assert_eq!(option(&shown, "metrics_token").0, json!("********"));

    // --config names another file, whose data_dir counts.
    let other = dir.join("elsewhere.toml");
    fs::write(&other, "data_dir = \"state\"\nlog_format = \"json\"\n").unwrap();
    let shown = config_show(&dir.0, &[], &["--config", s(&other)]);
    assert_eq!(option(&shown, "data_dir").0, json!(s(&dir.join("state"))));
    assert_eq!(option(&shown, "log_format").0, json!("json"));

    // Mistakes stop the program, naming the place, without echoing secrets.
    for (text, message) in [
        ("rotaton_hours = 1\n", "unknown option `rotaton_hours`"),
        ("rotation_hours = 0\n", "`rotation_hours` in"),
        ("listen = \"everywhere\"\n", "must be IP:PORT"),
        ("signing_alg = \"HS256\"\n", "must be one of ES256, EdDSA"),
        (
            "master_key = \"abc\"\n",
            "does not belong in a configuration file",
        ),
        ("listen = \n", "not valid TOML"),
        (
            "database_url = \"mysql://u:s3cret@h/d\"\n",
            "must be a postgres:// (or sqlite:) URL",
        ),
    ] {
        fs::write(&other, text).unwrap();
        let output = config_show(&dir.0, &[], &["--config", s(&other)]);
        assert_eq!(output.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{text}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
    let output = config_show(&dir.0, &[("KEYSCOPE_ACCESS_TOKEN_TTL", "ten")], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("KEYSCOPE_ACCESS_TOKEN_TTL = \"ten\"")
    );
    let output = config_show(&dir.0, &[], &["--config", s(&dir.join("missing.toml"))]);
    assert_eq!(output.status.code(), Some(2));

    // `up` itself runs with what the file says (here: JSON logs).
    fs::write(data.join("keyscope.toml"), "log_format = \"json\"\n").unwrap();
    let server = Fresh::start(&dir.0, &[]);
    let _ = server.addr();
    wait_until(Duration::from_secs(30), "a JSON log line", || {
        fs::read_to_string(&server.stderr)
            .unwrap_or_default()
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["message"] == "listening"))
    });
    assert_eq!(server.stop(), 0);
}

/// The token id of an access token (its payload, not verified: the server issued it).
fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&keyscope_jose::b64::decode_url(payload.as_bytes()).unwrap())
            .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_audit_record() {
    // Three rounds per database (each with its own schema), each signalled at a different
    // moment of the load.
    for (round, database) in (0..3).flat_map(|_| databases()).enumerate() {
        let dir = TempDir::new("up-sigterm");
        let place = Place {
            data_dir: dir.join("data"),
            database_url: database.clone(),
            master_key: Some(random_master_key()),
        };
        let app = place.ok(&[
            "app",
            "add",
            "--consumer",
            "--name",
            "load",
            "--confidential",
            "--json",
        ]);
        let app = app.json();
        let client_id = app["client_id"].as_str().unwrap().to_owned();
        let secret = app["client_secret"].as_str().unwrap().to_owned();
        let server = Server::start(&place, "sigterm", &[], &dir);
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
                let authorization = basic(&client_id, &secret);
                std::thread::spawn(move || {
                    let mut refused = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let answer = try_request(
                            addr,
                            "POST",
                            "/consumers/token",
                            &[
                                ("Content-Type", "application/x-www-form-urlencoded"),
                                ("Authorization", &authorization),
                            ],
                            b"grant_type=client_credentials",
                        );
                        match answer {
                            Ok(r) if r.status == 200 => {
                                let token = r.json()["access_token"].as_str().unwrap().to_owned();
                                acknowledged.lock().unwrap().push(jti_of(&token));
                            }
                            // Throttling or shutting down: not acknowledged, and fine.
                            Ok(_) => {}
                            // The listener is gone.
                            Err(_) => {
                                refused += 1;
                                if refused > 20 {
                                    break;
                                }
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                    }
                })
            })
            .collect();
        wait_until(Duration::from_secs(60), "tokens under load", || {
            acknowledged.lock().unwrap().len() >= 100 + 75 * round
        });
        let at_signal = acknowledged.lock().unwrap().len();
        let code = server.terminate();
        stop.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(code, 0, "{}", label(database.as_deref()));
        let acknowledged: BTreeSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
        audit_verify(&place.data_dir);
        let issued: BTreeSet<String> = audit_records(&place.data_dir)
            .iter()
            .filter(|r| r["Operation"] == "TokenIssued")
            .filter_map(|r| r["TokenId"].as_str().map(str::to_owned))
            .collect();
        let missing: Vec<&String> = acknowledged.difference(&issued).collect();
        assert!(
            missing.is_empty(),
            "{}: {} of {} acknowledged tokens have no TokenIssued record: {missing:?}",
            label(database.as_deref()),
            missing.len(),
            acknowledged.len()
        );
        println!(
            "{}: {} tokens acknowledged ({at_signal} before SIGTERM), all in the log",
            label(database.as_deref()),
            acknowledged.len()
        );
    }
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = TempDir::new("closed-pipe");
    let mut command = Command::new(BIN);
    for name in keyscope_env() {
        command.env_remove(name);
    }
    // A pipe whose reader is gone before the child starts (as with `| head -0` once head
    // has exited): closing it after spawn would race with the child's first write, which
    // the pipe buffer would then accept.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = command
        .current_dir(&dir.0)
        .args(["config", "show"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}

#[test]
fn a_data_directory_open_to_other_users_is_restricted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("open-data-dir");
    let data = dir.join("data");
    fs::create_dir(&data).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    let place = Place {
        data_dir: data.clone(),
        database_url: None,
        master_key: None,
    };
    let run = place.run(&["tenant", "list"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("was open to other users"), "{run:?}");
    let mode = fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // master.key, the database and the log are inside it.
    assert!(data.join("master.key").is_file());
}

#[test]
fn hostile_configuration_is_refused_with_its_place_named_and_no_secret() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("config-hostile");
    let refused = |env: &[(&str, &OsStr)], args: &[&str], expected: &str| {
        let mut command = Command::new(BIN);
        for name in keyscope_env() {
            command.env_remove(name);
        }
        let output = command
            .current_dir(&dir.0)
            .envs(env.iter().copied())
            .args(["config", "show"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        stderr
    };
    // A variable that is not UTF-8 is not silently ignored.
    refused(
        &[(
            "KEYSCOPE_METRICS_TOKEN",
            OsStr::from_bytes(b"\xffabcdefghijklmnopq"),
        )],
        &[],
        "KEYSCOPE_METRICS_TOKEN is not valid UTF-8",
    );
    // The webhook URL is never echoed (its user part or query may be the secret).
    for url in [
        "https://user:WHPASS@hooks.example/x",
        "https://h/x?k=LEAK y",
        "http://[bad/x?k=LEAK",
    ] {
        let stderr = refused(&[], &["--alert-webhook", url], "invalid webhook URL");
        assert!(
            !stderr.contains("WHPASS") && !stderr.contains("LEAK"),
            "{stderr}"
        );
    }
    // Public URLs that would end up unescaped in issuers and pages.
    for url in [
        "http://u:p@h",
        "https://h:99999",
        "http://127.0.0.1:1/a\"><script>",
        "ftp://h",
        "http://h/?q",
    ] {
        refused(&[], &["--public-url", url], "must be an http(s) URL");
    }
    // Something named keyscope.toml in the data directory that is not a regular file.
    let data = dir.join("keyscope-data");
    fs::create_dir_all(data.join("keyscope.toml")).unwrap();
    refused(&[], &[], "is not a regular file");
    fs::remove_dir(data.join("keyscope.toml")).unwrap();
    std::os::unix::fs::symlink("nowhere.toml", data.join("keyscope.toml")).unwrap();
    refused(&[], &[], "keyscope.toml");
    fs::remove_file(data.join("keyscope.toml")).unwrap();
    // A FIFO given as --config is refused, not waited on.
    let fifo = dir.join("fifo.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    refused(&[], &["--config", s(&fifo)], "is not a regular file");
}

#[test]
fn up_refuses_to_start_with_an_alert_file_it_cannot_write_or_without_the_master_key() {
    let dir = TempDir::new("up-refuses");
    let mut command = Command::new(BIN);
    for name in keyscope_env() {
        command.env_remove(name);
    }
    let output = command
        .current_dir(&dir.0)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--alert-file",
            "/nonexistent/dir/a.jsonl",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot open the alert file"), "{stderr}");

    // A store whose keys were sealed under a master key that is not here: refused, and no
    // new master.key is left behind.
    let place = Place {
        data_dir: dir.join("sealed"),
        database_url: None,
        master_key: Some(random_master_key()),
    };
    place.ok(&["tenant", "create", "acme"]);
    let without = Place {
        master_key: None,
        ..place.clone()
    };
    let run = without.run(&["tenant", "list"], None);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no master key"), "{run:?}");
    assert!(!place.data_dir.join("master.key").exists());
}

#[test]
fn the_server_keeps_a_checkpoint_copy_up_to_its_last_record() {
    let dir = TempDir::new("up-checkpoint-copy");
    let place = Place {
        data_dir: dir.join("data"),
        database_url: None,
        master_key: Some(random_master_key()),
    };
    let copy = dir.join("elsewhere-checkpoint.json");
    let server = Server::start(
        &place,
        "server",
        &[
            "--checkpoint-copy",
            s(&copy),
            "--checkpoint-copy-seconds",
            "1",
        ],
        &dir,
    );
    // The periodic copy appears while the server runs.
    wait_until(Duration::from_secs(30), "the first checkpoint copy", || {
        copy.is_file()
    });
    place.ok(&["tenant", "create", "contoso"]);
    assert_eq!(server.terminate(), 0);
    // The last copy, written after the log closed, covers every record.
    let checkpoint: Value = serde_json::from_slice(&fs::read(&copy).unwrap()).unwrap();
    let records = audit_records(&place.data_dir);
    assert_eq!(checkpoint["size"].as_u64(), Some(records.len() as u64));
    let verify = Command::new(BIN)
        .args([
            "audit",
            "verify",
            "--data-dir",
            s(&place.data_dir),
            "--checkpoint",
            s(&copy),
        ])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
}
