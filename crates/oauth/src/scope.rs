//! Scope strings (RFC 6749 §3.3).
//!
//! `scope = scope-token *( SP scope-token )`, `scope-token = 1*NQCHAR`,
//! `NQCHAR = %x21 / %x23-5B / %x5D-7E`. Parsing follows the grammar exactly: tokens are
//! separated by single spaces, with no leading or trailing space. Order carries no meaning, so
//! repeated tokens are dropped (the first occurrence keeps its place).

use crate::error::OAuthError;

/// Most scope tokens accepted in one scope string (repeats included).
pub const MAX_SCOPE_TOKENS: usize = 64;

/// Longest accepted scope token, in bytes.
pub const MAX_SCOPE_TOKEN_BYTES: usize = 256;

/// `true` if `b` is an `NQCHAR`.
const fn is_nqchar(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// Parses a `scope` parameter into its distinct tokens, in first-seen order.
///
/// The empty string yields an empty list (the caller applies the client's default scope or
/// refuses, RFC 6749 §3.3).
///
/// # Errors
/// `invalid_scope` for an empty token (a leading, trailing or doubled space), a character
/// outside `NQCHAR` (the description gives its position, not the character), a token longer
/// than [`MAX_SCOPE_TOKEN_BYTES`], or more than [`MAX_SCOPE_TOKENS`] tokens.
pub fn parse_scope(s: &str) -> Result<Vec<String>, OAuthError> {
    let mut tokens: Vec<String> = Vec::new();
    if s.is_empty() {
        return Ok(tokens);
    }
    let mut offset = 0usize;
    for (count, token) in s.split(' ').enumerate() {
        if count == MAX_SCOPE_TOKENS {
            return Err(OAuthError::invalid_scope(format!(
                "more than {MAX_SCOPE_TOKENS} scope tokens"
            )));
        }
        if token.is_empty() {
            return Err(OAuthError::invalid_scope(
                "scope tokens must be separated by single spaces, without leading or trailing spaces",
            ));
        }
        if let Some(bad) = token.bytes().position(|b| !is_nqchar(b)) {
            return Err(OAuthError::invalid_scope(format!(
                "invalid character in scope at byte {}",
                offset + bad
            )));
        }
        if token.len() > MAX_SCOPE_TOKEN_BYTES {
            return Err(OAuthError::invalid_scope(format!(
                "scope token longer than {MAX_SCOPE_TOKEN_BYTES} bytes"
            )));
        }
        if !tokens.iter().any(|t| t == token) {
            tokens.push(token.to_owned());
        }
        offset += token.len() + 1;
    }
    Ok(tokens)
}

/// Joins scope tokens with single spaces, the inverse of [`parse_scope`].
#[must_use]
pub fn join_scope(tokens: &[String]) -> String {
    tokens.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use proptest::prelude::*;

    #[test]
    fn parses() {
        assert_eq!(parse_scope("openid").unwrap(), ["openid"]);
        assert_eq!(
            parse_scope("openid profile email").unwrap(),
            ["openid", "profile", "email"]
        );
        assert_eq!(
            parse_scope("https://mail.ks.example/Mail.Read offline_access").unwrap(),
            ["https://mail.ks.example/Mail.Read", "offline_access"]
        );
        assert_eq!(parse_scope("!#[]~").unwrap(), ["!#[]~"]);
        assert!(parse_scope("").unwrap().is_empty());
    }

    #[test]
    fn duplicates_removed_keeping_order() {
        assert_eq!(parse_scope("b a b c a").unwrap(), ["b", "a", "c"]);
    }

    #[test]
    fn refuses() {
        for bad in [
            " openid",
            "openid ",
            "openid  profile",
            " ",
            "open\"id",
            "open\\id",
            "openid\tprofile",
            "openid\nprofile",
            "opén",
            "a\u{0}",
            "a\u{7f}",
        ] {
            let e = parse_scope(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidScope, "{bad:?}");
        }
        assert_eq!(
            parse_scope("openid pro\"file").unwrap_err().description,
            "invalid character in scope at byte 10"
        );
    }

    #[test]
    fn limits() {
        let at: Vec<String> = (0..MAX_SCOPE_TOKENS).map(|i| format!("s{i}")).collect();
        assert_eq!(parse_scope(&at.join(" ")).unwrap().len(), MAX_SCOPE_TOKENS);
        let over: Vec<String> = (0..=MAX_SCOPE_TOKENS).map(|i| format!("s{i}")).collect();
        assert!(parse_scope(&over.join(" ")).is_err());
        // Repeats count towards the limit.
        let repeats = vec!["a"; MAX_SCOPE_TOKENS + 1].join(" ");
        assert!(parse_scope(&repeats).is_err());
        assert!(parse_scope(&"a".repeat(MAX_SCOPE_TOKEN_BYTES)).is_ok());
        assert!(parse_scope(&"a".repeat(MAX_SCOPE_TOKEN_BYTES + 1)).is_err());
    }

    #[test]
    fn join() {
        let t = parse_scope("openid profile").unwrap();
        assert_eq!(join_scope(&t), "openid profile");
        assert_eq!(join_scope(&[]), "");
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in "[ -~\u{e9}]{0,100}") {
            if let Ok(tokens) = parse_scope(&s) {
                prop_assert_eq!(parse_scope(&join_scope(&tokens)).unwrap(), tokens);
            }
        }
    }
}
