//! The signature algorithms Keyscope verifies, by their exact JOSE names (RFC 7518 §3.1, RFC 8037).

use std::fmt;

use aws_lc_rs::signature::{self, RsaParameters, VerificationAlgorithm};

/// An asymmetric JWS algorithm that Keyscope can verify.
///
/// There is deliberately no variant for `none` or for any HMAC algorithm: a token naming them
/// cannot even be represented past the header check. Names are matched exactly and
/// case-sensitively (`"es256"` and `"NONE"` are not algorithms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// ECDSA with P-384 and SHA-384.
    Es384,
    /// Ed25519 (RFC 8037; the only `EdDSA` curve accepted).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384 and MGF1-SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512 and MGF1-SHA-512.
    Ps512,
}

/// The family of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// `kty` `RSA`.
    Rsa,
    /// `kty` `EC`, `crv` `P-256`.
    P256,
    /// `kty` `EC`, `crv` `P-384`.
    P384,
    /// `kty` `OKP`, `crv` `Ed25519`.
    Ed25519,
}

impl Algorithm {
    /// Every supported algorithm, in a stable order.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
    ];

    /// Looks an algorithm up by its exact JOSE name.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
        }
    }

    /// The key family this algorithm signs with.
    pub fn key_family(self) -> KeyFamily {
        match self {
            Algorithm::Es256 => KeyFamily::P256,
            Algorithm::Es384 => KeyFamily::P384,
            Algorithm::EdDsa => KeyFamily::Ed25519,
            _ => KeyFamily::Rsa,
        }
    }

    /// The aws-lc-rs verification algorithm. ECDSA uses the fixed-length `r||s` form that JWS
    /// mandates (RFC 7518 §3.4); a DER signature is therefore never accepted.
    pub(crate) fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDsa => &signature::ED25519,
            Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }

    /// The aws-lc-rs RSA parameters, for RSA algorithms.
    pub(crate) fn rsa_parameters(self) -> Option<&'static RsaParameters> {
        match self {
            Algorithm::Rs256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::Rs384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::Rs512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::Ps256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            Algorithm::Ps384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            Algorithm::Ps512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            _ => None,
        }
    }
}

impl KeyFamily {
    /// The algorithm a key of this family accepts when its JWK names none.
    pub fn default_algorithm(self) -> Algorithm {
        match self {
            KeyFamily::Rsa => Algorithm::Rs256,
            KeyFamily::P256 => Algorithm::Es256,
            KeyFamily::P384 => Algorithm::Es384,
            KeyFamily::Ed25519 => Algorithm::EdDsa,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exact() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
        for name in [
            "none", "None", "NONE", "es256", "HS256", "HS384", "HS512", "ES512", "ES521", "RS1",
            "EdDSA ", "", "Ed25519",
        ] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
    }
}
