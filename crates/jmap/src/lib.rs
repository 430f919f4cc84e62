//! The protocol core of Keyscope's JMAP server: RFC 8620 (JMAP core), with room for RFC 8621
//! (JMAP Mail) on top.
//!
//! This crate turns request bodies into validated [`Request`]s, runs their method calls through
//! a caller-supplied handler in the order and with the semantics RFC 8620 prescribes, and
//! produces the exact JSON of Responses, Session resources and errors. It does **no I/O**: no
//! sockets, no files, no clock, no storage, no authentication. The HTTP layer reads the body,
//! authenticates, calls [`parse_request`] and [`Dispatcher::run`] (or steps an [`Execution`]
//! with `.await`s in between), and writes the JSON back; the methods themselves (`Email/get`,
//! …) are the server's.
//!
//! # Modules
//! - [`json`]: a strict I-JSON (RFC 7493) parser: bounded size and depth, duplicate member
//!   names, surrogates and noncharacters refused.
//! - [`request`]: the Request object, [`Invocation`]s, [`parse_request`] and the request-level
//!   errors as RFC 7807 [`ProblemDetails`] (`notJSON`, `notRequest`, `unknownCapability`,
//!   `limit`).
//! - [`capabilities`]: the [`Session`] resource and the core capability's limits
//!   ([`CoreCapability`]), with URL template expansion.
//! - [`reference`](mod@reference): result references (`#name` arguments) with JSON Pointer and the `*`
//!   extension, and creation id references (`#creationId`).
//! - [`error`]: method-level errors ([`MethodError`]) and [`SetError`]s.
//! - [`dispatch`]: the [`Dispatcher`] (method registry, `using` checks, `Core/echo`) and the
//!   [`Response`] object.
//! - [`patch`]: PatchObjects for `/set` updates and the `Id` syntax check.
//!
//! # Example
//! ```
//! use keyscope_jmap::{CreatedIds, Dispatcher, MethodError, MethodResponses, RequestLimits};
//! use keyscope_jmap::capabilities::{CoreCapability, MAIL};
//! use serde_json::{Map, Value};
//!
//! let limits = RequestLimits::new(&CoreCapability::default(), [MAIL]);
//! let body = br#"{"using":["urn:ietf:params:jmap:core"],
//!                 "methodCalls":[["Core/echo",{"hello":true},"c1"]]}"#;
//! let request = keyscope_jmap::parse_request(body, &limits).map_err(|p| p.to_json())?;
//!
//! let dispatcher = Dispatcher::new().with_method("Mailbox/get", MAIL);
//! let mut methods = |name: &str, _args: Map<String, Value>, _ids: &mut CreatedIds|
//!     -> Result<MethodResponses, MethodError> { Err(MethodError::unknown_method()) };
//! let response = dispatcher.run(request, &mut methods, "session-state-1");
//! assert_eq!(
//!     response.to_json(),
//!     serde_json::json!({
//!         "methodResponses": [["Core/echo", {"hello": true}, "c1"]],
//!         "sessionState": "session-state-1"
//!     })
//! );
//! # Ok::<(), serde_json::Value>(())
//! ```
//!
//! # Conventions
//! Nothing here panics on any input; every client-supplied string quoted in an error message
//! is truncated. Method and property names are compared exactly (case-sensitive), as RFC 8620
//! requires.

#![forbid(unsafe_code)]

pub mod capabilities;
pub mod dispatch;
pub mod error;
pub mod json;
pub mod patch;
pub mod reference;
pub mod request;

pub use capabilities::{Account, CoreCapability, Session};
pub use dispatch::{
    CORE_ECHO, Dispatcher, Execution, MethodResponses, Methods, PendingCall, Response,
};
pub use error::{MethodError, MethodErrorType, SetError, SetErrorType};
pub use patch::{PatchObject, apply_patch, is_valid_id};
pub use reference::{ResultReference, evaluate_pointer, resolve_creation_id, resolve_references};
pub use request::{CreatedIds, Invocation, ProblemDetails, Request, RequestLimits, parse_request};
