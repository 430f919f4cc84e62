//! The one error type of the crate. No variant ever holds key material, the master key's
//! encoding or a sealed blob: only paths, lengths, names and the operating system's error.

use std::path::PathBuf;

use keyscope_jose::{Algorithm, SignError};
use thiserror::Error;

use crate::master::MASTER_KEY_ENV;
use crate::sealed::{MAX_SEALED_LEN, MIN_SEALED_LEN, SEALED_VERSION};

/// Why a master key's text was refused. Never carries the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MasterKeyFormat {
    /// Nothing but whitespace.
    #[error("it is empty")]
    Empty,
    /// Not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotText,
    /// Neither base64url without padding nor standard base64 with padding.
    #[error("it is neither base64url (without padding) nor standard base64")]
    NotBase64,
    /// Decodes to the wrong number of bytes.
    #[error("it decodes to {0} bytes; a master key is exactly 32 bytes")]
    WrongLength(usize),
    /// Far longer than any encoding of 32 bytes (the file is not read further).
    #[error("it is longer than any encoding of a 32-byte key")]
    TooLong,
}

/// Why a custody operation failed. Messages name paths, lengths, kids, issuers and
/// algorithms, never key bytes.
#[derive(Debug, Error)]
pub enum CustodyError {
    /// `KEYSCOPE_MASTER_KEY` is set but unusable.
    #[error("{MASTER_KEY_ENV} is not a usable master key: {0}")]
    MasterKeyEnv(MasterKeyFormat),
    /// The master key file's content is unusable.
    #[error("master key file {} is not usable: {why}", path.display())]
    MasterKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        why: MasterKeyFormat,
    },
    /// The master key file grants group or other permissions.
    #[error(
        "master key file {} has mode {mode:04o}, which lets group or others access it; \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    MasterKeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The master key path is a directory, device, socket or similar.
    #[error("master key path {} is not a regular file", path.display())]
    MasterKeyNotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// An AEAD or key-derivation primitive failed (not a wrong key: see `SealedMismatch`).
    #[error("crypto backend failure while {0}")]
    Crypto(&'static str),
    /// The key store cannot make or hold keys of this algorithm.
    #[error("the {backend} key store does not support {alg} keys (ES256, EdDSA and RS256 are)")]
    UnsupportedAlgorithm {
        /// The key store backend.
        backend: &'static str,
        /// The algorithm asked for.
        alg: Algorithm,
    },
    /// The key spec is unusable (for example an empty kid).
    #[error("invalid key spec: {0}")]
    InvalidSpec(&'static str),
    /// The sealed key reference is empty.
    #[error("the sealed key reference is empty")]
    SealedEmpty,
    /// The sealed key reference starts with a format version this build does not read.
    #[error("the sealed key has format version {0}; this build reads version {SEALED_VERSION}")]
    SealedUnknownVersion(u8),
    /// The sealed key reference is shorter than any sealed key.
    #[error(
        "the sealed key is {0} bytes, shorter than the {MIN_SEALED_LEN} bytes of the smallest \
         version-{SEALED_VERSION} sealed key"
    )]
    SealedTruncated(usize),
    /// The sealed key reference is longer than any sealed key.
    #[error("the sealed key is {0} bytes, longer than the {MAX_SEALED_LEN}-byte limit")]
    SealedTooLong(usize),
    /// Authenticated decryption failed.
    #[error(
        "the sealed key does not open as kid {kid:?}, issuer {issuer:?}, alg {alg}: it was sealed \
         for another kid, issuer or algorithm, or under another master key, or it was altered"
    )]
    SealedMismatch {
        /// The kid it was opened as.
        kid: String,
        /// The issuer it was opened as.
        issuer: String,
        /// The algorithm it was opened as.
        alg: Algorithm,
    },
    /// Decryption succeeded but the content is not a private key of the algorithm.
    #[error("the sealed key for kid {kid:?} opened but does not hold a valid {alg} private key")]
    SealedContent {
        /// The kid.
        kid: String,
        /// The algorithm.
        alg: Algorithm,
    },
    /// Key generation, encoding or signing failed in `keyscope-jose`.
    #[error("signing key: {0}")]
    Sign(#[from] SignError),
    /// A process hardening step failed.
    #[error("process hardening failed: cannot {step}: {source}")]
    Harden {
        /// The step ("set RLIMIT_CORE to 0", ...).
        step: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl CustodyError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        CustodyError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
