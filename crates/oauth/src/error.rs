//! OAuth error codes and the error value every function in this crate returns.
//!
//! The codes come from RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1, RFC 8707 §2
//! and OpenID Connect Core §3.1.2.6. [`OAuthError::to_json`] is the token-endpoint error body;
//! the same code and description go into an authorization error redirect
//! ([`crate::redirect::authorization_response`]) or a `WWW-Authenticate` challenge
//! ([`crate::bearer::www_authenticate`]).

use std::fmt;

/// Longest `error_description` kept, in characters (the rest is cut and marked with `...`).
pub const MAX_DESCRIPTION_CHARS: usize = 512;

/// An OAuth 2.0 / OpenID Connect error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `invalid_request`: missing, repeated, malformed or unsupported parameter.
    InvalidRequest,
    /// `invalid_client`: client authentication failed (unknown client, no or unsupported
    /// authentication).
    InvalidClient,
    /// `invalid_grant`: the code, refresh token or credentials are invalid, expired, revoked,
    /// issued to another client or do not match the redirect URI / PKCE verifier.
    InvalidGrant,
    /// `unauthorized_client`: the client may not use this grant or response type.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`: the scope is invalid, unknown, malformed or exceeds what was granted.
    InvalidScope,
    /// `access_denied`: the resource owner or the server refused the request.
    AccessDenied,
    /// `unsupported_response_type`.
    UnsupportedResponseType,
    /// `server_error`: an unexpected condition on the server.
    ServerError,
    /// `temporarily_unavailable`: overload or maintenance.
    TemporarilyUnavailable,
    /// `invalid_target` (RFC 8707): the requested resource is invalid, unknown or malformed.
    InvalidTarget,
    /// `invalid_token` (RFC 6750): the access token is expired, revoked, malformed or invalid.
    InvalidToken,
    /// `insufficient_scope` (RFC 6750): the token lacks the scope the resource requires.
    InsufficientScope,
    /// `unsupported_token_type` (RFC 7009): revocation of this token type is not supported.
    UnsupportedTokenType,
    /// `login_required` (OpenID Connect): `prompt=none` but the user is not signed in.
    LoginRequired,
    /// `invalid_request_uri` (OpenID Connect, RFC 9126): the `request_uri` is invalid.
    InvalidRequestUri,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::InvalidScope,
        ErrorCode::AccessDenied,
        ErrorCode::UnsupportedResponseType,
        ErrorCode::ServerError,
        ErrorCode::TemporarilyUnavailable,
        ErrorCode::InvalidTarget,
        ErrorCode::InvalidToken,
        ErrorCode::InsufficientScope,
        ErrorCode::UnsupportedTokenType,
        ErrorCode::LoginRequired,
        ErrorCode::InvalidRequestUri,
    ];

    /// The registered name, e.g. `"invalid_request"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
        }
    }

    /// The HTTP status for a direct (non-redirect) error response carrying this code.
    ///
    /// Token endpoint semantics (RFC 6749 §5.2): 400, except `invalid_client` → 401,
    /// `server_error` → 500, `temporarily_unavailable` → 503; and for protected resources
    /// (RFC 6750 §3.1) `invalid_token` → 401, `insufficient_scope` → 403.
    ///
    /// A 401 for `invalid_client` must carry a `WWW-Authenticate` header when the client tried
    /// the `Authorization` header (RFC 6749 §5.2); that is the server's job.
    #[must_use]
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope => 403,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error: a code and a human-readable description for the client developer.
///
/// Descriptions built through the constructors are already restricted to the RFC 6749
/// `error_description` character set (see [`sanitize_description`]); [`OAuthError::to_json`] and
/// `Display` sanitise again, so a value built by hand with arbitrary text is safe too.
/// Descriptions never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The error code.
    pub code: ErrorCode,
    /// The description (`error_description`); may be empty.
    pub description: String,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(description: impl AsRef<str>) -> Self {
                Self::new(ErrorCode::$code, description)
            }
        )*
    };
}

impl OAuthError {
    /// An error with `code` and `description` (sanitised, see [`sanitize_description`]).
    #[must_use]
    pub fn new(code: ErrorCode, description: impl AsRef<str>) -> Self {
        Self {
            code,
            description: sanitize_description(description.as_ref()),
        }
    }

    constructors! {
        /// An `invalid_request` error.
        invalid_request => InvalidRequest;
        /// An `invalid_client` error.
        invalid_client => InvalidClient;
        /// An `invalid_grant` error.
        invalid_grant => InvalidGrant;
        /// An `unauthorized_client` error.
        unauthorized_client => UnauthorizedClient;
        /// An `unsupported_grant_type` error.
        unsupported_grant_type => UnsupportedGrantType;
        /// An `invalid_scope` error.
        invalid_scope => InvalidScope;
        /// An `access_denied` error.
        access_denied => AccessDenied;
        /// An `unsupported_response_type` error.
        unsupported_response_type => UnsupportedResponseType;
        /// A `server_error` error.
        server_error => ServerError;
        /// A `temporarily_unavailable` error.
        temporarily_unavailable => TemporarilyUnavailable;
        /// An `invalid_target` error (RFC 8707).
        invalid_target => InvalidTarget;
        /// An `invalid_token` error (RFC 6750).
        invalid_token => InvalidToken;
        /// An `insufficient_scope` error (RFC 6750).
        insufficient_scope => InsufficientScope;
        /// An `unsupported_token_type` error (RFC 7009).
        unsupported_token_type => UnsupportedTokenType;
        /// A `login_required` error (OpenID Connect).
        login_required => LoginRequired;
        /// An `invalid_request_uri` error (OpenID Connect, RFC 9126).
        invalid_request_uri => InvalidRequestUri;
    }

    /// The HTTP status for a direct error response (see [`ErrorCode::status`]).
    #[must_use]
    pub const fn status(&self) -> u16 {
        self.code.status()
    }

    /// The description, sanitised (see [`sanitize_description`]).
    #[must_use]
    pub fn safe_description(&self) -> String {
        sanitize_description(&self.description)
    }

    /// The JSON error body of RFC 6749 §5.2:
    /// `{"error":"invalid_request","error_description":"…"}`.
    ///
    /// `error_description` is omitted when the description is empty. The description is
    /// sanitised to the RFC 6749 character set, which contains neither `"` nor `\` nor control
    /// characters, so no JSON escaping is ever needed. Serve it as `application/json` with
    /// `Cache-Control: no-store`.
    #[must_use]
    pub fn to_json(&self) -> String {
        let description = self.safe_description();
        if description.is_empty() {
            format!("{{\"error\":\"{}\"}}", self.code.as_str())
        } else {
            format!(
                "{{\"error\":\"{}\",\"error_description\":\"{}\"}}",
                self.code.as_str(),
                description
            )
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let description = self.safe_description();
        if description.is_empty() {
            f.write_str(self.code.as_str())
        } else {
            write!(f, "{}: {}", self.code.as_str(), description)
        }
    }
}

impl std::error::Error for OAuthError {}

/// Restricts `text` to the `error_description` character set of RFC 6749 §4.1.2.1 / §5.2
/// (`%x20-21 / %x23-5B / %x5D-7E`) and to [`MAX_DESCRIPTION_CHARS`] characters.
///
/// `"` becomes `'`, `\` becomes `/`, tab, CR and LF become a space, and any other character
/// outside the set (controls, non-ASCII) becomes `?`. The result is also safe inside a JSON
/// string, an HTTP quoted-string and a URI query once percent-encoded.
#[must_use]
pub fn sanitize_description(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_DESCRIPTION_CHARS));
    for (count, c) in text.chars().enumerate() {
        if count == MAX_DESCRIPTION_CHARS {
            // Keep the total at MAX_DESCRIPTION_CHARS characters, all ASCII.
            out.truncate(MAX_DESCRIPTION_CHARS - 3);
            out.push_str("...");
            break;
        }
        out.push(match c {
            '"' => '\'',
            '\\' => '/',
            '\t' | '\r' | '\n' => ' ',
            ' '..='~' => c,
            _ => '?',
        });
    }
    out
}

/// `true` if every character of `text` is in the RFC 6749 `error_description` set.
#[must_use]
pub fn is_valid_description(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_rfc_names() {
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "invalid_request",
                "invalid_client",
                "invalid_grant",
                "unauthorized_client",
                "unsupported_grant_type",
                "invalid_scope",
                "access_denied",
                "unsupported_response_type",
                "server_error",
                "temporarily_unavailable",
                "invalid_target",
                "invalid_token",
                "insufficient_scope",
                "unsupported_token_type",
                "login_required",
                "invalid_request_uri",
            ]
        );
        assert_eq!(ErrorCode::InvalidTarget.to_string(), "invalid_target");
    }

    #[test]
    fn statuses() {
        for code in ErrorCode::ALL {
            let expected = match code {
                ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
                ErrorCode::InsufficientScope => 403,
                ErrorCode::ServerError => 500,
                ErrorCode::TemporarilyUnavailable => 503,
                _ => 400,
            };
            assert_eq!(OAuthError::new(code, "x").status(), expected, "{code}");
        }
        assert_eq!(OAuthError::invalid_grant("x").status(), 400);
        assert_eq!(OAuthError::invalid_client("x").status(), 401);
    }

    #[test]
    fn json_body() {
        let e = OAuthError::invalid_request("missing parameter code");
        assert_eq!(
            e.to_json(),
            r#"{"error":"invalid_request","error_description":"missing parameter code"}"#
        );
        assert_eq!(
            OAuthError::server_error("").to_json(),
            r#"{"error":"server_error"}"#
        );
    }

    #[test]
    fn json_body_sanitises_hand_built_description() {
        let e = OAuthError {
            code: ErrorCode::InvalidGrant,
            description: "a\"b\\c\nd\u{7f}é\u{0}".to_owned(),
        };
        assert_eq!(
            e.to_json(),
            r#"{"error":"invalid_grant","error_description":"a'b/c d???"}"#
        );
        assert_eq!(e.to_string(), "invalid_grant: a'b/c d???");
    }

    #[test]
    fn constructor_sanitises() {
        let e = OAuthError::invalid_scope("bad \"scope\" <é>");
        assert_eq!(e.description, "bad 'scope' <?>");
        assert!(is_valid_description(&e.description));
        assert_eq!(e.to_string(), "invalid_scope: bad 'scope' <?>");
    }

    #[test]
    fn description_is_bounded() {
        let long = "é".repeat(10_000);
        let s = sanitize_description(&long);
        assert_eq!(s.len(), MAX_DESCRIPTION_CHARS);
        assert!(s.ends_with("..."));
        let exact = "a".repeat(MAX_DESCRIPTION_CHARS);
        assert_eq!(sanitize_description(&exact), exact);
    }

    #[test]
    fn every_byte_sanitises_into_the_allowed_set() {
        let all: String = (0u32..0x300).filter_map(char::from_u32).collect();
        let s = sanitize_description(&all);
        assert!(is_valid_description(&s));
    }
}
