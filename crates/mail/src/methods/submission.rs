//! `EmailSubmission/set` and `/get` (RFC 8621 §7): delivery to local recipients, in any realm.
//!
//! Keyscope has no outbound SMTP: a recipient that is not a Keyscope account is refused with
//! `invalidRecipients` rather than silently dropped.

use std::collections::{BTreeMap, BTreeSet};

use keyscope_jmap::{CreatedIds, MethodError, MethodErrorType, SetError, SetErrorType};
use keyscope_store::{ChangeKind, EmailRecord, MailAccount};
use serde_json::{Map, Value, json};

use super::email::{mail_error, set_response, update_and_destroy};
use super::{
    Args, Context, MethodResult, Outcome, get_response, max_get, max_set, state_of, store_error,
};
use crate::ingest::{self, Filing};

/// Most recipients per submission.
pub const MAX_RECIPIENTS: usize = 100;

fn addresses(summary: &Map<String, Value>, fields: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for field in fields {
        for address in summary
            .get(*field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(email) = address.get("email").and_then(Value::as_str) {
                out.push(email.to_ascii_lowercase());
            }
        }
    }
    out
}

fn envelope_recipients(envelope: &Value) -> Option<(String, Vec<String>)> {
    let mail_from = envelope
        .get("mailFrom")?
        .get("email")?
        .as_str()?
        .to_ascii_lowercase();
    let rcpt = envelope
        .get("rcptTo")?
        .as_array()?
        .iter()
        .map(|r| {
            r.get("email")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        })
        .collect::<Option<Vec<_>>>()?;
    Some((mail_from, rcpt))
}

struct Submitted {
    id: String,
    email: EmailRecord,
}

pub(super) async fn set(
    ctx: &mut Context<'_>,
    args: &Args,
    created_ids: &mut CreatedIds,
) -> MethodResult {
    let store = ctx.service().store().clone();
    let account = ctx.account().clone();
    let old_state = super::check_if_in_state(ctx, args, ChangeKind::EmailSubmission).await?;
    let create = args.object("create")?.cloned().unwrap_or_default();
    if args.object("update")?.is_some_and(|u| !u.is_empty())
        || args
            .strings("destroy", max_set(ctx))?
            .is_some_and(|d| !d.is_empty())
    {
        // Sending is immediate, so there is nothing left to cancel or change.
        return Err(Outcome::Error(
            MethodError::new(MethodErrorType::Forbidden).with_description(
                "submissions are delivered at once and cannot be updated or destroyed",
            ),
        ));
    }
    if create.len() > max_set(ctx) {
        return Err(Outcome::Error(MethodError::request_too_large(
            "too many submissions in one request",
        )));
    }
    let on_success_update = args.object("onSuccessUpdateEmail")?.cloned();
    let on_success_destroy = args.strings("onSuccessDestroyEmail", max_set(ctx))?;
    let mut created = Map::new();
    let mut not_created = Map::new();
    let mut submitted: Vec<(String, Submitted)> = Vec::new();
    for (creation_id, object) in &create {
        match submit_one(ctx, &account, object, created_ids).await? {
            Ok(done) => {
                created_ids.insert(creation_id.clone(), done.id.clone());
                created.insert(
                    creation_id.clone(),
                    json!({"id": done.id, "threadId": done.email.thread_id,
                           "undoStatus": "final", "sendAt": crate::time::utc_date(crate::unix_now())}),
                );
                submitted.push((creation_id.clone(), done));
            }
            Err(e) => {
                not_created.insert(creation_id.clone(), e.to_json());
            }
        }
    }
    let new_state = state_of(ctx, ChangeKind::EmailSubmission).await?;
    let mut response = Map::new();
    response.insert("accountId".into(), json!(account.id));
    response.insert("oldState".into(), json!(old_state.to_string()));
    response.insert("newState".into(), json!(new_state.to_string()));
    response.insert(
        "created".into(),
        if created.is_empty() {
            Value::Null
        } else {
            Value::Object(created)
        },
    );
    response.insert(
        "notCreated".into(),
        if not_created.is_empty() {
            Value::Null
        } else {
            Value::Object(not_created)
        },
    );
    // The implicit Email/set (RFC 8621 §7.5): `#creationId` keys name submissions of this
    // call, whose emails are then updated or destroyed.
    let by_creation: BTreeMap<String, String> = submitted
        .iter()
        .map(|(cid, s)| (format!("#{cid}"), s.email.id.clone()))
        .collect();
    let resolve = |key: &str| -> Option<String> {
        if key.starts_with('#') {
            by_creation.get(key).cloned()
        } else {
            submitted
                .iter()
                .find(|(_, s)| s.id == key)
                .map(|(_, s)| s.email.id.clone())
        }
    };
    let mut implicit_update = Map::new();
    for (key, patch) in on_success_update.unwrap_or_default() {
        if let Some(email_id) = resolve(&key) {
            implicit_update.insert(email_id, patch);
        }
    }
    let implicit_destroy: Vec<String> = on_success_destroy
        .unwrap_or_default()
        .iter()
        .filter_map(|key| resolve(key))
        .collect();
    if !implicit_update.is_empty() || !implicit_destroy.is_empty() {
        let email_set = implicit_email_set(
            ctx,
            &store,
            &account,
            &implicit_update,
            &implicit_destroy,
            created_ids,
        )
        .await?;
        ctx.implicit.push(("Email/set".to_owned(), email_set));
    }
    Ok(response)
}

async fn submit_one(
    ctx: &mut Context<'_>,
    account: &MailAccount,
    object: &Value,
    created_ids: &CreatedIds,
) -> Result<Result<Submitted, SetError>, Outcome> {
    let Some(object) = object.as_object() else {
        return Ok(Err(SetError::invalid_properties(Vec::<String>::new())));
    };
    let resolve = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .map(|id| match id.strip_prefix('#') {
                Some(cid) => created_ids.get(cid).cloned().unwrap_or_default(),
                None => id.to_owned(),
            })
    };
    let Some(identity_id) = resolve(object.get("identityId")) else {
        return Ok(Err(SetError::invalid_properties(["identityId"])));
    };
    if identity_id != account.id {
        return Ok(Err(
            SetError::invalid_properties(["identityId"]).with_description("no such identity")
        ));
    }
    let Some(email_id) = resolve(object.get("emailId")) else {
        return Ok(Err(SetError::invalid_properties(["emailId"])));
    };
    let store = ctx.service().store().clone();
    let Some(email) = store
        .emails(&account.id, std::slice::from_ref(&email_id))
        .await
        .map_err(store_error)?
        .pop()
    else {
        return Ok(Err(SetError::new(SetErrorType::Other(
            "invalidEmail".into(),
        ))
        .with_description("the email does not exist")
        .with_member("properties", json!(["emailId"]))));
    };
    let summary: Map<String, Value> = serde_json::from_str(&email.summary).unwrap_or_default();
    let (mail_from, recipients) = match object.get("envelope").filter(|e| !e.is_null()) {
        Some(envelope) => match envelope_recipients(envelope) {
            Some(pair) => pair,
            None => return Ok(Err(SetError::invalid_properties(["envelope"]))),
        },
        None => {
            let from = addresses(&summary, &["sender", "from"]);
            (
                from.first().cloned().unwrap_or_default(),
                addresses(&summary, &["to", "cc", "bcc"]),
            )
        }
    };
    if mail_from != account.email {
        return Ok(Err(SetError::new(SetErrorType::Forbidden)
            .with_description("the sender must be the account's own address")
            .with_member("type", json!("forbiddenFrom"))));
    }
    let recipients: Vec<String> = recipients
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if recipients.is_empty() {
        return Ok(Err(SetError::new(SetErrorType::Other(
            "noRecipients".into(),
        ))));
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Ok(Err(SetError::new(SetErrorType::Other(
            "tooManyRecipients".into(),
        ))
        .with_member("maxRecipients", json!(MAX_RECIPIENTS))));
    }
    let local = store
        .mail_accounts_by_email(&recipients)
        .await
        .map_err(store_error)?;
    let known: BTreeSet<&str> = local.iter().map(|a| a.email.as_str()).collect();
    let unknown: Vec<&String> = recipients
        .iter()
        .filter(|r| !known.contains(r.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Ok(Err(SetError::new(SetErrorType::Other(
            "invalidRecipients".into(),
        ))
        .with_description("these recipients are not Keyscope accounts (there is no outbound relay)")
        .with_member("invalidRecipients", json!(unknown))));
    }
    let Some((raw, _)) = store
        .blob(&account.id, &email.blob_id)
        .await
        .map_err(store_error)?
    else {
        return Err(Outcome::Error(MethodError::server_fail(
            "the message blob is missing",
        )));
    };
    let delivered = ingest::strip_bcc(&raw);
    for recipient in &local {
        deliver(ctx, recipient, &delivered).await?;
    }
    let id = crate::account::new_id('s');
    let envelope = json!({"mailFrom": {"email": mail_from},
                          "rcptTo": recipients.iter().map(|r| json!({"email": r})).collect::<Vec<_>>()});
    let mut tx = store.begin_mail(&account.id).await.map_err(store_error)?;
    tx.insert_submission(
        &id,
        &email,
        &identity_id,
        &envelope.to_string(),
        crate::unix_now(),
    )
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    ctx.changed.insert(account.id.clone());
    ctx.accessed
        .sent
        .push((email.id.clone(), email.message_id.clone(), recipients));
    Ok(Ok(Submitted { id, email }))
}

/// Files a copy in the recipient's Inbox.
async fn deliver(
    ctx: &mut Context<'_>,
    recipient: &MailAccount,
    raw: &[u8],
) -> Result<(), Outcome> {
    let store = ctx.service().store().clone();
    let mut tx = store.begin_mail(&recipient.id).await.map_err(store_error)?;
    let inbox = tx
        .mailboxes()
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|m| m.role.as_deref() == Some("inbox"))
        .ok_or_else(|| Outcome::Error(MethodError::server_fail("a recipient has no inbox")))?;
    let filing = Filing {
        mailbox_ids: BTreeSet::from([inbox.id]),
        keywords: BTreeSet::new(),
        arrival: crate::ingest::Arrival::At(crate::unix_now()),
    };
    ingest::file_message(&mut tx, raw, &filing)
        .await
        .map_err(mail_error)?;
    tx.commit().await.map_err(store_error)?;
    ctx.changed.insert(recipient.id.clone());
    Ok(())
}

async fn implicit_email_set(
    ctx: &mut Context<'_>,
    store: &keyscope_store::Store,
    account: &MailAccount,
    update: &Map<String, Value>,
    destroy: &[String],
    created_ids: &CreatedIds,
) -> Result<Map<String, Value>, Outcome> {
    let old_state = state_of(ctx, ChangeKind::Email).await?;
    let mut tx = store.begin_mail(&account.id).await.map_err(store_error)?;
    let mailboxes: BTreeSet<String> = tx
        .mailboxes()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    let changed = update_and_destroy(&mut tx, update, destroy, created_ids, &mailboxes).await?;
    tx.commit().await.map_err(store_error)?;
    let new_state = state_of(ctx, ChangeKind::Email).await?;
    Ok(set_response(
        &account.id,
        old_state,
        new_state,
        vec![
            ("updated", changed.updated),
            ("notUpdated", changed.not_updated),
            ("notDestroyed", changed.not_destroyed),
        ],
        changed.destroyed,
    ))
}

/// `EmailSubmission/get`.
pub(super) async fn get(ctx: &mut Context<'_>, args: &Args) -> MethodResult {
    let state = state_of(ctx, ChangeKind::EmailSubmission).await?;
    let ids = match args.ids(max_get(ctx), None)? {
        Some(ids) => ids,
        None => {
            let max = i64::try_from(max_get(ctx)).unwrap_or(i64::MAX);
            let ids = ctx
                .service()
                .store()
                .submission_ids(&ctx.account().id, max.saturating_add(1))
                .await
                .map_err(store_error)?;
            if ids.len() > max_get(ctx) {
                return Err(Outcome::Error(MethodError::request_too_large(
                    "more submissions than maxObjectsInGet: pass ids",
                )));
            }
            ids
        }
    };
    let rows = ctx
        .service()
        .store()
        .submissions(&ctx.account().id, &ids)
        .await
        .map_err(store_error)?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        match rows.iter().find(|s| s.id == id) {
            Some(s) => list.push(json!({
                "id": s.id, "identityId": s.identity_id, "emailId": s.email_id,
                "threadId": s.thread_id,
                "envelope": serde_json::from_str::<Value>(&s.envelope).unwrap_or(Value::Null),
                "sendAt": crate::time::utc_date(s.send_at), "undoStatus": "final",
                "deliveryStatus": Value::Null, "dsnBlobIds": [], "mdnBlobIds": [],
            })),
            None => not_found.push(id),
        }
    }
    Ok(get_response(ctx, state, list, not_found))
}
