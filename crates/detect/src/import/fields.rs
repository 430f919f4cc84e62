//! Helpers shared by the normalisers: member access, IP addresses, times, PowerShell property
//! bags and `{Name, Value}` lists.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::time::{format_micros, parse_any_time};

/// How deep PowerShell property bags may nest.
const MAX_BAG_DEPTH: usize = 16;

/// A member that carries information: present, not null, not an empty or blank string.
pub(super) fn present(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    }
}

/// The first of `names` that is a non-empty string.
pub(super) fn first_str<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| {
        map.get(*name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    })
}

/// Sets `name` to `value` unless it already carries information.
pub(super) fn set_if_absent(map: &mut Map<String, Value>, name: &str, value: Value) {
    if !present(map.get(name)) && present(Some(&value)) {
        map.insert(name.to_owned(), value);
    }
}

/// Copies the first of `from` that carries information into `to` unless `to` already does.
pub(super) fn fill_from(map: &mut Map<String, Value>, to: &str, from: &[&str]) {
    if present(map.get(to)) {
        return;
    }
    if let Some(value) = from
        .iter()
        .find_map(|name| map.get(*name).filter(|v| present(Some(v))))
        .cloned()
    {
        map.insert(to.to_owned(), value);
    }
}

/// An IP address as a bare address: without a port (`1.2.3.4:5678`, `[2001:db8::1]:443`),
/// IPv6 in its canonical compressed lower-case form, IPv4-mapped IPv6 as IPv4. Text that is not
/// an address is returned trimmed (without a port when it had exactly one colon).
pub(super) fn bare_ip(text: &str) -> String {
    let text = text.trim();
    let host = if let Some(rest) = text.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(host, _)| host)
    } else if text.matches(':').count() == 1 {
        text.split_once(':').map_or(text, |(host, _)| host)
    } else {
        text
    };
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => host.to_owned(),
    }
}

/// Rewrites `CreationTime` as RFC 3339 UTC with microseconds when it is a readable time (an
/// unreadable one is kept as it is).
pub(super) fn normalise_time(map: &mut Map<String, Value>) {
    if let Some(Value::String(text)) = map.get_mut("CreationTime")
        && let Some(micros) = parse_any_time(text)
    {
        *text = format_micros(micros);
    }
}

/// Turns a string member made of decimal digits into a number.
pub(super) fn digits_to_number(map: &mut Map<String, Value>, name: &str) {
    if let Some(value) = map.get_mut(name)
        && let Some(n) = value
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
    {
        *value = Value::from(n);
    }
}

/// Parses a string member that holds JSON (an object or an array, as Log Analytics exports
/// dynamic columns) or a PowerShell property bag; leaves it as it is when it does not parse.
pub(super) fn parse_embedded(map: &mut Map<String, Value>, name: &str) {
    let Some(Value::String(text)) = map.get(name) else {
        return;
    };
    let trimmed = text.trim();
    let parsed = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str::<Value>(trimmed)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
    } else {
        parse_bag(trimmed).map(Value::Object)
    };
    if let Some(parsed) = parsed {
        map.insert(name.to_owned(), parsed);
    }
}

/// Replaces every top-level member that is a PowerShell property bag (`"@{Name=X; Value=Y}"`),
/// or an array made only of such bags, with the object(s) it describes.
pub(super) fn expand_bags(map: &mut Map<String, Value>) {
    for value in map.values_mut() {
        expand_bag_value(value);
    }
}

fn expand_bag_value(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Some(bag) = parse_bag(text) {
                *value = Value::Object(bag);
            }
        }
        Value::Array(items) => {
            let all_bags = !items.is_empty()
                && items.iter().all(|item| {
                    item.as_str()
                        .is_some_and(|s| s.trim_start().starts_with("@{"))
                });
            if !all_bags {
                return;
            }
            let parsed: Option<Vec<Value>> = items
                .iter()
                .map(|item| item.as_str().and_then(parse_bag).map(Value::Object))
                .collect();
            if let Some(parsed) = parsed {
                *items = parsed;
            }
        }
        _ => {}
    }
}

/// Parses a PowerShell property bag, the text PowerShell writes for an object converted to a
/// string: `@{Name=MailAccessType; Value=Bind}`. Values are strings (nested bags become
/// objects); `None` when the text is not a bag.
pub(super) fn parse_bag(text: &str) -> Option<Map<String, Value>> {
    parse_bag_depth(text.trim(), 0)
}

fn parse_bag_depth(text: &str, depth: usize) -> Option<Map<String, Value>> {
    if depth > MAX_BAG_DEPTH {
        return None;
    }
    let inner = text.strip_prefix("@{")?.strip_suffix('}')?;
    let mut map = Map::new();
    if inner.trim().is_empty() {
        return Some(map);
    }
    for entry in split_bag(inner)? {
        let (key, value) = entry.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || key.contains(['{', '}', '@']) {
            return None;
        }
        let value = value.trim();
        let value = if value.starts_with("@{") && value.ends_with('}') {
            parse_bag_depth(value, depth + 1)
                .map_or_else(|| Value::String(value.to_owned()), Value::Object)
        } else {
            Value::String(value.to_owned())
        };
        map.insert(key.to_owned(), value);
    }
    Some(map)
}

/// Splits the inside of a bag at the `;` that are outside nested bags and are followed by a
/// `Key=`.
fn split_bag(inner: &str) -> Option<Vec<&str>> {
    let bytes = inner.as_bytes();
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'@' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth > 0 => depth -= 1,
            b';' if depth == 0 && starts_with_key(inner.get(i + 1..)?) => {
                parts.push(inner.get(start..i)?);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(inner.get(start..)?);
    Some(parts)
}

/// Whether `text` is (after spaces) a property name followed by `=`.
fn starts_with_key(text: &str) -> bool {
    let text = text.trim_start();
    let Some((key, _)) = text.split_once('=') else {
        return false;
    };
    !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
}

/// Copies each `{"Name": n, "Value": v}` entry of the array member `list` into a top-level
/// member `n` = `v`, unless that member already carries information.
pub(super) fn flatten_name_values(map: &mut Map<String, Value>, list: &str) {
    let items = match map.get(list) {
        Some(Value::Array(items)) => items.as_slice(),
        // One entry alone (a single property bag, for instance).
        Some(entry @ Value::Object(_)) => std::slice::from_ref(entry),
        _ => return,
    };
    let pairs: Vec<(String, Value)> = items
        .iter()
        .filter_map(|item| {
            let name = item.get("Name")?.as_str()?.trim();
            let value = item.get("Value")?;
            (!name.is_empty()).then(|| (name.to_owned(), value.clone()))
        })
        .collect();
    for (name, value) in pairs {
        set_if_absent(map, &name, value);
    }
}

/// The `Value` of the entry named `name` in the `{Name, Value}` array member `list`.
pub(super) fn name_value<'a>(
    map: &'a Map<String, Value>,
    list: &str,
    name: &str,
) -> Option<&'a Value> {
    map.get(list)?
        .as_array()?
        .iter()
        .find(|item| item.get("Name").and_then(Value::as_str) == Some(name))?
        .get("Value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ip_addresses() {
        for (text, expected) in [
            ("1.2.3.4", "1.2.3.4"),
            ("1.2.3.4:5678", "1.2.3.4"),
            (" 1.2.3.4:5678 ", "1.2.3.4"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:DB8::1]", "2001:db8::1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("[::ffff:192.0.2.7]:1234", "192.0.2.7"),
            ("fe80::1%eth0", "fe80::1%eth0"),
            ("not an address", "not an address"),
            ("", ""),
        ] {
            assert_eq!(bare_ip(text), expected, "{text}");
        }
    }

    #[test]
    fn bags() {
        assert_eq!(
            Value::Object(parse_bag("@{Value=Bind; Name=MailAccessType}").unwrap()),
            json!({"Name": "MailAccessType", "Value": "Bind"})
        );
        assert_eq!(
            Value::Object(parse_bag("@{A=x; y; B=@{C=1; D=}; E=a=b}").unwrap()),
            json!({"A": "x; y", "B": {"C": "1", "D": ""}, "E": "a=b"})
        );
        assert_eq!(Value::Object(parse_bag("@{}").unwrap()), json!({}));
        for bad in ["", "@{", "{A=1}", "@{A}", "@{=1}", "@{A=1", "plain"] {
            assert!(parse_bag(bad).is_none(), "{bad}");
        }
        let deep = format!("{}{}", "@{A=".repeat(100), "}".repeat(100));
        let parsed = parse_bag(&deep).unwrap();
        assert!(parsed.contains_key("A"));
    }

    #[test]
    fn bag_members_and_flattening() {
        let mut map = json!({
            "OperationProperties": ["@{Name=MailAccessType; Value=Bind}", "@{Name=IsThrottled; Value=False}"],
            "Mixed": ["@{A=1}", 3],
            "Whole": "@{Name=X; Value=Y}",
            "IsThrottled": "",
        })
        .as_object()
        .cloned()
        .unwrap();
        expand_bags(&mut map);
        flatten_name_values(&mut map, "OperationProperties");
        assert_eq!(map["MailAccessType"], "Bind");
        assert_eq!(map["IsThrottled"], "False");
        assert_eq!(map["Mixed"], json!(["@{A=1}", 3]));
        assert_eq!(map["Whole"], json!({"Name": "X", "Value": "Y"}));
        flatten_name_values(&mut map, "Whole");
        assert_eq!(map["X"], "Y");
        assert_eq!(
            name_value(&map, "OperationProperties", "MailAccessType"),
            Some(&json!("Bind"))
        );
    }

    #[test]
    fn embedded_and_numbers() {
        let mut map = json!({
            "Folders": "[{\"Path\":\"\\\\Inbox\"}]",
            "Bad": "[not json",
            "OperationCount": "12",
            "Other": "12a",
            "CreationTime": "2023-06-15T10:11:12",
        })
        .as_object()
        .cloned()
        .unwrap();
        parse_embedded(&mut map, "Folders");
        parse_embedded(&mut map, "Bad");
        digits_to_number(&mut map, "OperationCount");
        digits_to_number(&mut map, "Other");
        normalise_time(&mut map);
        assert_eq!(map["Folders"], json!([{"Path": "\\Inbox"}]));
        assert_eq!(map["Bad"], "[not json");
        assert_eq!(map["OperationCount"], 12);
        assert_eq!(map["Other"], "12a");
        assert_eq!(map["CreationTime"], "2023-06-15T10:11:12.000000Z");
    }
}
