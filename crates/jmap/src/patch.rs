//! PatchObjects (RFC 8620 §5.3, the `update` argument of `/set`) and the `Id` data type
//! (RFC 8620 §1.2).

use serde_json::{Map, Value};

use crate::error::SetError;
use crate::reference::parse_pointer;

/// Whether `id` is a valid JMAP `Id` (RFC 8620 §1.2): 1 to 255 octets, each one of
/// `A-Z a-z 0-9 - _` (the URL- and filename-safe base64 alphabet).
#[must_use]
pub fn is_valid_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `id` is valid *and* follows RFC 8620 §1.2's advice for ids a server generates: it
/// does not start with a dash, is not only digits, does not contain `--`, and is not `NIL`
/// (in any case).
#[must_use]
pub fn is_recommended_server_id(id: &str) -> bool {
    is_valid_id(id)
        && !id.starts_with('-')
        && !id.bytes().all(|b| b.is_ascii_digit())
        && !id.contains("--")
        && !id.eq_ignore_ascii_case("NIL")
}

/// A parsed, validated PatchObject: paths (implicitly prefixed with `/`) to new values, `null`
/// meaning "remove" (RFC 8620 §5.3).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchObject {
    /// The patches as (reference tokens, value), sorted by path.
    patches: Vec<(Vec<String>, Value)>,
}

impl PatchObject {
    /// Validates a PatchObject: every key must be a JSON Pointer (after prefixing `/`) and no
    /// path may be a prefix of another (e.g. `alerts` and `alerts/1/offset`).
    ///
    /// # Errors
    /// `invalidPatch`.
    pub fn parse(patch: &Map<String, Value>) -> Result<Self, SetError> {
        let mut patches = Vec::with_capacity(patch.len());
        for (key, value) in patch {
            let tokens = parse_pointer(&format!("/{key}")).map_err(|e| {
                SetError::invalid_patch(format!("invalid patch path \"{}\": {e}", truncate(key)))
            })?;
            patches.push((tokens, value.clone()));
        }
        patches.sort_by(|a, b| a.0.cmp(&b.0));
        // In lexicographic order a path is immediately followed by the paths it prefixes.
        for pair in patches.windows(2) {
            if let [(a, _), (b, _)] = pair
                && b.starts_with(a)
            {
                return Err(SetError::invalid_patch(format!(
                    "patch path \"{}\" is a prefix of another patch path",
                    truncate(&a.join("/"))
                )));
            }
        }
        Ok(Self { patches })
    }

    /// The top-level properties the patch touches, in order, without repeats. A server uses
    /// these to check that server-set or immutable properties are unchanged (or else reply
    /// `invalidProperties`).
    #[must_use]
    pub fn properties(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (tokens, _) in &self.patches {
            if let Some(first) = tokens.first()
                && out.last() != Some(&first.as_str())
            {
                out.push(first);
            }
        }
        out
    }

    /// The patches as (reference tokens, value), sorted by path.
    #[must_use]
    pub fn patches(&self) -> &[(Vec<String>, Value)] {
        &self.patches
    }

    /// Applies the patch to `object`, returning the patched copy; `object` is untouched if
    /// any patch fails.
    ///
    /// Every part of a path before the last must already exist and be an object (a path may
    /// not point inside an array). A `null` value removes the property (a no-op if absent);
    /// any other value sets it. Properties with a default value ("set to the default value if
    /// specified for this property") are the server's business: it should re-apply defaults
    /// for removed properties after patching.
    ///
    /// # Errors
    /// `invalidPatch`.
    pub fn apply(&self, object: &Map<String, Value>) -> Result<Map<String, Value>, SetError> {
        let mut patched = object.clone();
        for (tokens, value) in &self.patches {
            let Some((last, parents)) = tokens.split_last() else {
                return Err(SetError::invalid_patch("empty patch path"));
            };
            let mut current = &mut patched;
            for token in parents {
                current = match current.get_mut(token) {
                    Some(Value::Object(child)) => child,
                    Some(Value::Array(_)) => {
                        return Err(SetError::invalid_patch(format!(
                            "patch path \"{}\" points inside an array",
                            truncate(&tokens.join("/"))
                        )));
                    }
                    Some(_) | None => {
                        return Err(SetError::invalid_patch(format!(
                            "patch path \"{}\" does not exist",
                            truncate(&tokens.join("/"))
                        )));
                    }
                };
            }
            if value.is_null() {
                current.remove(last);
            } else {
                current.insert(last.clone(), value.clone());
            }
        }
        Ok(patched)
    }
}

/// Parses `patch` and applies it to `object` (see [`PatchObject::apply`]).
///
/// # Errors
/// `invalidPatch`.
pub fn apply_patch(
    object: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, SetError> {
    PatchObject::parse(patch)?.apply(object)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SetErrorType;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn event() -> Map<String, Value> {
        obj(json!({
            "title": "Meeting",
            "alerts": {"1": {"offset": "-PT5M", "action": "email"}},
            "keywords": {"$seen": true},
            "participants": [{"name": "A"}],
            "a/b": 1,
            "m~n": 2
        }))
    }

    #[test]
    fn ids() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id("Abc-_09"));
        assert!(is_valid_id(&"x".repeat(255)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(256)));
        for bad in ["a b", "a/b", "a+b", "a=", "#k1", "é", "a.b"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
        assert!(is_recommended_server_id("M1a"));
        for discouraged in ["-a", "123", "a--b", "NIL", "nil"] {
            assert!(is_valid_id(discouraged) && !is_recommended_server_id(discouraged));
        }
    }

    #[test]
    fn sets_removes_and_nests() {
        let patch = obj(json!({
            "title": "Lunch",
            "alerts/1/offset": "-PT10M",
            "keywords/$flagged": true,
            "keywords/$seen": null,
            "location": "Here",
            "absent": null,
            "a~1b": 3,
            "m~0n": null
        }));
        let patched = apply_patch(&event(), &patch).unwrap();
        assert_eq!(
            Value::Object(patched),
            json!({
                "title": "Lunch",
                "alerts": {"1": {"offset": "-PT10M", "action": "email"}},
                "keywords": {"$flagged": true},
                "participants": [{"name": "A"}],
                "location": "Here",
                "a/b": 3
            })
        );
        let p = PatchObject::parse(&patch).unwrap();
        assert_eq!(
            p.properties(),
            [
                "a/b", "absent", "alerts", "keywords", "location", "m~n", "title"
            ]
        );
        assert_eq!(p.patches().len(), 8);
    }

    #[test]
    fn whole_object_is_a_valid_patch() {
        // Valid as long as no property name contains `/` or `~` (no JMAP property does).
        let mut whole = event();
        whole.remove("a/b");
        whole.remove("m~n");
        assert_eq!(apply_patch(&whole, &whole).unwrap(), whole);
        assert_eq!(apply_patch(&whole, &Map::new()).unwrap(), whole);
    }

    #[test]
    fn invalid_patches() {
        let cases = [
            json!({"participants/0/name": "B"}),
            json!({"participants/0": {"name": "B"}}),
            json!({"missing/x": 1}),
            json!({"title/x": 1}),
            json!({"alerts": {}, "alerts/1/offset": "x"}),
            json!({"keywords/$seen": true, "keywords": {}}),
            json!({"bad~2": 1}),
            json!({"alerts/2/offset": "x"}),
        ];
        let original = event();
        for patch in cases {
            let e = apply_patch(&original, &obj(patch.clone())).unwrap_err();
            assert_eq!(e.type_, SetErrorType::InvalidPatch, "{patch}");
            assert_eq!(e.to_json()["type"], "invalidPatch");
        }
        // Paths that merely share a string prefix do not conflict.
        let ok = obj(
            json!({"alerts/1/offset": "x", "alerts/1/offsetX": "y", "title": "t", "titles": "u"}),
        );
        assert!(apply_patch(&original, &ok).is_ok());
    }

    #[test]
    fn failed_patch_leaves_the_object_alone() {
        let original = event();
        let patch = obj(json!({"title": "changed", "zzz/x": 1}));
        assert!(apply_patch(&original, &patch).is_err());
        assert_eq!(original, event());
    }
}
