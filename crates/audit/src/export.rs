//! Search filters and export mappings for acknowledged records. Pure: no I/O; the records
//! come from [`crate::read_records`].
//!
//! Two shapes go out:
//!
//! * the stored record itself (`jsonl`, and `search --json`), with its `seq` and `prev`;
//! * a Microsoft 365 Unified Audit Log record (the `AuditData` object), for the operations that
//!   have a UAL equivalent ([`to_ual`]): `MailItemsAccessed`, `Send` and `SignIn`. Every other
//!   operation is skipped, never invented.

use aws_lc_rs::digest::{SHA256, digest};
use serde_json::{Map, Value, json};

use crate::event::{format_time, parse_time};

/// What `search` (and `export --since/--until`) keeps. An empty list matches everything; a
/// list with entries means "any of".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `Operation`, compared exactly.
    pub operations: Vec<String>,
    /// `UserId`, compared case-insensitively.
    pub users: Vec<String>,
    /// `OrganizationId`, compared exactly.
    pub tenants: Vec<String>,
    /// `CreationTime` at or after this (microseconds since the epoch).
    pub since: Option<i64>,
    /// `CreationTime` strictly before this (microseconds since the epoch).
    pub until: Option<i64>,
}

impl Filter {
    /// Whether a record passes every condition. With a time bound, a record without a valid
    /// `CreationTime` does not match.
    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        let text = |name: &str| record.get(name).and_then(Value::as_str);
        if !self.operations.is_empty()
            && !text("Operation").is_some_and(|op| self.operations.iter().any(|o| o == op))
        {
            return false;
        }
        if !self.users.is_empty() {
            let Some(user) = text("UserId").map(str::to_lowercase) else {
                return false;
            };
            if !self.users.iter().any(|u| u.to_lowercase() == user) {
                return false;
            }
        }
        if !self.tenants.is_empty()
            && !text("OrganizationId").is_some_and(|t| self.tenants.iter().any(|x| x == t))
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(time) = text("CreationTime").and_then(parse_time) else {
                return false;
            };
            if self.since.is_some_and(|since| time < since)
                || self.until.is_some_and(|until| time >= until)
            {
                return false;
            }
        }
        true
    }
}

/// Parses a `--since`/`--until` bound: RFC 3339 UTC as [`parse_time`] accepts it, or a bare
/// date `YYYY-MM-DD` meaning midnight UTC. Microseconds since the epoch.
pub fn parse_time_bound(text: &str) -> Option<i64> {
    if text.len() == 10 {
        return parse_time(&format!("{text}T00:00:00Z"));
    }
    parse_time(text)
}

/// Formats a time the way the UAL writes `CreationTime`: `YYYY-MM-DDTHH:MM:SS`, UTC, without
/// fraction or zone designator.
pub fn ual_time(micros: i64) -> String {
    let full = format_time(micros);
    match full.split_once('.') {
        Some((seconds, _)) => seconds.to_owned(),
        None => full,
    }
}

/// The UAL `Id` of record `seq` in the log whose audit key is `kid`: the first 16 bytes of
/// SHA-256 over a domain-separated statement of both, as a UUID with version 5 and the
/// RFC 4122 variant. The same record always gets the same `Id`; records of different logs
/// (different audit keys) do not collide.
pub fn ual_id(kid: &str, seq: u64) -> String {
    let statement = format!("keyscope-audit-ual-id/v1\n{kid}\n{seq}\n");
    let hash = digest(&SHA256, statement.as_bytes());
    let mut bytes = [0u8; 16];
    for (to, from) in bytes.iter_mut().zip(hash.as_ref()) {
        *to = *from;
    }
    if let Some(byte) = bytes.get_mut(6) {
        *byte = (*byte & 0x0f) | 0x50;
    }
    if let Some(byte) = bytes.get_mut(8) {
        *byte = (*byte & 0x3f) | 0x80;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let part = |range: std::ops::Range<usize>| hex.get(range).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

/// UAL `RecordType` of Exchange mailbox item access (`MailItemsAccessed`).
pub const RECORD_TYPE_MAIL_ITEMS_ACCESSED: u64 = 50;
/// UAL `RecordType` of Exchange item operations (`Send`).
pub const RECORD_TYPE_EXCHANGE_ITEM: u64 = 2;
/// UAL `RecordType` of Entra ID sign-ins (`UserLoggedIn`, `UserLoginFailed`).
pub const RECORD_TYPE_AZURE_AD_STS_LOGON: u64 = 15;

/// Members of an Exchange UAL record that Keyscope events may carry under the same name; they
/// are copied to the top level of the UAL record as they are.
const EXCHANGE_FIELDS: [&str; 18] = [
    "AppId",
    "ClientAppId",
    "ClientInfoString",
    "ClientProcessName",
    "ClientVersion",
    "ExternalAccess",
    "Folders",
    "InternalLogonType",
    "Item",
    "LogonType",
    "LogonUserSid",
    "MailboxGuid",
    "MailboxOwnerSid",
    "MailboxOwnerUPN",
    "OperationCount",
    "OrganizationName",
    "OriginatingServer",
    "SessionId",
];

/// Members every UAL record has that come from the event (or are not copied at all).
const COMMON_FIELDS: [&str; 6] = [
    "Operation",
    "CreationTime",
    "OrganizationId",
    "UserId",
    "ResultStatus",
    "ClientIPAddress",
];

/// Members of a stored record that belong to the log, not to the event (`prev` is the hash
/// link; it means nothing outside the log). `seq` is kept, in `OperationProperties`.
const LOG_FIELDS: [&str; 1] = ["prev"];

/// Maps one stored record to a UAL `AuditData` record, or `None` when its operation has no UAL
/// equivalent (or the record has no `seq` or valid `CreationTime`).
///
/// * `MailItemsAccessed` → `MailItemsAccessed`, RecordType 50, Workload `Exchange`;
///   `MailAccessType` goes into `OperationProperties`.
/// * `Send` → `Send`, RecordType 2, Workload `Exchange`.
/// * `SignIn` → `UserLoggedIn` when `ResultStatus` is absent or `Success`/`Succeeded`,
///   `UserLoginFailed` otherwise; RecordType 15, Workload `AzureActiveDirectory`.
///
/// Every record gets `CreationTime` (UAL format, see [`ual_time`]), `Id` ([`ual_id`]),
/// `RecordType`, `Workload`, `UserType` 0, `Version` 1, `ResultStatus` (`Succeeded`/`Failed`;
/// `Succeeded` when the event has none), and, when the event has them, `OrganizationId`,
/// `UserId` with `UserKey` = `UserId`, and `ClientIPAddress` with `ClientIP` = it. Exchange
/// records also carry the event's members that the UAL has under the same name (`Folders`,
/// `OperationCount`, `MailboxOwnerUPN`, `ClientInfoString`, `AppId`, `ClientAppId`,
/// `SessionId`, …). Every other member of the event (`TokenId`, `KeyId`, `Issuer`, `Reason`,
/// the log's `seq`, anything else) goes into `OperationProperties` as a `{"Name","Value"}`
/// entry with a string value (non-strings as their JSON text), so nothing is lost.
pub fn to_ual(record: &Map<String, Value>, kid: &str) -> Option<Map<String, Value>> {
    let text = |name: &str| record.get(name).and_then(Value::as_str);
    let seq = record.get("seq").and_then(Value::as_u64)?;
    let time = text("CreationTime").and_then(parse_time)?;
    let status = text("ResultStatus");
    let (operation, record_type, workload, exchange) = match text("Operation")? {
        "MailItemsAccessed" => (
            "MailItemsAccessed",
            RECORD_TYPE_MAIL_ITEMS_ACCESSED,
            "Exchange",
            true,
        ),
        "Send" => ("Send", RECORD_TYPE_EXCHANGE_ITEM, "Exchange", true),
        "SignIn" => {
            let succeeded = status.is_none_or(|s| ual_status(s) == "Succeeded");
            let operation = if succeeded {
                "UserLoggedIn"
            } else {
                "UserLoginFailed"
            };
            (
                operation,
                RECORD_TYPE_AZURE_AD_STS_LOGON,
                "AzureActiveDirectory",
                false,
            )
        }
        _ => return None,
    };

    let mut out = Map::new();
    out.insert("CreationTime".to_owned(), json!(ual_time(time)));
    out.insert("Id".to_owned(), json!(ual_id(kid, seq)));
    out.insert("Operation".to_owned(), json!(operation));
    if let Some(tenant) = record.get("OrganizationId") {
        out.insert("OrganizationId".to_owned(), tenant.clone());
    }
    out.insert("RecordType".to_owned(), json!(record_type));
    out.insert(
        "ResultStatus".to_owned(),
        json!(status.map_or("Succeeded", ual_status)),
    );
    if let Some(user) = record.get("UserId") {
        out.insert("UserKey".to_owned(), user.clone());
    }
    out.insert("UserType".to_owned(), json!(0));
    out.insert("Version".to_owned(), json!(1));
    out.insert("Workload".to_owned(), json!(workload));
    if let Some(user) = record.get("UserId") {
        out.insert("UserId".to_owned(), user.clone());
    }
    if let Some(ip) = record.get("ClientIPAddress") {
        out.insert("ClientIP".to_owned(), ip.clone());
        out.insert("ClientIPAddress".to_owned(), ip.clone());
    }

    let mut properties = Vec::new();
    if let Some(access) = record.get("MailAccessType") {
        properties.push(property("MailAccessType", access));
    }
    for (name, value) in record {
        let name = name.as_str();
        if COMMON_FIELDS.contains(&name) || LOG_FIELDS.contains(&name) || name == "MailAccessType" {
            continue;
        }
        if exchange && EXCHANGE_FIELDS.contains(&name) {
            out.insert(name.to_owned(), value.clone());
        } else {
            properties.push(property(name, value));
        }
    }
    if !properties.is_empty() {
        out.insert("OperationProperties".to_owned(), Value::Array(properties));
    }
    Some(out)
}

/// The UAL spelling of a result: `Succeeded` and `Failed` (from `Success`/`Succeeded` and
/// `Failure`/`Failed`, any case); anything else is kept as it is.
fn ual_status(status: &str) -> &str {
    if status.eq_ignore_ascii_case("success") || status.eq_ignore_ascii_case("succeeded") {
        "Succeeded"
    } else if status.eq_ignore_ascii_case("failure") || status.eq_ignore_ascii_case("failed") {
        "Failed"
    } else {
        status
    }
}

/// A UAL `OperationProperties` entry; the value is always a string.
fn property(name: &str, value: &Value) -> Value {
    let value = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    json!({ "Name": name, "Value": value })
}

/// The columns of the human `search` table.
pub const TABLE_COLUMNS: [&str; 7] = [
    "seq",
    "CreationTime",
    "Operation",
    "OrganizationId",
    "UserId",
    "AppId",
    "ClientIPAddress",
];

/// One row of the human table: the [`TABLE_COLUMNS`] of a record, `-` for a missing value,
/// control characters escaped so that a value cannot break the layout.
pub fn table_row(record: &Map<String, Value>) -> Vec<String> {
    TABLE_COLUMNS
        .iter()
        .map(|column| match record.get(*column) {
            None | Some(Value::Null) => "-".to_owned(),
            Some(Value::String(text)) if text.is_empty() => "-".to_owned(),
            Some(Value::String(text)) => printable(text),
            Some(other) => printable(&other.to_string()),
        })
        .collect()
}

fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The human table: a header of [`TABLE_COLUMNS`], one line per row, columns padded to a
/// common width and separated by two spaces (no trailing spaces), and a final line
/// `N records`. Every line ends with a newline.
pub fn format_table(rows: &[Vec<String>]) -> String {
    let mut out = format_columns(&TABLE_COLUMNS, rows);
    out.push_str(&format!("{} records\n", rows.len()));
    out
}

/// Aligned columns under `header`: cells padded to a common width, separated by two spaces,
/// no trailing spaces, every line ending with a newline. Cells should already be printable
/// (see [`printable_cell`]).
pub fn format_columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|c| (*c).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A value made safe for a terminal table: control characters escaped, `-` when empty.
pub fn printable_cell(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        printable(text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    const KID: &str = "audit-2026";

    fn record(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn mail_access() -> Map<String, Value> {
        record(json!({
            "Operation": "MailItemsAccessed",
            "CreationTime": "2026-11-22T14:52:01.123456Z",
            "OrganizationId": "contoso-tid",
            "UserId": "Alice@Contoso.example",
            "AppId": "app-1",
            "ClientAppId": "client-app-1",
            "ClientIPAddress": "203.0.113.7",
            "ClientInfoString": "Client=REST",
            "SessionId": "session-1",
            "MailboxOwnerUPN": "bob@contoso.example",
            "MailAccessType": "Bind",
            "OperationCount": 3,
            "Folders": [{"Path": "\\Inbox", "FolderItems": [{"InternetMessageId": "<m1@x>"}]}],
            "TokenId": "jti-1",
            "KeyId": "kid-1",
            "Issuer": "https://ks.example/t/contoso",
            "ResultStatus": "Success",
            "seq": 7,
            "prev": "AAAA",
        }))
    }

    fn properties(ual: &Map<String, Value>) -> Vec<(String, String)> {
        ual.get("OperationProperties")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        assert_eq!(e.as_object().unwrap().len(), 2, "{e}");
                        (
                            e["Name"].as_str().unwrap().to_owned(),
                            e["Value"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn property_value(ual: &Map<String, Value>, name: &str) -> Option<String> {
        properties(ual)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    #[test]
    fn mail_items_accessed_maps_to_record_type_50() {
        let source = mail_access();
        let ual = to_ual(&source, KID).unwrap();
        assert_eq!(ual["Operation"], "MailItemsAccessed");
        assert_eq!(ual["RecordType"], 50);
        assert_eq!(ual["Workload"], "Exchange");
        assert_eq!(ual["CreationTime"], "2026-11-22T14:52:01");
        assert_eq!(ual["Id"], ual_id(KID, 7));
        assert_eq!(ual["OrganizationId"], "contoso-tid");
        assert_eq!(ual["UserId"], "Alice@Contoso.example");
        assert_eq!(ual["UserKey"], "Alice@Contoso.example");
        assert_eq!(ual["UserType"], 0);
        assert_eq!(ual["Version"], 1);
        assert_eq!(ual["ResultStatus"], "Succeeded");
        assert_eq!(ual["ClientIP"], "203.0.113.7");
        assert_eq!(ual["ClientIPAddress"], "203.0.113.7");
        for field in [
            "AppId",
            "ClientAppId",
            "ClientInfoString",
            "SessionId",
            "MailboxOwnerUPN",
            "OperationCount",
            "Folders",
        ] {
            assert_eq!(ual[field], source[field], "{field}");
        }
        // Keyscope's own fields and the log's seq are kept as string properties; the hash link
        // and MailAccessType never appear at the top level.
        assert_eq!(
            properties(&ual),
            [
                ("MailAccessType", "Bind"),
                ("Issuer", "https://ks.example/t/contoso"),
                ("KeyId", "kid-1"),
                ("TokenId", "jti-1"),
                ("seq", "7"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        for absent in [
            "MailAccessType",
            "TokenId",
            "KeyId",
            "Issuer",
            "seq",
            "prev",
        ] {
            assert!(!ual.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn send_maps_to_record_type_2() {
        let source = record(json!({
            "Operation": "Send",
            "CreationTime": "2026-01-02T03:04:05Z",
            "OrganizationId": "contoso-tid",
            "UserId": "alice@contoso.example",
            "ClientIPAddress": "198.51.100.1",
            "SessionId": "s-2",
            "ResultStatus": "Failure",
            "Reason": "bad_signature",
            "seq": 2,
            "prev": "x",
        }));
        let ual = to_ual(&source, KID).unwrap();
        assert_eq!(ual["Operation"], "Send");
        assert_eq!(ual["RecordType"], 2);
        assert_eq!(ual["Workload"], "Exchange");
        assert_eq!(ual["CreationTime"], "2026-01-02T03:04:05");
        assert_eq!(ual["ResultStatus"], "Failed");
        assert_eq!(ual["SessionId"], "s-2");
        assert_eq!(ual["ClientIP"], "198.51.100.1");
        assert_eq!(
            property_value(&ual, "Reason").as_deref(),
            Some("bad_signature")
        );
        assert_eq!(property_value(&ual, "seq").as_deref(), Some("2"));
    }

    #[test]
    fn sign_in_maps_by_result() {
        let sign_in = |status: Option<&str>| {
            let mut source = record(json!({
                "Operation": "SignIn",
                "CreationTime": "2026-11-22T14:52:01.999999Z",
                "OrganizationId": "contoso-tid",
                "UserId": "alice@contoso.example",
                "AppId": "app-9",
                "TokenId": "jti-9",
                "seq": 9,
            }));
            if let Some(status) = status {
                source.insert("ResultStatus".to_owned(), json!(status));
            }
            to_ual(&source, KID).unwrap()
        };
        for (status, operation, result) in [
            (None, "UserLoggedIn", "Succeeded"),
            (Some("Success"), "UserLoggedIn", "Succeeded"),
            (Some("Succeeded"), "UserLoggedIn", "Succeeded"),
            (Some("Failure"), "UserLoginFailed", "Failed"),
            (Some("Failed"), "UserLoginFailed", "Failed"),
            (Some("Interrupted"), "UserLoginFailed", "Interrupted"),
        ] {
            let ual = sign_in(status);
            assert_eq!(ual["Operation"], operation, "{status:?}");
            assert_eq!(ual["ResultStatus"], result, "{status:?}");
            assert_eq!(ual["RecordType"], 15);
            assert_eq!(ual["Workload"], "AzureActiveDirectory");
            // Never rounded up: the fraction is cut.
            assert_eq!(ual["CreationTime"], "2026-11-22T14:52:01");
            // AppId is not a member of UAL sign-in records: it is kept as a property.
            assert!(!ual.contains_key("AppId"));
            assert_eq!(property_value(&ual, "AppId").as_deref(), Some("app-9"));
            assert_eq!(property_value(&ual, "TokenId").as_deref(), Some("jti-9"));
            assert!(!ual.contains_key("ClientIP"), "no address, no ClientIP");
        }
    }

    #[test]
    fn operations_without_a_ual_equivalent_are_skipped() {
        for operation in [
            "TokenIssued",
            "TokenValidated",
            "KeyCreated",
            "KeyActivated",
            "KeyRetired",
            "KeyRevoked",
            "AdminAction",
            "Alert",
            "AuditCheckpoint",
            "AuditPruned",
            "SomethingElse",
            "signin",
        ] {
            let source = record(json!({
                "Operation": operation,
                "CreationTime": "2026-11-22T14:52:01Z",
                "UserId": "alice",
                "seq": 1,
            }));
            assert_eq!(to_ual(&source, KID), None, "{operation}");
        }
        // A record the log did not number, or without a valid time, is not exported either.
        let mut no_seq = mail_access();
        no_seq.remove("seq");
        assert_eq!(to_ual(&no_seq, KID), None);
        let mut bad_time = mail_access();
        bad_time.insert("CreationTime".to_owned(), json!("yesterday"));
        assert_eq!(to_ual(&bad_time, KID), None);
        let mut no_operation = mail_access();
        no_operation.remove("Operation");
        assert_eq!(to_ual(&no_operation, KID), None);
    }

    #[test]
    fn ual_time_format() {
        assert_eq!(ual_time(0), "1970-01-01T00:00:00");
        assert_eq!(ual_time(1_795_358_882_123_456), "2026-11-22T14:48:02");
        assert_eq!(ual_time(-1), "1969-12-31T23:59:59");
        let text = ual_time(parse_time("2000-02-29T23:59:59.999999Z").unwrap());
        assert_eq!(text, "2000-02-29T23:59:59");
    }

    #[test]
    fn ual_ids_are_deterministic_uuids() {
        let id = ual_id(KID, 1);
        assert_eq!(id, ual_id(KID, 1), "deterministic");
        assert_ne!(id, ual_id(KID, 2), "per record");
        assert_ne!(id, ual_id("another-kid", 1), "per log");
        // "a" + seq 11 and "a1" + seq 1 must not collide.
        assert_ne!(ual_id("a", 11), ual_id("a1", 1));
        let mut seen = std::collections::BTreeSet::new();
        for seq in 1..=1000 {
            let id = ual_id(KID, seq);
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(
                id.chars()
                    .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{id}"
            );
            assert!(groups[2].starts_with('5'), "version 5: {id}");
            assert!(
                groups[3].starts_with(['8', '9', 'a', 'b']),
                "RFC 4122 variant: {id}"
            );
            assert!(seen.insert(id));
        }
        // Pinned, so that a change of derivation is noticed (Ids must stay stable across
        // releases: analysts deduplicate on them).
        // Computed independently: Python's hashlib and uuid over the same statement.
        assert_eq!(ual_id(KID, 1), "487160d6-c692-5474-8f40-f3c0ca398c15");
    }

    #[test]
    fn filters() {
        let a = record(json!({
            "Operation": "SignIn",
            "CreationTime": "2026-11-22T00:00:00Z",
            "OrganizationId": "t1",
            "UserId": "Alice@Example.com",
            "seq": 1,
        }));
        let b = record(json!({
            "Operation": "Send",
            "CreationTime": "2026-11-23T12:00:00.5Z",
            "OrganizationId": "t2",
            "UserId": "bob@example.com",
            "seq": 2,
        }));
        let c = record(json!({ "Operation": "Alert", "seq": 3 }));
        let hits = |filter: &Filter| -> Vec<u64> {
            [&a, &b, &c]
                .into_iter()
                .filter(|r| filter.matches(r))
                .map(|r| r["seq"].as_u64().unwrap())
                .collect()
        };
        let day = |text: &str| parse_time_bound(text).unwrap();
        assert_eq!(hits(&Filter::default()), [1, 2, 3]);
        let ops = |ops: &[&str]| Filter {
            operations: ops.iter().map(|s| (*s).to_owned()).collect(),
            ..Filter::default()
        };
        assert_eq!(hits(&ops(&["SignIn"])), [1]);
        assert_eq!(hits(&ops(&["SignIn", "Alert"])), [1, 3]);
        assert_eq!(hits(&ops(&["signin"])), Vec::<u64>::new(), "exact");
        let users = Filter {
            users: vec!["alice@example.COM".to_owned(), "nobody".to_owned()],
            ..Filter::default()
        };
        assert_eq!(hits(&users), [1]);
        let tenants = Filter {
            tenants: vec!["t2".to_owned()],
            ..Filter::default()
        };
        assert_eq!(hits(&tenants), [2]);
        let upper_tenant = Filter {
            tenants: vec!["T2".to_owned()],
            ..Filter::default()
        };
        assert_eq!(hits(&upper_tenant), Vec::<u64>::new());
        // since is inclusive, until exclusive; records without a time never match a bound.
        let since = |s: &str| Filter {
            since: Some(day(s)),
            ..Filter::default()
        };
        assert_eq!(hits(&since("2026-11-22")), [1, 2]);
        assert_eq!(hits(&since("2026-11-22T00:00:00.000001Z")), [2]);
        let until = |u: &str| Filter {
            until: Some(day(u)),
            ..Filter::default()
        };
        assert_eq!(hits(&until("2026-11-22T00:00:00Z")), Vec::<u64>::new());
        assert_eq!(hits(&until("2026-11-23T12:00:00.5Z")), [1]);
        assert_eq!(hits(&until("2026-11-23T12:00:00.500001Z")), [1, 2]);
        let combined = Filter {
            operations: vec!["Send".to_owned(), "SignIn".to_owned()],
            users: vec!["BOB@example.com".to_owned()],
            since: Some(day("2026-11-01")),
            until: Some(day("2026-12-01")),
            ..Filter::default()
        };
        assert_eq!(hits(&combined), [2]);
    }

    #[test]
    fn time_bounds() {
        assert_eq!(parse_time_bound("1970-01-01"), Some(0));
        assert_eq!(
            parse_time_bound("2026-11-22"),
            parse_time("2026-11-22T00:00:00Z")
        );
        assert_eq!(
            parse_time_bound("2026-11-22T14:52:01.5Z"),
            Some(1_795_359_121_500_000)
        );
        for bad in [
            "",
            "2026-11-31",
            "2026-11-2",
            "22-11-2026",
            "2026-11-22T14:52:01",
            "2026-11-22T14:52:01+01:00",
            "yesterday",
        ] {
            assert_eq!(parse_time_bound(bad), None, "{bad}");
        }
    }

    #[test]
    fn table() {
        let rows = vec![
            table_row(&mail_access()),
            table_row(&record(json!({
                "Operation": "Alert",
                "CreationTime": "2026-11-22T14:52:01.000000Z",
                "UserId": "evil\nname",
                "seq": 12,
            }))),
        ];
        assert_eq!(
            rows[0],
            [
                "7",
                "2026-11-22T14:52:01.123456Z",
                "MailItemsAccessed",
                "contoso-tid",
                "Alice@Contoso.example",
                "app-1",
                "203.0.113.7"
            ]
        );
        assert_eq!(rows[1][3], "-");
        assert_eq!(rows[1][4], "evil\\nname");
        let text = format_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("seq  CreationTime"), "{text}");
        assert_eq!(lines[3], "2 records");
        // Columns line up: every column starts at the same offset in every line.
        let start = |line: &str, cell: &str| line.find(cell).unwrap();
        assert_eq!(start(lines[0], "Operation"), start(lines[1], "MailItems"));
        assert_eq!(start(lines[0], "Operation"), start(lines[2], "Alert"));
        assert_eq!(start(lines[0], "ClientIPAddress"), start(lines[1], "203."));
        assert_eq!(start(lines[0], "UserId"), start(lines[2], "evil"));
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
        assert_eq!(format_table(&[]).lines().last(), Some("0 records"));
    }
}
