//! The stable rejection reasons. Their `snake_case` names are a public contract: they appear in
//! CLI output, audit records and detection rules, so a name is never changed or reused.

use std::fmt;
use std::str::FromStr;

/// Why a token was refused. Checks run in the order of the variants (see the crate docs); the
/// first failing check decides the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The token is larger than the size limit; nothing else was looked at.
    TooLarge,
    /// Not a compact JWS with a JSON-object header and JSON-object claims, or a header member
    /// of the wrong JSON type.
    Malformed,
    /// A member name appears twice in the header or the claims.
    DuplicateMember,
    /// `alg` is `none`, HMAC, unknown, or not the algorithm of the key that matched.
    AlgNotAllowed,
    /// The header carries `jku`, `jwk`, `x5u`, `x5c`, `crit` or `b64`.
    UnsupportedHeader,
    /// `typ` does not match the required token type.
    TokenTypeMismatch,
    /// No trusted key matches the `kid` (or, without a `kid`, not exactly one key could).
    UnknownKey,
    /// The matching key has been revoked.
    KeyRevoked,
    /// The matching key may not verify signatures (use, key_ops, too weak, unsupported type).
    KeyNotUsable,
    /// The key is outside its validity window at validation time, or the token's `iat` is.
    KeyExpired,
    /// The signature does not verify.
    BadSignature,
    /// A claim required for this token type is absent.
    MissingClaim,
    /// A claim has the wrong JSON type or an impossible value (a string `exp`, CVE-2026-25537).
    InvalidClaim,
    /// `iss` matches no trusted issuer.
    IssuerMismatch,
    /// `tid` is missing, differs from the tenant in `iss`, or is not an allowed tenant.
    TenantMismatch,
    /// The key that signed belongs to another issuer (the Storm-0558 forgery).
    KeyIssuerMismatch,
    /// `aud` names none of the required audiences.
    AudienceMismatch,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    NotYetValid,
    /// Reserved for first-party resources: the token's `jti` has been revoked.
    TokenRevoked,
    /// Reserved for first-party resources: the issuer's ledger never issued this `jti`.
    TokenNotIssued,
}

impl Reason {
    /// Every reason, in check order.
    pub const ALL: [Reason; 21] = [
        Reason::TooLarge,
        Reason::Malformed,
        Reason::DuplicateMember,
        Reason::AlgNotAllowed,
        Reason::UnsupportedHeader,
        Reason::TokenTypeMismatch,
        Reason::UnknownKey,
        Reason::KeyRevoked,
        Reason::KeyNotUsable,
        Reason::KeyExpired,
        Reason::BadSignature,
        Reason::MissingClaim,
        Reason::InvalidClaim,
        Reason::IssuerMismatch,
        Reason::TenantMismatch,
        Reason::KeyIssuerMismatch,
        Reason::AudienceMismatch,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::TokenRevoked,
        Reason::TokenNotIssued,
    ];

    /// The stable `snake_case` code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::DuplicateMember => "duplicate_member",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::UnsupportedHeader => "unsupported_header",
            Reason::TokenTypeMismatch => "token_type_mismatch",
            Reason::UnknownKey => "unknown_key",
            Reason::KeyRevoked => "key_revoked",
            Reason::KeyNotUsable => "key_not_usable",
            Reason::KeyExpired => "key_expired",
            Reason::BadSignature => "bad_signature",
            Reason::MissingClaim => "missing_claim",
            Reason::InvalidClaim => "invalid_claim",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::TenantMismatch => "tenant_mismatch",
            Reason::KeyIssuerMismatch => "key_issuer_mismatch",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::TokenRevoked => "token_revoked",
            Reason::TokenNotIssued => "token_not_issued",
        }
    }
}

impl From<&keyscope_jose::JwsError> for Reason {
    /// The reason for a refusal found while parsing or checking a JWS header.
    fn from(error: &keyscope_jose::JwsError) -> Reason {
        use keyscope_jose::JwsError;
        match error {
            JwsError::TooLarge(_) => Reason::TooLarge,
            JwsError::Malformed(_) => Reason::Malformed,
            JwsError::DuplicateMember(_) => Reason::DuplicateMember,
            JwsError::AlgNotAllowed(_) => Reason::AlgNotAllowed,
            JwsError::UnsupportedHeader(_) => Reason::UnsupportedHeader,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string was not a reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason code {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> Result<Reason, UnknownReason> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Reason, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            assert!(seen.insert(reason.as_str()));
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{reason}\"")
            );
        }
        assert!("Malformed".parse::<Reason>().is_err());
    }
}
