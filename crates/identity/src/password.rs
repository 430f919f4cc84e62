//! Passwords: argon2id (RFC 9106) with the `argon2` crate's defaults (19 MiB, 2 passes,
//! 1 lane, the OWASP baseline), salted with 16 bytes from the system RNG.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::IdentityError;

/// Longest password accepted (argon2 takes any length; a megabyte "password" is a
/// denial-of-service attempt).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Checks a new password's length.
pub fn check_strength(password: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

/// Hashes a password into a PHC string.
pub fn hash(password: &str) -> Result<String, IdentityError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| IdentityError::Internal("no randomness".to_owned()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| IdentityError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Internal(format!("argon2: {e}")))
}

/// A hash of a random password, verified against when the user does not exist, so that an
/// unknown username costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        // Without randomness nothing else works either; an empty hash just fails fast.
        hash(&crate::random_id(24)).unwrap_or_default()
    })
}

/// Checks a password against a PHC string (false on any mismatch or unreadable hash).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterz", &phc));
        assert!(!verify("x", "not a hash"));
        assert!(!verify("x", dummy_hash()));
    }

    #[test]
    fn strength() {
        assert!(check_strength("short").is_err());
        assert!(check_strength(&"a".repeat(2000)).is_err());
        assert!(check_strength("twelve chars").is_ok());
    }
}
