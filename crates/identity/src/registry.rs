//! The in-memory view of every realm's keys: the rendered JWKS, the signer of the active key,
//! and one token validator that knows every realm's issuer and keys. Rebuilt from the store
//! whenever its revision changes; readers take an `Arc` snapshot, so a revocation reaches
//! every validator in the process the moment the new snapshot is swapped in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use keyscope_custody::{KeySigner, KeySpec, KeyStore};
use keyscope_jose::{Algorithm, Jwk, JwkSet};
use keyscope_store::{App, KeyRecord, KeyState, Realm};
use keyscope_trust::{Policy, StaticKeys, TokenType, TrustedIssuer, Validator};
use serde_json::Value;

use crate::IdentityError;
use crate::config::IdentityConfig;
use crate::lifecycle::{self, Overdue};

/// One realm's published keys and signer.
pub struct RealmKeys {
    /// The realm.
    pub realm: Realm,
    /// Its issuer.
    pub issuer: String,
    /// `{"keys":[…]}` as served.
    pub jwks_json: String,
    /// The active key's signer, if the realm has an active key.
    pub signer: Option<Arc<dyn KeySigner>>,
}

impl std::fmt::Debug for RealmKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealmKeys")
            .field("realm", &self.realm.id)
            .field("issuer", &self.issuer)
            .field("signer", &self.signer.as_ref().map(|s| s.kid().to_owned()))
            .finish_non_exhaustive()
    }
}

/// A consistent view of all realms at one store revision.
pub struct Snapshot {
    /// The store revision it was built from.
    pub revision: i64,
    /// Realms by id.
    pub realms: HashMap<String, RealmKeys>,
    /// Validates access tokens of every realm (each issuer bound to its own keys and `tid`).
    pub validator: Validator,
    /// Every key record, for listings and the lifecycle.
    pub keys: Vec<KeyRecord>,
    /// Every app, by client id (client authentication without a database read).
    pub apps: HashMap<String, App>,
    /// Active keys past the rotation policy.
    pub overdue: Vec<Overdue>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision)
            .field("realms", &self.realms)
            .field("keys", &self.keys.len())
            .field("overdue", &self.overdue)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// A realm's view.
    pub fn realm(&self, id: &str) -> Option<&RealmKeys> {
        self.realms.get(id)
    }
}

/// What a snapshot is built from, read from the store at one revision.
#[derive(Debug)]
pub struct StoreContents {
    /// The store revision.
    pub revision: i64,
    /// Every realm.
    pub realms: Vec<Realm>,
    /// Every key.
    pub keys: Vec<KeyRecord>,
    /// Every app.
    pub apps: Vec<App>,
}

/// Holds the current snapshot and the cache of opened signers (unsealing is done once per
/// key, not once per reload).
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
    signers: Mutex<HashMap<String, Arc<dyn KeySigner>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("revision", &self.snapshot().revision)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry (no realms) until the first reload.
    pub fn empty() -> Result<Registry, IdentityError> {
        // Trusts nothing until the first reload: one issuer that no token names, with no keys.
        let nothing = StaticKeys::new(
            JwkSet::from_keys(Vec::new()).map_err(|e| IdentityError::Internal(e.to_string()))?,
        );
        let validator = Validator::new(
            Policy::builder()
                .issuer(TrustedIssuer::new("urn:keyscope:nothing-loaded", nothing))
                .build()
                .map_err(|e| IdentityError::Internal(e.to_string()))?,
        );
        Ok(Registry {
            current: RwLock::new(Arc::new(Snapshot {
                revision: -1,
                realms: HashMap::new(),
                validator,
                keys: Vec::new(),
                apps: HashMap::new(),
                overdue: Vec::new(),
            })),
            signers: Mutex::new(HashMap::new()),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Builds a new snapshot from store contents and swaps it in.
    pub fn rebuild(
        &self,
        contents: StoreContents,
        keystore: &dyn KeyStore,
        config: &IdentityConfig,
        now: i64,
    ) -> Result<Arc<Snapshot>, IdentityError> {
        let StoreContents {
            revision,
            realms,
            keys,
            apps,
        } = contents;
        let mut by_realm: HashMap<String, RealmKeys> = HashMap::new();
        let mut builder = Policy::builder().token_type(TokenType::AccessToken);
        let mut live_kids = HashSet::new();
        for realm in realms {
            let issuer = config.issuer(&realm.id);
            let published: Vec<&KeyRecord> = keys
                .iter()
                .filter(|k| k.realm_id == realm.id && k.state.is_published())
                .collect();
            let mut jwks = Vec::with_capacity(published.len());
            let mut jwk_values = Vec::with_capacity(published.len());
            for key in &published {
                let mut members = keyscope_jose::json::parse_object(key.public_jwk.as_bytes())
                    .map_err(|e| {
                        IdentityError::Internal(format!("stored JWK of {}: {e}", key.kid))
                    })?;
                // The binding lives in the store as the key's realm; the issuer URL is rendered
                // from the current public URL, so changing it does not orphan keys.
                members.insert("issuer".into(), Value::String(issuer.clone()));
                jwk_values.push(Value::Object(members.clone()));
                jwks.push(Jwk::from_object(members).map_err(|e| {
                    IdentityError::Internal(format!("stored JWK of {}: {e}", key.kid))
                })?);
            }
            // The validator also knows the realm's revoked keys, so that a token signed by
            // one is refused as `key_revoked` (not merely `unknown_key`); the JWKS does not
            // publish them.
            for key in keys
                .iter()
                .filter(|k| k.realm_id == realm.id && k.state == KeyState::Revoked)
            {
                if let Ok(mut members) =
                    keyscope_jose::json::parse_object(key.public_jwk.as_bytes())
                {
                    members.insert("issuer".into(), Value::String(issuer.clone()));
                    if let Ok(jwk) = Jwk::from_object(members) {
                        jwks.push(jwk);
                    }
                }
            }
            let set = JwkSet::from_keys(jwks)
                .map_err(|e| IdentityError::Internal(format!("key set of {}: {e}", realm.id)))?;
            builder = builder.issuer(
                TrustedIssuer::new(issuer.clone(), StaticKeys::new(set))
                    .tenants([realm.id.clone()]),
            );
            let signer = match published.iter().find(|k| k.state == KeyState::Active) {
                Some(active) => {
                    live_kids.insert(active.kid.clone());
                    Some(self.signer_for(active, keystore)?)
                }
                None => None,
            };
            let jwks_json = serde_json::json!({ "keys": jwk_values }).to_string();
            by_realm.insert(
                realm.id.clone(),
                RealmKeys {
                    realm,
                    issuer,
                    jwks_json,
                    signer,
                },
            );
        }
        for key in keys.iter().filter(|k| k.state == KeyState::Revoked) {
            builder = builder.revoke_kid(key.kid.clone());
        }
        let validator = Validator::new(
            builder
                .leeway(u32::try_from(config.leeway).unwrap_or(60))
                .build()
                .map_err(|e| IdentityError::Internal(e.to_string()))?,
        );
        // Drop signers of keys that no longer sign (revoked or retiring): their unsealed
        // material leaves memory.
        if let Ok(mut signers) = self.signers.lock() {
            signers.retain(|kid, _| live_kids.contains(kid));
        }
        let overdue = lifecycle::overdue(&keys, now, config);
        let snapshot = Arc::new(Snapshot {
            revision,
            realms: by_realm,
            validator,
            keys,
            apps: apps.into_iter().map(|a| (a.client_id.clone(), a)).collect(),
            overdue,
        });
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::clone(&snapshot),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&snapshot),
        }
        Ok(snapshot)
    }

    fn signer_for(
        &self,
        key: &KeyRecord,
        keystore: &dyn KeyStore,
    ) -> Result<Arc<dyn KeySigner>, IdentityError> {
        if let Ok(signers) = self.signers.lock()
            && let Some(signer) = signers.get(&key.kid)
        {
            return Ok(Arc::clone(signer));
        }
        let alg = Algorithm::from_name(&key.alg).ok_or_else(|| {
            IdentityError::Internal(format!("key {} has unknown alg {:?}", key.kid, key.alg))
        })?;
        let reference = keyscope_jose::b64::decode_url(key.key_reference.as_bytes())
            .map_err(|_| IdentityError::Internal(format!("key {}: bad reference", key.kid)))?;
        let signer = keystore
            .open(
                &KeySpec {
                    kid: &key.kid,
                    issuer: &crate::sealing_binding(&key.realm_id),
                    alg,
                },
                &reference,
            )
            .map_err(|e| IdentityError::Custody(format!("key {}: {e}", key.kid)))?;
        if let Ok(mut signers) = self.signers.lock() {
            signers.insert(key.kid.clone(), Arc::clone(&signer));
        }
        Ok(signer)
    }
}
