//! Keyscope's relational store: realms, users, apps (OAuth clients), signing keys, authorization
//! codes, refresh-token families and the issuance ledger.
//!
//! One code path serves SQLite (the default, a WAL-mode file in the data directory) and
//! PostgreSQL (`postgres://…`), through sqlx's `Any` driver and one set of migrations written in
//! the SQL both understand. Every query uses `$N` placeholders, which both accept.
//!
//! The store holds no secret in the clear: passwords are argon2id hashes, client secrets,
//! authorization codes and refresh tokens are SHA-256 digests, and a signing key's
//! `key_reference` is whatever the key store returned (for the sealed store, an AES-256-GCM
//! ciphertext whose key is never in the database).
//!
//! Times are Unix seconds supplied by the caller, so that the lifecycle logic above can be
//! tested with any clock.

mod mail;
mod migrate;
mod model;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use thiserror::Error;

pub use mail::{
    Change, ChangeKind, ChangeOp, EmailFilter, EmailRecord, EmailSort, EmailSortKey, MailAccount,
    MailTx, MailboxCounts, MailboxRecord, NewEmail, SearchField, SearchKeys, SubmissionRecord,
};
pub use model::{
    App, CodeOutcome, IssuedToken, KeyRecord, KeyState, NewApp, NewCode, NewRefresh, Realm,
    RealmKind, RefreshOutcome, RefreshRecord, StoredCode, User,
};

/// The consumer realm's id, which is also its `tid`.
pub const CONSUMER_REALM: &str = "consumers";

/// Why a store operation failed. Messages name the object, never a secret.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database location is not usable.
    #[error("database location: {0}")]
    Location(String),
    /// The object already exists (a unique constraint).
    #[error("{0} already exists")]
    Conflict(String),
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A stored value cannot be read back (the database was edited by hand?).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// Applying the schema failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in WAL mode.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The store: a connection pool plus the queries.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// The SQLite file name inside the data directory.
pub const SQLITE_FILE: &str = "keyscope.db";

impl Store {
    /// Opens (creating if needed) `keyscope.db` in `data_dir` and applies migrations.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(SQLITE_FILE);
        let text = path
            .to_str()
            .ok_or_else(|| StoreError::Location(format!("{} is not UTF-8", path.display())))?;
        if text.contains(['?', '#']) {
            return Err(StoreError::Location(format!(
                "{text}: '?' and '#' are not allowed in the data directory path"
            )));
        }
        Store::connect(&format!("sqlite://{text}?mode=rwc")).await
    }

    /// Connects to `sqlite://…` or `postgres://…` (also `postgresql://`) and applies migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Location(
                "the database URL must start with postgres:// or sqlite:".to_owned(),
            ));
        };
        let options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            });
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; NORMAL syncs at checkpoints
                    // (the audit log, not this database, is the durable record of issuance).
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        sqlx::Executor::execute(&mut *conn, pragma).await?;
                    }
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options
            .connect(url)
            .await
            .map_err(|e| StoreError::Location(redact_url_error(url, &e)))?;
        let store = Store { pool, backend };
        migrate::apply(&store.pool).await?;
        Ok(store)
    }

    /// The database kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ----- revision -----

    /// The change counter that nodes poll.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT revision FROM store_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn bump(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE store_revision SET revision = revision + 1 WHERE id = 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----- settings -----

    /// A deployment setting.
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Sets a deployment setting.
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- realms -----

    /// Creates a realm; `Conflict` if it exists.
    pub async fn create_realm(
        &self,
        id: &str,
        kind: RealmKind,
        now: i64,
    ) -> Result<Realm, StoreError> {
        let result = sqlx::query("INSERT INTO realms (id, kind, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(kind.as_str())
            .bind(now)
            .execute(&self.pool)
            .await;
        conflict(result, || format!("realm {id:?}"))?;
        self.bump().await?;
        Ok(Realm {
            id: id.to_owned(),
            kind,
            created_at: now,
        })
    }

    /// Creates the consumer realm unless it exists; returns it.
    pub async fn ensure_consumer_realm(&self, now: i64) -> Result<Realm, StoreError> {
        match self
            .create_realm(CONSUMER_REALM, RealmKind::Consumer, now)
            .await
        {
            Ok(realm) => Ok(realm),
            Err(StoreError::Conflict(_)) => self
                .realm(CONSUMER_REALM)
                .await?
                .ok_or_else(|| StoreError::NotFound("consumer realm".to_owned())),
            Err(e) => Err(e),
        }
    }

    /// One realm.
    pub async fn realm(&self, id: &str) -> Result<Option<Realm>, StoreError> {
        sqlx::query("SELECT id, kind, created_at FROM realms WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| Realm::from_row(&row))
            .transpose()
    }

    /// All realms, consumer first, then tenants by name.
    pub async fn realms(&self) -> Result<Vec<Realm>, StoreError> {
        let rows = sqlx::query("SELECT id, kind, created_at FROM realms ORDER BY kind, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Realm::from_row).collect()
    }

    /// Sets (or, with `None`, clears) the URL a tenant's incident notices are POSTed to.
    /// `NotFound` if the realm does not exist.
    pub async fn set_notify_webhook(
        &self,
        realm: &str,
        url: Option<&str>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE realms SET notify_webhook = $1 WHERE id = $2")
            .bind(url)
            .bind(realm)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("realm {realm:?}")));
        }
        Ok(())
    }

    /// The URL a tenant's incident notices are POSTed to, if set.
    pub async fn notify_webhook(&self, realm: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT notify_webhook FROM realms WHERE id = $1")
            .bind(realm)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()?
            .flatten())
    }

    /// Replaces a user's password hash. `NotFound` if no such user.
    pub async fn set_password_hash(
        &self,
        realm: &str,
        username: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1 WHERE realm_id = $2 AND username = $3",
        )
        .bind(password_hash)
        .bind(realm)
        .bind(username)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "user {username:?} in {realm:?}"
            )));
        }
        Ok(())
    }

    /// Makes a user one of its realm's administrators (or not). `NotFound` if no such user.
    pub async fn set_realm_admin(
        &self,
        realm: &str,
        username: &str,
        admin: bool,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE users SET realm_admin = $1 WHERE realm_id = $2 AND username = $3")
                .bind(i64::from(admin))
                .bind(realm)
                .bind(username)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "user {username:?} in {realm:?}"
            )));
        }
        Ok(())
    }

    /// The usernames of a realm's administrators, by name.
    pub async fn realm_admins(&self, realm: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT username FROM users WHERE realm_id = $1 AND realm_admin <> 0 ORDER BY username",
        )
        .bind(realm)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    // ----- users -----

    /// Adds a user; `Conflict` if the username is taken in that realm.
    pub async fn add_user(&self, user: &User) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (id, realm_id, username, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.realm_id)
        .bind(&user.username)
        .bind(user.password_hash.as_deref())
        .bind(user.created_at)
        .execute(&self.pool)
        .await;
        conflict(result, || {
            format!("user {:?} in realm {:?}", user.username, user.realm_id)
        })?;
        Ok(())
    }

    /// A user by realm and username.
    pub async fn user_by_name(
        &self,
        realm_id: &str,
        username: &str,
    ) -> Result<Option<User>, StoreError> {
        self.user_where("username", realm_id, username).await
    }

    /// A user by realm and id (a token's `sub`).
    pub async fn user(&self, realm_id: &str, id: &str) -> Result<Option<User>, StoreError> {
        self.user_where("id", realm_id, id).await
    }

    /// One user of a realm by a unique column (`id` or `username`, never caller input).
    async fn user_where(
        &self,
        column: &'static str,
        realm_id: &str,
        value: &str,
    ) -> Result<Option<User>, StoreError> {
        sqlx::query(&format!(
            "{USER_COLUMNS} WHERE realm_id = $1 AND {column} = $2"
        ))
        .bind(realm_id)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| User::from_row(&row))
        .transpose()
    }

    /// The users of a realm, by username.
    pub async fn users(&self, realm_id: &str) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&format!(
            "{USER_COLUMNS} WHERE realm_id = $1 ORDER BY username"
        ))
        .bind(realm_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(User::from_row).collect()
    }

    // ----- apps -----

    /// Registers an app.
    pub async fn add_app(&self, app: &NewApp) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO apps (client_id, realm_id, name, confidential, secret_digest, grants, \
             redirect_uris, resources, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&app.client_id)
        .bind(&app.realm_id)
        .bind(&app.name)
        .bind(i64::from(app.secret_digest.is_some()))
        .bind(app.secret_digest.as_deref())
        .bind(app.grants.join(" "))
        .bind(app.redirect_uris.join("\n"))
        .bind(app.resources.join("\n"))
        .bind(app.created_at)
        .execute(&self.pool)
        .await;
        conflict(result, || format!("client {:?}", app.client_id))?;
        self.bump().await
    }

    /// An app by client id (any realm: callers compare the realm).
    pub async fn app(&self, client_id: &str) -> Result<Option<App>, StoreError> {
        sqlx::query(&format!("{APP_COLUMNS} WHERE client_id = $1"))
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| App::from_row(&row))
            .transpose()
    }

    /// Every app of every realm (for the in-memory cache of a node).
    pub async fn all_apps(&self) -> Result<Vec<App>, StoreError> {
        let rows = sqlx::query(&format!("{APP_COLUMNS} ORDER BY client_id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(App::from_row).collect()
    }

    /// The apps of a realm.
    pub async fn apps(&self, realm_id: &str) -> Result<Vec<App>, StoreError> {
        let rows = sqlx::query(&format!("{APP_COLUMNS} WHERE realm_id = $1 ORDER BY name"))
            .bind(realm_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(App::from_row).collect()
    }

    // ----- signing keys -----

    /// Stores a new key (state `pending` or `active`). `Conflict` when the realm already has a
    /// key in that state (another node got there first).
    pub async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO signing_keys (kid, realm_id, alg, state, backend, key_reference, \
             public_jwk, created_at, activated_at, activate_after, not_after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&key.kid)
        .bind(&key.realm_id)
        .bind(&key.alg)
        .bind(key.state.as_str())
        .bind(&key.backend)
        .bind(&key.key_reference)
        .bind(&key.public_jwk)
        .bind(key.created_at)
        .bind(key.activated_at)
        .bind(key.activate_after)
        .bind(key.not_after)
        .execute(&self.pool)
        .await;
        conflict(result, || {
            format!("a {} key in realm {:?}", key.state.as_str(), key.realm_id)
        })?;
        self.bump().await
    }

    /// Every key of every realm (retired and revoked ones too), oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(&format!("{KEY_COLUMNS} ORDER BY created_at, kid"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(KeyRecord::from_row).collect()
    }

    /// The keys of one realm, oldest first.
    pub async fn realm_keys(&self, realm_id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{KEY_COLUMNS} WHERE realm_id = $1 ORDER BY created_at, kid"
        ))
        .bind(realm_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(KeyRecord::from_row).collect()
    }

    /// One key.
    pub async fn key(&self, kid: &str) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query(&format!("{KEY_COLUMNS} WHERE kid = $1"))
            .bind(kid)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| KeyRecord::from_row(&row))
            .transpose()
    }

    /// Makes the pending key `kid` active and the realm's current active key retiring, in one
    /// transaction. Returns false when `kid` is no longer pending (another node did it).
    pub async fn activate_key(
        &self,
        realm_id: &str,
        kid: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET state = 'retiring', retiring_at = $1 \
             WHERE realm_id = $2 AND state = 'active'",
        )
        .bind(now)
        .bind(realm_id)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE signing_keys SET state = 'active', activated_at = $1 \
             WHERE kid = $2 AND realm_id = $3 AND state = 'pending'",
        )
        .bind(now)
        .bind(kid)
        .bind(realm_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !done {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE store_revision SET revision = revision + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Moves a pending key's activation time earlier (an operator's `key rotate`).
    pub async fn set_activate_after(&self, kid: &str, when: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET activate_after = $1 WHERE kid = $2 AND state = 'pending'",
        )
        .bind(when)
        .bind(kid)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if done {
            self.bump().await?;
        }
        Ok(done)
    }

    /// Unpublishes a retiring key. Returns false when it was not retiring.
    pub async fn retire_key(&self, kid: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET state = 'retired', retired_at = $1 \
             WHERE kid = $2 AND state = 'retiring'",
        )
        .bind(now)
        .bind(kid)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if done {
            self.bump().await?;
        }
        Ok(done)
    }

    /// Revokes a key in any state. Returns the key as it was before, or `NotFound`; a key
    /// that was already revoked is returned unchanged (revoking twice is not an error).
    pub async fn revoke_key(
        &self,
        kid: &str,
        reason: &str,
        now: i64,
    ) -> Result<KeyRecord, StoreError> {
        let before = self
            .key(kid)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("key {kid:?}")))?;
        let changed = sqlx::query(
            "UPDATE signing_keys SET state = 'revoked', revoked_at = $1, revoked_reason = $2 \
             WHERE kid = $3 AND state <> 'revoked'",
        )
        .bind(now)
        .bind(reason)
        .bind(kid)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 1 {
            self.bump().await?;
        }
        Ok(before)
    }

    // ----- grants -----

    /// Starts a token family (one per authorization code or first refresh token).
    pub async fn create_family(
        &self,
        id: &str,
        realm_id: &str,
        client_id: &str,
        user_id: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO token_families (id, realm_id, client_id, user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(realm_id)
        .bind(client_id)
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes a family: its refresh tokens stop working and the access tokens issued from it
    /// are marked revoked in the ledger. Returns how many access tokens were marked.
    pub async fn revoke_family(
        &self,
        family_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(family_id)
        .execute(&mut *tx)
        .await?;
        let tokens = sqlx::query(
            "UPDATE issued_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(tokens)
    }

    /// Whether a family has been revoked.
    pub async fn family_revoked(&self, family_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT revoked_at FROM token_families WHERE id = $1")
            .bind(family_id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(true),
            Some(row) => Ok(row.try_get::<Option<i64>, _>(0)?.is_some()),
        }
    }

    /// Stores an authorization code (by digest).
    pub async fn insert_code(&self, code: &NewCode) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO auth_codes (code_digest, family_id, realm_id, client_id, user_id, \
             redirect_uri, scope, resource, nonce, code_challenge, auth_time, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&code.code_digest)
        .bind(&code.family_id)
        .bind(&code.realm_id)
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(&code.redirect_uri)
        .bind(&code.scope)
        .bind(code.resource.as_deref())
        .bind(code.nonce.as_deref())
        .bind(&code.code_challenge)
        .bind(code.auth_time)
        .bind(code.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Redeems a code: marks it used if it is fresh. One conditional update, so two
    /// concurrent redemptions cannot both succeed.
    pub async fn redeem_code(&self, digest: &str, now: i64) -> Result<CodeOutcome, StoreError> {
        let won = sqlx::query(
            "UPDATE auth_codes SET used_at = $1 \
             WHERE code_digest = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(digest)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let Some(code) = self.code(digest).await? else {
            return Ok(CodeOutcome::Unknown);
        };
        Ok(if won {
            CodeOutcome::Fresh(code)
        } else if code.used_at.is_some() {
            CodeOutcome::Replayed(code)
        } else {
            CodeOutcome::Expired(code)
        })
    }

    /// Stores a refresh token (by digest).
    pub async fn insert_refresh(&self, token: &NewRefresh) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_digest, family_id, realm_id, client_id, user_id, \
             scope, resource, auth_time, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&token.token_digest)
        .bind(&token.family_id)
        .bind(&token.realm_id)
        .bind(&token.client_id)
        .bind(token.user_id.as_deref())
        .bind(&token.scope)
        .bind(token.resource.as_deref())
        .bind(token.auth_time)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends a refresh token: marks it spent if it is live. A token that was already spent
    /// comes back as `Replayed` so the caller can revoke its family.
    pub async fn spend_refresh(
        &self,
        digest: &str,
        now: i64,
    ) -> Result<RefreshOutcome, StoreError> {
        let won = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = $1 \
             WHERE token_digest = $2 AND spent_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(digest)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let Some(record) = self.refresh(digest).await? else {
            return Ok(RefreshOutcome::Unknown);
        };
        if self.family_revoked(record.family_id()).await? {
            return Ok(RefreshOutcome::FamilyRevoked(record));
        }
        Ok(if won {
            RefreshOutcome::Fresh(record)
        } else if record.spent_at.is_some() {
            RefreshOutcome::Replayed(record)
        } else {
            RefreshOutcome::Expired(record)
        })
    }

    /// A refresh token by digest, without changing it (introspection, revocation).
    pub async fn refresh(&self, digest: &str) -> Result<Option<RefreshRecord>, StoreError> {
        sqlx::query(
            "SELECT token_digest, family_id, realm_id, client_id, user_id, scope, resource, \
             auth_time, created_at, expires_at, spent_at FROM refresh_tokens \
             WHERE token_digest = $1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| RefreshRecord::from_row(&row))
        .transpose()
    }

    /// Looks at a code without redeeming it (to check realm and client first, so that a
    /// code presented at the wrong realm does not burn the rightful client's code).
    pub async fn code(&self, digest: &str) -> Result<Option<StoredCode>, StoreError> {
        sqlx::query(
            "SELECT code_digest, family_id, realm_id, client_id, user_id, redirect_uri, scope, \
             resource, nonce, code_challenge, auth_time, expires_at, used_at \
             FROM auth_codes WHERE code_digest = $1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| StoredCode::from_row(&row))
        .transpose()
    }

    // ----- audit outbox -----

    /// Queues an audit event for the process that holds the audit log.
    pub async fn queue_audit_event(
        &self,
        id: &str,
        event: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_outbox (id, created_at, event) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(now)
            .bind(event)
            .execute(&self.pool)
            .await?;
        self.bump().await
    }

    /// Queued audit events, oldest first (at most `limit`).
    pub async fn queued_audit_events(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, event FROM audit_outbox ORDER BY created_at, id LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Claims a queued event for `node`, so that of several nodes draining one store exactly
    /// one appends it. A claim older than `stale_before` (a node that died mid-drain) can be
    /// taken over. Returns whether this node now holds the claim.
    pub async fn claim_audit_event(
        &self,
        id: &str,
        node: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE audit_outbox SET claimed_by = $1, claimed_at = $2 \
             WHERE id = $3 AND (claimed_by IS NULL OR claimed_at < $4)",
        )
        .bind(node)
        .bind(now)
        .bind(id)
        .bind(stale_before)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Removes queued events once they are in the audit log.
    pub async fn delete_audit_event(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM audit_outbox WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----- the issuance ledger -----

    /// Records an issued access token.
    pub async fn record_issued(&self, token: &IssuedToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO issued_tokens (jti, realm_id, kid, subject, client_id, audience, scope, \
             issued_at, expires_at, family_id, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&token.jti)
        .bind(&token.realm_id)
        .bind(&token.kid)
        .bind(&token.subject)
        .bind(&token.client_id)
        .bind(&token.audience)
        .bind(&token.scope)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .bind(token.family_id.as_deref())
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records several issued access tokens in one statement and one transaction: the
    /// service batches concurrent issuances so that the database commits once per batch.
    pub async fn record_issued_many(&self, tokens: &[IssuedToken]) -> Result<(), StoreError> {
        // 11 parameters per row; 64 rows stay far below every backend's parameter limit.
        for chunk in tokens.chunks(64) {
            let mut sql = String::from(
                "INSERT INTO issued_tokens (jti, realm_id, kid, subject, client_id, audience, \
                 scope, issued_at, expires_at, family_id, revoked_at) VALUES ",
            );
            for i in 0..chunk.len() {
                let base = i * 11;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for column in 1..=11 {
                    if column > 1 {
                        sql.push_str(", ");
                    }
                    sql.push('$');
                    sql.push_str(&(base + column).to_string());
                }
                sql.push(')');
            }
            let mut query = sqlx::query(&sql);
            for token in chunk {
                query = query
                    .bind(&token.jti)
                    .bind(&token.realm_id)
                    .bind(&token.kid)
                    .bind(&token.subject)
                    .bind(&token.client_id)
                    .bind(&token.audience)
                    .bind(&token.scope)
                    .bind(token.issued_at)
                    .bind(token.expires_at)
                    .bind(token.family_id.as_deref())
                    .bind(token.revoked_at);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// A ledger entry by `jti`.
    pub async fn issued(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        sqlx::query(
            "SELECT jti, realm_id, kid, subject, client_id, audience, scope, issued_at, \
             expires_at, family_id, revoked_at FROM issued_tokens WHERE jti = $1",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| IssuedToken::from_row(&row))
        .transpose()
    }

    /// Marks one access token revoked. Returns false if it was unknown or already revoked.
    pub async fn revoke_issued(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE issued_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(jti)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// The latest expiry of any token a key signed (how long a retiring key must stay
    /// published), or `None` if it signed nothing.
    pub async fn last_expiry_signed_by(&self, kid: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(expires_at) FROM issued_tokens WHERE kid = $1")
            .bind(kid)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }
}

const USER_COLUMNS: &str = "SELECT id, realm_id, username, password_hash, created_at FROM users";

const APP_COLUMNS: &str = "SELECT client_id, realm_id, name, confidential, secret_digest, grants, \
     redirect_uris, resources, created_at FROM apps";

const KEY_COLUMNS: &str = "SELECT kid, realm_id, alg, state, backend, key_reference, public_jwk, \
     created_at, activated_at, retiring_at, retired_at, revoked_at, revoked_reason, activate_after, \
     not_after FROM signing_keys";

/// Maps a unique-constraint violation to `Conflict`.
fn conflict<T>(
    result: Result<T, sqlx::Error>,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => Ok(value),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Conflict(what()))
        }
        Err(e) => Err(e.into()),
    }
}

/// A connection error without the URL's password.
fn redact_url_error(url: &str, error: &sqlx::Error) -> String {
    let mut message = error.to_string();
    if let Some(password) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty())
    {
        message = message.replace(password, "***");
    }
    message
}

fn text_list(value: &str) -> Vec<String> {
    value
        .split(['\n', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_enum<T: FromStr>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} = {text:?}")))
}

/// Test support: a private PostgreSQL schema per test, so tests can run in parallel against
/// the one database `KEYSCOPE_TEST_DATABASE_URL` names.
#[doc(hidden)]
pub mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The environment variable naming the test PostgreSQL database.
    pub const DATABASE_URL_ENV: &str = "KEYSCOPE_TEST_DATABASE_URL";

    /// Creates a fresh schema in the test database and returns a URL whose connections use
    /// it, or `None` when `KEYSCOPE_TEST_DATABASE_URL` is not set.
    pub async fn postgres_url() -> Option<String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!(
            "ks_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&base).await.ok()?;
        sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
            .execute(&pool)
            .await
            .ok()?;
        pool.close().await;
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(format!(
            "{base}{separator}options=-c%20search_path%3D{schema}"
        ))
    }
}
