#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! End-to-end OpenID Connect tests of `keyscope up`: every test starts the real binary on
//! 127.0.0.1 with a fresh data directory, provisions a tenant, a user and two apps with the CLI
//! (against the same data directory, while the server runs), and drives the server with
//! third-party code only:
//!
//! - the `openidconnect` crate (discovery, authorization code + PKCE, the ID-token verifier with
//!   the JWKS it fetched through discovery, userinfo, refresh, client credentials);
//! - the `jsonwebtoken` crate (access tokens checked through discovery + JWKS).
//!
//! The HTTP client under both (and the "browser" that fills in the sign-in form) is the small
//! HTTP/1.1 client at the top of this file: one request per connection, plain http:// only,
//! redirects never followed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::url::Url;
use openidconnect::url::form_urlencoded;
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use serde_json::{Map, Value};

const BIN: &str = env!("CARGO_BIN_EXE_keyscope");
const TENANT: &str = "contoso";
const USERNAME: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// The resource the confidential app may ask for (its default audience).
const MAIL: &str = "https://mail.example/";
/// The server's access-token lifetime (the `keyscope up` default).
const ACCESS_TOKEN_TTL: i64 = 600;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: openidconnect's `SyncHttpClient` is implemented for any
// `Fn(HttpRequest) -> Result<HttpResponse, E>`, so `&send` is the library's HTTP client too.
// ---------------------------------------------------------------------------------------------

fn io_error(message: impl Into<String>) -> std::io::Error {
    std::io::Error::other(message.into())
}

/// Sends one request on its own connection (`Connection: close`) and reads the whole answer.
/// Never follows redirects.
fn send(request: HttpRequest) -> Result<HttpResponse, std::io::Error> {
    let uri = request.uri();
    if uri.scheme_str() != Some("http") {
        return Err(io_error(format!("only http:// is supported here: {uri}")));
    }
    let host = uri
        .host()
        .ok_or_else(|| io_error(format!("no host in {uri}")))?;
    let port = uri.port_u16().unwrap_or(80);
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n",
        request.method()
    );
    for (name, value) in request.headers() {
        if [
            http::header::HOST,
            http::header::CONNECTION,
            http::header::CONTENT_LENGTH,
        ]
        .contains(name)
        {
            continue;
        }
        let value = value
            .to_str()
            .map_err(|_| io_error(format!("header {name} is not ASCII")))?;
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = request.body();
    if !body.is_empty() || request.method() == http::Method::POST {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, std::io::Error> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io_error("the response has no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(std::io::Error::other)?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io_error(format!("bad status line {status_line:?}")))?;
    let mut builder = http::Response::builder().status(status);
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io_error(format!("bad header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(std::io::Error::other)?);
        }
        builder = builder.header(name, value);
    }
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(length) = length {
        if body.len() < length {
            return Err(io_error(
                "the response body is shorter than its Content-Length",
            ));
        }
        body.truncate(length);
    }
    builder.body(body).map_err(std::io::Error::other)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| io_error("truncated chunk size"))?;
        let size_line = std::str::from_utf8(&data[..end]).map_err(std::io::Error::other)?;
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(std::io::Error::other)?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(io_error("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn get(url: &str, bearer: Option<&str>) -> HttpResponse {
    let mut request = http::Request::get(url);
    if let Some(token) = bearer {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    send(request.body(Vec::new()).unwrap()).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn post_form(url: &str, fields: &[(String, String)]) -> HttpResponse {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let request = http::Request::post(url)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body.into_bytes())
        .unwrap();
    send(request).unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn json_of(response: &HttpResponse) -> Value {
    serde_json::from_slice(response.body()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(response.body())
        )
    })
}

fn text_of(response: &HttpResponse) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running `keyscope up` with its own temp directory; killed and removed on drop (its log is
/// printed when the test failed).
struct Server {
    child: Option<Child>,
    base: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Server {
    fn start(label: &str) -> Server {
        let base = std::env::temp_dir().join(format!(
            "keyscope-oidc-e2e-{}-{}-{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let mut server = Server {
            child: None,
            data: base.join("data"),
            base,
            port: 0,
        };
        // The port is free when picked, but another process may take it before the server
        // binds it: try again with another port if the server exits at once.
        for attempt in 0..3 {
            server.port = free_port();
            let log = fs::File::create(server.base.join(format!("server-{attempt}.log"))).unwrap();
            let child = Command::new(BIN)
                .arg("up")
                .arg("--data-dir")
                .arg(&server.data)
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", server.port))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            server.child = Some(child);
            if server.wait_healthy() {
                return server;
            }
        }
        panic!("keyscope up did not start:\n{}", server.logs());
    }

    /// Polls `/healthz` until 200. False if the process exited first.
    fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let url = format!("{}/healthz", self.url());
        while Instant::now() < deadline {
            let child = self.child.as_mut().unwrap();
            if child.try_wait().unwrap().is_some() {
                self.child = None;
                return false;
            }
            let request = http::Request::get(&url).body(Vec::new()).unwrap();
            if let Ok(response) = send(request)
                && response.status() == 200
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "GET /healthz did not answer 200 within {STARTUP_TIMEOUT:?}:\n{}",
            self.logs()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn issuer(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}", self.url())
    }

    fn consumers(&self) -> String {
        format!("{}/consumers", self.url())
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for attempt in 0..3 {
            if let Ok(text) = fs::read_to_string(self.base.join(format!("server-{attempt}.log"))) {
                out.push_str(&format!("--- server log {attempt} ---\n{text}"));
            }
        }
        out
    }

    /// Runs `keyscope ARGS --data-dir D` and returns its stdout; the command must succeed.
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
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
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "keyscope {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// A server with tenant `contoso`, user `alice`, a public app `web` (code + refresh, PKCE) and
/// a confidential app `daemon` (client credentials, resource `https://mail.example/`).
struct Tenant {
    server: Server,
    issuer: String,
    web_client_id: String,
    redirect_uri: String,
    daemon_client_id: String,
    daemon_secret: String,
}

fn provision(label: &str) -> Tenant {
    let server = Server::start(label);
    server.cli(&["tenant", "create", TENANT], None);
    server.cli(
        &[
            "user",
            "add",
            "--tenant",
            TENANT,
            USERNAME,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    // Nothing listens there: the test reads the redirect from the Location header.
    let redirect_uri = format!("http://127.0.0.1:{}/callback", free_port());
    let web: Value = serde_json::from_str(&server.cli(
        &[
            "app",
            "add",
            "--tenant",
            TENANT,
            "--name",
            "web",
            "--redirect-uri",
            &redirect_uri,
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(web["token_endpoint_auth_method"], "none", "{web}");
    let daemon: Value = serde_json::from_str(&server.cli(
        &[
            "app",
            "add",
            "--tenant",
            TENANT,
            "--name",
            "daemon",
            "--confidential",
            "--resource",
            MAIL,
            "--json",
        ],
        None,
    ))
    .unwrap();
    let issuer = server.issuer(TENANT);
    assert_eq!(web["issuer"], issuer.as_str());
    // The server polls the store every 250 ms: wait until it publishes the tenant's key.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = get(&format!("{issuer}/jwks"), None);
        if response.status() == 200
            && json_of(&response)["keys"]
                .as_array()
                .is_some_and(|k| !k.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never published the keys of {TENANT}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Tenant {
        issuer,
        web_client_id: web["client_id"].as_str().unwrap().to_owned(),
        redirect_uri,
        daemon_client_id: daemon["client_id"].as_str().unwrap().to_owned(),
        daemon_secret: daemon["client_secret"].as_str().unwrap().to_owned(),
        server,
    }
}

// ---------------------------------------------------------------------------------------------
// The relying party (openidconnect) and the browser
// ---------------------------------------------------------------------------------------------

/// A client built from discovery: authorization endpoint known, token and userinfo endpoints
/// maybe.
type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn discover(issuer: &str) -> CoreProviderMetadata {
    CoreProviderMetadata::discover(&IssuerUrl::new(issuer.to_owned()).unwrap(), &send)
        .unwrap_or_else(|e| panic!("discovery of {issuer} failed: {e:?}"))
}

fn web_client(tenant: &Tenant) -> DiscoveredClient {
    CoreClient::from_provider_metadata(
        discover(&tenant.issuer),
        ClientId::new(tenant.web_client_id.clone()),
        None,
    )
    .set_redirect_uri(RedirectUrl::new(tenant.redirect_uri.clone()).unwrap())
}

fn daemon_client(tenant: &Tenant, secret: &str) -> DiscoveredClient {
    CoreClient::from_provider_metadata(
        discover(&tenant.issuer),
        ClientId::new(tenant.daemon_client_id.clone()),
        Some(ClientSecret::new(secret.to_owned())),
    )
    .set_auth_type(AuthType::BasicAuth)
}

/// What the authorization-code flow produced.
struct SignedIn {
    client: DiscoveredClient,
    tokens: CoreTokenResponse,
    nonce: Nonce,
}

/// The authorization-code + PKCE flow: the library builds the request, the "browser" signs
/// in, the library redeems the code.
fn sign_in(tenant: &Tenant) -> SignedIn {
    let client = web_client(tenant);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    assert!(
        authorize_url
            .as_str()
            .starts_with(&format!("{}/authorize?", tenant.issuer)),
        "{authorize_url}"
    );

    // The browser: the sign-in page...
    let page = get(authorize_url.as_str(), None);
    assert_eq!(page.status(), 200, "{}", text_of(&page));
    assert!(
        header(&page, "content-type").is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers()
    );
    let (action, hidden) = common::sign_in_form(&text_of(&page));
    assert_eq!(action, format!("{}/authorize", tenant.issuer));
    let field = |name: &str| {
        hidden
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no hidden field {name}: {hidden:?}"))
    };
    assert_eq!(field("state"), *csrf.secret());
    assert_eq!(field("nonce"), *nonce.secret());
    assert_eq!(field("client_id"), tenant.web_client_id);
    assert_eq!(field("redirect_uri"), tenant.redirect_uri);
    assert_eq!(field("code_challenge_method"), "S256");
    assert_eq!(field("response_type"), "code");
    assert_eq!(field("scope"), "openid");

    // ...a wrong password is refused on the page...
    let mut fields = hidden.clone();
    fields.push(("username".into(), USERNAME.into()));
    fields.push(("password".into(), "not the password".into()));
    let refused = post_form(&action, &fields);
    assert_eq!(refused.status(), 401, "{}", text_of(&refused));
    assert!(header(&refused, "location").is_none());

    // ...the right one redirects to the client with the code.
    let mut fields = hidden;
    fields.push(("username".into(), USERNAME.into()));
    fields.push(("password".into(), PASSWORD.into()));
    let response = post_form(&action, &fields);
    assert_eq!(response.status(), 303, "{}", text_of(&response));
    let location = header(&response, "location").expect("no Location");
    let location = Url::parse(location).unwrap();
    let registered = Url::parse(&tenant.redirect_uri).unwrap();
    assert_eq!(location.origin(), registered.origin(), "{location}");
    assert_eq!(location.path(), registered.path(), "{location}");
    let params: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    assert!(!params.contains_key("error"), "{location}");
    assert_eq!(params.get("state"), Some(csrf.secret()), "{location}");
    assert_eq!(params.get("iss"), Some(&tenant.issuer), "{location}");
    let code = params.get("code").expect("no code").clone();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request(&send)
        .unwrap_or_else(|e| panic!("the code exchange failed: {e:?}"));
    SignedIn {
        client,
        tokens,
        nonce,
    }
}

/// The OAuth error code of a failed token request.
fn token_error<T: std::fmt::Debug>(
    result: Result<
        T,
        RequestTokenError<
            std::io::Error,
            openidconnect::StandardErrorResponse<CoreErrorResponseType>,
        >,
    >,
) -> CoreErrorResponseType {
    match result {
        Err(RequestTokenError::ServerResponse(response)) => response.error().clone(),
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
}

fn userinfo(issuer: &str, token: &str) -> HttpResponse {
    get(&format!("{issuer}/userinfo"), Some(token))
}

// ---------------------------------------------------------------------------------------------
// The resource server (jsonwebtoken)
// ---------------------------------------------------------------------------------------------

/// The issuer's JWKS, found through its discovery document.
fn jwks_through_discovery(issuer: &str) -> JwkSet {
    let discovery = get(&format!("{issuer}/.well-known/openid-configuration"), None);
    assert_eq!(discovery.status(), 200);
    let discovery = json_of(&discovery);
    assert_eq!(discovery["issuer"], issuer);
    let jwks_uri = discovery["jwks_uri"].as_str().expect("no jwks_uri");
    let jwks = get(jwks_uri, None);
    assert_eq!(jwks.status(), 200);
    serde_json::from_slice(jwks.body()).unwrap_or_else(|e| {
        panic!(
            "jsonwebtoken cannot read the JWKS ({e}): {}",
            text_of(&jwks)
        )
    })
}

/// Validates an access token as a resource server would with `jsonwebtoken`: key by `kid`
/// from the issuer's JWKS, ES256 only, the issuer and the audience required.
fn validate_access_token(
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<Map<String, Value>, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("the access token has no kid");
    let jwks = jwks_through_discovery(issuer);
    let Some(jwk) = jwks.find(&kid) else {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
    };
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map(|data| data.claims)
}

fn kids(jwks: &JwkSet) -> BTreeSet<String> {
    jwks.keys
        .iter()
        .map(|k| k.common.key_id.clone().expect("a JWK without kid"))
        .collect()
}

fn int_claim(claims: &Map<String, Value>, name: &str) -> i64 {
    claims
        .get(name)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer claim {name}: {claims:?}"))
}

fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> &'a str {
    claims
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string claim {name}: {claims:?}"))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn authorization_code_with_pkce_then_refresh_rotation() {
    let tenant = provision("code");
    let SignedIn {
        client,
        tokens,
        nonce,
    } = sign_in(&tenant);

    assert_eq!(tokens.token_type().as_ref(), "bearer");
    assert_eq!(
        tokens.expires_in(),
        Some(Duration::from_secs(ACCESS_TOKEN_TTL as u64))
    );
    assert!(
        tokens
            .scopes()
            .is_some_and(|s| s.contains(&Scope::new("openid".into()))),
        "{:?}",
        tokens.scopes()
    );

    // The ID token, checked by the library against the JWKS it fetched through discovery.
    let id_token = tokens.id_token().expect("no ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .unwrap_or_else(|e| panic!("the ID token was refused: {e:?}"));
    assert_eq!(claims.issuer().as_str(), tenant.issuer);
    assert_eq!(
        claims.audiences(),
        &[openidconnect::Audience::new(tenant.web_client_id.clone())]
    );
    assert_eq!(
        id_token.signing_alg().unwrap(),
        &CoreJwsSigningAlgorithm::EcdsaP256Sha256
    );
    assert!(claims.auth_time().is_some());
    let subject = claims.subject().clone();
    // A different nonce is refused: the check is real.
    assert!(
        id_token
            .claims(&verifier, &Nonce::new("another nonce".into()))
            .is_err()
    );

    // The access token at the tenant's userinfo: by hand...
    let access = tokens.access_token().secret().clone();
    let info = userinfo(&tenant.issuer, &access);
    assert_eq!(info.status(), 200, "{}", text_of(&info));
    let info = json_of(&info);
    assert_eq!(info["preferred_username"], USERNAME);
    assert_eq!(info["sub"], subject.as_str());
    assert_eq!(info["tid"], TENANT);
    // ...and through the library (which checks the subject against the ID token's).
    let library_info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), Some(subject.clone()))
        .unwrap()
        .request(&send)
        .unwrap_or_else(|e| panic!("userinfo through the library failed: {e:?}"));
    assert_eq!(
        library_info.preferred_username().map(|u| u.as_str()),
        Some(USERNAME)
    );

    // Refresh: a new refresh token each time (rotation).
    let first_refresh = tokens.refresh_token().expect("no refresh token").clone();
    let refreshed = client
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request(&send)
        .unwrap_or_else(|e| panic!("the refresh failed: {e:?}"));
    let second_refresh = refreshed
        .refresh_token()
        .expect("the refresh returned no new refresh token")
        .clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    let second_access = refreshed.access_token().secret().clone();
    assert_ne!(second_access, access);
    assert_eq!(userinfo(&tenant.issuer, &second_access).status(), 200);
    {
        // Keyscope returns a new ID token on refresh. OpenID Connect Core §12.2: same issuer,
        // subject and authentication time; a nonce only if it is the original one.
        let id_token = refreshed
            .id_token()
            .expect("the refresh returned no ID token");
        let original_nonce = nonce.clone();
        let again = id_token
            .claims(&verifier, |n: Option<&Nonce>| match n {
                None => Ok(()),
                Some(n) if n.secret() == original_nonce.secret() => Ok(()),
                Some(_) => Err("another nonce".to_owned()),
            })
            .unwrap_or_else(|e| panic!("the refreshed ID token was refused: {e:?}"));
        assert_eq!(again.subject(), &subject);
        assert_eq!(again.auth_time(), claims.auth_time());
    }

    // Replaying the spent refresh token fails and revokes the family: the new refresh token
    // is refused too, and so are the family's access tokens.
    let replay = client
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request(&send);
    assert_eq!(token_error(replay), CoreErrorResponseType::InvalidGrant);
    let after = client
        .exchange_refresh_token(&second_refresh)
        .unwrap()
        .request(&send);
    assert_eq!(token_error(after), CoreErrorResponseType::InvalidGrant);
    for token in [&access, &second_access] {
        let response = userinfo(&tenant.issuer, token);
        assert_eq!(response.status(), 401, "{}", text_of(&response));
        assert!(
            header(&response, "www-authenticate").is_some_and(|h| h.contains("invalid_token")),
            "{:?}",
            response.headers()
        );
    }
}

#[test]
fn client_credentials_with_client_secret_basic() {
    let tenant = provision("cc");
    let client = daemon_client(&tenant, &tenant.daemon_secret);

    let tokens = client
        .exchange_client_credentials()
        .unwrap()
        .add_extra_param("resource", MAIL)
        .request(&send)
        .unwrap_or_else(|e| panic!("client credentials failed: {e:?}"));
    assert_eq!(tokens.token_type().as_ref(), "bearer");
    assert_eq!(
        tokens.expires_in(),
        Some(Duration::from_secs(ACCESS_TOKEN_TTL as u64))
    );
    assert!(tokens.refresh_token().is_none());
    assert!(tokens.id_token().is_none());
    let claims = validate_access_token(&tenant.issuer, MAIL, tokens.access_token().secret())
        .unwrap_or_else(|e| panic!("the access token was refused: {e:?}"));
    assert_eq!(str_claim(&claims, "iss"), tenant.issuer);
    assert_eq!(str_claim(&claims, "aud"), MAIL);
    assert_eq!(str_claim(&claims, "sub"), tenant.daemon_client_id);
    assert_eq!(str_claim(&claims, "client_id"), tenant.daemon_client_id);
    assert_eq!(str_claim(&claims, "tid"), TENANT);
    assert!(!claims.contains_key("scope"), "{claims:?}");
    assert_eq!(
        int_claim(&claims, "exp") - int_claim(&claims, "iat"),
        ACCESS_TOKEN_TTL
    );

    // Without `resource`, the audience is the app's first resource.
    let default = client
        .exchange_client_credentials()
        .unwrap()
        .request(&send)
        .unwrap_or_else(|e| panic!("client credentials without resource failed: {e:?}"));
    let claims = validate_access_token(&tenant.issuer, MAIL, default.access_token().secret())
        .unwrap_or_else(|e| panic!("the access token was refused: {e:?}"));
    assert_eq!(str_claim(&claims, "aud"), MAIL);

    // A resource the app may not use, a user scope, a wrong secret: refused.
    let other = client
        .exchange_client_credentials()
        .unwrap()
        .add_extra_param("resource", "https://other.example/")
        .request(&send);
    // RFC 8707's invalid_target is not one of the library's core codes.
    assert_eq!(
        token_error(other),
        CoreErrorResponseType::Extension("invalid_target".into())
    );
    let openid = client
        .exchange_client_credentials()
        .unwrap()
        .add_scope(Scope::new("openid".into()))
        .request(&send);
    assert_eq!(token_error(openid), CoreErrorResponseType::InvalidScope);
    let wrong = daemon_client(&tenant, "not-the-secret")
        .exchange_client_credentials()
        .unwrap()
        .request(&send);
    assert_eq!(token_error(wrong), CoreErrorResponseType::InvalidClient);
    // The public app may not use client credentials at all.
    let public = web_client(&tenant)
        .exchange_client_credentials()
        .unwrap()
        .request(&send);
    assert_eq!(token_error(public), CoreErrorResponseType::InvalidClient);
}

#[test]
fn jsonwebtoken_validates_access_tokens_through_discovery_and_jwks() {
    let tenant = provision("jwt");
    let user_token = sign_in(&tenant).tokens.access_token().secret().clone();
    let service_token = daemon_client(&tenant, &tenant.daemon_secret)
        .exchange_client_credentials()
        .unwrap()
        .request(&send)
        .unwrap_or_else(|e| panic!("client credentials failed: {e:?}"))
        .access_token()
        .secret()
        .clone();
    let user = json_of(&userinfo(&tenant.issuer, &user_token));

    // The user's token: the web app names no resource, so its audience is the deployment.
    let deployment = tenant.server.url();
    let claims = validate_access_token(&tenant.issuer, &deployment, &user_token)
        .unwrap_or_else(|e| panic!("the user's access token was refused: {e:?}"));
    assert_eq!(str_claim(&claims, "iss"), tenant.issuer);
    assert_eq!(str_claim(&claims, "aud"), deployment);
    assert_eq!(str_claim(&claims, "tid"), TENANT);
    assert_eq!(str_claim(&claims, "client_id"), tenant.web_client_id);
    assert_eq!(str_claim(&claims, "sub"), user["sub"].as_str().unwrap());
    assert!(str_claim(&claims, "jti").len() >= 16, "{claims:?}");
    assert_eq!(str_claim(&claims, "scope"), "openid");
    assert_eq!(
        int_claim(&claims, "exp") - int_claim(&claims, "iat"),
        ACCESS_TOKEN_TTL
    );
    assert!(int_claim(&claims, "auth_time") <= int_claim(&claims, "iat"));

    // The service's token.
    let claims = validate_access_token(&tenant.issuer, MAIL, &service_token)
        .unwrap_or_else(|e| panic!("the service's access token was refused: {e:?}"));
    assert_eq!(str_claim(&claims, "tid"), TENANT);
    assert_eq!(str_claim(&claims, "client_id"), tenant.daemon_client_id);
    assert!(str_claim(&claims, "jti").len() >= 16, "{claims:?}");
    assert_ne!(
        str_claim(&claims, "jti"),
        str_claim(
            &validate_access_token(&tenant.issuer, &deployment, &user_token).unwrap(),
            "jti"
        )
    );
    assert_eq!(
        int_claim(&claims, "exp") - int_claim(&claims, "iat"),
        ACCESS_TOKEN_TTL
    );

    // The library's checks bite: wrong audience, wrong issuer, a tampered signature.
    use jsonwebtoken::errors::ErrorKind;
    let wrong_aud = validate_access_token(&tenant.issuer, "https://other.example/", &service_token);
    assert!(
        matches!(
            wrong_aud.as_ref().map_err(|e| e.kind()),
            Err(ErrorKind::InvalidAudience)
        ),
        "{wrong_aud:?}"
    );
    let jwks = jwks_through_discovery(&tenant.issuer);
    let kid = jsonwebtoken::decode_header(&service_token)
        .unwrap()
        .kid
        .unwrap();
    let key = DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[tenant.server.consumers()]);
    validation.set_audience(&[MAIL]);
    let wrong_iss = jsonwebtoken::decode::<Map<String, Value>>(&service_token, &key, &validation);
    assert!(
        matches!(
            wrong_iss.as_ref().map_err(|e| e.kind()),
            Err(ErrorKind::InvalidIssuer)
        ),
        "{wrong_iss:?}"
    );
    let mut tampered = service_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let tampered = validate_access_token(&tenant.issuer, MAIL, &tampered);
    assert!(tampered.is_err(), "a tampered signature was accepted");
}

#[test]
fn tenant_tokens_and_keys_stay_out_of_the_consumer_realm() {
    let tenant = provision("realms");
    let signed_in = sign_in(&tenant);
    let user_token = signed_in.tokens.access_token().secret().clone();
    assert_eq!(userinfo(&tenant.issuer, &user_token).status(), 200);

    // The tenant's access token at the consumer realm's userinfo: refused as invalid_token.
    let consumers = tenant.server.consumers();
    let response = userinfo(&consumers, &user_token);
    assert_eq!(response.status(), 401, "{}", text_of(&response));
    let challenge = header(&response, "www-authenticate").expect("no WWW-Authenticate");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // The tenant's keys never appear in the consumer realm's JWKS.
    let tenant_jwks = jwks_through_discovery(&tenant.issuer);
    let consumer_jwks = jwks_through_discovery(&consumers);
    let tenant_kids = kids(&tenant_jwks);
    let consumer_kids = kids(&consumer_jwks);
    assert!(!tenant_kids.is_empty());
    assert!(!consumer_kids.is_empty());
    assert!(
        tenant_kids.is_disjoint(&consumer_kids),
        "{tenant_kids:?} vs {consumer_kids:?}"
    );
    let kid = jsonwebtoken::decode_header(&user_token)
        .unwrap()
        .kid
        .unwrap();
    assert!(tenant_kids.contains(&kid));
    assert!(consumer_jwks.find(&kid).is_none());
    // Nor does any tenant key's public material, under another kid.
    for tenant_key in &tenant_jwks.keys {
        for consumer_key in &consumer_jwks.keys {
            assert_ne!(tenant_key.algorithm, consumer_key.algorithm);
        }
    }

    // An ID token of the tenant does not pass for one of the consumer realm: the library,
    // configured for the consumer issuer (and its JWKS), refuses it.
    let consumer_client = CoreClient::from_provider_metadata(
        discover(&consumers),
        ClientId::new(tenant.web_client_id.clone()),
        None,
    );
    let id_token = signed_in.tokens.id_token().expect("no ID token");
    assert!(
        id_token
            .claims(&consumer_client.id_token_verifier(), &signed_in.nonce)
            .is_err()
    );
    // And a resource server that trusts the consumer realm refuses the tenant's access token.
    assert!(validate_access_token(&consumers, &tenant.server.url(), &user_token).is_err());

    // The access token is still good where it belongs (nothing above consumed it).
    assert_eq!(userinfo(&tenant.issuer, &user_token).status(), 200);
}
