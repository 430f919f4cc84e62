//! `keyscope mail import`: seeds a mailbox from `.eml` and mbox files (demos, migration,
//! tests). Works beside a running server: it writes through the same store, and the server's
//! push channel picks the change up within seconds.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use keyscope_identity::{Event, RequestContext};
use keyscope_mail::ingest::{self, Filing};
use serde_json::json;

use crate::identity::{Place, RealmArg, admin, realm_arg};
use crate::input::{print_json, read_bounded};

/// Mailboxes.
#[derive(Subcommand, Debug)]
pub enum MailCommand {
    /// Import `.eml` files and mbox files into a user's mailbox.
    Import(ImportArgs),
}

/// `keyscope mail import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    realm: RealmArg,
    /// The user whose mailbox receives the messages.
    #[arg(long)]
    user: String,
    /// The mailbox (by role, e.g. inbox, archive, or by name). Default: inbox.
    #[arg(long, default_value = "inbox")]
    mailbox: String,
    /// Mark the imported messages as read ($seen).
    #[arg(long)]
    seen: bool,
    /// `.eml` files (one message each) and mbox files (detected by their `From ` line).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    place: Place,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// Largest mbox file read (1 GiB): bigger archives are split first.
const MAX_MBOX_BYTES: usize = 1 << 30;
/// Messages filed per transaction.
const BATCH: usize = 500;

/// A user's mailbox by role (`inbox`, `archive`, …) or, failing that, by name.
async fn find_mailbox(
    store: &keyscope_store::Store,
    account: &keyscope_store::MailAccount,
    wanted: &str,
) -> anyhow::Result<keyscope_store::MailboxRecord> {
    let mailboxes = store.mailboxes(&account.id).await?;
    let role = wanted.to_ascii_lowercase();
    mailboxes
        .iter()
        .find(|m| m.role.as_deref() == Some(role.as_str()))
        .or_else(|| {
            mailboxes
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(wanted))
        })
        .cloned()
        .with_context(|| format!("{} has no mailbox {wanted:?}", account.email))
}

/// Files one message into a user's Inbox (incident notices to tenant administrators).
/// Returns the mailbox address.
pub(crate) async fn deliver_to_inbox(
    store: &keyscope_store::Store,
    realm: &str,
    username: &str,
    raw: &[u8],
) -> anyhow::Result<String> {
    let account = keyscope_mail::account::account_of(
        store,
        realm,
        username,
        keyscope_mail::DEFAULT_MAIL_DOMAIN,
    )
    .await?;
    let inbox = find_mailbox(store, &account, "inbox").await?;
    let filing = Filing {
        mailbox_ids: BTreeSet::from([inbox.id.clone()]),
        keywords: BTreeSet::new(),
        arrival: ingest::Arrival::Sent,
    };
    let mut tx = store.begin_mail(&account.id).await?;
    ingest::file_message(&mut tx, raw, &filing).await?;
    tx.commit().await?;
    Ok(account.email)
}

pub fn run(command: MailCommand) -> anyhow::Result<ExitCode> {
    let MailCommand::Import(args) = command;
    // Read and split everything before touching the store, so a bad file stops nothing
    // half-way and every problem is reported with its file (and message number).
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for path in &args.files {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let data = read_bounded(file, MAX_MBOX_BYTES)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if keyscope_mime::looks_like_mbox(&data) {
            match keyscope_mime::split_mbox(&data) {
                Ok(found) => messages.extend(found),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        } else {
            messages.push(data);
        }
    }
    let total_files = args.files.len();
    admin(&args.place, async |identity| {
        let realm = identity.realm(realm_arg(&args.realm)).await?;
        let store = identity.store();
        let account = keyscope_mail::account::account_of(
            store,
            &realm.id,
            &args.user,
            keyscope_mail::DEFAULT_MAIL_DOMAIN,
        )
        .await?;
        let mailbox = find_mailbox(store, &account, &args.mailbox).await?;
        let keywords: BTreeSet<String> = if args.seen {
            BTreeSet::from(["$seen".to_owned()])
        } else {
            BTreeSet::new()
        };
        let filing = Filing {
            mailbox_ids: BTreeSet::from([mailbox.id.clone()]),
            keywords,
            arrival: ingest::Arrival::Sent,
        };
        let started = std::time::Instant::now();
        let mut imported = 0_usize;
        for (batch_number, batch) in messages.chunks(BATCH).enumerate() {
            let mut tx = store.begin_mail(&account.id).await?;
            for (i, raw) in batch.iter().enumerate() {
                match ingest::file_message(&mut tx, raw, &filing).await {
                    Ok(_) => imported += 1,
                    Err(keyscope_mail::MailError::Mime(e)) => {
                        problems.push(format!("message {}: {e}", batch_number * BATCH + i + 1));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            tx.commit().await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let event = Event::new("AdminAction")
            .with("AdminOperation", Some("MailImported"))
            .with("OrganizationId", Some(&realm.id))
            .with("Target", Some(&account.email))
            .with("MailboxOwnerUPN", Some(&account.email))
            .with("UserId", Some("operator"))
            .with("ResultStatus", Some("Success"))
            .with_value("OperationCount", json!(imported))
            .context(&RequestContext::operator());
        identity.audit().record(event.into_map()).await?;
        if args.json {
            print_json(&json!({
                "account": account.id, "email": account.email, "mailbox": mailbox.name,
                "files": total_files, "imported": imported, "failed": problems.len(),
                "problems": problems, "seconds": seconds,
            }));
        } else {
            crate::input::outln!(
                "imported {imported} message(s) from {total_files} file(s) into {} of {} in {seconds:.2} s",
                mailbox.name,
                account.email
            );
            for problem in &problems {
                eprintln!("skipped: {problem}");
            }
        }
        Ok(if problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::EXIT_NEGATIVE)
        })
    })
}
