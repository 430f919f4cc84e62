//! The mail service's tables: accounts, mailboxes, content-addressed blobs, emails, threads,
//! submissions and the per-account change log that makes JMAP state strings exact.
//!
//! Every method takes the account id and filters on it first; the mail service derives the
//! account from a verified token only, so no query here can reach another account's rows.
//! Nothing here knows JMAP's wire format: the mail crate maps JMAP objects to these records.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Store, StoreError, conflict};

/// A mail account: one per user, in the user's realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAccount {
    /// The JMAP account id.
    pub id: String,
    /// The user's realm.
    pub realm_id: String,
    /// The user (a token's `sub`).
    pub user_id: String,
    /// The account's address, unique across all realms (local delivery finds it by this).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
}

impl MailAccount {
    fn from_row(row: &AnyRow) -> Result<MailAccount, StoreError> {
        Ok(MailAccount {
            id: row.try_get("id")?,
            realm_id: row.try_get("realm_id")?,
            user_id: row.try_get("user_id")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

const ACCOUNT_COLUMNS: &str =
    "SELECT id, realm_id, user_id, email, name, created_at FROM mail_accounts";

/// A mailbox (its counts are computed separately, see [`Store::mailbox_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRecord {
    /// Mailbox id.
    pub id: String,
    /// Name (unique among siblings).
    pub name: String,
    /// Parent mailbox.
    pub parent_id: Option<String>,
    /// RFC 8457 role, lower-case.
    pub role: Option<String>,
    /// Sort order hint.
    pub sort_order: i64,
    /// Whether the user subscribes to it.
    pub is_subscribed: bool,
}

impl MailboxRecord {
    fn from_row(row: &AnyRow) -> Result<MailboxRecord, StoreError> {
        Ok(MailboxRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            parent_id: row.try_get("parent_id")?,
            role: row.try_get("role")?,
            sort_order: row.try_get("sort_order")?,
            is_subscribed: row.try_get::<i64, _>("is_subscribed")? != 0,
        })
    }
}

/// A mailbox's message and thread counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    /// Emails in the mailbox.
    pub total_emails: i64,
    /// Emails without `$seen` (and not drafts).
    pub unread_emails: i64,
    /// Threads with an email in the mailbox.
    pub total_threads: i64,
    /// Threads with an unread email in the mailbox.
    pub unread_threads: i64,
}

/// A stored email's metadata (the message itself is its blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRecord {
    /// Email id.
    pub id: String,
    /// The raw message's blob id.
    pub blob_id: String,
    /// Thread id.
    pub thread_id: String,
    /// The first `Message-ID` (without brackets), for audit records.
    pub message_id: Option<String>,
    /// When it arrived (Unix seconds).
    pub received_at: i64,
    /// Its `Date` header (Unix seconds).
    pub sent_at: Option<i64>,
    /// Size of the raw message in octets.
    pub size: i64,
    /// Keywords, lower-case.
    pub keywords: BTreeSet<String>,
    /// Mailboxes it is in (at least one).
    pub mailbox_ids: BTreeSet<String>,
    /// Parsed header properties as JSON text, written by the mail service.
    pub summary: String,
}

const EMAIL_COLUMNS: &str = "SELECT id, blob_id, thread_id, message_id, received_at, sent_at, size, \
     keywords, mailbox_ids, summary FROM emails";

impl EmailRecord {
    fn from_row(row: &AnyRow) -> Result<EmailRecord, StoreError> {
        Ok(EmailRecord {
            id: row.try_get("id")?,
            blob_id: row.try_get("blob_id")?,
            thread_id: row.try_get("thread_id")?,
            message_id: row.try_get("message_id")?,
            received_at: row.try_get("received_at")?,
            sent_at: row.try_get("sent_at")?,
            size: row.try_get("size")?,
            keywords: word_set(&row.try_get::<String, _>("keywords")?),
            mailbox_ids: word_set(&row.try_get::<String, _>("mailbox_ids")?),
            summary: row.try_get("summary")?,
        })
    }

    /// Whether the email counts as unread: neither `$seen` nor `$draft`.
    pub fn is_unread(&self) -> bool {
        !self.keywords.contains("$seen") && !self.keywords.contains("$draft")
    }
}

/// What the store needs to file a new email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmail {
    /// Metadata; `thread_id` is ignored (the store threads the message).
    pub record: EmailRecord,
    /// The message's own Message-IDs (recorded for future replies).
    pub own_message_ids: Vec<String>,
    /// `In-Reply-To` and `References` ids (looked up to find the thread).
    pub parent_message_ids: Vec<String>,
    /// Lower-cased search text: subject, from, to, cc, bcc, body.
    pub search: SearchKeys,
}

/// Lower-cased text the query filters and sorts compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchKeys {
    /// Subject (the sort key too).
    pub subject: String,
    /// From addresses and names (the sort key too).
    pub from: String,
    /// To addresses and names (the sort key too).
    pub to: String,
    /// Cc.
    pub cc: String,
    /// Bcc.
    pub bcc: String,
    /// Body text (bounded by the caller).
    pub body: String,
}

/// A stored submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRecord {
    /// Submission id.
    pub id: String,
    /// The email sent.
    pub email_id: String,
    /// Its thread.
    pub thread_id: String,
    /// The identity used.
    pub identity_id: String,
    /// The SMTP envelope, as JSON text.
    pub envelope: String,
    /// When it was sent (Unix seconds).
    pub send_at: i64,
}

/// The object types with states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Mailbox objects.
    Mailbox,
    /// Email objects.
    Email,
    /// Thread objects.
    Thread,
    /// EmailSubmission objects.
    EmailSubmission,
}

impl ChangeKind {
    /// The stored name (the JMAP type name).
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Mailbox => "Mailbox",
            ChangeKind::Email => "Email",
            ChangeKind::Thread => "Thread",
            ChangeKind::EmailSubmission => "EmailSubmission",
        }
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// Created.
    Created,
    /// Updated.
    Updated,
    /// Destroyed.
    Destroyed,
}

impl ChangeOp {
    const fn code(self) -> &'static str {
        match self {
            ChangeOp::Created => "c",
            ChangeOp::Updated => "u",
            ChangeOp::Destroyed => "d",
        }
    }

    fn from_code(code: &str) -> Result<ChangeOp, StoreError> {
        match code {
            "c" => Ok(ChangeOp::Created),
            "u" => Ok(ChangeOp::Updated),
            "d" => Ok(ChangeOp::Destroyed),
            other => Err(StoreError::Corrupt(format!("mail_changes.op = {other:?}"))),
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its modification sequence number.
    pub modseq: i64,
    /// The object.
    pub object_id: String,
    /// What happened.
    pub op: ChangeOp,
}

/// A text field the email filters search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchField {
    /// Subject.
    Subject,
    /// From.
    From,
    /// To.
    To,
    /// Cc.
    Cc,
    /// Bcc.
    Bcc,
    /// Body text.
    Body,
    /// Any of the above.
    Text,
}

/// An email filter (RFC 8621 §4.4.1), already validated by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailFilter {
    /// All must match.
    And(Vec<EmailFilter>),
    /// One must match.
    Or(Vec<EmailFilter>),
    /// None may match.
    Not(Vec<EmailFilter>),
    /// In this mailbox.
    InMailbox(String),
    /// In a mailbox other than these.
    InMailboxOtherThan(Vec<String>),
    /// Received strictly before (Unix seconds).
    Before(i64),
    /// Received at or after.
    After(i64),
    /// Size at least.
    MinSize(i64),
    /// Size less than.
    MaxSize(i64),
    /// Has the keyword.
    HasKeyword(String),
    /// Lacks the keyword.
    NotKeyword(String),
    /// Every email in its thread has the keyword.
    AllInThreadHaveKeyword(String),
    /// Some email in its thread has the keyword.
    SomeInThreadHaveKeyword(String),
    /// No email in its thread has the keyword.
    NoneInThreadHaveKeyword(String),
    /// The field contains the (lower-cased) text.
    Contains(SearchField, String),
}

/// A sort key (RFC 8621 §4.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailSortKey {
    /// `receivedAt`.
    ReceivedAt,
    /// `sentAt`.
    SentAt,
    /// `size`.
    Size,
    /// `from`.
    From,
    /// `to`.
    To,
    /// `subject`.
    Subject,
    /// `hasKeyword` with its keyword.
    HasKeyword(String),
}

/// A sort comparator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSort {
    /// The key.
    pub key: EmailSortKey,
    /// Ascending?
    pub ascending: bool,
}

/// A compiled query: SQL text after `SELECT …` and its bind values.
struct QuerySql {
    from_where: String,
    order_by: String,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
}

impl QuerySql {
    fn push_text(&mut self, value: String) -> String {
        self.binds.push(Bind::Text(value));
        format!("${}", self.binds.len())
    }

    fn push_int(&mut self, value: i64) -> String {
        self.binds.push(Bind::Int(value));
        format!("${}", self.binds.len())
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text.as_str()),
            Bind::Int(value) => query.bind(*value),
        };
    }
    query
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Space-separated words, as keywords and mailbox ids are stored (` a b `, so a `LIKE '% a %'`
/// matches whole words).
fn word_list<'a, I: IntoIterator<Item = &'a String>>(words: I) -> String {
    let mut out = String::from(" ");
    for word in words {
        out.push_str(word);
        out.push(' ');
    }
    out
}

fn word_set(text: &str) -> BTreeSet<String> {
    text.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn compile_filter(filter: &EmailFilter, sql: &mut QuerySql) -> String {
    let keyword_like =
        |sql: &mut QuerySql, keyword: &str| sql.push_text(format!("% {} %", like_escape(keyword)));
    let thread_exists = |sql: &mut QuerySql, keyword: &str, negate: bool| {
        let p = keyword_like(sql, keyword);
        let not = if negate { "NOT " } else { "" };
        format!(
            "EXISTS (SELECT 1 FROM emails t WHERE t.account_id = e.account_id AND \
             t.thread_id = e.thread_id AND t.keywords {not}LIKE {p} ESCAPE '\\')"
        )
    };
    match filter {
        EmailFilter::And(parts) | EmailFilter::Or(parts) | EmailFilter::Not(parts) => {
            if parts.is_empty() {
                // An empty AND/NOT matches everything; an empty OR nothing.
                return if matches!(filter, EmailFilter::Or(_)) {
                    "1 = 0".to_owned()
                } else {
                    "1 = 1".to_owned()
                };
            }
            let compiled: Vec<String> = parts.iter().map(|p| compile_filter(p, sql)).collect();
            match filter {
                EmailFilter::And(_) => format!("({})", compiled.join(" AND ")),
                EmailFilter::Or(_) => format!("({})", compiled.join(" OR ")),
                _ => format!("NOT ({})", compiled.join(" OR ")),
            }
        }
        EmailFilter::InMailbox(id) => {
            let p = sql.push_text(format!("% {} %", like_escape(id)));
            format!("e.mailbox_ids LIKE {p} ESCAPE '\\'")
        }
        EmailFilter::InMailboxOtherThan(ids) => {
            let placeholders: Vec<String> =
                ids.iter().map(|id| sql.push_text(id.clone())).collect();
            let list = if placeholders.is_empty() {
                "''".to_owned()
            } else {
                placeholders.join(", ")
            };
            format!(
                "EXISTS (SELECT 1 FROM email_mailboxes o WHERE o.account_id = e.account_id AND \
                 o.email_id = e.id AND o.mailbox_id NOT IN ({list}))"
            )
        }
        EmailFilter::Before(t) => format!("e.received_at < {}", sql.push_int(*t)),
        EmailFilter::After(t) => format!("e.received_at >= {}", sql.push_int(*t)),
        EmailFilter::MinSize(n) => format!("e.size >= {}", sql.push_int(*n)),
        EmailFilter::MaxSize(n) => format!("e.size < {}", sql.push_int(*n)),
        EmailFilter::HasKeyword(k) => {
            format!("e.keywords LIKE {} ESCAPE '\\'", keyword_like(sql, k))
        }
        EmailFilter::NotKeyword(k) => {
            format!("e.keywords NOT LIKE {} ESCAPE '\\'", keyword_like(sql, k))
        }
        EmailFilter::AllInThreadHaveKeyword(k) => format!("NOT {}", thread_exists(sql, k, true)),
        EmailFilter::SomeInThreadHaveKeyword(k) => thread_exists(sql, k, false),
        EmailFilter::NoneInThreadHaveKeyword(k) => format!("NOT {}", thread_exists(sql, k, false)),
        EmailFilter::Contains(field, text) => {
            let p = sql.push_text(format!("%{}%", like_escape(text)));
            let columns: &[&str] = match field {
                SearchField::Subject => &["subject_key"],
                SearchField::From => &["from_key"],
                SearchField::To => &["to_key"],
                SearchField::Cc => &["cc_key"],
                SearchField::Bcc => &["bcc_key"],
                SearchField::Body => &["body_key"],
                SearchField::Text => &[
                    "subject_key",
                    "from_key",
                    "to_key",
                    "cc_key",
                    "bcc_key",
                    "body_key",
                ],
            };
            let parts: Vec<String> = columns
                .iter()
                .map(|c| format!("e.{c} LIKE {p} ESCAPE '\\'"))
                .collect();
            format!("({})", parts.join(" OR "))
        }
    }
}

/// The mailbox a filter confines results to, when it is a top-level condition: the query is
/// then driven from that mailbox's index rather than the whole account.
fn driving_mailbox(filter: Option<&EmailFilter>) -> Option<&str> {
    match filter? {
        EmailFilter::InMailbox(id) => Some(id),
        EmailFilter::And(parts) => parts.iter().find_map(|p| match p {
            EmailFilter::InMailbox(id) => Some(id.as_str()),
            _ => None,
        }),
        _ => None,
    }
}

/// The filter without the driving mailbox's condition (`None` when nothing is left).
fn residual_filter(filter: &EmailFilter, driver: Option<&str>) -> Option<EmailFilter> {
    let Some(driver) = driver else {
        return Some(filter.clone());
    };
    match filter {
        EmailFilter::InMailbox(id) if id == driver => None,
        EmailFilter::And(parts) => {
            let mut rest = parts.clone();
            if let Some(i) = rest
                .iter()
                .position(|p| matches!(p, EmailFilter::InMailbox(id) if id == driver))
            {
                rest.remove(i);
            }
            (!rest.is_empty()).then_some(EmailFilter::And(rest))
        }
        other => Some(other.clone()),
    }
}

fn compile_query(account_id: &str, filter: Option<&EmailFilter>, sort: &[EmailSort]) -> QuerySql {
    let mut sql = QuerySql {
        from_where: String::new(),
        order_by: String::new(),
        binds: Vec::new(),
    };
    let account = sql.push_text(account_id.to_owned());
    let driver = driving_mailbox(filter);
    let mut from_where = match driver {
        Some(mailbox) => {
            let m = sql.push_text(mailbox.to_owned());
            format!(
                "FROM email_mailboxes mb JOIN emails e ON e.account_id = mb.account_id AND \
                 e.id = mb.email_id WHERE mb.account_id = {account} AND mb.mailbox_id = {m}"
            )
        }
        None => format!("FROM emails e WHERE e.account_id = {account}"),
    };
    // The driving mailbox is already the join condition; the rest of the filter is checked
    // per row.
    let residual = filter.and_then(|f| residual_filter(f, driver));
    if let Some(filter) = residual.as_ref() {
        let condition = compile_filter(filter, &mut sql);
        from_where.push_str(" AND ");
        from_where.push_str(&condition);
    }
    let received = if driver.is_some() {
        "mb.received_at"
    } else {
        "e.received_at"
    };
    let mut order: Vec<String> = Vec::new();
    let mut last_ascending = false;
    for comparator in sort {
        let direction = if comparator.ascending { "ASC" } else { "DESC" };
        last_ascending = comparator.ascending;
        let column = match &comparator.key {
            EmailSortKey::ReceivedAt => received.to_owned(),
            EmailSortKey::SentAt => "COALESCE(e.sent_at, e.received_at)".to_owned(),
            EmailSortKey::Size => "e.size".to_owned(),
            EmailSortKey::From => "e.from_key".to_owned(),
            EmailSortKey::To => "e.to_key".to_owned(),
            EmailSortKey::Subject => "e.subject_key".to_owned(),
            EmailSortKey::HasKeyword(k) => {
                let p = sql.push_text(format!("% {} %", like_escape(k)));
                format!("CASE WHEN e.keywords LIKE {p} ESCAPE '\\' THEN 1 ELSE 0 END")
            }
        };
        order.push(format!("{column} {direction}"));
    }
    if sort.is_empty() {
        // RFC 8621 leaves the default order to the server: newest first, like every client.
        order.push(format!("{received} DESC"));
    }
    // A total order, so that paging and anchors are stable.
    let tie = if driver.is_some() {
        "mb.email_id"
    } else {
        "e.id"
    };
    order.push(format!(
        "{tie} {}",
        if sort.is_empty() || !last_ascending {
            "DESC"
        } else {
            "ASC"
        }
    ));
    sql.from_where = from_where;
    sql.order_by = order.join(", ");
    sql
}

impl Store {
    // ----- accounts -----

    /// Creates a mail account with its mailboxes; `Conflict` if the user has one or the
    /// address is taken.
    pub async fn create_mail_account(
        &self,
        account: &MailAccount,
        mailboxes: &[MailboxRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(
            "INSERT INTO mail_accounts (id, realm_id, user_id, email, name, modseq, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(&account.id)
        .bind(&account.realm_id)
        .bind(&account.user_id)
        .bind(&account.email)
        .bind(&account.name)
        .bind(account.created_at)
        .execute(&mut *tx)
        .await;
        conflict(result, || {
            format!(
                "mail account for {:?} or address {:?}",
                account.user_id, account.email
            )
        })?;
        let mut mail = MailTx {
            tx,
            account_id: account.id.clone(),
            modseq: 0,
            changes: Vec::new(),
            counts: BTreeMap::new(),
        };
        for mailbox in mailboxes {
            mail.create_mailbox(mailbox).await?;
        }
        mail.commit().await
    }

    /// The mail account of a user.
    pub async fn mail_account_of_user(
        &self,
        realm_id: &str,
        user_id: &str,
    ) -> Result<Option<MailAccount>, StoreError> {
        sqlx::query(&format!(
            "{ACCOUNT_COLUMNS} WHERE realm_id = $1 AND user_id = $2"
        ))
        .bind(realm_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| MailAccount::from_row(&row))
        .transpose()
    }

    /// The mail accounts with these addresses (lower-case), in any realm.
    pub async fn mail_accounts_by_email(
        &self,
        emails: &[String],
    ) -> Result<Vec<MailAccount>, StoreError> {
        let mut found = Vec::new();
        for email in emails {
            if let Some(row) = sqlx::query(&format!("{ACCOUNT_COLUMNS} WHERE email = $1"))
                .bind(email)
                .fetch_optional(&self.pool)
                .await?
            {
                found.push(MailAccount::from_row(&row)?);
            }
        }
        Ok(found)
    }

    // ----- states and changes -----

    /// The state of one type in an account: the modseq of its last change (0 when none).
    pub async fn mail_state(&self, account_id: &str, kind: ChangeKind) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(modseq), 0) FROM mail_changes WHERE account_id = $1 AND kind = $2",
        )
        .bind(account_id)
        .bind(kind.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Changes of one type after `since`, oldest first, at most `limit`.
    pub async fn mail_changes(
        &self,
        account_id: &str,
        kind: ChangeKind,
        since: i64,
        limit: i64,
    ) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT modseq, object_id, op FROM mail_changes WHERE account_id = $1 AND kind = $2 \
             AND modseq > $3 ORDER BY modseq LIMIT $4",
        )
        .bind(account_id)
        .bind(kind.as_str())
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Change {
                    modseq: row.try_get("modseq")?,
                    object_id: row.try_get("object_id")?,
                    op: ChangeOp::from_code(&row.try_get::<String, _>("op")?)?,
                })
            })
            .collect()
    }

    // ----- mailboxes -----

    /// The account's mailboxes.
    pub async fn mailboxes(&self, account_id: &str) -> Result<Vec<MailboxRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, parent_id, role, sort_order, is_subscribed FROM mailboxes \
             WHERE account_id = $1 ORDER BY sort_order, name, id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(MailboxRecord::from_row).collect()
    }

    /// Message counts of every mailbox of the account, and thread counts too when
    /// `with_threads` (those take a pass over the account's memberships).
    pub async fn mailbox_counts(
        &self,
        account_id: &str,
        with_threads: bool,
    ) -> Result<BTreeMap<String, MailboxCounts>, StoreError> {
        let mut counts = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT id, total_emails, unread_emails FROM mailboxes WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            counts.insert(
                row.try_get::<String, _>("id")?,
                MailboxCounts {
                    total_emails: row.try_get("total_emails")?,
                    unread_emails: row.try_get("unread_emails")?,
                    total_threads: 0,
                    unread_threads: 0,
                },
            );
        }
        if !with_threads {
            return Ok(counts);
        }
        let rows = sqlx::query(
            "SELECT mailbox_id, COUNT(DISTINCT thread_id) AS threads, \
             COUNT(DISTINCT CASE WHEN unread = 1 THEN thread_id END) AS unread_threads \
             FROM email_mailboxes WHERE account_id = $1 GROUP BY mailbox_id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            if let Some(entry) = counts.get_mut(&row.try_get::<String, _>("mailbox_id")?) {
                entry.total_threads = row.try_get("threads")?;
                entry.unread_threads = row.try_get("unread_threads")?;
            }
        }
        Ok(counts)
    }

    // ----- blobs -----

    /// Stores a blob for an account (content-addressed: the id is `G` + hex SHA-256, computed
    /// by the caller) and grants the account access to it.
    pub async fn put_blob(
        &self,
        account_id: &str,
        blob_id: &str,
        data: &[u8],
        media_type: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_blob(&mut tx, account_id, blob_id, data, media_type, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A blob's content and media type, if the account may read it.
    pub async fn blob(
        &self,
        account_id: &str,
        blob_id: &str,
    ) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT b.data, a.media_type FROM account_blobs a JOIN mail_blobs b ON b.hash = a.blob_id \
             WHERE a.account_id = $1 AND a.blob_id = $2",
        )
        .bind(account_id)
        .bind(blob_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get("data")?, row.try_get("media_type")?)))
            .transpose()
    }

    // ----- emails -----

    /// The account's emails with these ids (missing ids are simply absent).
    pub async fn emails(
        &self,
        account_id: &str,
        ids: &[String],
    ) -> Result<Vec<EmailRecord>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "{EMAIL_COLUMNS} WHERE account_id = $1 AND id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(account_id);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push(EmailRecord::from_row(&row)?);
            }
        }
        Ok(found)
    }

    /// The email ids of these threads, each list in `receivedAt` order.
    pub async fn thread_emails(
        &self,
        account_id: &str,
        thread_ids: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let mut threads: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for thread_id in thread_ids {
            let rows = sqlx::query(
                "SELECT id FROM emails WHERE account_id = $1 AND thread_id = $2 \
                 ORDER BY received_at, id",
            )
            .bind(account_id)
            .bind(thread_id)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                continue;
            }
            let ids = rows
                .iter()
                .map(|row| row.try_get::<String, _>("id"))
                .collect::<Result<Vec<_>, _>>()?;
            threads.insert(thread_id.clone(), ids);
        }
        Ok(threads)
    }

    /// Email ids (with thread ids) matching `filter` in `sort` order, from `offset`, at most
    /// `limit` (`None`: all).
    pub async fn query_emails(
        &self,
        account_id: &str,
        filter: Option<&EmailFilter>,
        sort: &[EmailSort],
        offset: i64,
        limit: Option<i64>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut compiled = compile_query(account_id, filter, sort);
        // No LIMIT clause both databases accept means "all", so "all" is the largest limit.
        let limit_sql = format!(" LIMIT {}", compiled.push_int(limit.unwrap_or(i64::MAX)));
        let offset_sql = format!(" OFFSET {}", compiled.push_int(offset));
        let sql = format!(
            "SELECT e.id, e.thread_id {} ORDER BY {}{limit_sql}{offset_sql}",
            compiled.from_where, compiled.order_by
        );
        let rows = bind_all(sqlx::query(&sql), &compiled.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("thread_id")?)))
            .collect()
    }

    /// How many emails match `filter`. A filter that is just one mailbox is answered from
    /// the mailbox's counter.
    pub async fn count_emails(
        &self,
        account_id: &str,
        filter: Option<&EmailFilter>,
    ) -> Result<i64, StoreError> {
        if let Some(EmailFilter::InMailbox(mailbox)) = filter {
            let row =
                sqlx::query("SELECT total_emails FROM mailboxes WHERE account_id = $1 AND id = $2")
                    .bind(account_id)
                    .bind(mailbox)
                    .fetch_optional(&self.pool)
                    .await?;
            return Ok(match row {
                Some(row) => row.try_get(0)?,
                None => 0,
            });
        }
        let compiled = compile_query(account_id, filter, &[]);
        let sql = format!("SELECT COUNT(*) {}", compiled.from_where);
        let row = bind_all(sqlx::query(&sql), &compiled.binds)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Ids of the account's submissions, oldest first, at most `limit`.
    pub async fn submission_ids(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM email_submissions WHERE account_id = $1 ORDER BY send_at, id LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// The account's submissions with these ids.
    pub async fn submissions(
        &self,
        account_id: &str,
        ids: &[String],
    ) -> Result<Vec<SubmissionRecord>, StoreError> {
        let mut found = Vec::new();
        for id in ids {
            if let Some(row) = sqlx::query(
                "SELECT id, email_id, thread_id, identity_id, envelope, send_at \
                 FROM email_submissions WHERE account_id = $1 AND id = $2",
            )
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            {
                found.push(SubmissionRecord {
                    id: row.try_get("id")?,
                    email_id: row.try_get("email_id")?,
                    thread_id: row.try_get("thread_id")?,
                    identity_id: row.try_get("identity_id")?,
                    envelope: row.try_get("envelope")?,
                    send_at: row.try_get("send_at")?,
                });
            }
        }
        Ok(found)
    }

    /// The account's emails whose raw message is this blob (for audit records of downloads).
    pub async fn emails_with_blob(
        &self,
        account_id: &str,
        blob_id: &str,
    ) -> Result<Vec<EmailRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{EMAIL_COLUMNS} WHERE account_id = $1 AND blob_id = $2 LIMIT 10"
        ))
        .bind(account_id)
        .bind(blob_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(EmailRecord::from_row).collect()
    }

    /// Starts a change to an account: takes the account's lock (so changes get their modseqs
    /// in commit order) and returns the transaction.
    pub async fn begin_mail(&self, account_id: &str) -> Result<MailTx, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row =
            sqlx::query("UPDATE mail_accounts SET modseq = modseq WHERE id = $1 RETURNING modseq")
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("mail account {account_id:?}")))?;
        Ok(MailTx {
            modseq: row.try_get(0)?,
            tx,
            account_id: account_id.to_owned(),
            changes: Vec::new(),
            counts: BTreeMap::new(),
        })
    }
}

async fn insert_blob(
    tx: &mut Transaction<'static, Any>,
    account_id: &str,
    blob_id: &str,
    data: &[u8],
    media_type: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO mail_blobs (hash, size, data) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
    )
    .bind(blob_id)
    .bind(i64::try_from(data.len()).unwrap_or(i64::MAX))
    .bind(data)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO account_blobs (account_id, blob_id, media_type, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, blob_id) DO NOTHING",
    )
    .bind(account_id)
    .bind(blob_id)
    .bind(media_type)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A change to one account in progress: every object it touches gets the next modseq.
/// Dropping it without [`MailTx::commit`] rolls everything back.
pub struct MailTx {
    tx: Transaction<'static, Any>,
    account_id: String,
    modseq: i64,
    /// Change-log rows, written in multi-row statements at commit (an import of 500 messages
    /// would otherwise be 1,500 single-row round trips).
    changes: Vec<(i64, ChangeKind, String, ChangeOp)>,
    /// Mailbox counter deltas (total, unread), applied once per mailbox at commit, so a busy
    /// mailbox's row is updated once per transaction, not once per message.
    counts: BTreeMap<String, (i64, i64)>,
}

/// Change-log rows per INSERT statement (5 parameters each, well under both databases'
/// parameter limits).
const CHANGES_PER_STATEMENT: usize = 200;

impl std::fmt::Debug for MailTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailTx")
            .field("account_id", &self.account_id)
            .field("modseq", &self.modseq)
            .finish_non_exhaustive()
    }
}

impl MailTx {
    /// Records a change (its modseq is the next one); written at commit.
    pub async fn log(
        &mut self,
        kind: ChangeKind,
        object_id: &str,
        op: ChangeOp,
    ) -> Result<(), StoreError> {
        self.modseq += 1;
        self.changes
            .push((self.modseq, kind, object_id.to_owned(), op));
        Ok(())
    }

    /// Writes the pending change-log rows and counter deltas.
    async fn flush(&mut self) -> Result<(), StoreError> {
        let changes = std::mem::take(&mut self.changes);
        for chunk in changes.chunks(CHANGES_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO mail_changes (account_id, modseq, kind, object_id, op) VALUES ",
            );
            for i in 0..chunk.len() {
                let n = i * 4 + 2;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, ${n}, ${}, ${}, ${})", n + 1, n + 2, n + 3));
            }
            let mut query = sqlx::query(&sql).bind(&self.account_id);
            for (modseq, kind, object_id, op) in chunk {
                query = query
                    .bind(*modseq)
                    .bind(kind.as_str())
                    .bind(object_id.as_str())
                    .bind(op.code());
            }
            query.execute(&mut *self.tx).await?;
        }
        let counts = std::mem::take(&mut self.counts);
        for (mailbox, (total, unread)) in counts {
            if total == 0 && unread == 0 {
                continue;
            }
            sqlx::query(
                "UPDATE mailboxes SET total_emails = total_emails + $3, \
                 unread_emails = unread_emails + $4 WHERE account_id = $1 AND id = $2",
            )
            .bind(&self.account_id)
            .bind(&mailbox)
            .bind(total)
            .bind(unread)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Commits, saving the account's counter.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.flush().await?;
        sqlx::query("UPDATE mail_accounts SET modseq = $2 WHERE id = $1")
            .bind(&self.account_id)
            .bind(self.modseq)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// The account's mailboxes, as this transaction sees them.
    pub async fn mailboxes(&mut self) -> Result<Vec<MailboxRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, parent_id, role, sort_order, is_subscribed FROM mailboxes \
             WHERE account_id = $1 ORDER BY sort_order, name, id",
        )
        .bind(&self.account_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(MailboxRecord::from_row).collect()
    }

    /// Creates a mailbox.
    pub async fn create_mailbox(&mut self, mailbox: &MailboxRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mailboxes (account_id, id, name, parent_id, role, sort_order, is_subscribed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&self.account_id)
        .bind(&mailbox.id)
        .bind(&mailbox.name)
        .bind(mailbox.parent_id.as_deref())
        .bind(mailbox.role.as_deref())
        .bind(mailbox.sort_order)
        .bind(i64::from(mailbox.is_subscribed))
        .execute(&mut *self.tx)
        .await?;
        self.log(ChangeKind::Mailbox, &mailbox.id, ChangeOp::Created)
            .await
    }

    /// Replaces a mailbox's properties.
    pub async fn update_mailbox(&mut self, mailbox: &MailboxRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mailboxes SET name = $3, parent_id = $4, role = $5, sort_order = $6, \
             is_subscribed = $7 WHERE account_id = $1 AND id = $2",
        )
        .bind(&self.account_id)
        .bind(&mailbox.id)
        .bind(&mailbox.name)
        .bind(mailbox.parent_id.as_deref())
        .bind(mailbox.role.as_deref())
        .bind(mailbox.sort_order)
        .bind(i64::from(mailbox.is_subscribed))
        .execute(&mut *self.tx)
        .await?;
        self.log(ChangeKind::Mailbox, &mailbox.id, ChangeOp::Updated)
            .await
    }

    /// Destroys a mailbox (the caller has dealt with its emails).
    pub async fn destroy_mailbox(&mut self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM mailboxes WHERE account_id = $1 AND id = $2")
            .bind(&self.account_id)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        self.log(ChangeKind::Mailbox, id, ChangeOp::Destroyed).await
    }

    /// The ids of the emails in a mailbox.
    pub async fn mailbox_email_ids(&mut self, mailbox_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT email_id FROM email_mailboxes WHERE account_id = $1 AND mailbox_id = $2",
        )
        .bind(&self.account_id)
        .bind(mailbox_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// One email, as this transaction sees it.
    pub async fn email(&mut self, id: &str) -> Result<Option<EmailRecord>, StoreError> {
        sqlx::query(&format!(
            "{EMAIL_COLUMNS} WHERE account_id = $1 AND id = $2"
        ))
        .bind(&self.account_id)
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(|row| EmailRecord::from_row(&row))
        .transpose()
    }

    /// Stores a blob in this transaction.
    pub async fn put_blob(
        &mut self,
        blob_id: &str,
        data: &[u8],
        media_type: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let account = self.account_id.clone();
        insert_blob(&mut self.tx, &account, blob_id, data, media_type, now).await
    }

    /// Files a new email: threads it (by its `In-Reply-To`/`References` ids, else a new
    /// thread `new_thread_id`), records it in its mailboxes and logs the changes. Returns the
    /// thread id.
    pub async fn insert_email(
        &mut self,
        email: &NewEmail,
        new_thread_id: &str,
    ) -> Result<String, StoreError> {
        let mut thread_id = None;
        for parent in email
            .parent_message_ids
            .iter()
            .chain(&email.own_message_ids)
        {
            if let Some(row) = sqlx::query(
                "SELECT thread_id FROM thread_refs WHERE account_id = $1 AND message_id = $2",
            )
            .bind(&self.account_id)
            .bind(parent)
            .fetch_optional(&mut *self.tx)
            .await?
            {
                thread_id = Some(row.try_get::<String, _>(0)?);
                break;
            }
        }
        let thread_id = thread_id.unwrap_or_else(|| new_thread_id.to_owned());
        let thread_exists = sqlx::query(
            "INSERT INTO threads (account_id, id, email_count) VALUES ($1, $2, 1) \
             ON CONFLICT (account_id, id) DO UPDATE SET email_count = threads.email_count + 1 \
             RETURNING email_count",
        )
        .bind(&self.account_id)
        .bind(&thread_id)
        .fetch_one(&mut *self.tx)
        .await?
        .try_get::<i64, _>(0)?
            > 1;
        for id in email
            .own_message_ids
            .iter()
            .chain(&email.parent_message_ids)
        {
            sqlx::query(
                "INSERT INTO thread_refs (account_id, message_id, thread_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id, message_id) DO NOTHING",
            )
            .bind(&self.account_id)
            .bind(id)
            .bind(&thread_id)
            .execute(&mut *self.tx)
            .await?;
        }
        let record = &email.record;
        sqlx::query(
            "INSERT INTO emails (account_id, id, blob_id, thread_id, message_id, received_at, \
             sent_at, size, keywords, mailbox_ids, subject_key, from_key, to_key, cc_key, bcc_key, \
             body_key, summary) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16, $17)",
        )
        .bind(&self.account_id)
        .bind(&record.id)
        .bind(&record.blob_id)
        .bind(&thread_id)
        .bind(record.message_id.as_deref())
        .bind(record.received_at)
        .bind(record.sent_at)
        .bind(record.size)
        .bind(word_list(&record.keywords))
        .bind(word_list(&record.mailbox_ids))
        .bind(&email.search.subject)
        .bind(&email.search.from)
        .bind(&email.search.to)
        .bind(&email.search.cc)
        .bind(&email.search.bcc)
        .bind(&email.search.body)
        .bind(&record.summary)
        .execute(&mut *self.tx)
        .await?;
        let stored = EmailRecord {
            thread_id: thread_id.clone(),
            ..record.clone()
        };
        self.add_memberships(&stored, &record.mailbox_ids).await?;
        self.log(ChangeKind::Email, &record.id, ChangeOp::Created)
            .await?;
        let thread_op = if thread_exists {
            ChangeOp::Updated
        } else {
            ChangeOp::Created
        };
        self.log(ChangeKind::Thread, &thread_id, thread_op).await?;
        for mailbox in &record.mailbox_ids {
            self.log(ChangeKind::Mailbox, mailbox, ChangeOp::Updated)
                .await?;
        }
        Ok(thread_id)
    }

    /// Moves the mailbox counters by one email (`sign` +1 or -1).
    async fn count(
        &mut self,
        email: &EmailRecord,
        mailbox: &str,
        sign: i64,
    ) -> Result<(), StoreError> {
        let entry = self.counts.entry(mailbox.to_owned()).or_insert((0, 0));
        entry.0 += sign;
        entry.1 += sign * i64::from(email.is_unread());
        Ok(())
    }

    async fn remove_memberships(&mut self, email: &EmailRecord) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM email_mailboxes WHERE account_id = $1 AND email_id = $2")
            .bind(&self.account_id)
            .bind(&email.id)
            .execute(&mut *self.tx)
            .await?;
        for mailbox in &email.mailbox_ids {
            self.count(email, mailbox, -1).await?;
        }
        Ok(())
    }

    async fn add_memberships(
        &mut self,
        email: &EmailRecord,
        mailboxes: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        for mailbox in mailboxes {
            self.count(email, mailbox, 1).await?;
            sqlx::query(
                "INSERT INTO email_mailboxes (account_id, mailbox_id, email_id, received_at, \
                 thread_id, unread) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&self.account_id)
            .bind(mailbox)
            .bind(&email.id)
            .bind(email.received_at)
            .bind(&email.thread_id)
            .bind(i64::from(email.is_unread()))
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Sets an email's keywords and mailboxes (`current` is its record before the change) and
    /// logs the email and every mailbox whose counts change.
    pub async fn update_email(
        &mut self,
        current: &EmailRecord,
        keywords: &BTreeSet<String>,
        mailbox_ids: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE emails SET keywords = $3, mailbox_ids = $4 WHERE account_id = $1 AND id = $2",
        )
        .bind(&self.account_id)
        .bind(&current.id)
        .bind(word_list(keywords))
        .bind(word_list(mailbox_ids))
        .execute(&mut *self.tx)
        .await?;
        let updated = EmailRecord {
            keywords: keywords.clone(),
            mailbox_ids: mailbox_ids.clone(),
            ..current.clone()
        };
        let unread_changed = updated.is_unread() != current.is_unread();
        self.remove_memberships(current).await?;
        self.add_memberships(&updated, mailbox_ids).await?;
        self.log(ChangeKind::Email, &current.id, ChangeOp::Updated)
            .await?;
        let touched: BTreeSet<&String> = if unread_changed {
            current.mailbox_ids.union(mailbox_ids).collect()
        } else {
            current
                .mailbox_ids
                .symmetric_difference(mailbox_ids)
                .collect()
        };
        for mailbox in touched {
            self.log(ChangeKind::Mailbox, mailbox, ChangeOp::Updated)
                .await?;
        }
        Ok(())
    }

    /// Destroys an email and logs the email, its thread and its mailboxes.
    pub async fn destroy_email(&mut self, current: &EmailRecord) -> Result<(), StoreError> {
        self.remove_memberships(current).await?;
        sqlx::query("DELETE FROM emails WHERE account_id = $1 AND id = $2")
            .bind(&self.account_id)
            .bind(&current.id)
            .execute(&mut *self.tx)
            .await?;
        let remaining = sqlx::query(
            "UPDATE threads SET email_count = email_count - 1 \
             WHERE account_id = $1 AND id = $2 RETURNING email_count",
        )
        .bind(&self.account_id)
        .bind(&current.thread_id)
        .fetch_optional(&mut *self.tx)
        .await?
        .map(|row| row.try_get::<i64, _>(0))
        .transpose()?
        .unwrap_or(0);
        if remaining <= 0 {
            sqlx::query("DELETE FROM threads WHERE account_id = $1 AND id = $2")
                .bind(&self.account_id)
                .bind(&current.thread_id)
                .execute(&mut *self.tx)
                .await?;
        }
        self.log(ChangeKind::Email, &current.id, ChangeOp::Destroyed)
            .await?;
        let thread_op = if remaining > 0 {
            ChangeOp::Updated
        } else {
            ChangeOp::Destroyed
        };
        self.log(ChangeKind::Thread, &current.thread_id, thread_op)
            .await?;
        for mailbox in &current.mailbox_ids {
            self.log(ChangeKind::Mailbox, mailbox, ChangeOp::Updated)
                .await?;
        }
        Ok(())
    }

    /// Records a submission.
    pub async fn insert_submission(
        &mut self,
        id: &str,
        email: &EmailRecord,
        identity_id: &str,
        envelope_json: &str,
        send_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO email_submissions (account_id, id, email_id, thread_id, identity_id, \
             envelope, send_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&self.account_id)
        .bind(id)
        .bind(&email.id)
        .bind(&email.thread_id)
        .bind(identity_id)
        .bind(envelope_json)
        .bind(send_at)
        .execute(&mut *self.tx)
        .await?;
        self.log(ChangeKind::EmailSubmission, id, ChangeOp::Created)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(
            word_list(&["$seen".to_owned(), "x".to_owned()]),
            " $seen x "
        );
        assert_eq!(
            word_set(" $seen x "),
            BTreeSet::from(["$seen".to_owned(), "x".to_owned()])
        );
    }

    #[test]
    fn a_mailbox_filter_drives_the_query_from_its_index() {
        let filter = EmailFilter::And(vec![
            EmailFilter::InMailbox("inbox".into()),
            EmailFilter::NotKeyword("$seen".into()),
        ]);
        let sql = compile_query("acct", Some(&filter), &[]);
        assert!(sql.from_where.starts_with("FROM email_mailboxes mb"));
        assert!(sql.order_by.starts_with("mb.received_at DESC"));
        let or = EmailFilter::Or(vec![EmailFilter::InMailbox("a".into())]);
        assert!(
            compile_query("acct", Some(&or), &[])
                .from_where
                .starts_with("FROM emails e")
        );
    }

    #[test]
    fn empty_operators() {
        let mut sql = QuerySql {
            from_where: String::new(),
            order_by: String::new(),
            binds: Vec::new(),
        };
        assert_eq!(compile_filter(&EmailFilter::Or(vec![]), &mut sql), "1 = 0");
        assert_eq!(compile_filter(&EmailFilter::And(vec![]), &mut sql), "1 = 1");
    }
}
