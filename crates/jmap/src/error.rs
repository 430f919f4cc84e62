//! Method-level errors (RFC 8620 §3.6.2) and `SetError`s (RFC 8620 §5.3).
//!
//! Request-level errors (problem details) live in [`crate::request::ProblemDetails`].

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// The `type` of a method-level error (RFC 8620 §3.6.2 and the method descriptions in §5).
///
/// Types this enum does not name (from other specifications or extensions) are carried by
/// [`MethodErrorType::Other`]. A client that receives a type it does not know treats it as
/// `serverFail` (RFC 8620 §3.6.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MethodErrorType {
    /// `serverUnavailable`: an internal resource was temporarily unavailable; retry later.
    ServerUnavailable,
    /// `serverFail`: an unexpected error; the call made no changes.
    ServerFail,
    /// `serverPartialFail`: some but not all changes happened; the client must resynchronise.
    ServerPartialFail,
    /// `unknownMethod`: the method name is not recognised (or its capability is not in `using`).
    UnknownMethod,
    /// `invalidArguments`: an argument has the wrong type, is invalid, or is missing.
    InvalidArguments,
    /// `invalidResultReference`: a result reference (§3.7) failed to resolve.
    InvalidResultReference,
    /// `forbidden`: an ACL or other policy forbids the call.
    Forbidden,
    /// `accountNotFound`: the `accountId` is not a valid account.
    AccountNotFound,
    /// `accountNotSupportedByMethod`: the account does not support this method or data type.
    AccountNotSupportedByMethod,
    /// `accountReadOnly`: the method would modify state but the account is read-only.
    AccountReadOnly,
    /// `requestTooLarge` (/get, /set): more ids or objects than `maxObjectsInGet`/`maxObjectsInSet`.
    RequestTooLarge,
    /// `stateMismatch` (/set, /copy): `ifInState` does not match the current state.
    StateMismatch,
    /// `cannotCalculateChanges` (/changes, /queryChanges): the state is too old or unknown.
    CannotCalculateChanges,
    /// `anchorNotFound` (/query): the `anchor` id is not in the results.
    AnchorNotFound,
    /// `unsupportedSort` (/query): a sort property or collation is not supported.
    UnsupportedSort,
    /// `unsupportedFilter` (/query): the filter is valid but cannot be processed.
    UnsupportedFilter,
    /// `tooManyChanges` (/queryChanges): more changes than `maxChanges`.
    TooManyChanges,
    /// `fromAccountNotFound` (/copy): the `fromAccountId` is not a valid account.
    FromAccountNotFound,
    /// `fromAccountNotSupportedByMethod` (/copy): the `fromAccountId` does not support this type.
    FromAccountNotSupportedByMethod,
    /// Any other type, spelled exactly as it appears on the wire.
    Other(String),
}

impl MethodErrorType {
    const NAMED: [(Self, &'static str); 19] = [
        (Self::ServerUnavailable, "serverUnavailable"),
        (Self::ServerFail, "serverFail"),
        (Self::ServerPartialFail, "serverPartialFail"),
        (Self::UnknownMethod, "unknownMethod"),
        (Self::InvalidArguments, "invalidArguments"),
        (Self::InvalidResultReference, "invalidResultReference"),
        (Self::Forbidden, "forbidden"),
        (Self::AccountNotFound, "accountNotFound"),
        (
            Self::AccountNotSupportedByMethod,
            "accountNotSupportedByMethod",
        ),
        (Self::AccountReadOnly, "accountReadOnly"),
        (Self::RequestTooLarge, "requestTooLarge"),
        (Self::StateMismatch, "stateMismatch"),
        (Self::CannotCalculateChanges, "cannotCalculateChanges"),
        (Self::AnchorNotFound, "anchorNotFound"),
        (Self::UnsupportedSort, "unsupportedSort"),
        (Self::UnsupportedFilter, "unsupportedFilter"),
        (Self::TooManyChanges, "tooManyChanges"),
        (Self::FromAccountNotFound, "fromAccountNotFound"),
        (
            Self::FromAccountNotSupportedByMethod,
            "fromAccountNotSupportedByMethod",
        ),
    ];

    /// The wire spelling of this type.
    #[must_use]
    pub fn as_str(&self) -> &str {
        if let Self::Other(s) = self {
            return s;
        }
        Self::NAMED
            .iter()
            .find(|(t, _)| t == self)
            .map_or("serverFail", |(_, s)| s)
    }

    /// The type with the given wire spelling; unknown spellings become [`Self::Other`].
    #[must_use]
    pub fn from_wire(s: &str) -> Self {
        Self::NAMED
            .iter()
            .find(|(_, name)| *name == s)
            .map_or_else(|| Self::Other(s.to_owned()), |(t, _)| t.clone())
    }
}

impl fmt::Display for MethodErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method-level error: the method call failed and its only response is
/// `["error", {"type": …, "description"?: …}, callId]` (RFC 8620 §3.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodError {
    /// The error type.
    pub type_: MethodErrorType,
    /// An optional non-localised description for debugging (not shown to end users).
    pub description: Option<String>,
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{}: {d}", self.type_),
            None => write!(f, "{}", self.type_),
        }
    }
}

impl std::error::Error for MethodError {}

impl MethodError {
    /// An error of the given type without a description.
    #[must_use]
    pub const fn new(type_: MethodErrorType) -> Self {
        Self {
            type_,
            description: None,
        }
    }

    /// Adds a description.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// `serverFail` with a description.
    #[must_use]
    pub fn server_fail(description: impl Into<String>) -> Self {
        Self::new(MethodErrorType::ServerFail).with_description(description)
    }

    /// `unknownMethod`.
    #[must_use]
    pub const fn unknown_method() -> Self {
        Self::new(MethodErrorType::UnknownMethod)
    }

    /// `invalidArguments` with a description.
    #[must_use]
    pub fn invalid_arguments(description: impl Into<String>) -> Self {
        Self::new(MethodErrorType::InvalidArguments).with_description(description)
    }

    /// `invalidResultReference` with a description.
    #[must_use]
    pub fn invalid_result_reference(description: impl Into<String>) -> Self {
        Self::new(MethodErrorType::InvalidResultReference).with_description(description)
    }

    /// `requestTooLarge` with a description (e.g. naming `maxObjectsInGet`).
    #[must_use]
    pub fn request_too_large(description: impl Into<String>) -> Self {
        Self::new(MethodErrorType::RequestTooLarge).with_description(description)
    }

    /// The error's arguments object: `{"type": …, "description"?: …}`.
    #[must_use]
    pub fn to_arguments(&self) -> Map<String, Value> {
        let mut args = Map::new();
        args.insert(
            "type".to_owned(),
            Value::String(self.type_.as_str().to_owned()),
        );
        if let Some(d) = &self.description {
            args.insert("description".to_owned(), Value::String(d.clone()));
        }
        args
    }

    /// The full error response invocation: `["error", {…}, callId]`.
    #[must_use]
    pub fn to_response(&self, call_id: &str) -> Value {
        Value::Array(vec![
            Value::String("error".to_owned()),
            Value::Object(self.to_arguments()),
            Value::String(call_id.to_owned()),
        ])
    }
}

impl Serialize for MethodError {
    /// Serialises as the arguments object `{"type": …, "description"?: …}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_arguments().serialize(serializer)
    }
}

/// The `type` of a `SetError` (RFC 8620 §5.3, §5.4).
///
/// Mail-specific types (RFC 8621) are carried by [`SetErrorType::Other`]; their spellings are
/// in [`mail_set_errors`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetErrorType {
    /// `forbidden`: an ACL or other policy forbids the change.
    Forbidden,
    /// `overQuota`: a server-defined limit on the number or total size of objects.
    OverQuota,
    /// `tooLarge`: a server-defined limit on the size of one object.
    TooLarge,
    /// `rateLimit`: too many objects of this type created recently.
    RateLimit,
    /// `notFound`: the id cannot be found (update/destroy).
    NotFound,
    /// `invalidPatch`: the PatchObject is not valid.
    InvalidPatch,
    /// `willDestroy`: the object is both updated and destroyed in this call; the update is
    /// ignored.
    WillDestroy,
    /// `invalidProperties`: the record has invalid properties (listed in `properties`).
    InvalidProperties,
    /// `singleton`: a singleton type; cannot create another or destroy it.
    Singleton,
    /// `alreadyExists` (/copy): the server forbids duplicates; `existingId` names the record.
    AlreadyExists,
    /// Any other type, spelled exactly as it appears on the wire.
    Other(String),
}

impl SetErrorType {
    const NAMED: [(Self, &'static str); 10] = [
        (Self::Forbidden, "forbidden"),
        (Self::OverQuota, "overQuota"),
        (Self::TooLarge, "tooLarge"),
        (Self::RateLimit, "rateLimit"),
        (Self::NotFound, "notFound"),
        (Self::InvalidPatch, "invalidPatch"),
        (Self::WillDestroy, "willDestroy"),
        (Self::InvalidProperties, "invalidProperties"),
        (Self::Singleton, "singleton"),
        (Self::AlreadyExists, "alreadyExists"),
    ];

    /// The wire spelling of this type.
    #[must_use]
    pub fn as_str(&self) -> &str {
        if let Self::Other(s) = self {
            return s;
        }
        Self::NAMED
            .iter()
            .find(|(t, _)| t == self)
            .map_or("forbidden", |(_, s)| s)
    }

    /// The type with the given wire spelling; unknown spellings become [`Self::Other`].
    #[must_use]
    pub fn from_wire(s: &str) -> Self {
        Self::NAMED
            .iter()
            .find(|(_, name)| *name == s)
            .map_or_else(|| Self::Other(s.to_owned()), |(t, _)| t.clone())
    }
}

impl fmt::Display for SetErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Wire spellings of the RFC 8621 (JMAP Mail) `SetError` types, for [`SetErrorType::Other`].
pub mod mail_set_errors {
    /// Mailbox/set destroy: the Mailbox still has a child Mailbox.
    pub const MAILBOX_HAS_CHILD: &str = "mailboxHasChild";
    /// Mailbox/set destroy: the Mailbox has Emails and `onDestroyRemoveEmails` is false.
    pub const MAILBOX_HAS_EMAIL: &str = "mailboxHasEmail";
    /// Email/set, Email/import: a blob was not found (extra member `notFound`: the blob ids).
    pub const BLOB_NOT_FOUND: &str = "blobNotFound";
    /// Email/set, Email/import: more keywords than the server allows.
    pub const TOO_MANY_KEYWORDS: &str = "tooManyKeywords";
    /// Email/set, Email/import: in more Mailboxes than the server allows.
    pub const TOO_MANY_MAILBOXES: &str = "tooManyMailboxes";
    /// Email/import: the blob is not a valid RFC 5322 message.
    pub const INVALID_EMAIL: &str = "invalidEmail";
    /// EmailSubmission/set: too many recipients (extra member `maxRecipients`).
    pub const TOO_MANY_RECIPIENTS: &str = "tooManyRecipients";
    /// EmailSubmission/set: the envelope has no recipients.
    pub const NO_RECIPIENTS: &str = "noRecipients";
    /// EmailSubmission/set: some recipients are invalid (extra member `invalidRecipients`).
    pub const INVALID_RECIPIENTS: &str = "invalidRecipients";
    /// EmailSubmission/set: the envelope `mailFrom` is not permitted.
    pub const FORBIDDEN_MAIL_FROM: &str = "forbiddenMailFrom";
    /// EmailSubmission/set: the `From` header is not permitted.
    pub const FORBIDDEN_FROM: &str = "forbiddenFrom";
    /// EmailSubmission/set: the user may not send mail.
    pub const FORBIDDEN_TO_SEND: &str = "forbiddenToSend";
    /// EmailSubmission/set update: the submission can no longer be cancelled.
    pub const CANNOT_UNSEND: &str = "cannotUnsend";
}

/// A `SetError` object: why one create/update/destroy in a `/set` (or `/copy`) call failed
/// (RFC 8620 §5.3). It appears inside `notCreated`/`notUpdated`/`notDestroyed`, not as a
/// method response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetError {
    /// The error type.
    pub type_: SetErrorType,
    /// An optional non-localised description for debugging.
    pub description: Option<String>,
    /// For `invalidProperties`: the invalid properties (RFC 8620 §5.3).
    pub properties: Option<Vec<String>>,
    /// For `alreadyExists`: the id of the existing record (RFC 8620 §5.4).
    pub existing_id: Option<String>,
    /// Further type-specific members (e.g. RFC 8621 `notFound`, `maxRecipients`,
    /// `invalidRecipients`, `maxSize`), serialised as given.
    pub extra: Map<String, Value>,
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{}: {d}", self.type_),
            None => write!(f, "{}", self.type_),
        }
    }
}

impl std::error::Error for SetError {}

impl SetError {
    /// An error of the given type with no other members.
    #[must_use]
    pub fn new(type_: SetErrorType) -> Self {
        Self {
            type_,
            description: None,
            properties: None,
            existing_id: None,
            extra: Map::new(),
        }
    }

    /// Adds a description.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Adds a type-specific member.
    #[must_use]
    pub fn with_member(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// `invalidProperties` naming the offending properties.
    #[must_use]
    pub fn invalid_properties<I, S>(properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut e = Self::new(SetErrorType::InvalidProperties);
        e.properties = Some(properties.into_iter().map(Into::into).collect());
        e
    }

    /// `invalidPatch` with a description.
    #[must_use]
    pub fn invalid_patch(description: impl Into<String>) -> Self {
        Self::new(SetErrorType::InvalidPatch).with_description(description)
    }

    /// `alreadyExists` with the existing record's id.
    #[must_use]
    pub fn already_exists(existing_id: impl Into<String>) -> Self {
        let mut e = Self::new(SetErrorType::AlreadyExists);
        e.existing_id = Some(existing_id.into());
        e
    }

    /// The JSON object: `{"type": …, "description"?: …, "properties"?: […], "existingId"?: …,
    /// …extra}`. The named members win over same-named `extra` members.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut obj = self.extra.clone();
        obj.insert(
            "type".to_owned(),
            Value::String(self.type_.as_str().to_owned()),
        );
        if let Some(d) = &self.description {
            obj.insert("description".to_owned(), Value::String(d.clone()));
        }
        if let Some(p) = &self.properties {
            obj.insert(
                "properties".to_owned(),
                Value::Array(p.iter().cloned().map(Value::String).collect()),
            );
        }
        if let Some(id) = &self.existing_id {
            obj.insert("existingId".to_owned(), Value::String(id.clone()));
        }
        Value::Object(obj)
    }
}

impl Serialize for SetError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_method_error_type_round_trips_and_serialises() {
        let all = [
            "serverUnavailable",
            "serverFail",
            "serverPartialFail",
            "unknownMethod",
            "invalidArguments",
            "invalidResultReference",
            "forbidden",
            "accountNotFound",
            "accountNotSupportedByMethod",
            "accountReadOnly",
            "requestTooLarge",
            "stateMismatch",
            "cannotCalculateChanges",
            "anchorNotFound",
            "unsupportedSort",
            "unsupportedFilter",
            "tooManyChanges",
            "fromAccountNotFound",
            "fromAccountNotSupportedByMethod",
        ];
        for name in all {
            let t = MethodErrorType::from_wire(name);
            assert!(!matches!(t, MethodErrorType::Other(_)), "{name}");
            assert_eq!(t.as_str(), name);
            let e = MethodError::new(t);
            assert_eq!(e.to_response("c1"), json!(["error", {"type": name}, "c1"]));
            assert_eq!(serde_json::to_value(&e).unwrap(), json!({"type": name}));
        }
        let custom = MethodErrorType::from_wire("someExtensionError");
        assert_eq!(custom, MethodErrorType::Other("someExtensionError".into()));
        assert_eq!(custom.as_str(), "someExtensionError");
    }

    #[test]
    fn method_error_with_description() {
        let e = MethodError::invalid_arguments("ids must be an array");
        assert_eq!(
            e.to_response("c7"),
            json!(["error", {"type": "invalidArguments", "description": "ids must be an array"}, "c7"])
        );
        assert_eq!(e.to_string(), "invalidArguments: ids must be an array");
        assert_eq!(MethodError::unknown_method().to_string(), "unknownMethod");
        assert_eq!(
            MethodError::server_fail("x").type_,
            MethodErrorType::ServerFail
        );
        assert_eq!(
            MethodError::invalid_result_reference("x").type_,
            MethodErrorType::InvalidResultReference
        );
        assert_eq!(
            MethodError::request_too_large("x").type_,
            MethodErrorType::RequestTooLarge
        );
    }

    #[test]
    fn every_set_error_type_serialises() {
        for name in [
            "forbidden",
            "overQuota",
            "tooLarge",
            "rateLimit",
            "notFound",
            "invalidPatch",
            "willDestroy",
            "invalidProperties",
            "singleton",
            "alreadyExists",
        ] {
            let t = SetErrorType::from_wire(name);
            assert!(!matches!(t, SetErrorType::Other(_)), "{name}");
            assert_eq!(SetError::new(t).to_json(), json!({"type": name}));
        }
        assert_eq!(
            SetError::invalid_properties(["name", "parentId"])
                .with_description("bad")
                .to_json(),
            json!({"type": "invalidProperties", "properties": ["name", "parentId"], "description": "bad"})
        );
        assert_eq!(
            SetError::already_exists("M1").to_json(),
            json!({"type": "alreadyExists", "existingId": "M1"})
        );
        assert_eq!(
            SetError::invalid_patch("x").to_json(),
            json!({"type": "invalidPatch", "description": "x"})
        );
        let mail = SetError::new(SetErrorType::from_wire(mail_set_errors::BLOB_NOT_FOUND))
            .with_member("notFound", json!(["B1"]));
        assert_eq!(
            serde_json::to_value(&mail).unwrap(),
            json!({"type": "blobNotFound", "notFound": ["B1"]})
        );
        // Named members win over extra members.
        let e = SetError::new(SetErrorType::NotFound).with_member("type", json!("bogus"));
        assert_eq!(e.to_json(), json!({"type": "notFound"}));
        assert_eq!(e.to_string(), "notFound");
    }
}
