//! `Email/get|query|queryChanges|set|import` (RFC 8621 §4).

use std::collections::{BTreeMap, BTreeSet};

use keyscope_jmap::{CreatedIds, MethodError, MethodErrorType, SetError, SetErrorType};
use keyscope_mime::{EmailBodyPart, ParsedMessage};
use keyscope_store::{
    ChangeKind, EmailFilter, EmailRecord, EmailSort, EmailSortKey, MailTx, SearchField,
};
use serde_json::{Map, Value, json};

use super::{
    Args, Context, MethodResult, Outcome, collect_changes, get_response, invalid, max_get, max_set,
    parse_state, state_of, store_error,
};
use crate::ingest::{self, Arrival, Filing};

/// The properties `Email/get` returns when `properties` is null (RFC 8621 §4.2).
const DEFAULT_PROPERTIES: [&str; 24] = [
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

/// Properties that need the message parsed (the rest come from the stored row and summary).
const PARSED_PROPERTIES: [&str; 6] = [
    "headers",
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

const DEFAULT_BODY_PROPERTIES: [&str; 10] = [
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
];

const BODY_PROPERTIES: [&str; 12] = [
    "partId",
    "blobId",
    "size",
    "headers",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
    "subParts",
];

/// The most ids one `Email/query` returns when the client sets no smaller `limit`.
pub const MAX_QUERY_LIMIT: i64 = 1000;

fn is_email_property(property: &str) -> bool {
    DEFAULT_PROPERTIES.contains(&property)
        || PARSED_PROPERTIES.contains(&property)
        || header_property_ok(property)
}

fn header_property_ok(property: &str) -> bool {
    keyscope_mime::parse_header_property(property)
        .is_some_and(|h| keyscope_mime::form_allowed(&h.name, h.form))
}

fn bool_map<'a, I: IntoIterator<Item = &'a String>>(items: I) -> Value {
    Value::Object(
        items
            .into_iter()
            .map(|k| (k.clone(), json!(true)))
            .collect(),
    )
}

/// The body part as JSON with only the requested properties; `subParts` are kept for
/// multipart parts of the body structure.
fn part_json(part: &EmailBodyPart, blob_id: &str, properties: &[String], tree: bool) -> Value {
    let full = part.to_json();
    let mut out = Map::new();
    for property in properties {
        let value = match property.as_str() {
            "blobId" => part
                .part_id
                .as_deref()
                .map_or(Value::Null, |id| json!(ingest::part_blob_id(blob_id, id))),
            "subParts" => continue,
            name if name.starts_with("header:") => {
                match keyscope_mime::parse_header_property(name) {
                    Some(h) => part.header_property(&h.name, h.form, h.all),
                    None => continue,
                }
            }
            name => full.get(name).cloned().unwrap_or(Value::Null),
        };
        out.insert(property.clone(), value);
    }
    if tree && let Some(children) = &part.sub_parts {
        out.insert(
            "subParts".into(),
            Value::Array(
                children
                    .iter()
                    .map(|c| part_json(c, blob_id, properties, true))
                    .collect(),
            ),
        );
    }
    Value::Object(out)
}

fn text_leaves<'p>(part: &'p EmailBodyPart, out: &mut Vec<&'p str>) {
    match &part.sub_parts {
        Some(children) => children.iter().for_each(|c| text_leaves(c, out)),
        None => {
            if part.r#type.starts_with("text/")
                && let Some(id) = part.part_id.as_deref()
            {
                out.push(id);
            }
        }
    }
}

struct BodyOptions {
    properties: Vec<String>,
    text: bool,
    html: bool,
    all: bool,
    max_bytes: usize,
}

fn email_json(
    record: &EmailRecord,
    parsed: Option<&ParsedMessage>,
    properties: &[String],
    body: &BodyOptions,
) -> Value {
    let summary: Map<String, Value> = serde_json::from_str(&record.summary).unwrap_or_default();
    let mut out = Map::new();
    out.insert("id".into(), json!(record.id));
    for property in properties {
        let value = match property.as_str() {
            "id" => continue,
            "blobId" => json!(record.blob_id),
            "threadId" => json!(record.thread_id),
            "mailboxIds" => bool_map(&record.mailbox_ids),
            "keywords" => bool_map(&record.keywords),
            "size" => json!(record.size),
            "receivedAt" => json!(crate::time::utc_date(record.received_at)),
            name if super::super::ingest::SUMMARY_PROPERTIES.contains(&name) => {
                summary.get(name).cloned().unwrap_or(Value::Null)
            }
            name => {
                let Some(parsed) = parsed else {
                    continue;
                };
                match name {
                    "headers" => json!(parsed.headers),
                    "bodyStructure" => part_json(
                        &parsed.body_structure,
                        &record.blob_id,
                        &body.properties,
                        true,
                    ),
                    "textBody" | "htmlBody" | "attachments" => {
                        let parts = match name {
                            "textBody" => &parsed.text_body,
                            "htmlBody" => &parsed.html_body,
                            _ => &parsed.attachments,
                        };
                        Value::Array(
                            parts
                                .iter()
                                .map(|p| part_json(p, &record.blob_id, &body.properties, false))
                                .collect(),
                        )
                    }
                    "bodyValues" => {
                        let mut ids: Vec<&str> = Vec::new();
                        if body.all {
                            text_leaves(&parsed.body_structure, &mut ids);
                        } else {
                            if body.text {
                                ids.extend(
                                    parsed.text_body.iter().filter_map(|p| p.part_id.as_deref()),
                                );
                            }
                            if body.html {
                                ids.extend(
                                    parsed.html_body.iter().filter_map(|p| p.part_id.as_deref()),
                                );
                            }
                        }
                        parsed.body_values_json(ids, body.max_bytes)
                    }
                    header => match keyscope_mime::parse_header_property(header) {
                        Some(h) => parsed.header_property(&h.name, h.form, h.all),
                        None => continue,
                    },
                }
            }
        };
        out.insert(property.clone(), value);
    }
    Value::Object(out)
}

pub(super) async fn get(ctx: &mut Context<'_>, args: &Args) -> MethodResult {
    let properties = match args.strings("properties", 1000)? {
        Some(properties) => {
            if let Some(bad) = properties.iter().find(|p| !is_email_property(p)) {
                return Err(invalid(format!(
                    "properties: unknown or malformed property \"{}\"",
                    bad.chars().take(64).collect::<String>()
                )));
            }
            properties
        }
        None => DEFAULT_PROPERTIES.iter().map(|p| (*p).to_owned()).collect(),
    };
    let body_properties = match args.strings("bodyProperties", 100)? {
        Some(list) => {
            if let Some(bad) = list
                .iter()
                .find(|p| !BODY_PROPERTIES.contains(&p.as_str()) && !header_property_ok(p))
            {
                return Err(invalid(format!(
                    "bodyProperties: unknown property \"{}\"",
                    bad.chars().take(64).collect::<String>()
                )));
            }
            list
        }
        None => DEFAULT_BODY_PROPERTIES
            .iter()
            .map(|p| (*p).to_owned())
            .collect(),
    };
    let body = BodyOptions {
        properties: body_properties,
        text: args.bool("fetchTextBodyValues", false)?,
        html: args.bool("fetchHTMLBodyValues", false)?,
        all: args.bool("fetchAllBodyValues", false)?,
        max_bytes: usize::try_from(args.unsigned("maxBodyValueBytes")?.unwrap_or(0)).unwrap_or(0),
    };
    let ids = match args.ids(max_get(ctx), None)? {
        Some(ids) => ids,
        // `ids: null` means every email, when there are no more than maxObjectsInGet.
        None => super::all_ids(ctx, "Email").await?,
    };
    let state = state_of(ctx, ChangeKind::Email).await?;
    let store = ctx.service().store().clone();
    let account_id = ctx.account().id.clone();
    let records = store.emails(&account_id, &ids).await.map_err(store_error)?;
    let by_id: BTreeMap<&str, &EmailRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let needs_parse = properties
        .iter()
        .any(|p| PARSED_PROPERTIES.contains(&p.as_str()) || p.starts_with("header:"));
    let mut list = Vec::with_capacity(records.len());
    let mut read: Vec<&EmailRecord> = Vec::with_capacity(records.len());
    let mut not_found = Vec::new();
    for id in &ids {
        let Some(record) = by_id.get(id.as_str()) else {
            not_found.push(id.clone());
            continue;
        };
        let parsed = if needs_parse {
            let raw = store
                .blob(&account_id, &record.blob_id)
                .await
                .map_err(store_error)?;
            raw.and_then(|(raw, _)| keyscope_mime::parse_message(&raw, &ingest::mime_limits()).ok())
        } else {
            None
        };
        read.push(record);
        list.push(email_json(record, parsed.as_ref(), &properties, &body));
    }
    ctx.note_bind(read.iter().copied(), read.len()).await?;
    Ok(get_response(ctx, state, list, not_found))
}

// ----- query -----

fn unsupported_filter(description: String) -> Outcome {
    Outcome::Error(
        MethodError::new(MethodErrorType::UnsupportedFilter).with_description(description),
    )
}

fn keyword_argument(value: &Value, name: &str) -> Result<String, Outcome> {
    value
        .as_str()
        .and_then(ingest::normalize_keyword)
        .ok_or_else(|| unsupported_filter(format!("{name} must be a valid keyword")))
}

/// Most filter nodes (operators and conditions) in one filter: each becomes SQL with bind
/// parameters, and a request-sized filter must not reach the databases' parameter limits.
pub const MAX_FILTER_NODES: usize = 256;

/// Parses a JMAP filter into the store's filter, resolving nothing (mailbox ids are compared
/// as given: an id of another account simply matches nothing).
pub(crate) fn parse_filter(value: &Value, depth: usize) -> Result<EmailFilter, Outcome> {
    let mut budget = MAX_FILTER_NODES;
    parse_filter_node(value, depth, &mut budget)
}

fn parse_filter_node(
    value: &Value,
    depth: usize,
    budget: &mut usize,
) -> Result<EmailFilter, Outcome> {
    *budget = budget.checked_sub(1).ok_or_else(|| {
        unsupported_filter(format!(
            "a filter may have at most {MAX_FILTER_NODES} operators and conditions"
        ))
    })?;
    if depth > 10 {
        return Err(unsupported_filter("filters nest at most 10 deep".into()));
    }
    let Some(object) = value.as_object() else {
        return Err(invalid("a filter must be an object"));
    };
    if let Some(operator) = object.get("operator") {
        let conditions = object
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("a FilterOperator needs a conditions list"))?;
        if conditions.len() > 100 {
            return Err(unsupported_filter(
                "at most 100 conditions per operator".into(),
            ));
        }
        let parts = conditions
            .iter()
            .map(|c| parse_filter_node(c, depth + 1, budget))
            .collect::<Result<Vec<_>, _>>()?;
        return match operator.as_str() {
            Some("AND") => Ok(EmailFilter::And(parts)),
            Some("OR") => Ok(EmailFilter::Or(parts)),
            Some("NOT") => Ok(EmailFilter::Not(parts)),
            _ => Err(invalid("operator must be AND, OR or NOT")),
        };
    }
    let mut parts = Vec::new();
    for (name, value) in object {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            unsupported_filter(format!(
                "a filter may have at most {MAX_FILTER_NODES} operators and conditions"
            ))
        })?;
        let text = || {
            value
                .as_str()
                .map(str::to_lowercase)
                .filter(|t| t.len() <= 1000)
                .ok_or_else(|| invalid(format!("{name} must be a string of at most 1000 bytes")))
        };
        let date = || {
            value
                .as_str()
                .and_then(crate::time::parse_utc_date)
                .ok_or_else(|| invalid(format!("{name} must be a UTCDate")))
        };
        let size = || {
            value
                .as_u64()
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| invalid(format!("{name} must be an UnsignedInt")))
        };
        let part = match name.as_str() {
            "inMailbox" => EmailFilter::InMailbox(
                value
                    .as_str()
                    .ok_or_else(|| invalid("inMailbox must be an Id"))?
                    .to_owned(),
            ),
            "inMailboxOtherThan" => {
                let ids = value
                    .as_array()
                    .and_then(|ids| {
                        ids.iter()
                            .map(|i| i.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| invalid("inMailboxOtherThan must be a list of Ids"))?;
                // Every id is a bind parameter: they count against the filter's budget.
                *budget = budget.checked_sub(ids.len()).ok_or_else(|| {
                    unsupported_filter(format!(
                        "a filter may name at most {MAX_FILTER_NODES} mailboxes and conditions"
                    ))
                })?;
                EmailFilter::InMailboxOtherThan(ids)
            }
            "before" => EmailFilter::Before(date()?),
            "after" => EmailFilter::After(date()?),
            "minSize" => EmailFilter::MinSize(size()?),
            "maxSize" => EmailFilter::MaxSize(size()?),
            "hasKeyword" => EmailFilter::HasKeyword(keyword_argument(value, name)?),
            "notKeyword" => EmailFilter::NotKeyword(keyword_argument(value, name)?),
            "allInThreadHaveKeyword" => {
                EmailFilter::AllInThreadHaveKeyword(keyword_argument(value, name)?)
            }
            "someInThreadHaveKeyword" => {
                EmailFilter::SomeInThreadHaveKeyword(keyword_argument(value, name)?)
            }
            "noneInThreadHaveKeyword" => {
                EmailFilter::NoneInThreadHaveKeyword(keyword_argument(value, name)?)
            }
            "text" => EmailFilter::Contains(SearchField::Text, text()?),
            "from" => EmailFilter::Contains(SearchField::From, text()?),
            "to" => EmailFilter::Contains(SearchField::To, text()?),
            "cc" => EmailFilter::Contains(SearchField::Cc, text()?),
            "bcc" => EmailFilter::Contains(SearchField::Bcc, text()?),
            "subject" => EmailFilter::Contains(SearchField::Subject, text()?),
            "body" => EmailFilter::Contains(SearchField::Body, text()?),
            other => {
                return Err(unsupported_filter(format!(
                    "the filter condition {:?} is not supported",
                    other.chars().take(64).collect::<String>()
                )));
            }
        };
        parts.push(part);
    }
    Ok(match parts.len() {
        1 => parts.pop().unwrap_or(EmailFilter::And(Vec::new())),
        _ => EmailFilter::And(parts),
    })
}

pub(crate) fn parse_sort(args: &Args) -> Result<Vec<EmailSort>, Outcome> {
    let Some(value) = args.get("sort") else {
        return Ok(Vec::new());
    };
    let Some(items) = value.as_array().filter(|i| i.len() <= 10) else {
        return Err(invalid("sort must be a list of at most 10 Comparators"));
    };
    let unsupported = |description: String| {
        Outcome::Error(
            MethodError::new(MethodErrorType::UnsupportedSort).with_description(description),
        )
    };
    let mut sort = Vec::new();
    for item in items {
        let Some(object) = item.as_object() else {
            return Err(invalid("sort items must be Comparator objects"));
        };
        let property = object
            .get("property")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("a Comparator needs a property"))?;
        let ascending = match object.get("isAscending") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("isAscending must be a boolean")),
        };
        if let Some(collation) = object.get("collation").filter(|v| !v.is_null())
            && collation.as_str() != Some("i;ascii-casemap")
        {
            return Err(unsupported(
                "only the i;ascii-casemap collation is supported".into(),
            ));
        }
        let key = match property {
            "receivedAt" => EmailSortKey::ReceivedAt,
            "sentAt" => EmailSortKey::SentAt,
            "size" => EmailSortKey::Size,
            "from" => EmailSortKey::From,
            "to" => EmailSortKey::To,
            "subject" => EmailSortKey::Subject,
            "hasKeyword" => EmailSortKey::HasKeyword(
                object
                    .get("keyword")
                    .and_then(Value::as_str)
                    .and_then(ingest::normalize_keyword)
                    .ok_or_else(|| invalid("hasKeyword sorting needs a valid keyword"))?,
            ),
            other => {
                return Err(unsupported(format!(
                    "cannot sort emails by {:?}",
                    other.chars().take(64).collect::<String>()
                )));
            }
        };
        sort.push(EmailSort { key, ascending });
    }
    Ok(sort)
}

/// A page of query results.
pub(crate) struct Window {
    pub position: i64,
    pub ids: Vec<String>,
}

/// Applies `position`/`anchor`/`anchorOffset`/`limit` to a complete result list.
pub(crate) fn window(args: &Args, all: &[String]) -> Result<Window, Outcome> {
    let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
    let limit = match args.unsigned("limit")? {
        Some(n) => n.min(MAX_QUERY_LIMIT),
        None => MAX_QUERY_LIMIT,
    };
    let start = match args.string("anchor")? {
        Some(anchor) => {
            let index = all
                .iter()
                .position(|id| id == anchor)
                .ok_or_else(|| Outcome::Error(MethodError::new(MethodErrorType::AnchorNotFound)))?;
            let offset = args.int("anchorOffset")?.unwrap_or(0);
            (i64::try_from(index).unwrap_or(0) + offset).max(0)
        }
        None => {
            let position = args.int("position")?.unwrap_or(0);
            if position < 0 {
                (total + position).max(0)
            } else {
                position
            }
        }
    };
    let ids = all
        .iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(0))
        .cloned()
        .collect();
    Ok(Window {
        position: start.min(total),
        ids,
    })
}

/// Keeps the first email of each thread.
fn collapse(rows: Vec<(String, String)>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    rows.into_iter()
        .filter(|(_, thread)| seen.insert(thread.clone()))
        .map(|(id, _)| id)
        .collect()
}

fn filter_mailboxes(filter: Option<&EmailFilter>, out: &mut Vec<String>) {
    match filter {
        Some(EmailFilter::InMailbox(id)) => out.push(id.clone()),
        Some(EmailFilter::And(parts) | EmailFilter::Or(parts)) => {
            parts.iter().for_each(|p| filter_mailboxes(Some(p), out));
        }
        _ => {}
    }
}

pub(super) async fn query(ctx: &mut Context<'_>, args: &Args) -> MethodResult {
    let filter = args.get("filter").map(|f| parse_filter(f, 0)).transpose()?;
    let sort = parse_sort(args)?;
    let collapse_threads = args.bool("collapseThreads", false)?;
    let calculate_total = args.bool("calculateTotal", false)?;
    let state = state_of(ctx, ChangeKind::Email).await?;
    let store = ctx.service().store().clone();
    let account = ctx.account().id.clone();
    let position = args.int("position")?.unwrap_or(0);
    let has_anchor = args.string("anchor")?.is_some();
    let requested_limit = args.unsigned("limit")?;
    let limit = requested_limit
        .unwrap_or(MAX_QUERY_LIMIT)
        .min(MAX_QUERY_LIMIT);
    let (window, total) = if collapse_threads || has_anchor || position < 0 {
        let rows = store
            .query_emails(&account, filter.as_ref(), &sort, 0, None)
            .await
            .map_err(store_error)?;
        let all: Vec<String> = if collapse_threads {
            collapse(rows)
        } else {
            rows.into_iter().map(|(id, _)| id).collect()
        };
        let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
        (window(args, &all)?, Some(total))
    } else {
        let rows = store
            .query_emails(&account, filter.as_ref(), &sort, position, Some(limit))
            .await
            .map_err(store_error)?;
        let total = if calculate_total {
            Some(
                store
                    .count_emails(&account, filter.as_ref())
                    .await
                    .map_err(store_error)?,
            )
        } else {
            None
        };
        let ids = rows.into_iter().map(|(id, _)| id).collect();
        let position = total.map_or(position, |t| position.min(t));
        (Window { position, ids }, total)
    };
    let mut folders = Vec::new();
    filter_mailboxes(filter.as_ref(), &mut folders);
    if folders.is_empty() {
        ctx.note_sync_all().await.map_err(Outcome::Error)?;
    } else {
        ctx.note_sync(&folders).await?;
    }
    let mut response = Map::new();
    response.insert("accountId".into(), json!(account));
    response.insert("queryState".into(), json!(state.to_string()));
    response.insert("canCalculateChanges".into(), json!(!collapse_threads));
    response.insert("position".into(), json!(window.position));
    response.insert("ids".into(), json!(window.ids));
    if calculate_total && let Some(total) = total {
        response.insert("total".into(), json!(total));
    }
    if requested_limit.is_none_or(|l| l > MAX_QUERY_LIMIT) {
        response.insert("limit".into(), json!(MAX_QUERY_LIMIT));
    }
    Ok(response)
}

/// `Email/queryChanges` (RFC 8620 §5.6): every email changed since the old state is reported
/// removed, and re-added at its current index if it still matches; the RFC allows this
/// over-approximation whenever the filter or sort involves mutable properties.
pub(super) async fn query_changes(ctx: &mut Context<'_>, args: &Args) -> MethodResult {
    let filter = args.get("filter").map(|f| parse_filter(f, 0)).transpose()?;
    let sort = parse_sort(args)?;
    let since_text = args
        .string("sinceQueryState")?
        .ok_or_else(|| invalid("sinceQueryState is required"))?;
    let cannot = |why: &str| {
        Outcome::Error(
            MethodError::new(MethodErrorType::CannotCalculateChanges).with_description(why),
        )
    };
    if args.bool("collapseThreads", false)? {
        return Err(cannot(
            "changes to thread-collapsed queries are not calculated",
        ));
    }
    let max_changes = args.unsigned("maxChanges")?;
    let current = state_of(ctx, ChangeKind::Email).await?;
    let since = parse_state(since_text)
        .filter(|s| *s <= current)
        .ok_or_else(|| cannot("the query state is not one this server issued"))?;
    let cap = usize::try_from(max_changes.unwrap_or(10_000))
        .unwrap_or(10_000)
        .min(10_000);
    let delta = collect_changes(ctx, ChangeKind::Email, since, cap).await?;
    if delta.has_more {
        return Err(Outcome::Error(MethodError::new(
            MethodErrorType::TooManyChanges,
        )));
    }
    let changed: BTreeSet<String> = delta
        .created
        .iter()
        .chain(&delta.updated)
        .chain(&delta.destroyed)
        .cloned()
        .collect();
    let store = ctx.service().store().clone();
    let account = ctx.account().id.clone();
    let rows = store
        .query_emails(&account, filter.as_ref(), &sort, 0, None)
        .await
        .map_err(store_error)?;
    let mut added = Vec::new();
    for (index, (id, _)) in rows.iter().enumerate() {
        if changed.contains(id) && !delta.destroyed.contains(id) {
            added.push(json!({"id": id, "index": index}));
        }
    }
    let mut folders = Vec::new();
    filter_mailboxes(filter.as_ref(), &mut folders);
    ctx.note_sync(&folders).await?;
    let mut response = Map::new();
    response.insert("accountId".into(), json!(account));
    response.insert("oldQueryState".into(), json!(since_text));
    response.insert("newQueryState".into(), json!(delta.new_state.to_string()));
    response.insert("removed".into(), json!(changed));
    response.insert("added".into(), Value::Array(added));
    if args.bool("calculateTotal", false)? {
        response.insert("total".into(), json!(rows.len()));
    }
    Ok(response)
}

// ----- set and import -----

fn set_error_json(error: &SetError) -> Value {
    error.to_json()
}

fn not_found() -> Value {
    SetError::new(SetErrorType::NotFound).to_json()
}

/// `{id: true}` maps (keywords, mailboxIds) from a create object or a patched object.
fn true_map(value: Option<&Value>, property: &str) -> Result<BTreeSet<String>, SetError> {
    let bad = || SetError::invalid_properties([property]);
    match value {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                if v == &Value::Bool(true) {
                    Ok(k.clone())
                } else {
                    Err(bad())
                }
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

fn resolve_mailboxes(
    ids: BTreeSet<String>,
    created: &CreatedIds,
    existing: &BTreeSet<String>,
) -> Result<BTreeSet<String>, SetError> {
    let mut out = BTreeSet::new();
    for id in ids {
        let real = match id.strip_prefix('#') {
            Some(cid) => created.get(cid).cloned(),
            None => Some(id),
        };
        match real {
            Some(real) if existing.contains(&real) => {
                out.insert(real);
            }
            _ => {
                return Err(SetError::invalid_properties(["mailboxIds"])
                    .with_description("a mailbox does not exist"));
            }
        }
    }
    if out.is_empty() {
        return Err(SetError::invalid_properties(["mailboxIds"])
            .with_description("an email must be in at least one mailbox"));
    }
    Ok(out)
}

fn resolve_keywords(keywords: BTreeSet<String>) -> Result<BTreeSet<String>, SetError> {
    keywords
        .iter()
        .map(|k| {
            ingest::normalize_keyword(k).ok_or_else(|| SetError::invalid_properties(["keywords"]))
        })
        .collect()
}

/// Blob ids an Email/set create object references (attachments and body structure).
fn referenced_blobs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "blobId" {
                    if let Some(id) = child.as_str() {
                        out.insert(id.to_owned());
                    }
                } else {
                    referenced_blobs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| referenced_blobs(i, out)),
        _ => {}
    }
}

/// A blob of the account: an uploaded or message blob, or a body part of a message blob.
pub(crate) async fn account_blob(
    ctx: &Context<'_>,
    blob_id: &str,
) -> Result<Option<(Vec<u8>, String)>, Outcome> {
    let store = ctx.service().store();
    let account = &ctx.account().id;
    if let Some((message, part)) = ingest::split_part_blob_id(blob_id) {
        let Some((raw, _)) = store.blob(account, message).await.map_err(store_error)? else {
            return Ok(None);
        };
        let Ok(parsed) = keyscope_mime::parse_message(&raw, &ingest::mime_limits()) else {
            return Ok(None);
        };
        return Ok(parsed
            .part_bytes(part)
            .map(|bytes| (bytes.to_vec(), part_type(&parsed.body_structure, part))));
    }
    store.blob(account, blob_id).await.map_err(store_error)
}

fn part_type(part: &EmailBodyPart, part_id: &str) -> String {
    if part.part_id.as_deref() == Some(part_id) {
        return part.r#type.clone();
    }
    part.sub_parts
        .iter()
        .flatten()
        .map(|c| part_type(c, part_id))
        .find(|t| !t.is_empty())
        .unwrap_or_default()
}

async fn mailbox_ids_in(tx: &mut MailTx) -> Result<BTreeSet<String>, Outcome> {
    Ok(tx
        .mailboxes()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|m| m.id)
        .collect())
}

/// `receivedAt` of a create or import: as given, else `default`.
fn received_at(value: Option<&Value>, default: Arrival) -> Result<Arrival, SetError> {
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(text)) => crate::time::parse_utc_date(text)
            .map(Arrival::At)
            .ok_or_else(|| SetError::invalid_properties(["receivedAt"])),
        Some(_) => Err(SetError::invalid_properties(["receivedAt"])),
    }
}

fn created_json(record: &EmailRecord) -> Value {
    json!({
        "id": record.id,
        "blobId": record.blob_id,
        "threadId": record.thread_id,
        "size": record.size,
    })
}

pub(crate) fn set_response(
    account: &str,
    old_state: i64,
    new_state: i64,
    sections: Vec<(&str, Map<String, Value>)>,
    destroyed: Vec<String>,
) -> Map<String, Value> {
    let mut response = Map::new();
    response.insert("accountId".into(), json!(account));
    response.insert("oldState".into(), json!(old_state.to_string()));
    response.insert("newState".into(), json!(new_state.to_string()));
    for (name, map) in sections {
        response.insert(
            name.into(),
            if map.is_empty() {
                Value::Null
            } else {
                Value::Object(map)
            },
        );
    }
    if !destroyed.is_empty() || response.contains_key("notDestroyed") {
        response.insert(
            "destroyed".into(),
            if destroyed.is_empty() {
                Value::Null
            } else {
                json!(destroyed)
            },
        );
    }
    response
}

/// Applies one update patch to an email (only `keywords` and `mailboxIds` are mutable).
pub(crate) fn patched_email(
    current: &EmailRecord,
    patch: &Map<String, Value>,
    created: &CreatedIds,
    mailboxes: &BTreeSet<String>,
) -> Result<(BTreeSet<String>, BTreeSet<String>), SetError> {
    let parsed = keyscope_jmap::PatchObject::parse(patch)?;
    if let Some(bad) = parsed
        .properties()
        .into_iter()
        .find(|p| *p != "keywords" && *p != "mailboxIds")
    {
        return Err(SetError::invalid_properties([bad]));
    }
    let mut object = Map::new();
    object.insert("keywords".into(), bool_map(&current.keywords));
    object.insert("mailboxIds".into(), bool_map(&current.mailbox_ids));
    let patched = parsed.apply(&object)?;
    // A removed whole property means the empty set.
    let keywords = resolve_keywords(true_map(patched.get("keywords"), "keywords")?)?;
    let mailbox_ids = resolve_mailboxes(
        true_map(patched.get("mailboxIds"), "mailboxIds")?,
        created,
        mailboxes,
    )?;
    Ok((keywords, mailbox_ids))
}

pub(super) async fn set(
    ctx: &mut Context<'_>,
    args: &Args,
    created_ids: &mut CreatedIds,
) -> MethodResult {
    let store = ctx.service().store().clone();
    let account = ctx.account().id.clone();
    let super::SetRequest {
        old_state,
        create,
        update,
        destroy,
    } = super::set_request(ctx, args, ChangeKind::Email).await?;
    // Blobs the creates reference are fetched before the transaction.
    let mut wanted = BTreeSet::new();
    for object in create.values() {
        referenced_blobs(object, &mut wanted);
    }
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for id in wanted.into_iter().take(100) {
        if let Some((data, _)) = account_blob(ctx, &id).await? {
            blobs.insert(id, data);
        }
    }
    let domain = ctx.service().config().mail_domain.clone();
    let mut tx = store.begin_mail(&account).await.map_err(store_error)?;
    let mailboxes = mailbox_ids_in(&mut tx).await?;
    let mut created = Map::new();
    let mut not_created = Map::new();
    for (creation_id, object) in &create {
        let Some(object) = object.as_object() else {
            not_created.insert(
                creation_id.clone(),
                set_error_json(&SetError::invalid_properties(Vec::<String>::new())),
            );
            continue;
        };
        let prepared = filing_of(
            object,
            created_ids,
            &mailboxes,
            Arrival::At(crate::unix_now()),
        )
        .and_then(|filing| {
            let lookup = |id: &str| blobs.get(id).cloned();
            let raw = keyscope_mime::build_message(
                object,
                &lookup,
                &crate::time::utc_date(crate::unix_now()),
                &domain,
            )
            .map_err(build_error)?;
            Ok((raw, filing))
        });
        let outcome = match prepared {
            // A message we built that does not parse is a property problem.
            Ok((raw, filing)) => {
                file_created(
                    &mut tx,
                    &raw,
                    &filing,
                    SetError::invalid_properties(Vec::<String>::new()),
                )
                .await?
            }
            Err(e) => Err(e),
        };
        record_creation(
            creation_id,
            outcome,
            created_ids,
            &mut created,
            &mut not_created,
        );
    }
    let changed = update_and_destroy(&mut tx, &update, &destroy, created_ids, &mailboxes).await?;
    tx.commit().await.map_err(store_error)?;
    ctx.changed.insert(account.clone());
    let new_state = state_of(ctx, ChangeKind::Email).await?;
    Ok(set_response(
        &account,
        old_state,
        new_state,
        vec![
            ("created", created),
            ("updated", changed.updated),
            ("notCreated", not_created),
            ("notUpdated", changed.not_updated),
            ("notDestroyed", changed.not_destroyed),
        ],
        changed.destroyed,
    ))
}

/// Where and how a created or imported email is filed: `mailboxIds`, `keywords`,
/// `receivedAt` (else `default`).
fn filing_of(
    object: &Map<String, Value>,
    created_ids: &CreatedIds,
    mailboxes: &BTreeSet<String>,
    default: Arrival,
) -> Result<Filing, SetError> {
    Ok(Filing {
        mailbox_ids: resolve_mailboxes(
            true_map(object.get("mailboxIds"), "mailboxIds")?,
            created_ids,
            mailboxes,
        )?,
        keywords: resolve_keywords(true_map(object.get("keywords"), "keywords")?)?,
        arrival: received_at(object.get("receivedAt"), default)?,
    })
}

/// Files one created or imported message; a message that cannot be parsed is `unparsable`
/// (with the parser's description), any other failure fails the method.
async fn file_created(
    tx: &mut MailTx,
    raw: &[u8],
    filing: &Filing,
    unparsable: SetError,
) -> Result<Result<EmailRecord, SetError>, Outcome> {
    match ingest::file_message(tx, raw, filing).await {
        Ok(record) => Ok(Ok(record)),
        Err(crate::MailError::Mime(e)) => Ok(Err(unparsable.with_description(e.to_string()))),
        Err(e) => Err(mail_error(e)),
    }
}

/// Adds one creation's outcome to `created` (and the request's creation ids) or
/// `notCreated`.
fn record_creation(
    creation_id: &str,
    outcome: Result<EmailRecord, SetError>,
    created_ids: &mut CreatedIds,
    created: &mut Map<String, Value>,
    not_created: &mut Map<String, Value>,
) {
    match outcome {
        Ok(record) => {
            created_ids.insert(creation_id.to_owned(), record.id.clone());
            created.insert(creation_id.to_owned(), created_json(&record));
        }
        Err(e) => {
            not_created.insert(creation_id.to_owned(), e.to_json());
        }
    }
}

/// What the update and destroy parts of an `Email/set` did.
pub(crate) struct Changed {
    pub updated: Map<String, Value>,
    pub not_updated: Map<String, Value>,
    pub destroyed: Vec<String>,
    pub not_destroyed: Map<String, Value>,
}

/// Applies `Email/set` updates (keyword and mailbox patches) and destroys in `tx`: shared by
/// `Email/set` and the implicit `Email/set` of `EmailSubmission/set`.
pub(crate) async fn update_and_destroy(
    tx: &mut MailTx,
    update: &Map<String, Value>,
    destroy: &[String],
    created_ids: &CreatedIds,
    mailboxes: &BTreeSet<String>,
) -> Result<Changed, Outcome> {
    let mut changed = Changed {
        updated: Map::new(),
        not_updated: Map::new(),
        destroyed: Vec::new(),
        not_destroyed: Map::new(),
    };
    for (id, patch) in update {
        let Some(current) = tx.email(id).await.map_err(store_error)? else {
            changed.not_updated.insert(id.clone(), not_found());
            continue;
        };
        let result = patch
            .as_object()
            .ok_or_else(|| SetError::invalid_patch("not an object"))
            .and_then(|p| patched_email(&current, p, created_ids, mailboxes));
        match result {
            Ok((keywords, mailbox_ids)) => {
                tx.update_email(&current, &keywords, &mailbox_ids)
                    .await
                    .map_err(store_error)?;
                changed.updated.insert(id.clone(), Value::Null);
            }
            Err(e) => {
                changed.not_updated.insert(id.clone(), e.to_json());
            }
        }
    }
    for id in destroy {
        match tx.email(id).await.map_err(store_error)? {
            Some(current) => {
                tx.destroy_email(&current).await.map_err(store_error)?;
                changed.destroyed.push(id.clone());
            }
            None => {
                changed.not_destroyed.insert(id.clone(), not_found());
            }
        }
    }
    Ok(changed)
}

fn build_error(error: keyscope_mime::BuildError) -> SetError {
    let description = error.to_string();
    match error {
        keyscope_mime::BuildError::InvalidProperties { properties, .. } => {
            SetError::invalid_properties(properties)
        }
        keyscope_mime::BuildError::BlobNotFound { blob_ids } => {
            SetError::new(SetErrorType::Other("blobNotFound".into()))
                .with_member("notFound", json!(blob_ids))
        }
        keyscope_mime::BuildError::TooLarge { .. } => SetError::new(SetErrorType::TooLarge),
    }
    .with_description(description)
}

pub(crate) fn mail_error(error: crate::MailError) -> Outcome {
    match error {
        crate::MailError::Store(e) => store_error(e),
        other => {
            tracing::error!(error = %other, "mail failure");
            Outcome::Error(MethodError::server_fail("the mail service failed"))
        }
    }
}

pub(super) async fn import(
    ctx: &mut Context<'_>,
    args: &Args,
    created_ids: &mut CreatedIds,
) -> MethodResult {
    let store = ctx.service().store().clone();
    let account = ctx.account().id.clone();
    let old_state = super::check_if_in_state(ctx, args, ChangeKind::Email).await?;
    let emails = args
        .object("emails")?
        .cloned()
        .ok_or_else(|| invalid("emails is required"))?;
    if emails.len() > max_set(ctx) {
        return Err(Outcome::Error(MethodError::request_too_large(
            "too many emails in one Email/import",
        )));
    }
    let mut raws: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for object in emails.values() {
        if let Some(id) = object.get("blobId").and_then(Value::as_str)
            && !raws.contains_key(id)
        {
            let blob = account_blob(ctx, id).await?.map(|(data, _)| data);
            raws.insert(id.to_owned(), blob);
        }
    }
    let mut tx = store.begin_mail(&account).await.map_err(store_error)?;
    let mailboxes = mailbox_ids_in(&mut tx).await?;
    let mut created = Map::new();
    let mut not_created = Map::new();
    for (creation_id, object) in &emails {
        let prepared = object
            .as_object()
            .ok_or_else(|| SetError::invalid_properties(Vec::<String>::new()))
            .and_then(|object| {
                let blob_id = object
                    .get("blobId")
                    .and_then(Value::as_str)
                    .ok_or_else(|| SetError::invalid_properties(["blobId"]))?;
                let raw = raws.get(blob_id).cloned().flatten().ok_or_else(|| {
                    SetError::new(SetErrorType::Other("blobNotFound".into()))
                        .with_member("notFound", json!([blob_id]))
                })?;
                let filing = filing_of(object, created_ids, &mailboxes, Arrival::LastReceived)?;
                Ok((raw, filing))
            });
        let outcome = match prepared {
            // An uploaded blob that does not parse is not an email (RFC 8621 §4.8).
            Ok((raw, filing)) => {
                let invalid_email = SetError::new(SetErrorType::Other("invalidEmail".into()));
                file_created(&mut tx, &raw, &filing, invalid_email).await?
            }
            Err(e) => Err(e),
        };
        record_creation(
            creation_id,
            outcome,
            created_ids,
            &mut created,
            &mut not_created,
        );
    }
    tx.commit().await.map_err(store_error)?;
    ctx.changed.insert(account.clone());
    let new_state = state_of(ctx, ChangeKind::Email).await?;
    let mut response = set_response(
        &account,
        old_state,
        new_state,
        vec![("created", created), ("notCreated", not_created)],
        Vec::new(),
    );
    response.remove("destroyed");
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn args(value: Value) -> Args {
        Args(value.as_object().cloned().unwrap())
    }

    #[test]
    fn filters_parse_into_store_filters() {
        let filter = parse_filter(
            &json!({"operator": "AND", "conditions": [
                {"inMailbox": "m1", "hasKeyword": "$Seen"},
                {"operator": "NOT", "conditions": [{"subject": "Hello"}]}
            ]}),
            0,
        )
        .ok()
        .unwrap();
        assert_eq!(
            filter,
            EmailFilter::And(vec![
                EmailFilter::And(vec![
                    EmailFilter::HasKeyword("$seen".into()),
                    EmailFilter::InMailbox("m1".into()),
                ]),
                EmailFilter::Not(vec![EmailFilter::Contains(
                    SearchField::Subject,
                    "hello".into()
                )]),
            ])
        );
    }

    #[test]
    fn unknown_filters_and_sorts_are_refused_with_their_error() {
        let error = |o: Outcome| match o {
            Outcome::Error(e) => e.type_,
        };
        assert_eq!(
            error(
                parse_filter(&json!({"header": ["X-Foo"]}), 0)
                    .err()
                    .unwrap()
            ),
            MethodErrorType::UnsupportedFilter
        );
        assert_eq!(
            error(
                parse_filter(&json!({"before": "yesterday"}), 0)
                    .err()
                    .unwrap()
            ),
            MethodErrorType::InvalidArguments
        );
        assert_eq!(
            error(
                parse_sort(&args(json!({"sort": [{"property": "color"}]})))
                    .err()
                    .unwrap()
            ),
            MethodErrorType::UnsupportedSort
        );
    }

    #[test]
    fn oversized_filters_are_refused_before_any_sql() {
        let leaf = json!({"subject": "x"});
        let wide = json!({"operator": "OR", "conditions": vec![leaf.clone(); 100]});
        let tree = json!({"operator": "AND", "conditions": [wide.clone(), wide.clone(), wide]});
        let Err(Outcome::Error(error)) = parse_filter(&tree, 0) else {
            panic!("a 300-condition filter was accepted");
        };
        assert_eq!(error.type_, MethodErrorType::UnsupportedFilter);
        let small = json!({"operator": "OR", "conditions": vec![leaf; 100]});
        assert!(parse_filter(&small, 0).is_ok());
    }

    #[test]
    fn windows() {
        let all: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let w = window(&args(json!({"position": -3, "limit": 2})), &all)
            .ok()
            .unwrap();
        assert_eq!(
            (w.position, w.ids),
            (7, vec!["7".to_owned(), "8".to_owned()])
        );
        let w = window(
            &args(json!({"anchor": "4", "anchorOffset": -1, "limit": 2})),
            &all,
        )
        .ok()
        .unwrap();
        assert_eq!(
            (w.position, w.ids),
            (3, vec!["3".to_owned(), "4".to_owned()])
        );
        assert!(window(&args(json!({"anchor": "x"})), &all).is_err());
        let w = window(&args(json!({"position": 50})), &all).ok().unwrap();
        assert_eq!((w.position, w.ids.len()), (10, 0));
    }

    #[test]
    fn patches_touch_only_keywords_and_mailboxes() {
        let current = EmailRecord {
            id: "e1".into(),
            blob_id: "G".into(),
            thread_id: "t".into(),
            message_id: None,
            received_at: 0,
            sent_at: None,
            size: 1,
            keywords: BTreeSet::new(),
            mailbox_ids: BTreeSet::from(["m1".to_owned()]),
            summary: "{}".into(),
        };
        let mailboxes = BTreeSet::from(["m1".to_owned(), "m2".to_owned()]);
        let created = CreatedIds::new();
        let patch = json!({"keywords/$seen": true, "mailboxIds/m2": true, "mailboxIds/m1": null});
        let (k, m) =
            patched_email(&current, patch.as_object().unwrap(), &created, &mailboxes).unwrap();
        assert_eq!(k, BTreeSet::from(["$seen".to_owned()]));
        assert_eq!(m, BTreeSet::from(["m2".to_owned()]));
        let bad = json!({"subject": "x"});
        assert!(patched_email(&current, bad.as_object().unwrap(), &created, &mailboxes).is_err());
        let empty = json!({"mailboxIds": {}});
        assert!(patched_email(&current, empty.as_object().unwrap(), &created, &mailboxes).is_err());
        let other = json!({"mailboxIds/elsewhere": true});
        assert!(patched_email(&current, other.as_object().unwrap(), &created, &mailboxes).is_err());
    }
}
