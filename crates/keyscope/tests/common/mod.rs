#![allow(dead_code, unreachable_pub)]
//! The harness shared by the end-to-end tests: temporary directories, the real binary as a
//! child process (`keyscope up` and admin commands), a small blocking HTTP/1.1 client.

pub use std::collections::BTreeMap;
pub use std::ffi::OsStr;
pub use std::fs;
pub use std::io::{Read, Write};
pub use std::net::{SocketAddr, TcpListener, TcpStream};
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, Stdio};
pub use std::sync::atomic::{AtomicUsize, Ordering};
pub use std::time::{Duration, Instant};

pub use serde_json::{Map, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_keyscope");

// The contract is that a revocation reaches every node within 1 s (nodes poll the store every
// 250 ms). Tests never assert wall time: they assert that the refusal happens, print the
// observed latency, and docs/benchmarks.md records measured figures.

/// Environment variables of the binary that must not leak in from the developer's shell:
/// every `KEYSCOPE_*` variable set in this process (whatever options are added later), and
/// `RUST_LOG`.
pub fn keyscope_env() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("KEYSCOPE_") || name == "RUST_LOG")
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

pub static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "keyscope-e2e-{}-{}-{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The databases to run against: `None` is SQLite in the data directory, `Some(url)` a fresh
/// PostgreSQL schema.
pub fn databases() -> Vec<Option<String>> {
    let mut list = vec![None];
    if std::env::var(keyscope_store::testing::DATABASE_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = runtime
            .block_on(keyscope_store::testing::postgres_url())
            .expect("KEYSCOPE_TEST_DATABASE_URL is set but a test schema cannot be made");
        list.push(Some(url));
    }
    list
}

pub fn label(database: Option<&str>) -> &'static str {
    if database.is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// How the binary finds its state: data directory, database URL, master key.
#[derive(Clone)]
pub struct Place {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub master_key: Option<String>,
}

impl Place {
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--data-dir".to_owned(), s(&self.data_dir).to_owned()];
        if let Some(url) = &self.database_url {
            args.push("--database-url".to_owned());
            args.push(url.clone());
        }
        args
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        for name in keyscope_env() {
            command.env_remove(name);
        }
        if let Some(key) = &self.master_key {
            command.env("KEYSCOPE_MASTER_KEY", key);
        }
        command
    }

    /// Runs `keyscope ARGS --data-dir … [--database-url …]`.
    pub fn run<A: AsRef<OsStr>>(&self, args: &[A], stdin: Option<&str>) -> Run {
        let mut command = self.command();
        command
            .args(args)
            .args(self.args())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            let _ = pipe.write_all(text.as_bytes());
        }
        let output = child.wait_with_output().unwrap();
        Run {
            code: output.status.code().expect("killed by a signal"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed.
    #[track_caller]
    pub fn ok<A: AsRef<OsStr>>(&self, args: &[A]) -> Run {
        let run = self.run(args, None);
        assert_eq!(run.code, 0, "{:?}: {run:?}", args_text(args));
        run
    }
}

pub fn args_text<A: AsRef<OsStr>>(args: &[A]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        assert_eq!(self.stdout.lines().count(), 1, "one line of JSON: {self:?}");
        serde_json::from_str(self.stdout.trim()).unwrap()
    }

    #[track_caller]
    pub fn assert_usage_error(&self, message: &str, what: &str) {
        assert_eq!(self.code, 2, "{what}: {self:?}");
        assert!(self.stdout.is_empty(), "{what}: {self:?}");
        assert!(
            self.stderr.contains(message),
            "{what}: stderr should say {message:?}: {self:?}"
        );
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random master key, base64url (32 bytes).
pub fn random_master_key() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    keyscope_jose::b64::encode_url(&bytes)
}

/// A running `keyscope up`.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub name: String,
}

impl Server {
    pub fn start(place: &Place, name: &str, extra: &[&str], logs: &TempDir) -> Server {
        Server::try_start(place, name, extra, logs)
            .unwrap_or_else(|output| panic!("{name} exited: {output}"))
    }

    /// Starts a server; `Err` with its output when it exits instead of becoming healthy.
    pub fn try_start(
        place: &Place,
        name: &str,
        extra: &[&str],
        logs: &TempDir,
    ) -> Result<Server, String> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = logs.join(&format!("{name}.log"));
        let out = fs::File::create(&log).unwrap();
        let mut command = place.command();
        command
            .arg("up")
            .args(place.args())
            .args(["--listen", &addr.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = command.spawn().unwrap();
        let mut server = Server {
            child,
            addr,
            log,
            name: name.to_owned(),
        };
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                return Err(format!("{status}: {}", server.output()));
            }
            if try_request(addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} did not become healthy: {}",
                server.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr, "GET", path, headers, b"")
    }

    pub fn post_form(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        request(self.addr, "POST", path, &all, body.as_bytes())
    }

    pub fn userinfo(&self, realm: &str, token: &str) -> Response {
        self.get(
            &format!("/t/{realm}/userinfo"),
            &[("Authorization", &format!("Bearer {token}"))],
        )
    }

    /// Waits until the server has loaded a tenant an admin command just created (servers
    /// poll the store; under load that can take a moment).
    pub fn wait_for_tenant(&self, realm: &str) {
        wait_until(Duration::from_secs(30), "the new tenant", || {
            let response = self.get(&format!("/t/{realm}/jwks"), &[]);
            response.status == 200
                && response.json()["keys"]
                    .as_array()
                    .is_some_and(|keys| !keys.is_empty())
        });
    }

    pub fn jwks_kids(&self, realm: &str) -> Vec<String> {
        let response = self.get(&format!("/t/{realm}/jwks"), &[]);
        assert_eq!(response.status, 200);
        response.json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> i32 {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                println!(
                    "{} stopped after SIGTERM in {:?}",
                    self.name,
                    started.elapsed()
                );
                return status.code().unwrap_or_else(|| {
                    panic!("{} died of a signal: {}", self.name, self.output())
                });
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} did not stop after SIGTERM: {}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only if a test failed before terminate(): our own child, by its handle.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            eprintln!("--- {} output:\n{}", self.name, self.output());
        }
    }
}

/// Polls until `check` holds or `bound` passes; returns the time it took.
pub fn wait_until(bound: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check() {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// A small blocking HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"))
}

pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         User-Agent: keyscope-cli-test\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("incomplete response"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    }) {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size_text = std::str::from_utf8(&rest[..line_end]).unwrap();
            let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Percent-encodes everything but the RFC 3986 unreserved characters.
pub fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        keyscope_jose::b64::encode_std(format!("{}:{}", enc(id), enc(secret)).as_bytes())
    )
}

/// The realm's keys from `keyscope key list --tenant T --json`.
pub fn key_list(place: &Place, tenant: &str) -> Vec<Map<String, Value>> {
    let run = place.ok(&["key", "list", "--tenant", tenant, "--json"]);
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_object().unwrap().clone())
        .collect()
}

pub fn kids_in_state(keys: &[Map<String, Value>], state: &str) -> Vec<String> {
    keys.iter()
        .filter(|k| k["state"] == state)
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// `keyscope audit verify --data-dir D` must pass.
pub fn audit_verify(data_dir: &Path) {
    let output = Command::new(BIN)
        .args(["audit", "verify", "--data-dir", s(data_dir)])
        .env_remove("KEYSCOPE_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "audit verify {}: {}{}",
        s(data_dir),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "audit verify {}: {}",
        s(data_dir),
        String::from_utf8_lossy(&output.stdout).trim()
    );
}

/// Every acknowledged record of a data directory's audit log.
pub fn audit_records(data_dir: &Path) -> Vec<Map<String, Value>> {
    let mut records = Vec::new();
    keyscope_audit::read_records(&keyscope_audit::audit_dir(data_dir), |r| {
        records.push(r);
        true
    })
    .unwrap();
    records
}

// ---------------------------------------------------------------------------------------------
// The sign-in page (authorization-code flow)
// ---------------------------------------------------------------------------------------------

pub fn unescape_html(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `name="value"` attributes of one tag (values unescaped).
pub fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq]
            .rsplit(|c: char| c.is_whitespace() || c == '<')
            .next()
            .unwrap_or_default()
            .to_owned();
        let after = &rest[eq + 2..];
        let end = after.find('"').expect("unterminated attribute value");
        out.insert(name, unescape_html(&after[..end]));
        rest = &after[end + 1..];
    }
    out
}

/// The sign-in form of a page: its action and its hidden fields.
pub fn sign_in_form(html: &str) -> (String, Vec<(String, String)>) {
    let form_start = html.find("<form").expect("the page has no form");
    let form_end = form_start + html[form_start..].find('>').unwrap();
    let form = attributes(&html[form_start..form_end]);
    assert_eq!(form.get("method").map(String::as_str), Some("post"));
    let action = form.get("action").expect("the form has no action").clone();
    let mut hidden = Vec::new();
    let mut rest = &html[form_end..];
    while let Some(start) = rest.find("<input") {
        let end = start + rest[start..].find('>').unwrap();
        let input = attributes(&rest[start..end]);
        if input.get("type").map(String::as_str) == Some("hidden") {
            hidden.push((input["name"].clone(), input["value"].clone()));
        }
        rest = &rest[end..];
    }
    (action, hidden)
}

// ---------------------------------------------------------------------------------------------
// The attacker's tools
// ---------------------------------------------------------------------------------------------

/// What a thief holding the database and the master key has: the realm's active signing key.
pub fn stolen_key(
    place: &Place,
    realm: &str,
) -> (String, std::sync::Arc<dyn keyscope_custody::KeySigner>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = runtime.block_on(async {
        let store = keyscope_store::Store::open_sqlite(&place.data_dir)
            .await
            .unwrap();
        let keys = store.keys().await.unwrap();
        store.close().await;
        keys
    });
    let record = keys
        .into_iter()
        .find(|k| k.realm_id == realm && k.state.as_str() == "active")
        .unwrap_or_else(|| panic!("no active key in {realm}"));
    let issuer = keyscope_identity::sealing_binding(realm);
    let master =
        keyscope_custody::MasterKey::from_env_value(place.master_key.as_deref().unwrap()).unwrap();
    let store = keyscope_custody::SealedKeyStore::new(master);
    use keyscope_custody::KeyStore as _;
    let sealed = keyscope_jose::b64::decode_url(record.key_reference.as_bytes()).unwrap();
    let alg = keyscope_jose::Algorithm::from_name(&record.alg).unwrap();
    let signer = store
        .open(
            &keyscope_custody::KeySpec {
                kid: &record.kid,
                issuer: &issuer,
                alg,
            },
            &sealed,
        )
        .unwrap();
    (record.kid, signer)
}

pub fn forge(signer: &dyn keyscope_custody::KeySigner, claims: &Value) -> String {
    let mut header = Map::new();
    header.insert("typ".into(), serde_json::json!("at+jwt"));
    signer
        .sign_compact(header, claims.to_string().as_bytes())
        .unwrap()
}
