#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! End-to-end test of the JMAP mail service (RFC 8620/8621) with a third-party client, the
//! `jmap-client` crate, as the caller: the real `keyscope` binary serves a temporary data
//! directory, the CLI makes the tenants, users, an imported message and the Bearer tokens, and
//! the client does what a mail app does — Session, mailboxes by role, upload + `Email/import`,
//! `Email/query`/`get`/`set`/`changes`/`queryChanges`, `Thread/get`, download, `Mailbox/set`,
//! `Identity/get`, `EmailSubmission/set` to a user of another tenant — and is refused another
//! account and bad tokens. The audit log must then hold alice's `MailItemsAccessed` records.
//!
//! Two limitations of `jmap-client` 0.4 are worked around (the server is right in both):
//! - `Client::build()` names eleven capabilities in `using` (contacts, calendars, sieve, quota,
//!   …). RFC 8620 §3.6.1 makes the server refuse a request that names a capability it does not
//!   support (`unknownCapability`), so every request here goes through [`request`], which
//!   names only core, mail and submission. The client's one-call method helpers
//!   (`email_query`, `mailbox_create`, …) build their own requests and cannot be used; its
//!   `upload` and `download` are plain HTTP and work as they are.
//! - Its patch helpers `keyword(k, false)` / `mailbox_id(id, false)` send `false`, but
//!   `keywords` and `mailboxIds` values MUST be `true` (RFC 8621 §4.1.1) and a patch
//!   removes with `null` (RFC 8620 §5.3); the server answers `invalidProperties`. Removal here
//!   replaces the whole property instead.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, TempDir, free_port, keyscope_env};
use jmap_client::URI;
use jmap_client::client::{Client, Credentials};
use jmap_client::core::error::{JMAPError, MethodErrorType, ProblemType};
use jmap_client::core::query::QueryResponse;
use jmap_client::core::query_changes::QueryChangesResponse;
use jmap_client::core::request::Request;
use jmap_client::core::response::{
    EmailChangesResponse, EmailGetResponse, EmailSetResponse, EmailSubmissionGetResponse,
    IdentityGetResponse, MailboxChangesResponse, MailboxGetResponse, MailboxSetResponse,
    ThreadGetResponse,
};
use jmap_client::core::set::{SetErrorType, SetObject};
use jmap_client::email::import::EmailImportResponse;
use jmap_client::email::{self, EmailBodyPart};
use jmap_client::mailbox::{Mailbox, Role};
use serde_json::Value;

const ALICE: &str = "alice@contoso.keyscope.test";
const BOB: &str = "bob@fabrikam.keyscope.test";

// ---------------------------------------------------------------------------------------------
// Harness: a temporary data directory, the CLI, and `keyscope up` as a child process
// ---------------------------------------------------------------------------------------------

/// `keyscope ARGS --data-dir DIR/data`, with none of the binary's variables from the shell.
fn command(data_dir: &TempDir, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    for name in keyscope_env() {
        command.env_remove(name);
    }
    command
        .args(args)
        .arg("--data-dir")
        .arg(data_dir.join("data"));
    command
}

/// Runs `keyscope ARGS --data-dir …`, which must succeed; returns its standard output.
#[track_caller]
fn cli(data_dir: &TempDir, args: &[&str]) -> String {
    let output = command(data_dir, args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "keyscope {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The status of a plain `GET path` (no client library: used only to wait for `/healthz`).
fn get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text}")))
}

/// A running `keyscope up`.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(data_dir: &TempDir) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = data_dir.join("server.log");
        let out = fs::File::create(&log).unwrap();
        let child = command(data_dir, &["up", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut server = Server { child, addr, log };
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("keyscope up exited with {status}: {}", server.output());
            }
            if get_status(addr, "/healthz").is_ok_and(|s| s == 200) {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "keyscope up did not become healthy: {}",
                server.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}: {}", self.output());
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "keyscope up did not stop after SIGTERM: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only if the test failed before terminate(): our own child, by its handle.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            eprintln!("--- keyscope up output:\n{}", self.output());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// jmap-client helpers
// ---------------------------------------------------------------------------------------------

/// The capabilities this server implements (its Session's `capabilities`).
fn supported() -> Vec<URI> {
    vec![URI::Core, URI::Mail, URI::Submission]
}

/// A request that names only capabilities the server supports (see the module comment: the
/// client's own `build()` also names contacts, calendars, sieve, quota, … and is refused).
fn request(client: &Client) -> Request<'_> {
    let mut request = client.build();
    request.using = supported();
    request
}

async fn connect(base_url: &str, token: &str) -> Client {
    Client::new()
        .credentials(Credentials::bearer(token))
        .connect(base_url)
        .await
        .unwrap_or_else(|e| panic!("connecting with a valid token: {e}"))
}

async fn mailboxes(client: &Client) -> (String, Vec<Mailbox>) {
    let mut request = request(client);
    request.get_mailbox();
    let mut response = request.send_single::<MailboxGetResponse>().await.unwrap();
    (response.take_state(), response.take_list())
}

fn by_role(list: &[Mailbox], role: Role) -> Mailbox {
    list.iter()
        .find(|m| m.role() == role)
        .unwrap_or_else(|| panic!("no mailbox with role {role:?}: {list:?}"))
        .clone()
}

async fn mailbox(client: &Client, id: &str) -> Mailbox {
    let mut request = request(client);
    request.get_mailbox().ids([id]);
    let mut response = request.send_single::<MailboxGetResponse>().await.unwrap();
    assert!(response.not_found().is_empty(), "{id} not found");
    response.take_list().pop().unwrap()
}

/// The current Email state (an `Email/get` of no ids).
async fn email_state(client: &Client) -> String {
    let mut request = request(client);
    request.get_email().ids(Vec::<String>::new());
    request
        .send_single::<EmailGetResponse>()
        .await
        .unwrap()
        .take_state()
}

async fn query_inbox(client: &Client, inbox: &str) -> QueryResponse {
    let mut request = request(client);
    request
        .query_email()
        .filter(email::query::Filter::in_mailbox(inbox))
        .sort([email::query::Comparator::received_at().descending()])
        .calculate_total(true);
    request.send_single::<QueryResponse>().await.unwrap()
}

/// A message as an RFC 5322 octet string (CRLF line ends).
fn rfc5322(headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = String::new();
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(&body.replace('\n', "\r\n"));
    text.into_bytes()
}

/// The audit records of one operation (`keyscope audit search --op OP --json`).
fn audit(data_dir: &TempDir, op: &str) -> Vec<Value> {
    cli(data_dir, &["audit", "search", "--op", op, "--json"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_jmap_client_reads_files_and_sends_mail() {
    let dir = TempDir::new("e2e");
    cli(&dir, &["tenant", "create", "contoso"]);
    cli(&dir, &["tenant", "create", "fabrikam"]);
    cli(&dir, &["user", "add", "--tenant", "contoso", "alice"]);
    cli(&dir, &["user", "add", "--tenant", "fabrikam", "bob"]);
    // One older message arrives through the CLI import (its receivedAt is its Date: 2020).
    let old = dir.join("old.eml");
    fs::write(
        &old,
        rfc5322(
            &[
                ("From", "Carol <carol@example.net>"),
                ("To", ALICE),
                ("Subject", "Welcome aboard"),
                ("Date", "Mon, 6 Jan 2020 09:00:00 +0000"),
                ("Message-ID", "<welcome-1@example.net>"),
            ],
            "Glad to have you.\n",
        ),
    )
    .unwrap();
    cli(
        &dir,
        &[
            "mail",
            "import",
            "--tenant",
            "contoso",
            "--user",
            "alice",
            old.to_str().unwrap(),
        ],
    );

    let server = Server::start(&dir);
    let base = server.base_url();
    let alice_token = cli(
        &dir,
        &["token", "issue", "--tenant", "contoso", "--user", "alice"],
    );
    let bob_token = cli(
        &dir,
        &["token", "issue", "--tenant", "fabrikam", "--user", "bob"],
    );
    let (alice_token, bob_token) = (alice_token.trim(), bob_token.trim());

    // ----- Session (RFC 8620 §2) -----
    let alice = connect(&base, alice_token).await;
    let session = alice.session();
    assert_eq!(session.username(), ALICE);
    assert_eq!(session.api_url(), format!("{base}/jmap/api"));
    for uri in supported() {
        assert!(session.has_capability(uri.as_ref()), "{uri:?}");
    }
    let core = session.core_capabilities().expect("the core capability");
    assert!(core.max_calls_in_request() >= 16);
    assert!(core.max_objects_in_get() >= 500);
    let alice_account = alice.default_account_id().to_owned();
    let accounts: Vec<&String> = session.accounts().collect();
    assert_eq!(accounts, [&alice_account], "exactly her own account");
    let account = session.account(&alice_account).unwrap();
    assert_eq!(account.name(), ALICE);
    assert!(account.is_personal() && !account.is_read_only());
    for (capability, id) in session.primary_accounts() {
        assert_eq!(id, &alice_account, "primary account for {capability}");
    }

    // A request naming a capability the server lacks, as the client's default `using` does,
    // is refused with `unknownCapability` (RFC 8620 §3.6.1).
    let mut unsupported = alice.build();
    unsupported.using = vec![URI::Core, URI::Mail, URI::Quota];
    unsupported.get_mailbox();
    match unsupported.send_single::<MailboxGetResponse>().await {
        Err(jmap_client::Error::Problem(problem)) => {
            assert_eq!(problem.status, Some(400), "{problem:?}");
            assert!(
                matches!(
                    problem.error(),
                    ProblemType::JMAP(JMAPError::UnknownCapability)
                ),
                "{problem:?}"
            );
        }
        other => panic!("a request using an unknown capability: {other:?}"),
    }

    // ----- Mailboxes by role (RFC 8621 §2) -----
    let (mailbox_state, list) = mailboxes(&alice).await;
    assert_eq!(list.len(), 6, "{list:?}");
    let inbox = by_role(&list, Role::Inbox);
    for role in [
        Role::Sent,
        Role::Drafts,
        Role::Trash,
        Role::Junk,
        Role::Archive,
    ] {
        by_role(&list, role);
    }
    let inbox_id = inbox.id().unwrap().to_owned();
    let sent_id = by_role(&list, Role::Sent).id().unwrap().to_owned();
    let drafts_id = by_role(&list, Role::Drafts).id().unwrap().to_owned();
    assert_eq!(inbox.name(), Some("Inbox"));
    assert_eq!((inbox.total_emails(), inbox.unread_emails()), (1, 1));
    let rights = inbox.my_rights().expect("myRights");
    assert!(rights.may_read_items() && rights.may_add_items() && rights.may_set_seen());

    let before_import = email_state(&alice).await;
    let before_query = query_inbox(&alice, &inbox_id).await;
    assert_eq!(before_query.ids().len(), 1);
    let old_id = before_query.ids()[0].clone();

    // ----- Upload (RFC 8620 §6.1) and Email/import (RFC 8621 §4.8) -----
    let raw = rfc5322(
        &[
            ("From", "Dave Example <dave@example.org>"),
            ("To", ALICE),
            ("Subject", "Quarterly report"),
            ("Date", "Mon, 3 Nov 2025 10:00:00 +0000"),
            ("Message-ID", "<report-42@example.org>"),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=utf-8"),
        ],
        "The numbers are in.\nRevenue is up.\n",
    );
    let mut upload = alice
        .upload(None, raw.clone(), Some("message/rfc822"))
        .await
        .unwrap();
    assert_eq!(upload.account_id(), alice_account);
    assert_eq!(upload.size(), raw.len());
    let blob_id = upload.take_blob_id();
    let import_started = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let mut import = request(&alice);
    let import_id = import
        .import_email()
        .email(&blob_id)
        .mailbox_ids([&inbox_id])
        .create_id();
    let mut imported = import.send_single::<EmailImportResponse>().await.unwrap();
    assert_eq!(imported.old_state(), Some(before_import.as_str()));
    let after_import = imported.new_state().to_owned();
    let new_email = imported.created(&import_id).unwrap();
    let new_id = new_email.id().unwrap().to_owned();
    assert_eq!(new_email.blob_id(), Some(blob_id.as_str()));

    // ----- Email/query (§4.4): newest first -----
    let query = query_inbox(&alice, &inbox_id).await;
    assert_eq!(query.ids(), [new_id.as_str(), old_id.as_str()]);
    assert_eq!(query.total(), Some(2));
    assert_eq!(query.position(), 0);

    // ----- Email/get (§4.2) with body values -----
    let mut get = request(&alice);
    get.get_email()
        .ids([&new_id])
        .properties([
            email::Property::Id,
            email::Property::ThreadId,
            email::Property::MailboxIds,
            email::Property::Keywords,
            email::Property::Subject,
            email::Property::From,
            email::Property::To,
            email::Property::MessageId,
            email::Property::ReceivedAt,
            email::Property::SentAt,
            email::Property::Preview,
            email::Property::TextBody,
            email::Property::BodyValues,
            email::Property::Size,
        ])
        .arguments()
        .fetch_text_body_values(true);
    let mut got = get.send_single::<EmailGetResponse>().await.unwrap();
    assert!(got.not_found().is_empty());
    let email = got.take_list().pop().unwrap();
    assert_eq!(email.id(), Some(new_id.as_str()));
    assert_eq!(email.subject(), Some("Quarterly report"));
    let from = email.from().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(from[0].email(), "dave@example.org");
    assert_eq!(from[0].name(), Some("Dave Example"));
    assert_eq!(email.to().unwrap()[0].email(), ALICE);
    assert_eq!(
        email.message_id(),
        Some(&["report-42@example.org".to_owned()][..])
    );
    assert_eq!(email.mailbox_ids(), [inbox_id.as_str()]);
    assert!(email.keywords().is_empty(), "{:?}", email.keywords());
    assert_eq!(email.size(), raw.len());
    assert_eq!(email.sent_at(), Some(1_762_164_000));
    // Without a receivedAt argument (and no Received header) it is the time of the import.
    assert!(
        email.received_at().unwrap() >= import_started,
        "not its Date"
    );
    assert_eq!(email.preview(), Some("The numbers are in. Revenue is up."));
    let text_part = &email.text_body().unwrap()[0];
    assert_eq!(text_part.content_type(), Some("text/plain"));
    let value = email.body_value(text_part.part_id().unwrap()).unwrap();
    // Decoded, with CRLF replaced by LF (RFC 8621 §4.1.4).
    assert_eq!(value.value(), "The numbers are in.\nRevenue is up.\n");
    assert!(!value.is_truncated() && !value.is_encoding_problem());
    let thread_id = email.thread_id().unwrap().to_owned();

    // ----- Thread/get (§3.1) -----
    let mut thread = request(&alice);
    thread.get_thread().ids([&thread_id]);
    let mut threads = thread.send_single::<ThreadGetResponse>().await.unwrap();
    assert_eq!(
        threads.take_list().pop().unwrap().email_ids(),
        [new_id.as_str()]
    );

    // ----- Download (RFC 8620 §6.2): the blob is the uploaded message -----
    assert_eq!(alice.download(&blob_id).await.unwrap(), raw);

    // ----- Email/set keywords patch (§4.6): $seen, and the Mailbox counts follow -----
    let inbox_now = mailbox(&alice, &inbox_id).await;
    assert_eq!(
        (inbox_now.total_emails(), inbox_now.unread_emails()),
        (2, 2)
    );
    let (mailbox_state_before_seen, _) = mailboxes(&alice).await;
    let mut seen = request(&alice);
    seen.set_email().update(&new_id).keyword("$seen", true);
    let mut set = seen.send_single::<EmailSetResponse>().await.unwrap();
    set.updated(&new_id).unwrap();
    assert_eq!(set.old_state(), Some(after_import.as_str()));
    let after_seen = set.take_new_state();
    let inbox_now = mailbox(&alice, &inbox_id).await;
    assert_eq!(
        (inbox_now.total_emails(), inbox_now.unread_emails()),
        (2, 1)
    );
    let mut changes = request(&alice);
    changes.changes_mailbox(&mailbox_state_before_seen);
    let changed = changes
        .send_single::<MailboxChangesResponse>()
        .await
        .unwrap();
    assert_eq!(changed.updated(), [inbox_id.as_str()], "counts changed");
    assert!(changed.created().is_empty() && changed.destroyed().is_empty());
    assert_ne!(mailbox_state, changed.new_state());

    // A `false` keyword value is not a removal (values MUST be true; a patch removes with
    // null): the server refuses what jmap-client's `keyword(k, false)` sends.
    let mut unset = request(&alice);
    unset.set_email().update(&new_id).keyword("$seen", false);
    let refused = unset
        .send_single::<EmailSetResponse>()
        .await
        .unwrap()
        .updated(&new_id);
    match refused {
        Err(jmap_client::Error::Set(error)) => {
            assert_eq!(error.error(), &SetErrorType::InvalidProperties, "{error:?}");
        }
        other => panic!("a false keyword value: {other:?}"),
    }
    assert_eq!(email_state(&alice).await, after_seen, "nothing changed");

    // ----- Email/changes (§4.3) and Email/queryChanges (§4.5) -----
    let mut since_import = request(&alice);
    since_import.changes_email(&before_import);
    let delta = since_import
        .send_single::<EmailChangesResponse>()
        .await
        .unwrap();
    assert_eq!(delta.old_state(), before_import);
    assert_eq!(delta.new_state(), after_seen);
    assert_eq!(delta.created(), [new_id.as_str()]);
    assert!(delta.destroyed().is_empty());
    assert!(!delta.has_more_changes());
    let mut since_seen = request(&alice);
    since_seen.changes_email(&after_import);
    let delta = since_seen
        .send_single::<EmailChangesResponse>()
        .await
        .unwrap();
    assert!(delta.created().is_empty());
    assert_eq!(delta.updated(), [new_id.as_str()]);
    let mut query_changes = request(&alice);
    query_changes
        .query_email_changes(before_query.query_state())
        .filter(email::query::Filter::in_mailbox(&inbox_id))
        .sort([email::query::Comparator::received_at().descending()]);
    let query_delta = query_changes
        .send_single::<QueryChangesResponse>()
        .await
        .unwrap();
    assert_eq!(
        query_delta.new_query_state(),
        query_inbox(&alice, &inbox_id).await.query_state()
    );
    // An id that was added may also be listed as removed (RFC 8620 §5.6): a client removes
    // before it splices in.
    assert!(query_delta.removed().is_empty() || query_delta.removed() == [new_id.as_str()]);
    let added: Vec<(&str, usize)> = query_delta
        .added()
        .iter()
        .map(|a| (a.id(), a.index()))
        .collect();
    assert_eq!(added, [(new_id.as_str(), 0)]);

    // ----- Mailbox/set (§2.5): create, then destroy -----
    let mut create = request(&alice);
    let create_id = create
        .set_mailbox()
        .create()
        .name("Projects")
        .role(Role::None)
        .parent_id(None::<String>)
        .create_id()
        .unwrap();
    let projects = create
        .send_single::<MailboxSetResponse>()
        .await
        .unwrap()
        .created(&create_id)
        .unwrap();
    let projects_id = projects.id().unwrap().to_owned();
    let projects = mailbox(&alice, &projects_id).await;
    assert_eq!(projects.name(), Some("Projects"));
    assert_eq!(projects.role(), Role::None);
    assert_eq!(projects.parent_id(), None);
    assert_eq!(mailboxes(&alice).await.1.len(), 7);
    let mut destroy = request(&alice);
    destroy
        .set_mailbox()
        .destroy([&projects_id])
        .arguments()
        .on_destroy_remove_emails(false);
    destroy
        .send_single::<MailboxSetResponse>()
        .await
        .unwrap()
        .destroyed(&projects_id)
        .unwrap();
    let mut gone = request(&alice);
    gone.get_mailbox().ids([&projects_id]);
    let gone = gone.send_single::<MailboxGetResponse>().await.unwrap();
    assert_eq!(gone.not_found(), [projects_id.as_str()]);
    assert_eq!(mailboxes(&alice).await.1.len(), 6);

    // ----- Identity/get (§6.1) -----
    let mut identities = request(&alice);
    identities.get_identity();
    let mut identities = identities
        .send_single::<IdentityGetResponse>()
        .await
        .unwrap()
        .take_list();
    assert_eq!(identities.len(), 1);
    let identity = identities.pop().unwrap();
    assert_eq!(identity.email(), Some(ALICE));
    let identity_id = identity.id().unwrap().to_owned();

    // ----- A draft (Email/set create with bodyValues), sent with EmailSubmission/set (§7.5) -----
    let mut compose = request(&alice);
    let draft = compose.set_email().create();
    draft
        .mailbox_ids([&drafts_id])
        .keywords(["$draft", "$seen"])
        .from([("Alice", ALICE)])
        .to([("Bob", BOB)])
        .subject("Partnership proposal")
        .text_body(
            EmailBodyPart::new()
                .part_id("body")
                .content_type("text/plain"),
        )
        .body_value("body".to_owned(), "Shall we work together?");
    let draft_create_id = draft.create_id().unwrap();
    let draft = compose
        .send_single::<EmailSetResponse>()
        .await
        .unwrap()
        .created(&draft_create_id)
        .unwrap();
    let draft_id = draft.id().unwrap().to_owned();

    let mut send = request(&alice);
    let submissions = send.set_email_submission();
    let submission_create_id = submissions
        .create()
        .email_id(&draft_id)
        .identity_id(&identity_id)
        .create_id()
        .unwrap();
    // On success the draft moves to Sent and loses $draft: whole-property values, since the
    // client's `mailbox_id(id, false)` / `keyword(k, false)` patches send `false`.
    submissions
        .arguments()
        .on_success_update_email(&submission_create_id)
        .mailbox_ids([&sent_id])
        .keywords(["$seen"]);
    let responses = send.send().await.unwrap().unwrap_method_responses();
    assert_eq!(
        responses.len(),
        2,
        "EmailSubmission/set and the implicit Email/set"
    );
    let mut responses = responses.into_iter();
    let submission = responses
        .next()
        .unwrap()
        .unwrap_set_email_submission()
        .unwrap()
        .created(&submission_create_id)
        .unwrap();
    let submission_id = submission.id().unwrap().to_owned();
    responses
        .next()
        .unwrap()
        .unwrap_set_email()
        .unwrap()
        .updated(&draft_id)
        .unwrap();
    let mut submitted = request(&alice);
    submitted.get_email_submission().ids([&submission_id]);
    let submitted = submitted
        .send_single::<EmailSubmissionGetResponse>()
        .await
        .unwrap()
        .take_list()
        .pop()
        .unwrap();
    assert_eq!(submitted.email_id(), Some(draft_id.as_str()));
    assert_eq!(submitted.identity_id(), Some(identity_id.as_str()));
    let mut sent = request(&alice);
    sent.get_email()
        .ids([&draft_id])
        .properties([email::Property::MailboxIds, email::Property::Keywords]);
    let sent = sent
        .send_single::<EmailGetResponse>()
        .await
        .unwrap()
        .take_list()
        .pop()
        .unwrap();
    assert_eq!(sent.mailbox_ids(), [sent_id.as_str()]);
    assert_eq!(sent.keywords(), ["$seen"]);

    // ----- Bob, with his own token and client, finds it in his Inbox -----
    let bob = connect(&base, bob_token).await;
    assert_eq!(bob.session().username(), BOB);
    let bob_account = bob.default_account_id().to_owned();
    assert_ne!(bob_account, alice_account);
    let (_, bob_list) = mailboxes(&bob).await;
    let bob_inbox = by_role(&bob_list, Role::Inbox);
    let bob_inbox_id = bob_inbox.id().unwrap().to_owned();
    assert_eq!(
        (bob_inbox.total_emails(), bob_inbox.unread_emails()),
        (1, 1)
    );
    let bob_query = query_inbox(&bob, &bob_inbox_id).await;
    assert_eq!(bob_query.ids().len(), 1);
    let bob_email_id = bob_query.ids()[0].clone();
    let mut bob_get = request(&bob);
    bob_get.get_email().ids([&bob_email_id]).properties([
        email::Property::Subject,
        email::Property::From,
        email::Property::BlobId,
        email::Property::Preview,
    ]);
    let bob_email = bob_get
        .send_single::<EmailGetResponse>()
        .await
        .unwrap()
        .take_list()
        .pop()
        .unwrap();
    assert_eq!(bob_email.subject(), Some("Partnership proposal"));
    assert_eq!(bob_email.from().unwrap()[0].email(), ALICE);
    assert_eq!(bob_email.preview(), Some("Shall we work together?"));
    let bob_blob = bob_email.blob_id().unwrap().to_owned();

    // ----- Alice's client cannot reach Bob's account -----
    let mut trespass = request(&alice).account_id(&bob_account);
    trespass
        .query_email()
        .filter(email::query::Filter::in_mailbox(&bob_inbox_id));
    match trespass.send_single::<QueryResponse>().await {
        Err(jmap_client::Error::Method(error)) => {
            assert_eq!(error.error(), &MethodErrorType::AccountNotFound);
        }
        other => panic!("Email/query in bob's account: {other:?}"),
    }
    let mut trespass = request(&alice).account_id(&bob_account);
    trespass.get_email().ids([&bob_email_id]);
    match trespass.send_single::<EmailGetResponse>().await {
        Err(jmap_client::Error::Method(error)) => {
            assert_eq!(error.error(), &MethodErrorType::AccountNotFound);
        }
        other => panic!("Email/get in bob's account: {other:?}"),
    }
    match alice
        .upload(Some(&bob_account), b"x".to_vec(), Some("text/plain"))
        .await
    {
        // A 404 with an RFC 7807 body, which the client reports as a Problem.
        Err(jmap_client::Error::Problem(problem)) => assert_eq!(problem.status, Some(404)),
        other => panic!("an upload to bob's account: {other:?}"),
    }
    let mut alice_as_bob = connect(&base, alice_token).await;
    alice_as_bob.set_default_account_id(&bob_account);
    match alice_as_bob.download(&bob_blob).await {
        Err(jmap_client::Error::Problem(problem)) => assert_eq!(problem.status, Some(404)),
        Err(jmap_client::Error::Server(status)) => assert!(status.starts_with("404"), "{status}"),
        other => panic!("a download from bob's account: {other:?}"),
    }

    // ----- Bad tokens cannot even fetch the Session -----
    let mut forged = alice_token.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let wrong_audience = cli(
        &dir,
        &[
            "token",
            "issue",
            "--tenant",
            "contoso",
            "--user",
            "alice",
            "--audience",
            "https://elsewhere.example/api",
        ],
    );
    for (token, what) in [
        ("not-a-token", "garbage"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "alg none"),
        (forged.as_str(), "a bad signature"),
        (wrong_audience.trim(), "another audience"),
    ] {
        match Client::new()
            .credentials(Credentials::bearer(token))
            .connect(&base)
            .await
        {
            Err(jmap_client::Error::Server(status)) => {
                assert_eq!(status, "401 Unauthorized", "{what}");
            }
            Err(other) => panic!("{what}: {other}"),
            Ok(_) => panic!("{what}: connected"),
        }
    }

    server.terminate();

    // ----- The audit log: alice's mailbox reads, by her app -----
    let accessed = audit(&dir, "MailItemsAccessed");
    let alices: Vec<&Value> = accessed.iter().filter(|r| r["UserId"] == ALICE).collect();
    let types: BTreeSet<&str> = alices
        .iter()
        .map(|r| r["MailAccessType"].as_str().unwrap())
        .collect();
    assert_eq!(types, BTreeSet::from(["Bind", "Sync"]), "{alices:#?}");
    for record in &alices {
        assert_eq!(record["AppId"], "keyscope-mail", "{record}");
        assert_eq!(record["MailboxOwnerUPN"], ALICE, "{record}");
        assert_eq!(
            record["OrganizationId"].as_str().map(str::is_empty),
            Some(false)
        );
    }
    let bound: Vec<String> = alices
        .iter()
        .filter(|r| r["MailAccessType"] == "Bind")
        .flat_map(|r| r["Folders"].as_array().cloned().unwrap_or_default())
        .flat_map(|f| f["FolderItems"].as_array().cloned().unwrap_or_default())
        .filter_map(|item| item["InternetMessageId"].as_str().map(str::to_owned))
        .collect();
    assert!(
        bound.iter().any(|id| id == "<report-42@example.org>"),
        "the message she read is on record: {bound:?}"
    );
    // Nothing of bob's mailbox was read by anyone but bob.
    for record in accessed.iter().filter(|r| r["MailboxOwnerUPN"] == BOB) {
        assert_eq!(record["UserId"], BOB, "{record}");
    }
    let sends = audit(&dir, "Send");
    assert_eq!(sends.len(), 1, "{sends:#?}");
    assert_eq!(sends[0]["UserId"], ALICE);
    assert_eq!(sends[0]["AppId"], "keyscope-mail");
    assert_eq!(sends[0]["Recipients"], serde_json::json!([BOB]));
}
