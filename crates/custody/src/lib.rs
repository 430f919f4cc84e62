//! Keyscope's key custody: where private signing keys live and how they are used.
//!
//! # Why
//! In 2023 an attacker (Storm-0558) used a consumer signing key, found in a crash dump that
//! reached a debugging environment, to forge tokens that enterprise services accepted. This
//! crate closes the custody half of that story:
//!
//! - **No private key in the clear at rest.** The [`SealedKeyStore`] hands the caller a
//!   *sealed* key to keep in its database: AES-256-GCM ciphertext under a key derived from the
//!   [`MasterKey`], which comes from `KEYSCOPE_MASTER_KEY` or a mode-0600 file and never from
//!   the database. A database dump or backup alone yields no usable key.
//! - **A sealed key is bound to its kid, issuer and algorithm.** They are the AEAD's associated
//!   data, so a blob copied into another key's row, another realm's issuer or another
//!   algorithm does not open: a consumer-realm key cannot be relabelled as an enterprise key.
//! - **Decrypted material only in wiped memory.** Plaintext PKCS#8 exists in
//!   [`zeroize::Zeroizing`] buffers on its way into aws-lc-rs (whose key objects and
//!   `Document`/`Pkcs8V1Der` buffers are freed with `OPENSSL_free` or zeroized on drop). No
//!   type here prints key bytes in `Debug`, and no error carries them.
//! - **No crash dumps.** [`harden_process`] makes the process non-dumpable and sets its core
//!   limit to zero at start.
//! - **Ready for hardware.** [`KeyStore`] and [`KeySigner`] never expose private material; a
//!   later PKCS#11 backend returns a handle label as the reference and signs inside the device.
//!
//! # Sealed key format (version 1)
//! ```text
//! sealed = 0x01 || nonce (12 random bytes) || AES-256-GCM(PKCS#8 v1 DER) || tag (16 bytes)
//! key    = HKDF-SHA256(ikm = master key, salt = "keyscope master key v1",
//!                      info = "keyscope sealed signing key v1", L = 32)
//! aad    = part("keyscope-sealed-key-v1") || part(kid) || part(issuer) || part(alg)
//! part(s) = 8-byte big-endian length of s || UTF-8 bytes of s
//! ```
//! `alg` is the JOSE name (`ES256`, `EdDSA`, `RS256`). Other uses of the master key will take
//! other HKDF `info` labels. Blobs are at most [`MAX_SEALED_LEN`] bytes.
//!
//! # Master key
//! 32 bytes. `KEYSCOPE_MASTER_KEY` (base64url without padding or standard base64, surrounding
//! whitespace ignored) wins when set and non-empty; otherwise `<data_dir>/master.key` holds
//! the base64url text and a newline. It is created on first start (mode 0600, data directory
//! 0700) and refused later if its mode grants group or other access. Losing the master key
//! loses every sealed key; back it up apart from the database.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

use keyscope_jose::Algorithm;
use serde_json::{Map, Value};

mod error;
mod harden;
mod master;
mod sealed;

pub use error::{CustodyError, MasterKeyFormat};
pub use harden::harden_process;
pub use master::{MASTER_KEY_ENV, MASTER_KEY_FILE, MASTER_KEY_LEN, MasterKey, MasterKeySource};
pub use sealed::{
    AAD_LABEL, MAX_SEALED_LEN, MIN_SEALED_LEN, SEALED_VERSION, SEALING_KEY_INFO, SealedKeyStore,
};

/// What a key is for: its id, the issuer it signs for and its algorithm. A stored key opens
/// only under exactly the spec it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec<'a> {
    /// The key id (`kid`).
    pub kid: &'a str,
    /// The issuer the key is bound to (the JWK's `issuer` member).
    pub issuer: &'a str,
    /// The signing algorithm.
    pub alg: Algorithm,
}

/// A key made by [`KeyStore::create`].
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedKey {
    /// The public JWK members (`kty`, key material, `kid`, `alg`, `use`, `issuer`).
    pub public_jwk: Map<String, Value>,
    /// What the caller stores to open the key again: the sealed private key, or for a hardware
    /// backend a handle label. Never private material in the clear.
    pub reference: Vec<u8>,
}

/// A key that can sign. Never exposes private material.
pub trait KeySigner: Send + Sync + std::fmt::Debug {
    /// The key id.
    fn kid(&self) -> &str;
    /// The algorithm the key signs with.
    fn algorithm(&self) -> Algorithm;
    /// `kty`, `crv`/`x`/`y` (or `n`/`e`), `kid`, `alg`, `use: "sig"` and `issuer`.
    fn public_jwk_members(&self) -> Map<String, Value>;
    /// A compact JWS; `alg` and `kid` are set from the key, other header members come from
    /// `header`.
    fn sign_compact(
        &self,
        header: Map<String, Value>,
        payload: &[u8],
    ) -> Result<String, CustodyError>;
}

/// Where private keys are kept.
pub trait KeyStore: Send + Sync {
    /// The backend's name: `"sealed"` (later `"pkcs11"`).
    fn backend(&self) -> &'static str;
    /// Makes a new key for `spec`. `reference` is what the caller stores in its database: for
    /// the sealed store the sealed private key, for an HSM a handle label.
    fn create(&self, spec: &KeySpec<'_>) -> Result<CreatedKey, CustodyError>;
    /// Opens a stored key for signing; fails if `reference` does not belong to exactly this
    /// spec (kid, issuer, alg).
    fn open(
        &self,
        spec: &KeySpec<'_>,
        reference: &[u8],
    ) -> Result<Arc<dyn KeySigner>, CustodyError>;
}
