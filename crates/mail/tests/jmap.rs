#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! In-process tests of the mail service: the identity service and the mail service over a
//! real store (SQLite always, PostgreSQL too when `KEYSCOPE_TEST_DATABASE_URL` is set) and a
//! real audit log, served by the real routers on a loopback port and spoken to over HTTP/1.1.
//!
//! Sections follow RFC 8620 (session, request errors, result references, /changes) and
//! RFC 8621 (mailboxes, threads, emails, identities, submission), then the Storm-0558 cases:
//! forged, never-issued, revoked and cross-realm tokens, and randomised isolation between
//! tenants' accounts.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyscope_audit::AuditLog;
use keyscope_custody::{KeyStore, MasterKey, SealedKeyStore};
use keyscope_identity::{AuditSink, Identity, IdentityConfig, RequestContext, unix_now};
use keyscope_mail::{MailConfig, MailService};
use keyscope_store::Store;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USING: [&str; 3] = [
    "urn:ietf:params:jmap:core",
    "urn:ietf:params:jmap:mail",
    "urn:ietf:params:jmap:submission",
];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "keyscope-mail-test-{}-{}-{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn databases() -> Vec<&'static str> {
    let mut list = vec!["sqlite"];
    if std::env::var(keyscope_store::testing::DATABASE_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        list.push("postgres");
    }
    list
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: keyscope-mail-test\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// A user with a token and an account.
#[derive(Clone)]
struct User {
    token: String,
    account: String,
    email: String,
}

struct Service {
    identity: Arc<Identity>,
    addr: SocketAddr,
    audit_dir: PathBuf,
    server: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Service {
    async fn start(database: &'static str) -> Service {
        let dir = TempDir::new(database);
        let store = match database {
            "sqlite" => Store::open_sqlite(&dir.0).await.unwrap(),
            _ => Store::connect(&keyscope_store::testing::postgres_url().await.unwrap())
                .await
                .unwrap(),
        };
        let mut master = [0u8; 32];
        aws_lc_rs::rand::fill(&mut master).unwrap();
        let keystore: Arc<dyn KeyStore> =
            Arc::new(SealedKeyStore::new(MasterKey::from_bytes(master)));
        let audit_dir = dir.0.join("audit");
        let audit = AuditSink::Log(Arc::new(AuditLog::open(&audit_dir).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let public_url = format!("http://{addr}");
        let identity = Identity::start(IdentityConfig::new(&public_url), store, keystore, audit)
            .await
            .unwrap();
        let mail = MailService::new(Arc::clone(&identity), MailConfig::new(&public_url));
        let app = keyscope_identity::http::router(Arc::clone(&identity))
            .merge(keyscope_mail::http::router(mail));
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
            server,
            _dir: dir,
        }
    }

    async fn tenant(&self, name: &str) {
        self.identity
            .create_tenant(name, &RequestContext::operator())
            .await
            .unwrap();
    }

    /// Adds a user to a realm (`None`: consumer) and returns a mail token and account.
    async fn user(&self, realm: Option<&str>, name: &str) -> User {
        let realm = self.identity.realm(realm).await.unwrap();
        let (user, _) = self
            .identity
            .add_user(&realm, name, None, &RequestContext::operator())
            .await
            .unwrap();
        let account = keyscope_mail::account::ensure_account(
            self.identity.store(),
            &user,
            keyscope_mail::DEFAULT_MAIL_DOMAIN,
        )
        .await
        .unwrap();
        User {
            token: self.token(&realm.id, name).await,
            account: account.id,
            email: account.email,
        }
    }

    async fn token(&self, realm: &str, name: &str) -> String {
        let realm = self
            .identity
            .realm(Some(realm).filter(|r| *r != "consumers"))
            .await
            .unwrap();
        self.identity
            .issue_operator_token(&realm, name, None, None, None, &RequestContext::operator())
            .await
            .unwrap()
            .access_token
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("Authorization", b)])
            .unwrap_or_default();
        request(self.addr, "GET", path, &headers, b"").await
    }

    async fn post(&self, path: &str, token: &str, content_type: &str, body: &[u8]) -> Reply {
        let bearer = format!("Bearer {token}");
        request(
            self.addr,
            "POST",
            path,
            &[("Authorization", &bearer), ("Content-Type", content_type)],
            body,
        )
        .await
    }

    /// Sends method calls; returns the methodResponses.
    async fn calls(&self, user: &User, calls: Value) -> Vec<Value> {
        let body = json!({"using": USING, "methodCalls": calls});
        let reply = self
            .post(
                "/jmap/api",
                &user.token,
                "application/json",
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["methodResponses"].as_array().unwrap().clone()
    }

    /// One method call; returns its arguments (panics on an error response).
    async fn call(&self, user: &User, method: &str, mut args: Value) -> Value {
        args["accountId"] = json!(user.account);
        let responses = self.calls(user, json!([[method, args, "c"]])).await;
        assert_eq!(responses[0][0], method, "{responses:?}");
        responses[0][1].clone()
    }

    async fn mailbox(&self, user: &User, role: &str) -> String {
        let list = self.call(user, "Mailbox/get", json!({})).await;
        list["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == role)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn upload(&self, user: &User, data: &[u8], content_type: &str) -> Value {
        let reply = self
            .post(
                &format!("/jmap/upload/{}/", user.account),
                &user.token,
                content_type,
                data,
            )
            .await;
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// Uploads and imports a message into the user's Inbox; returns the created object.
    async fn deliver(&self, user: &User, raw: &str) -> Value {
        let blob = self.upload(user, raw.as_bytes(), "message/rfc822").await;
        let inbox = self.mailbox(user, "inbox").await;
        let mut mailbox_ids = Map::new();
        mailbox_ids.insert(inbox, json!(true));
        let result = self
            .call(
                user,
                "Email/import",
                json!({"emails": {"m": {"blobId": blob["blobId"], "mailboxIds": mailbox_ids,
                                        "receivedAt": "2023-10-02T10:00:00Z"}}}),
            )
            .await;
        result["created"]["m"].clone()
    }

    fn audit(&self) -> Vec<Map<String, Value>> {
        let mut records = Vec::new();
        keyscope_audit::read_records(&self.audit_dir, |record| {
            records.push(record);
            true
        })
        .unwrap();
        records
    }
}

fn message(from: &str, to: &str, subject: &str, id: &str, extra: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 02 Oct 2023 10:00:00 +0000\r\n{extra}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nBody of {subject}.\r\n"
    )
}

// ----- RFC 8620 §2: the Session resource, and authentication -----

#[tokio::test]
async fn session_resource_and_bearer_authentication() {
    for database in databases() {
        let svc = Service::start(database).await;
        svc.tenant("contoso").await;
        let alice = svc.user(Some("contoso"), "alice").await;

        let session = svc.get("/.well-known/jmap", Some(&alice.token)).await;
        assert_eq!(session.status, 200);
        let session = session.json();
        for capability in USING {
            assert!(
                session["capabilities"].get(capability).is_some(),
                "{capability}"
            );
        }
        assert_eq!(
            session["primaryAccounts"]["urn:ietf:params:jmap:mail"],
            alice.account
        );
        assert_eq!(session["username"], "alice@contoso.keyscope.test");
        let base = format!("http://{}", svc.addr);
        assert_eq!(session["apiUrl"], format!("{base}/jmap/api"));
        assert!(
            session["downloadUrl"]
                .as_str()
                .unwrap()
                .contains("{blobId}")
        );
        assert!(
            session["uploadUrl"]
                .as_str()
                .unwrap()
                .contains("{accountId}")
        );
        assert!(
            session["eventSourceUrl"]
                .as_str()
                .unwrap()
                .contains("{closeafter}")
        );
        // The same object at the API URL on GET.
        let again = svc.get("/jmap/api", Some(&alice.token)).await.json();
        assert_eq!(again, session);

        // No credentials: a challenge without an error code (RFC 6750 §3.1).
        let none = svc.get("/.well-known/jmap", None).await;
        assert_eq!(none.status, 401);
        assert_eq!(
            none.header("www-authenticate"),
            Some("Bearer realm=\"keyscope-mail\"")
        );
        // Another scheme is no credentials either.
        let basic = request(
            svc.addr,
            "GET",
            "/.well-known/jmap",
            &[("Authorization", "Basic YWxpY2U6cHc=")],
            b"",
        )
        .await;
        assert_eq!(basic.status, 401);
        // Malformed bearer: 400 invalid_request.
        let malformed = request(
            svc.addr,
            "GET",
            "/.well-known/jmap",
            &[("Authorization", "Bearer a b")],
            b"",
        )
        .await;
        assert_eq!(malformed.status, 400);
        assert!(
            malformed
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_request")
        );
        // Garbage: 401 invalid_token with the reason.
        let garbage = svc.get("/.well-known/jmap", Some("not.a.jwt")).await;
        assert_eq!(garbage.status, 401);
        assert!(
            garbage
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_token")
        );

        // A token for another audience (the identity service itself) does not open mail.
        let realm = svc.identity.realm(Some("contoso")).await.unwrap();
        let public = svc.identity.config().public_url.clone();
        let other = svc
            .identity
            .issue_operator_token(
                &realm,
                "alice",
                None,
                None,
                Some(&public),
                &RequestContext::operator(),
            )
            .await
            .unwrap();
        let refused = svc
            .get("/.well-known/jmap", Some(&other.access_token))
            .await;
        assert_eq!(refused.status, 401);
        assert!(
            refused
                .header("www-authenticate")
                .unwrap()
                .contains("audience_mismatch")
        );

        let records = svc.audit();
        let decisions: Vec<&Map<String, Value>> = records
            .iter()
            .filter(|r| {
                r["Operation"] == "TokenValidated"
                    && r.get("Resource")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.starts_with("jmap"))
            })
            .collect();
        assert!(
            decisions
                .iter()
                .any(|r| r["ResultStatus"] == "Success" && r["MailboxOwnerUPN"] == alice.email)
        );
        let reasons: BTreeSet<&str> = decisions
            .iter()
            .filter_map(|r| r.get("Reason")?.as_str())
            .collect();
        assert!(reasons.contains("audience_mismatch"), "{reasons:?}");
        assert!(reasons.contains("malformed_token"), "{reasons:?}");
    }
}

// ----- RFC 8620 §3.6.1: request-level errors; §3.6.2 method-level errors -----

#[tokio::test]
async fn request_level_and_method_level_errors() {
    let svc = Service::start("sqlite").await;
    svc.tenant("contoso").await;
    let alice = svc.user(Some("contoso"), "alice").await;
    let problem = |reply: &Reply, type_: &str| {
        assert_eq!(
            reply.status,
            400,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(
            reply.json()["type"],
            format!("urn:ietf:params:jmap:error:{type_}")
        );
    };
    let api = |body: &'static [u8]| svc.post("/jmap/api", &alice.token, "application/json", body);
    problem(&api(b"{not json").await, "notJSON");
    problem(&api(b"[1,2]").await, "notRequest");
    problem(
        &api(br#"{"using":[],"methodCalls":{}}"#).await,
        "notRequest",
    );
    problem(
        &api(br#"{"using":["urn:example:nope"],"methodCalls":[]}"#).await,
        "unknownCapability",
    );
    let many: Vec<Value> = (0..100)
        .map(|i| json!(["Core/echo", {}, i.to_string()]))
        .collect();
    let body = json!({"using": USING, "methodCalls": many}).to_string();
    let reply = svc
        .post(
            "/jmap/api",
            &alice.token,
            "application/json",
            body.as_bytes(),
        )
        .await;
    problem(&reply, "limit");
    assert_eq!(reply.json()["limit"], "maxCallsInRequest");

    let responses = svc
        .calls(
            &alice,
            json!([
                ["Core/echo", {"hello": [1, 2]}, "echo"],
                ["Nope/get", {"accountId": alice.account}, "unknown"],
                ["Mailbox/get", {"accountId": "someone-else"}, "account"],
                ["Mailbox/get", {"accountId": alice.account, "ids": "x"}, "type"],
                ["Email/get", {"accountId": alice.account, "ids": [], "properties": ["nope"]}, "prop"],
                ["Email/query", {"accountId": alice.account, "filter": {"header": ["X"]}}, "filter"],
                ["Email/query", {"accountId": alice.account, "sort": [{"property": "color"}]}, "sort"],
                ["Email/changes", {"accountId": alice.account, "sinceState": "999999"}, "state"],
                ["Mailbox/get", {"accountId": alice.account, "#ids": {"resultOf": "zzz", "name": "Email/query", "path": "/ids"}}, "ref"],
            ]),
        )
        .await;
    assert_eq!(
        responses[0],
        json!(["Core/echo", {"hello": [1, 2]}, "echo"])
    );
    let error = |i: usize| responses[i][1]["type"].as_str().unwrap().to_owned();
    assert_eq!(responses[1][0], "error");
    assert_eq!(error(1), "unknownMethod");
    assert_eq!(error(2), "accountNotFound");
    assert_eq!(error(3), "invalidArguments");
    assert_eq!(error(4), "invalidArguments");
    assert_eq!(error(5), "unsupportedFilter");
    assert_eq!(error(6), "unsupportedSort");
    assert_eq!(error(7), "cannotCalculateChanges");
    assert_eq!(error(8), "invalidResultReference");

    // A method of a capability not in "using" is unknown.
    let body = json!({"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Mailbox/get", {"accountId": alice.account}, "0"]]});
    let reply = svc
        .post(
            "/jmap/api",
            &alice.token,
            "application/json",
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(
        reply.json()["methodResponses"][0][1]["type"],
        "unknownMethod"
    );
}

// ----- RFC 8621 §2: mailboxes; RFC 8620 §5.2 /changes -----

#[tokio::test]
async fn mailboxes_roles_set_query_and_changes() {
    for database in databases() {
        let svc = Service::start(database).await;
        let carol = svc.user(None, "carol").await;
        let list = svc.call(&carol, "Mailbox/get", json!({})).await;
        let roles: BTreeSet<String> = list["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            roles,
            ["archive", "drafts", "inbox", "junk", "sent", "trash"]
                .map(str::to_owned)
                .into()
        );
        let state = list["state"].as_str().unwrap().to_owned();
        let inbox = svc.mailbox(&carol, "inbox").await;

        let set = svc
            .call(
                &carol,
                "Mailbox/set",
                json!({"create": {
                    "p": {"name": "Projects"},
                    "c": {"name": "Storm", "parentId": "#p"},
                    "dup": {"name": "Inbox"},
                    "badrole": {"name": "X", "role": "inbox"},
                    "noname": {"parentId": null},
                    "serverset": {"name": "Y", "totalEmails": 3}
                }}),
            )
            .await;
        let project = set["created"]["p"]["id"].as_str().unwrap().to_owned();
        let child = set["created"]["c"]["id"].as_str().unwrap().to_owned();
        assert_eq!(set["notCreated"]["dup"]["type"], "alreadyExists");
        assert_eq!(set["notCreated"]["badrole"]["type"], "invalidProperties");
        assert_eq!(set["notCreated"]["noname"]["properties"], json!(["name"]));
        assert_eq!(
            set["notCreated"]["serverset"]["properties"],
            json!(["totalEmails"])
        );

        let query = svc
            .call(
                &carol,
                "Mailbox/query",
                json!({"filter": {"parentId": project}, "sort": [{"property": "name"}]}),
            )
            .await;
        assert_eq!(query["ids"], json!([child]));

        // A cycle, a destroy of a parent and a missing mailbox are refused.
        let set = svc
            .call(
                &carol,
                "Mailbox/set",
                json!({"update": {project.clone(): {"parentId": child}, "nope": {"name": "z"}},
                       "destroy": [project.clone(), "nope"]}),
            )
            .await;
        assert_eq!(set["notUpdated"][&project]["type"], "invalidProperties");
        assert_eq!(set["notUpdated"]["nope"]["type"], "notFound");
        assert_eq!(set["notDestroyed"][&project]["type"], "mailboxHasChild");
        assert_eq!(set["notDestroyed"]["nope"]["type"], "notFound");

        let changes = svc
            .call(&carol, "Mailbox/changes", json!({"sinceState": state}))
            .await;
        let created: BTreeSet<String> = serde_json::from_value(changes["created"].clone()).unwrap();
        assert_eq!(created, BTreeSet::from([project.clone(), child.clone()]));
        assert_eq!(changes["hasMoreChanges"], false);
        // One at a time, with exact intermediate states.
        let first = svc
            .call(
                &carol,
                "Mailbox/changes",
                json!({"sinceState": state, "maxChanges": 1}),
            )
            .await;
        assert_eq!(first["created"].as_array().unwrap().len(), 1);
        assert_eq!(first["hasMoreChanges"], true);
        let second = svc
            .call(
                &carol,
                "Mailbox/changes",
                json!({"sinceState": first["newState"], "maxChanges": 1}),
            )
            .await;
        assert_eq!(second["created"].as_array().unwrap().len(), 1);
        assert_eq!(second["newState"], changes["newState"]);

        // A non-empty mailbox is kept unless onDestroyRemoveEmails.
        svc.deliver(
            &carol,
            &message("a@x", "carol@consumers.keyscope.test", "hi", "mb1@x", ""),
        )
        .await;
        let mut ids = Map::new();
        ids.insert(child.clone(), json!(true));
        let email = svc
            .call(
                &carol,
                "Email/query",
                json!({"filter": {"inMailbox": inbox}}),
            )
            .await;
        let id = email["ids"][0].as_str().unwrap().to_owned();
        svc.call(
            &carol,
            "Email/set",
            json!({"update": {id.clone(): {"mailboxIds": ids}}}),
        )
        .await;
        let set = svc
            .call(&carol, "Mailbox/set", json!({"destroy": [child.clone()]}))
            .await;
        assert_eq!(set["notDestroyed"][&child]["type"], "mailboxHasEmail");
        let set = svc
            .call(
                &carol,
                "Mailbox/set",
                json!({"destroy": [child.clone(), project.clone()], "onDestroyRemoveEmails": true}),
            )
            .await;
        assert_eq!(set["destroyed"].as_array().unwrap().len(), 2, "{set}");
        let gone = svc.call(&carol, "Email/get", json!({"ids": [id]})).await;
        assert_eq!(gone["notFound"], json!([id]));
    }
}

// ----- RFC 8621 §4: emails, threads; result references; queryChanges -----

#[tokio::test]
async fn emails_import_query_get_set_threads_and_query_changes() {
    for database in databases() {
        let svc = Service::start(database).await;
        svc.tenant("contoso").await;
        let alice = svc.user(Some("contoso"), "alice").await;
        let inbox = svc.mailbox(&alice, "inbox").await;
        let archive = svc.mailbox(&alice, "archive").await;
        let start = svc.call(&alice, "Email/query", json!({})).await;
        let start_state = start["queryState"].as_str().unwrap().to_owned();

        let first = svc
            .deliver(
                &alice,
                &message(
                    "Bob <bob@x.example>",
                    &alice.email,
                    "Quarterly numbers",
                    "q1@x",
                    "",
                ),
            )
            .await;
        let reply = svc
            .deliver(
                &alice,
                &message(
                    "Carol <carol@y.example>",
                    &alice.email,
                    "Re: Quarterly numbers",
                    "q2@x",
                    "In-Reply-To: <q1@x>\r\n",
                ),
            )
            .await;
        let other = svc
            .deliver(
                &alice,
                &message("dave@z.example", &alice.email, "Lunch", "l1@x", ""),
            )
            .await;
        assert_eq!(
            first["threadId"], reply["threadId"],
            "a reply joins its parent's thread"
        );
        assert_ne!(first["threadId"], other["threadId"]);

        // Query + get through a result reference, the way clients do.
        let responses = svc
            .calls(
                &alice,
                json!([
                    ["Email/query", {"accountId": alice.account, "filter": {"inMailbox": inbox},
                                     "sort": [{"property": "subject"}], "calculateTotal": true}, "q"],
                    ["Email/get", {"accountId": alice.account,
                                   "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                                   "properties": ["subject", "from", "threadId", "mailboxIds", "keywords",
                                                  "receivedAt", "preview", "bodyValues", "textBody",
                                                  "header:Message-ID:asMessageIds", "messageId"],
                                   "fetchTextBodyValues": true}, "g"],
                    ["Thread/get", {"accountId": alice.account,
                                    "#ids": {"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}}, "t"],
                ]),
            )
            .await;
        assert_eq!(responses[0][1]["total"], 3);
        let subjects: Vec<&str> = responses[1][1]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["subject"].as_str().unwrap())
            .collect();
        assert_eq!(
            subjects,
            ["Lunch", "Quarterly numbers", "Re: Quarterly numbers"]
        );
        let lunch = &responses[1][1]["list"][0];
        assert_eq!(
            lunch["from"],
            json!([{"name": null, "email": "dave@z.example"}])
        );
        assert_eq!(lunch["header:Message-ID:asMessageIds"], json!(["l1@x"]));
        assert_eq!(lunch["messageId"], json!(["l1@x"]));
        assert_eq!(lunch["receivedAt"], "2023-10-02T10:00:00Z");
        let part = lunch["textBody"][0]["partId"].as_str().unwrap();
        assert_eq!(lunch["bodyValues"][part]["value"], "Body of Lunch.\n");
        let thread = responses[2][1]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == first["threadId"])
            .unwrap()
            .clone();
        // Both arrived at the same second, so their order within the thread is by id.
        let members: BTreeSet<String> = serde_json::from_value(thread["emailIds"].clone()).unwrap();
        let expected: BTreeSet<String> = [
            first["id"].as_str().unwrap().to_owned(),
            reply["id"].as_str().unwrap().to_owned(),
        ]
        .into();
        assert_eq!(members, expected);

        // `ids: null` lists everything while the account is small (maxObjectsInGet).
        let all = svc
            .call(
                &alice,
                "Email/get",
                json!({"ids": null, "properties": ["subject"]}),
            )
            .await;
        assert_eq!(all["list"].as_array().unwrap().len(), 3);
        let threads = svc.call(&alice, "Thread/get", json!({"ids": null})).await;
        assert_eq!(threads["list"].as_array().unwrap().len(), 2);

        // Filters.
        let count = |filter: Value| {
            let svc = &svc;
            let alice = &alice;
            async move {
                svc.call(
                    alice,
                    "Email/query",
                    json!({"filter": filter, "calculateTotal": true}),
                )
                .await["total"]
                    .as_u64()
                    .unwrap()
            }
        };
        assert_eq!(count(json!({"from": "carol"})).await, 1);
        assert_eq!(count(json!({"subject": "QUARTERLY"})).await, 2);
        assert_eq!(count(json!({"body": "of lunch"})).await, 1);
        assert_eq!(count(json!({"text": "dave"})).await, 1);
        assert_eq!(
            count(json!({"operator": "NOT", "conditions": [{"subject": "quarterly"}]})).await,
            1
        );
        assert_eq!(count(json!({"notKeyword": "$seen"})).await, 3);
        assert_eq!(count(json!({"inMailbox": archive})).await, 0);
        assert_eq!(
            count(json!({"after": "2023-10-02T10:00:00Z", "before": "2023-10-02T10:00:01Z"})).await,
            3
        );

        // Updates: keywords and mailboxes by patch; counts follow.
        let set = svc
            .call(
                &alice,
                "Email/set",
                json!({"update": {
                    first["id"].as_str().unwrap(): {"keywords/$seen": true, format!("mailboxIds/{archive}"): true},
                    other["id"].as_str().unwrap(): {"subject": "changed"},
                    "missing": {"keywords/$seen": true}
                }}),
            )
            .await;
        assert!(set["updated"].get(first["id"].as_str().unwrap()).is_some());
        assert_eq!(
            set["notUpdated"][other["id"].as_str().unwrap()]["type"],
            "invalidProperties"
        );
        assert_eq!(set["notUpdated"]["missing"]["type"], "notFound");
        assert_eq!(count(json!({"hasKeyword": "$seen"})).await, 1);
        assert_eq!(count(json!({"inMailbox": archive})).await, 1);
        let boxes = svc
            .call(&alice, "Mailbox/get", json!({"ids": [inbox.clone()]}))
            .await;
        assert_eq!(boxes["list"][0]["totalEmails"], 3);
        assert_eq!(boxes["list"][0]["unreadEmails"], 2);
        assert_eq!(boxes["list"][0]["totalThreads"], 2);

        // Create a draft from JMAP properties, then destroy the lunch email.
        let drafts = svc.mailbox(&alice, "drafts").await;
        let mut draft_boxes = Map::new();
        draft_boxes.insert(drafts, json!(true));
        let set = svc
            .call(
                &alice,
                "Email/set",
                json!({"create": {"d": {
                    "mailboxIds": draft_boxes, "keywords": {"$draft": true},
                    "from": [{"email": alice.email}], "to": [{"name": "Bob", "email": "bob@x.example"}],
                    "subject": "Draft", "textBody": [{"partId": "1", "type": "text/plain"}],
                    "bodyValues": {"1": {"value": "draft text"}}
                }}, "destroy": [other["id"]]}),
            )
            .await;
        let draft = set["created"]["d"]["id"].as_str().unwrap().to_owned();
        assert_eq!(set["destroyed"], json!([other["id"]]));
        let got = svc
            .call(
                &alice,
                "Email/get",
                json!({"ids": [draft], "properties": ["subject", "to", "keywords", "preview"]}),
            )
            .await;
        assert_eq!(got["list"][0]["subject"], "Draft");
        assert_eq!(got["list"][0]["keywords"], json!({"$draft": true}));
        assert_eq!(got["list"][0]["preview"], "draft text");

        // Email/changes and Email/queryChanges from the start.
        let changes = svc
            .call(&alice, "Email/changes", json!({"sinceState": start_state}))
            .await;
        let created: BTreeSet<String> = serde_json::from_value(changes["created"].clone()).unwrap();
        assert!(created.contains(&draft) && created.contains(first["id"].as_str().unwrap()));
        assert!(
            !created.contains(other["id"].as_str().unwrap()),
            "created and destroyed in the window"
        );
        let filter = json!({"inMailbox": inbox});
        let now = svc
            .call(&alice, "Email/query", json!({"filter": filter}))
            .await;
        let qc = svc
            .call(
                &alice,
                "Email/queryChanges",
                json!({"filter": filter, "sinceQueryState": start_state}),
            )
            .await;
        assert_eq!(qc["newQueryState"], now["queryState"]);
        // Applying removed/added to the old (empty) result gives the new result.
        let mut rebuilt: Vec<Value> = Vec::new();
        for added in qc["added"].as_array().unwrap() {
            rebuilt.insert(
                added["index"].as_u64().unwrap() as usize,
                added["id"].clone(),
            );
        }
        assert_eq!(Value::Array(rebuilt), now["ids"]);
    }
}

// ----- RFC 8621 §7: submission, delivery across realms; §6 identities -----

#[tokio::test]
async fn submission_delivers_across_realms_without_bcc() {
    let svc = Service::start("sqlite").await;
    svc.tenant("contoso").await;
    svc.tenant("fabrikam").await;
    let alice = svc.user(Some("contoso"), "alice").await;
    let bob = svc.user(Some("fabrikam"), "bob").await;
    let carol = svc.user(None, "carol").await;
    let identities = svc.call(&alice, "Identity/get", json!({})).await;
    let identity = identities["list"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(identities["list"][0]["email"], alice.email);
    let sent = svc.mailbox(&alice, "sent").await;
    let drafts = svc.mailbox(&alice, "drafts").await;
    let mut in_drafts = Map::new();
    in_drafts.insert(drafts.clone(), json!(true));
    let responses = svc
        .calls(
            &alice,
            json!([
                ["Email/set", {"accountId": alice.account, "create": {"m": {
                    "mailboxIds": in_drafts, "keywords": {"$draft": true},
                    "from": [{"email": alice.email}], "to": [{"email": bob.email}],
                    "bcc": [{"email": carol.email}], "subject": "Partnership",
                    "textBody": [{"partId": "1", "type": "text/plain"}],
                    "bodyValues": {"1": {"value": "Shall we?"}}}}}, "0"],
                ["EmailSubmission/set", {"accountId": alice.account,
                    "create": {"s": {"identityId": identity, "emailId": "#m"}},
                    "onSuccessUpdateEmail": {"#s": {format!("mailboxIds/{drafts}"): null,
                                                    format!("mailboxIds/{sent}"): true,
                                                    "keywords/$draft": null}}}, "1"],
                ["EmailSubmission/set", {"accountId": alice.account,
                    "create": {"bad": {"identityId": identity, "emailId": "#m",
                                       "envelope": {"mailFrom": {"email": alice.email},
                                                    "rcptTo": [{"email": "someone@elsewhere.example"}]}},
                               "spoof": {"identityId": identity, "emailId": "#m",
                                         "envelope": {"mailFrom": {"email": bob.email},
                                                      "rcptTo": [{"email": bob.email}]}}}}, "2"],
            ]),
        )
        .await;
    assert!(
        responses[1][1]["created"]["s"]["id"].is_string(),
        "{responses:?}"
    );
    assert_eq!(responses[2][0], "Email/set", "implicit Email/set follows");
    assert_eq!(
        responses[3][1]["notCreated"]["bad"]["type"],
        "invalidRecipients"
    );
    assert_eq!(responses[3][1]["notCreated"]["spoof"]["type"], "forbidden");
    let in_sent = svc
        .call(
            &alice,
            "Email/query",
            json!({"filter": {"inMailbox": sent}}),
        )
        .await;
    assert_eq!(in_sent["ids"].as_array().unwrap().len(), 1);

    for (user, label) in [(&bob, "bob"), (&carol, "carol")] {
        let found = svc
            .call(
                user,
                "Email/query",
                json!({"filter": {"subject": "partnership"}}),
            )
            .await;
        assert_eq!(found["ids"].as_array().unwrap().len(), 1, "{label}");
        let got = svc
            .call(
                user,
                "Email/get",
                json!({"ids": found["ids"], "properties": ["bcc", "from", "header:Bcc"]}),
            )
            .await;
        assert_eq!(
            got["list"][0]["bcc"],
            Value::Null,
            "{label} must not see the Bcc"
        );
        assert_eq!(got["list"][0]["from"][0]["email"], alice.email);
    }
    let submissions = svc
        .call(&alice, "EmailSubmission/get", json!({"ids": null}))
        .await;
    assert_eq!(submissions["list"].as_array().unwrap().len(), 1);
    assert_eq!(submissions["list"][0]["undoStatus"], "final");
    let records = svc.audit();
    let send = records.iter().find(|r| r["Operation"] == "Send").unwrap();
    assert_eq!(send["UserId"], alice.email);
    assert_eq!(send["AppId"], "keyscope-mail");
}

// ----- blobs (RFC 8620 §6) and access audit -----

#[tokio::test]
async fn blobs_upload_download_and_bind_audit() {
    let svc = Service::start("sqlite").await;
    svc.tenant("contoso").await;
    svc.tenant("fabrikam").await;
    let alice = svc.user(Some("contoso"), "alice").await;
    let bob = svc.user(Some("fabrikam"), "bob").await;
    let created = svc
        .deliver(
            &alice,
            &message("x@y", &alice.email, "Secret plans", "secret@x", ""),
        )
        .await;
    let blob = created["blobId"].as_str().unwrap().to_owned();

    // Email/import without receivedAt takes the newest Received header's date (RFC 8621 §4.8).
    let relayed = message(
        "x@y",
        &alice.email,
        "Relayed",
        "relayed@x",
        "Received: from mx.example by mail.example; Wed, 1 May 2024 08:00:00 +0000\r\n\
         Received: from a.example by mx.example; Wed, 1 May 2024 07:59:00 +0000\r\n",
    );
    let uploaded = svc
        .upload(&alice, relayed.as_bytes(), "message/rfc822")
        .await;
    let inbox = svc.mailbox(&alice, "inbox").await;
    let mut boxes = Map::new();
    boxes.insert(inbox, json!(true));
    let imported = svc
        .call(
            &alice,
            "Email/import",
            json!({"emails": {"r": {"blobId": uploaded["blobId"], "mailboxIds": boxes}}}),
        )
        .await;
    let got = svc
        .call(
            &alice,
            "Email/get",
            json!({"ids": [imported["created"]["r"]["id"]], "properties": ["receivedAt"]}),
        )
        .await;
    assert_eq!(got["list"][0]["receivedAt"], "2024-05-01T08:00:00Z");

    let path = format!(
        "/jmap/download/{}/{blob}/m.eml?accept=message/rfc822",
        alice.account
    );
    let download = svc.get(&path, Some(&alice.token)).await;
    assert_eq!(download.status, 200);
    assert!(String::from_utf8_lossy(&download.body).contains("Secret plans"));
    assert_eq!(download.header("content-type"), Some("message/rfc822"));

    // Bob: neither Alice's account in the path nor her blob id in his own account.
    let as_bob = svc.get(&path, Some(&bob.token)).await;
    assert_eq!(as_bob.status, 404);
    assert_eq!(
        as_bob.header("content-type"),
        Some("application/problem+json")
    );
    let own_path = format!("/jmap/download/{}/{blob}/m.eml", bob.account);
    let as_bob = svc.get(&own_path, Some(&bob.token)).await;
    assert_eq!(as_bob.status, 404);
    let upload = svc
        .post(
            &format!("/jmap/upload/{}/", alice.account),
            &bob.token,
            "text/plain",
            b"x",
        )
        .await;
    assert_eq!(upload.status, 404);
    let import = svc
        .call(
            &bob,
            "Email/import",
            json!({"emails": {"x": {"blobId": blob, "mailboxIds": {"any": true}}}}),
        )
        .await;
    assert_eq!(import["notCreated"]["x"]["type"], "blobNotFound");
    // The same content uploaded by Bob is his own blob (content addressing reveals nothing).
    let raw = svc.get(&path, Some(&alice.token)).await.body;
    let mine = svc.upload(&bob, &raw, "message/rfc822").await;
    assert_eq!(mine["blobId"], blob);
    assert_eq!(svc.get(&own_path, Some(&bob.token)).await.status, 200);

    // Audit: a Bind for the Email/get and the download, naming the Message-ID and folder; a
    // Sync for the query.
    svc.call(
        &alice,
        "Email/get",
        json!({"ids": [created["id"]], "properties": ["subject"]}),
    )
    .await;
    svc.call(&alice, "Email/query", json!({})).await;
    let records = svc.audit();
    let binds: Vec<&Map<String, Value>> = records
        .iter()
        .filter(|r| {
            r["Operation"] == "MailItemsAccessed"
                && r["MailAccessType"] == "Bind"
                && r["MailboxOwnerUPN"] == alice.email
                && r["Folders"][0]["FolderItems"][0]["InternetMessageId"] != "<relayed@x>"
        })
        .collect();
    assert!(binds.len() >= 2, "{binds:?}");
    for bind in binds {
        assert_eq!(bind["Folders"][0]["Path"], "\\Inbox");
        assert_eq!(
            bind["Folders"][0]["FolderItems"][0]["InternetMessageId"],
            "<secret@x>"
        );
        assert_eq!(bind["AppId"], "keyscope-mail");
        assert!(bind["TokenId"].is_string() && bind["KeyId"].is_string());
        assert_eq!(bind["ClientInfoString"], "keyscope-mail-test");
    }
    assert!(
        records
            .iter()
            .any(|r| r["Operation"] == "MailItemsAccessed" && r["MailAccessType"] == "Sync")
    );
}

// ----- tokens: the Storm-0558 cases -----

/// Signs arbitrary claims with a realm's real, active key (the stolen-key scenario).
fn forge(svc: &Service, realm: &str, claims: &Value) -> String {
    let snapshot = svc.identity.snapshot();
    let signer = snapshot.realm(realm).unwrap().signer.clone().unwrap();
    let mut header = Map::new();
    header.insert("typ".into(), json!("at+jwt"));
    signer
        .sign_compact(header, claims.to_string().as_bytes())
        .unwrap()
}

#[tokio::test]
async fn forged_unissued_revoked_and_cross_realm_tokens_are_refused_and_audited() {
    for database in databases() {
        let svc = Service::start(database).await;
        svc.tenant("contoso").await;
        let alice = svc.user(Some("contoso"), "alice").await;
        let carol = svc.user(None, "carol").await;
        let alice_sub = svc
            .identity
            .store()
            .user_by_name("contoso", "alice")
            .await
            .unwrap()
            .unwrap()
            .id;
        let now = unix_now();
        let audience = format!("http://{}/jmap", svc.addr);
        let claims = |iss: String, tid: &str, exp: i64| {
            json!({"iss": iss, "sub": alice_sub, "aud": audience, "exp": exp, "iat": now,
                   "nbf": now, "jti": keyscope_identity::random_id(16),
                   "client_id": "keyscope-mail", "tid": tid, "scope": "openid"})
        };
        let contoso = svc.identity.config().issuer("contoso");
        let reason = |reply: &Reply| {
            assert_eq!(reply.status, 401);
            reply.header("www-authenticate").unwrap().to_owned()
        };

        // The consumer key signs a token claiming the enterprise tenant: key_issuer_mismatch.
        let storm = forge(
            &svc,
            "consumers",
            &claims(contoso.clone(), "contoso", now + 300),
        );
        let reply = svc.get("/.well-known/jmap", Some(&storm)).await;
        assert!(
            reason(&reply).contains("key_issuer_mismatch"),
            "{}",
            reason(&reply)
        );
        // The enterprise key itself, stolen: correctly signed, never issued.
        let stolen = forge(
            &svc,
            "contoso",
            &claims(contoso.clone(), "contoso", now + 300),
        );
        let reply = svc.get("/.well-known/jmap", Some(&stolen)).await;
        assert!(
            reason(&reply).contains("token_not_issued"),
            "{}",
            reason(&reply)
        );
        // Expired (signed by the real key).
        let expired = forge(
            &svc,
            "contoso",
            &claims(contoso.clone(), "contoso", now - 3600),
        );
        let reply = svc.get("/.well-known/jmap", Some(&expired)).await;
        assert!(reason(&reply).contains("expired"), "{}", reason(&reply));
        // A genuine consumer token opens only the consumer's own account.
        let responses = svc
            .calls(
                &carol,
                json!([["Mailbox/get", {"accountId": alice.account}, "0"]]),
            )
            .await;
        assert_eq!(responses[0][1]["type"], "accountNotFound");

        // Revoking the tenant's key: Alice's genuine token stops working at once.
        assert_eq!(
            svc.get("/.well-known/jmap", Some(&alice.token))
                .await
                .status,
            200
        );
        let kid = svc
            .identity
            .snapshot()
            .realm("contoso")
            .unwrap()
            .signer
            .clone()
            .unwrap()
            .kid()
            .to_owned();
        svc.identity
            .revoke_key(&kid, "compromised", &RequestContext::operator())
            .await
            .unwrap();
        svc.identity.reload().await.unwrap();
        let reply = svc.get("/.well-known/jmap", Some(&alice.token)).await;
        assert!(reason(&reply).contains("key_revoked"), "{}", reason(&reply));

        let records = svc.audit();
        let refused: BTreeSet<String> = records
            .iter()
            .filter(|r| r["Operation"] == "TokenValidated" && r["ResultStatus"] == "Failure")
            .filter_map(|r| r["Reason"].as_str().map(str::to_owned))
            .collect();
        for expected in [
            "key_issuer_mismatch",
            "token_not_issued",
            "expired",
            "key_revoked",
        ] {
            assert!(
                refused.contains(expected),
                "{expected} not audited: {refused:?}"
            );
        }
        let storm_record = records
            .iter()
            .find(|r| r.get("Reason") == Some(&json!("key_issuer_mismatch")))
            .unwrap();
        assert_eq!(storm_record["Issuer"], contoso);
        assert!(
            storm_record["KeyId"].is_string(),
            "the forged token's kid is kept for detection"
        );
    }
}

// ----- isolation: randomised requests across tenants -----

/// A tiny deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

#[tokio::test]
async fn randomised_requests_never_cross_accounts() {
    let svc = Service::start("sqlite").await;
    svc.tenant("contoso").await;
    svc.tenant("fabrikam").await;
    let users = [
        svc.user(Some("contoso"), "alice").await,
        svc.user(Some("fabrikam"), "bob").await,
        svc.user(None, "carol").await,
    ];
    // Every id each account owns, as seen by its owner.
    let mut owned: Vec<BTreeSet<String>> = vec![BTreeSet::new(); users.len()];
    for (i, user) in users.iter().enumerate() {
        for n in 0..3 {
            let created = svc
                .deliver(
                    user,
                    &message(
                        "x@y",
                        &user.email,
                        &format!("mail {i}-{n}"),
                        &format!("iso{i}-{n}@x"),
                        "",
                    ),
                )
                .await;
            for key in ["id", "blobId", "threadId"] {
                owned[i].insert(created[key].as_str().unwrap().to_owned());
            }
        }
        let boxes = svc.call(user, "Mailbox/get", json!({})).await;
        for m in boxes["list"].as_array().unwrap() {
            owned[i].insert(m["id"].as_str().unwrap().to_owned());
        }
        owned[i].insert(user.account.clone());
    }
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for _ in 0..150 {
        let me = (rng.next() % users.len() as u64) as usize;
        let victim = (me + 1 + (rng.next() % (users.len() as u64 - 1)) as usize) % users.len();
        let user = &users[me];
        let theirs: Vec<String> = owned[victim].iter().cloned().collect();
        let target = rng.pick(&theirs).clone();
        let account = if rng.next().is_multiple_of(4) {
            users[victim].account.clone()
        } else {
            user.account.clone()
        };
        let call = match rng.next() % 7 {
            0 => json!(["Email/get", {"accountId": account, "ids": [target]}, "x"]),
            1 => json!(["Mailbox/get", {"accountId": account, "ids": [target]}, "x"]),
            2 => json!(["Thread/get", {"accountId": account, "ids": [target]}, "x"]),
            3 => {
                json!(["Email/query", {"accountId": account, "filter": {"inMailbox": target}}, "x"])
            }
            4 => {
                json!(["Email/set", {"accountId": account, "update": {target.clone(): {"keywords/$seen": true}}, "destroy": [target]}, "x"])
            }
            5 => {
                json!(["Email/import", {"accountId": account, "emails": {"i": {"blobId": target, "mailboxIds": {target.clone(): true}}}}, "x"])
            }
            _ => {
                json!(["Mailbox/set", {"accountId": account, "update": {target.clone(): {"name": "pwned"}}, "destroy": [target]}, "x"])
            }
        };
        let responses = svc.calls(user, json!([call])).await;
        let text = Value::Array(responses.clone()).to_string();
        // Nothing of the victim's leaks back, except the id the caller itself sent.
        for id in &owned[victim] {
            if *id != target && *id != users[victim].account {
                assert!(
                    !text.contains(id.as_str()),
                    "leak of {id} to user {me}: {text}"
                );
            }
        }
        let response = &responses[0];
        if account != user.account {
            assert_eq!(response[1]["type"], "accountNotFound", "{text}");
            continue;
        }
        match response[0].as_str().unwrap() {
            "Email/get" | "Mailbox/get" | "Thread/get" => {
                assert_eq!(response[1]["list"], json!([]), "{text}");
                assert_eq!(response[1]["notFound"], json!([target]), "{text}");
            }
            "Email/query" => assert_eq!(response[1]["ids"], json!([]), "{text}"),
            "Email/set" | "Mailbox/set" => {
                assert_eq!(
                    response[1]["notUpdated"][&target]["type"], "notFound",
                    "{text}"
                );
                assert_eq!(
                    response[1]["notDestroyed"][&target]["type"], "notFound",
                    "{text}"
                );
            }
            "Email/import" => assert!(response[1]["notCreated"]["i"].is_object(), "{text}"),
            other => panic!("unexpected {other}: {text}"),
        }
    }
    // Every account still has exactly its own three messages.
    for user in &users {
        let all = svc
            .call(user, "Email/query", json!({"calculateTotal": true}))
            .await;
        assert_eq!(all["total"], 3);
    }
}

// ----- push (RFC 8620 §7.3) -----

#[tokio::test]
async fn event_source_announces_state_changes() {
    let svc = Service::start("sqlite").await;
    let carol = svc.user(None, "carol").await;
    let mut stream = tokio::net::TcpStream::connect(svc.addr).await.unwrap();
    let head = format!(
        "GET /jmap/eventsource?types=*&closeafter=state&ping=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        carol.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Give the server a moment to subscribe, then change the account.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    svc.deliver(&carol, &message("x@y", &carol.email, "push", "push@x", ""))
        .await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut raw),
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("event: state"), "{text}");
    assert!(text.contains("\"@type\":\"StateChange\""), "{text}");
    assert!(text.contains(&carol.account), "{text}");
}
