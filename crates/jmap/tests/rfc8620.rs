#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! End-to-end checks of the JMAP core against RFC 8620, from request bytes to response JSON,
//! and property tests that nothing panics on hostile input.

use keyscope_jmap::capabilities::{CORE, CoreCapability, MAIL};
use keyscope_jmap::json::{self, JsonLimits};
use keyscope_jmap::reference::{escape_token, parse_pointer};
use keyscope_jmap::request::{LIMIT, NOT_JSON, NOT_REQUEST, UNKNOWN_CAPABILITY};
use keyscope_jmap::{
    CreatedIds, Dispatcher, MethodError, MethodResponses, RequestLimits, apply_patch,
    evaluate_pointer, parse_request,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn limits() -> RequestLimits {
    RequestLimits::new(&CoreCapability::default(), [MAIL])
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// A toy server: `Foo/changes` reports two created records; `Foo/get` lists the ids it got.
fn foo_methods(
    name: &str,
    args: Map<String, Value>,
    _: &mut CreatedIds,
) -> Result<MethodResponses, MethodError> {
    match name {
        "Foo/changes" => Ok(vec![(
            name.to_owned(),
            obj(json!({
                "accountId": args.get("accountId").cloned().unwrap_or(Value::Null),
                "oldState": "abcdef",
                "newState": "123456",
                "hasMoreChanges": false,
                "created": ["f1", "f4"],
                "updated": [],
                "destroyed": []
            })),
        )]),
        "Foo/get" => {
            let ids = args
                .get("ids")
                .cloned()
                .ok_or_else(|| MethodError::invalid_arguments("ids required"))?;
            let list: Vec<Value> = ids
                .as_array()
                .ok_or_else(|| MethodError::invalid_arguments("ids must be an array"))?
                .iter()
                .map(|id| json!({"id": id}))
                .collect();
            Ok(vec![(
                name.to_owned(),
                obj(json!({"accountId": "A1", "state": "123456", "list": list, "notFound": []})),
            )])
        }
        _ => Err(MethodError::unknown_method()),
    }
}

fn foo_dispatcher() -> Dispatcher {
    Dispatcher::new()
        .with_method("Foo/changes", MAIL)
        .with_method("Foo/get", MAIL)
}

#[test]
fn rfc8620_3_7_first_example_end_to_end() {
    let body = br##"{
      "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
      "methodCalls": [
        [ "Foo/changes", { "accountId": "A1", "sinceState": "abcdef" }, "t0" ],
        [ "Foo/get", {
            "accountId": "A1",
            "#ids": { "resultOf": "t0", "name": "Foo/changes", "path": "/created" }
        }, "t1" ]
      ]
    }"##;
    let request = parse_request(body, &limits()).unwrap();
    let response = foo_dispatcher().run(request, &mut foo_methods, "s1");
    assert_eq!(
        response.to_json()["methodResponses"][1],
        json!(["Foo/get", {
            "accountId": "A1", "state": "123456",
            "list": [{"id": "f1"}, {"id": "f4"}], "notFound": []
        }, "t1"])
    );
}

#[test]
fn request_level_errors_end_to_end() {
    let l = limits();
    let cases: [(&[u8], &str); 5] = [
        (b"{\"using\":[],\"methodCalls\":[],\"using\":[]}", NOT_JSON),
        (b"\xfe\xff", NOT_JSON),
        (
            b"{\"using\":[],\"methodCalls\":[[\"Core/echo\",{}]]}",
            NOT_REQUEST,
        ),
        (
            b"{\"using\":[\"urn:example:nope\"],\"methodCalls\":[]}",
            UNKNOWN_CAPABILITY,
        ),
        (
            b"{\"using\":[],\"methodCalls\":[],\"createdIds\":\"x\"}",
            NOT_REQUEST,
        ),
    ];
    for (body, expected) in cases {
        let problem = parse_request(body, &l).unwrap_err();
        assert_eq!(problem.type_, expected);
        let j = problem.to_json();
        assert_eq!(j["status"], 400);
        assert!(j["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(j.get("limit").is_none());
    }
    let calls = vec![r#"["Core/echo",{},"c"]"#; 17].join(",");
    let body = format!(r#"{{"using":["{CORE}"],"methodCalls":[{calls}]}}"#);
    let problem = parse_request(body.as_bytes(), &l).unwrap_err();
    assert_eq!(problem.type_, LIMIT);
    assert_eq!(problem.to_json()["limit"], "maxCallsInRequest");
}

#[test]
fn mismatched_and_missing_references_end_to_end() {
    let body = br##"{
      "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
      "methodCalls": [
        [ "Foo/changes", { "accountId": "A1", "sinceState": "abcdef" }, "t0" ],
        [ "Foo/get", { "#ids": { "resultOf": "t0", "name": "Foo/query", "path": "/created" } }, "t1" ],
        [ "Foo/get", { "#ids": { "resultOf": "zz", "name": "Foo/changes", "path": "/created" } }, "t2" ],
        [ "Foo/get", { "ids": [], "#ids": { "resultOf": "t0", "name": "Foo/changes", "path": "/created" } }, "t3" ]
      ]
    }"##;
    let request = parse_request(body, &limits()).unwrap();
    let response = foo_dispatcher()
        .run(request, &mut foo_methods, "s1")
        .to_json();
    let responses = response["methodResponses"].as_array().unwrap();
    assert_eq!(responses[1][0], "error");
    assert_eq!(responses[1][1]["type"], "invalidResultReference");
    assert_eq!(responses[1][2], "t1");
    assert_eq!(responses[2][1]["type"], "invalidResultReference");
    assert_eq!(responses[3][1]["type"], "invalidArguments");
}

/// A handler with state, implementing the trait on a struct.
struct Counter {
    calls: usize,
}

impl keyscope_jmap::Methods for Counter {
    fn call(
        &mut self,
        name: &str,
        _arguments: Map<String, Value>,
        created_ids: &mut CreatedIds,
    ) -> Result<MethodResponses, MethodError> {
        self.calls += 1;
        created_ids.insert(format!("k{}", self.calls), format!("C{}", self.calls));
        Ok(vec![(name.to_owned(), obj(json!({"n": self.calls})))])
    }
}

#[test]
fn struct_handler_and_created_ids_in_response() {
    let body = br#"{"using":["urn:ietf:params:jmap:core"],"createdIds":{},
        "methodCalls":[["C/x",{},"a"],["C/x",{},"b"]]}"#;
    let request = parse_request(body, &limits()).unwrap();
    let mut counter = Counter { calls: 0 };
    let response = Dispatcher::new()
        .with_method("C/x", CORE)
        .run(request, &mut counter, "s9");
    assert_eq!(
        response.to_json(),
        json!({
            "methodResponses": [["C/x", {"n": 1}, "a"], ["C/x", {"n": 2}, "b"]],
            "createdIds": {"k1": "C1", "k2": "C2"},
            "sessionState": "s9"
        })
    );
}

/// JSON values without floats (whose textual round trip is not what is being tested).
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || (c & 0xFFFE) == 0xFFFE
}

fn contains_noncharacter(v: &Value) -> bool {
    match v {
        Value::String(s) => s.chars().any(is_noncharacter),
        Value::Array(a) => a.iter().any(contains_noncharacter),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| k.chars().any(is_noncharacter) || contains_noncharacter(v)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_request_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = parse_request(&bytes, &limits());
    }

    #[test]
    fn parse_request_never_panics_on_jsonish_text(
        text in "[\\[\\]{}\",:0-9a-z#/ \\\\u.eE+-]{0,200}"
    ) {
        let _ = parse_request(text.as_bytes(), &limits());
    }

    #[test]
    fn strict_parser_agrees_with_serde_json(value in arb_json()) {
        prop_assume!(!contains_noncharacter(&value));
        let compact = serde_json::to_vec(&value).unwrap();
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        let l = JsonLimits::with_max_size(1 << 20);
        prop_assert_eq!(json::parse(&compact, &l).unwrap(), value.clone());
        prop_assert_eq!(json::parse(&pretty, &l).unwrap(), value);
    }

    #[test]
    fn strict_parser_accepts_only_what_serde_json_accepts(
        text in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,64}"
    ) {
        if let Ok(ours) = json::parse(text.as_bytes(), &JsonLimits::with_max_size(1 << 20)) {
            let theirs: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn dispatch_never_panics_on_any_request(
        calls in prop::collection::vec(
            (
                prop_oneof![Just("Foo/changes"), Just("Foo/get"), Just("Core/echo"), Just("Bar/x")],
                arb_json(),
                "[a-z0-9]{0,3}",
                prop::option::of(("[a-z0-9]{0,3}", "(/[a-z*0-9~]{0,4}){0,3}")),
            ),
            0..8,
        )
    ) {
        let method_calls: Vec<Value> = calls
            .into_iter()
            .map(|(name, args, call_id, reference)| {
                let mut args = match args { Value::Object(m) => m, other => obj(json!({"x": other})) };
                if let Some((result_of, path)) = reference {
                    args.insert(
                        "#ids".into(),
                        json!({"resultOf": result_of, "name": "Foo/changes", "path": path}),
                    );
                }
                json!([name, args, call_id])
            })
            .collect();
        let n = method_calls.len();
        let body = serde_json::to_vec(&json!({"using": [CORE, MAIL], "methodCalls": method_calls})).unwrap();
        if let Ok(request) = parse_request(&body, &limits()) {
            let response = foo_dispatcher().run(request, &mut foo_methods, "s");
            prop_assert!(response.method_responses.len() >= n);
        }
    }

    #[test]
    fn pointer_escaping_round_trips(tokens in prop::collection::vec("[a-z~/*0-9]{0,5}", 0..5)) {
        let pointer: String = tokens.iter().map(|t| format!("/{}", escape_token(t))).collect();
        prop_assert_eq!(parse_pointer(&pointer).unwrap(), tokens);
    }

    #[test]
    fn pointer_and_patch_never_panic(doc in arb_json(), pointer in "(/[a-z*0-9~]{0,3}){0,4}", patch in arb_json()) {
        let _ = evaluate_pointer(&doc, &pointer);
        if let (Value::Object(d), Value::Object(p)) = (&doc, &patch) {
            let _ = apply_patch(d, p);
        }
    }
}
