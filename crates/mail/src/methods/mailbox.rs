//! `Mailbox/get`, `Mailbox/query` and `Mailbox/set` (RFC 8621 §2).

use std::collections::{BTreeMap, BTreeSet};

use keyscope_jmap::{CreatedIds, MethodError, MethodErrorType, SetError, SetErrorType};
use keyscope_store::{ChangeKind, MailboxCounts, MailboxRecord};
use serde_json::{Map, Value, json};

use super::{
    Args, Context, MethodResult, Outcome, get_response, invalid, max_get, select, state_of,
    store_error,
};

const PROPERTIES: [&str; 11] = [
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
];

/// The roles of RFC 8457 (and RFC 8621's `inbox`) a mailbox may take.
const ROLES: [&str; 12] = [
    "all",
    "archive",
    "drafts",
    "flagged",
    "important",
    "inbox",
    "junk",
    "sent",
    "subscribed",
    "trash",
    "snoozed",
    "memos",
];

/// Longest mailbox name, in bytes (announced as `maxSizeMailboxName`).
pub const MAX_NAME_BYTES: usize = 255;
/// Deepest mailbox nesting (announced as `maxMailboxDepth`).
pub const MAX_DEPTH: usize = 10;

fn to_json(mailbox: &MailboxRecord, counts: MailboxCounts) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("id".into(), json!(mailbox.id));
    object.insert("name".into(), json!(mailbox.name));
    object.insert("parentId".into(), json!(mailbox.parent_id));
    object.insert("role".into(), json!(mailbox.role));
    object.insert("sortOrder".into(), json!(mailbox.sort_order));
    object.insert("totalEmails".into(), json!(counts.total_emails));
    object.insert("unreadEmails".into(), json!(counts.unread_emails));
    object.insert("totalThreads".into(), json!(counts.total_threads));
    object.insert("unreadThreads".into(), json!(counts.unread_threads));
    object.insert(
        "myRights".into(),
        json!({
            "mayReadItems": true, "mayAddItems": true, "mayRemoveItems": true,
            "maySetSeen": true, "maySetKeywords": true, "mayCreateChild": true,
            "mayRename": true, "mayDelete": true, "maySubmit": true,
        }),
    );
    object.insert("isSubscribed".into(), json!(mailbox.is_subscribed));
    object
}

pub(super) async fn get(ctx: &mut Context<'_>, args: &Args) -> MethodResult {
    let properties = args.properties(&PROPERTIES)?;
    let ids = args.ids(max_get(ctx), None)?;
    let state = state_of(ctx, ChangeKind::Mailbox).await?;
    let store = ctx.service().store();
    let account = &ctx.account().id;
    let mailboxes = store.mailboxes(account).await.map_err(store_error)?;
    let wants = |names: &[&str]| {
        properties
            .as_ref()
            .is_none_or(|p| p.iter().any(|p| names.contains(&p.as_str())))
    };
    let counts = if wants(&[
        "totalEmails",
        "unreadEmails",
        "totalThreads",
        "unreadThreads",
    ]) {
        store
            .mailbox_counts(account, wants(&["totalThreads", "unreadThreads"]))
            .await
            .map_err(store_error)?
    } else {
        BTreeMap::new()
    };
    let by_id: BTreeMap<&str, &MailboxRecord> =
        mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    let wanted: Vec<String> = match ids {
        Some(ids) => ids,
        None => mailboxes.iter().map(|m| m.id.clone()).collect(),
    };
    for id in wanted {
        match by_id.get(id.as_str()) {
            Some(mailbox) => {
                let count = counts.get(&id).copied().unwrap_or_default();
                list.push(select(to_json(mailbox, count), properties.as_deref()));
            }
            None => not_found.push(id),
        }
    }
    Ok(get_response(ctx, state, list, not_found))
}

pub(super) async fn query(ctx: &mut Context<'_>, args: &Args) -> MethodResult {
    let store = ctx.service().store();
    let mailboxes = store
        .mailboxes(&ctx.account().id)
        .await
        .map_err(store_error)?;
    let state = state_of(ctx, ChangeKind::Mailbox).await?;
    if args.bool("filterAsTree", false)? || args.bool("sortAsTree", false)? {
        return Err(Outcome::Error(
            MethodError::new(MethodErrorType::UnsupportedSort)
                .with_description("filterAsTree and sortAsTree are not supported"),
        ));
    }
    let mut matching: Vec<&MailboxRecord> = Vec::new();
    let filter = args.object("filter")?;
    for mailbox in &mailboxes {
        if let Some(filter) = filter
            && !matches(mailbox, filter)?
        {
            continue;
        }
        matching.push(mailbox);
    }
    let sort = match args.get("sort") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(invalid("sort must be a list")),
    };
    let mut keys: Vec<(String, bool)> = Vec::new();
    for comparator in &sort {
        let Some(object) = comparator.as_object() else {
            return Err(invalid("sort items must be Comparator objects"));
        };
        let property = object.get("property").and_then(Value::as_str).unwrap_or("");
        if !matches!(property, "name" | "sortOrder") {
            return Err(Outcome::Error(
                MethodError::new(MethodErrorType::UnsupportedSort).with_description(format!(
                    "cannot sort mailboxes by {:?}",
                    property.chars().take(64).collect::<String>()
                )),
            ));
        }
        let ascending = object
            .get("isAscending")
            .map_or(Some(true), Value::as_bool)
            .ok_or_else(|| invalid("isAscending must be a boolean"))?;
        keys.push((property.to_owned(), ascending));
    }
    matching.sort_by(|a, b| {
        for (key, ascending) in &keys {
            let ordering = if key == "name" {
                a.name.to_lowercase().cmp(&b.name.to_lowercase())
            } else {
                a.sort_order.cmp(&b.sort_order)
            };
            let ordering = if *ascending {
                ordering
            } else {
                ordering.reverse()
            };
            if ordering.is_ne() {
                return ordering;
            }
        }
        a.id.cmp(&b.id)
    });
    let ids: Vec<String> = matching.iter().map(|m| m.id.clone()).collect();
    let window = super::email::window(args, &ids)?;
    let mut response = Map::new();
    response.insert("accountId".into(), json!(ctx.account().id));
    response.insert("queryState".into(), json!(state.to_string()));
    response.insert("canCalculateChanges".into(), json!(false));
    response.insert("position".into(), json!(window.position));
    response.insert("ids".into(), json!(window.ids));
    if args.bool("calculateTotal", false)? {
        response.insert("total".into(), json!(ids.len()));
    }
    Ok(response)
}

fn matches(mailbox: &MailboxRecord, filter: &Map<String, Value>) -> Result<bool, Outcome> {
    if let Some(operator) = filter.get("operator") {
        let conditions = filter
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("a FilterOperator needs conditions"))?;
        let mut results = Vec::with_capacity(conditions.len());
        for condition in conditions {
            let condition = condition
                .as_object()
                .ok_or_else(|| invalid("conditions must be objects"))?;
            results.push(matches(mailbox, condition)?);
        }
        return match operator.as_str() {
            Some("AND") => Ok(results.iter().all(|r| *r)),
            Some("OR") => Ok(results.iter().any(|r| *r)),
            Some("NOT") => Ok(!results.iter().any(|r| *r)),
            _ => Err(invalid("operator must be AND, OR or NOT")),
        };
    }
    for (name, value) in filter {
        let ok = match (name.as_str(), value) {
            ("parentId", Value::Null) => mailbox.parent_id.is_none(),
            ("parentId", Value::String(id)) => mailbox.parent_id.as_deref() == Some(id),
            ("name", Value::String(text)) => {
                mailbox.name.to_lowercase().contains(&text.to_lowercase())
            }
            ("role", Value::Null) => mailbox.role.is_none(),
            ("role", Value::String(role)) => mailbox.role.as_deref() == Some(role),
            ("hasAnyRole", Value::Bool(b)) => mailbox.role.is_some() == *b,
            ("isSubscribed", Value::Bool(b)) => mailbox.is_subscribed == *b,
            ("parentId" | "name" | "role" | "hasAnyRole" | "isSubscribed", _) => {
                return Err(invalid(format!("filter {name} has the wrong type")));
            }
            _ => {
                return Err(Outcome::Error(
                    MethodError::new(MethodErrorType::UnsupportedFilter).with_description(format!(
                        "unknown mailbox filter {:?}",
                        name.chars().take(64).collect::<String>()
                    )),
                ));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Applies `properties` (a create object or an update patch, already merged) to `mailbox`,
/// resolving `#creation` parent references.
fn apply(
    mailbox: &mut MailboxRecord,
    properties: &Map<String, Value>,
    created: &CreatedIds,
    is_create: bool,
) -> Result<(), SetError> {
    let mut bad = Vec::new();
    for (name, value) in properties {
        match (name.as_str(), value) {
            ("name", Value::String(n)) if !n.is_empty() && n.len() <= MAX_NAME_BYTES => {
                if n.chars().any(char::is_control) {
                    bad.push(name.clone());
                }
                mailbox.name = n.clone();
            }
            ("parentId", Value::Null) => mailbox.parent_id = None,
            ("parentId", Value::String(id)) => {
                let id = match id.strip_prefix('#') {
                    Some(cid) => match created.get(cid) {
                        Some(real) => real.clone(),
                        None => {
                            bad.push(name.clone());
                            continue;
                        }
                    },
                    None => id.clone(),
                };
                mailbox.parent_id = Some(id);
            }
            ("role", Value::Null) => mailbox.role = None,
            ("role", Value::String(role)) if ROLES.contains(&role.as_str()) => {
                mailbox.role = Some(role.clone());
            }
            ("sortOrder", Value::Number(n)) if n.as_u64().is_some_and(|v| v < (1 << 32)) => {
                mailbox.sort_order = n.as_i64().unwrap_or(0);
            }
            ("isSubscribed", Value::Bool(b)) => mailbox.is_subscribed = *b,
            // Server-set properties may be given on update only with their current value;
            // we do not track them per object, so any value is refused.
            _ => bad.push(name.clone()),
        }
    }
    if is_create && !properties.contains_key("name") {
        bad.push("name".to_owned());
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(SetError::invalid_properties(bad))
    }
}

/// Checks a mailbox against its future siblings: parent exists, no cycle, depth, unique
/// sibling name, unique role.
fn validate(
    mailbox: &MailboxRecord,
    all: &BTreeMap<String, MailboxRecord>,
) -> Result<(), SetError> {
    let mut depth = 0;
    let mut parent = mailbox.parent_id.clone();
    while let Some(id) = parent {
        if id == mailbox.id {
            return Err(SetError::invalid_properties(["parentId"])
                .with_description("the mailbox would be its own ancestor"));
        }
        let Some(p) = all.get(&id) else {
            return Err(SetError::invalid_properties(["parentId"])
                .with_description("the parent mailbox does not exist"));
        };
        depth += 1;
        if depth >= MAX_DEPTH {
            return Err(SetError::invalid_properties(["parentId"])
                .with_description(format!("mailboxes nest at most {MAX_DEPTH} deep")));
        }
        parent = p.parent_id.clone();
    }
    for other in all.values() {
        if other.id == mailbox.id {
            continue;
        }
        if other.parent_id == mailbox.parent_id && other.name == mailbox.name {
            return Err(SetError::new(SetErrorType::AlreadyExists)
                .with_description("a sibling mailbox has this name")
                .with_member("existingId", json!(other.id)));
        }
        if mailbox.role.is_some() && other.role == mailbox.role {
            return Err(SetError::invalid_properties(["role"])
                .with_description("another mailbox has this role"));
        }
    }
    Ok(())
}

/// The creates in an order where a mailbox whose `parentId` is `#other` comes after `other`
/// (RFC 8621 §2.5 lets a client create a tree in one call). Cycles and dangling references
/// keep their place and fail validation.
fn creation_order(create: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let parent_ref = |object: &Value| {
        object
            .get("parentId")
            .and_then(Value::as_str)
            .and_then(|p| p.strip_prefix('#'))
            .map(str::to_owned)
    };
    let mut pending: Vec<(&String, &Value)> = create.iter().collect();
    let mut ordered = Vec::with_capacity(pending.len());
    let mut placed: BTreeSet<&String> = BTreeSet::new();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|(id, object)| {
            let ready = parent_ref(object)
                .is_none_or(|p| !create.contains_key(&p) || placed.iter().any(|x| **x == p));
            if ready {
                placed.insert(id);
                ordered.push((*id, *object));
            }
            !ready
        });
        if pending.len() == before {
            ordered.append(&mut pending);
        }
    }
    ordered
}

pub(super) async fn set(
    ctx: &mut Context<'_>,
    args: &Args,
    created_ids: &mut CreatedIds,
) -> MethodResult {
    let store = ctx.service().store().clone();
    let account_id = ctx.account().id.clone();
    let super::SetRequest {
        old_state,
        create,
        update,
        destroy,
    } = super::set_request(ctx, args, ChangeKind::Mailbox).await?;
    let remove_emails = args.bool("onDestroyRemoveEmails", false)?;
    let mut tx = store.begin_mail(&account_id).await.map_err(store_error)?;
    let mut all: BTreeMap<String, MailboxRecord> = tx
        .mailboxes()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    let mut created = Map::new();
    let mut not_created = Map::new();
    for (creation_id, object) in creation_order(&create) {
        let Some(object) = object.as_object() else {
            not_created.insert(
                creation_id.clone(),
                SetError::invalid_properties(Vec::<String>::new()).to_json(),
            );
            continue;
        };
        let mut mailbox = MailboxRecord {
            id: crate::account::new_id('m'),
            name: String::new(),
            parent_id: None,
            role: None,
            sort_order: 0,
            is_subscribed: false,
        };
        let result =
            apply(&mut mailbox, object, created_ids, true).and_then(|()| validate(&mailbox, &all));
        match result {
            Ok(()) => {
                tx.create_mailbox(&mailbox).await.map_err(store_error)?;
                created_ids.insert(creation_id.clone(), mailbox.id.clone());
                let mut reply = Map::new();
                reply.insert("id".into(), json!(mailbox.id));
                for (name, value) in [
                    ("totalEmails", json!(0)),
                    ("unreadEmails", json!(0)),
                    ("totalThreads", json!(0)),
                    ("unreadThreads", json!(0)),
                    ("isSubscribed", json!(mailbox.is_subscribed)),
                    ("sortOrder", json!(mailbox.sort_order)),
                ] {
                    if !object.contains_key(name) {
                        reply.insert(name.into(), value);
                    }
                }
                created.insert(creation_id.clone(), Value::Object(reply));
                all.insert(mailbox.id.clone(), mailbox);
            }
            Err(e) => {
                not_created.insert(creation_id.clone(), e.to_json());
            }
        }
    }
    let mut updated = Map::new();
    let mut not_updated = Map::new();
    for (id, patch) in &update {
        let Some(current) = all.get(id).cloned() else {
            not_updated.insert(id.clone(), SetError::new(SetErrorType::NotFound).to_json());
            continue;
        };
        let Some(patch) = patch.as_object() else {
            not_updated.insert(
                id.clone(),
                SetError::invalid_patch("not an object").to_json(),
            );
            continue;
        };
        let mut mailbox = current.clone();
        let result = keyscope_jmap::PatchObject::parse(patch)
            .and_then(|p| {
                // Mailbox properties are flat: every patch path is a whole property.
                let mut flat = Map::new();
                for (path, value) in p.patches() {
                    match path.as_slice() {
                        [name] => {
                            flat.insert(name.clone(), value.clone());
                        }
                        _ => return Err(SetError::invalid_properties([path.join("/")])),
                    }
                }
                Ok(flat)
            })
            .and_then(|flat| apply(&mut mailbox, &flat, created_ids, false))
            .and_then(|()| validate(&mailbox, &all));
        match result {
            Ok(()) => {
                tx.update_mailbox(&mailbox).await.map_err(store_error)?;
                all.insert(id.clone(), mailbox);
                updated.insert(id.clone(), Value::Null);
            }
            Err(e) => {
                not_updated.insert(id.clone(), e.to_json());
            }
        }
    }
    let mut destroyed = Vec::new();
    let mut not_destroyed = Map::new();
    let destroying: BTreeSet<&String> = destroy.iter().collect();
    for id in &destroy {
        if !all.contains_key(id) {
            not_destroyed.insert(id.clone(), SetError::new(SetErrorType::NotFound).to_json());
            continue;
        }
        let has_child = all
            .values()
            .any(|m| m.parent_id.as_ref() == Some(id) && !destroying.contains(&m.id));
        if has_child {
            not_destroyed.insert(
                id.clone(),
                SetError::new(SetErrorType::Other("mailboxHasChild".into()))
                    .with_description("the mailbox has child mailboxes")
                    .to_json(),
            );
            continue;
        }
        let email_ids = tx.mailbox_email_ids(id).await.map_err(store_error)?;
        if !email_ids.is_empty() && !remove_emails {
            not_destroyed.insert(
                id.clone(),
                SetError::new(SetErrorType::Other("mailboxHasEmail".into()))
                    .with_description("the mailbox is not empty (see onDestroyRemoveEmails)")
                    .to_json(),
            );
            continue;
        }
        for email_id in email_ids {
            let Some(email) = tx.email(&email_id).await.map_err(store_error)? else {
                continue;
            };
            let mut remaining = email.mailbox_ids.clone();
            remaining.remove(id);
            if remaining.is_empty() {
                tx.destroy_email(&email).await.map_err(store_error)?;
            } else {
                tx.update_email(&email, &email.keywords, &remaining)
                    .await
                    .map_err(store_error)?;
            }
        }
        tx.destroy_mailbox(id).await.map_err(store_error)?;
        all.remove(id);
        destroyed.push(id.clone());
    }
    tx.commit().await.map_err(store_error)?;
    ctx.mailboxes_changed();
    let new_state = state_of(ctx, ChangeKind::Mailbox).await?;
    let mut response = Map::new();
    response.insert("accountId".into(), json!(account_id));
    response.insert("oldState".into(), json!(old_state.to_string()));
    response.insert("newState".into(), json!(new_state.to_string()));
    for (name, value) in [
        ("created", Value::Object(created)),
        ("updated", Value::Object(updated)),
        ("notCreated", Value::Object(not_created)),
        ("notUpdated", Value::Object(not_updated)),
        ("notDestroyed", Value::Object(not_destroyed)),
    ] {
        let empty = value.as_object().is_some_and(Map::is_empty);
        response.insert(name.into(), if empty { Value::Null } else { value });
    }
    response.insert(
        "destroyed".into(),
        if destroyed.is_empty() {
            Value::Null
        } else {
            json!(destroyed)
        },
    );
    Ok(response)
}
