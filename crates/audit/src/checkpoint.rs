//! Signed checkpoints: (tree size, root hash, time), signed with the audit key.
//!
//! The audit key is an Ed25519 key of its own, generated on first use and stored beside the
//! log. It is never a token-signing key, and what it signs is a domain-separated text, not a
//! JWS, so a checkpoint signature can never be replayed as a token (or the reverse).

use std::path::Path;

use keyscope_jose::{Algorithm, Jwk, SigningKey, b64};
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::merkle::Hash;

/// What a checkpoint signature covers.
const DOMAIN: &str = "keyscope-audit-checkpoint/v1";

/// A signed statement of the log's size and root at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Number of records covered.
    pub size: u64,
    /// Merkle tree hash of those records, base64url.
    pub root: String,
    /// When it was signed (RFC 3339 UTC).
    pub time: String,
    /// The audit key's id.
    pub kid: String,
    /// Ed25519 signature over the domain-separated statement, base64url.
    pub signature: String,
}

impl Checkpoint {
    fn statement(size: u64, root: &str, time: &str, kid: &str) -> String {
        format!("{DOMAIN}\n{size}\n{root}\n{time}\n{kid}\n")
    }

    /// Signs a checkpoint.
    pub fn sign(
        key: &SigningKey,
        size: u64,
        root: &Hash,
        time: String,
    ) -> Result<Self, AuditError> {
        let root = b64::encode_url(root);
        let statement = Checkpoint::statement(size, &root, &time, key.kid());
        let signature = key
            .sign_bytes(statement.as_bytes())
            .map_err(|e| AuditError::Key(e.to_string()))?;
        Ok(Checkpoint {
            size,
            root,
            time,
            kid: key.kid().to_owned(),
            signature: b64::encode_url(&signature),
        })
    }

    /// Whether the signature verifies with the audit public key.
    pub fn signature_valid(&self, public: &Jwk) -> bool {
        if public.kid() != Some(self.kid.as_str()) {
            return false;
        }
        let Ok(signature) = b64::decode_url(self.signature.as_bytes()) else {
            return false;
        };
        let statement = Checkpoint::statement(self.size, &self.root, &self.time, &self.kid);
        public
            .verify(Algorithm::EdDsa, statement.as_bytes(), &signature)
            .is_ok()
    }

    /// The root hash, decoded.
    pub fn root_hash(&self) -> Option<Hash> {
        let bytes = b64::decode_url(self.root.as_bytes()).ok()?;
        bytes.try_into().ok()
    }

    /// Reads a checkpoint saved as JSON (as `keyscope audit checkpoint` prints it).
    pub fn load(path: &Path) -> Result<Checkpoint, AuditError> {
        let bytes = crate::fsutil::read_small(path, 64 * 1024)
            .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
        keyscope_jose::json::validate(&bytes)
            .map_err(|e| AuditError::Checkpoint(format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AuditError::Checkpoint(format!("{}: {e}", path.display())))
    }
}

/// Loads the audit key pair from `dir`, creating it on first use.
pub(crate) fn load_or_create_key(dir: &Path) -> Result<(SigningKey, Jwk), AuditError> {
    let private_path = dir.join("audit-key.private.jwk");
    let public_path = dir.join("audit-key.jwk");
    let has_segments = crate::scan::list_segments(dir).is_ok_and(|segments| !segments.is_empty());
    if private_path.exists() {
        let key = match load_private_key(&private_path) {
            Ok(key) => key,
            // An unreadable key that never signed anything (no public half, no log) is the
            // trace of a crash during key creation: start over.
            Err(_) if !public_path.exists() && !has_segments => {
                std::fs::remove_file(&private_path)
                    .map_err(|e| AuditError::io(&private_path, e))?;
                return load_or_create_key(dir);
            }
            Err(e) => return Err(e),
        };
        let public = key
            .public_jwk()
            .map_err(|e| AuditError::Key(e.to_string()))?;
        if !public_path.exists() {
            // A crash between writing the two files: the public half is derived again.
            write_public_key(&public_path, &key)?;
        }
        return Ok((key, public));
    }
    // A new key only for a new log: replacing the key of an existing log would make its
    // history unverifiable (and look like the attack it is meant to reveal).
    if public_path.exists() {
        return Err(AuditError::Key(format!(
            "{} is missing while {} exists; restore the private key (a new one would orphan the log's checkpoints)",
            private_path.display(),
            public_path.display()
        )));
    }
    if has_segments {
        return Err(AuditError::Key(format!(
            "{} holds a log but no audit key; restore audit-key.private.jwk and audit-key.jwk",
            dir.display()
        )));
    }
    let kid = format!("audit-{}", crate::event::now_micros());
    let key = SigningKey::generate(Algorithm::EdDsa, kid, None)
        .map_err(|e| AuditError::Key(e.to_string()))?;
    let private = key
        .to_private_jwk()
        .map_err(|e| AuditError::Key(e.to_string()))?;
    // Written under a temporary name and renamed, so a crash never leaves a partial key.
    let temporary = dir.join("audit-key.private.jwk.new");
    let _ = std::fs::remove_file(&temporary);
    crate::fsutil::write_new_private(&temporary, private.as_bytes())?;
    std::fs::rename(&temporary, &private_path).map_err(|e| AuditError::io(&private_path, e))?;
    crate::fsutil::sync_parent(&private_path)?;
    write_public_key(&public_path, &key)?;
    let public = key
        .public_jwk()
        .map_err(|e| AuditError::Key(e.to_string()))?;
    Ok((key, public))
}

pub(crate) fn load_private_key(path: &Path) -> Result<SigningKey, AuditError> {
    let bytes = zeroize::Zeroizing::new(crate::fsutil::read_small(path, 64 * 1024)?);
    SigningKey::from_private_jwk(&bytes)
        .map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))
}

fn write_public_key(path: &Path, key: &SigningKey) -> Result<(), AuditError> {
    let members = serde_json::Value::Object(key.public_jwk_members()).to_string();
    crate::fsutil::write_atomic(path, members.as_bytes())
}

/// Loads the audit public key from `dir` (for verification without opening the log for
/// writing); derived from the private key when only that survived.
pub(crate) fn load_public_key(dir: &Path) -> Result<Jwk, AuditError> {
    let path = dir.join("audit-key.jwk");
    if !path.exists() {
        let private_path = dir.join("audit-key.private.jwk");
        if private_path.exists() {
            return load_private_key(&private_path)?
                .public_jwk()
                .map_err(|e| AuditError::Key(e.to_string()));
        }
    }
    let bytes = crate::fsutil::read_small(&path, 64 * 1024)?;
    let members = keyscope_jose::json::parse_object(&bytes)
        .map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))?;
    Jwk::from_object(members).map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))
}
