//! Result references (RFC 8620 §3.7), JSON Pointer evaluation (RFC 6901 with the JMAP `*`
//! extension) and creation id references (RFC 8620 §3.3, §5.3).

use serde_json::{Map, Value};

use crate::error::MethodError;
use crate::request::{CreatedIds, Invocation};

/// How many characters of a client-supplied token an error description quotes.
const QUOTE_CHARS: usize = 64;

fn quote(s: &str) -> String {
    s.chars().take(QUOTE_CHARS).collect()
}

/// A reference to a previous method's result (RFC 8620 §3.7), the value of an argument whose
/// name starts with `#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultReference {
    /// The method call id of the previous call.
    pub result_of: String,
    /// The expected response name (e.g. `Foo/changes`).
    pub name: String,
    /// A JSON Pointer into the response's arguments, with the `*` extension.
    pub path: String,
}

impl ResultReference {
    /// Reads a ResultReference object: `resultOf`, `name` and `path`, all strings. Other
    /// members are ignored.
    ///
    /// # Errors
    /// `invalidResultReference` if the value is not a ResultReference.
    pub fn from_value(value: &Value) -> Result<Self, MethodError> {
        let member = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    MethodError::invalid_result_reference(format!(
                        "a ResultReference needs a string \"{name}\""
                    ))
                })
        };
        if !value.is_object() {
            return Err(MethodError::invalid_result_reference(
                "a ResultReference must be an object",
            ));
        }
        Ok(Self {
            result_of: member("resultOf")?,
            name: member("name")?,
            path: member("path")?,
        })
    }

    /// The JSON form `{"resultOf", "name", "path"}`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("resultOf".to_owned(), Value::String(self.result_of.clone()));
        obj.insert("name".to_owned(), Value::String(self.name.clone()));
        obj.insert("path".to_owned(), Value::String(self.path.clone()));
        Value::Object(obj)
    }

    /// Resolves the reference against the responses produced so far in this request, exactly
    /// as RFC 8620 §3.7 says: take the *first* response whose method call id is `resultOf`;
    /// fail if there is none or if its name is not `name`; then evaluate `path` against its
    /// arguments.
    ///
    /// # Errors
    /// `invalidResultReference`.
    pub fn resolve(&self, responses: &[Invocation]) -> Result<Value, MethodError> {
        let response = responses
            .iter()
            .find(|r| r.call_id == self.result_of)
            .ok_or_else(|| {
                MethodError::invalid_result_reference(format!(
                    "no previous response has method call id \"{}\"",
                    quote(&self.result_of)
                ))
            })?;
        if response.name != self.name {
            return Err(MethodError::invalid_result_reference(format!(
                "the response to \"{}\" is \"{}\", not \"{}\"",
                quote(&self.result_of),
                quote(&response.name),
                quote(&self.name)
            )));
        }
        let tokens = parse_pointer(&self.path)
            .map_err(|e| MethodError::invalid_result_reference(format!("invalid path: {e}")))?;
        let result = match tokens.split_first() {
            None => Ok(Value::Object(response.arguments.clone())),
            Some((first, rest)) => response
                .arguments
                .get(first)
                .ok_or_else(|| PointerError::MemberNotFound(quote(first)))
                .and_then(|v| evaluate_tokens(v, rest)),
        };
        result.map_err(|e| {
            MethodError::invalid_result_reference(format!(
                "path \"{}\" does not resolve: {e}",
                quote(&self.path)
            ))
        })
    }
}

/// Why a JSON Pointer could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    /// A non-empty pointer must start with `/`.
    #[error("a JSON Pointer must be empty or start with '/'")]
    NoLeadingSlash,
    /// `~` must be followed by `0` or `1`.
    #[error("invalid '~' escape in {0:?}")]
    InvalidEscape(String),
    /// An object has no such member.
    #[error("no member {0:?}")]
    MemberNotFound(String),
    /// The token is not a valid index (decimal, no leading zeros) or is out of range.
    #[error("no array element {0:?}")]
    IndexNotFound(String),
    /// The pointer descends into a string, number, boolean or null.
    #[error("cannot apply {0:?} to a value that is not an object or array")]
    NotAContainer(String),
}

/// Splits a JSON Pointer (RFC 6901) into unescaped reference tokens (`~1` → `/`, then
/// `~0` → `~`). The empty pointer has no tokens.
///
/// # Errors
/// [`PointerError::NoLeadingSlash`] or [`PointerError::InvalidEscape`].
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, PointerError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PointerError::NoLeadingSlash);
    };
    rest.split('/').map(unescape_token).collect()
}

fn unescape_token(token: &str) -> Result<String, PointerError> {
    if !token.contains('~') {
        return Ok(token.to_owned());
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(PointerError::InvalidEscape(quote(token))),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Escapes a reference token for use in a JSON Pointer (`~` → `~0`, `/` → `~1`).
#[must_use]
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Evaluates a JSON Pointer against `document` with the RFC 8620 §3.7 extension: when the
/// current value is an array, the token `*` applies the rest of the pointer to every item and
/// collects the results in order into a new array, adding the items of any result that is
/// itself an array rather than the array (flattening one level).
///
/// On an object, `*` is an ordinary member name.
///
/// # Errors
/// A [`PointerError`] if the pointer is malformed or does not resolve.
pub fn evaluate_pointer(document: &Value, pointer: &str) -> Result<Value, PointerError> {
    let tokens = parse_pointer(pointer)?;
    evaluate_tokens(document, &tokens)
}

fn evaluate_tokens(document: &Value, tokens: &[String]) -> Result<Value, PointerError> {
    let mut current = document;
    for (i, token) in tokens.iter().enumerate() {
        current = match current {
            Value::Object(map) => map
                .get(token)
                .ok_or_else(|| PointerError::MemberNotFound(quote(token)))?,
            Value::Array(items) if token == "*" => {
                let rest = tokens.get(i + 1..).unwrap_or(&[]);
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match evaluate_tokens(item, rest)? {
                        Value::Array(inner) => out.extend(inner),
                        other => out.push(other),
                    }
                }
                return Ok(Value::Array(out));
            }
            Value::Array(items) => parse_index(token)
                .and_then(|i| items.get(i))
                .ok_or_else(|| PointerError::IndexNotFound(quote(token)))?,
            _ => return Err(PointerError::NotAContainer(quote(token))),
        };
    }
    Ok(current.clone())
}

/// An RFC 6901 array index: `0` or a decimal number without leading zeros.
fn parse_index(token: &str) -> Option<usize> {
    let valid = token == "0"
        || (!token.is_empty()
            && !token.starts_with('0')
            && token.bytes().all(|b| b.is_ascii_digit()));
    if valid { token.parse().ok() } else { None }
}

/// Resolves every result reference in a method's arguments (RFC 8620 §3.7): each argument
/// `#name` holding a ResultReference is replaced by `name` holding the resolved value.
///
/// Either all references resolve or the arguments are rejected as a whole.
///
/// # Errors
/// `invalidArguments` if an argument appears both as `name` and `#name`;
/// `invalidResultReference` if a reference is malformed or fails to resolve.
pub fn resolve_references(
    mut arguments: Map<String, Value>,
    responses: &[Invocation],
) -> Result<Map<String, Value>, MethodError> {
    let reference_names: Vec<String> = arguments
        .keys()
        .filter(|k| k.starts_with('#'))
        .cloned()
        .collect();
    if reference_names.is_empty() {
        return Ok(arguments);
    }
    for name in &reference_names {
        let plain = name.get(1..).unwrap_or("");
        if arguments.contains_key(plain) {
            return Err(MethodError::invalid_arguments(format!(
                "the argument \"{}\" is given both directly and as a result reference",
                quote(plain)
            )));
        }
    }
    let mut resolved = Vec::with_capacity(reference_names.len());
    for name in &reference_names {
        let reference = arguments
            .get(name)
            .map(ResultReference::from_value)
            .transpose()?
            .ok_or_else(|| MethodError::server_fail("result reference vanished"))?;
        resolved.push((
            name.get(1..).unwrap_or("").to_owned(),
            reference.resolve(responses)?,
        ));
    }
    for name in &reference_names {
        arguments.remove(name);
    }
    arguments.extend(resolved);
    Ok(arguments)
}

/// Resolves a possible creation id reference (RFC 8620 §3.3, §5.3): an id starting with `#`
/// names a record created earlier in this request and is replaced by its server-assigned id
/// from `created`; any other id is returned unchanged (not validated: an unknown or malformed
/// id is simply not found by the method).
///
/// # Errors
/// `invalidArguments` if the creation id is not in `created`. (In a `/set` create or update,
/// servers usually report this per record as a `SetError` instead; map it there.)
pub fn resolve_creation_id(id: &str, created: &CreatedIds) -> Result<String, MethodError> {
    match id.strip_prefix('#') {
        None => Ok(id.to_owned()),
        Some(creation_id) => created.get(creation_id).cloned().ok_or_else(|| {
            MethodError::invalid_arguments(format!(
                "unknown creation id \"{}\"",
                quote(creation_id)
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn inv(name: &str, args: Value, id: &str) -> Invocation {
        Invocation::new(name, obj(args), id)
    }

    #[test]
    fn rfc6901_examples() {
        let doc = json!({
            "foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4,
            "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8
        });
        let cases = [
            ("", doc.clone()),
            ("/foo", json!(["bar", "baz"])),
            ("/foo/0", json!("bar")),
            ("/", json!(0)),
            ("/a~1b", json!(1)),
            ("/c%d", json!(2)),
            ("/e^f", json!(3)),
            ("/g|h", json!(4)),
            ("/i\\j", json!(5)),
            ("/k\"l", json!(6)),
            ("/ ", json!(7)),
            ("/m~0n", json!(8)),
        ];
        for (pointer, expected) in cases {
            assert_eq!(
                evaluate_pointer(&doc, pointer).unwrap(),
                expected,
                "{pointer}"
            );
        }
    }

    #[test]
    fn escaping() {
        // `~01` is `~1` literally, not `/`: ~1 is unescaped first per RFC 6901 §4.
        assert_eq!(parse_pointer("/~01").unwrap(), ["~1"]);
        assert_eq!(parse_pointer("/~10").unwrap(), ["/0"]);
        assert_eq!(parse_pointer("/a~0~1b/c").unwrap(), ["a~/b", "c"]);
        assert_eq!(parse_pointer("//").unwrap(), ["", ""]);
        assert_eq!(escape_token("a~/b"), "a~0~1b");
        assert_eq!(
            parse_pointer(&format!("/{}", escape_token("x/~y"))).unwrap(),
            ["x/~y"]
        );
        assert!(matches!(
            parse_pointer("/a~2"),
            Err(PointerError::InvalidEscape(_))
        ));
        assert!(matches!(
            parse_pointer("/a~"),
            Err(PointerError::InvalidEscape(_))
        ));
        assert_eq!(parse_pointer("a"), Err(PointerError::NoLeadingSlash));
    }

    #[test]
    fn pointer_failures() {
        let doc = json!({"list": [1, 2], "s": "x", "o": {"*": 9}});
        assert!(matches!(
            evaluate_pointer(&doc, "/nope"),
            Err(PointerError::MemberNotFound(_))
        ));
        for bad in [
            "/list/2",
            "/list/01",
            "/list/-",
            "/list/-1",
            "/list/x",
            "/list/",
            "/list/99999999999999999999999",
        ] {
            assert!(
                matches!(
                    evaluate_pointer(&doc, bad),
                    Err(PointerError::IndexNotFound(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            evaluate_pointer(&doc, "/s/0"),
            Err(PointerError::NotAContainer(_))
        ));
        // `*` on an object is an ordinary member name.
        assert_eq!(evaluate_pointer(&doc, "/o/*").unwrap(), json!(9));
        // `*` applies only when the current value is an array.
        assert!(matches!(
            evaluate_pointer(&doc, "/s/*"),
            Err(PointerError::NotAContainer(_))
        ));
    }

    #[test]
    fn star_maps_and_flattens_one_level() {
        let doc = json!({
            "list": [
                {"id": "a", "threadId": "T1", "emailIds": ["e1", "e2"], "nested": [["x"]]},
                {"id": "b", "threadId": "T2", "emailIds": ["e3"], "nested": [["y"], "z"]}
            ],
            "empty": [],
            "matrix": [[1, 2], [3]]
        });
        assert_eq!(
            evaluate_pointer(&doc, "/list/*/threadId").unwrap(),
            json!(["T1", "T2"])
        );
        assert_eq!(
            evaluate_pointer(&doc, "/list/*/emailIds").unwrap(),
            json!(["e1", "e2", "e3"])
        );
        // Only one level is flattened.
        assert_eq!(
            evaluate_pointer(&doc, "/list/*/nested").unwrap(),
            json!([["x"], ["y"], "z"])
        );
        assert_eq!(evaluate_pointer(&doc, "/empty/*/id").unwrap(), json!([]));
        // A trailing `*` flattens the items themselves.
        assert_eq!(
            evaluate_pointer(&doc, "/matrix/*").unwrap(),
            json!([1, 2, 3])
        );
        assert_eq!(
            evaluate_pointer(&doc, "/matrix/*/0").unwrap(),
            json!([1, 3])
        );
        assert_eq!(
            evaluate_pointer(&doc, "/matrix/*/*").unwrap(),
            json!([1, 2, 3])
        );
        // Failure on any item fails the whole evaluation.
        assert!(evaluate_pointer(&doc, "/matrix/*/1").is_err());
    }

    fn changes_response() -> Vec<Invocation> {
        vec![inv(
            "Foo/changes",
            json!({
                "accountId": "A1", "oldState": "abcdef", "newState": "123456",
                "hasMoreChanges": false, "created": ["f1", "f4"], "updated": [], "destroyed": []
            }),
            "t0",
        )]
    }

    #[test]
    fn rfc8620_3_7_changes_then_get() {
        let args = obj(json!({
            "accountId": "A1",
            "#ids": {"resultOf": "t0", "name": "Foo/changes", "path": "/created"}
        }));
        let resolved = resolve_references(args, &changes_response()).unwrap();
        assert_eq!(
            Value::Object(resolved),
            json!({"accountId": "A1", "ids": ["f1", "f4"]})
        );
    }

    #[test]
    fn both_name_and_hash_name_is_invalid_arguments() {
        let args = obj(json!({
            "ids": ["x"],
            "#ids": {"resultOf": "t0", "name": "Foo/changes", "path": "/created"}
        }));
        let e = resolve_references(args, &changes_response()).unwrap_err();
        assert_eq!(e.type_, MethodErrorType::InvalidArguments);
    }

    #[test]
    fn reference_failures_are_invalid_result_reference() {
        let responses = changes_response();
        let cases = [
            json!({"resultOf": "t9", "name": "Foo/changes", "path": "/created"}),
            json!({"resultOf": "t0", "name": "Foo/get", "path": "/created"}),
            json!({"resultOf": "t0", "name": "Foo/changes", "path": "/nothing"}),
            json!({"resultOf": "t0", "name": "Foo/changes", "path": "created"}),
            json!({"resultOf": "t0", "name": "Foo/changes", "path": "/created/~2"}),
            json!({"resultOf": "t0", "name": "Foo/changes"}),
            json!({"resultOf": 0, "name": "Foo/changes", "path": "/created"}),
            json!("t0"),
            json!(null),
        ];
        for reference in cases {
            let args = obj(json!({"accountId": "A1", "#ids": reference}));
            let e = resolve_references(args, &responses).unwrap_err();
            assert_eq!(
                e.type_,
                MethodErrorType::InvalidResultReference,
                "{reference}"
            );
            assert!(e.description.is_some());
        }
    }

    #[test]
    fn first_response_with_the_call_id_is_used() {
        // An implicit second response under the same call id cannot be referenced by name:
        // RFC 8620 §3.7 step 1 takes the *first* response with that id.
        let responses = vec![
            inv("Email/set", json!({"created": {"k1": {"id": "E1"}}}), "c1"),
            inv(
                "EmailSubmission/set",
                json!({"created": {"s1": {"id": "S1"}}}),
                "c1",
            ),
        ];
        let ok =
            obj(json!({"#x": {"resultOf": "c1", "name": "Email/set", "path": "/created/k1/id"}}));
        assert_eq!(
            resolve_references(ok, &responses).unwrap()["x"],
            json!("E1")
        );
        let second = obj(
            json!({"#x": {"resultOf": "c1", "name": "EmailSubmission/set", "path": "/created"}}),
        );
        assert_eq!(
            resolve_references(second, &responses).unwrap_err().type_,
            MethodErrorType::InvalidResultReference
        );
    }

    #[test]
    fn error_responses_cannot_be_referenced() {
        let responses = vec![inv("error", json!({"type": "serverFail"}), "c1")];
        let args = obj(json!({"#ids": {"resultOf": "c1", "name": "Foo/query", "path": "/ids"}}));
        assert_eq!(
            resolve_references(args, &responses).unwrap_err().type_,
            MethodErrorType::InvalidResultReference
        );
    }

    #[test]
    fn several_references_and_empty_path() {
        let responses = changes_response();
        let args = obj(json!({
            "#a": {"resultOf": "t0", "name": "Foo/changes", "path": "/newState"},
            "#b": {"resultOf": "t0", "name": "Foo/changes", "path": ""},
            "c": 1
        }));
        let r = resolve_references(args, &responses).unwrap();
        assert_eq!(r["a"], json!("123456"));
        assert_eq!(r["b"]["accountId"], json!("A1"));
        assert_eq!(r["c"], json!(1));
        assert!(!r.contains_key("#a") && !r.contains_key("#b"));
        let no_refs = obj(json!({"a": 1}));
        assert_eq!(resolve_references(no_refs.clone(), &[]).unwrap(), no_refs);
        let rr = ResultReference::from_value(&json!({"resultOf": "t0", "name": "N", "path": "/p"}))
            .unwrap();
        assert_eq!(
            rr.to_json(),
            json!({"resultOf": "t0", "name": "N", "path": "/p"})
        );
    }

    #[test]
    fn creation_ids() {
        let created = CreatedIds::from([("k1".to_owned(), "M42".to_owned())]);
        assert_eq!(resolve_creation_id("#k1", &created).unwrap(), "M42");
        assert_eq!(resolve_creation_id("M7", &created).unwrap(), "M7");
        let e = resolve_creation_id("#k2", &created).unwrap_err();
        assert_eq!(e.type_, MethodErrorType::InvalidArguments);
        assert!(resolve_creation_id("#", &created).is_err());
    }
}
