//! Keyscope's identity service: realms whose keys are isolated, rotate by themselves and are
//! revoked in one command; OAuth 2.0 / OpenID Connect endpoints per realm; the issuance
//! ledger that lets resource servers refuse tokens a stolen key forged.
//!
//! Layout:
//! - [`config`], [`names`], [`lifecycle`]: pure logic (settings, name syntax, the key
//!   lifecycle as a plan of steps);
//! - [`registry`]: the in-memory keys, JWKS and validator, rebuilt on every store change;
//! - [`Identity`] (this module): the service core shared by the HTTP endpoints and the admin
//!   commands: key lifecycle, issuance, token checks, admin actions, each audited;
//! - [`http`]: the axum endpoints.

pub mod audit;
pub mod config;
pub mod http;
pub mod ledger;
pub mod lifecycle;
pub mod names;
pub mod password;
pub mod registry;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use keyscope_custody::{KeySpec, KeyStore};
use keyscope_store::{
    App, IssuedToken, KeyRecord, KeyState, NewApp, Realm, RealmKind, Store, StoreError, User,
};
use serde_json::{Map, Value, json};
use thiserror::Error;
use zeroize::Zeroizing;

pub use audit::{AuditSink, Event, RequestContext};
pub use config::IdentityConfig;
use lifecycle::Step;
use registry::{Registry, Snapshot};

/// Why an identity operation failed. Messages never contain secrets.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The request or argument is invalid; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// The named object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The named object already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The realm has no active signing key right now.
    #[error("realm {0:?} has no active signing key")]
    NoSigningKey(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// The key store failed.
    #[error("key custody: {0}")]
    Custody(String),
    /// The audit log refused the event; nothing was done.
    #[error("audit log: {0}")]
    Audit(String),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for IdentityError {
    fn from(e: StoreError) -> IdentityError {
        match e {
            StoreError::Conflict(what) => IdentityError::Conflict(what),
            StoreError::NotFound(what) => IdentityError::NotFound(what),
            other => IdentityError::Store(other.to_string()),
        }
    }
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `bytes` random bytes as base64url.
pub fn random_id(bytes: usize) -> String {
    keyscope_oauth::token::random_token(bytes)
}

/// What a sealed key is bound to (the AAD of its ciphertext): its realm. The realm, not the
/// issuer URL, so that a change of public URL does not orphan keys, and a consumer key's
/// ciphertext copied into a tenant's row does not open.
pub fn sealing_binding(realm_id: &str) -> String {
    format!("keyscope-realm:{realm_id}")
}

/// How often a node polls the store for changes (revocations reach it within this).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often the key lifecycle runs.
pub const LIFECYCLE_INTERVAL: Duration = Duration::from_secs(5);

/// An access token just minted.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The compact JWT.
    pub access_token: String,
    /// Its `jti`.
    pub jti: String,
    /// The signing key.
    pub kid: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Its `exp`.
    pub expires_at: i64,
}

/// What an access token is for.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// The realm issuing.
    pub realm: &'a str,
    /// `sub`: a user id, or the client id for client credentials.
    pub subject: &'a str,
    /// `client_id`.
    pub client_id: &'a str,
    /// `scope` (space-separated).
    pub scope: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// The refresh family, for revocation.
    pub family_id: Option<&'a str>,
    /// When the user authenticated.
    pub auth_time: Option<i64>,
    /// How it was obtained (`authorization_code`, `refresh_token`, `client_credentials`,
    /// `operator`), for the audit record.
    pub grant_type: &'a str,
}

/// A token check that passed: the token was signed by its realm's key, is in the ledger and
/// is not revoked.
#[derive(Debug, Clone)]
pub struct AccessContext {
    /// The realm (its `tid`).
    pub realm: String,
    /// The claims.
    pub claims: Map<String, Value>,
    /// The ledger entry.
    pub ledger: IssuedToken,
    /// The token's audit facts (verified, since the token was accepted).
    pub facts: keyscope_trust::TokenFacts,
}

/// A token check that failed, with its stable reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRejection {
    /// A trust reason code, or `token_not_issued` / `token_revoked` / `wrong_realm`.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// What the token said about itself (unverified): the `jti`, `kid`, issuer and client a
    /// detection needs to follow a forged token.
    pub facts: keyscope_trust::TokenFacts,
}

/// What an app registration asks for.
#[derive(Debug, Clone, Default)]
pub struct AppSpec {
    /// Realm.
    pub realm: String,
    /// Display name.
    pub name: String,
    /// Whether the app gets a secret.
    pub confidential: bool,
    /// Grants (defaults chosen when empty).
    pub grants: Vec<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed resources; the first is the default audience.
    pub resources: Vec<String>,
}

/// The grant types Keyscope implements.
pub const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// The identity service core.
pub struct Identity {
    config: IdentityConfig,
    store: Store,
    keystore: Arc<dyn KeyStore>,
    audit: AuditSink,
    registry: Registry,
    throttle: throttle::Throttle,
    ledger: ledger::Ledger,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("config", &self.config)
            .field("keystore", &self.keystore.backend())
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Starts the core: ensures the consumer realm, runs the lifecycle once (so every realm
    /// can sign) and loads the registry.
    pub async fn start(
        config: IdentityConfig,
        store: Store,
        keystore: Arc<dyn KeyStore>,
        audit: AuditSink,
    ) -> Result<Arc<Identity>, IdentityError> {
        let identity = Arc::new(Identity {
            ledger: ledger::Ledger::start(store.clone()),
            config,
            store,
            keystore,
            audit,
            registry: Registry::empty()?,
            throttle: throttle::Throttle::new(),
        });
        identity.store.ensure_consumer_realm(unix_now()).await?;
        identity.run_lifecycle().await?;
        identity.reload().await?;
        Ok(identity)
    }

    /// The settings.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The audit sink.
    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    /// The sign-in throttle.
    pub fn throttle(&self) -> &throttle::Throttle {
        &self.throttle
    }

    /// The current registry snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.registry.snapshot()
    }

    /// Rebuilds the registry from the store.
    pub async fn reload(&self) -> Result<Arc<Snapshot>, IdentityError> {
        let revision = self.store.revision().await?;
        let realms = self.store.realms().await?;
        let keys = self.store.keys().await?;
        let apps = self.store.all_apps().await?;
        self.registry.rebuild(
            registry::StoreContents {
                revision,
                realms,
                keys,
                apps,
            },
            self.keystore.as_ref(),
            &self.config,
            unix_now(),
        )
    }

    /// Reloads if the store changed since the last snapshot. Returns whether it did.
    pub async fn refresh(&self) -> Result<bool, IdentityError> {
        let revision = self.store.revision().await?;
        if revision == self.snapshot().revision {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    /// Runs the background work until the returned handle is aborted: store polling (every
    /// 250 ms: revocations and admin changes), the audit outbox, and the key lifecycle.
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let identity = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_lifecycle = std::time::Instant::now();
            let mut warned_overdue = std::collections::HashSet::new();
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                if let Err(e) = identity.refresh().await {
                    tracing::error!(error = %e, "reloading keys failed");
                }
                if let Err(e) = identity.audit.drain_outbox(&identity.store).await {
                    tracing::error!(error = %e, "appending queued audit events failed");
                }
                if last_lifecycle.elapsed() >= LIFECYCLE_INTERVAL {
                    last_lifecycle = std::time::Instant::now();
                    if let Err(e) = identity.run_lifecycle().await {
                        tracing::error!(error = %e, "key lifecycle failed");
                    }
                    identity.throttle.forget_old(unix_now());
                    for overdue in &identity.snapshot().overdue {
                        // An alarm, never a silent state: logged and audited once per key.
                        if warned_overdue.insert(overdue.kid.clone()) {
                            tracing::error!(realm = %overdue.realm, kid = %overdue.kid,
                                active_for = overdue.active_for,
                                "signing key is older than the rotation policy");
                            let event = Event::new("Alert")
                                .with("AlertId", Some("ks-key-age"))
                                .with("RuleId", Some("ks-key-age"))
                                .with("Severity", Some("medium"))
                                .with("OrganizationId", Some(&overdue.realm))
                                .with("KeyId", Some(&overdue.kid))
                                .with_value("ActiveSeconds", json!(overdue.active_for));
                            if let Err(e) = identity.audit.record(event.into_map()).await {
                                tracing::error!(error = %e, "recording the key-age alert failed");
                            }
                        }
                    }
                }
            }
        })
    }

    // ----- key lifecycle -----

    /// Applies the due lifecycle steps of every realm.
    pub async fn run_lifecycle(&self) -> Result<(), IdentityError> {
        let now = unix_now();
        let realms = self.store.realms().await?;
        let keys = self.store.keys().await?;
        let mut changed = false;
        for realm in &realms {
            let realm_keys: Vec<KeyRecord> = keys
                .iter()
                .filter(|k| k.realm_id == realm.id)
                .cloned()
                .collect();
            for step in lifecycle::plan(&realm.id, &realm_keys, now, &self.config) {
                changed |= self.apply_step(step, now).await?;
            }
        }
        if changed {
            self.reload().await?;
        }
        Ok(())
    }

    async fn apply_step(&self, step: Step, now: i64) -> Result<bool, IdentityError> {
        match step {
            Step::Create {
                realm,
                state,
                activate_after,
                not_after,
            } => Ok(self
                .create_key(&realm, state, activate_after, not_after, now)
                .await?
                .is_some()),
            Step::Activate { realm, kid } => {
                let done = self.store.activate_key(&realm, &kid, now).await?;
                if done {
                    self.audit
                        .record(
                            Event::new("KeyActivated")
                                .with("OrganizationId", Some(&realm))
                                .with("KeyId", Some(&kid))
                                .with("Issuer", Some(&self.config.issuer(&realm)))
                                .into_map(),
                        )
                        .await?;
                }
                Ok(done)
            }
            Step::Retire { kid } => {
                let done = self.store.retire_key(&kid, now).await?;
                if done {
                    self.audit
                        .record(
                            Event::new("KeyRetired")
                                .with("KeyId", Some(&kid))
                                .into_map(),
                        )
                        .await?;
                }
                Ok(done)
            }
        }
    }

    /// Creates a key. Returns `None` when another node created one in that state first.
    async fn create_key(
        &self,
        realm: &str,
        state: KeyState,
        activate_after: i64,
        not_after: i64,
        now: i64,
    ) -> Result<Option<KeyRecord>, IdentityError> {
        let kid = format!("ks{}", random_id(12));
        let alg = self.config.signing_alg;
        let binding = sealing_binding(realm);
        let created = self
            .keystore
            .create(&KeySpec {
                kid: &kid,
                issuer: &binding,
                alg,
            })
            .map_err(|e| IdentityError::Custody(e.to_string()))?;
        let mut jwk = created.public_jwk;
        jwk.insert("kid".into(), Value::String(kid.clone()));
        jwk.insert("alg".into(), Value::String(alg.name().to_owned()));
        jwk.insert("use".into(), Value::String("sig".to_owned()));
        jwk.insert("issuer".into(), Value::String(self.config.issuer(realm)));
        jwk.insert("nbf".into(), json!(now));
        jwk.insert("exp".into(), json!(not_after));
        let record = KeyRecord {
            kid: kid.clone(),
            realm_id: realm.to_owned(),
            alg: alg.name().to_owned(),
            state,
            backend: self.keystore.backend().to_owned(),
            key_reference: keyscope_jose::b64::encode_url(&created.reference),
            public_jwk: Value::Object(jwk).to_string(),
            created_at: now,
            activated_at: (state == KeyState::Active).then_some(now),
            retiring_at: None,
            retired_at: None,
            revoked_at: None,
            revoked_reason: None,
            activate_after,
            not_after,
        };
        match self.store.insert_key(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let event = Event::new("KeyCreated")
            .with("OrganizationId", Some(realm))
            .with("KeyId", Some(&kid))
            .with("Issuer", Some(&self.config.issuer(realm)))
            .with("KeyState", Some(state.as_str()))
            .with("Algorithm", Some(alg.name()))
            .with("KeyBackend", Some(self.keystore.backend()))
            .with_value("ActivateAfter", json!(activate_after))
            .with_value("NotAfter", json!(not_after));
        self.audit.record(event.into_map()).await?;
        if state == KeyState::Active {
            self.audit
                .record(
                    Event::new("KeyActivated")
                        .with("OrganizationId", Some(realm))
                        .with("KeyId", Some(&kid))
                        .into_map(),
                )
                .await?;
        }
        Ok(Some(record))
    }

    // ----- admin actions -----

    async fn admin_event(
        &self,
        action: &str,
        realm: Option<&str>,
        target: &str,
        context: &RequestContext,
    ) -> Result<(), IdentityError> {
        let event = Event::new("AdminAction")
            .with("AdminOperation", Some(action))
            .with("OrganizationId", realm)
            .with("Target", Some(target))
            .with("UserId", Some("operator"))
            .with("ResultStatus", Some("Success"))
            .context(context);
        self.audit.record(event.into_map()).await
    }

    /// An app by client id: from the in-memory snapshot, else (just registered, not yet
    /// polled) from the store.
    pub async fn app(&self, client_id: &str) -> Result<Option<App>, IdentityError> {
        if let Some(app) = self.snapshot().apps.get(client_id) {
            return Ok(Some(app.clone()));
        }
        Ok(self.store.app(client_id).await?)
    }

    /// Resolves `--tenant NAME` / `--consumer` to an existing realm.
    pub async fn realm(&self, tenant: Option<&str>) -> Result<Realm, IdentityError> {
        let id = tenant.unwrap_or(keyscope_store::CONSUMER_REALM);
        if let Some(name) = tenant {
            names::check_tenant_name(name).map_err(IdentityError::Invalid)?;
        }
        self.store
            .realm(id)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("tenant {id:?}")))
    }

    /// Creates a tenant realm and its first signing key.
    pub async fn create_tenant(
        &self,
        name: &str,
        context: &RequestContext,
    ) -> Result<Realm, IdentityError> {
        names::check_tenant_name(name).map_err(IdentityError::Invalid)?;
        let now = unix_now();
        let realm = self
            .store
            .create_realm(name, RealmKind::Tenant, now)
            .await?;
        self.admin_event("TenantCreated", Some(name), name, context)
            .await?;
        self.run_lifecycle().await?;
        Ok(realm)
    }

    /// Adds a user. Without a password, a random one is generated and returned (shown once).
    pub async fn add_user(
        &self,
        realm: &Realm,
        username: &str,
        password: Option<Zeroizing<String>>,
        context: &RequestContext,
    ) -> Result<(User, Option<Zeroizing<String>>), IdentityError> {
        names::check_username(username).map_err(IdentityError::Invalid)?;
        let (password, generated) = match password {
            Some(p) => (p, false),
            None => (keyscope_oauth::token::random_token(15).into(), true),
        };
        password::check_strength(&password).map_err(IdentityError::Invalid)?;
        let hash = password::hash(&password)?;
        let user = User {
            id: random_id(16),
            realm_id: realm.id.clone(),
            username: username.to_owned(),
            password_hash: Some(hash),
            created_at: unix_now(),
        };
        self.store.add_user(&user).await?;
        self.admin_event("UserAdded", Some(&realm.id), username, context)
            .await?;
        Ok((user, generated.then_some(password)))
    }

    /// Sets a user's password. Without one, a random one is generated and returned (shown
    /// once). Existing sessions and tokens are not affected (they expire by themselves).
    pub async fn set_password(
        &self,
        realm: &Realm,
        username: &str,
        password: Option<Zeroizing<String>>,
        context: &RequestContext,
    ) -> Result<Option<Zeroizing<String>>, IdentityError> {
        names::check_username(username).map_err(IdentityError::Invalid)?;
        let (password, generated) = match password {
            Some(p) => (p, false),
            None => (keyscope_oauth::token::random_token(15).into(), true),
        };
        password::check_strength(&password).map_err(IdentityError::Invalid)?;
        let hash = password::hash(&password)?;
        self.store
            .set_password_hash(&realm.id, username, &hash)
            .await?;
        self.admin_event("PasswordSet", Some(&realm.id), username, context)
            .await?;
        Ok(generated.then_some(password))
    }

    /// Registers an app. Returns it and, for a confidential app, its secret (shown once).
    pub async fn add_app(
        &self,
        spec: &AppSpec,
        context: &RequestContext,
    ) -> Result<(App, Option<Zeroizing<String>>), IdentityError> {
        let realm = self
            .store
            .realm(&spec.realm)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("realm {:?}", spec.realm)))?;
        if spec.name.trim().is_empty()
            || spec.name.len() > 128
            || spec.name.chars().any(char::is_control)
        {
            return Err(IdentityError::Invalid(
                "the app name must be 1 to 128 printable characters".to_owned(),
            ));
        }
        let grants: Vec<String> = if spec.grants.is_empty() {
            if spec.confidential {
                vec!["client_credentials".to_owned()]
            } else {
                vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
            }
        } else {
            let mut grants = Vec::new();
            for grant in &spec.grants {
                if !GRANT_TYPES.contains(&grant.as_str()) {
                    return Err(IdentityError::Invalid(format!(
                        "unknown grant {grant:?}: use one of {}",
                        GRANT_TYPES.join(", ")
                    )));
                }
                if !grants.contains(grant) {
                    grants.push(grant.clone());
                }
            }
            grants
        };
        if grants.iter().any(|g| g == "client_credentials") && !spec.confidential {
            return Err(IdentityError::Invalid(
                "client_credentials needs a confidential app (--confidential)".to_owned(),
            ));
        }
        if grants.iter().any(|g| g == "authorization_code") && spec.redirect_uris.is_empty() {
            return Err(IdentityError::Invalid(
                "authorization_code needs at least one --redirect-uri".to_owned(),
            ));
        }
        for uri in &spec.redirect_uris {
            keyscope_oauth::redirect::validate_registered_redirect_uri(uri)
                .map_err(|e| IdentityError::Invalid(format!("redirect URI {uri:?}: {e}")))?;
        }
        for resource in &spec.resources {
            keyscope_oauth::resource::check_resource(resource).map_err(|e| {
                IdentityError::Invalid(format!("resource {resource:?}: {}", e.description))
            })?;
        }
        let secret = spec
            .confidential
            .then(keyscope_oauth::client_auth::generate_secret);
        let app = NewApp {
            client_id: random_id(16),
            realm_id: realm.id.clone(),
            name: spec.name.clone(),
            secret_digest: secret.as_ref().map(|s| {
                keyscope_jose::b64::encode_url(&keyscope_oauth::client_auth::secret_digest(s))
            }),
            grants,
            redirect_uris: spec.redirect_uris.clone(),
            resources: spec.resources.clone(),
            created_at: unix_now(),
        };
        self.store.add_app(&app).await?;
        self.admin_event("AppAdded", Some(&realm.id), &app.client_id, context)
            .await?;
        let stored = self
            .store
            .app(&app.client_id)
            .await?
            .ok_or_else(|| IdentityError::Internal("the new app vanished".to_owned()))?;
        Ok((stored, secret))
    }

    /// Starts a rotation now: a new pending key that becomes active after two JWKS cache
    /// lifetimes, or at once with `immediate` (validators that cached the JWKS refuse its
    /// tokens as `unknown_key` until they refetch). Returns the new key.
    pub async fn rotate_key(
        &self,
        realm: &Realm,
        immediate: bool,
        context: &RequestContext,
    ) -> Result<KeyRecord, IdentityError> {
        let now = unix_now();
        let keys = self.store.realm_keys(&realm.id).await?;
        let activate_after = now + self.config.publish_lead();
        let pending = match keys.iter().find(|k| k.state == KeyState::Pending) {
            Some(pending) => {
                let when = activate_after.max(pending.created_at + self.config.publish_lead());
                if when < pending.activate_after {
                    self.store.set_activate_after(&pending.kid, when).await?;
                }
                pending.clone()
            }
            None => {
                let not_after = lifecycle::not_after(&self.config, activate_after);
                self.create_key(&realm.id, KeyState::Pending, activate_after, not_after, now)
                    .await?
                    .ok_or_else(|| {
                        IdentityError::Conflict("a rotation started by another node".to_owned())
                    })?
            }
        };
        if immediate {
            self.store
                .activate_key(&realm.id, &pending.kid, now)
                .await?;
            self.audit
                .record(
                    Event::new("KeyActivated")
                        .with("OrganizationId", Some(&realm.id))
                        .with("KeyId", Some(&pending.kid))
                        .into_map(),
                )
                .await?;
        }
        self.admin_event(
            if immediate {
                "KeyRotatedNow"
            } else {
                "KeyRotationStarted"
            },
            Some(&realm.id),
            &pending.kid,
            context,
        )
        .await?;
        self.reload().await?;
        self.store
            .key(&pending.kid)
            .await?
            .ok_or_else(|| IdentityError::Internal("the new key vanished".to_owned()))
    }

    /// Revokes a key at once: it leaves the JWKS, every validator refuses it (this process
    /// now, other nodes within a poll interval), and if it was the realm's active key the
    /// lifecycle puts another in its place.
    pub async fn revoke_key(
        &self,
        kid: &str,
        reason: &str,
        context: &RequestContext,
    ) -> Result<KeyRecord, IdentityError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 512 {
            return Err(IdentityError::Invalid(
                "--reason must say why, in at most 512 bytes".to_owned(),
            ));
        }
        let before = self.store.revoke_key(kid, reason, unix_now()).await?;
        let event = Event::new("KeyRevoked")
            .with("OrganizationId", Some(&before.realm_id))
            .with("KeyId", Some(kid))
            .with("Reason", Some(reason))
            .with("PreviousState", Some(before.state.as_str()))
            .context(context);
        self.audit.record(event.into_map()).await?;
        self.admin_event("KeyRevoked", Some(&before.realm_id), kid, context)
            .await?;
        self.reload().await?;
        if before.state == KeyState::Active {
            self.run_lifecycle().await?;
        }
        self.store
            .key(kid)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("key {kid:?}")))
    }

    // ----- issuance -----

    /// Signs an access token for `grant` with the realm's active key, records it in the
    /// ledger and audits it. The token is returned only once both are durable.
    pub async fn mint_access_token(
        &self,
        grant: &Grant<'_>,
        context: &RequestContext,
    ) -> Result<Minted, IdentityError> {
        let snapshot = self.snapshot();
        let realm = snapshot
            .realm(grant.realm)
            .ok_or_else(|| IdentityError::NotFound(format!("realm {:?}", grant.realm)))?;
        let signer = realm
            .signer
            .as_ref()
            .ok_or_else(|| IdentityError::NoSigningKey(grant.realm.to_owned()))?;
        let now = unix_now();
        let exp = now + self.config.access_token_ttl;
        let jti = random_id(16);
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::String(realm.issuer.clone()));
        claims.insert("sub".into(), Value::String(grant.subject.to_owned()));
        claims.insert("aud".into(), Value::String(grant.audience.to_owned()));
        claims.insert("exp".into(), json!(exp));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("jti".into(), Value::String(jti.clone()));
        claims.insert(
            "client_id".into(),
            Value::String(grant.client_id.to_owned()),
        );
        claims.insert("tid".into(), Value::String(grant.realm.to_owned()));
        if !grant.scope.is_empty() {
            claims.insert("scope".into(), Value::String(grant.scope.to_owned()));
        }
        if let Some(auth_time) = grant.auth_time {
            claims.insert("auth_time".into(), json!(auth_time));
        }
        let mut header = Map::new();
        header.insert("typ".into(), Value::String("at+jwt".to_owned()));
        let payload = Value::Object(claims).to_string();
        let access_token = signer
            .sign_compact(header, payload.as_bytes())
            .map_err(|e| IdentityError::Custody(e.to_string()))?;
        let kid = signer.kid().to_owned();
        let ledger_entry = IssuedToken {
            jti: jti.clone(),
            realm_id: grant.realm.to_owned(),
            kid: kid.clone(),
            subject: grant.subject.to_owned(),
            client_id: grant.client_id.to_owned(),
            audience: grant.audience.to_owned(),
            scope: grant.scope.to_owned(),
            issued_at: now,
            expires_at: exp,
            family_id: grant.family_id.map(str::to_owned),
            revoked_at: None,
        };
        let event = Event::new("TokenIssued")
            .with("OrganizationId", Some(grant.realm))
            .with("UserId", Some(grant.subject))
            .with("AppId", Some(grant.client_id))
            .with("TokenId", Some(&jti))
            .with("KeyId", Some(&kid))
            .with("Issuer", Some(&realm.issuer))
            .with("Audience", Some(grant.audience))
            .with("Scope", Some(grant.scope))
            .with("GrantType", Some(grant.grant_type))
            .with("ResultStatus", Some("Success"))
            .with_value("ExpiresAt", json!(exp))
            .context(context);
        // Both must be durable before the token is handed out; they are independent, so they
        // are written concurrently.
        let (ledgered, audited) = tokio::join!(
            self.ledger.record(ledger_entry),
            self.audit.record(event.into_map())
        );
        ledgered?;
        audited?;
        Ok(Minted {
            access_token,
            jti,
            kid,
            expires_in: self.config.access_token_ttl,
            expires_at: exp,
        })
    }

    /// Signs an OpenID Connect ID token (typ `JWT`, audience the client).
    pub fn mint_id_token(
        &self,
        realm: &str,
        subject: &str,
        client_id: &str,
        auth_time: Option<i64>,
        nonce: Option<&str>,
    ) -> Result<String, IdentityError> {
        let snapshot = self.snapshot();
        let keys = snapshot
            .realm(realm)
            .ok_or_else(|| IdentityError::NotFound(format!("realm {realm:?}")))?;
        let signer = keys
            .signer
            .as_ref()
            .ok_or_else(|| IdentityError::NoSigningKey(realm.to_owned()))?;
        let now = unix_now();
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::String(keys.issuer.clone()));
        claims.insert("sub".into(), Value::String(subject.to_owned()));
        claims.insert("aud".into(), Value::String(client_id.to_owned()));
        claims.insert("azp".into(), Value::String(client_id.to_owned()));
        claims.insert("exp".into(), json!(now + self.config.id_token_ttl));
        claims.insert("iat".into(), json!(now));
        claims.insert("tid".into(), Value::String(realm.to_owned()));
        if let Some(auth_time) = auth_time {
            claims.insert("auth_time".into(), json!(auth_time));
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), Value::String(nonce.to_owned()));
        }
        let mut header = Map::new();
        header.insert("typ".into(), Value::String("JWT".to_owned()));
        signer
            .sign_compact(header, Value::Object(claims).to_string().as_bytes())
            .map_err(|e| IdentityError::Custody(e.to_string()))
    }

    /// An operator-minted access token (`keyscope token issue`): recorded and audited like
    /// any other.
    pub async fn issue_operator_token(
        &self,
        realm: &Realm,
        username: &str,
        client_id: Option<&str>,
        scope: Option<&str>,
        audience: Option<&str>,
        context: &RequestContext,
    ) -> Result<Minted, IdentityError> {
        let user = self
            .store
            .user_by_name(&realm.id, username)
            .await?
            .ok_or_else(|| {
                IdentityError::NotFound(format!("user {username:?} in realm {:?}", realm.id))
            })?;
        let app = match client_id {
            Some(id) => {
                let app = self.store.app(id).await?;
                match app {
                    Some(app) if app.realm_id == realm.id => Some(app),
                    _ => {
                        return Err(IdentityError::NotFound(format!(
                            "client {id:?} in realm {:?}",
                            realm.id
                        )));
                    }
                }
            }
            None => None,
        };
        let scope = keyscope_oauth::scope::parse_scope(scope.unwrap_or("openid"))
            .map_err(|e| IdentityError::Invalid(e.description))?;
        let audience = match audience {
            Some(aud) => {
                keyscope_oauth::resource::check_resource(aud).map_err(|e| {
                    IdentityError::Invalid(format!("--audience: {}", e.description))
                })?;
                aud.to_owned()
            }
            // No app named: the token is for the built-in mail client and opens the mail
            // service; an app without resources gets the deployment itself.
            None if app.is_none() => self.config.mail_resource(),
            None => self.default_audience(app.as_ref()),
        };
        self.admin_event("TokenIssuedByOperator", Some(&realm.id), username, context)
            .await?;
        self.mint_access_token(
            &Grant {
                realm: &realm.id,
                subject: &user.id,
                client_id: app
                    .as_ref()
                    .map_or(MAIL_CLIENT_ID, |a| a.client_id.as_str()),
                scope: &keyscope_oauth::scope::join_scope(&scope),
                audience: &audience,
                family_id: None,
                auth_time: None,
                grant_type: "operator",
            },
            context,
        )
        .await
    }

    /// The audience of a token when the request names no resource: the app's first resource,
    /// or the Keyscope deployment itself (its public URL).
    pub fn default_audience(&self, app: Option<&App>) -> String {
        app.and_then(|a| a.resources.first().cloned())
            .unwrap_or_else(|| self.config.public_url.clone())
    }

    // ----- checking tokens (userinfo, introspection, resource servers) -----

    /// Checks an access token the way a first-party resource server must: signature by its
    /// realm's key with the key bound to the issuer and tenant (the trust validator), then the
    /// issuance ledger (`token_not_issued`) and revocation (`token_revoked`). With
    /// `expected_realm`, a token of another realm is refused (`wrong_realm`).
    pub async fn check_access_token(
        &self,
        token: &str,
        expected_realm: Option<&str>,
    ) -> Result<AccessContext, AccessRejection> {
        let snapshot = self.snapshot();
        let decision = snapshot.validator.validate_now(token);
        let facts = decision.facts().clone();
        let reject = |reason: &str, detail: String| AccessRejection {
            reason: reason.to_owned(),
            detail,
            facts: facts.clone(),
        };
        let accepted = match decision {
            keyscope_trust::Decision::Accepted(accepted) => accepted,
            keyscope_trust::Decision::Rejected(rejected) => {
                return Err(reject(rejected.reason.as_str(), rejected.detail.clone()));
            }
        };
        let realm = self
            .config
            .realm_of_issuer(&accepted.issuer)
            .unwrap_or_default()
            .to_owned();
        if let Some(expected) = expected_realm
            && expected != realm
        {
            return Err(reject(
                "wrong_realm",
                format!("the token belongs to realm {realm:?}, not {expected:?}"),
            ));
        }
        let claims = accepted.claims();
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ledger = match self.store.issued(jti).await {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                return Err(reject(
                    "token_not_issued",
                    format!("jti {jti:?} was never issued by this realm"),
                ));
            }
            Err(e) => {
                return Err(reject(
                    "unavailable",
                    format!("the issuance ledger could not be read: {e}"),
                ));
            }
        };
        if ledger.realm_id != realm || Some(ledger.kid.as_str()) != accepted.kid.as_deref() {
            return Err(reject(
                "token_not_issued",
                format!("jti {jti:?} was issued by another realm or key"),
            ));
        }
        if ledger.revoked_at.is_some() {
            return Err(reject(
                "token_revoked",
                format!("token {jti:?} has been revoked"),
            ));
        }
        Ok(AccessContext {
            realm,
            claims,
            ledger,
            facts,
        })
    }
}

/// The `client_id` of Keyscope's built-in first-party mail client: operator-minted tokens
/// that name no app are for it, with the mail service as their audience.
pub const MAIL_CLIENT_ID: &str = "keyscope-mail";
