//! Random tokens (authorization codes, refresh tokens, CSRF tokens...) and the digests under
//! which they are stored.
//!
//! Codes and refresh tokens are stored only as [`token_digest`], so a leaked database does not
//! hand out usable tokens. Tokens are high-entropy random values, so a plain SHA-256 is enough:
//! there is nothing to brute-force.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::b64;
use crate::error::OAuthError;

/// Random bytes in a default token: 256 bits.
pub const DEFAULT_TOKEN_BYTES: usize = 32;

/// A random token of `bytes` bytes from the system CSPRNG, base64url without padding.
///
/// Use at least 16 bytes (128 bits, RFC 6749 §10.10); [`DEFAULT_TOKEN_BYTES`] is the norm.
///
/// AWS-LC's generator does not fail once initialised (it aborts the process itself if its
/// entropy source breaks); should `fill` ever report an error anyway, this function aborts the
/// process rather than return a predictable token or panic. Use [`try_random_token`] to handle
/// the error instead.
#[must_use]
pub fn random_token(bytes: usize) -> String {
    match try_random_token(bytes) {
        Ok(token) => token,
        Err(_) => std::process::abort(),
    }
}

/// Like [`random_token`], reporting a generator failure instead of aborting.
///
/// # Errors
/// `server_error` if the system CSPRNG fails.
pub fn try_random_token(bytes: usize) -> Result<String, OAuthError> {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| OAuthError::server_error("random number generator failure"))?;
    Ok(b64::encode_url(&buf))
}

/// The SHA-256 digest of `token` as 64 lower-case hex characters: the key under which an
/// authorization code or refresh token is stored and looked up.
#[must_use]
pub fn token_digest(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = String::with_capacity(64);
    for &b in d.as_ref() {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(HEX.get(usize::from(nibble)).map_or('0', |&c| char::from(c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens() {
        let a = random_token(DEFAULT_TOKEN_BYTES);
        let b = random_token(DEFAULT_TOKEN_BYTES);
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(b64::decode_url(&a).unwrap().len(), 32);
        assert_eq!(random_token(16).len(), 22);
        assert_eq!(random_token(0), "");
        assert!(crate::bearer::is_b64token(&a));
        assert_eq!(try_random_token(48).unwrap().len(), 64);
    }

    #[test]
    fn digests() {
        // SHA-256 of "" and "abc" (FIPS 180-2).
        assert_eq!(
            token_digest(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(token_digest("a"), token_digest("b"));
    }
}
