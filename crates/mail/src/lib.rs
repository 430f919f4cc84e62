//! Keyscope's mail service: a JMAP server (RFC 8620 core, RFC 8621 mail and submission) whose
//! only door is an access token Keyscope itself issued.
//!
//! - [`http::router`] serves the Session resource, the API, blob upload/download and the
//!   EventSource push channel. Every request carries `Authorization: Bearer`; the token is
//!   checked by [`keyscope_identity::Identity::check_access_token`] (the realm's keys bound
//!   to its issuer and tenant, then the issuance ledger and revocation), must name this
//!   service as its audience, and opens exactly one account: the one of the token's own user
//!   in the token's own realm. Every decision is a `TokenValidated` audit event.
//! - [`methods`] implements the JMAP methods over the store; every read is recorded as
//!   `MailItemsAccessed` (`Bind` or `Sync`) and every submission as `Send`, durably, before
//!   the response leaves.
//! - [`ingest`] turns raw RFC 5322 messages into stored emails (used by `Email/import`,
//!   `Email/set`, delivery and `keyscope mail import`).

pub mod account;
pub mod http;
pub mod ingest;
pub mod methods;
pub mod time;

use std::collections::HashMap;
use std::sync::Arc;

use keyscope_identity::Identity;
use keyscope_jmap::CoreCapability;
use keyscope_store::{Store, StoreError};
use thiserror::Error;

/// Why a mail operation failed.
#[derive(Debug, Error)]
pub enum MailError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message cannot be parsed.
    #[error("not a usable message: {0}")]
    Mime(#[from] keyscope_mime::MimeError),
    /// Something named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The audit record could not be written (the operation is refused).
    #[error("audit: {0}")]
    Audit(String),
}

/// The mail service's settings.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The deployment's public URL (no trailing slash), as the identity service uses it.
    pub public_url: String,
    /// The domain of addresses made from usernames without `@`:
    /// `{username}@{realm}.{mail_domain}`.
    pub mail_domain: String,
    /// Request limits announced in the Session resource and enforced.
    pub core: CoreCapability,
}

/// The default `mail_domain` (RFC 2606 reserves `.test`).
pub const DEFAULT_MAIL_DOMAIN: &str = "keyscope.test";

pub use keyscope_identity::MAIL_CLIENT_ID;

/// Largest upload accepted (and announced as `maxSizeUpload`): 25 MB.
pub const MAX_UPLOAD_BYTES: u64 = 25_000_000;

impl MailConfig {
    /// Settings for a deployment at `public_url` with the default limits.
    pub fn new(public_url: &str) -> MailConfig {
        let core = CoreCapability {
            max_size_upload: MAX_UPLOAD_BYTES,
            max_size_request: 10_000_000,
            max_concurrent_upload: 4,
            max_concurrent_requests: 8,
            max_calls_in_request: 32,
            max_objects_in_get: 500,
            max_objects_in_set: 500,
            collation_algorithms: vec!["i;ascii-casemap".to_owned()],
        };
        MailConfig {
            public_url: public_url.trim_end_matches('/').to_owned(),
            mail_domain: DEFAULT_MAIL_DOMAIN.to_owned(),
            core,
        }
    }

    /// The audience every token must name to open a mailbox: `{public_url}/jmap` (the same
    /// as [`keyscope_identity::IdentityConfig::mail_resource`]).
    pub fn resource(&self) -> String {
        format!("{}/jmap", self.public_url)
    }
}

/// The mail service.
pub struct MailService {
    identity: Arc<Identity>,
    config: MailConfig,
    changes: tokio::sync::broadcast::Sender<String>,
    /// Accounts by (realm, user id): an account never moves, so a verified token's account is
    /// looked up once. Bounded: cleared when full.
    accounts: std::sync::Mutex<HashMap<(String, String), keyscope_store::MailAccount>>,
    /// Folder paths by account, for audit records: forgotten when this process changes the
    /// account's mailboxes, and after [`FOLDER_CACHE_SECONDS`] (another node may rename one).
    folders: std::sync::Mutex<HashMap<String, (std::time::Instant, Folders)>>,
}

type Folders = std::collections::BTreeMap<String, String>;

/// How long cached folder paths are trusted.
pub const FOLDER_CACHE_SECONDS: u64 = 5;

/// Most accounts kept in the lookup cache.
const ACCOUNT_CACHE_SIZE: usize = 100_000;

impl std::fmt::Debug for MailService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MailService {
    /// The service over an identity service (whose store, keys and audit sink it shares).
    pub fn new(identity: Arc<Identity>, config: MailConfig) -> Arc<MailService> {
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        Arc::new(MailService {
            identity,
            config,
            changes,
            accounts: std::sync::Mutex::new(HashMap::new()),
            folders: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The identity service.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.identity.store()
    }

    /// The settings.
    pub fn config(&self) -> &MailConfig {
        &self.config
    }

    /// The account of a verified token's user (`realm`, `sub`), created on first use; `None`
    /// when the user does not exist.
    pub async fn account_for_subject(
        &self,
        realm: &str,
        subject: &str,
    ) -> Result<Option<keyscope_store::MailAccount>, MailError> {
        let key = (realm.to_owned(), subject.to_owned());
        if let Some(account) = self.accounts.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(Some(account));
        }
        let Some(user) = self.store().user(realm, subject).await? else {
            return Ok(None);
        };
        let account = self.ensure_account(&user).await?;
        if let Ok(mut cache) = self.accounts.lock() {
            if cache.len() >= ACCOUNT_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(key, account.clone());
        }
        Ok(Some(account))
    }

    pub(crate) fn cached_folders(&self, account_id: &str) -> Option<Folders> {
        let cache = self.folders.lock().ok()?;
        let (at, paths) = cache.get(account_id)?;
        (at.elapsed().as_secs() < FOLDER_CACHE_SECONDS).then(|| paths.clone())
    }

    pub(crate) fn cache_folders(&self, account_id: &str, paths: &Folders) {
        if let Ok(mut cache) = self.folders.lock() {
            if cache.len() >= ACCOUNT_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(
                account_id.to_owned(),
                (std::time::Instant::now(), paths.clone()),
            );
        }
    }

    pub(crate) fn forget_folders(&self, account_id: &str) {
        if let Ok(mut cache) = self.folders.lock() {
            cache.remove(account_id);
        }
    }

    /// Tells push listeners that an account changed.
    pub fn notify(&self, account_id: &str) {
        // No listener is not an error.
        let _ = self.changes.send(account_id.to_owned());
    }

    /// A receiver of changed account ids (for push).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    keyscope_identity::unix_now()
}
