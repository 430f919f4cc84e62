#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! In-process tests of the identity service: an [`Identity`] over a real store (SQLite always,
//! PostgreSQL too when `KEYSCOPE_TEST_DATABASE_URL` is set), sealed key custody and an audit
//! log, served by the real router on a loopback port and spoken to over HTTP/1.1.
//!
//! The attack these tests keep in mind is Storm-0558: a signing key of one realm used to forge
//! tokens for another. So every test checks isolation between realms as well as its own topic.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keyscope_audit::AuditLog;
use keyscope_custody::{KeySpec, KeyStore, MasterKey, SealedKeyStore};
use keyscope_identity::{
    AppSpec, AuditSink, Grant, Identity, IdentityConfig, RequestContext, unix_now,
};
use keyscope_store::{KeyState, Realm, Store};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------------------------
// Harness: temporary directories, databases, the service
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "keyscope-identity-test-{}-{}-{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The databases every test runs against: SQLite always, PostgreSQL when configured.
fn databases() -> Vec<&'static str> {
    let mut list = vec!["sqlite"];
    if std::env::var(keyscope_store::testing::DATABASE_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        list.push("postgres");
    }
    list
}

/// One running service: the core, its HTTP server and its audit log.
struct Service {
    identity: Arc<Identity>,
    addr: SocketAddr,
    audit_dir: PathBuf,
    /// The master key's bytes, so a test can play the thief who stole a sealed key.
    master: [u8; 32],
    server: tokio::task::JoinHandle<()>,
    database: &'static str,
    _dir: TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Service {
    async fn start(database: &'static str, tune: impl FnOnce(&mut IdentityConfig)) -> Service {
        let dir = TempDir::new(database);
        let store = match database {
            "sqlite" => Store::open_sqlite(&dir.0).await.unwrap(),
            _ => {
                let url = keyscope_store::testing::postgres_url()
                    .await
                    .expect("KEYSCOPE_TEST_DATABASE_URL is set but a test schema cannot be made");
                Store::connect(&url).await.unwrap()
            }
        };
        let mut master = [0u8; 32];
        aws_lc_rs::rand::fill(&mut master).unwrap();
        let keystore: Arc<dyn KeyStore> =
            Arc::new(SealedKeyStore::new(MasterKey::from_bytes(master)));
        let audit_dir = dir.0.join("audit");
        let audit = AuditSink::Log(Arc::new(AuditLog::open(&audit_dir).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = IdentityConfig::new(&format!("http://{addr}"));
        tune(&mut config);
        let identity = Identity::start(config, store, keystore, audit)
            .await
            .unwrap();
        let app = keyscope_identity::http::router(Arc::clone(&identity));
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Service {
            identity,
            addr,
            audit_dir,
            master,
            server,
            database,
            _dir: dir,
        }
    }

    fn issuer(&self, realm: &str) -> String {
        self.identity.config().issuer(realm)
    }

    async fn tenant(&self, name: &str) -> Realm {
        self.identity
            .create_tenant(name, &RequestContext::operator())
            .await
            .unwrap()
    }

    async fn user(&self, realm: &Realm, name: &str) -> String {
        let (user, generated) = self
            .identity
            .add_user(
                realm,
                name,
                Some(Zeroizing::new(PASSWORD.to_owned())),
                &RequestContext::operator(),
            )
            .await
            .unwrap();
        assert!(generated.is_none());
        user.id
    }

    /// A public app (authorization_code + refresh_token) redirecting to [`REDIRECT`].
    async fn public_app(&self, realm: &str) -> String {
        let (app, secret) = self
            .identity
            .add_app(
                &AppSpec {
                    realm: realm.to_owned(),
                    name: format!("public app of {realm}"),
                    confidential: false,
                    grants: Vec::new(),
                    redirect_uris: vec![REDIRECT.to_owned()],
                    resources: Vec::new(),
                },
                &RequestContext::operator(),
            )
            .await
            .unwrap();
        assert!(secret.is_none(), "a public app has no secret");
        assert_eq!(app.grants, ["authorization_code", "refresh_token"]);
        app.client_id
    }

    /// A confidential app (client_credentials). Returns (client_id, secret).
    async fn confidential_app(&self, realm: &str) -> (String, String) {
        let (app, secret) = self
            .identity
            .add_app(
                &AppSpec {
                    realm: realm.to_owned(),
                    name: format!("daemon of {realm}"),
                    confidential: true,
                    ..AppSpec::default()
                },
                &RequestContext::operator(),
            )
            .await
            .unwrap();
        (app.client_id, secret.unwrap().to_string())
    }

    /// The realm's active key id, from the store.
    async fn active_kid(&self, realm: &str) -> String {
        let keys = self.identity.store().realm_keys(realm).await.unwrap();
        let active: Vec<_> = keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .collect();
        assert_eq!(
            active.len(),
            1,
            "exactly one active key in {realm}: {keys:?}"
        );
        active[0].kid.clone()
    }

    async fn key_state(&self, kid: &str) -> KeyState {
        self.identity.store().key(kid).await.unwrap().unwrap().state
    }

    /// The kids the realm's JWKS endpoint publishes.
    async fn jwks_kids(&self, path: &str) -> BTreeSet<String> {
        let response = self.get(&format!("{path}/jwks"), &[]).await;
        assert_eq!(response.status, 200, "{path}/jwks");
        response.json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Every acknowledged audit record so far.
    fn audit_records(&self) -> Vec<Map<String, Value>> {
        let mut records = Vec::new();
        keyscope_audit::read_records(&self.audit_dir, |record| {
            records.push(record);
            true
        })
        .unwrap();
        records
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr, "GET", path, headers, b"").await
    }

    async fn post_form(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        request(self.addr, "POST", path, &all, body.as_bytes()).await
    }

    /// Runs the authorization code flow up to the code: GET the sign-in page, POST the
    /// credentials. Returns the code.
    async fn sign_in(&self, realm_path: &str, client_id: &str, verifier: &str) -> String {
        let challenge = keyscope_oauth::pkce::s256_challenge(verifier);
        let params = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("state", "st-123"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        let page = self
            .get(&format!("{realm_path}/authorize?{}", form(&params)), &[])
            .await;
        assert_eq!(page.status, 200, "sign-in page: {}", page.text());
        assert!(
            page.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        let mut with_credentials = params.to_vec();
        with_credentials.push(("username", "alice"));
        with_credentials.push(("password", PASSWORD));
        let response = self
            .post_form(
                &format!("{realm_path}/authorize"),
                &[],
                &form(&with_credentials),
            )
            .await;
        assert_eq!(response.status, 303, "sign-in: {}", response.text());
        let location = response.header("location").unwrap();
        assert!(location.starts_with(REDIRECT), "{location}");
        let query = query_params(location);
        assert_eq!(query_get(&query, "state"), Some("st-123"));
        assert_eq!(
            query_get(&query, "iss"),
            Some(format!("http://{}{realm_path}", self.addr).as_str())
        );
        query_get(&query, "code").unwrap().to_owned()
    }

    async fn exchange_code(
        &self,
        realm_path: &str,
        client_id: &str,
        code: &str,
        verifier: &str,
    ) -> Response {
        self.post_form(
            &format!("{realm_path}/token"),
            &[],
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
                ("client_id", client_id),
            ]),
        )
        .await
    }

    async fn refresh(&self, realm_path: &str, client_id: &str, refresh_token: &str) -> Response {
        self.post_form(
            &format!("{realm_path}/token"),
            &[],
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ]),
        )
        .await
    }

    async fn client_credentials(&self, realm_path: &str, id: &str, secret: &str) -> Response {
        self.post_form(
            &format!("{realm_path}/token"),
            &[("Authorization", &basic(id, secret))],
            "grant_type=client_credentials",
        )
        .await
    }

    /// The rejection reason of `token` in-process, or "accepted".
    async fn reason(&self, token: &str, realm: &str) -> String {
        match self.identity.check_access_token(token, Some(realm)).await {
            Ok(_) => "accepted".to_owned(),
            Err(rejection) => rejection.reason,
        }
    }
}

/// A verifier of the right shape (43+ characters of the unreserved set).
fn verifier(tag: &str) -> String {
    format!("{tag}-{}", keyscope_identity::random_id(40))
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        keyscope_jose::b64::encode_std(format!("{}:{}", enc(id), enc(secret)).as_bytes())
    )
}

/// The decoded payload of a compact JWS.
fn claims(token: &str) -> Map<String, Value> {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = keyscope_jose::b64::decode_url(payload.as_bytes()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn header_of(token: &str) -> Map<String, Value> {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&keyscope_jose::b64::decode_url(header.as_bytes()).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 client (one request per connection)
// ---------------------------------------------------------------------------------------------

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): status {} {}", self.status, self.text()))
    }

    /// Asserts an RFC 6749 error answer: a 4xx status, a JSON body with `error` = `code`.
    fn assert_oauth_error(&self, code: &str, what: &str) {
        assert!(
            (400..500).contains(&self.status),
            "{what}: status {} {}",
            self.status,
            self.text()
        );
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: content type {:?}",
            self.header("content-type")
        );
        assert_eq!(self.json()["error"], code, "{what}: {}", self.text());
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         User-Agent: keyscope-identity-test\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) and close before reading all of an oversized body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() => {
                eprintln!("read ended with {e} after {} bytes", raw.len());
                break;
            }
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size_text = std::str::from_utf8(&rest[..line_end]).unwrap();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Response {
        status,
        headers,
        body,
    }
}

/// Percent-encodes everything but the RFC 3986 unreserved characters.
fn enc(text: &str) -> String {
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

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn dec(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn query_params(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

fn query_get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// 1. Realm isolation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn realm_isolation_keys_tokens_and_forgeries() {
    for database in databases() {
        realm_isolation(database).await;
    }
}

async fn realm_isolation(database: &'static str) {
    println!("--- realm isolation on {database}");
    let svc = Service::start(database, |_| {}).await;
    let a = svc.tenant("a").await;
    let b = svc.tenant("b").await;
    svc.user(&a, "alice").await;
    svc.user(&b, "alice").await;

    // Keys: each realm publishes only its own.
    let kids_a = svc.jwks_kids("/t/a").await;
    let kids_b = svc.jwks_kids("/t/b").await;
    let kids_c = svc.jwks_kids("/consumers").await;
    assert!(!kids_a.is_empty() && !kids_b.is_empty() && !kids_c.is_empty());
    assert!(kids_a.is_disjoint(&kids_b), "{kids_a:?} / {kids_b:?}");
    assert!(kids_a.is_disjoint(&kids_c), "{kids_a:?} / {kids_c:?}");
    assert!(kids_b.is_disjoint(&kids_c), "{kids_b:?} / {kids_c:?}");
    // Every published key names its own realm's issuer.
    for (path, realm) in [("/t/a", "a"), ("/t/b", "b"), ("/consumers", "consumers")] {
        let jwks = svc.get(&format!("{path}/jwks"), &[]).await.json();
        for key in jwks["keys"].as_array().unwrap() {
            assert_eq!(key["issuer"], svc.issuer(realm), "{path}: {key}");
            assert!(key.get("d").is_none(), "private member published: {key}");
        }
    }
    // A tenant that does not exist has no endpoints at all.
    let missing = svc.get("/t/nope/jwks", &[]).await;
    assert_eq!(missing.status, 404);
    missing.assert_oauth_error("invalid_request", "JWKS of an unknown realm");

    // A token of A: accepted by A, refused by B.
    let minted = svc
        .identity
        .issue_operator_token(&a, "alice", None, None, None, &RequestContext::operator())
        .await
        .unwrap();
    let token_a = minted.access_token;
    assert!(kids_a.contains(&minted.kid));
    let bearer = format!("Bearer {token_a}");
    let at_a = svc
        .get("/t/a/userinfo", &[("Authorization", &bearer)])
        .await;
    assert_eq!(at_a.status, 200, "{}", at_a.text());
    assert_eq!(at_a.json()["tid"], "a");
    let at_b = svc
        .get("/t/b/userinfo", &[("Authorization", &bearer)])
        .await;
    assert_eq!(at_b.status, 401, "{}", at_b.text());
    assert_eq!(at_b.json()["error"], "invalid_token");
    assert!(
        at_b.header("www-authenticate")
            .is_some_and(|h| h.contains("invalid_token")),
        "{:?}",
        at_b.header("www-authenticate")
    );
    let at_consumers = svc
        .get("/consumers/userinfo", &[("Authorization", &bearer)])
        .await;
    assert_eq!(at_consumers.status, 401);
    assert_eq!(svc.reason(&token_a, "b").await, "wrong_realm");
    assert_eq!(svc.reason(&token_a, "consumers").await, "wrong_realm");
    assert_eq!(svc.reason(&token_a, "a").await, "accepted");

    // Client credentials token of A: same story.
    let (daemon_a, secret_a) = svc.confidential_app("a").await;
    let cc = svc.client_credentials("/t/a", &daemon_a, &secret_a).await;
    assert_eq!(cc.status, 200, "{}", cc.text());
    let cc_token = cc.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&cc_token)["tid"], "a");
    assert_eq!(svc.reason(&cc_token, "b").await, "wrong_realm");
    assert_eq!(svc.reason(&cc_token, "a").await, "accepted");
    // A's credentials do not work at B's token endpoint either.
    svc.client_credentials("/t/b", &daemon_a, &secret_a)
        .await
        .assert_oauth_error("invalid_client", "A's client at B");

    // Forgery 1: a fresh key claiming B's issuer, tid and active kid.
    let b_kid = svc.active_kid("b").await;
    let now = unix_now();
    let forged_claims = |iss: &str, tid: &str| {
        json!({
            "iss": iss, "sub": "attacker", "aud": svc.identity.config().public_url,
            "exp": now + 300, "iat": now, "nbf": now,
            "jti": keyscope_identity::random_id(16), "client_id": "x", "tid": tid,
            "scope": "openid",
        })
        .to_string()
    };
    let mut typ = Map::new();
    typ.insert("typ".into(), "at+jwt".into());
    let fresh = keyscope_jose::SigningKey::generate(
        keyscope_jose::Algorithm::Es256,
        b_kid.clone(),
        Some(svc.issuer("b")),
    )
    .unwrap();
    let forged = fresh
        .sign_compact(typ.clone(), forged_claims(&svc.issuer("b"), "b").as_bytes())
        .unwrap();
    let reason = svc.reason(&forged, "b").await;
    assert!(
        reason == "bad_signature" || reason == "unknown_key",
        "forged with a fresh key under B's kid: {reason}"
    );
    let forged_at_b = svc
        .get(
            "/t/b/userinfo",
            &[("Authorization", &format!("Bearer {forged}"))],
        )
        .await;
    assert_eq!(forged_at_b.status, 401);
    assert_eq!(forged_at_b.json()["error"], "invalid_token");

    // Forgery 2 (Storm-0558 proper): the thief has A's real private key (we unseal it the way
    // a thief with the master key and a database dump could) and signs a token claiming B.
    let a_kid = svc.active_kid("a").await;
    let record = svc.identity.store().key(&a_kid).await.unwrap().unwrap();
    let thief = SealedKeyStore::new(MasterKey::from_bytes(svc.master));
    let binding = keyscope_identity::sealing_binding("a");
    let stolen = thief
        .open(
            &KeySpec {
                kid: &a_kid,
                issuer: &binding,
                alg: keyscope_jose::Algorithm::from_name(&record.alg).unwrap(),
            },
            &keyscope_jose::b64::decode_url(record.key_reference.as_bytes()).unwrap(),
        )
        .unwrap();
    // Sanity: the stolen key really is A's (a token for A with it verifies at A's signature
    // check, and only the issuance ledger stops it).
    let for_a = stolen
        .sign_compact(typ.clone(), forged_claims(&svc.issuer("a"), "a").as_bytes())
        .unwrap();
    assert_eq!(svc.reason(&for_a, "a").await, "token_not_issued");
    for (iss, tid) in [
        (svc.issuer("b"), "b"),
        (svc.issuer("b"), "a"),
        (svc.issuer("a"), "b"),
        (svc.issuer("consumers"), "consumers"),
    ] {
        let token = stolen
            .sign_compact(typ.clone(), forged_claims(&iss, tid).as_bytes())
            .unwrap();
        let reason = match svc.identity.check_access_token(&token, None).await {
            Ok(_) => "accepted".to_owned(),
            Err(r) => r.reason,
        };
        assert_ne!(reason, "accepted", "A's key forging iss={iss} tid={tid}");
        assert_ne!(
            reason, "token_not_issued",
            "A's key forging iss={iss} tid={tid}: the signature check must stop it, not only the ledger"
        );
        println!("A's key claiming iss={iss} tid={tid}: {reason}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Rotation keeps live tokens valid
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_publishes_first_and_keeps_live_tokens_valid() {
    for database in databases() {
        rotation(database).await;
    }
}

async fn rotation(database: &'static str) {
    println!("--- rotation on {database}");
    let svc = Service::start(database, |c| {
        c.jwks_max_age = 1;
        c.rotation_period = 4;
        c.access_token_ttl = 30;
    })
    .await;
    let a = svc.tenant("a").await;
    svc.user(&a, "alice").await;
    let old_kid = svc.active_kid("a").await;
    let old = svc
        .identity
        .mint_access_token(
            &Grant {
                realm: "a",
                subject: "alice-sub",
                client_id: "test-client",
                scope: "openid",
                audience: "https://api.example",
                family_id: None,
                auth_time: None,
                grant_type: "operator",
            },
            &RequestContext::operator(),
        )
        .await
        .unwrap();
    assert_eq!(old.kid, old_kid);

    let started = Instant::now();
    let mut pending_seen: Option<(String, BTreeSet<String>)> = None;
    let mut rotated_after = None;
    while started.elapsed() < Duration::from_secs(9) {
        svc.identity.run_lifecycle().await.unwrap();
        let keys = svc.identity.store().realm_keys("a").await.unwrap();
        if let Some(pending) = keys.iter().find(|k| k.state == KeyState::Pending)
            && pending_seen.is_none()
        {
            let published = svc.jwks_kids("/t/a").await;
            pending_seen = Some((pending.kid.clone(), published));
        }
        // The old token stays valid throughout.
        assert_eq!(
            svc.reason(&old.access_token, "a").await,
            "accepted",
            "old token at {:?}",
            started.elapsed()
        );
        // Stop at the first rotation: with a 4 s period a second one follows 4 s later, and
        // the checks below are about the first.
        if svc.active_kid("a").await != old_kid {
            rotated_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rotated_after = rotated_after.expect("no rotation within 9 s (period 4 s)");
    println!("rotated after {rotated_after:?}");
    let (pending_kid, published) = pending_seen.expect("the new key was never seen pending");
    assert!(
        published.contains(&old_kid) && published.contains(&pending_kid),
        "JWKS during the pending phase: {published:?} (old {old_kid}, pending {pending_kid})"
    );
    let new_kid = svc.active_kid("a").await;
    assert_ne!(new_kid, old_kid);
    assert_eq!(new_kid, pending_kid, "the pending key is the one activated");
    assert_eq!(svc.key_state(&old_kid).await, KeyState::Retiring);
    let published = svc.jwks_kids("/t/a").await;
    assert!(
        published.contains(&old_kid),
        "a retiring key stays published"
    );
    assert!(published.contains(&new_kid));
    assert_eq!(svc.reason(&old.access_token, "a").await, "accepted");
    // New tokens are signed by the new key and are valid too.
    let new = svc
        .identity
        .issue_operator_token(&a, "alice", None, None, None, &RequestContext::operator())
        .await
        .unwrap();
    assert_eq!(new.kid, new_kid);
    assert_eq!(header_of(&new.access_token)["kid"], new_kid.as_str());
    assert_eq!(svc.reason(&new.access_token, "a").await, "accepted");
    // The audit log saw the lifecycle.
    let records = svc.audit_records();
    let saw = |op: &str, kid: &str| {
        records
            .iter()
            .any(|r| r["Operation"] == op && r.get("KeyId").and_then(Value::as_str) == Some(kid))
    };
    assert!(saw("KeyCreated", &new_kid));
    assert!(saw("KeyActivated", &new_kid));
}

// ---------------------------------------------------------------------------------------------
// 3. Revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_key_refuses_its_tokens_at_once_and_a_new_key_signs() {
    for database in databases() {
        revocation(database).await;
    }
}

async fn revocation(database: &'static str) {
    println!("--- key revocation on {database}");
    let svc = Service::start(database, |_| {}).await;
    let a = svc.tenant("a").await;
    let b = svc.tenant("b").await;
    svc.user(&a, "alice").await;
    svc.user(&b, "alice").await;
    let ctx = RequestContext::operator();
    let token = svc
        .identity
        .issue_operator_token(&a, "alice", None, None, None, &ctx)
        .await
        .unwrap();
    let token_b = svc
        .identity
        .issue_operator_token(&b, "alice", None, None, None, &ctx)
        .await
        .unwrap();
    let kid = token.kid.clone();
    assert_eq!(svc.reason(&token.access_token, "a").await, "accepted");

    let revoked = svc
        .identity
        .revoke_key(&kid, "suspected theft", &ctx)
        .await
        .unwrap();
    assert_eq!(revoked.state, KeyState::Revoked);
    assert_eq!(revoked.revoked_reason.as_deref(), Some("suspected theft"));
    // Immediately, in-process: no poll, no wait.
    assert_eq!(svc.reason(&token.access_token, "a").await, "key_revoked");
    let at = svc
        .get(
            "/t/a/userinfo",
            &[("Authorization", &format!("Bearer {}", token.access_token))],
        )
        .await;
    assert_eq!(at.status, 401);
    assert_eq!(at.json()["error"], "invalid_token");
    assert!(!svc.jwks_kids("/t/a").await.contains(&kid));
    // Another realm is untouched.
    assert_eq!(svc.reason(&token_b.access_token, "b").await, "accepted");

    let new_kid = svc.active_kid("a").await;
    assert_ne!(new_kid, kid);
    assert!(svc.jwks_kids("/t/a").await.contains(&new_kid));
    let fresh = svc
        .identity
        .issue_operator_token(&a, "alice", None, None, None, &ctx)
        .await
        .unwrap();
    assert_eq!(fresh.kid, new_kid);
    assert_eq!(svc.reason(&fresh.access_token, "a").await, "accepted");
    let at = svc
        .get(
            "/t/a/userinfo",
            &[("Authorization", &format!("Bearer {}", fresh.access_token))],
        )
        .await;
    assert_eq!(at.status, 200, "{}", at.text());

    // Revoking twice is not an error; revoking an unknown kid is NotFound.
    svc.identity.revoke_key(&kid, "again", &ctx).await.unwrap();
    assert!(svc.identity.revoke_key("nope", "x", &ctx).await.is_err());
    assert!(
        svc.identity
            .revoke_key(&new_kid, "   ", &ctx)
            .await
            .is_err()
    );
    assert_eq!(svc.active_kid("a").await, new_kid);

    // A pending key can be revoked too, and never becomes active.
    let pending = svc.identity.rotate_key(&a, false, &ctx).await.unwrap();
    assert_eq!(pending.state, KeyState::Pending);
    assert!(svc.jwks_kids("/t/a").await.contains(&pending.kid));
    svc.identity
        .revoke_key(&pending.kid, "bad batch", &ctx)
        .await
        .unwrap();
    assert!(!svc.jwks_kids("/t/a").await.contains(&pending.kid));
    svc.identity.run_lifecycle().await.unwrap();
    assert_eq!(svc.active_kid("a").await, new_kid);
    assert_eq!(svc.key_state(&pending.kid).await, KeyState::Revoked);
}

// ---------------------------------------------------------------------------------------------
// 4. Codes and refresh tokens: replay revokes the family, other realms are refused
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_and_refresh_replay_revoke_the_family_and_stay_in_their_realm() {
    for database in databases() {
        replay(database).await;
    }
}

async fn replay(database: &'static str) {
    println!("--- code and refresh replay on {database}");
    let svc = Service::start(database, |_| {}).await;
    let a = svc.tenant("a").await;
    let b = svc.tenant("b").await;
    svc.user(&a, "alice").await;
    svc.user(&b, "alice").await;
    let app_a = svc.public_app("a").await;
    let app_b = svc.public_app("b").await;

    // A code of A presented at B (by B's client, and by A's client id) is refused ...
    let v1 = verifier("one");
    let code = svc.sign_in("/t/a", &app_a, &v1).await;
    svc.exchange_code("/t/b", &app_b, &code, &v1)
        .await
        .assert_oauth_error("invalid_grant", "A's code at B with B's client");
    svc.exchange_code("/t/b", &app_a, &code, &v1)
        .await
        .assert_oauth_error("invalid_client", "A's code at B with A's client");
    // ... and A's client at A with the code of ... itself still works: B did not burn it.
    let first = svc.exchange_code("/t/a", &app_a, &code, &v1).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    let access = first["access_token"].as_str().unwrap().to_owned();
    assert!(first["refresh_token"].is_string());
    assert!(first["id_token"].is_string());
    // Token confusion: the ID token (same key, typ JWT, aud the client) is not an access token.
    let id_token = first["id_token"].as_str().unwrap();
    assert_eq!(claims(id_token)["aud"], app_a.as_str());
    let reason = svc.reason(id_token, "a").await;
    assert_ne!(reason, "accepted", "an ID token used as an access token");
    let r = svc
        .get(
            "/t/a/userinfo",
            &[("Authorization", &format!("Bearer {id_token}"))],
        )
        .await;
    assert_eq!(r.status, 401, "ID token at userinfo: {}", r.text());
    println!("ID token as access token: {reason}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(claims(&access)["tid"], "a");
    assert_eq!(svc.reason(&access, "a").await, "accepted");
    // The refresh token of A is refused at B.
    svc.refresh("/t/b", &app_b, first["refresh_token"].as_str().unwrap())
        .await
        .assert_oauth_error("invalid_grant", "A's refresh token at B");

    // Replay the code at A: refused, and what it produced is revoked.
    svc.exchange_code("/t/a", &app_a, &code, &v1)
        .await
        .assert_oauth_error("invalid_grant", "replayed code");
    assert_eq!(svc.reason(&access, "a").await, "token_revoked");
    svc.refresh("/t/a", &app_a, first["refresh_token"].as_str().unwrap())
        .await
        .assert_oauth_error("invalid_grant", "refresh token of a replayed code's family");

    // Refresh rotation, then replay of the spent refresh token.
    let v2 = verifier("two");
    let code = svc.sign_in("/t/a", &app_a, &v2).await;
    let grant = svc.exchange_code("/t/a", &app_a, &code, &v2).await;
    assert_eq!(grant.status, 200, "{}", grant.text());
    let grant = grant.json();
    let access1 = grant["access_token"].as_str().unwrap().to_owned();
    let refresh1 = grant["refresh_token"].as_str().unwrap().to_owned();
    let rotated = svc.refresh("/t/a", &app_a, &refresh1).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let rotated = rotated.json();
    let access2 = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    assert_eq!(svc.reason(&access2, "a").await, "accepted");
    svc.refresh("/t/b", &app_b, &refresh2)
        .await
        .assert_oauth_error("invalid_grant", "A's rotated refresh token at B");
    // Presenting refresh2 at B must not have spent it: prove it by replaying refresh1 only
    // after checking refresh2 is still live through introspection-free means (the ledger).
    assert_eq!(svc.reason(&access2, "a").await, "accepted");
    svc.refresh("/t/a", &app_a, &refresh1)
        .await
        .assert_oauth_error("invalid_grant", "replayed refresh token");
    svc.refresh("/t/a", &app_a, &refresh2)
        .await
        .assert_oauth_error("invalid_grant", "refresh token of a revoked family");
    assert_eq!(svc.reason(&access2, "a").await, "token_revoked");
    assert_eq!(svc.reason(&access1, "a").await, "token_revoked");

    // The revocations are in the audit log.
    let records = svc.audit_records();
    let family_revocations: Vec<_> = records
        .iter()
        .filter(|r| r["Operation"] == "TokenRevoked" && r.contains_key("TokenFamily"))
        .map(|r| r["Reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        family_revocations
            .iter()
            .any(|r| r == "authorization code replayed"),
        "{family_revocations:?}"
    );
    assert!(
        family_revocations
            .iter()
            .any(|r| r == "refresh token replayed"),
        "{family_revocations:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Hostile input
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_get_oauth_errors_never_5xx_and_are_audited() {
    for database in databases() {
        hostile(database).await;
    }
}

/// Asserts that the audit log grew by at least one record whose `Operation` is `operation`
/// and `Reason` is `reason`, since `before` records; returns the new count.
fn assert_audited(
    svc: &Service,
    before: usize,
    operation: &str,
    reason: &str,
    what: &str,
) -> usize {
    let records = svc.audit_records();
    let new = &records[before.min(records.len())..];
    assert!(
        new.iter().any(|r| r["Operation"] == operation
            && r.get("Reason").and_then(Value::as_str) == Some(reason)
            && r["ResultStatus"] == "Failure"),
        "{what}: no {operation} failure with Reason {reason} in {new:?}"
    );
    records.len()
}

async fn hostile(database: &'static str) {
    println!("--- hostile input on {database}");
    let svc = Service::start(database, |_| {}).await;
    let a = svc.tenant("a").await;
    svc.tenant("b").await;
    svc.user(&a, "alice").await;
    let app = svc.public_app("a").await;
    let (daemon, secret) = svc.confidential_app("a").await;
    let (daemon_b, secret_b) = svc.confidential_app("b").await;
    let auth = basic(&daemon, &secret);
    let mut seen = svc.audit_records().len();

    // Token endpoint, one hostile request at a time.
    let r = svc
        .post_form(
            "/t/a/token",
            &[("Authorization", &auth)],
            "grant_type=password&username=x&password=y",
        )
        .await;
    r.assert_oauth_error("unsupported_grant_type", "unknown grant_type");
    seen = assert_audited(
        &svc,
        seen,
        "TokenIssued",
        "unsupported_grant_type",
        "unknown grant",
    );

    let r = svc
        .post_form("/t/a/token", &[("Authorization", &auth)], "scope=x")
        .await;
    r.assert_oauth_error("invalid_request", "missing grant_type");
    seen = assert_audited(
        &svc,
        seen,
        "TokenIssued",
        "invalid_request",
        "missing grant_type",
    );

    // PKCE: a well-formed but wrong verifier, and a malformed one.
    let v = verifier("pkce");
    let code = svc.sign_in("/t/a", &app, &v).await;
    let r = svc
        .exchange_code("/t/a", &app, &code, &verifier("wrong"))
        .await;
    r.assert_oauth_error("invalid_grant", "wrong PKCE verifier");
    seen = assert_audited(&svc, seen, "TokenIssued", "invalid_grant", "wrong verifier");
    let code = svc.sign_in("/t/a", &app, &v).await;
    let r = svc.exchange_code("/t/a", &app, &code, "short").await;
    assert!(
        ["invalid_grant", "invalid_request"].contains(&r.json()["error"].as_str().unwrap()),
        "{}",
        r.text()
    );
    assert!((400..500).contains(&r.status));
    let reason = r.json()["error"].as_str().unwrap().to_owned();
    seen = assert_audited(&svc, seen, "TokenIssued", &reason, "malformed verifier");

    // Wrong redirect_uri at the token endpoint.
    let code = svc.sign_in("/t/a", &app, &v).await;
    let r = svc
        .post_form(
            "/t/a/token",
            &[],
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:9/other"),
                ("code_verifier", &v),
                ("client_id", &app),
            ]),
        )
        .await;
    r.assert_oauth_error("invalid_grant", "wrong redirect_uri");
    assert_audited(
        &svc,
        seen,
        "TokenIssued",
        "invalid_grant",
        "wrong redirect_uri",
    );

    // A replayed code.
    let code = svc.sign_in("/t/a", &app, &v).await;
    let ok = svc.exchange_code("/t/a", &app, &code, &v).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    seen = svc.audit_records().len();
    let r = svc.exchange_code("/t/a", &app, &code, &v).await;
    r.assert_oauth_error("invalid_grant", "replayed code");
    seen = assert_audited(&svc, seen, "TokenIssued", "invalid_grant", "replayed code");

    // An oversized body (> 16 KiB).
    let big = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(17 * 1024)
    );
    let r = svc
        .post_form("/t/a/token", &[("Authorization", &auth)], &big)
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"].is_string(), "{}", r.text());
    seen = assert_audited(
        &svc,
        seen,
        "TokenIssued",
        "invalid_request",
        "oversized body",
    );

    // A JSON body.
    let r = request(
        svc.addr,
        "POST",
        "/t/a/token",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        br#"{"grant_type":"client_credentials"}"#,
    )
    .await;
    r.assert_oauth_error("invalid_request", "JSON body");
    seen = assert_audited(&svc, seen, "TokenIssued", "invalid_request", "JSON body");

    // Duplicate parameters.
    let r = svc
        .post_form(
            "/t/a/token",
            &[("Authorization", &auth)],
            "grant_type=client_credentials&grant_type=client_credentials",
        )
        .await;
    r.assert_oauth_error("invalid_request", "duplicate grant_type");
    seen = assert_audited(
        &svc,
        seen,
        "TokenIssued",
        "invalid_request",
        "duplicate parameter",
    );

    // Another realm's client.
    let r = svc.client_credentials("/t/a", &daemon_b, &secret_b).await;
    r.assert_oauth_error("invalid_client", "B's client at A");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    seen = assert_audited(
        &svc,
        seen,
        "TokenIssued",
        "invalid_client",
        "another realm's client",
    );

    // Bad Basic credentials: garbage, and a wrong secret.
    for header in [
        "Basic !!!not-base64!!!",
        basic(&daemon, "wrong-secret").as_str(),
    ] {
        let r = svc
            .post_form(
                "/t/a/token",
                &[("Authorization", header)],
                "grant_type=client_credentials",
            )
            .await;
        r.assert_oauth_error("invalid_client", header);
        assert_eq!(r.status, 401);
        seen = assert_audited(&svc, seen, "TokenIssued", "invalid_client", header);
    }

    // Authorization endpoint.
    let challenge = keyscope_oauth::pkce::s256_challenge(&v);
    let authorize = |pairs: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!("/t/a/authorize?{}", form(&pairs))
    };
    let base = |client: &str, redirect: &str| {
        vec![
            ("response_type", "code".to_owned()),
            ("client_id", client.to_owned()),
            ("redirect_uri", redirect.to_owned()),
            ("scope", "openid".to_owned()),
            ("state", "s-1".to_owned()),
        ]
    };
    // Unknown client: an error page, never a redirect.
    let mut pairs = base("no-such-client", REDIRECT);
    pairs.push(("code_challenge", challenge.clone()));
    pairs.push(("code_challenge_method", "S256".to_owned()));
    let r = svc.get(&authorize(pairs), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.header("location").is_none());
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    seen = assert_audited(
        &svc,
        seen,
        "SignIn",
        "invalid_authorization_request",
        "unknown client",
    );
    // Unregistered redirect URI: an error page, never a redirect.
    let mut pairs = base(&app, "http://127.0.0.1:9/evil");
    pairs.push(("code_challenge", challenge.clone()));
    pairs.push(("code_challenge_method", "S256".to_owned()));
    let r = svc.get(&authorize(pairs), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.header("location").is_none());
    seen = assert_audited(
        &svc,
        seen,
        "SignIn",
        "invalid_authorization_request",
        "bad redirect",
    );
    // No code_challenge: redirected back with invalid_request and the state.
    let r = svc.get(&authorize(base(&app, REDIRECT)), &[]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    let query = query_params(location);
    assert_eq!(query_get(&query, "error"), Some("invalid_request"));
    assert_eq!(query_get(&query, "state"), Some("s-1"));
    assert!(query_get(&query, "code").is_none());
    seen = assert_audited(
        &svc,
        seen,
        "SignIn",
        "invalid_authorization_request",
        "no PKCE",
    );
    // code_challenge_method=plain.
    let mut pairs = base(&app, REDIRECT);
    pairs.push(("code_challenge", challenge.clone()));
    pairs.push(("code_challenge_method", "plain".to_owned()));
    let r = svc.get(&authorize(pairs), &[]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let query = query_params(r.header("location").unwrap());
    assert_eq!(query_get(&query, "error"), Some("invalid_request"));
    assert_eq!(query_get(&query, "state"), Some("s-1"));
    seen = assert_audited(
        &svc,
        seen,
        "SignIn",
        "invalid_authorization_request",
        "plain PKCE",
    );

    // A hostile state is escaped in the sign-in page and encoded in an error redirect.
    let xss = "\"><script>alert(1)</script>";
    let hostile = |method: &str| {
        let mut pairs: Vec<(&'static str, String)> = base(&app, REDIRECT)
            .into_iter()
            .filter(|(k, _)| *k != "state")
            .collect();
        pairs.push(("state", xss.to_owned()));
        pairs.push(("code_challenge", challenge.clone()));
        pairs.push(("code_challenge_method", method.to_owned()));
        authorize(pairs)
    };
    let r = svc.get(&hostile("S256"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("<script>alert(1)"), "{}", r.text());
    let r = svc.get(&hostile("plain"), &[]).await;
    assert_eq!(r.status, 303);
    let location = r.header("location").unwrap();
    assert!(
        !location.contains('<') && !location.contains('"'),
        "{location}"
    );
    assert_eq!(query_get(&query_params(location), "state"), Some(xss));
    // A hostile parameter name in a malformed query is escaped on the error page.
    let r = svc
        .get("/t/a/authorize?%3Cscript%3E=1&%3Cscript%3E=2", &[])
        .await;
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("<script>"), "{}", r.text());
    // A repeated resource is invalid_target (RFC 8707), not a 5xx.
    let r = svc
        .post_form(
            "/t/a/token",
            &[("Authorization", &auth)],
            "grant_type=client_credentials&resource=https%3A%2F%2Fa.example&resource=https%3A%2F%2Fb.example",
        )
        .await;
    r.assert_oauth_error("invalid_target", "repeated resource");
    seen = assert_audited(
        &svc,
        seen,
        "TokenIssued",
        "invalid_target",
        "repeated resource",
    );

    // Sign-in: a wrong password is a 401 page; after 5 failures the account is throttled.
    let mut sign_in = base(&app, REDIRECT);
    sign_in.push(("code_challenge", challenge.clone()));
    sign_in.push(("code_challenge_method", "S256".to_owned()));
    sign_in.push(("username", "alice".to_owned()));
    let attempt = |password: &str| {
        let mut pairs = sign_in.clone();
        pairs.push(("password", password.to_owned()));
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form(&pairs)
    };
    for i in 0..keyscope_identity::throttle::ACCOUNT_LIMIT {
        let r = svc
            .post_form("/t/a/authorize", &[], &attempt("wrong password!"))
            .await;
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(r.header("location").is_none());
        seen = assert_audited(
            &svc,
            seen,
            "SignIn",
            "invalid_credentials",
            "wrong password",
        );
    }
    // Throttled now, even with the right password.
    let r = svc
        .post_form("/t/a/authorize", &[], &attempt(PASSWORD))
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("location").is_none());
    seen = assert_audited(&svc, seen, "SignIn", "throttled", "throttled sign-in");
    let _ = seen;

    // Introspection (RFC 7662) by the confidential client.
    let cc = svc.client_credentials("/t/a", &daemon, &secret).await;
    assert_eq!(cc.status, 200, "{}", cc.text());
    let token = cc.json()["access_token"].as_str().unwrap().to_owned();
    let r = svc
        .post_form(
            "/t/a/introspect",
            &[("Authorization", &auth)],
            &form(&[("token", &token)]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["client_id"], daemon.as_str());
    assert_eq!(body["tid"], "a");
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        let r = svc
            .post_form(
                "/t/a/introspect",
                &[("Authorization", &auth)],
                &form(&[("token", garbage)]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), json!({"active": false}), "{garbage}");
    }
    // Introspection at another realm says inactive; without client auth it is refused.
    let r = svc
        .post_form(
            "/t/b/introspect",
            &[("Authorization", &basic(&daemon_b, &secret_b))],
            &form(&[("token", &token)]),
        )
        .await;
    assert_eq!(r.json()["active"], false, "{}", r.text());
    svc.post_form("/t/a/introspect", &[], &form(&[("token", &token)]))
        .await
        .assert_oauth_error("invalid_client", "introspection without client auth");

    // Revocation (RFC 7009) of the access token.
    let r = svc
        .post_form(
            "/t/a/revoke",
            &[("Authorization", &auth)],
            &form(&[("token", &token), ("token_type_hint", "access_token")]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(svc.reason(&token, "a").await, "token_revoked");
    let r = svc
        .post_form(
            "/t/a/introspect",
            &[("Authorization", &auth)],
            &form(&[("token", &token)]),
        )
        .await;
    assert_eq!(r.json()["active"], false);
    assert!(
        svc.audit_records()
            .iter()
            .any(|r| r["Operation"] == "TokenRevoked"
                && r.get("TokenId").and_then(Value::as_str) == claims(&token)["jti"].as_str()),
        "the revocation is audited"
    );
    // Revoking garbage is not an error (RFC 7009 §2.2).
    let r = svc
        .post_form(
            "/t/a/revoke",
            &[("Authorization", &auth)],
            &form(&[("token", "garbage")]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Nothing above was a server error; the server is still healthy.
    assert_eq!(svc.get("/healthz", &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 6. Audit content
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issuance_and_every_admin_action_are_audited() {
    for database in databases() {
        audit_content(database).await;
    }
}

async fn audit_content(database: &'static str) {
    println!("--- audit content on {database}");
    let svc = Service::start(database, |_| {}).await;
    let ctx = RequestContext::operator();
    let a = svc.tenant("a").await;
    svc.user(&a, "alice").await;
    let (daemon, secret) = svc.confidential_app("a").await;
    let public = svc.public_app("a").await;

    let r = svc.client_credentials("/t/a", &daemon, &secret).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let jti = claims(&token)["jti"].as_str().unwrap().to_owned();
    let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
    let records = svc.audit_records();
    let issued: Vec<_> = records
        .iter()
        .filter(|r| r["Operation"] == "TokenIssued" && r["ResultStatus"] == "Success")
        .collect();
    assert_eq!(issued.len(), 1, "{issued:?}");
    let issued = issued[0];
    assert_eq!(issued["TokenId"], jti.as_str());
    assert_eq!(issued["KeyId"], kid.as_str());
    assert_eq!(issued["AppId"], daemon.as_str());
    assert_eq!(issued["OrganizationId"], "a");
    assert_eq!(issued["GrantType"], "client_credentials");
    assert_eq!(issued["Issuer"], svc.issuer("a"));
    assert_eq!(issued["ClientIPAddress"], "127.0.0.1");
    assert_eq!(issued["ClientInfoString"], "keyscope-identity-test");
    assert!(issued["ExpiresAt"].is_i64());
    // The ledger agrees with the audit record.
    let ledger = svc.identity.store().issued(&jti).await.unwrap().unwrap();
    assert_eq!(ledger.kid, kid);
    assert_eq!(ledger.client_id, daemon);

    let pending = svc.identity.rotate_key(&a, false, &ctx).await.unwrap();
    svc.identity
        .revoke_key(&pending.kid, "audit test", &ctx)
        .await
        .unwrap();

    let records = svc.audit_records();
    let admin = |operation: &str, target: &str| {
        records.iter().any(|r| {
            r["Operation"] == "AdminAction"
                && r["AdminOperation"] == operation
                && r["Target"] == target
                && r["ResultStatus"] == "Success"
                && r["UserId"] == "operator"
        })
    };
    assert!(admin("TenantCreated", "a"), "create_tenant");
    assert!(admin("UserAdded", "alice"), "add_user");
    assert!(admin("AppAdded", &daemon), "add_app (confidential)");
    assert!(admin("AppAdded", &public), "add_app (public)");
    assert!(admin("KeyRotationStarted", &pending.kid), "rotate_key");
    assert!(admin("KeyRevoked", &pending.kid), "revoke_key");
    assert!(
        records.iter().any(|r| r["Operation"] == "KeyRevoked"
            && r["KeyId"] == pending.kid.as_str()
            && r["Reason"] == "audit test"),
        "the KeyRevoked event itself"
    );
    // Records are in order and none is lost: seq runs 1..=n.
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["seq"].as_u64(), Some(i as u64 + 1));
    }
    println!("{} audit records on {}", records.len(), svc.database);
}

// ---------------------------------------------------------------------------------------------
// 7. The audit outbox with two nodes draining it
// ---------------------------------------------------------------------------------------------

/// BUG (crates/identity/src/audit.rs, `AuditSink::drain_outbox`): a node reads the queued
/// rows, appends them to its own log and only then deletes them, without claiming them first.
/// When two nodes share a database (the documented multi-node setup), both read the same rows
/// in overlapping polls and both append them: one admin event ends up in two audit logs. This
/// test drains faster than the 250 ms poll to make the race certain; at the real poll rate it
/// happens whenever the two nodes' polls overlap an append. Expected: each queued event in
/// exactly one log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_events_reach_exactly_one_log_when_two_nodes_drain() {
    let mut duplicated = Vec::new();
    for database in databases() {
        duplicated.push((database, outbox_two_nodes(database).await));
    }
    assert!(
        duplicated.iter().all(|(_, n)| *n == 0),
        "queued audit events appended to both nodes' logs (database, events duplicated): \
         {duplicated:?}"
    );
}

async fn outbox_two_nodes(database: &'static str) -> usize {
    println!("--- outbox drained by two nodes on {database}");
    let dir = TempDir::new(database);
    let (store1, store2) = match database {
        "sqlite" => (
            Store::open_sqlite(&dir.0).await.unwrap(),
            Store::open_sqlite(&dir.0).await.unwrap(),
        ),
        _ => {
            let url = keyscope_store::testing::postgres_url().await.unwrap();
            (
                Store::connect(&url).await.unwrap(),
                Store::connect(&url).await.unwrap(),
            )
        }
    };
    let log1 = dir.0.join("audit1");
    let log2 = dir.0.join("audit2");
    let node1 = AuditSink::Log(Arc::new(AuditLog::open(&log1).unwrap()));
    let node2 = AuditSink::Log(Arc::new(AuditLog::open(&log2).unwrap()));
    // An admin command beside the running nodes queues its events in the store.
    let cli = AuditSink::Outbox(store1.clone());
    const EVENTS: usize = 200;
    let drain = |sink: AuditSink, store: Store| {
        tokio::spawn(async move {
            let mut moved = 0;
            let idle_since = Instant::now();
            while idle_since.elapsed() < Duration::from_secs(3) {
                moved += sink.drain_outbox(&store).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            moved
        })
    };
    let d1 = drain(node1, store1.clone());
    let d2 = drain(node2, store2.clone());
    for i in 0..EVENTS {
        cli.record(
            keyscope_identity::Event::new("AdminAction")
                .with("AdminOperation", Some("Test"))
                .with("Target", Some(&format!("event-{i}")))
                .into_map(),
        )
        .await
        .unwrap();
    }
    let moved = d1.await.unwrap() + d2.await.unwrap();
    assert!(store1.queued_audit_events(10).await.unwrap().is_empty());
    let mut targets = std::collections::BTreeMap::new();
    for log in [&log1, &log2] {
        keyscope_audit::read_records(log, |record| {
            if let Some(target) = record.get("Target").and_then(Value::as_str) {
                *targets.entry(target.to_owned()).or_insert(0) += 1;
            }
            true
        })
        .unwrap();
    }
    let duplicated: Vec<_> = targets.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "{moved} appends for {EVENTS} queued events, {} duplicated",
        duplicated.len()
    );
    assert_eq!(targets.len(), EVENTS, "every queued event reached a log");
    duplicated.len()
}
