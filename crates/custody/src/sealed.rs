//! The sealed key store: private keys as AES-256-GCM ciphertext bound to their kid, issuer and
//! algorithm. The format is described in the crate documentation.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use keyscope_jose::{Algorithm, SigningKey};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::CustodyError;
use crate::master::MasterKey;
use crate::{CreatedKey, KeySigner, KeySpec, KeyStore};

/// The format version byte of a sealed key.
pub const SEALED_VERSION: u8 = 1;

/// The AES-GCM tag length.
const TAG_LEN: usize = 16;

/// The length of the smallest possible version-1 sealed key: version, nonce and tag.
pub const MIN_SEALED_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

/// The length of the largest sealed key accepted (an RSA-4096 PKCS#8 key is about 2.4 KB).
pub const MAX_SEALED_LEN: usize = 16 * 1024;

/// The HKDF `info` label of the sealing key derived from the master key.
pub const SEALING_KEY_INFO: &[u8] = b"keyscope sealed signing key v1";

/// The first member of the associated data.
pub const AAD_LABEL: &str = "keyscope-sealed-key-v1";

/// The backend name.
const BACKEND: &str = "sealed";

/// Private keys encrypted under a key derived from the [`MasterKey`].
///
/// `create` returns the sealed key as the reference to store; `open` decrypts it into a
/// [`KeySigner`] whose key lives only in aws-lc-rs's memory (freed with `OPENSSL_free`, which
/// cleanses).
pub struct SealedKeyStore {
    /// The AES-256-GCM key. `None` only if deriving it failed, which aws-lc-rs does not do for
    /// these fixed lengths; `create` and `open` then report a crypto error instead of the
    /// constructor panicking.
    key: Option<RandomizedNonceKey>,
}

impl std::fmt::Debug for SealedKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKeyStore")
            .field("backend", &BACKEND)
            .finish_non_exhaustive()
    }
}

impl SealedKeyStore {
    /// Derives the sealing key from `master` and drops the master key.
    pub fn new(master: MasterKey) -> SealedKeyStore {
        let mut key_bytes = Zeroizing::new([0u8; 32]);
        let key = master
            .derive(SEALING_KEY_INFO, &mut *key_bytes)
            .ok()
            .and_then(|()| RandomizedNonceKey::new(&AES_256_GCM, &*key_bytes).ok());
        SealedKeyStore { key }
    }

    fn aead(&self) -> Result<&RandomizedNonceKey, CustodyError> {
        self.key
            .as_ref()
            .ok_or(CustodyError::Crypto("deriving the sealing key"))
    }

    /// Seals PKCS#8 DER for `spec`.
    fn seal(&self, spec: &KeySpec<'_>, der: &[u8]) -> Result<Vec<u8>, CustodyError> {
        let aead = self.aead()?;
        // Room for the tag up front: extending must not reallocate and leave plaintext behind.
        let mut buffer = Zeroizing::new(Vec::with_capacity(der.len() + TAG_LEN));
        buffer.extend_from_slice(der);
        let nonce = aead
            .seal_in_place_append_tag(Aad::from(associated_data(spec)), &mut *buffer)
            .map_err(|_| CustodyError::Crypto("sealing a key"))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + buffer.len());
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&buffer);
        Ok(sealed)
    }

    /// Opens a sealed key as `spec`. The plaintext exists only in a zeroizing buffer that
    /// goes straight into [`SigningKey::from_pkcs8`].
    fn unseal(&self, spec: &KeySpec<'_>, sealed: &[u8]) -> Result<SigningKey, CustodyError> {
        let (&version, rest) = sealed.split_first().ok_or(CustodyError::SealedEmpty)?;
        if version != SEALED_VERSION {
            return Err(CustodyError::SealedUnknownVersion(version));
        }
        if sealed.len() < MIN_SEALED_LEN {
            return Err(CustodyError::SealedTruncated(sealed.len()));
        }
        if sealed.len() > MAX_SEALED_LEN {
            return Err(CustodyError::SealedTooLong(sealed.len()));
        }
        let (nonce, ciphertext) = rest
            .split_at_checked(NONCE_LEN)
            .ok_or(CustodyError::SealedTruncated(sealed.len()))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| CustodyError::SealedTruncated(sealed.len()))?;
        let aead = self.aead()?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let der = aead
            .open_in_place(nonce, Aad::from(associated_data(spec)), &mut buffer)
            .map_err(|_| CustodyError::SealedMismatch {
                kid: spec.kid.to_owned(),
                issuer: spec.issuer.to_owned(),
                alg: spec.alg,
            })?;
        SigningKey::from_pkcs8(spec.alg, spec.kid, Some(spec.issuer.to_owned()), der).map_err(
            |_| CustodyError::SealedContent {
                kid: spec.kid.to_owned(),
                alg: spec.alg,
            },
        )
    }
}

/// The associated data: each of (label, kid, issuer, alg name) as an 8-byte big-endian length
/// followed by its UTF-8 bytes. Lengths make the encoding injective, so no two specs share it.
fn associated_data(spec: &KeySpec<'_>) -> Vec<u8> {
    let parts = [AAD_LABEL, spec.kid, spec.issuer, spec.alg.name()];
    let mut aad = Vec::with_capacity(parts.iter().map(|p| 8 + p.len()).sum());
    for part in parts {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Refuses specs the store cannot hold.
fn check_spec(spec: &KeySpec<'_>) -> Result<(), CustodyError> {
    if !matches!(
        spec.alg,
        Algorithm::Es256 | Algorithm::EdDsa | Algorithm::Rs256
    ) {
        return Err(CustodyError::UnsupportedAlgorithm {
            backend: BACKEND,
            alg: spec.alg,
        });
    }
    if spec.kid.is_empty() {
        return Err(CustodyError::InvalidSpec("the kid is empty"));
    }
    if spec.issuer.is_empty() {
        return Err(CustodyError::InvalidSpec(
            "the issuer is empty (every signing key is bound to one issuer)",
        ));
    }
    Ok(())
}

impl KeyStore for SealedKeyStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn create(&self, spec: &KeySpec<'_>) -> Result<CreatedKey, CustodyError> {
        check_spec(spec)?;
        let key = SigningKey::generate(spec.alg, spec.kid, Some(spec.issuer.to_owned()))?;
        let der = key.to_pkcs8()?;
        let reference = self.seal(spec, &der)?;
        Ok(CreatedKey {
            public_jwk: key.public_jwk_members(),
            reference,
        })
    }

    fn open(
        &self,
        spec: &KeySpec<'_>,
        reference: &[u8],
    ) -> Result<Arc<dyn KeySigner>, CustodyError> {
        check_spec(spec)?;
        let key = self.unseal(spec, reference)?;
        Ok(Arc::new(SealedSigner { key }))
    }
}

/// A key opened from the sealed store. Its `Debug` shows kid, algorithm and issuer only.
#[derive(Debug)]
struct SealedSigner {
    key: SigningKey,
}

impl KeySigner for SealedSigner {
    fn kid(&self) -> &str {
        self.key.kid()
    }

    fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    fn public_jwk_members(&self) -> Map<String, Value> {
        self.key.public_jwk_members()
    }

    fn sign_compact(
        &self,
        header: Map<String, Value>,
        payload: &[u8],
    ) -> Result<String, CustodyError> {
        Ok(self.key.sign_compact(header, payload)?)
    }
}

#[cfg(test)]
mod tests {
    use keyscope_jose::{CompactJws, Jwk, b64};

    use super::*;

    const ALGS: [Algorithm; 3] = [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256];
    const ISSUER: &str = "https://login.example/consumers/v2.0";

    fn store(byte: u8) -> SealedKeyStore {
        SealedKeyStore::new(MasterKey::from_bytes([byte; 32]))
    }

    fn spec(kid: &str, alg: Algorithm) -> KeySpec<'_> {
        KeySpec {
            kid,
            issuer: ISSUER,
            alg,
        }
    }

    fn verify(public: &Map<String, Value>, token: &str, alg: Algorithm) {
        let jwk = Jwk::from_object(public.clone()).unwrap();
        let jws = CompactJws::parse(token).unwrap();
        assert_eq!(jws.check_header(), Ok(alg));
        jwk.verify(alg, jws.signing_input(), jws.signature())
            .unwrap();
    }

    /// The private key's secret member(s) as base64url, from the private JWK.
    fn secrets(key: &SigningKey) -> Vec<String> {
        let private = key.to_private_jwk().unwrap();
        let members: Map<String, Value> = serde_json::from_str(&private).unwrap();
        ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .filter_map(|name| members.get(*name).and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn create_open_sign_verify_every_algorithm() {
        let store = store(1);
        for alg in ALGS {
            let spec = spec("k-2026-01", alg);
            let created = store.create(&spec).unwrap();
            assert_eq!(created.public_jwk["kid"], "k-2026-01");
            assert_eq!(created.public_jwk["alg"], alg.name());
            assert_eq!(created.public_jwk["use"], "sig");
            assert_eq!(created.public_jwk["issuer"], ISSUER);
            assert_eq!(created.reference[0], SEALED_VERSION);

            let signer = store.open(&spec, &created.reference).unwrap();
            assert_eq!(signer.kid(), "k-2026-01");
            assert_eq!(signer.algorithm(), alg);
            assert_eq!(signer.public_jwk_members(), created.public_jwk);
            let mut header = Map::new();
            header.insert("typ".into(), "JWT".into());
            header.insert("alg".into(), "none".into());
            header.insert("kid".into(), "someone-else".into());
            let token = signer.sign_compact(header, b"{\"sub\":\"x\"}").unwrap();
            let jws = CompactJws::parse(&token).unwrap();
            assert_eq!(jws.kid(), Some("k-2026-01"));
            assert_eq!(jws.typ(), Some("JWT"));
            verify(&created.public_jwk, &token, alg);

            // A second store with the same master key opens it too (a restart).
            let reopened = self::store(1).open(&spec, &created.reference).unwrap();
            let token = reopened.sign_compact(Map::new(), b"again").unwrap();
            verify(&created.public_jwk, &token, alg);
        }
    }

    #[test]
    fn sealing_twice_gives_different_blobs() {
        let store = store(1);
        let spec = spec("k", Algorithm::Es256);
        let key = SigningKey::generate(Algorithm::Es256, "k", Some(ISSUER.into())).unwrap();
        let der = key.to_pkcs8().unwrap();
        let a = store.seal(&spec, &der).unwrap();
        let b = store.seal(&spec, &der).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 1 + NONCE_LEN + der.len() + TAG_LEN);
        // The ciphertext does not contain the plaintext.
        assert!(!a.windows(der.len()).any(|w| w == &der[..]));
    }

    #[test]
    fn a_blob_opens_only_as_its_own_kid_issuer_alg_and_master_key() {
        let store = store(1);
        let created = store.create(&spec("k1", Algorithm::Es256)).unwrap();
        let blob = &created.reference;
        let wrong = [
            KeySpec {
                kid: "k2",
                ..spec("k1", Algorithm::Es256)
            },
            KeySpec {
                issuer: "https://login.example/organizations/v2.0",
                ..spec("k1", Algorithm::Es256)
            },
            KeySpec {
                issuer: "https://login.example/consumers/v2.0/",
                ..spec("k1", Algorithm::Es256)
            },
            spec("k1", Algorithm::EdDsa),
            spec("k1", Algorithm::Rs256),
        ];
        for spec in wrong {
            let err = store.open(&spec, blob).unwrap_err();
            assert!(
                matches!(&err, CustodyError::SealedMismatch { kid, issuer, alg }
                    if kid == spec.kid && issuer == spec.issuer && *alg == spec.alg),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains(spec.kid) && text.contains(spec.issuer),
                "{text}"
            );
        }
        assert!(matches!(
            self::store(2).open(&spec("k1", Algorithm::Es256), blob),
            Err(CustodyError::SealedMismatch { .. })
        ));
        assert!(store.open(&spec("k1", Algorithm::Es256), blob).is_ok());
    }

    #[test]
    fn the_associated_data_is_injective() {
        // Moving bytes between kid and issuer must change the AAD.
        let a = KeySpec {
            kid: "ab",
            issuer: "c",
            alg: Algorithm::Es256,
        };
        let b = KeySpec {
            kid: "a",
            issuer: "bc",
            alg: Algorithm::Es256,
        };
        assert_ne!(associated_data(&a), associated_data(&b));
        let store = store(1);
        let created = store.create(&a).unwrap();
        assert!(matches!(
            store.open(&b, &created.reference),
            Err(CustodyError::SealedMismatch { .. })
        ));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let store = store(1);
        let spec = spec("k", Algorithm::EdDsa);
        let created = store.create(&spec).unwrap();
        for i in 0..created.reference.len() {
            let mut blob = created.reference.clone();
            blob[i] ^= 0x01;
            let err = store.open(&spec, &blob).unwrap_err();
            if i == 0 {
                assert!(
                    matches!(err, CustodyError::SealedUnknownVersion(0)),
                    "{err:?}"
                );
            } else {
                assert!(
                    matches!(err, CustodyError::SealedMismatch { .. }),
                    "{i}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn malformed_blobs_get_precise_errors() {
        let store = store(1);
        let spec = spec("k", Algorithm::Es256);
        let created = store.create(&spec).unwrap();
        let blob = &created.reference;

        assert!(matches!(
            store.open(&spec, &[]),
            Err(CustodyError::SealedEmpty)
        ));
        assert!(matches!(
            store.open(&spec, &[1]),
            Err(CustodyError::SealedTruncated(1))
        ));
        assert!(matches!(
            store.open(&spec, &blob[..MIN_SEALED_LEN - 1]),
            Err(CustodyError::SealedTruncated(n)) if n == MIN_SEALED_LEN - 1
        ));
        // Long enough to be a blob but cut short: the tag no longer matches.
        assert!(matches!(
            store.open(&spec, &blob[..blob.len() - 1]),
            Err(CustodyError::SealedMismatch { .. })
        ));
        for version in [0u8, 2, 0x30, 0xff] {
            let mut other = blob.clone();
            other[0] = version;
            let err = store.open(&spec, &other).unwrap_err();
            assert!(
                matches!(err, CustodyError::SealedUnknownVersion(v) if v == version),
                "{err:?}"
            );
            assert!(err.to_string().contains(&format!("version {version}")));
        }
        let mut long = blob.clone();
        long.resize(MAX_SEALED_LEN + 1, 0);
        assert!(matches!(
            store.open(&spec, &long),
            Err(CustodyError::SealedTooLong(n)) if n == MAX_SEALED_LEN + 1
        ));
    }

    #[test]
    fn a_sealed_non_key_is_reported_as_bad_content() {
        let store = store(1);
        let spec = spec("k", Algorithm::Es256);
        let blob = store.seal(&spec, b"not a PKCS#8 key").unwrap();
        let err = store.open(&spec, &blob).unwrap_err();
        assert!(matches!(err, CustodyError::SealedContent { .. }), "{err:?}");
        assert!(!err.to_string().contains("not a PKCS#8 key"));
        // An Ed25519 key sealed as ES256 (a store bug or tampering with the right master key).
        let ed = SigningKey::generate(Algorithm::EdDsa, "k", None).unwrap();
        let blob = store.seal(&spec, &ed.to_pkcs8().unwrap()).unwrap();
        assert!(matches!(
            store.open(&spec, &blob),
            Err(CustodyError::SealedContent { .. })
        ));
    }

    #[test]
    fn unsupported_algorithms_and_empty_names_are_refused() {
        let store = store(1);
        for alg in [Algorithm::Es384, Algorithm::Ps256, Algorithm::Rs512] {
            let err = store.create(&spec("k", alg)).unwrap_err();
            assert!(
                matches!(err, CustodyError::UnsupportedAlgorithm { backend: "sealed", alg: a } if a == alg)
            );
            assert!(store.open(&spec("k", alg), &[1; 64]).is_err());
        }
        assert!(matches!(
            store.create(&spec("", Algorithm::Es256)),
            Err(CustodyError::InvalidSpec(_))
        ));
        assert!(matches!(
            store.create(&KeySpec {
                kid: "k",
                issuer: "",
                alg: Algorithm::Es256
            }),
            Err(CustodyError::InvalidSpec(_))
        ));
    }

    #[test]
    fn debug_output_never_contains_private_material() {
        let master = MasterKey::from_bytes([0x42; 32]);
        let master_text = [
            b64::encode_url(master.bytes_for_test()),
            b64::encode_std(master.bytes_for_test()),
        ];
        let store = SealedKeyStore::new(master);
        assert_eq!(backend_of(&store), "sealed");
        for alg in ALGS {
            let spec = spec("k", alg);
            let created = store.create(&spec).unwrap();
            let signer = store.open(&spec, &created.reference).unwrap();
            let key = store.unseal(&spec, &created.reference).unwrap();
            let der = key.to_pkcs8().unwrap();
            let mut forbidden = secrets(&key);
            forbidden.push(b64::encode_url(&der));
            forbidden.push(b64::encode_std(&der));
            forbidden.extend(master_text.iter().cloned());
            let debug = format!("{store:?} {store:#?} {signer:?} {signer:#?} {created:?}");
            for secret in &forbidden {
                assert!(!debug.contains(secret.as_str()), "{alg}: {debug}");
            }
            assert!(debug.contains("SealedKeyStore"));
            assert!(debug.contains("kid"));
            // Errors carry names, never material.
            let err = store
                .open(
                    &KeySpec {
                        kid: "other",
                        ..spec
                    },
                    &created.reference,
                )
                .unwrap_err();
            let err_text = format!("{err} {err:?}");
            for secret in &forbidden {
                assert!(!err_text.contains(secret.as_str()));
            }
        }
    }

    fn backend_of(store: &dyn KeyStore) -> &'static str {
        store.backend()
    }

    #[test]
    fn the_public_jwk_carries_no_private_members() {
        let store = store(1);
        for alg in ALGS {
            let created = store.create(&spec("k", alg)).unwrap();
            for name in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
                assert!(!created.public_jwk.contains_key(name), "{alg}: {name}");
            }
            Jwk::from_object(created.public_jwk).unwrap();
        }
    }
}
