//! Public JSON Web Keys and key sets (RFC 7517), parsed once into ready-to-verify keys.
//!
//! Two kinds of trouble are kept apart:
//! - a key set that is *broken* (not JSON, duplicate `kid`s, private members in a public set,
//!   key material that does not form a key, an `x5c` certificate for another key) is an error:
//!   the whole set is refused, never silently half-used;
//! - a key that is well-formed but *not usable* for verifying signatures (wrong `use`,
//!   `key_ops` without `verify`, RSA under 2048 bits, an algorithm or curve Keyscope does not
//!   verify) stays in the set, so that a token naming it is refused with a precise reason
//!   instead of "unknown key".

use std::collections::HashMap;

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::alg::{Algorithm, KeyFamily};
use crate::b64;
use crate::json::{self, JsonError};

/// Largest key set accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys accepted in one set.
pub const MAX_KEYS: usize = 1024;
/// Smallest RSA modulus accepted for verification, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (aws-lc-rs verifies up to 8192).
pub const MAX_RSA_BITS: usize = 8192;

/// Members that only a private key carries (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
pub const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a key or key set was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwkError {
    /// The key set is larger than [`MAX_JWKS_BYTES`] or holds more than [`MAX_KEYS`] keys.
    #[error("key set too large: {0}")]
    TooLarge(String),
    /// Not strict JSON (see [`crate::json`]).
    #[error("key set is not valid JSON: {0}")]
    Json(#[from] JsonError),
    /// The JSON does not have the shape of a JWK or JWKS.
    #[error("invalid key set: {0}")]
    Shape(String),
    /// Two keys share one `kid`: a verifier would have to guess.
    #[error("duplicate kid {0:?} in key set")]
    DuplicateKid(String),
    /// A private member in a set that must be public.
    #[error(
        "key {kid:?} carries the private member {member:?}: a public key set must not hold private keys"
    )]
    PrivateMember {
        /// The key's `kid`, when it has one.
        kid: Option<String>,
        /// The offending member name.
        member: String,
    },
    /// Key material that does not form a valid key of its declared type.
    #[error("key {kid:?}: {detail}")]
    InvalidKey {
        /// The key's `kid`, when it has one.
        kid: Option<String>,
        /// What is wrong.
        detail: String,
    },
}

/// Why a well-formed key must not be used to verify a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

/// Public key material, as far as Keyscope understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`) on P-256 or P-384.
    Ec {
        /// The curve, as a key family.
        family: KeyFamily,
        /// `04 || x || y`.
        point: Vec<u8>,
    },
    /// An Ed25519 public key.
    Ed25519 {
        /// The 32-byte public key.
        x: Vec<u8>,
    },
    /// A key type or curve Keyscope does not verify with (kept so that it can be named).
    Unsupported {
        /// A description such as `EC P-521`.
        description: String,
    },
}

/// One public JWK, parsed and checked.
#[derive(Clone)]
pub struct Jwk {
    kid: Option<String>,
    material: KeyMaterial,
    issuer: Option<String>,
    not_before: Option<i64>,
    not_after: Option<i64>,
    algorithm: Result<Algorithm, Unusable>,
    usable: Result<(), Unusable>,
    verifier: Option<ParsedPublicKey>,
    members: Map<String, Value>,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("usable", &self.usable)
            .finish_non_exhaustive()
    }
}

/// Why a signature check failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The key must not be used (see [`Unusable`]).
    #[error("key not usable: {0}")]
    KeyNotUsable(String),
    /// The token's algorithm is not the one this key accepts.
    #[error("algorithm {token} is not allowed for this key (the key accepts {key})")]
    AlgNotAllowed {
        /// What the token asked for.
        token: Algorithm,
        /// What the key accepts.
        key: Algorithm,
    },
    /// The signature does not verify (or has the wrong length, or out-of-range values).
    #[error("signature does not verify: {0}")]
    BadSignature(&'static str),
}

fn member_str<'a>(
    members: &'a Map<String, Value>,
    name: &str,
    kid: Option<&str>,
) -> Result<Option<&'a str>, JwkError> {
    match members.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(kid, format!("member {name:?} must be a string"))),
    }
}

fn member_time(
    members: &Map<String, Value>,
    name: &str,
    kid: Option<&str>,
) -> Result<Option<i64>, JwkError> {
    match members.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => numeric_date(n)
            .map(Some)
            .ok_or_else(|| invalid(kid, format!("member {name:?} is not a usable NumericDate"))),
        Some(_) => Err(invalid(
            kid,
            format!("member {name:?} must be a NumericDate number"),
        )),
    }
}

/// Converts a JSON number to whole seconds since the epoch (see
/// [`json::Number::as_numeric_date`]).
pub fn numeric_date(n: &serde_json::Number) -> Option<i64> {
    let number = match n.as_i64() {
        Some(i) => json::Number::Int(i),
        None => json::Number::Float(n.as_f64()?),
    };
    number.as_numeric_date()
}

fn invalid(kid: Option<&str>, detail: impl Into<String>) -> JwkError {
    JwkError::InvalidKey {
        kid: kid.map(str::to_owned),
        detail: detail.into(),
    }
}

fn b64_member(
    members: &Map<String, Value>,
    name: &str,
    kid: Option<&str>,
) -> Result<Vec<u8>, JwkError> {
    let text = member_str(members, name, kid)?
        .ok_or_else(|| invalid(kid, format!("missing member {name:?}")))?;
    b64::decode_url(text.as_bytes())
        .map_err(|e| invalid(kid, format!("member {name:?} is not base64url: {e}")))
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default().to_vec()
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(&top) => (big_endian.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

impl Jwk {
    /// Parses one public JWK from a JSON object. Private members are an error.
    pub fn from_object(members: Map<String, Value>) -> Result<Jwk, JwkError> {
        let kid = member_str(&members, "kid", None)?.map(str::to_owned);
        let kid_ref = kid.as_deref();
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
            return Err(JwkError::PrivateMember {
                kid,
                member: (*member).to_owned(),
            });
        }
        let kty = member_str(&members, "kty", kid_ref)?
            .ok_or_else(|| invalid(kid_ref, "missing member \"kty\""))?;
        let material = match kty {
            "RSA" => {
                let n = strip_leading_zeros(&b64_member(&members, "n", kid_ref)?);
                let e = strip_leading_zeros(&b64_member(&members, "e", kid_ref)?);
                if n.is_empty() || e.is_empty() {
                    return Err(invalid(
                        kid_ref,
                        "RSA modulus and exponent must be non-zero",
                    ));
                }
                KeyMaterial::Rsa { n, e }
            }
            "EC" => {
                let crv = member_str(&members, "crv", kid_ref)?
                    .ok_or_else(|| invalid(kid_ref, "missing member \"crv\""))?;
                let (family, size) = match crv {
                    "P-256" => (Some(KeyFamily::P256), 32),
                    "P-384" => (Some(KeyFamily::P384), 48),
                    _ => (None, 0),
                };
                match family {
                    None => KeyMaterial::Unsupported {
                        description: format!("EC curve {crv}"),
                    },
                    Some(family) => {
                        let x = b64_member(&members, "x", kid_ref)?;
                        let y = b64_member(&members, "y", kid_ref)?;
                        if x.len() != size || y.len() != size {
                            return Err(invalid(
                                kid_ref,
                                format!("{crv} coordinates must be exactly {size} bytes"),
                            ));
                        }
                        let mut point = Vec::with_capacity(1 + 2 * size);
                        point.push(4);
                        point.extend_from_slice(&x);
                        point.extend_from_slice(&y);
                        KeyMaterial::Ec { family, point }
                    }
                }
            }
            "OKP" => {
                let crv = member_str(&members, "crv", kid_ref)?
                    .ok_or_else(|| invalid(kid_ref, "missing member \"crv\""))?;
                if crv == "Ed25519" {
                    let x = b64_member(&members, "x", kid_ref)?;
                    if x.len() != 32 {
                        return Err(invalid(kid_ref, "Ed25519 public key must be 32 bytes"));
                    }
                    KeyMaterial::Ed25519 { x }
                } else {
                    KeyMaterial::Unsupported {
                        description: format!("OKP curve {crv}"),
                    }
                }
            }
            "oct" => KeyMaterial::Unsupported {
                description: "symmetric (oct) key".to_owned(),
            },
            other => KeyMaterial::Unsupported {
                description: format!("key type {other:?}"),
            },
        };

        let issuer = member_str(&members, "issuer", kid_ref)?.map(str::to_owned);
        let mut not_before = member_time(&members, "nbf", kid_ref)?;
        let mut not_after = member_time(&members, "exp", kid_ref)?;
        if let Some((cert_not_before, cert_not_after)) =
            certificate_window(&members, &material, kid_ref)?
        {
            not_before = Some(not_before.map_or(cert_not_before, |t| t.max(cert_not_before)));
            not_after = Some(not_after.map_or(cert_not_after, |t| t.min(cert_not_after)));
        }

        let usable = usage_allows_verify(&members, kid_ref)?.and_then(|()| strength(&material));
        let algorithm = accepted_algorithm(&members, &material, kid_ref)?;
        let verifier = match (&algorithm, &usable) {
            (Ok(alg), Ok(())) => Some(build_verifier(*alg, &material, kid_ref)?),
            _ => None,
        };

        Ok(Jwk {
            kid,
            material,
            issuer,
            not_before,
            not_after,
            algorithm,
            usable,
            verifier,
            members,
        })
    }

    /// The key id, when the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `issuer` member (Entra ID's key-to-issuer binding), possibly with `{tenantid}`.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The key's material.
    pub fn material(&self) -> &KeyMaterial {
        &self.material
    }

    /// The start of the key's validity window (JWK `nbf` and the `x5c` leaf's NotBefore).
    pub fn not_before(&self) -> Option<i64> {
        self.not_before
    }

    /// The end of the key's validity window (JWK `exp` and the `x5c` leaf's NotAfter).
    pub fn not_after(&self) -> Option<i64> {
        self.not_after
    }

    /// Whether `at` (seconds since the epoch) lies inside the key's validity window.
    pub fn valid_at(&self, at: i64) -> bool {
        self.not_before.is_none_or(|t| at >= t) && self.not_after.is_none_or(|t| at <= t)
    }

    /// The one algorithm this key accepts: its `alg`, or the default for its type.
    pub fn algorithm(&self) -> Result<Algorithm, &Unusable> {
        self.algorithm.as_ref().copied()
    }

    /// Whether the key may verify signatures at all (`use`, `key_ops`, strength, type).
    pub fn usability(&self) -> Result<(), &Unusable> {
        self.usable.as_ref().map(|_| ())?;
        self.algorithm.as_ref().map(|_| ())
    }

    /// Whether a token with algorithm `alg` could have been signed by this key's type.
    pub fn could_sign(&self, alg: Algorithm) -> bool {
        let family = match &self.material {
            KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
            KeyMaterial::Ec { family, .. } => *family,
            KeyMaterial::Ed25519 { .. } => KeyFamily::Ed25519,
            KeyMaterial::Unsupported { .. } => return false,
        };
        family == alg.key_family()
    }

    /// The JWK's members as given (public members only, since private ones are refused).
    pub fn members(&self) -> &Map<String, Value> {
        &self.members
    }

    /// Checks usability and algorithm, then verifies `signature` over `signing_input`.
    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        self.check_usable_for(alg)?;
        self.verify_signature(alg, signing_input, signature)
    }

    /// The key-state checks of [`Jwk::verify`] alone: usable, and `alg` is the key's algorithm.
    pub fn check_usable_for(&self, alg: Algorithm) -> Result<(), VerifyError> {
        if let Err(Unusable(why)) = &self.usable {
            return Err(VerifyError::KeyNotUsable(why.clone()));
        }
        let key_alg = match &self.algorithm {
            Ok(key_alg) => *key_alg,
            Err(Unusable(why)) => return Err(VerifyError::KeyNotUsable(why.clone())),
        };
        if key_alg != alg {
            return Err(VerifyError::AlgNotAllowed {
                token: alg,
                key: key_alg,
            });
        }
        Ok(())
    }

    /// The signature check alone; call [`Jwk::check_usable_for`] first.
    pub fn verify_signature(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        let verifier = self
            .verifier
            .as_ref()
            .filter(|_| self.algorithm.as_ref().is_ok_and(|a| *a == alg))
            .ok_or(VerifyError::KeyNotUsable(
                "no verifier for this algorithm".to_owned(),
            ))?;
        ecdsa_shape(alg, signature)?;
        verifier
            .verify_sig(signing_input, signature)
            .map_err(|_| VerifyError::BadSignature("the signature does not match the key"))
    }
}

/// ECDSA signatures in JWS are `r || s`, each exactly the size of the curve order, with
/// 0 < r, s < n. aws-lc-rs enforces this too; checking it here names the defect and keeps the
/// guarantee (CVE-2022-21449, "psychic signatures", accepted r = s = 0) independent of the backend.
fn ecdsa_shape(alg: Algorithm, signature: &[u8]) -> Result<(), VerifyError> {
    const P256_ORDER: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    const P384_ORDER: [u8; 48] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37,
        0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc,
        0xc5, 0x29, 0x73,
    ];
    let order: &[u8] = match alg {
        Algorithm::Es256 => &P256_ORDER,
        Algorithm::Es384 => &P384_ORDER,
        Algorithm::EdDsa => {
            return if signature.len() == 64 {
                Ok(())
            } else {
                Err(VerifyError::BadSignature(
                    "an Ed25519 signature is 64 bytes",
                ))
            };
        }
        _ => return Ok(()),
    };
    if signature.len() != order.len() * 2 {
        return Err(VerifyError::BadSignature(
            "an ECDSA signature must be r||s of exactly twice the curve size (DER is not JWS)",
        ));
    }
    let (r, s) = signature.split_at(order.len());
    for half in [r, s] {
        if half.iter().all(|&b| b == 0) || half >= order {
            return Err(VerifyError::BadSignature(
                "ECDSA r and s must lie in [1, n-1]",
            ));
        }
    }
    Ok(())
}

fn usage_allows_verify(
    members: &Map<String, Value>,
    kid: Option<&str>,
) -> Result<Result<(), Unusable>, JwkError> {
    if let Some(usage) = member_str(members, "use", kid)?
        && usage != "sig"
    {
        return Ok(Err(Unusable(format!(
            "the key's use is {usage:?}, not \"sig\""
        ))));
    }
    match members.get("key_ops") {
        None => Ok(Ok(())),
        Some(Value::Array(ops)) => {
            let mut names = Vec::with_capacity(ops.len());
            for op in ops {
                let Value::String(op) = op else {
                    return Err(invalid(kid, "key_ops must be an array of strings"));
                };
                if names.contains(&op.as_str()) {
                    return Err(invalid(kid, format!("key_ops lists {op:?} twice")));
                }
                names.push(op.as_str());
            }
            if names.contains(&"verify") {
                Ok(Ok(()))
            } else {
                Ok(Err(Unusable(
                    "the key's key_ops do not include \"verify\"".to_owned(),
                )))
            }
        }
        Some(_) => Err(invalid(kid, "key_ops must be an array of strings")),
    }
}

fn strength(material: &KeyMaterial) -> Result<(), Unusable> {
    match material {
        KeyMaterial::Rsa { n, e } => {
            let bits = bit_length(n);
            if bits < MIN_RSA_BITS {
                return Err(Unusable(format!(
                    "RSA key of {bits} bits is too weak (minimum {MIN_RSA_BITS})"
                )));
            }
            if bits > MAX_RSA_BITS {
                return Err(Unusable(format!(
                    "RSA key of {bits} bits is larger than supported ({MAX_RSA_BITS})"
                )));
            }
            let e_is_odd = e.last().is_some_and(|b| b & 1 == 1);
            if !e_is_odd || bit_length(e) < 2 || bit_length(e) > 33 {
                return Err(Unusable(
                    "RSA public exponent must be odd, at least 3 and at most 33 bits".to_owned(),
                ));
            }
            Ok(())
        }
        KeyMaterial::Unsupported { description } => Err(Unusable(format!(
            "{description} is not supported for signature verification"
        ))),
        _ => Ok(()),
    }
}

fn accepted_algorithm(
    members: &Map<String, Value>,
    material: &KeyMaterial,
    kid: Option<&str>,
) -> Result<Result<Algorithm, Unusable>, JwkError> {
    let family = match material {
        KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
        KeyMaterial::Ec { family, .. } => *family,
        KeyMaterial::Ed25519 { .. } => KeyFamily::Ed25519,
        KeyMaterial::Unsupported { description } => {
            return Ok(Err(Unusable(format!(
                "{description} is not supported for signature verification"
            ))));
        }
    };
    let Some(name) = member_str(members, "alg", kid)? else {
        return Ok(Ok(family.default_algorithm()));
    };
    Ok(match Algorithm::from_name(name) {
        None => Err(Unusable(format!(
            "the key's alg {name:?} is not a supported signature algorithm"
        ))),
        Some(alg) if alg.key_family() != family => Err(Unusable(format!(
            "the key's alg {name} does not fit its key type"
        ))),
        Some(alg) => Ok(alg),
    })
}

fn build_verifier(
    alg: Algorithm,
    material: &KeyMaterial,
    kid: Option<&str>,
) -> Result<ParsedPublicKey, JwkError> {
    let rejected = |e: aws_lc_rs::error::KeyRejected| invalid(kid, format!("key rejected: {e}"));
    match material {
        KeyMaterial::Rsa { n, e } => {
            let params = alg
                .rsa_parameters()
                .ok_or_else(|| invalid(kid, "not an RSA algorithm"))?;
            RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(params)
                .map_err(rejected)
        }
        KeyMaterial::Ec { point, .. } => {
            ParsedPublicKey::new(alg.verification(), point).map_err(rejected)
        }
        KeyMaterial::Ed25519 { x } => ParsedPublicKey::new(alg.verification(), x).map_err(rejected),
        KeyMaterial::Unsupported { description } => Err(invalid(
            kid,
            format!("{description} cannot verify signatures"),
        )),
    }
}

/// Reads the `x5c` leaf certificate: its validity window, after checking that it certifies
/// this very key (a certificate for some other key would lend this one a false window).
fn certificate_window(
    members: &Map<String, Value>,
    material: &KeyMaterial,
    kid: Option<&str>,
) -> Result<Option<(i64, i64)>, JwkError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;

    let Some(chain) = members.get("x5c") else {
        return Ok(None);
    };
    let leaf = match chain {
        Value::Array(certs) => match certs.first() {
            Some(Value::String(leaf)) => leaf,
            _ => return Err(invalid(kid, "x5c must be a non-empty array of strings")),
        },
        _ => return Err(invalid(kid, "x5c must be a non-empty array of strings")),
    };
    let der = b64::decode_std(leaf.as_bytes())
        .map_err(|e| invalid(kid, format!("x5c certificate is not base64: {e}")))?;
    let (rest, cert) = X509Certificate::from_der(&der)
        .map_err(|e| invalid(kid, format!("x5c certificate does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(invalid(kid, "x5c certificate has trailing data"));
    }
    let spki = cert.public_key();
    let matches = match (material, spki.parsed()) {
        (KeyMaterial::Rsa { n, e }, Ok(PublicKey::RSA(rsa))) => {
            strip_leading_zeros(rsa.modulus) == *n && strip_leading_zeros(rsa.exponent) == *e
        }
        (KeyMaterial::Ec { point, .. }, Ok(PublicKey::EC(ec))) => ec.data() == point.as_slice(),
        (KeyMaterial::Ed25519 { x }, _) => spki.subject_public_key.data.as_ref() == x.as_slice(),
        (KeyMaterial::Unsupported { .. }, _) => true,
        _ => false,
    };
    if !matches {
        return Err(invalid(
            kid,
            "the x5c certificate certifies a different key than the JWK",
        ));
    }
    let validity = cert.validity();
    Ok(Some((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    )))
}

/// A set of public keys with unique `kid`s.
#[derive(Debug, Clone, Default)]
pub struct JwkSet {
    keys: Vec<Jwk>,
    by_kid: HashMap<String, usize>,
}

impl JwkSet {
    /// Parses a JWKS document (`{"keys":[…]}`).
    pub fn parse(bytes: &[u8]) -> Result<JwkSet, JwkError> {
        let document = parse_bounded(bytes)?;
        let keys = match document.get("keys") {
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(JwkError::Shape("\"keys\" must be an array".to_owned())),
            None => return Err(JwkError::Shape("missing \"keys\" array".to_owned())),
        };
        if keys.len() > MAX_KEYS {
            return Err(JwkError::TooLarge(format!(
                "{} keys (at most {MAX_KEYS})",
                keys.len()
            )));
        }
        let mut parsed = Vec::with_capacity(keys.len());
        for key in keys {
            match key {
                Value::Object(members) => parsed.push(Jwk::from_object(members.clone())?),
                _ => {
                    return Err(JwkError::Shape(
                        "every key must be a JSON object".to_owned(),
                    ));
                }
            }
        }
        JwkSet::from_keys(parsed)
    }

    /// Parses either a JWKS document or a single JWK (treated as a set of one), which is what
    /// test-vector files and many tools hand around.
    pub fn parse_set_or_key(bytes: &[u8]) -> Result<JwkSet, JwkError> {
        let document = parse_bounded(bytes)?;
        if document.contains_key("keys") {
            JwkSet::parse(bytes)
        } else if document.contains_key("kty") {
            JwkSet::from_keys(vec![Jwk::from_object(document)?])
        } else {
            Err(JwkError::Shape(
                "neither a JWKS (\"keys\") nor a JWK (\"kty\")".to_owned(),
            ))
        }
    }

    /// Builds a set from parsed keys, refusing duplicate `kid`s.
    pub fn from_keys(keys: Vec<Jwk>) -> Result<JwkSet, JwkError> {
        let mut by_kid = HashMap::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            if let Some(kid) = key.kid()
                && by_kid.insert(kid.to_owned(), index).is_some()
            {
                return Err(JwkError::DuplicateKid(kid.to_owned()));
            }
        }
        Ok(JwkSet { keys, by_kid })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.by_kid.get(kid).and_then(|&i| self.keys.get(i))
    }

    /// All keys, in document order.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Serialises the set as a JWKS document (public members as given).
    pub fn to_json(&self) -> Value {
        let keys = self
            .keys
            .iter()
            .map(|k| Value::Object(k.members.clone()))
            .collect();
        let mut document = Map::new();
        document.insert("keys".to_owned(), Value::Array(keys));
        Value::Object(document)
    }
}

fn parse_bounded(bytes: &[u8]) -> Result<Map<String, Value>, JwkError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwkError::TooLarge(format!(
            "{} bytes (at most {MAX_JWKS_BYTES})",
            bytes.len()
        )));
    }
    json::parse_object(bytes).map_err(|e| match e {
        JsonError::NotObject => JwkError::Shape("expected a JSON object".to_owned()),
        other => JwkError::Json(other),
    })
}
