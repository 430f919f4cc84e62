//! A strict `application/x-www-form-urlencoded` parser for request bodies and query strings.
//!
//! OAuth parameters arrive form-encoded (RFC 6749 Appendix B). The WHATWG parser used by most
//! web stacks is lenient: it passes malformed escapes such as `%zz` through, replaces invalid
//! UTF-8 with U+FFFD and lets a parameter repeat, leaving the application to pick one. Two
//! components that pick differently (a proxy and the server, the server and a log) can be made
//! to disagree about what a request said. [`Form::parse`] refuses instead:
//!
//! - input over [`MAX_FORM_BYTES`] bytes, or more than [`MAX_FORM_PARAMS`] parameters;
//! - `%` not followed by two hex digits; names or values that are not UTF-8 after decoding
//!   (`+` decodes to a space); control characters other than tab (RFC 6749 Appendix A allows
//!   none elsewhere); an empty parameter name;
//! - any parameter name present more than once, even with an empty value (RFC 6749 §3.1, §3.2:
//!   "parameters MUST NOT be included more than once"). That includes `resource`: RFC 8707
//!   allows repeating it, but Keyscope issues tokens for one audience at a time, so a repeated
//!   `resource` is answered with `invalid_target`.
//!
//! Parameters with an empty value are treated as omitted (RFC 6749 §3.1): [`Form::get`] returns
//! `None` for them. Empty `&`-separated segments (`a=1&&b=2`, a trailing `&`) are ignored.
//!
//! Values may be secrets (`client_secret`, `password`, `code_verifier`): a [`Form`] wipes its
//! strings when dropped, and its `Debug` output redacts them.

use std::fmt;

use zeroize::Zeroize;

use crate::error::OAuthError;

/// Largest accepted input, in bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Largest accepted number of parameters (empty-valued ones included).
pub const MAX_FORM_PARAMS: usize = 64;

/// How many characters of a client-supplied parameter name an error description repeats.
const MAX_NAME_IN_ERROR: usize = 40;

/// Parameters whose values `Debug` never shows.
const SENSITIVE: &[&str] = &[
    "client_secret",
    "client_assertion",
    "password",
    "code",
    "code_verifier",
    "refresh_token",
    "access_token",
    "token",
    "id_token_hint",
    "assertion",
    "subject_token",
    "actor_token",
];

/// A parsed form: an ordered list of distinct parameter names with their decoded values.
#[derive(Clone, Default)]
pub struct Form {
    /// Every parameter, in input order, empty values included (they count for duplicates).
    params: Vec<(String, String)>,
}

/// Why a component could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// Not UTF-8 after decoding.
    NotUtf8,
    /// A control character other than tab.
    Control,
}

impl DecodeError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            DecodeError::BadEscape => "malformed percent-encoding",
            DecodeError::NotUtf8 => "not valid UTF-8",
            DecodeError::Control => "control character",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form-urlencoded component strictly: `+` is a space, `%XX` a byte, every other
/// byte itself; the result must be UTF-8 without control characters (tab excepted).
pub(crate) fn decode_component(input: &[u8]) -> Result<String, DecodeError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = input.iter();
    while let Some(&b) = i.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = i.next().copied().and_then(hex);
                let lo = i.next().copied().and_then(hex);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => {
                        out.zeroize();
                        return Err(DecodeError::BadEscape);
                    }
                }
            }
            _ => out.push(b),
        }
    }
    match String::from_utf8(out) {
        Ok(s)
            if s.chars()
                .any(|c| c.is_control() && c != '\t' && (c as u32) < 0x80) =>
        {
            let mut s = s;
            s.zeroize();
            Err(DecodeError::Control)
        }
        Ok(s) => Ok(s),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(DecodeError::NotUtf8)
        }
    }
}

/// A client-supplied name, shortened for an error description (which is sanitised later).
pub(crate) fn shown(name: &str) -> String {
    if name.chars().count() <= MAX_NAME_IN_ERROR {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(MAX_NAME_IN_ERROR).collect();
        s.push_str("...");
        s
    }
}

impl Form {
    /// Parses a form-urlencoded body or query string (without the leading `?`).
    ///
    /// # Errors
    /// `invalid_request` naming the problem (and the parameter, when it can be named) for any
    /// of the refusals in the [module documentation](self); `invalid_target` for a repeated
    /// `resource`.
    pub fn parse(input: &[u8]) -> Result<Form, OAuthError> {
        if input.len() > MAX_FORM_BYTES {
            return Err(OAuthError::invalid_request(format!(
                "request parameters exceed {MAX_FORM_BYTES} bytes"
            )));
        }
        let mut form = Form::default();
        for segment in input.split(|&b| b == b'&') {
            if segment.is_empty() {
                continue;
            }
            if form.params.len() == MAX_FORM_PARAMS {
                return Err(OAuthError::invalid_request(format!(
                    "more than {MAX_FORM_PARAMS} parameters"
                )));
            }
            let (raw_name, raw_value) = match segment.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    segment.get(..eq).unwrap_or_default(),
                    segment.get(eq + 1..).unwrap_or_default(),
                ),
                None => (segment, &[][..]),
            };
            let name = decode_component(raw_name).map_err(|e| {
                OAuthError::invalid_request(format!("parameter name: {}", e.describe()))
            })?;
            if name.is_empty() {
                return Err(OAuthError::invalid_request("empty parameter name"));
            }
            let value = decode_component(raw_value).map_err(|e| {
                OAuthError::invalid_request(format!("parameter {}: {}", shown(&name), e.describe()))
            })?;
            if form.params.iter().any(|(n, _)| *n == name) {
                return Err(if name == "resource" {
                    OAuthError::invalid_target("only one resource parameter is supported")
                } else {
                    OAuthError::invalid_request(format!(
                        "parameter {} included more than once",
                        shown(&name)
                    ))
                });
            }
            form.params.push((name, value));
        }
        Ok(form)
    }

    /// The value of `name`, or `None` if it is absent or empty (RFC 6749 §3.1).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`.
    ///
    /// # Errors
    /// `invalid_request` "missing parameter NAME" if it is absent or empty.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    /// `true` if `name` is present with a non-empty value.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The names of the parameters present with a non-empty value, in input order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, _)| n.as_str())
    }

    /// The parameters present with a non-empty value, in input order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of parameters present with a non-empty value.
    #[must_use]
    pub fn len(&self) -> usize {
        self.names().count()
    }

    /// `true` if no parameter has a non-empty value.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Form {
    fn drop(&mut self) {
        for (name, value) in &mut self.params {
            name.zeroize();
            value.zeroize();
        }
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.iter() {
            if SENSITIVE.contains(&name) {
                map.entry(&name, &"<redacted>");
            } else {
                map.entry(&name, &value);
            }
        }
        map.finish()
    }
}

/// `true` if a `Content-Type` header value is `application/x-www-form-urlencoded`.
///
/// The media type is compared case-insensitively and may be followed by parameters
/// (`; charset=UTF-8`); a `charset` parameter, if present, must name UTF-8, since that is how
/// [`Form::parse`] decodes. A missing header is `false`.
#[must_use]
pub fn is_form_content_type(header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    let mut parts = header.split(';');
    let media_type = parts.next().unwrap_or_default().trim_matches([' ', '\t']);
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return false;
    }
    for param in parts {
        let param = param.trim_matches([' ', '\t']);
        if param.is_empty() {
            continue;
        }
        let Some((key, value)) = param.split_once('=') else {
            return false;
        };
        if key
            .trim_end_matches([' ', '\t'])
            .eq_ignore_ascii_case("charset")
        {
            let value = value.trim_start_matches([' ', '\t']);
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if !value.eq_ignore_ascii_case("utf-8") {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Form, OAuthError> {
        Form::parse(s.as_bytes())
    }

    #[test]
    fn basic_parse() {
        let f = parse("grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA&redirect_uri=https%3A%2F%2Fclient%2Eexample%2Ecom%2Fcb").unwrap();
        assert_eq!(f.get("grant_type"), Some("authorization_code"));
        assert_eq!(f.get("code"), Some("SplxlOBeZQQYbYS6WxSbIA"));
        assert_eq!(f.get("redirect_uri"), Some("https://client.example.com/cb"));
        assert_eq!(f.get("missing"), None);
        assert_eq!(
            f.names().collect::<Vec<_>>(),
            ["grant_type", "code", "redirect_uri"]
        );
        assert_eq!(f.len(), 3);
        assert!(f.contains("code"));
        assert_eq!(parse("").unwrap().len(), 0);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn require_names_the_parameter() {
        let f = parse("a=1").unwrap();
        assert_eq!(f.require("a").unwrap(), "1");
        let e = f.require("code").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.description, "missing parameter code");
    }

    #[test]
    fn plus_and_percent() {
        let f = parse("a=hello+world&b=%2B&c=a%20b&d=%C3%A9t%C3%A9&e=%e2%82%ac&f=%3D%26").unwrap();
        assert_eq!(f.get("a"), Some("hello world"));
        assert_eq!(f.get("b"), Some("+"));
        assert_eq!(f.get("c"), Some("a b"));
        assert_eq!(f.get("d"), Some("été"));
        assert_eq!(f.get("e"), Some("€"));
        assert_eq!(f.get("f"), Some("=&"));
        // '=' inside a value after the first one is part of the value.
        assert_eq!(parse("a=b=c").unwrap().get("a"), Some("b=c"));
        // Encoded names.
        assert_eq!(parse("client%5Fid=x").unwrap().get("client_id"), Some("x"));
        // Raw UTF-8 is accepted as itself.
        assert_eq!(parse("a=é").unwrap().get("a"), Some("é"));
        // Tab is allowed (passwords may contain it).
        assert_eq!(
            parse("password=a%09b").unwrap().get("password"),
            Some("a\tb")
        );
    }

    #[test]
    fn malformed_escapes() {
        for bad in [
            "a=%zz",
            "a=%",
            "a=%4",
            "a=%4g",
            "a=%%41",
            "%zz=1",
            "a=1&b=%G0",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}");
            assert!(
                e.description.contains("malformed percent-encoding"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            parse("state=%zz").unwrap_err().description,
            "parameter state: malformed percent-encoding"
        );
    }

    #[test]
    fn invalid_utf8() {
        for bad in [
            "a=%ff",
            "a=%C3",
            "a=%C3%28",
            "a=%ED%A0%80",
            "%80=x",
            "a=%F4%90%80%80",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.description.contains("not valid UTF-8"), "{bad}: {e}");
        }
        let e = Form::parse(b"a=\xff").unwrap_err();
        assert!(e.description.contains("not valid UTF-8"));
    }

    #[test]
    fn control_characters() {
        for bad in ["a=%00", "a=x%0Ay", "a=%0D%0A", "a=%7F", "a%00=1", "a=\n"] {
            let e = parse(bad).unwrap_err();
            assert!(e.description.contains("control character"), "{bad}: {e}");
        }
    }

    #[test]
    fn duplicates_are_refused() {
        let e = parse("scope=a&scope=b").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.description, "parameter scope included more than once");
        // Same name once encoded, once not.
        assert!(parse("code=a&%63ode=b").is_err());
        // Even when one of the values is empty.
        assert!(parse("state=&state=x").is_err());
        assert!(parse("state=x&state").is_err());
        // Repeated resource is invalid_target (RFC 8707).
        let e = parse("resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTarget);
        // A very long duplicated name is shortened in the description.
        let name = "n".repeat(1000);
        let e = parse(&format!("{name}=1&{name}=2")).unwrap_err();
        assert!(e.description.len() < 100);
    }

    #[test]
    fn empty_values_are_omitted() {
        let f = parse("a=&b&c=1").unwrap();
        assert_eq!(f.get("a"), None);
        assert_eq!(f.get("b"), None);
        assert_eq!(f.get("c"), Some("1"));
        assert_eq!(f.names().collect::<Vec<_>>(), ["c"]);
        assert!(f.require("a").is_err());
    }

    #[test]
    fn empty_segments_and_names() {
        let f = parse("&a=1&&b=2&").unwrap();
        assert_eq!(f.len(), 2);
        let e = parse("=x").unwrap_err();
        assert_eq!(e.description, "empty parameter name");
        assert!(parse("a=1&=").is_err());
    }

    #[test]
    fn size_limit() {
        let ok = format!("a={}", "x".repeat(MAX_FORM_BYTES - 2));
        assert_eq!(ok.len(), MAX_FORM_BYTES);
        assert!(parse(&ok).is_ok());
        let too_big = format!("a={}", "x".repeat(MAX_FORM_BYTES - 1));
        let e = parse(&too_big).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("16384"));
    }

    #[test]
    fn parameter_count_limit() {
        let at_limit: Vec<String> = (0..MAX_FORM_PARAMS).map(|i| format!("p{i}=v")).collect();
        assert_eq!(parse(&at_limit.join("&")).unwrap().len(), MAX_FORM_PARAMS);
        let over: Vec<String> = (0..=MAX_FORM_PARAMS).map(|i| format!("p{i}=v")).collect();
        let e = parse(&over.join("&")).unwrap_err();
        assert!(e.description.contains("more than 64"));
        // Empty-valued parameters count too.
        let over: Vec<String> = (0..=MAX_FORM_PARAMS).map(|i| format!("p{i}=")).collect();
        assert!(parse(&over.join("&")).is_err());
    }

    #[test]
    fn debug_redacts_secrets() {
        let f = parse("client_id=app&client_secret=hunter2&password=pw&code_verifier=cv").unwrap();
        let dbg = format!("{f:?}");
        assert!(dbg.contains("app"));
        assert!(!dbg.contains("hunter2"));
        assert!(!dbg.contains("\"pw\""));
        assert!(!dbg.contains("\"cv\""));
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn content_type() {
        assert!(is_form_content_type(Some(
            "application/x-www-form-urlencoded"
        )));
        assert!(is_form_content_type(Some(
            "Application/X-WWW-Form-URLEncoded"
        )));
        assert!(is_form_content_type(Some(
            "application/x-www-form-urlencoded; charset=UTF-8"
        )));
        assert!(is_form_content_type(Some(
            "application/x-www-form-urlencoded;charset=\"utf-8\""
        )));
        assert!(is_form_content_type(Some(
            " application/x-www-form-urlencoded ;"
        )));
        assert!(!is_form_content_type(None));
        assert!(!is_form_content_type(Some("")));
        assert!(!is_form_content_type(Some("application/json")));
        assert!(!is_form_content_type(Some(
            "multipart/form-data; boundary=x"
        )));
        assert!(!is_form_content_type(Some(
            "application/x-www-form-urlencodedx"
        )));
        assert!(!is_form_content_type(Some(
            "application/x-www-form-urlencoded; charset=ISO-8859-1"
        )));
        assert!(!is_form_content_type(Some(
            "application/x-www-form-urlencoded; garbage"
        )));
        assert!(!is_form_content_type(Some(
            "text/plain, application/x-www-form-urlencoded"
        )));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Form::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_formish_input(s in "[a-c=&%+0-9A-Fz\u{e9}]{0,200}") {
            if let Ok(f) = Form::parse(s.as_bytes()) {
                // Whatever is accepted has distinct names and non-empty visible values.
                let names: Vec<&str> = f.names().collect();
                let mut dedup = names.clone();
                dedup.sort_unstable();
                dedup.dedup();
                prop_assert_eq!(names.len(), dedup.len());
            }
        }

        #[test]
        fn round_trips_serialised_pairs(
            pairs in proptest::collection::btree_map("[a-z_]{1,12}", "[ -~\u{e9}\u{20ac}]{1,40}", 0..20)
        ) {
            let encoded = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter())
                .finish();
            let f = Form::parse(encoded.as_bytes()).unwrap();
            for (name, value) in &pairs {
                prop_assert_eq!(f.get(name), Some(value.as_str()));
            }
            prop_assert_eq!(f.len(), pairs.len());
        }
    }
}
