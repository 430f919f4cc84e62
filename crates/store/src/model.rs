//! The rows, as plain structs, and their decoding from database rows.

use std::fmt;
use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{StoreError, parse_enum, text_list};

/// The current time in Unix seconds (the store itself only uses it to stamp migrations).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What kind of realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmKind {
    /// Personal accounts (issuer `{public_url}/consumers`).
    Consumer,
    /// An enterprise tenant (issuer `{public_url}/t/{tenant}`).
    Tenant,
}

impl RealmKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RealmKind::Consumer => "consumer",
            RealmKind::Tenant => "tenant",
        }
    }
}

impl FromStr for RealmKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "consumer" => Ok(RealmKind::Consumer),
            "tenant" => Ok(RealmKind::Tenant),
            _ => Err(()),
        }
    }
}

/// A realm: the unit of key isolation, with exactly one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm {
    /// `consumers` or the tenant name; also the `tid` claim.
    pub id: String,
    /// Consumer or tenant.
    pub kind: RealmKind,
    /// Creation time.
    pub created_at: i64,
}

impl Realm {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Realm, StoreError> {
        Ok(Realm {
            id: row.try_get("id")?,
            kind: parse_enum(row, "kind")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// A user of one realm.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Stable subject id (the `sub` claim).
    pub id: String,
    /// The realm.
    pub realm_id: String,
    /// The sign-in name, unique within the realm.
    pub username: String,
    /// argon2id PHC string; `None` means the user cannot sign in with a password.
    pub password_hash: Option<String>,
    /// Creation time.
    pub created_at: i64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("realm_id", &self.realm_id)
            .field("username", &self.username)
            .field("has_password", &self.password_hash.is_some())
            .finish()
    }
}

impl User {
    pub(crate) fn from_row(row: &AnyRow) -> Result<User, StoreError> {
        Ok(User {
            id: row.try_get("id")?,
            realm_id: row.try_get("realm_id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// A new app (OAuth client) to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApp {
    /// The client id.
    pub client_id: String,
    /// The realm it belongs to.
    pub realm_id: String,
    /// Display name.
    pub name: String,
    /// SHA-256 digest of the client secret (confidential clients only).
    pub secret_digest: Option<String>,
    /// Allowed grant types.
    pub grants: Vec<String>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed resources (RFC 8707); the first is the default audience.
    pub resources: Vec<String>,
    /// Creation time.
    pub created_at: i64,
}

/// A registered app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// The client id.
    pub client_id: String,
    /// The realm it belongs to.
    pub realm_id: String,
    /// Display name.
    pub name: String,
    /// Whether it authenticates with a secret.
    pub confidential: bool,
    /// SHA-256 digest of the secret.
    pub secret_digest: Option<String>,
    /// Allowed grant types.
    pub grants: Vec<String>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed resources; the first is the default audience.
    pub resources: Vec<String>,
    /// Creation time.
    pub created_at: i64,
}

impl App {
    pub(crate) fn from_row(row: &AnyRow) -> Result<App, StoreError> {
        Ok(App {
            client_id: row.try_get("client_id")?,
            realm_id: row.try_get("realm_id")?,
            name: row.try_get("name")?,
            confidential: row.try_get::<i64, _>("confidential")? != 0,
            secret_digest: row.try_get("secret_digest")?,
            grants: text_list(&row.try_get::<String, _>("grants")?),
            redirect_uris: text_list(&row.try_get::<String, _>("redirect_uris")?),
            resources: text_list(&row.try_get::<String, _>("resources")?),
            created_at: row.try_get("created_at")?,
        })
    }

    /// Whether the app may use a grant type.
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grants.iter().any(|g| g == grant)
    }
}

/// A signing key's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// Signs new tokens.
    Active,
    /// Published for verification until every token it signed has expired.
    Retiring,
    /// Unpublished.
    Retired,
    /// Withdrawn at once.
    Revoked,
}

impl KeyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
            KeyState::Revoked => "revoked",
        }
    }

    /// Whether keys in this state are in the JWKS.
    pub fn is_published(self) -> bool {
        matches!(
            self,
            KeyState::Pending | KeyState::Active | KeyState::Retiring
        )
    }
}

impl FromStr for KeyState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "pending" => KeyState::Pending,
            "active" => KeyState::Active,
            "retiring" => KeyState::Retiring,
            "retired" => KeyState::Retired,
            "revoked" => KeyState::Revoked,
            _ => return Err(()),
        })
    }
}

/// A signing key's row. `key_reference` is the key store's handle (sealed ciphertext for the
/// sealed store), never a clear private key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Key id.
    pub kid: String,
    /// The one realm it signs for.
    pub realm_id: String,
    /// JWS algorithm name.
    pub alg: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// Key store backend name (`sealed`).
    pub backend: String,
    /// The key store's reference, base64url.
    pub key_reference: String,
    /// The public JWK as published (JSON text).
    pub public_jwk: String,
    /// Creation (and publication) time.
    pub created_at: i64,
    /// When it became active.
    pub activated_at: Option<i64>,
    /// When it stopped signing.
    pub retiring_at: Option<i64>,
    /// When it was unpublished.
    pub retired_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// When a pending key may become active.
    pub activate_after: i64,
    /// The end of its published validity window (JWK `exp`).
    pub not_after: i64,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("realm_id", &self.realm_id)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("backend", &self.backend)
            .field("created_at", &self.created_at)
            .field("activated_at", &self.activated_at)
            .field("retiring_at", &self.retiring_at)
            .field("retired_at", &self.retired_at)
            .field("revoked_at", &self.revoked_at)
            .field("activate_after", &self.activate_after)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<KeyRecord, StoreError> {
        Ok(KeyRecord {
            kid: row.try_get("kid")?,
            realm_id: row.try_get("realm_id")?,
            alg: row.try_get("alg")?,
            state: parse_enum(row, "state")?,
            backend: row.try_get("backend")?,
            key_reference: row.try_get("key_reference")?,
            public_jwk: row.try_get("public_jwk")?,
            created_at: row.try_get("created_at")?,
            activated_at: row.try_get("activated_at")?,
            retiring_at: row.try_get("retiring_at")?,
            retired_at: row.try_get("retired_at")?,
            revoked_at: row.try_get("revoked_at")?,
            revoked_reason: row.try_get("revoked_reason")?,
            activate_after: row.try_get("activate_after")?,
            not_after: row.try_get("not_after")?,
        })
    }
}

/// A new authorization code (stored by digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCode {
    /// SHA-256 digest of the code.
    pub code_digest: String,
    /// The token family the code starts.
    pub family_id: String,
    /// Realm.
    pub realm_id: String,
    /// Client it was issued to.
    pub client_id: String,
    /// The user who signed in.
    pub user_id: String,
    /// The redirect URI of the request (must match at the token endpoint).
    pub redirect_uri: String,
    /// Granted scope.
    pub scope: String,
    /// RFC 8707 resource, if requested.
    pub resource: Option<String>,
    /// OIDC nonce.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// A stored authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    /// The code as issued.
    pub code: NewCode,
    /// When it was redeemed.
    pub used_at: Option<i64>,
    /// Expiry (copy of `code.expires_at`).
    pub expires_at: i64,
}

impl StoredCode {
    pub(crate) fn from_row(row: &AnyRow) -> Result<StoredCode, StoreError> {
        let expires_at = row.try_get("expires_at")?;
        Ok(StoredCode {
            code: NewCode {
                code_digest: row.try_get("code_digest")?,
                family_id: row.try_get("family_id")?,
                realm_id: row.try_get("realm_id")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                redirect_uri: row.try_get("redirect_uri")?,
                scope: row.try_get("scope")?,
                resource: row.try_get("resource")?,
                nonce: row.try_get("nonce")?,
                code_challenge: row.try_get("code_challenge")?,
                auth_time: row.try_get("auth_time")?,
                expires_at,
            },
            used_at: row.try_get("used_at")?,
            expires_at,
        })
    }
}

/// What redeeming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeOutcome {
    /// First use, now marked used.
    Fresh(StoredCode),
    /// Used before: the caller revokes its family.
    Replayed(StoredCode),
    /// Never used but expired.
    Expired(StoredCode),
    /// No such code.
    Unknown,
}

/// A new refresh token (stored by digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefresh {
    /// SHA-256 digest of the token.
    pub token_digest: String,
    /// Its family.
    pub family_id: String,
    /// Realm.
    pub realm_id: String,
    /// Client.
    pub client_id: String,
    /// User, if any.
    pub user_id: Option<String>,
    /// Granted scope.
    pub scope: String,
    /// Resource.
    pub resource: Option<String>,
    /// When the user authenticated (carried into ID tokens).
    pub auth_time: Option<i64>,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// A stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// The token as issued.
    pub token: NewRefresh,
    /// When it was spent (rotated).
    pub spent_at: Option<i64>,
}

impl RefreshRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<RefreshRecord, StoreError> {
        Ok(RefreshRecord {
            token: NewRefresh {
                token_digest: row.try_get("token_digest")?,
                family_id: row.try_get("family_id")?,
                realm_id: row.try_get("realm_id")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                scope: row.try_get("scope")?,
                resource: row.try_get("resource")?,
                auth_time: row.try_get("auth_time")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
            },
            spent_at: row.try_get("spent_at")?,
        })
    }

    /// The family id.
    pub fn family_id(&self) -> &str {
        &self.token.family_id
    }
}

/// What spending a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Live, now spent: issue the next one.
    Fresh(RefreshRecord),
    /// Spent before: the caller revokes the family.
    Replayed(RefreshRecord),
    /// Its family was revoked.
    FamilyRevoked(RefreshRecord),
    /// Expired unspent.
    Expired(RefreshRecord),
    /// No such token.
    Unknown,
}

/// An issuance-ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// Token id.
    pub jti: String,
    /// Realm.
    pub realm_id: String,
    /// Signing key.
    pub kid: String,
    /// Subject.
    pub subject: String,
    /// Client.
    pub client_id: String,
    /// Audience.
    pub audience: String,
    /// Scope.
    pub scope: String,
    /// Issue time.
    pub issued_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// The refresh family it came from, if any.
    pub family_id: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

impl IssuedToken {
    pub(crate) fn from_row(row: &AnyRow) -> Result<IssuedToken, StoreError> {
        Ok(IssuedToken {
            jti: row.try_get("jti")?,
            realm_id: row.try_get("realm_id")?,
            kid: row.try_get("kid")?,
            subject: row.try_get("subject")?,
            client_id: row.try_get("client_id")?,
            audience: row.try_get("audience")?,
            scope: row.try_get("scope")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            family_id: row.try_get("family_id")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}
