//! The Storm-0558 drill, step by step. Every step drives the real program: `keyscope up` in
//! a child process, the admin commands as further children, the mail client and the
//! attacker over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::Storm0558Args;
use super::attack::{self, StolenKey};
use super::http::{self, ATTACKER_UA, Http, MailClient};
use super::naive;
use super::output::{Actor, Out, Row, millis};
use super::service::{self, Env, Server, WorkDir};

/// How soon an alert must follow the request that triggered it.
const ALERT_BOUND: Duration = Duration::from_secs(1);
/// How long the drill waits for an alert before calling it missing.
const ALERT_PATIENCE: Duration = Duration::from_secs(5);
/// How long a revocation may take to reach the server (the contract is one second).
const REVOCATION_PATIENCE: Duration = Duration::from_secs(5);
/// The registered redirect URI of the drill's mail client (loopback: any port matches).
const REDIRECT_URI: &str = "http://127.0.0.1/keyscope-mail/callback";
/// The unknown-kid probes: ten from one address make a burst.
const UNKNOWN_KID_PROBES: usize = 10;

/// A user the drill created.
struct Person {
    realm: String,
    username: String,
    sub: String,
    email: String,
    password: Zeroizing<String>,
}

impl Person {
    fn who(&self) -> String {
        format!("{}@{}", self.username, self.realm)
    }
}

/// The drill's cast and state.
struct Drill {
    out: Out,
    http: Http,
    env: Env,
    work: PathBuf,
    server: Option<Server>,
    /// The server's pid for the signal watcher (0: none running).
    server_pid: Arc<AtomicU32>,
    public: String,
    alerts: PathBuf,
    rows: Vec<Row>,
    people: BTreeMap<&'static str, Person>,
    clients: BTreeMap<String, MailClient>,
    /// Requests made with each stolen key (kid → count), to hold the report against.
    attempts: BTreeMap<String, u64>,
    /// Token ids the attacker made up.
    forged_jtis: BTreeSet<String>,
    /// Requests the attacker made.
    attacker_requests: u64,
    naive: Option<Value>,
}

/// The seeded mail: (person, subject, from, body).
const SEED_MAIL: [(&str, &str, &str, &str); 7] = [
    (
        "alice",
        "Q3 board pack - draft for your review",
        "cfo@contoso.example",
        "Numbers attached; please do not forward outside the board.",
    ),
    (
        "alice",
        "Fabrikam term sheet (confidential)",
        "legal@contoso.example",
        "The revised term sheet is below. Strictly need-to-know.",
    ),
    (
        "alice",
        "Delegation travel: Washington, 14-16 June",
        "travel@contoso.example",
        "Flights and hotel are confirmed for the delegation.",
    ),
    (
        "erin",
        "Export-control review of the new design",
        "compliance@fabrikam.example",
        "The review is scheduled for Thursday.",
    ),
    (
        "erin",
        "Re: term sheet",
        "alice@contoso.example",
        "Our counter-proposal follows on Monday.",
    ),
    (
        "carol",
        "Your order has shipped",
        "orders@shop.example",
        "Your parcel is on its way.",
    ),
    (
        "carol",
        "Photos from the weekend",
        "dave@example.net",
        "Here are the pictures from Saturday.",
    ),
];

pub(super) fn run(args: &Storm0558Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let work = WorkDir::create(args.keep)?;
    let server_pid = Arc::new(AtomicU32::new(0));
    service::clean_up_on_signal(work.path().to_owned(), args.keep, Arc::clone(&server_pid));
    let env = Env::new(work.path())?;
    let mut drill = Drill {
        out: Out::new(args.json),
        http: Http::new()?,
        env,
        work: work.path().to_owned(),
        server: None,
        server_pid,
        public: String::new(),
        alerts: work.path().join("alerts.jsonl"),
        rows: Vec::new(),
        people: BTreeMap::new(),
        clients: BTreeMap::new(),
        attempts: BTreeMap::new(),
        forged_jtis: BTreeSet::new(),
        attacker_requests: 0,
        naive: None,
    };
    drill.out.banner(
        "Keyscope drill: Storm-0558 (2023) replayed against a fresh Keyscope",
        &[
            (
                "story",
                "a consumer signing key leaks; the attacker forges enterprise tokens with it"
                    .to_owned(),
            ),
            (
                "directory",
                format!(
                    "{} ({})",
                    work.path().display(),
                    if args.keep {
                        "kept: --keep"
                    } else {
                        "removed at the end; --keep keeps it"
                    }
                ),
            ),
        ],
    );
    let result = drill.play(args.naive);
    // The server goes before the directory, whatever happened.
    if let Some(mut server) = drill.server.take()
        && result.is_err()
    {
        let _ = server.stop();
    }
    drill.server_pid.store(0, Ordering::SeqCst);
    if service::interrupted() {
        drop(drill);
        let path = work.path().display().to_string();
        let kept = work.keep;
        drop(work);
        eprintln!(
            "keyscope demo: interrupted; {} {path}",
            if kept { "kept" } else { "removed" }
        );
        return Ok(ExitCode::from(130));
    }
    if let Err(error) = result {
        let data_dir = work.path().display().to_string();
        if args.keep {
            drill.out.note(&format!("kept {data_dir} for inspection"));
        }
        drop(drill.server.take());
        drop(work);
        if !args.json {
            return Err(error);
        }
        // Machines get a document even when the drill could not finish: what ran, and why not.
        eprintln!("keyscope: error: {error:#}");
        crate::input::print_json(&json!({
            "drill": "storm-0558",
            "passed": false,
            "error": format!("{error:#}"),
            "data_dir": data_dir,
            "kept": args.keep,
            "server_url": drill.public,
            "steps": drill.out.steps(),
            "summary": drill.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "naive": drill.naive,
            "duration_ms": millis(started.elapsed()),
        }));
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    let seconds = started.elapsed().as_secs_f64();
    drill.out.summary(&drill.rows, seconds);
    let passed = drill.rows.iter().all(Row::held);
    let data_dir = work.path().display().to_string();
    drop(std::mem::take(&mut drill.server));
    if args.keep {
        drill.out.note(&format!(
            "kept {data_dir}: data/ (store, master.key, audit log; try keyscope audit search --data-dir {data_dir}/data), alerts.jsonl, server.log, mail/"
        ));
    } else {
        drop(work);
        drill.out.note(&format!("removed {data_dir}"));
    }
    if args.json {
        let document = json!({
            "drill": "storm-0558",
            "passed": passed,
            "data_dir": data_dir,
            "kept": args.keep,
            "server_url": drill.public,
            "steps": drill.out.steps(),
            "summary": drill.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "naive": drill.naive,
            "duration_ms": millis(started.elapsed()),
        });
        crate::input::print_json(&document);
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_NEGATIVE)
    })
}

/// Which realm flag a person's commands take.
fn realm_args(realm: &str) -> Vec<&str> {
    if realm == keyscope_store::CONSUMER_REALM {
        vec!["--consumer"]
    } else {
        vec!["--tenant", realm]
    }
}

fn now_unix() -> i64 {
    keyscope_identity::unix_now()
}

impl Drill {
    fn play(&mut self, naive: bool) -> anyhow::Result<()> {
        self.set_up()?;
        self.ordinary_traffic()?;
        let storm = self.consumer_key_leaks(naive)?;
        let (contoso_key, unissued) = self.enterprise_key_stolen()?;
        self.probes()?;
        let consumer_kid = storm.0.kid.clone();
        self.revoke(&[(&storm.0, &storm.1), (&contoso_key, &unissued)])?;
        self.report_and_notices(&[consumer_kid, contoso_key.kid.clone()])?;
        self.shut_down()?;
        Ok(())
    }

    fn person(&self, name: &str) -> anyhow::Result<&Person> {
        self.people
            .get(name)
            .with_context(|| format!("the drill has no user {name}"))
    }

    fn issuer(&self, realm: &str) -> String {
        if realm == keyscope_store::CONSUMER_REALM {
            format!("{}/{realm}", self.public)
        } else {
            format!("{}/t/{realm}", self.public)
        }
    }

    fn audience(&self) -> String {
        format!("{}/jmap", self.public)
    }

    /// The claims of an access token for `person` in `realm`, as the attacker writes them:
    /// that realm's issuer and `tid`, the mail service's audience, a fresh `jti`.
    fn claims_for(&self, realm: &str, person: &str) -> anyhow::Result<(serde_json::Value, String)> {
        let person = self.person(person)?;
        let claims = attack::claims(
            &self.issuer(realm),
            realm,
            &person.sub,
            &self.audience(),
            now_unix(),
        );
        Ok((claims, person.who()))
    }

    fn row(
        &mut self,
        id: &'static str,
        attack: &str,
        expected: &str,
        observed: String,
        detail: String,
    ) {
        self.rows.push(Row {
            id,
            attack: attack.to_owned(),
            expected: expected.to_owned(),
            observed,
            detail,
        });
    }

    // ----- 1. set-up -----

    fn set_up(&mut self) -> anyhow::Result<()> {
        self.out
            .step("A fresh Keyscope: one consumer realm, two enterprise tenants");
        let started = Instant::now();
        let server = Server::start(&self.env, &self.work, &self.alerts, &self.http)?;
        self.public = format!("http://{}", server.addr);
        self.server_pid.store(server.pid(), Ordering::SeqCst);
        // A signal that came while the server was starting found no pid to stop.
        if service::interrupted() {
            bail!("interrupted");
        }
        self.out.say(
            Actor::Drill,
            Some(true),
            &format!(
                "keyscope up on {} (pid {}, ready in {} ms), live detection writing to alerts.jsonl",
                self.public,
                server.pid(),
                millis(started.elapsed())
            ),
        );
        self.server = Some(server);

        let started = Instant::now();
        for tenant in ["contoso", "fabrikam"] {
            self.env.json(&["tenant", "create", tenant, "--json"])?;
        }
        let cast: [(&'static str, &str, bool); 5] = [
            ("carol", keyscope_store::CONSUMER_REALM, true),
            ("alice", "contoso", false),
            ("bob", "contoso", true),
            ("erin", "fabrikam", false),
            ("frank", "fabrikam", true),
        ];
        for (name, realm, admin) in cast {
            let mut args = vec!["user", "add"];
            args.extend(realm_args(realm));
            args.extend([name, "--json"]);
            if admin {
                args.push("--admin");
            }
            let added = self.env.json(&args)?;
            let text = |field: &str| {
                added
                    .get(field)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("user add printed no {field}"))
            };
            self.people.insert(
                name,
                Person {
                    realm: realm.to_owned(),
                    username: name.to_owned(),
                    sub: text("sub")?,
                    email: text("email")?,
                    password: Zeroizing::new(text("password")?),
                },
            );
        }
        let audience = self.audience();
        for realm in [keyscope_store::CONSUMER_REALM, "contoso", "fabrikam"] {
            let mut args = vec!["app", "add"];
            args.extend(realm_args(realm));
            args.extend([
                "--name",
                "Keyscope Mail (drill)",
                "--grant",
                "authorization_code",
                "--grant",
                "refresh_token",
                "--redirect-uri",
                REDIRECT_URI,
                "--resource",
                &audience,
                "--json",
            ]);
            let app = self.env.json(&args)?;
            let client_id = app
                .get("client_id")
                .and_then(Value::as_str)
                .context("app add printed no client_id")?
                .to_owned();
            self.clients.insert(
                realm.to_owned(),
                MailClient {
                    issuer: self.issuer(realm),
                    client_id,
                    redirect_uri: REDIRECT_URI.to_owned(),
                },
            );
        }
        let admins: Vec<String> = ["carol", "bob", "frank"]
            .iter()
            .filter_map(|n| self.people.get(n).map(Person::who))
            .collect();
        self.out.say(
            Actor::Operator,
            Some(true),
            &format!(
                "tenants contoso and fabrikam; users {}; administrators {}",
                self.people
                    .values()
                    .map(Person::who)
                    .collect::<Vec<_>>()
                    .join(", "),
                admins.join(", ")
            ),
        );
        self.out.say(
            Actor::Operator,
            Some(true),
            "a public mail client in each realm (authorization code + PKCE, audience: the mail service)",
        );

        // Seeded mail, through `keyscope mail import`.
        let mail_dir = self.work.join("mail");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&mail_dir)
            .context("cannot create the mail directory")?;
        let mut files: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (n, (who, subject, from, body)) in SEED_MAIL.iter().enumerate() {
            let person = self.person(who)?;
            let path = mail_dir.join(format!("{n}-{who}.eml"));
            let message = format!(
                "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nDate: Mon, {} Jun 2023 09:{:02}:00 +0000\r\n\
                 Message-ID: <seed-{n}@keyscope-drill.invalid>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
                person.email,
                12 + n,
                n * 7
            );
            std::fs::write(&path, message)
                .with_context(|| format!("cannot write {}", path.display()))?;
            files
                .entry(who)
                .or_default()
                .push(path.display().to_string());
        }
        let mut seeded = Vec::new();
        for (who, paths) in &files {
            let person = self.person(who)?;
            let mut args = vec!["mail", "import"];
            args.extend(realm_args(&person.realm));
            args.extend(["--user", who, "--json"]);
            args.extend(paths.iter().map(String::as_str));
            let imported = self.env.json(&args)?;
            seeded.push(format!(
                "{} {}",
                imported
                    .get("imported")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                person.who()
            ));
        }
        self.out.say(
            Actor::Operator,
            Some(true),
            &format!(
                "seeded Inboxes: {} (set-up took {} ms)",
                seeded.join(", "),
                millis(started.elapsed())
            ),
        );
        Ok(())
    }

    // ----- 2. ordinary traffic -----

    fn ordinary_traffic(&mut self) -> anyhow::Result<()> {
        self.out
            .step("Ordinary mail traffic with the regular mail client");
        let mut read = Vec::new();
        let mut failures = Vec::new();
        for name in ["alice", "erin", "carol"] {
            let person = self.person(name)?;
            let client = self
                .clients
                .get(&person.realm)
                .context("no mail client for the realm")?;
            let outcome = http::sign_in(&self.http, client, &person.username, &person.password)
                .and_then(|token| http::read_inbox(&self.http, &self.public, &token, None));
            match outcome {
                Ok(inbox) => {
                    let who = person.who();
                    self.out.say(
                        Actor::User,
                        Some(true),
                        &format!(
                            "{who} signs in (authorization code + PKCE) and reads the Inbox: {} messages, newest \"{}\"",
                            inbox.total,
                            inbox.subjects.first().map_or("-", String::as_str)
                        ),
                    );
                    read.push((who, inbox.total));
                }
                Err(error) => {
                    let who = person.who();
                    self.out
                        .say(Actor::User, Some(false), &format!("{who}: {error:#}"));
                    failures.push(who);
                }
            }
        }
        let messages: u64 = read.iter().map(|(_, n)| n).sum();
        let observed = if failures.is_empty() {
            "signed in, mail read".to_owned()
        } else {
            format!("failed for {}", failures.join(", "))
        };
        self.row(
            "control-genuine-users",
            "control: genuine users sign in, read mail",
            "signed in, mail read",
            observed,
            format!("{} users, {messages} messages listed", read.len()),
        );
        Ok(())
    }

    // ----- the attacker's requests -----

    /// Presents a token to the mail service as the attacker; the refusal reason, or
    /// "accepted (HTTP n)".
    fn present(&mut self, token: &str, kid: Option<&str>) -> anyhow::Result<(String, Instant)> {
        let response = self.http.get_as(
            &format!("{}/.well-known/jmap", self.public),
            Some(token),
            ATTACKER_UA,
        )?;
        let at = Instant::now();
        self.attacker_requests += 1;
        if let Some(kid) = kid {
            *self.attempts.entry(kid.to_owned()).or_default() += 1;
        }
        if let Some(jti) = jti_of(token) {
            self.forged_jtis.insert(jti);
        }
        let outcome = match (response.status, response.bearer_reason()) {
            (401, Some(reason)) => format!("refused {reason}"),
            (401, None) => "refused without a reason".to_owned(),
            (status, _) => format!("accepted (HTTP {status})"),
        };
        Ok((outcome, at))
    }

    fn say_refusal(&mut self, outcome: &str, expected: &str) {
        let held = outcome == expected;
        let text = if held {
            format!("{outcome} (HTTP 401)")
        } else {
            format!("{outcome}: expected {expected}")
        };
        self.out.say(Actor::Keyscope, Some(held), &text);
    }

    /// Waits for a new alert of `rule` (more lines than `before`) and adds its row.
    fn expect_alert(&mut self, id: &'static str, rule: &str, before: usize, since: Instant) {
        let waited = wait_alert(&self.alerts, rule, before, since);
        let expected = "alert within 1 s";
        let (observed, detail) = match waited {
            Some(after) if after <= ALERT_BOUND => (
                expected.to_owned(),
                format!("{rule} raised {} ms after the request", millis(after)),
            ),
            Some(after) => (
                format!("alert after {} ms", millis(after)),
                format!("{rule} raised {} ms after the request", millis(after)),
            ),
            None => (
                "no alert".to_owned(),
                format!("{rule} not raised within {} s", ALERT_PATIENCE.as_secs()),
            ),
        };
        let held = observed == expected;
        self.out.say(Actor::Detection, Some(held), &detail);
        self.row(
            id,
            &format!("detection: {rule}"),
            expected,
            observed,
            detail,
        );
    }

    // ----- 3. the consumer key -----

    fn consumer_key_leaks(&mut self, naive: bool) -> anyhow::Result<(StolenKey, String)> {
        self.out.step("The consumer realm's signing key leaks");
        let key = attack::steal(
            &self.http,
            &self.env.data_dir,
            keyscope_store::CONSUMER_REALM,
        )?;
        self.out.say(
            Actor::Attacker,
            None,
            &format!(
                "holds the consumer signing key {} (unsealed from the drill's own key store with its master.key, standing in for the 2023 crash dump)",
                key.kid
            ),
        );
        let (claims, who) = self.claims_for("contoso", "alice")?;
        let token = key.forge(&claims)?;
        self.out.say(
            Actor::Attacker,
            None,
            &format!(
                "forges an access token for {who}: iss {}, tid contoso, signed with {}",
                self.issuer("contoso"),
                key.kid
            ),
        );
        let before = alert_count(&self.alerts, "ks-token-key-issuer-mismatch");
        let (outcome, at) = self.present(&token, Some(&key.kid))?;
        let expected = "refused key_issuer_mismatch";
        self.say_refusal(&outcome, expected);
        self.row(
            "consumer-key-forges-enterprise-token",
            "consumer key signs a contoso token",
            expected,
            outcome,
            format!(
                "kid {} (consumers), iss {}",
                key.kid,
                self.issuer("contoso")
            ),
        );
        self.expect_alert(
            "alert-key-issuer-mismatch",
            "ks-token-key-issuer-mismatch",
            before,
            at,
        );
        if naive {
            self.naive_replay(&token)?;
        }
        Ok((key, token))
    }

    /// The same token against the 2023-style validator: what would have happened.
    fn naive_replay(&mut self, token: &str) -> anyhow::Result<()> {
        self.out.say(
            Actor::Naive,
            None,
            "the same token against a naive validator: signature checked against every realm's published keys, issuer not bound to key",
        );
        let mut published = Vec::new();
        for realm in [keyscope_store::CONSUMER_REALM, "contoso", "fabrikam"] {
            let url = format!("{}/jwks", self.issuer(realm));
            let response = self.http.get(&url, None)?;
            if response.status != 200 {
                bail!("GET {url} answered HTTP {}", response.status);
            }
            let keys = keyscope_jose::JwkSet::parse(&response.body)
                .with_context(|| format!("the key set at {url}"))?;
            published.push(naive::PublishedKeys {
                realm: realm.to_owned(),
                keys,
            });
        }
        match naive::validate(token, &published, &self.audience(), now_unix()) {
            Ok(accepted) => {
                self.out.say(
                    Actor::Naive,
                    None,
                    &format!(
                        "ACCEPTED: key {} (published by {}, bound to {}) verified the signature; iss {} believed",
                        accepted.kid,
                        accepted.key_realm,
                        accepted.key_issuer.as_deref().unwrap_or("-"),
                        accepted.iss
                    ),
                );
                let realm = accepted.tid.clone().unwrap_or_default();
                let data_dir = self.env.data_dir.clone();
                let sub = accepted.sub.clone();
                let opened = self.http.block_on(async {
                    let store = keyscope_store::Store::open_sqlite(&data_dir).await?;
                    let found = naive::mailbox_it_would_open(&store, &realm, &sub).await;
                    store.close().await;
                    found
                })?;
                let would_open = match &opened {
                    Some((mailbox, total, subjects)) => {
                        self.out.say(
                            Actor::Naive,
                            None,
                            &format!(
                                "a naive validator would have opened {mailbox}'s Inbox ({total} messages): {}",
                                subjects
                                    .iter()
                                    .map(|s| format!("\"{s}\""))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                        json!({"mailbox": mailbox, "total": total, "subjects": subjects})
                    }
                    None => Value::Null,
                };
                self.naive = Some(json!({
                    "accepted": true,
                    "kid": accepted.kid,
                    "key_realm": accepted.key_realm,
                    "key_issuer": accepted.key_issuer,
                    "token_iss": accepted.iss,
                    "tid": accepted.tid,
                    "sub": accepted.sub,
                    "would_open": would_open,
                }));
            }
            Err(why) => {
                self.out.say(
                    Actor::Naive,
                    None,
                    &format!("refused ({why}): the contrast did not reproduce"),
                );
                self.naive = Some(json!({"accepted": false, "error": why}));
            }
        }
        self.out.say(
            Actor::Keyscope,
            None,
            "Keyscope's validator binds each key to its issuer and asks the issuance ledger: that is the difference",
        );
        Ok(())
    }

    // ----- 4. an enterprise key -----

    fn enterprise_key_stolen(&mut self) -> anyhow::Result<(StolenKey, String)> {
        self.out.step("The attacker steals an enterprise key too");
        let key = attack::steal(&self.http, &self.env.data_dir, "contoso")?;
        self.out.say(
            Actor::Attacker,
            None,
            &format!("holds contoso's own signing key {}", key.kid),
        );
        let (claims, who) = self.claims_for("contoso", "alice")?;
        let token = key.forge(&claims)?;
        self.out.say(
            Actor::Attacker,
            None,
            &format!("forges a correctly signed token for {who} with it"),
        );
        let before = alert_count(&self.alerts, "ks-token-not-issued");
        let (outcome, at) = self.present(&token, Some(&key.kid))?;
        let expected = "refused token_not_issued";
        self.say_refusal(&outcome, expected);
        self.row(
            "enterprise-key-forges-token",
            "stolen contoso key signs a contoso token",
            expected,
            outcome,
            format!(
                "kid {}: signature valid, jti unknown to the ledger",
                key.kid
            ),
        );
        self.expect_alert("alert-not-issued", "ks-token-not-issued", before, at);

        // The same key against the other tenant.
        let (claims, who) = self.claims_for("fabrikam", "erin")?;
        let cross = key.forge(&claims)?;
        self.out.say(
            Actor::Attacker,
            None,
            &format!("forges a token for {who} with contoso's key"),
        );
        let (outcome, _) = self.present(&cross, Some(&key.kid))?;
        let expected = "refused key_issuer_mismatch";
        self.say_refusal(&outcome, expected);
        self.row(
            "enterprise-key-crosses-tenants",
            "stolen contoso key signs a fabrikam token",
            expected,
            outcome,
            format!("kid {} (contoso), iss {}", key.kid, self.issuer("fabrikam")),
        );
        Ok((key, token))
    }

    // ----- 5. probes -----

    fn probes(&mut self) -> anyhow::Result<()> {
        self.out
            .step("The token front door is probed with the classic tricks");
        let (claims, _) = self.claims_for("contoso", "alice")?;
        let probes: [(&'static str, &str, String, &str); 2] = [
            (
                "probe-alg-none",
                "probe: alg none, no signature",
                attack::alg_none(&claims),
                "refused alg_not_allowed",
            ),
            (
                "probe-embedded-jwk",
                "probe: attacker's key embedded (jwk)",
                attack::embedded_jwk(&attack::own_key("attacker-1")?, &claims)?,
                "refused unsupported_header",
            ),
        ];
        for (id, attack_name, token, expected) in probes {
            self.out.say(
                Actor::Attacker,
                None,
                attack_name.trim_start_matches("probe: "),
            );
            let (outcome, _) = self.present(&token, None)?;
            self.say_refusal(&outcome, expected);
            self.row(id, attack_name, expected, outcome, String::new());
        }

        let before = alert_count(&self.alerts, "ks-token-unknown-key-burst");
        self.out.say(
            Actor::Attacker,
            None,
            &format!(
                "{UNKNOWN_KID_PROBES} correctly signed tokens naming keys nobody published (first: {}, the 2016 MSA key)",
                attack::STORM_0558_KID
            ),
        );
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        let mut last = Instant::now();
        for i in 0..UNKNOWN_KID_PROBES {
            let kid = if i == 0 {
                attack::STORM_0558_KID.to_owned()
            } else {
                format!("guess-{i}")
            };
            let token = attack::unknown_kid(&kid, &claims)?;
            let (outcome, at) = self.present(&token, None)?;
            *outcomes.entry(outcome).or_default() += 1;
            last = at;
        }
        let expected = "refused unknown_key";
        let observed = if outcomes.len() == 1 {
            outcomes.keys().next().cloned().unwrap_or_default()
        } else {
            outcomes
                .iter()
                .map(|(o, n)| format!("{n}x {o}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.say_refusal(&observed, expected);
        self.row(
            "probe-unknown-kid",
            "probe: 10 tokens with unknown kids",
            expected,
            observed,
            format!("{UNKNOWN_KID_PROBES} requests from one address"),
        );
        self.expect_alert(
            "alert-unknown-key-burst",
            "ks-token-unknown-key-burst",
            before,
            last,
        );
        Ok(())
    }

    // ----- 6. response -----

    fn revoke(&mut self, stolen: &[(&StolenKey, &String)]) -> anyhow::Result<()> {
        self.out
            .step("Response: the operator revokes the stolen keys");
        let mut revoked_at = Vec::new();
        for (key, _) in stolen {
            let started = Instant::now();
            self.env.json(&[
                "key",
                "revoke",
                &key.kid,
                "--reason",
                "stolen (Storm-0558 drill)",
                "--json",
            ])?;
            self.out.say(
                Actor::Operator,
                Some(true),
                &format!(
                    "keyscope key revoke {} ({}) in {} ms",
                    key.kid,
                    key.realm,
                    millis(started.elapsed())
                ),
            );
            revoked_at.push(Instant::now());
        }
        // Unpublished everywhere within a second: watch the realms' JWKS.
        for ((key, _), started) in stolen.iter().zip(revoked_at) {
            let url = format!("{}/jwks", self.issuer(&key.realm));
            loop {
                let response = self.http.get(&url, None)?;
                let listed = String::from_utf8_lossy(&response.body).contains(&key.kid);
                if response.status == 200 && !listed {
                    self.out.say(
                        Actor::Keyscope,
                        Some(true),
                        &format!(
                            "{} unpublished from {url} {} ms after its revocation",
                            key.kid,
                            millis(started.elapsed())
                        ),
                    );
                    break;
                }
                if started.elapsed() > REVOCATION_PATIENCE {
                    self.out.say(
                        Actor::Keyscope,
                        Some(false),
                        &format!("{} still published at {url}", key.kid),
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let rows: [(&'static str, &str); 2] = [
            (
                "replay-after-revocation-consumer",
                "replay: consumer-key token after revocation",
            ),
            (
                "replay-after-revocation-enterprise",
                "replay: contoso-key token after revocation",
            ),
        ];
        for (n, ((key, token), (id, name))) in stolen.iter().zip(rows).enumerate() {
            self.out.say(
                Actor::Attacker,
                None,
                &format!("replays the token signed with {}", key.kid),
            );
            let before = alert_count(&self.alerts, "ks-token-revoked-key");
            let (outcome, at) = self.present(token, Some(&key.kid))?;
            let expected = "refused key_revoked";
            self.say_refusal(&outcome, expected);
            self.row(id, name, expected, outcome, format!("kid {}", key.kid));
            if n == 0 {
                self.expect_alert("alert-revoked-key", "ks-token-revoked-key", before, at);
            }
        }
        Ok(())
    }

    // ----- 7. report and notices -----

    fn report_and_notices(&mut self, kids: &[String]) -> anyhow::Result<()> {
        self.out.step("Incident report and tenant notices");
        // The revocations reach the audit log through the store's outbox (within 250 ms).
        let audit_dir = keyscope_audit::audit_dir(&self.env.data_dir);
        let started = Instant::now();
        loop {
            let revoked = revoked_in_log(&audit_dir)?;
            if kids.iter().all(|k| revoked.contains(k)) {
                break;
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("the KeyRevoked records did not reach the audit log within 10 s");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let mut notified: BTreeMap<String, bool> = BTreeMap::new();
        let mut listed_ok = true;
        let mut listing = Vec::new();
        for kid in kids {
            let started = Instant::now();
            let output = self.env.run(
                &["incident", "report", "--kid", kid, "--json", "--notify"],
                None,
            )?;
            let report: Value = serde_json::from_str(output.stdout.trim()).with_context(|| {
                format!("incident report --kid {kid}: {}", output.stderr.trim())
            })?;
            let number =
                |pointer: &str| report.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
            let by_reason = report
                .pointer("/refused_attempts/by_reason")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(r, n)| format!("{r} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let tenants = strings(report.get("tenants"));
            self.out.say(
                Actor::Operator,
                Some(output.code == Some(0)),
                &format!(
                    "keyscope incident report --kid {kid} --notify ({} ms): {} issued, {} accepted; {} ({by_reason}); {} with its tokens; tenants {}",
                    millis(started.elapsed()),
                    plural(number("/tokens_issued/count"), "token"),
                    plural(number("/tokens_accepted/requests"), "request"),
                    plural(number("/refused_attempts/count"), "refused attempt"),
                    plural(number("/mail_accessed/operations"), "mailbox operation"),
                    tenants.join(", ")
                ),
            );
            let made = self.attempts.get(kid).copied().unwrap_or(0);
            let listed = number("/refused_attempts/count");
            if listed != made {
                listed_ok = false;
            }
            listing.push(format!("{kid}: {listed} of {made} attempts listed"));
            for notice in report
                .get("notices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let tenant = notice
                    .get("tenant")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_owned();
                let delivered = notice.get("delivered").and_then(Value::as_bool) == Some(true);
                *notified.entry(tenant).or_insert(true) &= delivered;
            }
        }

        // What the attacker reached, from the audit log itself: any accepted request whose
        // token the ledger never issued, and any mailbox access or send with such a token.
        let reach = attacker_reach(&audit_dir, &self.forged_jtis)?;
        let expected = "0 accepted, 0 mail items; all attempts listed";
        let observed = format!(
            "{} accepted, {} mail items; {}",
            reach.accepted,
            reach.mail,
            if listed_ok {
                "all attempts listed"
            } else {
                "attempts missing"
            }
        );
        let held = observed == expected;
        self.out.say(
            Actor::Keyscope,
            Some(held),
            &format!(
                "what the attacker touched: {} requests accepted and {} mailbox items read or sent with tokens the ledger never issued; {} ({})",
                reach.accepted,
                reach.mail,
                if listed_ok {
                    "the reports list every attempt"
                } else {
                    "the reports MISS attempts"
                },
                listing.join("; ")
            ),
        );
        self.row(
            "report-attacker-reach",
            "incident report: what the attacker reached",
            expected,
            observed,
            listing.join("; "),
        );

        // The notices, as the tenants' administrators see them.
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for admin in ["carol", "bob", "frank"] {
            let person = self.person(admin)?;
            let who = person.who();
            let realm = person.realm.clone();
            let client = self
                .clients
                .get(&realm)
                .context("no mail client for the realm")?;
            let inbox = http::sign_in(&self.http, client, &person.username, &person.password)
                .and_then(|t| {
                    http::read_inbox(&self.http, &self.public, &t, Some("incident notice"))
                });
            match inbox {
                Ok(inbox) if inbox.total > 0 && notified.get(&realm) == Some(&true) => {
                    self.out.say(
                        Actor::User,
                        Some(true),
                        &format!(
                            "{who} (administrator) finds {} in the Inbox: \"{}\"",
                            plural(inbox.total, "incident notice"),
                            inbox.subjects.first().map_or("-", String::as_str)
                        ),
                    );
                    found.push(realm);
                }
                Ok(_) => {
                    self.out.say(
                        Actor::User,
                        Some(false),
                        &format!("{who} (administrator) has no incident notice"),
                    );
                    missing.push(realm);
                }
                Err(error) => {
                    self.out
                        .say(Actor::User, Some(false), &format!("{who}: {error:#}"));
                    missing.push(realm);
                }
            }
        }
        let expected = "notified: consumers, contoso, fabrikam";
        let observed = if missing.is_empty() {
            format!("notified: {}", found.join(", "))
        } else {
            format!("not notified: {}", missing.join(", "))
        };
        self.row(
            "tenants-notified",
            "response: affected tenants notified",
            expected,
            observed,
            "incident notices in the administrators' Inboxes".to_owned(),
        );
        Ok(())
    }

    // ----- 8. shut down -----

    fn shut_down(&mut self) -> anyhow::Result<()> {
        self.out.step("Shut down and verify the audit log");
        if let Some(mut server) = self.server.take() {
            let stopped = server.stop();
            self.server_pid.store(0, Ordering::SeqCst);
            let (code, took) = stopped?;
            self.out.say(
                Actor::Drill,
                Some(code == Some(0)),
                &format!(
                    "keyscope up stopped on SIGTERM in {} ms (exit {})",
                    millis(took),
                    code.map_or_else(|| "by signal".to_owned(), |c| c.to_string())
                ),
            );
        }
        let output = self.env.run(&["audit", "verify", "--json"], None)?;
        let verdict: Value = serde_json::from_str(output.stdout.trim())
            .with_context(|| format!("audit verify printed no JSON: {}", output.stderr.trim()))?;
        let intact = verdict.get("intact").and_then(Value::as_bool) == Some(true);
        let records = verdict.get("records").and_then(Value::as_u64).unwrap_or(0);
        let detail = if intact {
            format!("{records} records: every hash link and signed checkpoint verified")
        } else {
            format!(
                "NOT intact: {}",
                verdict.get("problem").unwrap_or(&Value::Null)
            )
        };
        self.out.say(
            Actor::Operator,
            Some(intact),
            &format!("keyscope audit verify: {detail}"),
        );
        let recorded = refusals_from(&keyscope_audit::audit_dir(&self.env.data_dir), ATTACKER_UA)?;
        let made = self.attacker_requests;
        self.out.say(
            Actor::Operator,
            Some(recorded == made),
            &format!(
                "every attacker request is in the log as a refusal: {recorded} of {made} (keyscope audit search --op TokenValidated)"
            ),
        );
        let observed = match (intact, recorded == made) {
            (true, true) => "intact, every attempt recorded".to_owned(),
            (true, false) => format!("intact, {recorded} of {made} attempts recorded"),
            (false, _) => "not intact".to_owned(),
        };
        self.row(
            "audit-log",
            "the audit log afterwards",
            "intact, every attempt recorded",
            observed,
            format!("{detail}; {recorded} of {made} attacker requests recorded as refusals"),
        );
        Ok(())
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The `jti` of a token, if it has one (the attacker's own bookkeeping).
fn jti_of(token: &str) -> Option<String> {
    let claims = token.split('.').nth(1)?;
    let bytes = keyscope_jose::b64::decode_url(claims.as_bytes()).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("jti").and_then(Value::as_str).map(str::to_owned)
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The alert file's lines for `rule`.
fn alert_count(path: &Path, rule: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|a| a.get("rule_id").and_then(Value::as_str) == Some(rule))
        .count()
}

/// Polls the alert file until `rule` has more than `before` lines; the time since `since`.
fn wait_alert(path: &Path, rule: &str, before: usize, since: Instant) -> Option<Duration> {
    loop {
        if alert_count(path, rule) > before {
            return Some(since.elapsed());
        }
        if since.elapsed() > ALERT_PATIENCE {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Refused `TokenValidated` records of requests made with this user agent.
fn refusals_from(audit_dir: &Path, agent: &str) -> anyhow::Result<u64> {
    let mut count = 0;
    keyscope_audit::read_records(audit_dir, |record| {
        let text = |name: &str| record.get(name).and_then(Value::as_str);
        if text("Operation") == Some("TokenValidated")
            && text("ClientInfoString") == Some(agent)
            && text("ResultStatus") != Some("Success")
        {
            count += 1;
        }
        true
    })
    .context("cannot read the audit log")?;
    Ok(count)
}

fn revoked_in_log(audit_dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut revoked = BTreeSet::new();
    keyscope_audit::read_records(audit_dir, |record| {
        if record.get("Operation").and_then(Value::as_str) == Some("KeyRevoked")
            && let Some(kid) = record.get("KeyId").and_then(Value::as_str)
        {
            revoked.insert(kid.to_owned());
        }
        true
    })
    .context("cannot read the audit log")?;
    Ok(revoked)
}

/// What tokens the ledger never issued achieved, according to the audit log.
struct Reach {
    /// Accepted requests with such tokens.
    accepted: u64,
    /// Mailbox items read, or messages sent, with such tokens.
    mail: u64,
}

fn attacker_reach(audit_dir: &Path, forged: &BTreeSet<String>) -> anyhow::Result<Reach> {
    let mut records: Vec<Map<String, Value>> = Vec::new();
    keyscope_audit::read_records(audit_dir, |record| {
        records.push(record);
        true
    })
    .context("cannot read the audit log")?;
    Ok(reach(&records, forged))
}

/// Accepted requests, and mailbox items read or sent, with a token that is one of `forged`
/// or that no `TokenIssued` record in `records` accounts for.
fn reach(records: &[Map<String, Value>], forged: &BTreeSet<String>) -> Reach {
    let field = |r: &Map<String, Value>, name: &str| -> Option<String> {
        r.get(name).and_then(Value::as_str).map(str::to_owned)
    };
    let issued: BTreeSet<String> = records
        .iter()
        .filter(|r| field(r, "Operation").as_deref() == Some("TokenIssued"))
        .filter_map(|r| field(r, "TokenId"))
        .collect();
    let not_issued = |r: &Map<String, Value>| {
        field(r, "TokenId").is_some_and(|jti| forged.contains(&jti) || !issued.contains(&jti))
    };
    let mut reach = Reach {
        accepted: 0,
        mail: 0,
    };
    for record in records {
        match field(record, "Operation").as_deref() {
            Some("TokenValidated")
                if field(record, "ResultStatus").as_deref() == Some("Success")
                    && not_issued(record) =>
            {
                reach.accepted += 1;
            }
            Some("MailItemsAccessed" | "Send") if not_issued(record) => {
                reach.mail += record
                    .get("OperationCount")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
            }
            _ => {}
        }
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn reach_counts_only_what_unissued_tokens_did() {
        let forged = BTreeSet::from(["forged-1".to_owned()]);
        let records = [
            json!({"Operation": "TokenIssued", "TokenId": "genuine"}),
            json!({"Operation": "TokenValidated", "TokenId": "genuine", "ResultStatus": "Success"}),
            json!({"Operation": "MailItemsAccessed", "TokenId": "genuine", "OperationCount": 4}),
            json!({"Operation": "TokenValidated", "TokenId": "forged-1", "ResultStatus": "Failure"}),
            json!({"Operation": "MailItemsAccessed"}),
        ]
        .map(record);
        let clean = reach(&records, &forged);
        assert_eq!((clean.accepted, clean.mail), (0, 0));

        // A forged token that got in, and one the ledger never saw that read mail.
        let breached = [
            json!({"Operation": "TokenValidated", "TokenId": "forged-1", "ResultStatus": "Success"}),
            json!({"Operation": "TokenValidated", "TokenId": "stray", "ResultStatus": "Success"}),
            json!({"Operation": "MailItemsAccessed", "TokenId": "stray", "OperationCount": 3}),
            json!({"Operation": "Send", "TokenId": "forged-1"}),
        ]
        .map(record);
        let all: Vec<_> = records.iter().chain(breached.iter()).cloned().collect();
        let hit = reach(&all, &forged);
        assert_eq!((hit.accepted, hit.mail), (2, 4));
    }

    #[test]
    fn plural_and_jti() {
        assert_eq!(plural(1, "token"), "1 token");
        assert_eq!(plural(0, "token"), "0 tokens");
        let claims = keyscope_jose::b64::encode_url(br#"{"jti":"forged-x"}"#);
        assert_eq!(
            jti_of(&format!("e30.{claims}.")).as_deref(),
            Some("forged-x")
        );
        assert_eq!(jti_of("not a token"), None);
    }
}
