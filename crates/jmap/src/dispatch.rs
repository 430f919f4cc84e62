//! Running a Request's method calls in order and building the Response (RFC 8620 §3.3–§3.4,
//! §3.6.2, §3.7, §4).
//!
//! The [`Dispatcher`] knows which capability each method belongs to; the caller supplies the
//! methods. Two ways to drive it:
//!
//! - [`Dispatcher::run`] with a synchronous [`Methods`] implementation;
//! - [`Dispatcher::start`], which returns an [`Execution`]: call [`Execution::next_call`] to get
//!   the next call that needs the server (already reference-resolved and capability-checked),
//!   run it however you like (e.g. `.await` it), report the outcome with
//!   [`Execution::complete`], and finally call [`Execution::finish`]. This is the async-friendly
//!   form; `run` is built on it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::capabilities::CORE;
use crate::error::{MethodError, MethodErrorType};
use crate::reference::resolve_references;
use crate::request::{CreatedIds, Invocation, Request, created_ids_json};

/// The name of the built-in echo method (RFC 8620 §4).
pub const CORE_ECHO: &str = "Core/echo";

/// The responses a successful method call produces: (response name, arguments) pairs, usually
/// one named like the method, sometimes followed by implicit calls' responses (e.g. `Email/set`
/// after `EmailSubmission/set` with `onSuccessUpdateEmail`).
pub type MethodResponses = Vec<(String, Map<String, Value>)>;

/// The server's methods.
pub trait Methods {
    /// Runs method `name` with `arguments` (result references already resolved).
    ///
    /// `created_ids` is the request's creation id map: look creation id references up in it
    /// (see [`crate::reference::resolve_creation_id`]) and add every record created. A method
    /// must return at least one response; an empty list is recorded as `serverFail`.
    ///
    /// # Errors
    /// A method-level error; it becomes the call's only response, `["error", …, callId]`.
    fn call(
        &mut self,
        name: &str,
        arguments: Map<String, Value>,
        created_ids: &mut CreatedIds,
    ) -> Result<MethodResponses, MethodError>;
}

impl<F> Methods for F
where
    F: FnMut(&str, Map<String, Value>, &mut CreatedIds) -> Result<MethodResponses, MethodError>,
{
    fn call(
        &mut self,
        name: &str,
        arguments: Map<String, Value>,
        created_ids: &mut CreatedIds,
    ) -> Result<MethodResponses, MethodError> {
        self(name, arguments, created_ids)
    }
}

/// The method registry: which methods exist and which capability each needs in `using`.
///
/// [`CORE_ECHO`] is always registered (under [`CORE`]) and is answered by the dispatcher
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatcher {
    methods: BTreeMap<String, String>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher {
    /// A dispatcher that knows only [`CORE_ECHO`].
    #[must_use]
    pub fn new() -> Self {
        let mut methods = BTreeMap::new();
        methods.insert(CORE_ECHO.to_owned(), CORE.to_owned());
        Self { methods }
    }

    /// Registers a method and the capability it belongs to (e.g. `Email/get`,
    /// `urn:ietf:params:jmap:mail`).
    pub fn register(&mut self, method: impl Into<String>, capability: impl Into<String>) {
        self.methods.insert(method.into(), capability.into());
    }

    /// [`Dispatcher::register`] in builder style.
    #[must_use]
    pub fn with_method(mut self, method: impl Into<String>, capability: impl Into<String>) -> Self {
        self.register(method, capability);
        self
    }

    /// The capability a method belongs to, if the method is registered.
    #[must_use]
    pub fn capability_of(&self, method: &str) -> Option<&str> {
        self.methods.get(method).map(String::as_str)
    }

    /// Starts executing a request step by step (see [`Execution`]).
    #[must_use]
    pub fn start(&self, request: Request) -> Execution<'_> {
        let return_created_ids = request.created_ids.is_some();
        Execution {
            dispatcher: self,
            using: request.using.into_iter().collect(),
            calls: request.method_calls.into_iter(),
            responses: Vec::new(),
            created_ids: request.created_ids.unwrap_or_default(),
            return_created_ids,
            outstanding: None,
        }
    }

    /// Runs every method call of `request` against `methods` and returns the Response.
    ///
    /// `session_state` is the Session's current `state`; if the methods changed the Session,
    /// overwrite [`Response::session_state`] afterwards.
    pub fn run<M: Methods + ?Sized>(
        &self,
        request: Request,
        methods: &mut M,
        session_state: impl Into<String>,
    ) -> Response {
        let mut execution = self.start(request);
        while let Some(call) = execution.next_call() {
            let result = methods.call(&call.name, call.arguments, execution.created_ids_mut());
            execution.complete(result);
        }
        execution.finish(session_state)
    }
}

/// A method call ready for the server: references resolved, method known, capability in
/// `using`.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCall {
    /// The method name.
    pub name: String,
    /// The arguments, with result references resolved.
    pub arguments: Map<String, Value>,
    /// The method call id (the dispatcher attaches it to the responses).
    pub call_id: String,
}

/// A request being executed (see [`Dispatcher::start`]).
///
/// For each method call, in order: an unregistered method, or one whose capability is not in
/// `using`, gets `unknownMethod`; then result references are resolved against the responses so
/// far (`invalidArguments`/`invalidResultReference` on failure); [`CORE_ECHO`] is answered
/// directly with its arguments; anything else is returned by [`Execution::next_call`].
#[derive(Debug)]
pub struct Execution<'d> {
    dispatcher: &'d Dispatcher,
    using: BTreeSet<String>,
    calls: std::vec::IntoIter<Invocation>,
    responses: Vec<Invocation>,
    created_ids: CreatedIds,
    return_created_ids: bool,
    outstanding: Option<String>,
}

impl Execution<'_> {
    fn push_error(&mut self, error: &MethodError, call_id: String) {
        self.responses
            .push(Invocation::new("error", error.to_arguments(), call_id));
    }

    fn not_completed(&mut self) {
        if let Some(call_id) = self.outstanding.take() {
            let error = MethodError::server_fail("the method call was not completed");
            self.push_error(&error, call_id);
        }
    }

    /// The next method call the server must run, or `None` when all calls are done.
    ///
    /// Report its outcome with [`Execution::complete`] before asking for the next one; a call
    /// that is never completed is answered with `serverFail`.
    pub fn next_call(&mut self) -> Option<PendingCall> {
        self.not_completed();
        while let Some(Invocation {
            name,
            arguments,
            call_id,
        }) = self.calls.next()
        {
            let capability_ok = self
                .dispatcher
                .capability_of(&name)
                .is_some_and(|capability| self.using.contains(capability));
            if !capability_ok {
                let quoted: String = name.chars().take(64).collect();
                let error = match self.dispatcher.capability_of(&name) {
                    None => MethodError::unknown_method()
                        .with_description(format!("unknown method \"{quoted}\"")),
                    Some(capability) => MethodError::unknown_method().with_description(format!(
                        "method \"{quoted}\" needs capability \"{capability}\" in \"using\""
                    )),
                };
                self.push_error(&error, call_id);
                continue;
            }
            let arguments = match resolve_references(arguments, &self.responses) {
                Ok(arguments) => arguments,
                Err(error) => {
                    self.push_error(&error, call_id);
                    continue;
                }
            };
            if name == CORE_ECHO {
                self.responses
                    .push(Invocation::new(name, arguments, call_id));
                continue;
            }
            self.outstanding = Some(call_id.clone());
            return Some(PendingCall {
                name,
                arguments,
                call_id,
            });
        }
        None
    }

    /// Records the outcome of the call last returned by [`Execution::next_call`]: each
    /// response gets that call's id; an error becomes `["error", …, callId]`; an empty list
    /// becomes `serverFail`.
    ///
    /// Returns `false` (and records nothing) if no call was outstanding.
    pub fn complete(&mut self, result: Result<MethodResponses, MethodError>) -> bool {
        let Some(call_id) = self.outstanding.take() else {
            return false;
        };
        match result {
            Ok(responses) if responses.is_empty() => {
                let error = MethodError::server_fail("the method produced no response");
                self.push_error(&error, call_id);
            }
            Ok(responses) => {
                for (name, arguments) in responses {
                    self.responses
                        .push(Invocation::new(name, arguments, call_id.clone()));
                }
            }
            Err(error) => self.push_error(&error, call_id),
        }
        true
    }

    /// The creation id map so far.
    #[must_use]
    pub const fn created_ids(&self) -> &CreatedIds {
        &self.created_ids
    }

    /// The creation id map, for the server to look up and add creation ids.
    pub const fn created_ids_mut(&mut self) -> &mut CreatedIds {
        &mut self.created_ids
    }

    /// The responses so far.
    #[must_use]
    pub fn responses(&self) -> &[Invocation] {
        &self.responses
    }

    /// The capabilities the client listed in `using`.
    #[must_use]
    pub const fn using(&self) -> &BTreeSet<String> {
        &self.using
    }

    /// Finishes the request and builds the Response. Calls not yet run are not answered (so
    /// call this after [`Execution::next_call`] returned `None`); an outstanding call gets
    /// `serverFail`.
    #[must_use]
    pub fn finish(mut self, session_state: impl Into<String>) -> Response {
        self.not_completed();
        Response {
            method_responses: self.responses,
            created_ids: self.return_created_ids.then_some(self.created_ids),
            session_state: session_state.into(),
        }
    }
}

/// A JMAP Response object (RFC 8620 §3.4).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The responses, in the order produced.
    pub method_responses: Vec<Invocation>,
    /// The final creation id map; present only if the request had `createdIds`.
    pub created_ids: Option<CreatedIds>,
    /// The Session's current `state`.
    pub session_state: String,
}

impl Response {
    /// The JSON form: `{"methodResponses", "createdIds"?, "sessionState"}`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert(
            "methodResponses".to_owned(),
            Value::Array(
                self.method_responses
                    .iter()
                    .map(Invocation::to_json)
                    .collect(),
            ),
        );
        if let Some(ids) = &self.created_ids {
            obj.insert("createdIds".to_owned(), created_ids_json(ids));
        }
        obj.insert(
            "sessionState".to_owned(),
            Value::String(self.session_state.clone()),
        );
        Value::Object(obj)
    }

    /// Whether any method call failed (some response is named `error`).
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.method_responses.iter().any(|r| r.name == "error")
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// The method error type for a response named `error`, if `response` is one.
#[must_use]
pub fn error_type(response: &Invocation) -> Option<MethodErrorType> {
    if response.name != "error" {
        return None;
    }
    response
        .arguments
        .get("type")
        .and_then(Value::as_str)
        .map(MethodErrorType::from_wire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::MAIL;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn request(using: &[&str], calls: Value) -> Request {
        Request::from_value(json!({"using": using, "methodCalls": calls})).unwrap()
    }

    #[test]
    fn rfc8620_3_4_1_response_example() {
        let dispatcher = Dispatcher::new()
            .with_method("method1", MAIL)
            .with_method("method2", MAIL);
        let req = request(
            &[CORE, MAIL],
            json!([
                ["method1", {"arg1": "arg1data", "arg2": "arg2data"}, "c1"],
                ["method2", {"arg1": "arg1data"}, "c2"],
                ["method3", {}, "c3"]
            ]),
        );
        let mut methods = |name: &str,
                           _args: Map<String, Value>,
                           _ids: &mut CreatedIds|
         -> Result<MethodResponses, MethodError> {
            Ok(match name {
                "method1" => vec![("method1".to_owned(), obj(json!({"arg1": 3, "arg2": "foo"})))],
                "method2" => vec![
                    ("method2".to_owned(), obj(json!({"isBlah": true}))),
                    (
                        "anotherResponseFromMethod2".to_owned(),
                        obj(json!({"data": 10, "yetmoredata": "Hello"})),
                    ),
                ],
                _ => return Err(MethodError::unknown_method()),
            })
        };
        let response = dispatcher.run(req, &mut methods, "75128aab4b1b");
        let mut json = response.to_json();
        // Our unknownMethod carries a description; the RFC example shows just the type.
        json["methodResponses"][3][1]
            .as_object_mut()
            .unwrap()
            .remove("description");
        assert_eq!(
            json,
            json!({
                "methodResponses": [
                    ["method1", {"arg1": 3, "arg2": "foo"}, "c1"],
                    ["method2", {"isBlah": true}, "c2"],
                    ["anotherResponseFromMethod2", {"data": 10, "yetmoredata": "Hello"}, "c2"],
                    ["error", {"type": "unknownMethod"}, "c3"]
                ],
                "sessionState": "75128aab4b1b"
            })
        );
        assert!(response.has_errors());
        assert_eq!(
            error_type(&response.method_responses[3]),
            Some(MethodErrorType::UnknownMethod)
        );
        assert_eq!(error_type(&response.method_responses[0]), None);
        assert_eq!(
            serde_json::to_value(&response).unwrap()["sessionState"],
            "75128aab4b1b"
        );
    }

    fn never(
        _: &str,
        _: Map<String, Value>,
        _: &mut CreatedIds,
    ) -> Result<MethodResponses, MethodError> {
        panic!("the handler must not be called")
    }

    #[test]
    fn core_echo() {
        let req = request(
            &[CORE],
            json!([["Core/echo", {"hello": true, "high": 5}, "b3ff"]]),
        );
        let response = Dispatcher::new().run(req, &mut never, "s1");
        assert_eq!(
            response.to_json(),
            json!({
                "methodResponses": [["Core/echo", {"hello": true, "high": 5}, "b3ff"]],
                "sessionState": "s1"
            })
        );
    }

    #[test]
    fn capability_not_in_using_is_unknown_method() {
        let dispatcher = Dispatcher::new().with_method("Email/get", MAIL);
        let req = request(
            &[CORE],
            json!([["Email/get", {}, "a"], ["Core/echo", {}, "b"]]),
        );
        let response = dispatcher.run(req, &mut never, "s");
        assert_eq!(
            error_type(&response.method_responses[0]),
            Some(MethodErrorType::UnknownMethod)
        );
        assert_eq!(response.method_responses[0].call_id, "a");
        // Core/echo needs the core capability in `using` too.
        let req = request(&[MAIL], json!([["Core/echo", {}, "b"]]));
        let response = dispatcher.run(req, &mut never, "s");
        assert_eq!(
            error_type(&response.method_responses[0]),
            Some(MethodErrorType::UnknownMethod)
        );
    }

    #[test]
    fn rfc8620_3_7_star_example_through_the_dispatcher() {
        let dispatcher = Dispatcher::new()
            .with_method("Email/query", MAIL)
            .with_method("Email/get", MAIL)
            .with_method("Thread/get", MAIL);
        let req = request(
            &[CORE, MAIL],
            json!([
                ["Email/query", {
                    "accountId": "A1",
                    "filter": {"inMailbox": "id_of_inbox"},
                    "sort": [{"property": "receivedAt", "isAscending": false}],
                    "collapseThreads": true,
                    "position": 0,
                    "limit": 10,
                    "calculateTotal": true
                }, "t0"],
                ["Email/get", {
                    "accountId": "A1",
                    "#ids": {"resultOf": "t0", "name": "Email/query", "path": "/ids"},
                    "properties": ["threadId"]
                }, "t1"],
                ["Thread/get", {
                    "accountId": "A1",
                    "#ids": {"resultOf": "t1", "name": "Email/get", "path": "/list/*/threadId"}
                }, "t2"],
                ["Email/get", {
                    "accountId": "A1",
                    "#ids": {"resultOf": "t2", "name": "Thread/get", "path": "/list/*/emailIds"},
                    "properties": ["from", "receivedAt", "subject"]
                }, "t3"]
            ]),
        );
        let mut seen = Vec::new();
        let mut methods = |name: &str,
                           args: Map<String, Value>,
                           _: &mut CreatedIds|
         -> Result<MethodResponses, MethodError> {
            seen.push((name.to_owned(), args.get("ids").cloned()));
            let out = match (name, args.get("properties")) {
                ("Email/query", _) => {
                    json!({"accountId": "A1", "ids": ["msg1023", "msg223", "msg110"]})
                }
                ("Email/get", Some(p)) if p == &json!(["threadId"]) => {
                    json!({"accountId": "A1", "list": [
                    {"id": "msg1023", "threadId": "trd194"},
                    {"id": "msg223", "threadId": "trd114"},
                    {"id": "msg110", "threadId": "trd99"}
                ], "notFound": []})
                }
                ("Thread/get", _) => json!({"accountId": "A1", "list": [
                    {"id": "trd194", "emailIds": ["msg1020", "msg1021", "msg1023"]},
                    {"id": "trd114", "emailIds": ["msg201", "msg223"]},
                    {"id": "trd99", "emailIds": ["msg42", "msg110"]}
                ], "notFound": []}),
                _ => json!({"accountId": "A1", "list": [], "notFound": []}),
            };
            Ok(vec![(name.to_owned(), obj(out))])
        };
        let response = dispatcher.run(req, &mut methods, "s");
        assert!(!response.has_errors(), "{}", response.to_json());
        assert_eq!(
            seen,
            [
                ("Email/query".to_owned(), None),
                (
                    "Email/get".to_owned(),
                    Some(json!(["msg1023", "msg223", "msg110"]))
                ),
                (
                    "Thread/get".to_owned(),
                    Some(json!(["trd194", "trd114", "trd99"]))
                ),
                (
                    "Email/get".to_owned(),
                    Some(json!([
                        "msg1020", "msg1021", "msg1023", "msg201", "msg223", "msg42", "msg110"
                    ]))
                ),
            ]
        );
    }

    #[test]
    fn reference_errors_through_the_dispatcher() {
        let dispatcher = Dispatcher::new()
            .with_method("Foo/changes", CORE)
            .with_method("Foo/get", CORE);
        let req = request(
            &[CORE],
            json!([
                ["Foo/changes", {"accountId": "A1", "sinceState": "abcdef"}, "t0"],
                ["Foo/get", {"#ids": {"resultOf": "missing", "name": "Foo/changes", "path": "/created"}}, "t1"],
                ["Foo/get", {"#ids": {"resultOf": "t0", "name": "Foo/query", "path": "/created"}}, "t2"],
                ["Foo/get", {"ids": [], "#ids": {"resultOf": "t0", "name": "Foo/changes", "path": "/created"}}, "t3"],
                ["Foo/get", {"#ids": {"resultOf": "t0", "name": "Foo/changes", "path": "/created"}}, "t4"]
            ]),
        );
        let mut methods = |name: &str,
                           args: Map<String, Value>,
                           _: &mut CreatedIds|
         -> Result<MethodResponses, MethodError> {
            Ok(match name {
                "Foo/changes" => vec![(name.to_owned(), obj(json!({"created": ["f1", "f4"]})))],
                _ => vec![(name.to_owned(), obj(json!({"got": args["ids"].clone()})))],
            })
        };
        let r = dispatcher.run(req, &mut methods, "s");
        let types: Vec<_> = r.method_responses.iter().map(error_type).collect();
        assert_eq!(
            types,
            [
                None,
                Some(MethodErrorType::InvalidResultReference),
                Some(MethodErrorType::InvalidResultReference),
                Some(MethodErrorType::InvalidArguments),
                None,
            ]
        );
        assert_eq!(r.method_responses[4].arguments["got"], json!(["f1", "f4"]));
        let ids: Vec<_> = r
            .method_responses
            .iter()
            .map(|i| i.call_id.as_str())
            .collect();
        assert_eq!(ids, ["t0", "t1", "t2", "t3", "t4"]);
    }

    #[test]
    fn method_errors_and_empty_responses() {
        let dispatcher = Dispatcher::new()
            .with_method("A/fail", CORE)
            .with_method("A/empty", CORE);
        let req = request(&[CORE], json!([["A/fail", {}, "1"], ["A/empty", {}, "2"]]));
        let mut methods = |name: &str,
                           _: Map<String, Value>,
                           _: &mut CreatedIds|
         -> Result<MethodResponses, MethodError> {
            match name {
                "A/fail" => Err(MethodError::new(MethodErrorType::AccountNotFound)),
                _ => Ok(Vec::new()),
            }
        };
        let r = dispatcher.run(req, &mut methods, "s");
        assert_eq!(
            r.method_responses[0].to_json(),
            json!(["error", {"type": "accountNotFound"}, "1"])
        );
        assert_eq!(
            error_type(&r.method_responses[1]),
            Some(MethodErrorType::ServerFail)
        );
    }

    #[test]
    fn created_ids_flow_and_are_returned_only_if_sent() {
        let dispatcher = Dispatcher::new()
            .with_method("Foo/set", CORE)
            .with_method("Foo/get", CORE);
        let calls = json!([
            ["Foo/set", {"create": {"k2": {}}}, "0"],
            ["Foo/get", {"ids": ["#k1", "#k2"]}, "1"]
        ]);
        let mut methods = |name: &str,
                           args: Map<String, Value>,
                           created: &mut CreatedIds|
         -> Result<MethodResponses, MethodError> {
            if name == "Foo/set" {
                created.insert("k2".into(), "F2".into());
                return Ok(vec![(
                    name.to_owned(),
                    obj(json!({"created": {"k2": {"id": "F2"}}})),
                )]);
            }
            let ids = args["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| crate::reference::resolve_creation_id(id.as_str().unwrap(), created))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![(name.to_owned(), obj(json!({"ids": ids})))])
        };
        let mut req = request(&[CORE], calls.clone());
        req.created_ids = Some(CreatedIds::from([("k1".into(), "F1".into())]));
        let r = dispatcher.run(req, &mut methods, "s");
        assert_eq!(r.method_responses[1].arguments["ids"], json!(["F1", "F2"]));
        assert_eq!(r.to_json()["createdIds"], json!({"k1": "F1", "k2": "F2"}));

        let r = dispatcher.run(request(&[CORE], calls), &mut methods, "s");
        // Without the initial k1 the reference fails; and no createdIds in the response.
        assert_eq!(
            error_type(&r.method_responses[1]),
            Some(MethodErrorType::InvalidArguments)
        );
        assert!(r.to_json().get("createdIds").is_none());
        assert_eq!(r.created_ids, None);
    }

    #[test]
    fn step_by_step_execution() {
        let dispatcher = Dispatcher::new()
            .with_method("X/a", CORE)
            .with_method("X/b", CORE);
        let req = request(
            &[CORE],
            json!([["X/a", {"n": 1}, "1"], ["Core/echo", {"e": 1}, "2"], ["X/b", {}, "3"], ["X/a", {}, "4"]]),
        );
        let mut exec = dispatcher.start(req);
        assert!(!exec.complete(Ok(Vec::new())), "nothing outstanding yet");
        assert_eq!(exec.using().len(), 1);
        let call = exec.next_call().unwrap();
        assert_eq!((call.name.as_str(), call.call_id.as_str()), ("X/a", "1"));
        exec.created_ids_mut().insert("k".into(), "V".into());
        assert!(exec.complete(Ok(vec![("X/a".into(), call.arguments)])));
        // Core/echo is answered inline; X/b is next.
        let call = exec.next_call().unwrap();
        assert_eq!(call.name, "X/b");
        assert_eq!(exec.responses().len(), 2);
        // Not completing X/b: it is answered with serverFail when the next call is requested.
        let call = exec.next_call().unwrap();
        assert_eq!(call.call_id, "4");
        assert_eq!(
            error_type(&exec.responses()[2]),
            Some(MethodErrorType::ServerFail)
        );
        assert_eq!(exec.created_ids().len(), 1);
        // And the outstanding "4" is answered with serverFail by finish.
        let r = exec.finish("st");
        assert_eq!(r.method_responses.len(), 4);
        assert_eq!(r.method_responses[3].call_id, "4");
        assert_eq!(
            error_type(&r.method_responses[3]),
            Some(MethodErrorType::ServerFail)
        );
        assert_eq!(r.session_state, "st");
    }

    #[test]
    fn registry() {
        let mut d = Dispatcher::default();
        assert_eq!(d.capability_of(CORE_ECHO), Some(CORE));
        assert_eq!(d.capability_of("Email/get"), None);
        d.register("Email/get", MAIL);
        assert_eq!(d.capability_of("Email/get"), Some(MAIL));
    }
}
