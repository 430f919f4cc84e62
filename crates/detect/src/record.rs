//! One event as the rules see it: a JSON object whose well-known members carry Microsoft 365
//! Unified Audit Log names, whatever format it was read from.

use std::sync::Arc;

use serde_json::{Map, Value};

/// The canonical members every importer fills in when its source has the information. Rules
/// are written against these names; the source's own members are kept beside them, so a rule
/// may also name a field only one format has.
pub const CANONICAL_FIELDS: [&str; 19] = [
    "CreationTime",
    "Operation",
    "OrganizationId",
    "UserId",
    "AppId",
    "ClientAppId",
    "ClientIPAddress",
    "ClientInfoString",
    "SessionId",
    "TokenId",
    "KeyId",
    "Issuer",
    "ResultStatus",
    "Reason",
    "MailAccessType",
    "MailboxOwnerUPN",
    "OperationCount",
    "Workload",
    "RecordType",
];

/// Where a record came from, so a finding can point back at it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The input's name (a file path, or `audit log`).
    pub source: Arc<str>,
    /// 1-based line in the input (for a JSON array or envelope: the 1-based element number).
    pub line: u64,
    /// The audit log sequence number, for Keyscope's own records.
    pub seq: Option<u64>,
}

/// One normalised event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The event: always a JSON object.
    pub event: Value,
    /// `CreationTime` in microseconds since the Unix epoch, when the source gave a readable one.
    pub time: Option<i64>,
    /// Where it came from.
    pub origin: Origin,
}

impl Record {
    /// A record of `event` (which must be an object; anything else becomes an empty object).
    pub fn new(event: Map<String, Value>, origin: Origin) -> Record {
        let time = event
            .get("CreationTime")
            .and_then(Value::as_str)
            .and_then(crate::time::parse_any_time);
        Record {
            event: Value::Object(event),
            time,
            origin,
        }
    }

    /// A string member (numbers are not converted: identifiers are strings in every source).
    pub fn str(&self, field: &str) -> Option<&str> {
        self.event.get(field).and_then(Value::as_str)
    }

    /// The event's members.
    pub fn fields(&self) -> Option<&Map<String, Value>> {
        self.event.as_object()
    }
}
