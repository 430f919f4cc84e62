//! Proof Key for Code Exchange (RFC 7636), `S256` only.
//!
//! The `plain` method sends the verifier itself as the challenge, so anyone who sees the
//! authorization request (logs, a malicious app on the device, a referer) can redeem the code;
//! OAuth 2.1 and RFC 9700 §2.1.1 recommend `S256`, and Keyscope accepts nothing else. A missing
//! `code_challenge_method` means `plain` (RFC 7636 §4.3), so it is refused too.
//!
//! Flow: at the authorization endpoint [`check_challenge`] validates the request and the
//! challenge is stored with the code; at the token endpoint [`check_verifier_syntax`] validates
//! the `code_verifier` and [`verifier_matches`] compares it with the stored challenge
//! (`invalid_grant` when it does not match, RFC 7636 §4.6).

use aws_lc_rs::digest;

use crate::b64;
use crate::client_auth::constant_time_eq;
use crate::error::OAuthError;

/// The only supported `code_challenge_method`.
pub const S256: &str = "S256";

/// Length of an S256 challenge: base64url without padding of a 32-byte SHA-256 digest.
pub const CHALLENGE_LEN: usize = 43;

/// Shortest `code_verifier` (RFC 7636 §4.1).
pub const MIN_VERIFIER_LEN: usize = 43;

/// Longest `code_verifier` (RFC 7636 §4.1).
pub const MAX_VERIFIER_LEN: usize = 128;

/// Validates `code_challenge` and `code_challenge_method` from an authorization request.
///
/// # Errors
/// `invalid_request` if the method is absent or not exactly `S256` ("only S256 is supported"),
/// or if the challenge is not 43 characters of canonical base64url encoding 32 bytes.
pub fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), OAuthError> {
    match method {
        Some(S256) => {}
        Some("plain") => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method plain is not supported; only S256 is supported",
            ));
        }
        None => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method is required; only S256 is supported",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "unsupported code_challenge_method; only S256 is supported",
            ));
        }
    }
    let decodes_to_32 = challenge.len() == CHALLENGE_LEN
        && b64::decode_url(challenge).is_some_and(|bytes| bytes.len() == 32);
    if decodes_to_32 {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "code_challenge must be the 43-character base64url encoding of a SHA-256 digest",
        ))
    }
}

/// Validates the syntax of a `code_verifier` (RFC 7636 §4.1): 43 to 128 characters from
/// `[A-Za-z0-9-._~]`.
///
/// # Errors
/// `invalid_request` describing the rule. The code being redeemed should be treated as used
/// all the same.
pub fn check_verifier_syntax(verifier: &str) -> Result<(), OAuthError> {
    let len_ok = (MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&verifier.len());
    let chars_ok = verifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if len_ok && chars_ok {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 characters from A-Z a-z 0-9 - . _ ~",
        ))
    }
}

/// The S256 challenge for `verifier`: `BASE64URL(SHA256(ASCII(verifier)))` (RFC 7636 §4.2).
#[must_use]
pub fn s256_challenge(verifier: &str) -> String {
    b64::encode_url(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// `true` if `verifier` is syntactically valid and its S256 challenge equals `challenge`
/// (compared in constant time).
#[must_use]
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    if check_verifier_syntax(verifier).is_err() {
        return false;
    }
    constant_time_eq(s256_challenge(verifier).as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(s256_challenge(VERIFIER), CHALLENGE);
        assert!(verifier_matches(VERIFIER, CHALLENGE));
        assert!(check_challenge(CHALLENGE, Some("S256")).is_ok());
        assert!(check_verifier_syntax(VERIFIER).is_ok());
    }

    #[test]
    fn mismatch() {
        let other = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl";
        assert!(!verifier_matches(other, CHALLENGE));
        assert!(!verifier_matches(
            VERIFIER,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!verifier_matches(VERIFIER, ""));
        // plain: the challenge equal to the verifier never matches.
        assert!(!verifier_matches(VERIFIER, VERIFIER));
        // A syntactically invalid verifier never matches, even with its own hash.
        let bad = "short";
        assert!(!verifier_matches(bad, &s256_challenge(bad)));
    }

    #[test]
    fn only_s256() {
        for method in [None, Some("plain"), Some("s256"), Some("S512"), Some("")] {
            let e = check_challenge(CHALLENGE, method).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(
                e.description.contains("only S256 is supported"),
                "{method:?}: {e}"
            );
        }
    }

    #[test]
    fn challenge_syntax() {
        for bad in [
            "",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c", // 42
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cMA", // 44
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM", // standard alphabet
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=", // padding
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN", // non-canonical last char
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw cM",
        ] {
            let e = check_challenge(bad, Some("S256")).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn verifier_syntax() {
        assert!(check_verifier_syntax(&"a".repeat(43)).is_ok());
        assert!(check_verifier_syntax(&"a".repeat(128)).is_ok());
        assert!(check_verifier_syntax(&"-._~".repeat(11)).is_ok());
        assert!(check_verifier_syntax(&"a".repeat(42)).is_err());
        assert!(check_verifier_syntax(&"a".repeat(129)).is_err());
        assert!(check_verifier_syntax(&format!("{}+", "a".repeat(42))).is_err());
        assert!(check_verifier_syntax(&format!("{} ", "a".repeat(42))).is_err());
        assert!(check_verifier_syntax(&format!("{}é", "a".repeat(41))).is_err());
        assert!(check_verifier_syntax("").is_err());
    }
}
