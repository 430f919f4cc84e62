//! The identity service from the command line: `keyscope up` runs it; `tenant`, `user`,
//! `app`, `key list|rotate|revoke` and `token issue` act on the same store as the server (a
//! running server sees the change within a second) and each writes an `AdminAction` audit
//! event.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use keyscope_audit::AuditLog;
use keyscope_custody::{MasterKey, SealedKeyStore};
use keyscope_identity::{AppSpec, AuditSink, Event, Identity, IdentityConfig, RequestContext};
use keyscope_store::{KeyRecord, Realm, Store};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::config::{Location, LogFormat, UpSettings};
use crate::input::{print_json, read_bounded};

/// Where the service keeps its state. Each also comes from its `KEYSCOPE_*` variable or the
/// configuration file (see `crate::config`).
#[derive(Args, Clone, Default)]
pub struct Place {
    /// The data directory: SQLite database, master key, audit log, keyscope.toml
    /// [env: KEYSCOPE_DATA_DIR] [default: keyscope-data]
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use PostgreSQL instead of SQLite (postgres://…). The master key and the audit log
    /// stay in the data directory [env: KEYSCOPE_DATABASE_URL]
    #[arg(long = "database-url", value_name = "URL")]
    pub database_url: Option<String>,
    /// The externally visible base URL (issuers are `{URL}/consumers` and `{URL}/t/{tenant}`).
    /// Default: what the server announced, else http://{listen address}
    /// [env: KEYSCOPE_PUBLIC_URL]
    #[arg(long = "public-url", value_name = "URL")]
    pub public_url: Option<String>,
    /// The configuration file [env: KEYSCOPE_CONFIG] [default: DATA_DIR/keyscope.toml when it
    /// exists]
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The database URL may hold a password: never printed.
impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "********"),
            )
            .field("public_url", &self.public_url)
            .field("config", &self.config)
            .finish()
    }
}

/// `--tenant NAME` or `--consumer`.
#[derive(Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct RealmArg {
    /// An enterprise tenant.
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
    /// The consumer realm (personal accounts).
    #[arg(long)]
    pub consumer: bool,
}

/// `--tenant NAME`, `--consumer`, or neither (all realms).
#[derive(Args, Clone, Debug)]
#[group(required = false, multiple = false)]
pub struct RealmFilter {
    /// Only this tenant.
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
    /// Only the consumer realm.
    #[arg(long)]
    pub consumer: bool,
}

/// `keyscope up` (and `config show`, which resolves the same options). No defaults here:
/// `crate::config` applies flag, variable, file and default in that order.
#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub place: Place,
    /// Address to listen on [env: KEYSCOPE_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Key rotation period in hours [env: KEYSCOPE_ROTATION_HOURS] [default: 24]
    #[arg(long, value_name = "HOURS")]
    pub rotation_hours: Option<u32>,
    /// JWKS Cache-Control max-age in seconds (new keys are published for twice this before
    /// they sign) [env: KEYSCOPE_JWKS_MAX_AGE] [default: 300]
    #[arg(long, value_name = "SECONDS")]
    pub jwks_max_age: Option<u32>,
    /// Access-token lifetime in seconds [env: KEYSCOPE_ACCESS_TOKEN_TTL] [default: 600]
    #[arg(long, value_name = "SECONDS")]
    pub access_token_ttl: Option<u32>,
    /// Signing algorithm of new keys: ES256 or EdDSA [env: KEYSCOPE_SIGNING_ALG]
    /// [default: ES256]
    #[arg(long, value_name = "ALG")]
    pub signing_alg: Option<String>,
    /// Detection rule directory for live detection (replaces the built-in pack). A rule that
    /// does not load stops the server from starting [env: KEYSCOPE_RULES]
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Also append every alert to this JSON lines file [env: KEYSCOPE_ALERT_FILE]
    #[arg(long, value_name = "PATH")]
    pub alert_file: Option<PathBuf>,
    /// Also POST every alert (JSON) to this http(s) URL, with retries
    /// [env: KEYSCOPE_ALERT_WEBHOOK]
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// Alerts of one rule about one entity within this many seconds are raised once
    /// [env: KEYSCOPE_ALERT_DEDUP_SECONDS] [default: 600]
    #[arg(long, value_name = "SECONDS")]
    pub alert_dedup_seconds: Option<u32>,
    /// Log format on stderr: human or json [env: KEYSCOPE_LOG_FORMAT] [default: human]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log level: error, warn, info, debug or trace [env: KEYSCOPE_LOG_LEVEL]
    /// [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Bearer token `GET /metrics` requires; without one, only loopback clients may read it
    /// [env: KEYSCOPE_METRICS_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub metrics_token: Option<String>,
    /// Keep a copy of the latest signed audit checkpoint outside this machine: a file, or an
    /// http(s):// collector that receives it by POST, every --checkpoint-copy-seconds and at
    /// shutdown [env: KEYSCOPE_CHECKPOINT_COPY]
    #[arg(long, value_name = "FILE|URL")]
    pub checkpoint_copy: Option<String>,
    /// How often the checkpoint copy is refreshed (when the log grew)
    /// [env: KEYSCOPE_CHECKPOINT_COPY_SECONDS] [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub checkpoint_copy_seconds: Option<u32>,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish before the server
    /// stops anyway (the audit log is flushed either way)
    /// [env: KEYSCOPE_SHUTDOWN_GRACE_SECONDS] [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_grace_seconds: Option<u32>,
}

/// Secrets (metrics token, webhook and checkpoint-copy URLs) are never printed.
impl std::fmt::Debug for UpArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "********");
        f.debug_struct("UpArgs")
            .field("place", &self.place)
            .field("listen", &self.listen)
            .field("rules", &self.rules)
            .field("alert_file", &self.alert_file)
            .field("alert_webhook", &hidden(&self.alert_webhook))
            .field("metrics_token", &hidden(&self.metrics_token))
            .field("checkpoint_copy", &hidden(&self.checkpoint_copy))
            .finish_non_exhaustive()
    }
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create an enterprise tenant (its own realm, issuer and keys).
    Create {
        /// 1–63 characters a-z, 0-9 and '-'.
        name: String,
        #[command(flatten)]
        place: Place,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List realms.
    List {
        #[command(flatten)]
        place: Place,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set where the tenant's incident notices are POSTed (http:// or https://), or clear
    /// it with --clear (notices then go to the tenant administrators' mailboxes).
    Webhook {
        /// The tenant.
        name: String,
        /// The URL.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        url: Option<String>,
        /// Remove the webhook.
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        place: Place,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user. Without --password-stdin a random password is generated and printed once.
    Add {
        #[command(flatten)]
        realm: RealmArg,
        /// The sign-in name.
        username: String,
        /// Read the password from stdin (first line).
        #[arg(long)]
        password_stdin: bool,
        /// Make the user an administrator of the realm (receives incident notices when the
        /// tenant has no webhook).
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        place: Place,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (e.g. replace the operator's first-start password). Without
    /// --password-stdin a random one is generated and printed once.
    Password {
        #[command(flatten)]
        realm: RealmArg,
        /// The sign-in name.
        username: String,
        /// Read the new password from stdin (first line).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        place: Place,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Register an app (OAuth client). Prints client_id and, for confidential apps, the
    /// secret, once.
    Add {
        #[command(flatten)]
        realm: RealmArg,
        /// Display name.
        #[arg(long)]
        name: String,
        /// The app keeps a secret (a server, not a browser or phone app).
        #[arg(long)]
        confidential: bool,
        /// Allowed grant (repeatable): authorization_code, refresh_token, client_credentials.
        /// Default: client_credentials for confidential apps, authorization_code and
        /// refresh_token for public ones.
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        /// Redirect URI (repeatable; exact match).
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// Allowed resource (repeatable); the first is the default audience.
        #[arg(long = "resource", value_name = "URI")]
        resources: Vec<String>,
        #[command(flatten)]
        place: Place,
        /// Print JSON (client_id, client_secret).
        #[arg(long)]
        json: bool,
    },
}

/// The key commands that act on the service's store.
#[derive(Subcommand, Debug)]
pub enum ServiceKeyCommand {
    /// List signing keys and their lifecycle states.
    List {
        #[command(flatten)]
        realm: RealmFilter,
        #[command(flatten)]
        place: Place,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a rotation: a new key is published now and signs after two JWKS cache
    /// lifetimes (or at once with --now).
    Rotate {
        #[command(flatten)]
        realm: RealmArg,
        /// Activate the new key at once. Validators that cached the JWKS refuse its tokens
        /// (unknown_key) until they refetch.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        place: Place,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once: unpublished, refused everywhere within a second.
    Revoke {
        /// The key id.
        kid: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        place: Place,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `keyscope token issue`.
#[derive(Args, Debug)]
pub struct IssueArgs {
    #[command(flatten)]
    realm: RealmArg,
    /// The user the token is for.
    #[arg(long)]
    user: String,
    /// The app (client_id) the token is for. Default: the built-in mail client
    /// (keyscope-mail), whose tokens open the mail service.
    #[arg(long)]
    client: Option<String>,
    /// The scope (default "openid").
    #[arg(long)]
    scope: Option<String>,
    /// The audience (default: the app's first resource, else the public URL; without
    /// --client, the mail service {public_url}/jmap).
    #[arg(long)]
    audience: Option<String>,
    #[command(flatten)]
    place: Place,
    /// Print JSON (access_token, expires_in, kid, jti).
    #[arg(long)]
    json: bool,
}

const PUBLIC_URL_SETTING: &str = "public_url";
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn check_public_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim_end_matches('/');
    // Issuers, redirect URIs and log lines are built from it: only characters that need no
    // escaping anywhere (RFC 3986 unreserved, ':' '/' and IPv6 brackets).
    let plain = trimmed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/[]".contains(&b));
    let parsed = reqwest::Url::parse(trimmed).ok();
    let ok = plain
        && trimmed.len() <= 512
        && parsed.as_ref().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
                && u.fragment().is_none()
        });
    if !ok {
        bail!(
            "must be an http(s) URL with a host and at most a path (letters, digits, - . _ ~ / :), \
             without credentials, query or fragment"
        );
    }
    Ok(trimmed.to_owned())
}

/// Opens the store, the key custody and the audit destination. `server` holds the audit log;
/// admin commands hand their events to a running server through the store when it does.
async fn open(
    place: &Location,
    server: bool,
    announce: Option<&str>,
    tune: impl FnOnce(&mut IdentityConfig),
) -> anyhow::Result<Arc<Identity>> {
    // Every command that can unseal a key first turns off core dumps and ptrace by others.
    keyscope_custody::harden_process().context("hardening the process")?;
    let dir = &place.data_dir.value;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    restrict_data_dir(dir)?;
    let store = match &place.database_url {
        Some(url) => Store::connect(&url.value).await?,
        None => Store::open_sqlite(dir).await?,
    };
    // A new master key is made only for a store without keys: for one whose keys were
    // sealed under a master key that is not here, making one would leave a useless
    // master.key behind and hide the real problem.
    let master_here = std::env::var_os("KEYSCOPE_MASTER_KEY").is_some_and(|v| !v.is_empty())
        || std::fs::symlink_metadata(dir.join("master.key")).is_ok();
    if !master_here && !store.keys().await?.is_empty() {
        store.close().await;
        bail!(
            "no master key: the store's signing keys are sealed under one, but neither \
             KEYSCOPE_MASTER_KEY nor {} is here; set the variable or restore the file",
            dir.join("master.key").display()
        );
    }
    let (master, _source) = MasterKey::load_or_create(dir).context("master key")?;
    let keystore = Arc::new(SealedKeyStore::new(master));
    let audit = open_audit(dir, &store, server)?;
    // One deployment has one public URL, whatever each node listens on: an explicit
    // --public-url is announced in the store; otherwise what was announced is used, and only a
    // store that has none takes this server's listen address.
    let stored = store.setting(PUBLIC_URL_SETTING).await?;
    let public_url = match (&place.public_url, stored, announce) {
        (Some(url), _, _) => url.value.clone(),
        (None, Some(stored), _) => stored,
        (None, None, Some(default)) => default.to_owned(),
        (None, None, None) => DEFAULT_PUBLIC_URL.to_owned(),
    };
    if server {
        store.set_setting(PUBLIC_URL_SETTING, &public_url).await?;
    }
    let mut config = IdentityConfig::new(&public_url);
    tune(&mut config);
    Ok(Identity::start(config, store, keystore, audit).await?)
}

/// The data directory holds the master key, sealed keys, password hashes and the audit log;
/// the files inside are created with the default modes, so the directory itself must keep
/// other users out. A directory made beforehand with looser permissions is tightened to
/// 0700, and the operator is told.
fn restrict_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("the data directory {} is not a directory", dir.display());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "the data directory {} is open to other users (mode {mode:o}) and cannot \
                     be restricted to 0700",
                    dir.display()
                )
            },
        )?;
        eprintln!(
            "keyscope: warning: the data directory {} was open to other users (mode {mode:o}); \
             it is now 0700",
            dir.display()
        );
    }
    Ok(())
}

fn open_audit(dir: &Path, store: &Store, server: bool) -> anyhow::Result<AuditSink> {
    let audit_dir = keyscope_audit::audit_dir(dir);
    if !server && keyscope_audit::in_use(&audit_dir) {
        return Ok(AuditSink::Outbox(store.clone()));
    }
    match AuditLog::open(&audit_dir) {
        Ok(log) => Ok(AuditSink::Log(Arc::new(log))),
        Err(_) if !server && keyscope_audit::in_use(&audit_dir) => {
            Ok(AuditSink::Outbox(store.clone()))
        }
        Err(e) if server && keyscope_audit::in_use(&audit_dir) => {
            bail!("another keyscope process is serving {}: {e}", dir.display())
        }
        Err(e) => Err(e).context("cannot open the audit log"),
    }
}

/// Closes the audit log (flushing the last batch) and the store.
async fn close(identity: &Identity) {
    if let AuditSink::Log(log) = identity.audit() {
        // Hand over anything queued while we ran, so nothing waits for the next server.
        let _ = identity.audit().drain_outbox(identity.store()).await;
        log.close();
    }
    identity.store().close().await;
}

pub(crate) fn realm_arg(realm: &RealmArg) -> Option<&str> {
    if realm.consumer {
        None
    } else {
        realm.tenant.as_deref()
    }
}

/// Runs an admin action and closes up afterwards, whatever happened.
pub(crate) fn admin<T>(
    place: &Place,
    action: impl AsyncFnOnce(&Identity) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let location = Location::resolve(place)?;
    runtime()?.block_on(async {
        let identity = open(&location, false, None, |_| {}).await?;
        let result = action(&identity).await;
        close(&identity).await;
        result
    })
}

/// Sets up `tracing` on stderr: human-readable (coloured on a terminal) or JSON lines.
fn init_logging(format: LogFormat, level: tracing::Level) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    let _ = match format {
        // Colour only on a terminal: log files and collectors get plain text.
        LogFormat::Human => builder
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The public URL a server announces when none is configured: its own address, with a
/// loopback address standing in for "every interface" (which no client can use).
fn default_public_url(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

pub fn run_up(args: UpArgs) -> anyhow::Result<ExitCode> {
    // Every option is resolved (and refused with its source named) before anything starts.
    let settings = UpSettings::resolve(&args)?;
    // Before any key is unsealed: no core dumps, no ptrace by other users.
    keyscope_custody::harden_process().context("hardening the process")?;
    init_logging(settings.log_format.value, settings.log_level.value);
    runtime()?.block_on(serve(settings))
}

async fn serve(settings: UpSettings) -> anyhow::Result<ExitCode> {
    let alg =
        keyscope_jose::Algorithm::from_name(&settings.signing_alg.value).context("signing_alg")?;
    // Rules before anything else: a server whose detections do not load does not start.
    let rules_dir = settings.rules.as_ref().map(|s| s.value.clone());
    let rules = crate::hunt::load_rules(rules_dir.as_deref())?;
    // So are alert outputs that cannot work: found now, not at the first alert.
    if let Some(path) = settings.alert_file.as_ref().map(|s| &s.value) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the alert file {}", path.display()))?;
    }
    let listen = settings.listen.value;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr().context("the listening address")?;
    let default_url = default_public_url(bound);
    let identity = open(&settings.location, true, Some(&default_url), |config| {
        config.rotation_period = i64::from(settings.rotation_hours.value) * 3600;
        config.jwks_max_age = i64::from(settings.jwks_max_age.value);
        config.access_token_ttl = i64::from(settings.access_token_ttl.value);
        config.id_token_ttl = i64::from(settings.access_token_ttl.value);
        config.signing_alg = alg;
    })
    .await?;
    let copier = match (identity.audit(), &settings.checkpoint_copy) {
        (AuditSink::Log(log), Some(target)) => Some(CheckpointCopier::start(
            Arc::clone(log),
            target.value.clone(),
            std::time::Duration::from_secs(u64::from(settings.checkpoint_copy_seconds.value)),
        )?),
        _ => None,
    };
    let result = run_server(&settings, &identity, listener, bound, rules).await;
    close(&identity).await;
    // After the log is closed: the copy covers the very last batch.
    if let Some(copier) = copier {
        copier.stop();
    }
    result?;
    tracing::info!("stopped; the audit log is closed");
    Ok(ExitCode::SUCCESS)
}

async fn run_server(
    settings: &UpSettings,
    identity: &Arc<Identity>,
    listener: tokio::net::TcpListener,
    bound: SocketAddr,
    rules: keyscope_detect::rules::RuleSet,
) -> anyhow::Result<()> {
    let public = identity.config().public_url.clone();
    let first_start = crate::bootstrap::first_start(identity).await?;
    if first_start.is_none()
        && let Some(client_id) = crate::bootstrap::retry_web_mail_client(identity).await?
    {
        tracing::info!(client_id = %client_id, "registered the web mail client");
    }
    let background = identity.spawn_background();
    let rule_count = rules.rules.len();
    let log = match identity.audit() {
        AuditSink::Log(log) => Some(Arc::clone(log)),
        AuditSink::Outbox(_) => None,
    };
    let mut live = None;
    if let Some(log) = &log {
        live = Some(crate::live::spawn(
            Arc::clone(log),
            rules,
            crate::live::Sinks {
                file: settings.alert_file.as_ref().map(|s| s.value.clone()),
                webhook: settings.alert_webhook.as_ref().map(|s| s.value.clone()),
                dedup: std::time::Duration::from_secs(u64::from(
                    settings.alert_dedup_seconds.value,
                )),
            },
            tokio::runtime::Handle::current(),
        )?);
    }
    let mail = keyscope_mail::MailService::new(
        Arc::clone(identity),
        keyscope_mail::MailConfig::new(&public),
    );
    let app = keyscope_identity::http::router(Arc::clone(identity))
        .merge(keyscope_mail::http::router(mail))
        .merge(crate::webmail::router(Arc::clone(identity)));
    let token = settings
        .metrics_token
        .as_ref()
        .map(|s| Zeroizing::new(s.value.clone()));
    let app = crate::metrics::install(app, Arc::clone(identity), log, token, live)?;

    print_banner(settings, identity, bound, rule_count, first_start.as_ref()).await;
    tracing::info!(address = %bound, public_url = %public, "listening");
    warn_if_public_url_elsewhere(&public, bound, settings);

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(());
    });
    let grace = std::time::Duration::from_secs(u64::from(settings.shutdown_grace_seconds.value));
    // Requests in flight finish (their audit records are durable before they answer); a
    // long-lived one (an EventSource stream) is cut after the grace period. Either way the
    // log is closed afterwards, flushing whatever was queued.
    let result = tokio::select! {
        result = served.into_future() => result.context("the server failed"),
        () = async {
            if stopping_rx.await.is_ok() {
                // A second SIGTERM/SIGINT cuts the grace period short.
                tokio::select! {
                    () = tokio::time::sleep(grace) => {}
                    () = shutdown_signal() => {}
                }
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "requests still open (grace period over, or a second signal); stopping");
            Ok(())
        }
    };
    background.abort();
    result
}

/// Publishes the latest signed audit checkpoint to the configured copy target whenever the
/// log has grown, every period, and once more when the server stops. Runs on its own thread
/// (publishing blocks). A failure is logged (without the target's URL) and retried next time.
struct CheckpointCopier {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl CheckpointCopier {
    fn start(
        log: Arc<AuditLog>,
        target: crate::checkpoint_copy::Target,
        period: std::time::Duration,
    ) -> anyhow::Result<CheckpointCopier> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("checkpoint-copy".into())
            .spawn(move || {
                let mut published = 0;
                loop {
                    let last = !matches!(
                        stopped.recv_timeout(period),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    );
                    if let Some(checkpoint) = log.latest_checkpoint()
                        && checkpoint.size != published
                    {
                        match crate::checkpoint_copy::publish(&target, &checkpoint) {
                            Ok(()) => published = checkpoint.size,
                            Err(e) => tracing::warn!(
                                // The copier's errors name the endpoint without path or query.
                                error = %format!("{e:#}"),
                                "the audit checkpoint copy failed; retrying at the next period"
                            ),
                        }
                    }
                    if last {
                        return;
                    }
                }
            })
            .context("starting the checkpoint copy thread")?;
        Ok(CheckpointCopier { stop, thread })
    }

    /// Publishes a last time and waits for it.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// A public URL naming a loopback address but another port than this server's is almost
/// always a stale one recorded by an earlier start (e.g. with `--listen 127.0.0.1:0`):
/// clients following it reach nothing. Say so; only `--public-url` changes it.
fn warn_if_public_url_elsewhere(public: &str, bound: SocketAddr, settings: &UpSettings) {
    if settings.location.public_url.is_some() {
        return;
    }
    let Ok(url) = reqwest::Url::parse(public) else {
        return;
    };
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback && bound.ip().is_loopback() && url.port_or_known_default() != Some(bound.port()) {
        tracing::warn!(
            public_url = %public,
            address = %bound,
            "the public URL recorded in the store is not this server's address: issuers and the \
             web mail client's redirect use it; start with --public-url to change it"
        );
        let _ = crate::input::write_stdout_quiet(format_args!(
            "warning: the public URL recorded in the store ({public}) is not where this server \
             listens ({bound}); pass --public-url http://{bound} to change it\n"
        ));
    }
}

/// What a newcomer needs: where to go, and on first start how to sign in.
async fn print_banner(
    settings: &UpSettings,
    identity: &Identity,
    bound: SocketAddr,
    rule_count: usize,
    first_start: Option<&crate::bootstrap::FirstStart>,
) {
    use std::fmt::Write as _;
    let mut out = String::new();
    let public = &identity.config().public_url;
    let data_dir = &settings.location.data_dir.value;
    let _ = writeln!(out, "keyscope is up on {bound}");
    let _ = writeln!(
        out,
        "  public URL:         {public} (issuers are built from it; --public-url changes it)"
    );
    let _ = writeln!(out, "  mail (web):         {public}/mail/");
    let _ = writeln!(out, "  mail (JMAP):        {public}/.well-known/jmap");
    let _ = writeln!(
        out,
        "  consumer issuer:    {}",
        identity.config().issuer(keyscope_store::CONSUMER_REALM)
    );
    let _ = writeln!(out, "  tenant issuers:     {public}/t/{{tenant}}");
    let _ = writeln!(out, "  health:             {public}/healthz");
    let _ = writeln!(out, "  metrics:            {public}/metrics");
    let _ = writeln!(out, "  data directory:     {}", data_dir.display());
    let _ = match &settings.location.file.path {
        Some(path) => writeln!(out, "  configuration:      {}", path.display()),
        None => writeln!(
            out,
            "  configuration:      flags and KEYSCOPE_* only (no {})",
            data_dir.join(crate::config::CONFIG_FILE_NAME).display()
        ),
    };
    let _ = writeln!(
        out,
        "  live detection:     {rule_count} rules{}",
        settings
            .rules
            .as_ref()
            .map(|d| format!(" from {}", d.value.display()))
            .unwrap_or_else(|| " (built-in pack)".to_owned())
    );
    if let Some(first) = first_start {
        first.render(&mut out);
    }
    // A closed stdout must not stop the server (println! would panic).
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    if let (Err(e), Some(first)) = (&written, first_start) {
        tracing::error!(
            error = %e,
            "the first-start banner could not be written to stdout, so the operator password \
             is lost (it is stored only hashed): set one with `keyscope user password \
             --consumer {}`",
            first.operator
        );
    }
    // The banner may hold the operator's password.
    zeroize::Zeroize::zeroize(&mut out);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

fn realm_json(realm: &Realm, identity: &Identity) -> Value {
    json!({
        "realm": realm.id,
        "kind": realm.kind.as_str(),
        "issuer": identity.config().issuer(&realm.id),
        "created_at": realm.created_at,
    })
}

pub fn run_tenant(command: TenantCommand) -> anyhow::Result<ExitCode> {
    match command {
        TenantCommand::Create { name, place, json } => admin(&place, async |identity| {
            let realm = identity
                .create_tenant(&name, &RequestContext::operator())
                .await?;
            let value = realm_json(&realm, identity);
            if json {
                print_json(&value);
            } else {
                crate::input::outln!(
                    "created tenant {} (issuer {})",
                    realm.id,
                    identity.config().issuer(&realm.id)
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        TenantCommand::Webhook {
            name,
            url,
            clear,
            place,
        } => {
            let url = if clear { None } else { url };
            if let Some(url) = &url {
                check_webhook_url(url)?;
            }
            admin(&place, async |identity| {
                let realm = identity.realm(Some(&name)).await?;
                identity
                    .store()
                    .set_notify_webhook(&realm.id, url.as_deref())
                    .await?;
                let event = Event::new("AdminAction")
                    .with("AdminOperation", Some("TenantWebhookSet"))
                    .with("OrganizationId", Some(&realm.id))
                    .with("Target", url.as_deref().or(Some("(cleared)")))
                    .with("UserId", Some("operator"))
                    .with("ResultStatus", Some("Success"))
                    .context(&RequestContext::operator());
                identity.audit().record(event.into_map()).await?;
                match &url {
                    Some(url) => {
                        crate::input::outln!("incident notices for {} go to {url}", realm.id)
                    }
                    None => crate::input::outln!(
                        "incident notices for {} go to its administrators' mailboxes",
                        realm.id
                    ),
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        TenantCommand::List { place, json } => admin(&place, async |identity| {
            let realms = identity.store().realms().await?;
            if json {
                let list: Vec<Value> = realms.iter().map(|r| realm_json(r, identity)).collect();
                print_json(&Value::Array(list));
            } else {
                for realm in &realms {
                    crate::input::outln!(
                        "{:<24} {:<9} {}",
                        realm.id,
                        realm.kind.as_str(),
                        identity.config().issuer(&realm.id)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// A webhook URL: http(s), a host, no credentials, bounded.
/// The error never repeats the URL: its query or user part may be a secret.
pub(crate) fn check_webhook_url(url: &str) -> anyhow::Result<()> {
    let usage = "use http(s)://host[:port]/path, without credentials (the URL is not shown)";
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .with_context(|| format!("the webhook URL must start with https:// or http://; {usage}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let parses = reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some());
    if url.len() > 2048
        || authority.is_empty()
        || authority.contains('@')
        || !url.bytes().all(|b| b.is_ascii_graphic())
        || !parses
    {
        bail!("invalid webhook URL: {usage}");
    }
    Ok(())
}

fn read_password_stdin() -> anyhow::Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(read_bounded(std::io::stdin().lock(), 4096)?);
    let text = std::str::from_utf8(&bytes).context("the password is not UTF-8")?;
    let line = text.lines().next().unwrap_or_default();
    Ok(Zeroizing::new(line.to_owned()))
}

fn set_password(
    realm: &RealmArg,
    username: &str,
    password_stdin: bool,
    place: &Place,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let password = if password_stdin {
        Some(read_password_stdin()?)
    } else {
        None
    };
    admin(place, async |identity| {
        let realm = identity.realm(realm_arg(realm)).await?;
        let generated = identity
            .set_password(&realm, username, password, &RequestContext::operator())
            .await?;
        if generated.is_some() {
            crate::input::secret_follows(
                "the new password, which is stored only hashed and is now lost: run \
                 `keyscope user password` again",
            );
        }
        if json {
            let mut value = json!({"realm": realm.id, "username": username});
            if let (Some(p), Some(map)) = (&generated, value.as_object_mut()) {
                map.insert("password".into(), Value::String(p.to_string()));
            }
            print_json(&value);
        } else if let Some(p) = &generated {
            crate::input::outln!(
                "password of {username} in {} set to: {}",
                realm.id,
                p.as_str()
            );
            crate::input::outln!("(shown only this once)");
        } else {
            crate::input::outln!("password of {username} in {} set", realm.id);
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_user(command: UserCommand) -> anyhow::Result<ExitCode> {
    let (realm, username, password_stdin, make_admin, place, json) = match command {
        UserCommand::Add {
            realm,
            username,
            password_stdin,
            admin,
            place,
            json,
        } => (realm, username, password_stdin, admin, place, json),
        UserCommand::Password {
            realm,
            username,
            password_stdin,
            place,
            json,
        } => return set_password(&realm, &username, password_stdin, &place, json),
    };
    let password = if password_stdin {
        Some(read_password_stdin()?)
    } else {
        None
    };
    admin(&place, async |identity| {
        let realm = identity.realm(realm_arg(&realm)).await?;
        let (user, generated) = identity
            .add_user(&realm, &username, password, &RequestContext::operator())
            .await?;
        if generated.is_some() {
            crate::input::secret_follows(
                "the generated password, which is stored only hashed and is now lost: set \
                 another with `keyscope user password`",
            );
        }
        if make_admin {
            identity
                .store()
                .set_realm_admin(&realm.id, &user.username, true)
                .await?;
        }
        // Every user gets a mailbox with the standard folders at once.
        let account = keyscope_mail::account::ensure_account(
            identity.store(),
            &user,
            keyscope_mail::DEFAULT_MAIL_DOMAIN,
        )
        .await?;
        if json {
            let mut value = json!({"realm": realm.id, "username": user.username, "sub": user.id,
                                   "email": account.email, "mail_account": account.id,
                                   "admin": make_admin});
            if let (Some(p), Some(map)) = (&generated, value.as_object_mut()) {
                map.insert("password".into(), Value::String(p.to_string()));
            }
            print_json(&value);
        } else {
            crate::input::outln!(
                "added user {} to {} (sub {}, mailbox {})",
                user.username,
                realm.id,
                user.id,
                account.email
            );
            if let Some(p) = &generated {
                crate::input::outln!("one-time password (shown once): {}", p.as_str());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_app(command: AppCommand) -> anyhow::Result<ExitCode> {
    let AppCommand::Add {
        realm,
        name,
        confidential,
        grants,
        redirect_uris,
        resources,
        place,
        json,
    } = command;
    admin(&place, async |identity| {
        let realm = identity.realm(realm_arg(&realm)).await?;
        let spec = AppSpec {
            realm: realm.id.clone(),
            name,
            confidential,
            grants,
            redirect_uris,
            resources,
        };
        let (app, secret) = identity.add_app(&spec, &RequestContext::operator()).await?;
        if secret.is_some() {
            crate::input::secret_follows(
                "the client secret, which is stored only as a digest and is now lost: \
                 register the app again and remove this one from your clients",
            );
        }
        if json {
            let mut value = json!({
                "client_id": app.client_id,
                "client_name": app.name,
                "grant_types": app.grants,
                "redirect_uris": app.redirect_uris,
                "token_endpoint_auth_method": if secret.is_some() { "client_secret_basic" } else { "none" },
                "issuer": identity.config().issuer(&realm.id),
            });
            if let (Some(s), Some(map)) = (&secret, value.as_object_mut()) {
                map.insert("client_secret".into(), Value::String(s.to_string()));
            }
            print_json(&value);
        } else {
            crate::input::outln!("client_id: {}", app.client_id);
            if let Some(s) = &secret {
                crate::input::outln!("client_secret (shown once): {}", s.as_str());
            }
            crate::input::outln!("issuer: {}", identity.config().issuer(&realm.id));
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn key_json(key: &KeyRecord, identity: &Identity, overdue: bool) -> Value {
    json!({
        "kid": key.kid,
        "realm": key.realm_id,
        "issuer": identity.config().issuer(&key.realm_id),
        "alg": key.alg,
        "state": key.state.as_str(),
        "backend": key.backend,
        "created_at": key.created_at,
        "activate_after": key.activate_after,
        "activated_at": key.activated_at,
        "retiring_at": key.retiring_at,
        "retired_at": key.retired_at,
        "revoked_at": key.revoked_at,
        "revoked_reason": key.revoked_reason,
        "not_after": key.not_after,
        "overdue": overdue,
    })
}

pub fn run_key(command: ServiceKeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        ServiceKeyCommand::List { realm, place, json } => admin(&place, async |identity| {
            let filter = if realm.consumer {
                Some(keyscope_store::CONSUMER_REALM.to_owned())
            } else {
                realm.tenant.clone()
            };
            if let Some(id) = &filter {
                identity
                    .realm((id != keyscope_store::CONSUMER_REALM).then_some(id.as_str()))
                    .await?;
            }
            let snapshot = identity.snapshot();
            let keys: Vec<&KeyRecord> = snapshot
                .keys
                .iter()
                .filter(|k| filter.as_ref().is_none_or(|f| &k.realm_id == f))
                .collect();
            let is_overdue = |kid: &str| snapshot.overdue.iter().any(|o| o.kid == kid);
            if json {
                let list: Vec<Value> = keys
                    .iter()
                    .map(|k| key_json(k, identity, is_overdue(&k.kid)))
                    .collect();
                print_json(&Value::Array(list));
            } else {
                crate::input::outln!(
                    "{:<20} {:<16} {:<6} {:<9} CREATED",
                    "KID",
                    "REALM",
                    "ALG",
                    "STATE"
                );
                for key in keys {
                    crate::input::outln!(
                        "{:<20} {:<16} {:<6} {:<9} {}{}",
                        key.kid,
                        key.realm_id,
                        key.alg,
                        key.state.as_str(),
                        keyscope_audit::event::format_time(
                            key.created_at.saturating_mul(1_000_000)
                        ),
                        if is_overdue(&key.kid) {
                            "  OVERDUE: older than the rotation policy"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        ServiceKeyCommand::Rotate {
            realm,
            now,
            place,
            json,
        } => admin(&place, async |identity| {
            let realm = identity.realm(realm_arg(&realm)).await?;
            let key = identity
                .rotate_key(&realm, now, &RequestContext::operator())
                .await?;
            if json {
                print_json(&key_json(&key, identity, false));
            } else if key.state == keyscope_store::KeyState::Active {
                crate::input::outln!("key {} is now active in {}", key.kid, realm.id);
            } else {
                crate::input::outln!(
                    "key {} is published in {} and becomes active at {}",
                    key.kid,
                    realm.id,
                    keyscope_audit::event::format_time(
                        key.activate_after.saturating_mul(1_000_000)
                    )
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        ServiceKeyCommand::Revoke {
            kid,
            reason,
            place,
            json,
        } => admin(&place, async |identity| {
            let key = identity
                .revoke_key(&kid, &reason, &RequestContext::operator())
                .await?;
            if json {
                print_json(&key_json(&key, identity, false));
            } else {
                crate::input::outln!(
                    "revoked key {} of {}: {}",
                    key.kid,
                    key.realm_id,
                    reason.trim()
                );
                // The response path: refusal is immediate; what the key reached is next.
                crate::input::outln!(
                    "validators refuse it now; live detection alerts on any further use (ks-token-revoked-key)"
                );
                crate::input::outln!(
                    "blast radius and tenant notices: keyscope incident report --kid {} --notify",
                    key.kid
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

pub fn run_issue(args: IssueArgs) -> anyhow::Result<ExitCode> {
    admin(&args.place, async |identity| {
        let realm = identity.realm(realm_arg(&args.realm)).await?;
        let minted = identity
            .issue_operator_token(
                &realm,
                &args.user,
                args.client.as_deref(),
                args.scope.as_deref(),
                args.audience.as_deref(),
                &RequestContext::operator(),
            )
            .await?;
        if args.json {
            print_json(&json!({
                "access_token": minted.access_token,
                "token_type": "Bearer",
                "expires_in": minted.expires_in,
                "kid": minted.kid,
                "jti": minted.jti,
            }));
        } else {
            crate::input::outln!("{}", minted.access_token);
        }
        Ok(ExitCode::SUCCESS)
    })
}
