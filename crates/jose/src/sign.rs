//! Signing keys for ES256, EdDSA and RS256, and their private-JWK form.
//!
//! Private material never gets a `Debug`, `Display` or `Serialize` implementation; the one way
//! out is [`SigningKey::to_private_jwk`], which returns a zeroizing buffer for writing a
//! development key file.

use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Map, Value};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::alg::Algorithm;
use crate::b64;
use crate::json;
use crate::jwk::{Jwk, JwkError};

/// Why a signing key could not be made, loaded or used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// Keyscope signs with ES256, EdDSA and RS256 only.
    #[error("signing with {0} is not supported (ES256, EdDSA and RS256 are)")]
    UnsupportedAlgorithm(String),
    /// The private JWK is not usable (the message never contains key material).
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// The crypto backend failed.
    #[error("signing failed")]
    Backend,
}

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// A private signing key with its `kid` and optional `issuer` binding.
pub struct SigningKey {
    kid: String,
    issuer: Option<String>,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn signing_alg(alg: Algorithm) -> Result<(), SignError> {
    match alg {
        Algorithm::Es256 | Algorithm::EdDsa | Algorithm::Rs256 => Ok(()),
        other => Err(SignError::UnsupportedAlgorithm(other.name().to_owned())),
    }
}

impl SigningKey {
    /// Generates a fresh key pair (RSA keys are 2048 bits).
    pub fn generate(
        alg: Algorithm,
        kid: impl Into<String>,
        issuer: Option<String>,
    ) -> Result<SigningKey, SignError> {
        signing_alg(alg)?;
        let pair = match alg {
            Algorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| SignError::Backend)?,
            ),
            Algorithm::EdDsa => {
                Pair::EdDsa(Ed25519KeyPair::generate().map_err(|_| SignError::Backend)?)
            }
            _ => {
                Pair::Rs256(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| SignError::Backend)?)
            }
        };
        Ok(SigningKey {
            kid: kid.into(),
            issuer,
            pair,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The issuer this key is bound to, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Es256(_) => Algorithm::Es256,
            Pair::EdDsa(_) => Algorithm::EdDsa,
            Pair::Rs256(_) => Algorithm::Rs256,
        }
    }

    /// The public JWK members: `kty`, key material, `kid`, `alg`, `use`, and `issuer` if bound.
    pub fn public_jwk_members(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let text = |bytes: &[u8]| Value::String(b64::encode_url(bytes));
        match &self.pair {
            Pair::Es256(pair) => {
                let point = pair.public_key().as_ref();
                let (x, y) = point
                    .get(1..)
                    .unwrap_or_default()
                    .split_at(32.min(point.len().saturating_sub(1)));
                m.insert("kty".into(), "EC".into());
                m.insert("crv".into(), "P-256".into());
                m.insert("x".into(), text(x));
                m.insert("y".into(), text(y));
            }
            Pair::EdDsa(pair) => {
                m.insert("kty".into(), "OKP".into());
                m.insert("crv".into(), "Ed25519".into());
                m.insert("x".into(), text(pair.public_key().as_ref()));
            }
            Pair::Rs256(pair) => {
                let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), text(&public.n));
                m.insert("e".into(), text(&public.e));
            }
        }
        m.insert("kid".into(), Value::String(self.kid.clone()));
        m.insert("alg".into(), self.algorithm().name().into());
        m.insert("use".into(), "sig".into());
        if let Some(issuer) = &self.issuer {
            m.insert("issuer".into(), Value::String(issuer.clone()));
        }
        m
    }

    /// The public key as a verification [`Jwk`].
    pub fn public_jwk(&self) -> Result<Jwk, JwkError> {
        Jwk::from_object(self.public_jwk_members())
    }

    /// The private JWK as JSON text, in a buffer that is wiped when dropped.
    pub fn to_private_jwk(&self) -> Result<Zeroizing<String>, SignError> {
        let mut members = self.public_jwk_members();
        let mut secret = |name: &str, bytes: &[u8]| {
            members.insert(name.to_owned(), Value::String(b64::encode_url(bytes)));
        };
        match &self.pair {
            Pair::Es256(pair) => {
                let d = pair
                    .private_key()
                    .as_be_bytes()
                    .map_err(|_| SignError::Backend)?;
                secret("d", d.as_ref());
            }
            Pair::EdDsa(pair) => {
                let seed = pair.seed().map_err(|_| SignError::Backend)?;
                let seed = seed.as_be_bytes().map_err(|_| SignError::Backend)?;
                secret("d", seed.as_ref());
            }
            Pair::Rs256(pair) => {
                let pkcs8 = pair.as_der().map_err(|_| SignError::Backend)?;
                let parts = rsa_private_components(pkcs8.as_ref()).ok_or(SignError::Backend)?;
                for (name, value) in ["d", "p", "q", "dp", "dq", "qi"].iter().zip(parts.iter()) {
                    secret(name, value);
                }
            }
        }
        let text = Value::Object(members).to_string();
        Ok(Zeroizing::new(text))
    }

    /// Loads a private JWK written by [`SigningKey::to_private_jwk`] (or any RFC 7518 private
    /// JWK for ES256, EdDSA or RS256).
    pub fn from_private_jwk(bytes: &[u8]) -> Result<SigningKey, SignError> {
        let invalid = |why: &str| SignError::InvalidKey(why.to_owned());
        let members =
            json::parse_object(bytes).map_err(|e| SignError::InvalidKey(e.to_string()))?;
        let text = |name: &str| members.get(name).and_then(Value::as_str);
        let bytes_of = |name: &str| -> Result<Zeroizing<Vec<u8>>, SignError> {
            let value =
                text(name).ok_or_else(|| SignError::InvalidKey(format!("missing {name:?}")))?;
            b64::decode_url(value.as_bytes())
                .map(Zeroizing::new)
                .map_err(|_| SignError::InvalidKey(format!("{name:?} is not base64url")))
        };
        let kid = text("kid")
            .ok_or_else(|| invalid("missing \"kid\""))?
            .to_owned();
        let issuer = text("issuer").map(str::to_owned);
        let pair = match (text("kty"), text("crv")) {
            (Some("EC"), Some("P-256")) => {
                let mut point = vec![4u8];
                point.extend_from_slice(&bytes_of("x")?);
                point.extend_from_slice(&bytes_of("y")?);
                Pair::Es256(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &bytes_of("d")?,
                        &point,
                    )
                    .map_err(|_| invalid("EC private key does not match its public key"))?,
                )
            }
            (Some("OKP"), Some("Ed25519")) => Pair::EdDsa(
                Ed25519KeyPair::from_seed_and_public_key(&bytes_of("d")?, &bytes_of("x")?)
                    .map_err(|_| invalid("Ed25519 private key does not match its public key"))?,
            ),
            (Some("RSA"), _) => {
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: bytes_of("n")?,
                        e: bytes_of("e")?,
                    },
                    d: bytes_of("d")?,
                    p: bytes_of("p")?,
                    q: bytes_of("q")?,
                    dP: bytes_of("dp")?,
                    dQ: bytes_of("dq")?,
                    qInv: bytes_of("qi")?,
                };
                Pair::Rs256(
                    RsaKeyPair::from_components(&components)
                        .map_err(|_| invalid("inconsistent RSA private key"))?,
                )
            }
            _ => return Err(invalid("unsupported key type for signing")),
        };
        let key = SigningKey { kid, issuer, pair };
        if let Some(alg) = text("alg")
            && alg != key.algorithm().name()
        {
            return Err(SignError::UnsupportedAlgorithm(alg.to_owned()));
        }
        Ok(key)
    }

    /// The private key as PKCS#8 v1 DER (RFC 5208 `PrivateKeyInfo`, no public key member), in a
    /// buffer that is wiped when dropped.
    ///
    /// This is the form a key store seals; unlike [`SigningKey::to_private_jwk`] it never passes
    /// through JSON text.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, SignError> {
        // Checked in the aws-lc-rs 1.19 source: `pkcs8::Document` (from `to_pkcs8v1`) zeroizes
        // its Vec in `Drop`, and `encoding::Pkcs8V1Der` wraps `buffer::Buffer`, whose `Drop`
        // zeroizes an owned buffer (the one `as_der` returns). The DER is first built in an
        // AWS-LC `CBB`, released with `OPENSSL_free`, which cleanses (crypto/mem.c). So the
        // only copy that outlives this call is the `Zeroizing` buffer returned here.
        let copy = |der: &[u8]| {
            let mut out = Zeroizing::new(Vec::with_capacity(der.len()));
            out.extend_from_slice(der);
            out
        };
        match &self.pair {
            Pair::Es256(pair) => pair
                .to_pkcs8v1()
                .map(|doc| copy(doc.as_ref()))
                .map_err(|_| SignError::Backend),
            Pair::EdDsa(pair) => pair
                .to_pkcs8v1()
                .map(|doc| copy(doc.as_ref()))
                .map_err(|_| SignError::Backend),
            Pair::Rs256(pair) => {
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                    pair.as_der().map_err(|_| SignError::Backend)?;
                Ok(copy(der.as_ref()))
            }
        }
    }

    /// Loads a private key from PKCS#8 DER (v1, or v2 with a matching public key) for `alg`.
    ///
    /// The DER must hold a key of `alg`'s type (a P-256 key for ES256, an Ed25519 key for EdDSA,
    /// an RSA key of at least 2048 bits for RS256); errors never contain key material.
    pub fn from_pkcs8(
        alg: Algorithm,
        kid: impl Into<String>,
        issuer: Option<String>,
        der: &[u8],
    ) -> Result<SigningKey, SignError> {
        signing_alg(alg)?;
        let rejected = |what: &'static str| {
            move |e: aws_lc_rs::error::KeyRejected| {
                SignError::InvalidKey(format!("not a PKCS#8 {what} private key ({e})"))
            }
        };
        let pair = match alg {
            Algorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected("P-256"))?,
            ),
            Algorithm::EdDsa => {
                Pair::EdDsa(Ed25519KeyPair::from_pkcs8(der).map_err(rejected("Ed25519"))?)
            }
            _ => {
                let pair = RsaKeyPair::from_pkcs8(der).map_err(rejected("RSA"))?;
                if pair.public_modulus_len() < 256 {
                    return Err(SignError::InvalidKey(
                        "RSA signing keys must have at least 2048 bits".to_owned(),
                    ));
                }
                Pair::Rs256(pair)
            }
        };
        Ok(SigningKey {
            kid: kid.into(),
            issuer,
            pair,
        })
    }

    /// Signs arbitrary bytes with this key's algorithm.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.pair {
            Pair::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Backend),
            Pair::EdDsa(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Pair::Rs256(pair) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut out,
                )
                .map_err(|_| SignError::Backend)?;
                Ok(out)
            }
        }
    }

    /// Produces a compact JWS. `alg` and `kid` are set from the key; other header members
    /// (such as `typ`) come from `header`.
    pub fn sign_compact(
        &self,
        mut header: Map<String, Value>,
        payload: &[u8],
    ) -> Result<String, SignError> {
        header.insert("alg".into(), self.algorithm().name().into());
        header.insert("kid".into(), Value::String(self.kid.clone()));
        let mut token = b64::encode_url(Value::Object(header).to_string().as_bytes());
        token.push('.');
        token.push_str(&b64::encode_url(payload));
        let signature = self.sign_bytes(token.as_bytes())?;
        token.push('.');
        token.push_str(&b64::encode_url(&signature));
        Ok(token)
    }
}

/// Extracts `d, p, q, dP, dQ, qInv` from a PKCS#8 `PrivateKeyInfo` holding an RFC 8017
/// `RSAPrivateKey`. Only what aws-lc-rs itself produced is read here, so a minimal DER reader
/// is enough; anything unexpected yields `None`.
fn rsa_private_components(pkcs8: &[u8]) -> Option<Vec<Zeroizing<Vec<u8>>>> {
    let (info, _) = der_element(pkcs8, 0x30)?;
    let (_version, rest) = der_element(info, 0x02)?;
    let (_algorithm, rest) = der_element(rest, 0x30)?;
    let (private_key, _) = der_element(rest, 0x04)?;
    let (mut fields, _) = der_element(private_key, 0x30)?;
    let mut integers = Vec::with_capacity(9);
    while !fields.is_empty() {
        let (value, rest) = der_element(fields, 0x02)?;
        let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
        integers.push(Zeroizing::new(value.get(start..)?.to_vec()));
        fields = rest;
    }
    // version, n, e, d, p, q, dP, dQ, qInv
    (integers.len() == 9).then(|| integers.split_off(3))
}

/// Reads one DER element with the expected tag; returns its contents and what follows.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, mut rest) = rest.split_first()?;
    let len = if len0 < 0x80 {
        usize::from(len0)
    } else {
        let count = usize::from(len0 & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (len_bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    rest.split_at_checked(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::CompactJws;

    #[test]
    fn sign_verify_and_reload_every_signing_algorithm() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
            let key = SigningKey::generate(alg, "k1", Some("https://issuer".into())).unwrap();
            let token = key.sign_compact(Map::new(), b"hello").unwrap();
            let jws = CompactJws::parse(&token).unwrap();
            assert_eq!(jws.check_header(), Ok(alg));
            let public = key.public_jwk().unwrap();
            assert_eq!(public.issuer(), Some("https://issuer"));
            public
                .verify(alg, jws.signing_input(), jws.signature())
                .unwrap();

            let private = key.to_private_jwk().unwrap();
            let reloaded = SigningKey::from_private_jwk(private.as_bytes()).unwrap();
            assert_eq!(reloaded.kid(), "k1");
            let token2 = reloaded.sign_compact(Map::new(), b"again").unwrap();
            let jws2 = CompactJws::parse(&token2).unwrap();
            public
                .verify(alg, jws2.signing_input(), jws2.signature())
                .unwrap();
        }
    }

    #[test]
    fn debug_never_shows_private_material() {
        let key = SigningKey::generate(Algorithm::Es256, "k1", None).unwrap();
        let private = key.to_private_jwk().unwrap();
        let d = json::parse_object(private.as_bytes()).unwrap()["d"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!format!("{key:?}").contains(&d));
    }

    #[test]
    fn pkcs8_round_trip_every_signing_algorithm() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
            let key = SigningKey::generate(alg, "k1", Some("https://issuer".into())).unwrap();
            let der = key.to_pkcs8().unwrap();
            let reloaded =
                SigningKey::from_pkcs8(alg, "k1", Some("https://issuer".into()), &der).unwrap();
            assert_eq!(reloaded.algorithm(), alg);
            assert_eq!(reloaded.kid(), "k1");
            assert_eq!(reloaded.issuer(), Some("https://issuer"));
            assert_eq!(reloaded.public_jwk_members(), key.public_jwk_members());
            assert_eq!(*reloaded.to_pkcs8().unwrap(), *der);

            let token = reloaded.sign_compact(Map::new(), b"payload").unwrap();
            let jws = CompactJws::parse(&token).unwrap();
            key.public_jwk()
                .unwrap()
                .verify(alg, jws.signing_input(), jws.signature())
                .unwrap();
        }
    }

    #[test]
    fn pkcs8_refuses_garbage_and_the_wrong_key_type() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
            for der in [&b""[..], b"\x30\x03\x02\x01\x00", &[0xAA; 64]] {
                assert!(matches!(
                    SigningKey::from_pkcs8(alg, "k", None, der),
                    Err(SignError::InvalidKey(_))
                ));
            }
        }
        let ed = SigningKey::generate(Algorithm::EdDsa, "k", None).unwrap();
        let ec = SigningKey::generate(Algorithm::Es256, "k", None).unwrap();
        let ed_der = ed.to_pkcs8().unwrap();
        let ec_der = ec.to_pkcs8().unwrap();
        assert!(matches!(
            SigningKey::from_pkcs8(Algorithm::Es256, "k", None, &ed_der),
            Err(SignError::InvalidKey(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8(Algorithm::EdDsa, "k", None, &ec_der),
            Err(SignError::InvalidKey(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8(Algorithm::Rs256, "k", None, &ec_der),
            Err(SignError::InvalidKey(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8(Algorithm::Ps256, "k", None, &ec_der),
            Err(SignError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn pkcs8_errors_never_contain_key_material() {
        let key = SigningKey::generate(Algorithm::Es256, "k", None).unwrap();
        let mut der = key.to_pkcs8().unwrap();
        if let Some(last) = der.last_mut() {
            *last ^= 1;
        }
        der.push(0);
        let err = SigningKey::from_pkcs8(Algorithm::Es256, "k", None, &der)
            .unwrap_err()
            .to_string();
        let private = key.to_private_jwk().unwrap();
        let d = json::parse_object(private.as_bytes()).unwrap()["d"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!err.contains(&d), "{err}");
        assert!(!err.contains(&b64::encode_url(&der)), "{err}");
    }

    #[test]
    fn refuses_unsupported_signing_algorithms() {
        assert!(matches!(
            SigningKey::generate(Algorithm::Ps256, "k", None),
            Err(SignError::UnsupportedAlgorithm(_))
        ));
    }
}
