//! The Session resource (RFC 8620 §2) and the core capability's limits (§2, `urn:ietf:params:jmap:core`).

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::patch::is_valid_id;

/// The core capability URI (RFC 8620 §2).
pub const CORE: &str = "urn:ietf:params:jmap:core";
/// The JMAP Mail capability URI (RFC 8621 §1.3.1).
pub const MAIL: &str = "urn:ietf:params:jmap:mail";
/// The JMAP Mail submission capability URI (RFC 8621 §1.3.2).
pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
/// The JMAP Mail vacation response capability URI (RFC 8621 §1.3.3).
pub const VACATION_RESPONSE: &str = "urn:ietf:params:jmap:vacationresponse";

/// Default `maxSizeUpload` in octets: RFC 8620's suggested minimum.
pub const DEFAULT_MAX_SIZE_UPLOAD: u64 = 50_000_000;
/// Default `maxConcurrentUpload`: RFC 8620's suggested minimum.
pub const DEFAULT_MAX_CONCURRENT_UPLOAD: u64 = 4;
/// Default `maxSizeRequest` in octets: RFC 8620's suggested minimum.
pub const DEFAULT_MAX_SIZE_REQUEST: u64 = 10_000_000;
/// Default `maxConcurrentRequests`: RFC 8620's suggested minimum.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u64 = 4;
/// Default `maxCallsInRequest`: RFC 8620's suggested minimum.
pub const DEFAULT_MAX_CALLS_IN_REQUEST: u64 = 16;
/// Default `maxObjectsInGet`: RFC 8620's suggested minimum.
pub const DEFAULT_MAX_OBJECTS_IN_GET: u64 = 500;
/// Default `maxObjectsInSet`: RFC 8620's suggested minimum.
pub const DEFAULT_MAX_OBJECTS_IN_SET: u64 = 500;

/// The `urn:ietf:params:jmap:core` capability object: the server's limits (RFC 8620 §2).
///
/// The defaults are RFC 8620's suggested minimums; `collationAlgorithms` defaults to empty,
/// because this crate sorts nothing: the server lists the RFC 4790 collations it implements.
/// Advertised limits are promises: the server must accept requests up to them and enforce them
/// ([`crate::request::parse_request`] enforces `maxSizeRequest` and `maxCallsInRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreCapability {
    /// Maximum size in octets of a single upload.
    pub max_size_upload: u64,
    /// Maximum number of concurrent requests to the upload endpoint.
    pub max_concurrent_upload: u64,
    /// Maximum size in octets of a request to the API endpoint.
    pub max_size_request: u64,
    /// Maximum number of concurrent requests to the API endpoint.
    pub max_concurrent_requests: u64,
    /// Maximum number of method calls in one request.
    pub max_calls_in_request: u64,
    /// Maximum number of objects fetched by one `/get` call.
    pub max_objects_in_get: u64,
    /// Maximum number of create/update/destroy operations in one `/set` call.
    pub max_objects_in_set: u64,
    /// RFC 4790 collation identifiers supported for sorting in `/query`.
    pub collation_algorithms: Vec<String>,
}

impl Default for CoreCapability {
    fn default() -> Self {
        Self {
            max_size_upload: DEFAULT_MAX_SIZE_UPLOAD,
            max_concurrent_upload: DEFAULT_MAX_CONCURRENT_UPLOAD,
            max_size_request: DEFAULT_MAX_SIZE_REQUEST,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_calls_in_request: DEFAULT_MAX_CALLS_IN_REQUEST,
            max_objects_in_get: DEFAULT_MAX_OBJECTS_IN_GET,
            max_objects_in_set: DEFAULT_MAX_OBJECTS_IN_SET,
            collation_algorithms: Vec::new(),
        }
    }
}

impl CoreCapability {
    /// The capability object as JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        for (k, v) in [
            ("maxSizeUpload", self.max_size_upload),
            ("maxConcurrentUpload", self.max_concurrent_upload),
            ("maxSizeRequest", self.max_size_request),
            ("maxConcurrentRequests", self.max_concurrent_requests),
            ("maxCallsInRequest", self.max_calls_in_request),
            ("maxObjectsInGet", self.max_objects_in_get),
            ("maxObjectsInSet", self.max_objects_in_set),
        ] {
            obj.insert(k.to_owned(), Value::from(v));
        }
        obj.insert(
            "collationAlgorithms".to_owned(),
            Value::Array(
                self.collation_algorithms
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
        Value::Object(obj)
    }
}

/// An account the user may access (RFC 8620 §2 `Account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// A user-friendly name, e.g. the user's email address.
    pub name: String,
    /// Whether the account belongs to the authenticated user.
    pub is_personal: bool,
    /// Whether the whole account is read-only.
    pub is_read_only: bool,
    /// Capability URI to account-specific capability object (e.g. RFC 8621 limits).
    pub account_capabilities: Map<String, Value>,
}

/// The JMAP Session resource (RFC 8620 §2), served at the well-known URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The core capability; serialised under [`CORE`] in `capabilities`.
    pub core: CoreCapability,
    /// The other capabilities: URI to capability object (e.g. `urn:ietf:params:jmap:mail`:
    /// `{}`). A [`CORE`] entry here is ignored in favour of [`Session::core`].
    pub capabilities: Map<String, Value>,
    /// Account id to account.
    pub accounts: BTreeMap<String, Account>,
    /// Capability URI to the id of the user's primary account for it.
    pub primary_accounts: BTreeMap<String, String>,
    /// The username associated with the credentials.
    pub username: String,
    /// The URL of the API endpoint.
    pub api_url: String,
    /// The download URL template (RFC 6570 level 1) with `{accountId}`, `{blobId}`, `{type}`
    /// and `{name}`.
    pub download_url: String,
    /// The upload URL template with `{accountId}`.
    pub upload_url: String,
    /// The event source URL template with `{types}`, `{closeafter}` and `{ping}`.
    pub event_source_url: String,
    /// An opaque string that changes whenever any of the other Session data changes.
    pub state: String,
}

/// Why [`Session::validate`] refused a Session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A URL template lacks a variable RFC 8620 §2 requires.
    #[error("{url} lacks the {{{variable}}} variable")]
    MissingVariable {
        /// `downloadUrl`, `uploadUrl` or `eventSourceUrl`.
        url: &'static str,
        /// The missing variable's name.
        variable: &'static str,
    },
    /// An account id is not a valid `Id`.
    #[error("account id {0:?} is not a valid Id")]
    InvalidAccountId(String),
    /// A primary account is not in `accounts`.
    #[error("the primary account {account_id:?} for {capability} is not in accounts")]
    UnknownPrimaryAccount {
        /// The capability URI.
        capability: String,
        /// The account id.
        account_id: String,
    },
}

impl Session {
    /// The capability URIs this server supports (the keys of `capabilities`, core included).
    #[must_use]
    pub fn capability_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.capabilities.keys().cloned().collect();
        if !self.capabilities.contains_key(CORE) {
            names.push(CORE.to_owned());
        }
        names.sort();
        names
    }

    /// Checks the RFC 8620 §2 requirements a server could get wrong: the URL templates contain
    /// their variables, account ids are `Id`s and primary accounts exist.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), SessionError> {
        let templates: [(&'static str, &str, &[&'static str]); 3] = [
            (
                "downloadUrl",
                &self.download_url,
                &["accountId", "blobId", "type", "name"],
            ),
            ("uploadUrl", &self.upload_url, &["accountId"]),
            (
                "eventSourceUrl",
                &self.event_source_url,
                &["types", "closeafter", "ping"],
            ),
        ];
        for (url, template, variables) in templates {
            for &variable in variables {
                if !template.contains(&format!("{{{variable}}}")) {
                    return Err(SessionError::MissingVariable { url, variable });
                }
            }
        }
        if let Some(id) = self.accounts.keys().find(|id| !is_valid_id(id)) {
            return Err(SessionError::InvalidAccountId(id.clone()));
        }
        for (capability, account_id) in &self.primary_accounts {
            if !self.accounts.contains_key(account_id) {
                return Err(SessionError::UnknownPrimaryAccount {
                    capability: capability.clone(),
                    account_id: account_id.clone(),
                });
            }
        }
        Ok(())
    }

    /// The Session object as JSON, exactly the members of RFC 8620 §2.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut capabilities = self.capabilities.clone();
        capabilities.insert(CORE.to_owned(), self.core.to_json());
        let accounts: Map<String, Value> = self
            .accounts
            .iter()
            .map(|(id, a)| {
                let mut obj = Map::new();
                obj.insert("name".to_owned(), Value::String(a.name.clone()));
                obj.insert("isPersonal".to_owned(), Value::Bool(a.is_personal));
                obj.insert("isReadOnly".to_owned(), Value::Bool(a.is_read_only));
                obj.insert(
                    "accountCapabilities".to_owned(),
                    Value::Object(a.account_capabilities.clone()),
                );
                (id.clone(), Value::Object(obj))
            })
            .collect();
        let primary: Map<String, Value> = self
            .primary_accounts
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut obj = Map::new();
        obj.insert("capabilities".to_owned(), Value::Object(capabilities));
        obj.insert("accounts".to_owned(), Value::Object(accounts));
        obj.insert("primaryAccounts".to_owned(), Value::Object(primary));
        obj.insert("username".to_owned(), Value::String(self.username.clone()));
        obj.insert("apiUrl".to_owned(), Value::String(self.api_url.clone()));
        obj.insert(
            "downloadUrl".to_owned(),
            Value::String(self.download_url.clone()),
        );
        obj.insert(
            "uploadUrl".to_owned(),
            Value::String(self.upload_url.clone()),
        );
        obj.insert(
            "eventSourceUrl".to_owned(),
            Value::String(self.event_source_url.clone()),
        );
        obj.insert("state".to_owned(), Value::String(self.state.clone()));
        Value::Object(obj)
    }

    /// The download URL for a blob: `downloadUrl` with its variables expanded.
    #[must_use]
    pub fn download_url_for(
        &self,
        account_id: &str,
        blob_id: &str,
        type_: &str,
        name: &str,
    ) -> String {
        expand_url_template(
            &self.download_url,
            &[
                ("accountId", account_id),
                ("blobId", blob_id),
                ("type", type_),
                ("name", name),
            ],
        )
    }

    /// The upload URL for an account.
    #[must_use]
    pub fn upload_url_for(&self, account_id: &str) -> String {
        expand_url_template(&self.upload_url, &[("accountId", account_id)])
    }

    /// The event source URL: `types` is a comma-separated list of type names or `*`,
    /// `closeafter` is `state` or `no`, `ping` is the interval in seconds.
    #[must_use]
    pub fn event_source_url_for(&self, types: &str, closeafter: &str, ping: u64) -> String {
        let ping = ping.to_string();
        expand_url_template(
            &self.event_source_url,
            &[
                ("types", types),
                ("closeafter", closeafter),
                ("ping", &ping),
            ],
        )
    }
}

impl Serialize for Session {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// Expands an RFC 6570 level 1 URI template: each `{name}` becomes the value of `name`,
/// percent-encoded except for unreserved characters (`A-Za-z0-9-._~`); an undefined variable
/// expands to the empty string. Text outside expressions, and a `{` without a matching `}`, is
/// copied unchanged.
#[must_use]
pub fn expand_url_template(template: &str, variables: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, after_open) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = after_open.find('}') else {
            rest = after_open;
            break;
        };
        let (expression, after) = after_open.split_at(close);
        let name = expression.trim_start_matches('{');
        if let Some((_, value)) = variables.iter().find(|(n, _)| *n == name) {
            percent_encode_into(value, &mut out);
        }
        rest = after.get(1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn percent_encode_into(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0F] {
                out.push(HEX.get(usize::from(nibble)).map_or('0', |h| char::from(*h)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session() -> Session {
        Session {
            core: CoreCapability {
                collation_algorithms: vec!["i;ascii-casemap".into()],
                ..CoreCapability::default()
            },
            capabilities: Map::from_iter([(MAIL.to_owned(), json!({}))]),
            accounts: BTreeMap::from([(
                "A13824".to_owned(),
                Account {
                    name: "john@example.com".into(),
                    is_personal: true,
                    is_read_only: false,
                    account_capabilities: Map::from_iter([(MAIL.to_owned(), json!({}))]),
                },
            )]),
            primary_accounts: BTreeMap::from([(MAIL.to_owned(), "A13824".to_owned())]),
            username: "john@example.com".into(),
            api_url: "https://jmap.example.com/api/".into(),
            download_url: "https://jmap.example.com/download/{accountId}/{blobId}/{name}?accept={type}".into(),
            upload_url: "https://jmap.example.com/upload/{accountId}/".into(),
            event_source_url: "https://jmap.example.com/eventsource/?types={types}&closeafter={closeafter}&ping={ping}".into(),
            state: "75128aab4b1b".into(),
        }
    }

    #[test]
    fn session_serialises_per_rfc8620_2() {
        let s = session();
        assert_eq!(s.validate(), Ok(()));
        let expected = json!({
            "capabilities": {
                "urn:ietf:params:jmap:core": {
                    "maxSizeUpload": 50000000,
                    "maxConcurrentUpload": 4,
                    "maxSizeRequest": 10000000,
                    "maxConcurrentRequests": 4,
                    "maxCallsInRequest": 16,
                    "maxObjectsInGet": 500,
                    "maxObjectsInSet": 500,
                    "collationAlgorithms": ["i;ascii-casemap"]
                },
                "urn:ietf:params:jmap:mail": {}
            },
            "accounts": {
                "A13824": {
                    "name": "john@example.com",
                    "isPersonal": true,
                    "isReadOnly": false,
                    "accountCapabilities": {"urn:ietf:params:jmap:mail": {}}
                }
            },
            "primaryAccounts": {"urn:ietf:params:jmap:mail": "A13824"},
            "username": "john@example.com",
            "apiUrl": "https://jmap.example.com/api/",
            "downloadUrl": "https://jmap.example.com/download/{accountId}/{blobId}/{name}?accept={type}",
            "uploadUrl": "https://jmap.example.com/upload/{accountId}/",
            "eventSourceUrl": "https://jmap.example.com/eventsource/?types={types}&closeafter={closeafter}&ping={ping}",
            "state": "75128aab4b1b"
        });
        assert_eq!(s.to_json(), expected);
        assert_eq!(serde_json::to_value(&s).unwrap(), expected);
        // The derived serialisations agree with the hand-written ones.
        assert_eq!(serde_json::to_value(&s.core).unwrap(), s.core.to_json());
        assert_eq!(
            serde_json::to_value(&s.accounts["A13824"]).unwrap(),
            expected["accounts"]["A13824"]
        );
        assert_eq!(s.capability_names(), [CORE, MAIL]);
    }

    #[test]
    fn core_entry_in_capabilities_is_overridden() {
        let mut s = session();
        s.capabilities.insert(CORE.into(), json!({"bogus": 1}));
        assert_eq!(s.to_json()["capabilities"][CORE], s.core.to_json());
        assert_eq!(s.capability_names(), [CORE, MAIL]);
    }

    #[test]
    fn validate_rejects_bad_sessions() {
        let mut s = session();
        s.download_url = "https://x/{accountId}/{blobId}/{name}".into();
        assert_eq!(
            s.validate(),
            Err(SessionError::MissingVariable {
                url: "downloadUrl",
                variable: "type"
            })
        );
        let mut s = session();
        s.upload_url = "https://x/upload/".into();
        assert!(matches!(
            s.validate(),
            Err(SessionError::MissingVariable {
                url: "uploadUrl",
                ..
            })
        ));
        let mut s = session();
        s.event_source_url = "https://x/?types={types}&closeafter={closeafter}".into();
        assert_eq!(
            s.validate(),
            Err(SessionError::MissingVariable {
                url: "eventSourceUrl",
                variable: "ping"
            })
        );
        let mut s = session();
        s.primary_accounts.insert(SUBMISSION.into(), "nope".into());
        assert!(matches!(
            s.validate(),
            Err(SessionError::UnknownPrimaryAccount { .. })
        ));
        let mut s = session();
        let a = s.accounts["A13824"].clone();
        s.accounts.insert("bad id".into(), a);
        assert_eq!(
            s.validate(),
            Err(SessionError::InvalidAccountId("bad id".into()))
        );
    }

    #[test]
    fn url_templates_expand() {
        let s = session();
        assert_eq!(
            s.download_url_for("A1", "B2", "image/png", "my photo.png"),
            "https://jmap.example.com/download/A1/B2/my%20photo.png?accept=image%2Fpng"
        );
        assert_eq!(
            s.upload_url_for("A1"),
            "https://jmap.example.com/upload/A1/"
        );
        assert_eq!(
            s.event_source_url_for("Email,Mailbox", "no", 300),
            "https://jmap.example.com/eventsource/?types=Email%2CMailbox&closeafter=no&ping=300"
        );
        assert!(
            s.event_source_url_for("*", "state", 0)
                .contains("types=%2A")
        );
        assert_eq!(
            expand_url_template("a{x}b{missing}c{", &[("x", "é~")]),
            "a%C3%A9~bc{"
        );
    }
}
