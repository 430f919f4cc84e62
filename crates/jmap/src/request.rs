//! The JMAP Request object (RFC 8620 §3.3), invocations (§3.2) and request-level errors
//! (§3.6.1, RFC 7807 problem details).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::capabilities::{CORE, CoreCapability, Session};
use crate::json::{self, DEFAULT_MAX_DEPTH, JsonError, JsonLimits};
use crate::patch::is_valid_id;

/// A map from client-chosen creation id to the server-assigned id (RFC 8620 §3.3 `createdIds`,
/// `Id[Id]`).
pub type CreatedIds = BTreeMap<String, String>;

/// The media type of a problem details body (RFC 7807).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// `type` of the request-level error for a body that is not I-JSON (or has the wrong media type).
pub const NOT_JSON: &str = "urn:ietf:params:jmap:error:notJSON";
/// `type` of the request-level error for valid JSON that is not a Request object.
pub const NOT_REQUEST: &str = "urn:ietf:params:jmap:error:notRequest";
/// `type` of the request-level error for a `using` entry the server does not support.
pub const UNKNOWN_CAPABILITY: &str = "urn:ietf:params:jmap:error:unknownCapability";
/// `type` of the request-level error for a request that exceeds a limit.
pub const LIMIT: &str = "urn:ietf:params:jmap:error:limit";

/// A method call or method response: `[name, arguments, methodCallId]` (RFC 8620 §3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The method name (or, in a response, the response name, e.g. `"error"`).
    pub name: String,
    /// The arguments object.
    pub arguments: Map<String, Value>,
    /// The method call id chosen by the client, echoed in every response to the call.
    pub call_id: String,
}

impl Invocation {
    /// An invocation from its parts.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        arguments: Map<String, Value>,
        call_id: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            arguments,
            call_id: call_id.into(),
        }
    }

    /// Reads an invocation from a JSON value: exactly a 3-element array of a string, an object
    /// and a string.
    ///
    /// # Errors
    /// A description of the shape problem.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let Value::Array(items) = value else {
            return Err("an invocation must be an array".to_owned());
        };
        let Ok([name, arguments, call_id]) = <[Value; 3]>::try_from(items) else {
            return Err("an invocation must be an array of exactly 3 elements".to_owned());
        };
        let Value::String(name) = name else {
            return Err("an invocation's method name must be a string".to_owned());
        };
        let Value::Object(arguments) = arguments else {
            return Err("an invocation's arguments must be an object".to_owned());
        };
        let Value::String(call_id) = call_id else {
            return Err("an invocation's method call id must be a string".to_owned());
        };
        Ok(Self {
            name,
            arguments,
            call_id,
        })
    }

    /// The JSON form: `[name, arguments, callId]`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        Value::Array(vec![
            Value::String(self.name.clone()),
            Value::Object(self.arguments.clone()),
            Value::String(self.call_id.clone()),
        ])
    }
}

impl Serialize for Invocation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.name, &self.arguments, &self.call_id).serialize(serializer)
    }
}

/// A parsed JMAP Request object (RFC 8620 §3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The capabilities the client wishes to use.
    pub using: Vec<String>,
    /// The method calls, to be processed in order.
    pub method_calls: Vec<Invocation>,
    /// The initial creation id map, if the client sent one; the response then includes
    /// `createdIds` too.
    pub created_ids: Option<CreatedIds>,
}

impl Request {
    /// Reads a Request from an already-parsed JSON value, checking only its shape (no
    /// capability or limit checks).
    ///
    /// Unknown members of the Request object are ignored. `createdIds: null` is treated as
    /// absent. `createdIds` keys and values must be valid `Id`s (RFC 8620 §1.2).
    ///
    /// # Errors
    /// A `notRequest` [`ProblemDetails`].
    pub fn from_value(value: Value) -> Result<Self, ProblemDetails> {
        let Value::Object(mut obj) = value else {
            return Err(ProblemDetails::not_request(
                "the request must be a JSON object",
            ));
        };
        let using = match obj.remove("using") {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(ProblemDetails::not_request(
                        "\"using\" must contain only strings",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(ProblemDetails::not_request("\"using\" must be an array")),
            None => return Err(ProblemDetails::not_request("the request has no \"using\"")),
        };
        let method_calls = match obj.remove("methodCalls") {
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    Invocation::from_value(v)
                        .map_err(|e| ProblemDetails::not_request(format!("methodCalls[{i}]: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(ProblemDetails::not_request(
                    "\"methodCalls\" must be an array",
                ));
            }
            None => {
                return Err(ProblemDetails::not_request(
                    "the request has no \"methodCalls\"",
                ));
            }
        };
        let created_ids = match obj.remove("createdIds") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => {
                let mut ids = CreatedIds::new();
                for (k, v) in map {
                    match v {
                        Value::String(id) if is_valid_id(&k) && is_valid_id(&id) => {
                            ids.insert(k, id);
                        }
                        _ => {
                            return Err(ProblemDetails::not_request(
                                "\"createdIds\" must map Ids to Ids",
                            ));
                        }
                    }
                }
                Some(ids)
            }
            Some(_) => {
                return Err(ProblemDetails::not_request(
                    "\"createdIds\" must be an object",
                ));
            }
        };
        Ok(Self {
            using,
            method_calls,
            created_ids,
        })
    }

    /// The JSON form of the request (as a client would send it).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert(
            "using".to_owned(),
            Value::Array(self.using.iter().cloned().map(Value::String).collect()),
        );
        obj.insert(
            "methodCalls".to_owned(),
            Value::Array(self.method_calls.iter().map(Invocation::to_json).collect()),
        );
        if let Some(ids) = &self.created_ids {
            obj.insert("createdIds".to_owned(), created_ids_json(ids));
        }
        Value::Object(obj)
    }
}

/// The JSON object form of a creation id map.
pub(crate) fn created_ids_json(ids: &CreatedIds) -> Value {
    Value::Object(
        ids.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// What [`parse_request`] enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    /// `maxSizeRequest`: the maximum body size in bytes.
    pub max_size_request: usize,
    /// `maxCallsInRequest`: the maximum number of method calls.
    pub max_calls_in_request: usize,
    /// The maximum nesting depth of the JSON body.
    pub max_depth: usize,
    /// The capability URIs the server supports (the keys of the Session's `capabilities`).
    pub capabilities: BTreeSet<String>,
}

impl RequestLimits {
    /// The limits advertised by `core`, supporting the given capabilities (the core
    /// capability is always included).
    #[must_use]
    pub fn new<I, S>(core: &CoreCapability, capabilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut capabilities: BTreeSet<String> = capabilities.into_iter().map(Into::into).collect();
        capabilities.insert(CORE.to_owned());
        Self {
            max_size_request: usize::try_from(core.max_size_request).unwrap_or(usize::MAX),
            max_calls_in_request: usize::try_from(core.max_calls_in_request).unwrap_or(usize::MAX),
            max_depth: DEFAULT_MAX_DEPTH,
            capabilities,
        }
    }

    /// The limits and capabilities a [`Session`] advertises.
    #[must_use]
    pub fn from_session(session: &Session) -> Self {
        Self::new(&session.core, session.capability_names())
    }
}

/// Parses and validates a JMAP request body (RFC 8620 §3.3, §3.6.1).
///
/// Checks, in order: the body size (`limit`/`maxSizeRequest`), strict I-JSON
/// ([`crate::json`], `notJSON`), the Request shape (`notRequest`), every `using` entry against
/// [`RequestLimits::capabilities`] (`unknownCapability`), and the number of method calls
/// (`limit`/`maxCallsInRequest`). Whether a method's capability is in `using` is checked
/// per call by the dispatcher (`unknownMethod`).
///
/// # Errors
/// The request-level error to return to the client.
pub fn parse_request(body: &[u8], limits: &RequestLimits) -> Result<Request, ProblemDetails> {
    let json_limits = JsonLimits {
        max_size: limits.max_size_request,
        max_depth: limits.max_depth,
    };
    let value = json::parse(body, &json_limits).map_err(|e| match e {
        JsonError::TooLarge { .. } => ProblemDetails::limit(
            "maxSizeRequest",
            format!(
                "The request is larger than {} bytes.",
                limits.max_size_request
            ),
        ),
        other => ProblemDetails::not_json(format!("The request is not valid I-JSON: {other}.")),
    })?;
    let request = Request::from_value(value)?;
    if let Some(unknown) = request
        .using
        .iter()
        .find(|c| !limits.capabilities.contains(*c))
    {
        return Err(ProblemDetails::unknown_capability(unknown));
    }
    if request.method_calls.len() > limits.max_calls_in_request {
        return Err(ProblemDetails::limit(
            "maxCallsInRequest",
            format!(
                "The request has {} method calls; at most {} are allowed.",
                request.method_calls.len(),
                limits.max_calls_in_request
            ),
        ));
    }
    Ok(request)
}

/// A request-level error as an RFC 7807 problem details object (RFC 8620 §3.6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemDetails {
    /// The error type URI, e.g. [`NOT_JSON`].
    pub type_: String,
    /// The HTTP status code (400 for every JMAP request-level error).
    pub status: u16,
    /// A human-readable explanation.
    pub detail: String,
    /// For [`LIMIT`]: the name of the limit that was exceeded (e.g. `maxCallsInRequest`).
    pub limit: Option<String>,
}

impl fmt::Display for ProblemDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.type_, self.status, self.detail)
    }
}

impl std::error::Error for ProblemDetails {}

impl ProblemDetails {
    fn new(type_: &str, detail: String, limit: Option<String>) -> Self {
        Self {
            type_: type_.to_owned(),
            status: 400,
            detail,
            limit,
        }
    }

    /// `notJSON`: the body is not I-JSON, or the content type is not `application/json`.
    #[must_use]
    pub fn not_json(detail: impl Into<String>) -> Self {
        Self::new(NOT_JSON, detail.into(), None)
    }

    /// `notRequest`: the body is JSON but not a Request object.
    #[must_use]
    pub fn not_request(detail: impl Into<String>) -> Self {
        Self::new(NOT_REQUEST, detail.into(), None)
    }

    /// `unknownCapability` naming the unsupported capability.
    #[must_use]
    pub fn unknown_capability(capability: &str) -> Self {
        let quoted: String = capability.chars().take(256).collect();
        Self::new(
            UNKNOWN_CAPABILITY,
            format!(
                "The Request object used capability '{quoted}', which is not supported by this server."
            ),
            None,
        )
    }

    /// `limit` naming the limit (`maxSizeRequest`, `maxCallsInRequest`,
    /// `maxConcurrentRequests`, …).
    #[must_use]
    pub fn limit(limit: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(LIMIT, detail.into(), Some(limit.into()))
    }

    /// The HTTP status code to send.
    #[must_use]
    pub const fn http_status(&self) -> u16 {
        self.status
    }

    /// The problem details body: `{"type", "status", "detail", "limit"?}`; send it with
    /// [`PROBLEM_CONTENT_TYPE`].
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".to_owned(), Value::String(self.type_.clone()));
        obj.insert("status".to_owned(), Value::from(self.status));
        obj.insert("detail".to_owned(), Value::String(self.detail.clone()));
        if let Some(limit) = &self.limit {
            obj.insert("limit".to_owned(), Value::String(limit.clone()));
        }
        Value::Object(obj)
    }
}

impl Serialize for ProblemDetails {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::MAIL;
    use serde_json::json;

    fn limits() -> RequestLimits {
        RequestLimits::new(&CoreCapability::default(), [MAIL])
    }

    fn parse(body: &str) -> Result<Request, ProblemDetails> {
        parse_request(body.as_bytes(), &limits())
    }

    fn err_type(body: &str) -> String {
        parse(body).unwrap_err().type_
    }

    #[test]
    fn rfc8620_3_3_1_request_example() {
        let body = r#"{
  "using": [ "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail" ],
  "methodCalls": [
    [ "method1", {
      "arg1": "arg1data",
      "arg2": "arg2data"
    }, "c1" ],
    [ "method2", {
      "arg1": "arg1data"
    }, "c2" ],
    [ "method3", {}, "c3" ]
  ]
}"#;
        let req = parse(body).unwrap();
        assert_eq!(
            req.using,
            ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
        );
        assert_eq!(req.method_calls.len(), 3);
        assert_eq!(req.method_calls[0].name, "method1");
        assert_eq!(req.method_calls[0].call_id, "c1");
        assert_eq!(
            Value::Object(req.method_calls[0].arguments.clone()),
            json!({"arg1": "arg1data", "arg2": "arg2data"})
        );
        assert_eq!(req.method_calls[2].arguments, Map::new());
        assert_eq!(req.created_ids, None);
        assert_eq!(req.to_json(), serde_json::from_str::<Value>(body).unwrap());
        assert_eq!(
            serde_json::to_value(&req.method_calls[1]).unwrap(),
            json!(["method2", {"arg1": "arg1data"}, "c2"])
        );
    }

    #[test]
    fn created_ids() {
        let req = parse(r#"{"using":[],"methodCalls":[],"createdIds":{"k1":"M1"}}"#).unwrap();
        assert_eq!(
            req.created_ids,
            Some(CreatedIds::from([("k1".into(), "M1".into())]))
        );
        let req = parse(r#"{"using":[],"methodCalls":[],"createdIds":{}}"#).unwrap();
        assert_eq!(req.created_ids, Some(CreatedIds::new()));
        let req = parse(r#"{"using":[],"methodCalls":[],"createdIds":null}"#).unwrap();
        assert_eq!(req.created_ids, None);
        for bad in [
            r#"{"using":[],"methodCalls":[],"createdIds":[]}"#,
            r#"{"using":[],"methodCalls":[],"createdIds":{"k1":1}}"#,
            r#"{"using":[],"methodCalls":[],"createdIds":{"k 1":"M1"}}"#,
            r#"{"using":[],"methodCalls":[],"createdIds":{"k1":""}}"#,
        ] {
            assert_eq!(err_type(bad), NOT_REQUEST, "{bad}");
        }
    }

    #[test]
    fn not_json() {
        for bad in ["", "{", "not json", r#"{"using":[],"methodCalls":[],}"#] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.type_, NOT_JSON, "{bad}");
            assert_eq!(e.status, 400);
            assert_eq!(e.limit, None);
        }
        let e = parse_request(b"{\"using\":[\"\xff\"],\"methodCalls\":[]}", &limits()).unwrap_err();
        assert_eq!(e.type_, NOT_JSON);
    }

    #[test]
    fn duplicate_keys_are_not_json() {
        let e = parse(r#"{"using":[],"using":[],"methodCalls":[]}"#).unwrap_err();
        assert_eq!(e.type_, NOT_JSON);
        assert!(e.detail.contains("duplicate"), "{}", e.detail);
        let e =
            parse(r#"{"using":[],"methodCalls":[["Core/echo",{"a":1,"a":2},"c"]]}"#).unwrap_err();
        assert_eq!(e.type_, NOT_JSON);
    }

    #[test]
    fn wrong_shapes_are_not_request() {
        for bad in [
            "[]",
            "\"x\"",
            "null",
            "{}",
            r#"{"using":[]}"#,
            r#"{"methodCalls":[]}"#,
            r#"{"using":"urn:ietf:params:jmap:core","methodCalls":[]}"#,
            r#"{"using":[1],"methodCalls":[]}"#,
            r#"{"using":[],"methodCalls":{}}"#,
            r#"{"using":[],"methodCalls":[{}]}"#,
            r#"{"using":[],"methodCalls":[["Core/echo",{}]]}"#,
            r#"{"using":[],"methodCalls":[["Core/echo",{},"c","extra"]]}"#,
            r#"{"using":[],"methodCalls":[[1,{},"c"]]}"#,
            r#"{"using":[],"methodCalls":[["Core/echo",[],"c"]]}"#,
            r#"{"using":[],"methodCalls":[["Core/echo",null,"c"]]}"#,
            r#"{"using":[],"methodCalls":[["Core/echo",{},1]]}"#,
            r#"{"using":[],"methodCalls":["Core/echo"]}"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.type_, NOT_REQUEST, "{bad}");
            assert_eq!(e.status, 400);
        }
        // Unknown members of the Request object are ignored.
        assert!(parse(r#"{"using":[],"methodCalls":[],"extension":true}"#).is_ok());
    }

    #[test]
    fn unknown_capability() {
        let e = parse(r#"{"using":["urn:ietf:params:jmap:core","https://example.com/apis/foobar"],"methodCalls":[]}"#)
            .unwrap_err();
        assert_eq!(e.type_, UNKNOWN_CAPABILITY);
        assert_eq!(
            e.to_json(),
            json!({
                "type": "urn:ietf:params:jmap:error:unknownCapability",
                "status": 400,
                "detail": "The Request object used capability 'https://example.com/apis/foobar', which is not supported by this server."
            })
        );
    }

    #[test]
    fn too_many_calls_is_limit() {
        let mut l = limits();
        l.max_calls_in_request = 2;
        let call = r#"["Core/echo",{},"c"]"#;
        let body = |n: usize| {
            format!(
                r#"{{"using":["urn:ietf:params:jmap:core"],"methodCalls":[{}]}}"#,
                vec![call; n].join(",")
            )
        };
        assert!(parse_request(body(2).as_bytes(), &l).is_ok());
        let e = parse_request(body(3).as_bytes(), &l).unwrap_err();
        assert_eq!(e.type_, LIMIT);
        assert_eq!(e.limit.as_deref(), Some("maxCallsInRequest"));
        assert_eq!(e.http_status(), 400);
        let j = e.to_json();
        assert_eq!(j["type"], "urn:ietf:params:jmap:error:limit");
        assert_eq!(j["limit"], "maxCallsInRequest");
        assert_eq!(j["status"], 400);
        assert!(j["detail"].is_string());
    }

    #[test]
    fn too_large_is_limit() {
        let mut l = limits();
        l.max_size_request = 10;
        let e = parse_request(br#"{"using":[],"methodCalls":[]}"#, &l).unwrap_err();
        assert_eq!(e.type_, LIMIT);
        assert_eq!(e.limit.as_deref(), Some("maxSizeRequest"));
        assert_eq!(e.to_json()["limit"], "maxSizeRequest");
    }

    #[test]
    fn too_deep_is_not_json() {
        let args = format!("{}{}", "[".repeat(70), "]".repeat(70));
        let body = format!(r#"{{"using":[],"methodCalls":[["Core/echo",{{"a":{args}}},"c"]]}}"#);
        assert_eq!(err_type(&body), NOT_JSON);
    }

    #[test]
    fn problem_details_serialisation() {
        let p = ProblemDetails::not_json("bad");
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"type": "urn:ietf:params:jmap:error:notJSON", "status": 400, "detail": "bad"})
        );
        assert_eq!(
            ProblemDetails::not_request("x").to_json()["type"],
            "urn:ietf:params:jmap:error:notRequest"
        );
        assert_eq!(
            ProblemDetails::limit("maxConcurrentRequests", "busy").to_json(),
            json!({
                "type": "urn:ietf:params:jmap:error:limit",
                "status": 400,
                "detail": "busy",
                "limit": "maxConcurrentRequests"
            })
        );
        assert!(p.to_string().contains("notJSON"));
    }
}
