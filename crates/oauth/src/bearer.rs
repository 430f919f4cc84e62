//! Bearer tokens in the `Authorization` header and the `WWW-Authenticate` challenge (RFC 6750).
//!
//! Only the header method (RFC 6750 §2.1) is supported: tokens in form bodies or query strings
//! end up in logs and referers, and OAuth 2.1 drops the query method.

use std::fmt::Write as _;

use thiserror::Error;

use crate::error::{ErrorCode, sanitize_description};

/// Longest accepted `Authorization` header value, in bytes.
pub const MAX_BEARER_HEADER_BYTES: usize = 16 * 1024;

/// Why no bearer token could be taken from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BearerError {
    /// No `Authorization` header, or one with another scheme: the request carries no bearer
    /// credentials. Answer 401 with a challenge **without** error attributes (RFC 6750 §3.1).
    #[error("no bearer token")]
    Missing,
    /// A `Bearer` header that does not follow `"Bearer" SP b64token`, or is too long.
    #[error("malformed bearer token")]
    Malformed,
}

impl BearerError {
    /// The error attributes for [`www_authenticate`]: `None` for [`BearerError::Missing`],
    /// `invalid_token` for [`BearerError::Malformed`].
    #[must_use]
    pub const fn challenge_error(self) -> Option<(ErrorCode, &'static str)> {
        match self {
            BearerError::Missing => None,
            BearerError::Malformed => Some((ErrorCode::InvalidToken, "malformed bearer token")),
        }
    }

    /// The HTTP status to answer with: 401 for both.
    #[must_use]
    pub const fn status(self) -> u16 {
        401
    }
}

/// `true` if `b` is a `b64token` character other than `=` (RFC 6750 §2.1).
const fn is_b64token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// `true` if `token` matches `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
/// *"="`.
#[must_use]
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(is_b64token_char)
}

/// Takes the access token from an `Authorization` header value.
///
/// The scheme `Bearer` is matched case-insensitively and must be followed by exactly one space
/// and a `b64token`; nothing may follow the token. The whole header may be at most
/// [`MAX_BEARER_HEADER_BYTES`] bytes.
///
/// # Errors
/// [`BearerError::Missing`] without a header or with another scheme (`Basic …`, `Bearerx …`);
/// [`BearerError::Malformed`] for a `Bearer` header that breaks the syntax.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, BearerError> {
    let header = authorization.ok_or(BearerError::Missing)?;
    let scheme_len = header.bytes().take_while(|&b| is_tchar(b)).count();
    let scheme = header.get(..scheme_len).unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(BearerError::Missing);
    }
    if header.len() > MAX_BEARER_HEADER_BYTES {
        return Err(BearerError::Malformed);
    }
    match header
        .get(scheme_len..)
        .and_then(|rest| rest.strip_prefix(' '))
    {
        Some(token) if is_b64token(token) => Ok(token),
        _ => Err(BearerError::Malformed),
    }
}

/// `true` if `b` is a `tchar` (RFC 9110 §5.6.2), the characters of an auth-scheme name.
const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Appends `s` as an HTTP quoted-string (RFC 9110 §5.6.4): `"` and `\` are backslash-escaped,
/// and anything that is not visible ASCII or a space (controls, CR/LF, non-ASCII) becomes `?`,
/// so the header can never be split or smuggled.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

/// Builds a `WWW-Authenticate` value: `Bearer realm="…"`, followed by
/// `, error="…", error_description="…"` when `error` is given (RFC 6750 §3).
///
/// Pass `None` when the request carried no credentials ([`BearerError::Missing`]): RFC 6750
/// §3.1 says not to include an error code then. The description is restricted to the RFC 6750
/// character set and omitted when empty.
#[must_use]
pub fn www_authenticate(realm: &str, error: Option<(ErrorCode, &str)>) -> String {
    let mut out = String::from("Bearer realm=");
    push_quoted(&mut out, realm);
    if let Some((code, description)) = error {
        let _ = write!(out, ", error=\"{}\"", code.as_str());
        let description = sanitize_description(description);
        if !description.is_empty() {
            out.push_str(", error_description=");
            push_quoted(&mut out, &description);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_tokens() {
        assert_eq!(
            bearer_token(Some("Bearer mF_9.B5f-4.1JqM")),
            Ok("mF_9.B5f-4.1JqM")
        );
        assert_eq!(bearer_token(Some("bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("BEARER abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("Bearer a+/~==")), Ok("a+/~=="));
        assert_eq!(bearer_token(Some("Bearer abc==")), Ok("abc=="));
        let jwt = "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        assert!(bearer_token(Some(jwt)).is_ok());
    }

    #[test]
    fn missing() {
        assert_eq!(bearer_token(None), Err(BearerError::Missing));
        assert_eq!(
            bearer_token(Some("Basic czZCaGRSa3F0Mzo=")),
            Err(BearerError::Missing)
        );
        assert_eq!(bearer_token(Some("")), Err(BearerError::Missing));
        assert_eq!(bearer_token(Some("Bearerabc")), Err(BearerError::Missing));
        assert_eq!(BearerError::Missing.challenge_error(), None);
    }

    #[test]
    fn malformed() {
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer  abc", // two spaces
            "Bearer abc ", // trailing space
            "Bearer\tabc", // tab is not a space here
            "Bearer:abc",
            "Bearer a b",
            "Bearer ==",   // only padding
            "Bearer ab=c", // '=' only at the end
            "Bearer abc=\u{0}",
            "Bearer ab\"c",
            "Bearer ab,c",
            "Bearer ab\r\nX: y",
            "Bearer ab%41",
            "Bearer é",
        ] {
            assert_eq!(
                bearer_token(Some(bad)),
                Err(BearerError::Malformed),
                "{bad:?}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_BEARER_HEADER_BYTES));
        assert_eq!(bearer_token(Some(&long)), Err(BearerError::Malformed));
        let just_fits = format!("Bearer {}", "a".repeat(MAX_BEARER_HEADER_BYTES - 7));
        assert!(bearer_token(Some(&just_fits)).is_ok());
        assert_eq!(
            BearerError::Malformed.challenge_error(),
            Some((ErrorCode::InvalidToken, "malformed bearer token"))
        );
        assert_eq!(BearerError::Malformed.status(), 401);
    }

    #[test]
    fn challenge() {
        assert_eq!(
            www_authenticate("example", None),
            r#"Bearer realm="example""#
        );
        assert_eq!(
            www_authenticate(
                "example",
                Some((ErrorCode::InvalidToken, "The access token expired"))
            ),
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#
        );
        assert_eq!(
            www_authenticate("example", Some((ErrorCode::InsufficientScope, ""))),
            r#"Bearer realm="example", error="insufficient_scope""#
        );
    }

    #[test]
    fn challenge_escaping() {
        assert_eq!(
            www_authenticate("a\"b\\c", None),
            r#"Bearer realm="a\"b\\c""#
        );
        let h = www_authenticate(
            "r\r\nSet-Cookie: x",
            Some((ErrorCode::InvalidToken, "x\"\r\n\\é")),
        );
        assert!(!h.contains('\r') && !h.contains('\n'));
        assert_eq!(
            h,
            r#"Bearer realm="r??Set-Cookie: x", error="invalid_token", error_description="x'  /?""#
        );
    }
}
