//! `keyscope key generate`: development signing keys. (`key list|rotate|revoke` act on the
//! identity service's keys: see `identity.rs`.)
//!
//! Writes `<kid>.private.jwk` (mode 0600, never overwritten) and adds the public key to
//! `jwks.json` in the same directory, so that several keys generated into one directory form
//! one key set. Production keys belong to the identity service's key custody, not to files.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use keyscope_jose::jwk::MAX_JWKS_BYTES;
use keyscope_jose::{Algorithm, JwkSet, SigningKey};
use serde_json::{Value, json};

use crate::input::{print_json, read_file_bounded};

#[derive(Subcommand)]
pub enum KeyCommand {
    #[command(flatten)]
    Service(crate::identity::ServiceKeyCommand),
    /// Generate a signing key: writes DIR/<kid>.private.jwk (mode 0600) and adds the public
    /// key to DIR/jwks.json.
    Generate {
        /// The signature algorithm.
        #[arg(long, value_enum)]
        alg: AlgArg,
        /// The key id (letters, digits, `.`, `_`, `-`; at most 128 characters).
        #[arg(long)]
        kid: String,
        /// Bind the key to this issuer (published as the JWK `issuer` member).
        #[arg(long)]
        issuer: Option<String>,
        /// The output directory (created with mode 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AlgArg {
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
    #[value(name = "RS256")]
    Rs256,
}

impl From<AlgArg> for Algorithm {
    fn from(arg: AlgArg) -> Algorithm {
        match arg {
            AlgArg::Es256 => Algorithm::Es256,
            AlgArg::EdDsa => Algorithm::EdDsa,
            AlgArg::Rs256 => Algorithm::Rs256,
        }
    }
}

pub fn run(command: KeyCommand) -> anyhow::Result<ExitCode> {
    let (alg, kid, issuer, out, json) = match command {
        KeyCommand::Service(command) => return crate::identity::run_key(command),
        KeyCommand::Generate {
            alg,
            kid,
            issuer,
            out,
            json,
        } => (alg, kid, issuer, out, json),
    };
    check_kid(&kid)?;
    if issuer.as_deref().is_some_and(str::is_empty) {
        bail!("--issuer must not be empty");
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&out)
        .with_context(|| format!("cannot create {}", out.display()))?;

    let jwks_path = out.join("jwks.json");
    let mut keys = existing_public_keys(&jwks_path)?;
    if keys
        .iter()
        .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid.as_str()))
    {
        bail!(
            "{} already holds a key with kid {kid:?}",
            jwks_path.display()
        );
    }

    let key = SigningKey::generate(alg.into(), kid.clone(), issuer)?;
    let private_path = out.join(format!("{kid}.private.jwk"));
    write_private(&private_path, key.to_private_jwk()?.as_bytes())?;

    keys.push(Value::Object(key.public_jwk_members()));
    let document = json!({ "keys": keys });
    // Parse what we are about to publish with the strict parser: never write a set that
    // `token verify` would refuse.
    JwkSet::parse(document.to_string().as_bytes()).context("generated key set does not parse")?;
    let text = serde_json::to_string_pretty(&document)?;
    let temporary = out.join(".jwks.json.tmp");
    fs::write(&temporary, text.as_bytes())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    fs::rename(&temporary, &jwks_path)
        .with_context(|| format!("cannot write {}", jwks_path.display()))?;

    if json {
        print_json(&json!({
            "kid": kid,
            "alg": key.algorithm(),
            "issuer": key.issuer(),
            "private_jwk": private_path,
            "jwks": jwks_path,
        }));
    } else {
        crate::input::outln!("generated {} key {kid:?}", key.algorithm());
        crate::input::outln!("  private key (mode 0600): {}", private_path.display());
        crate::input::outln!("  public key set:          {}", jwks_path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A kid becomes part of a file name, so it is restricted to characters that cannot form a
/// path: no separators, no `..` tricks, nothing invisible.
fn check_kid(kid: &str) -> anyhow::Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if kid.is_empty() || kid.len() > 128 || !kid.chars().all(allowed) || kid.starts_with('.') {
        bail!(
            "invalid --kid {kid:?}: use 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'"
        );
    }
    Ok(())
}

fn existing_public_keys(path: &Path) -> anyhow::Result<Vec<Value>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = read_file_bounded(path, MAX_JWKS_BYTES)?;
    JwkSet::parse(&bytes).with_context(|| format!("existing {} is invalid", path.display()))?;
    let document: Value = serde_json::from_slice(&bytes)?;
    Ok(document
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing private key is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_rules() {
        for ok in ["k1", "2026-11.es256", "A_b-c"] {
            assert!(check_kid(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "a b", "ké", &"k".repeat(129)] {
            assert!(check_kid(bad).is_err(), "{bad}");
        }
    }
}
