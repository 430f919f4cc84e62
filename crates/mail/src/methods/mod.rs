//! The JMAP methods, over one authenticated account.
//!
//! A [`Context`] is built per API request from the verified token: it holds the one account
//! the token opens and collects what was read, for the `MailItemsAccessed` records written
//! before the response leaves. Every method checks `accountId` against that account and
//! answers `accountNotFound` for anything else, so another account's existence is never
//! revealed.

mod email;
mod mailbox;
mod submission;

pub(crate) use email::account_blob;
pub use mailbox::{MAX_DEPTH as MAX_MAILBOX_DEPTH, MAX_NAME_BYTES as MAX_MAILBOX_NAME_BYTES};

use std::collections::{BTreeMap, BTreeSet};

use keyscope_jmap::capabilities::{MAIL, SUBMISSION};
use keyscope_jmap::{CreatedIds, Dispatcher, MethodError, MethodErrorType, MethodResponses};
use keyscope_store::{ChangeKind, ChangeOp, EmailRecord, MailAccount, MailboxRecord, StoreError};
use serde_json::{Map, Value, json};

use crate::MailService;

/// The methods this server implements, with the capability each needs in `using`.
pub const METHODS: [(&str, &str); 16] = [
    ("Mailbox/get", MAIL),
    ("Mailbox/changes", MAIL),
    ("Mailbox/query", MAIL),
    ("Mailbox/set", MAIL),
    ("Thread/get", MAIL),
    ("Thread/changes", MAIL),
    ("Email/get", MAIL),
    ("Email/changes", MAIL),
    ("Email/query", MAIL),
    ("Email/queryChanges", MAIL),
    ("Email/set", MAIL),
    ("Email/import", MAIL),
    ("Identity/get", SUBMISSION),
    ("EmailSubmission/set", SUBMISSION),
    ("EmailSubmission/get", SUBMISSION),
    ("EmailSubmission/changes", SUBMISSION),
];

/// The dispatcher with every method registered.
pub fn dispatcher() -> Dispatcher {
    let mut dispatcher = Dispatcher::new();
    for (name, capability) in METHODS {
        dispatcher.register(name, capability);
    }
    dispatcher
}

/// Mailbox reads of one request, for the audit record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accessed {
    /// `Bind`: folder path → Internet Message-IDs of the messages whose content was read.
    pub bind: BTreeMap<String, BTreeSet<String>>,
    /// How many message reads (`OperationCount` of the Bind record).
    pub bind_count: usize,
    /// `Sync`: folder paths listed (queries and changes).
    pub sync: BTreeSet<String>,
    /// How many listing operations (`OperationCount` of the Sync record).
    pub sync_count: usize,
    /// Submissions: (email id, Internet Message-ID, recipients).
    pub sent: Vec<(String, Option<String>, Vec<String>)>,
}

/// One request's view of its account.
pub struct Context<'a> {
    service: &'a MailService,
    account: &'a MailAccount,
    /// What was read or sent.
    pub accessed: Accessed,
    /// Accounts whose state changed (for push).
    pub changed: BTreeSet<String>,
    folders: Option<BTreeMap<String, String>>,
    /// Responses of implicit calls (`Email/set` after `EmailSubmission/set`).
    implicit: MethodResponses,
    /// States read so far, reused while the request only reads (a query and the get that
    /// follows it report the same state, and cost one lookup).
    states: std::sync::Mutex<BTreeMap<ChangeKind, i64>>,
    /// Whether the running method only reads.
    read_only: bool,
}

impl<'a> Context<'a> {
    /// A context for `account`.
    pub fn new(service: &'a MailService, account: &'a MailAccount) -> Context<'a> {
        Context {
            service,
            account,
            accessed: Accessed::default(),
            changed: BTreeSet::new(),
            folders: None,
            implicit: Vec::new(),
            states: std::sync::Mutex::new(BTreeMap::new()),
            read_only: true,
        }
    }

    /// The account.
    pub fn account(&self) -> &MailAccount {
        self.account
    }

    /// Runs one method.
    pub async fn call(
        &mut self,
        name: &str,
        arguments: Map<String, Value>,
        created_ids: &mut CreatedIds,
    ) -> Result<MethodResponses, MethodError> {
        let args = Args(arguments);
        args.check_account(self.account)?;
        self.read_only = !(name.ends_with("/set") || name.ends_with("/import"));
        if !self.read_only
            && let Ok(mut states) = self.states.lock()
        {
            // Whatever this call changes, later calls must see.
            states.clear();
        }
        let result = match name {
            "Mailbox/get" => mailbox::get(self, &args).await,
            "Mailbox/changes" => changes(self, &args, ChangeKind::Mailbox).await,
            "Mailbox/query" => mailbox::query(self, &args).await,
            "Mailbox/set" => mailbox::set(self, &args, created_ids).await,
            "Thread/get" => thread_get(self, &args).await,
            "Thread/changes" => changes(self, &args, ChangeKind::Thread).await,
            "Email/get" => email::get(self, &args).await,
            "Email/changes" => {
                let response = changes(self, &args, ChangeKind::Email).await;
                if response.is_ok() {
                    self.note_sync_all().await?;
                }
                response
            }
            "Email/query" => email::query(self, &args).await,
            "Email/queryChanges" => email::query_changes(self, &args).await,
            "Email/set" => email::set(self, &args, created_ids).await,
            "Email/import" => email::import(self, &args, created_ids).await,
            "Identity/get" => identity_get(self, &args),
            "EmailSubmission/set" => submission::set(self, &args, created_ids).await,
            "EmailSubmission/get" => submission::get(self, &args).await,
            "EmailSubmission/changes" => changes(self, &args, ChangeKind::EmailSubmission).await,
            _ => Err(Outcome::Error(MethodError::unknown_method())),
        };
        let response = result.map_err(Outcome::into_error)?;
        let mut responses = vec![(name.to_owned(), response)];
        responses.append(&mut self.implicit);
        Ok(responses)
    }

    fn service(&self) -> &MailService {
        self.service
    }

    /// Folder paths (`\Inbox`, `\Parent\Child`) of the account's mailboxes, by id.
    async fn folders(&mut self) -> Result<&BTreeMap<String, String>, Outcome> {
        if self.folders.is_none() {
            let paths = match self.service.cached_folders(&self.account.id) {
                Some(paths) => paths,
                None => {
                    let mailboxes = self
                        .service
                        .store()
                        .mailboxes(&self.account.id)
                        .await
                        .map_err(store_error)?;
                    let paths = folder_paths(&mailboxes);
                    self.service.cache_folders(&self.account.id, &paths);
                    paths
                }
            };
            self.folders = Some(paths);
        }
        Ok(self.folders.get_or_insert_with(BTreeMap::new))
    }

    /// Forgets cached folder paths (after Mailbox/set).
    fn mailboxes_changed(&mut self) {
        self.folders = None;
        self.service.forget_folders(&self.account.id);
        self.changed.insert(self.account.id.clone());
    }

    async fn note_sync(&mut self, mailbox_ids: &[String]) -> Result<(), Outcome> {
        self.folders().await?;
        let folders = self.folders.as_ref();
        for id in mailbox_ids {
            if let Some(path) = folders.and_then(|f| f.get(id)) {
                self.accessed.sync.insert(path.clone());
            }
        }
        self.accessed.sync_count += 1;
        Ok(())
    }

    async fn note_sync_all(&mut self) -> Result<(), MethodError> {
        self.folders().await.map_err(Outcome::into_error)?;
        if let Some(folders) = &self.folders {
            self.accessed.sync.extend(folders.values().cloned());
        }
        self.accessed.sync_count += 1;
        Ok(())
    }

    /// Records that the contents of `emails` were read, as `operations` reads: each email's
    /// Message-ID under each of its folders.
    async fn note_bind<'r>(
        &mut self,
        emails: impl IntoIterator<Item = &'r EmailRecord>,
        operations: usize,
    ) -> Result<(), Outcome> {
        self.folders().await?;
        let folders = self.folders.as_ref();
        for email in emails {
            let id = email
                .message_id
                .as_deref()
                .map_or_else(|| "<unknown>".to_owned(), |m| format!("<{m}>"));
            for mailbox in &email.mailbox_ids {
                let path = folders
                    .and_then(|f| f.get(mailbox))
                    .cloned()
                    .unwrap_or_else(|| "\\".to_owned());
                self.accessed
                    .bind
                    .entry(path)
                    .or_default()
                    .insert(id.clone());
            }
        }
        self.accessed.bind_count += operations;
        Ok(())
    }

    /// Records a blob download as one read of the message(s) the blob belongs to.
    pub async fn note_download(&mut self, blob_id: &str) -> Result<(), MethodError> {
        let message_blob =
            crate::ingest::split_part_blob_id(blob_id).map_or(blob_id, |(message, _)| message);
        let emails = self
            .service
            .store()
            .emails_with_blob(&self.account.id, message_blob)
            .await
            .map_err(|e| store_error(e).into_error())?;
        self.note_bind(&emails, 1)
            .await
            .map_err(Outcome::into_error)
    }
}

/// Folder paths of mailboxes, by id.
pub fn folder_paths(mailboxes: &[MailboxRecord]) -> BTreeMap<String, String> {
    let by_id: BTreeMap<&str, &MailboxRecord> =
        mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut paths = BTreeMap::new();
    for mailbox in mailboxes {
        let mut names = vec![mailbox.name.as_str()];
        let mut parent = mailbox.parent_id.as_deref();
        // Bounded walk: a corrupt cycle cannot loop forever.
        for _ in 0..32 {
            let Some(p) = parent.and_then(|id| by_id.get(id)) else {
                break;
            };
            names.push(p.name.as_str());
            parent = p.parent_id.as_deref();
        }
        names.reverse();
        paths.insert(mailbox.id.clone(), format!("\\{}", names.join("\\")));
    }
    paths
}

/// Why a method failed (a wrapper so that `?` works across store and argument errors).
pub(crate) enum Outcome {
    Error(MethodError),
}

impl Outcome {
    fn into_error(self) -> MethodError {
        match self {
            Outcome::Error(e) => e,
        }
    }
}

impl From<MethodError> for Outcome {
    fn from(error: MethodError) -> Outcome {
        Outcome::Error(error)
    }
}

pub(crate) type MethodResult = Result<Map<String, Value>, Outcome>;

/// A store failure as `serverFail`, logged here and described without internals.
pub(crate) fn store_error(error: StoreError) -> Outcome {
    tracing::error!(error = %error, "mail store failure");
    Outcome::Error(MethodError::server_fail("the mail store is unavailable"))
}

pub(crate) fn invalid(description: impl Into<String>) -> Outcome {
    Outcome::Error(MethodError::invalid_arguments(description))
}

/// A method's arguments with typed accessors that answer `invalidArguments`.
pub(crate) struct Args(pub Map<String, Value>);

impl Args {
    fn check_account(&self, account: &MailAccount) -> Result<(), MethodError> {
        match self.0.get("accountId") {
            Some(Value::String(id)) if *id == account.id => Ok(()),
            Some(Value::String(_)) => Err(MethodError::new(MethodErrorType::AccountNotFound)),
            // Methods without an accountId argument do not exist here; a missing one is an
            // argument error, not an account error.
            Some(_) => Err(MethodError::invalid_arguments("accountId must be a string")),
            None => Err(MethodError::invalid_arguments("accountId is required")),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<&str>, Outcome> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(format!("{name} must be a string"))),
        }
    }

    pub(crate) fn bool(&self, name: &str, default: bool) -> Result<bool, Outcome> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(format!("{name} must be a boolean"))),
        }
    }

    /// An `Int` argument (RFC 8620 §1.3: -2^53+1 ..= 2^53-1).
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, Outcome> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|v| v.unsigned_abs() < (1 << 53))
                .map(Some)
                .ok_or_else(|| invalid(format!("{name} must be an Int"))),
            Some(_) => Err(invalid(format!("{name} must be an Int"))),
        }
    }

    /// An `UnsignedInt` argument.
    pub(crate) fn unsigned(&self, name: &str) -> Result<Option<i64>, Outcome> {
        match self.int(name)? {
            Some(v) if v < 0 => Err(invalid(format!("{name} must not be negative"))),
            other => Ok(other),
        }
    }

    pub(crate) fn object(&self, name: &str) -> Result<Option<&Map<String, Value>>, Outcome> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(invalid(format!("{name} must be an object"))),
        }
    }

    /// A list of strings (`ids`, `properties`, `destroy`, …), bounded.
    pub(crate) fn strings(&self, name: &str, max: usize) -> Result<Option<Vec<String>>, Outcome> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                if items.len() > max {
                    return Err(Outcome::Error(MethodError::request_too_large(format!(
                        "{name} has {} items; the limit is {max}",
                        items.len()
                    ))));
                }
                items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| invalid(format!("{name} must be a list of strings")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
            Some(_) => Err(invalid(format!("{name} must be a list of strings"))),
        }
    }

    /// `ids` for a /get: `None` means all; ids given as creation references are resolved.
    pub(crate) fn ids(
        &self,
        max: usize,
        created: Option<&CreatedIds>,
    ) -> Result<Option<Vec<String>>, Outcome> {
        let Some(ids) = self.strings("ids", max)? else {
            return Ok(None);
        };
        Ok(Some(
            ids.into_iter()
                .map(|id| match (id.strip_prefix('#'), created) {
                    (Some(cid), Some(created)) => created.get(cid).cloned().unwrap_or(id),
                    _ => id,
                })
                .collect(),
        ))
    }

    /// `properties`, checked against the known ones; `None` when absent.
    pub(crate) fn properties(&self, known: &[&str]) -> Result<Option<Vec<String>>, Outcome> {
        let Some(properties) = self.strings("properties", 1000)? else {
            return Ok(None);
        };
        check_properties(&properties, known, "properties")?;
        Ok(Some(properties))
    }
}

pub(crate) fn check_properties(
    properties: &[String],
    known: &[&str],
    argument: &str,
) -> Result<(), Outcome> {
    if let Some(unknown) = properties.iter().find(|p| !known.contains(&p.as_str())) {
        let quoted: String = unknown.chars().take(64).collect();
        return Err(invalid(format!(
            "{argument}: unknown property \"{quoted}\""
        )));
    }
    Ok(())
}

/// Parses a state string we issued (a modseq).
pub(crate) fn parse_state(state: &str) -> Option<i64> {
    if state.is_empty() || state.len() > 18 || !state.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    state.parse().ok()
}

pub(crate) async fn state_of(ctx: &Context<'_>, kind: ChangeKind) -> Result<i64, Outcome> {
    if ctx.read_only
        && let Some(state) = ctx.states.lock().ok().and_then(|s| s.get(&kind).copied())
    {
        return Ok(state);
    }
    let state = ctx
        .service()
        .store()
        .mail_state(&ctx.account().id, kind)
        .await
        .map_err(store_error)?;
    if ctx.read_only
        && let Ok(mut states) = ctx.states.lock()
    {
        states.insert(kind, state);
    }
    Ok(state)
}

/// The common arguments of a `/set` (RFC 8620 §5.3), checked: `ifInState` against the
/// current state, and the number of objects against `maxObjectsInSet`.
pub(crate) struct SetRequest {
    pub old_state: i64,
    pub create: Map<String, Value>,
    pub update: Map<String, Value>,
    pub destroy: Vec<String>,
}

pub(crate) async fn set_request(
    ctx: &Context<'_>,
    args: &Args,
    kind: ChangeKind,
) -> Result<SetRequest, Outcome> {
    let old_state = check_if_in_state(ctx, args, kind).await?;
    let create = args.object("create")?.cloned().unwrap_or_default();
    let update = args.object("update")?.cloned().unwrap_or_default();
    let destroy = args.strings("destroy", max_set(ctx))?.unwrap_or_default();
    if create.len() + update.len() + destroy.len() > max_set(ctx) {
        return Err(Outcome::Error(MethodError::request_too_large(format!(
            "more than {} objects in one {}/set",
            max_set(ctx),
            kind.as_str()
        ))));
    }
    Ok(SetRequest {
        old_state,
        create,
        update,
        destroy,
    })
}

/// The current state, or `stateMismatch` when `ifInState` names another.
pub(crate) async fn check_if_in_state(
    ctx: &Context<'_>,
    args: &Args,
    kind: ChangeKind,
) -> Result<i64, Outcome> {
    let state = state_of(ctx, kind).await?;
    match args.string("ifInState")? {
        Some(expected) if expected != state.to_string() => Err(Outcome::Error(MethodError::new(
            MethodErrorType::StateMismatch,
        ))),
        _ => Ok(state),
    }
}

/// The most objects one /changes response lists when the client sets no `maxChanges`.
pub const MAX_CHANGES: usize = 5000;

/// The generic `/changes` (RFC 8620 §5.2) over the change log: every object changed after
/// `sinceState`, collapsed to created / updated / destroyed, at most `maxChanges` objects,
/// with `newState` at an exact object boundary.
async fn changes(ctx: &mut Context<'_>, args: &Args, kind: ChangeKind) -> MethodResult {
    let since_text = args
        .string("sinceState")?
        .ok_or_else(|| invalid("sinceState is required"))?;
    let max = match args.unsigned("maxChanges")? {
        Some(0) => return Err(invalid("maxChanges must be greater than 0")),
        Some(n) => usize::try_from(n).unwrap_or(MAX_CHANGES).min(MAX_CHANGES),
        None => MAX_CHANGES,
    };
    let current = state_of(ctx, kind).await?;
    let cannot = || {
        Outcome::Error(
            MethodError::new(MethodErrorType::CannotCalculateChanges)
                .with_description("the state is not one this server issued for this account"),
        )
    };
    let since = parse_state(since_text).ok_or_else(cannot)?;
    if since > current {
        return Err(cannot());
    }
    let delta = collect_changes(ctx, kind, since, max).await?;
    let mut response = Map::new();
    response.insert("accountId".into(), json!(ctx.account().id));
    response.insert("oldState".into(), json!(since_text));
    response.insert("newState".into(), json!(delta.new_state.to_string()));
    response.insert("hasMoreChanges".into(), json!(delta.has_more));
    response.insert("created".into(), json!(delta.created));
    response.insert("updated".into(), json!(delta.updated));
    response.insert("destroyed".into(), json!(delta.destroyed));
    if kind == ChangeKind::Mailbox {
        response.insert("updatedProperties".into(), Value::Null);
    }
    Ok(response)
}

/// Changes since a state, collapsed per object.
pub(crate) struct Delta {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub destroyed: Vec<String>,
    pub new_state: i64,
    pub has_more: bool,
}

pub(crate) async fn collect_changes(
    ctx: &Context<'_>,
    kind: ChangeKind,
    since: i64,
    max_objects: usize,
) -> Result<Delta, Outcome> {
    // object → (first op seen, last op seen)
    let mut objects: BTreeMap<String, (ChangeOp, ChangeOp)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut position = since;
    let mut has_more = false;
    'pages: loop {
        let page = ctx
            .service()
            .store()
            .mail_changes(&ctx.account().id, kind, position, 1000)
            .await
            .map_err(store_error)?;
        let full_page = page.len() == 1000;
        for change in page {
            if let Some(entry) = objects.get_mut(&change.object_id) {
                entry.1 = change.op;
            } else {
                if objects.len() == max_objects {
                    has_more = true;
                    break 'pages;
                }
                objects.insert(change.object_id.clone(), (change.op, change.op));
                order.push(change.object_id.clone());
            }
            position = change.modseq;
        }
        if !full_page {
            break;
        }
    }
    let mut delta = Delta {
        created: Vec::new(),
        updated: Vec::new(),
        destroyed: Vec::new(),
        new_state: position,
        has_more,
    };
    for id in order {
        let Some(&(first, last)) = objects.get(&id) else {
            continue;
        };
        match (first, last) {
            // Born and gone within the window: the client never saw it.
            (ChangeOp::Created, ChangeOp::Destroyed) => {}
            (ChangeOp::Created, _) => delta.created.push(id),
            (_, ChangeOp::Destroyed) => delta.destroyed.push(id),
            _ => delta.updated.push(id),
        }
    }
    Ok(delta)
}

/// Filters a full object down to the requested properties (`id` always included).
pub(crate) fn select(object: Map<String, Value>, properties: Option<&[String]>) -> Value {
    match properties {
        None => Value::Object(object),
        Some(properties) => {
            let mut out = Map::new();
            if let Some(id) = object.get("id") {
                out.insert("id".into(), id.clone());
            }
            for property in properties {
                if let Some(value) = object.get(property) {
                    out.insert(property.clone(), value.clone());
                }
            }
            Value::Object(out)
        }
    }
}

pub(crate) fn get_response(
    ctx: &Context<'_>,
    state: i64,
    list: Vec<Value>,
    not_found: Vec<String>,
) -> Map<String, Value> {
    let mut response = Map::new();
    response.insert("accountId".into(), json!(ctx.account().id));
    response.insert("state".into(), json!(state.to_string()));
    response.insert("list".into(), Value::Array(list));
    response.insert("notFound".into(), json!(not_found));
    response
}

pub(crate) fn max_get(ctx: &Context<'_>) -> usize {
    usize::try_from(ctx.service().config().core.max_objects_in_get).unwrap_or(500)
}

pub(crate) fn max_set(ctx: &Context<'_>) -> usize {
    usize::try_from(ctx.service().config().core.max_objects_in_set).unwrap_or(500)
}

/// `Thread/get` (RFC 8621 §3.1).
async fn thread_get(ctx: &mut Context<'_>, args: &Args) -> MethodResult {
    let properties = args.properties(&["id", "emailIds"])?;
    let state = state_of(ctx, ChangeKind::Thread).await?;
    let ids = match args.ids(max_get(ctx), None)? {
        Some(ids) => ids,
        None => all_ids(ctx, "Thread").await?,
    };
    let threads = ctx
        .service()
        .store()
        .thread_emails(&ctx.account().id, &ids)
        .await
        .map_err(store_error)?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        match threads.get(&id) {
            Some(email_ids) => {
                let mut object = Map::new();
                object.insert("id".into(), json!(id));
                object.insert("emailIds".into(), json!(email_ids));
                list.push(select(object, properties.as_deref()));
            }
            None => not_found.push(id),
        }
    }
    Ok(get_response(ctx, state, list, not_found))
}

/// Every email id (`Email`) or thread id (`Thread`) of the account, for a `/get` with
/// `ids: null`; `requestTooLarge` when the account has more emails than `maxObjectsInGet`.
pub(crate) async fn all_ids(ctx: &Context<'_>, kind: &str) -> Result<Vec<String>, Outcome> {
    let max = max_get(ctx);
    let rows = ctx
        .service()
        .store()
        .query_emails(
            &ctx.account().id,
            None,
            &[],
            0,
            Some(i64::try_from(max).unwrap_or(i64::MAX).saturating_add(1)),
        )
        .await
        .map_err(store_error)?;
    if rows.len() > max {
        return Err(Outcome::Error(MethodError::request_too_large(format!(
            "the account has more than {max} emails: pass ids (from Email/query) to {kind}/get"
        ))));
    }
    let mut seen = BTreeSet::new();
    Ok(rows
        .into_iter()
        .map(|(email, thread)| if kind == "Thread" { thread } else { email })
        .filter(|id| seen.insert(id.clone()))
        .collect())
}

/// `Identity/get` (RFC 8621 §6.1): one identity per account, its own address.
fn identity_get(ctx: &mut Context<'_>, args: &Args) -> MethodResult {
    let properties = args.properties(&[
        "id",
        "name",
        "email",
        "replyTo",
        "bcc",
        "textSignature",
        "htmlSignature",
        "mayDelete",
    ])?;
    let account = ctx.account();
    let identity = identity_object(account);
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match args.ids(max_get(ctx), None)? {
        None => list.push(select(identity, properties.as_deref())),
        Some(ids) => {
            for id in ids {
                if id == account.id {
                    list.push(select(identity.clone(), properties.as_deref()));
                } else {
                    not_found.push(id);
                }
            }
        }
    }
    Ok(get_response(ctx, 0, list, not_found))
}

/// The account's one identity.
pub(crate) fn identity_object(account: &MailAccount) -> Map<String, Value> {
    let mut identity = Map::new();
    identity.insert("id".into(), json!(account.id));
    identity.insert("name".into(), json!(account.name));
    identity.insert("email".into(), json!(account.email));
    identity.insert("replyTo".into(), Value::Null);
    identity.insert("bcc".into(), Value::Null);
    identity.insert("textSignature".into(), json!(""));
    identity.insert("htmlSignature".into(), json!(""));
    identity.insert("mayDelete".into(), json!(false));
    identity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_paths_follow_parents() {
        let mailbox = |id: &str, name: &str, parent: Option<&str>| MailboxRecord {
            id: id.into(),
            name: name.into(),
            parent_id: parent.map(str::to_owned),
            role: None,
            sort_order: 0,
            is_subscribed: true,
        };
        let paths = folder_paths(&[
            mailbox("a", "Inbox", None),
            mailbox("b", "Projects", Some("a")),
            mailbox("c", "Loop", Some("c")),
        ]);
        assert_eq!(paths.get("a").map(String::as_str), Some("\\Inbox"));
        assert_eq!(
            paths.get("b").map(String::as_str),
            Some("\\Inbox\\Projects")
        );
        assert!(paths.get("c").is_some_and(|p| p.starts_with("\\Loop")));
    }

    #[test]
    fn states() {
        assert_eq!(parse_state("0"), Some(0));
        assert_eq!(parse_state("42"), Some(42));
        for bad in ["", "-1", "1a", "99999999999999999999", " 1"] {
            assert_eq!(parse_state(bad), None, "{bad}");
        }
    }
}
