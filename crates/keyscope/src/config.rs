//! Configuration of `keyscope up` (and the store location of every command): a flag beats a
//! `KEYSCOPE_*` environment variable, which beats `keyscope.toml`, which beats the default.
//!
//! The file is `--config FILE` (or `KEYSCOPE_CONFIG`), else `keyscope.toml` in the data
//! directory when it exists. Its keys are the flags' names with `_` for `-`
//! (`--rotation-hours` is `rotation_hours`). Unknown keys, wrong types and values that do not
//! parse stop the program with the file and key named: a typo must not silently fall back to
//! a default. The master key never belongs in the file (`KEYSCOPE_MASTER_KEY` or
//! `DATA_DIR/master.key`), and `config show` masks every secret.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::identity::{Place, UpArgs};

/// The largest configuration file read.
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// How `config show` prints an option without a value.
const NOT_SET: &str = "(not set)";

/// The file looked for in the data directory.
pub(crate) const CONFIG_FILE_NAME: &str = "keyscope.toml";

/// One option: its key in the file (and, with `-`, its flag), its variable, its default.
pub(crate) struct OptionSpec {
    pub key: &'static str,
    pub env: &'static str,
    pub default: Option<&'static str>,
    /// Masked by `config show`, never echoed in an error.
    pub secret: bool,
}

const fn spec(key: &'static str, env: &'static str, default: Option<&'static str>) -> OptionSpec {
    OptionSpec {
        key,
        env,
        default,
        secret: false,
    }
}

const fn secret(key: &'static str, env: &'static str) -> OptionSpec {
    OptionSpec {
        key,
        env,
        default: None,
        secret: true,
    }
}

pub(crate) const DATA_DIR: OptionSpec =
    spec("data_dir", "KEYSCOPE_DATA_DIR", Some("keyscope-data"));
pub(crate) const DATABASE_URL: OptionSpec = secret("database_url", "KEYSCOPE_DATABASE_URL");
pub(crate) const PUBLIC_URL: OptionSpec = spec("public_url", "KEYSCOPE_PUBLIC_URL", None);
pub(crate) const LISTEN: OptionSpec = spec("listen", "KEYSCOPE_LISTEN", Some("127.0.0.1:8080"));
pub(crate) const ROTATION_HOURS: OptionSpec =
    spec("rotation_hours", "KEYSCOPE_ROTATION_HOURS", Some("24"));
pub(crate) const JWKS_MAX_AGE: OptionSpec =
    spec("jwks_max_age", "KEYSCOPE_JWKS_MAX_AGE", Some("300"));
pub(crate) const ACCESS_TOKEN_TTL: OptionSpec =
    spec("access_token_ttl", "KEYSCOPE_ACCESS_TOKEN_TTL", Some("600"));
pub(crate) const SIGNING_ALG: OptionSpec =
    spec("signing_alg", "KEYSCOPE_SIGNING_ALG", Some("ES256"));
pub(crate) const RULES: OptionSpec = spec("rules", "KEYSCOPE_RULES", None);
pub(crate) const ALERT_FILE: OptionSpec = spec("alert_file", "KEYSCOPE_ALERT_FILE", None);
pub(crate) const ALERT_WEBHOOK: OptionSpec = secret("alert_webhook", "KEYSCOPE_ALERT_WEBHOOK");
pub(crate) const ALERT_DEDUP_SECONDS: OptionSpec = spec(
    "alert_dedup_seconds",
    "KEYSCOPE_ALERT_DEDUP_SECONDS",
    Some("600"),
);
pub(crate) const LOG_FORMAT: OptionSpec = spec("log_format", "KEYSCOPE_LOG_FORMAT", Some("human"));
pub(crate) const LOG_LEVEL: OptionSpec = spec("log_level", "KEYSCOPE_LOG_LEVEL", Some("info"));
pub(crate) const METRICS_TOKEN: OptionSpec = secret("metrics_token", "KEYSCOPE_METRICS_TOKEN");
pub(crate) const CHECKPOINT_COPY: OptionSpec =
    secret("checkpoint_copy", "KEYSCOPE_CHECKPOINT_COPY");
pub(crate) const CHECKPOINT_COPY_SECONDS: OptionSpec = spec(
    "checkpoint_copy_seconds",
    "KEYSCOPE_CHECKPOINT_COPY_SECONDS",
    Some("60"),
);
pub(crate) const SHUTDOWN_GRACE_SECONDS: OptionSpec = spec(
    "shutdown_grace_seconds",
    "KEYSCOPE_SHUTDOWN_GRACE_SECONDS",
    Some("10"),
);

/// Every option the file may hold, in the order `config show` prints them.
pub(crate) const OPTIONS: [&OptionSpec; 19] = [
    &DATA_DIR,
    &DATABASE_URL,
    &PUBLIC_URL,
    &LISTEN,
    &ROTATION_HOURS,
    &JWKS_MAX_AGE,
    &ACCESS_TOKEN_TTL,
    &SIGNING_ALG,
    &RULES,
    &ALERT_FILE,
    &ALERT_WEBHOOK,
    &ALERT_DEDUP_SECONDS,
    &LOG_FORMAT,
    &LOG_LEVEL,
    &METRICS_TOKEN,
    &SHUTDOWN_GRACE_SECONDS,
    &CHECKPOINT_COPY,
    &CHECKPOINT_COPY_SECONDS,
    &CONFIG_META,
];

/// `--config` itself: listed so that `config show` says which file was read, refused as a key.
const CONFIG_META: OptionSpec = spec("config", "KEYSCOPE_CONFIG", None);

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => write!(f, "flag"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => write!(f, "default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The configuration file, once read: its keys as text, relative paths already resolved.
/// Not `Debug`: values may be secrets.
#[derive(Default)]
pub(crate) struct ConfigFile {
    pub path: Option<PathBuf>,
    values: BTreeMap<String, String>,
}

impl ConfigFile {
    /// Reads and checks a file.
    pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        // Checked before opening: opening a FIFO would wait forever for a writer.
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot open the configuration file {}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "the configuration file {} is not a regular file",
                path.display()
            );
        }
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the configuration file {}", path.display()))?;
        warn_if_readable_by_others(&file, path);
        let bytes = crate::input::read_bounded(file, MAX_CONFIG_BYTES)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        let values = parse_toml(text).with_context(|| format!("in {}", path.display()))?;
        Ok(ConfigFile {
            path: Some(path.to_path_buf()),
            values,
        })
    }

    fn get(&self, key: &str) -> Option<(String, Source)> {
        let path = self.path.as_ref()?;
        let value = self.values.get(key)?;
        Some((value.clone(), Source::File(path.clone())))
    }

    /// The directory relative paths in the file are relative to.
    fn base(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }
}

/// Parses the file's text into key → value text, refusing anything that is not one of
/// [`OPTIONS`] with a string, integer or boolean value.
pub(crate) fn parse_toml(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("not valid TOML: {}", e.message()))?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        if key == "master_key" || key == "master_key_file" {
            bail!(
                "`{key}`: the master key does not belong in a configuration file; set \
                 KEYSCOPE_MASTER_KEY or keep DATA_DIR/master.key (mode 0600)"
            );
        }
        if key == CONFIG_META.key || !OPTIONS.iter().any(|o| o.key == key) {
            let known: Vec<&str> = OPTIONS
                .iter()
                .map(|o| o.key)
                .filter(|k| *k != CONFIG_META.key)
                .collect();
            bail!(
                "unknown option `{key}`; the options are: {}",
                known.join(", ")
            );
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "`{key}` must be a string or a number, not a {}",
                other.type_str()
            ),
        };
        values.insert(key, text);
    }
    Ok(values)
}

/// A file holding secrets should not be readable by other users: say so, once, on stderr.
fn warn_if_readable_by_others(file: &std::fs::File, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata()
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "keyscope: warning: {} is readable by other users; if it holds database_url \
             with a password, metrics_token or alert_webhook, chmod 600 it",
            path.display()
        );
    }
}

/// A variable's value; empty counts as unset. One that is not UTF-8 is an error, never
/// silently ignored (that would start a server without, say, its metrics token).
fn env_value(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Some(value)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{name} is not valid UTF-8 (its value is not shown)")
        }
    }
}

/// Picks one option's value: flag, then variable, then file, then default.
pub(crate) fn pick(
    spec: &OptionSpec,
    flag: Option<String>,
    file: &ConfigFile,
) -> anyhow::Result<Option<(String, Source)>> {
    if let Some(value) = flag {
        return Ok(Some((value, Source::Flag)));
    }
    if let Some(value) = env_value(spec.env)? {
        return Ok(Some((value, Source::Env(spec.env))));
    }
    if let Some(found) = file.get(spec.key) {
        return Ok(Some(found));
    }
    Ok(spec.default.map(|d| (d.to_owned(), Source::Default)))
}

/// Names where a bad value came from, without echoing a secret.
fn bad_value(spec: &OptionSpec, value: &str, source: &Source, why: &str) -> anyhow::Error {
    let shown = if spec.secret {
        "(secret value not shown)".to_owned()
    } else {
        format!("{value:?}")
    };
    let place = match source {
        Source::Flag => format!("--{}", spec.key.replace('_', "-")),
        Source::Env(name) => (*name).to_owned(),
        Source::File(path) => format!("`{}` in {}", spec.key, path.display()),
        Source::Default => format!("the default of {}", spec.key),
    };
    anyhow::anyhow!("{place} = {shown}: {why}")
}

fn parse_setting<T>(
    spec: &OptionSpec,
    picked: Option<(String, Source)>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> anyhow::Result<Option<Setting<T>>> {
    let Some((text, source)) = picked else {
        return Ok(None);
    };
    match parse(text.trim()) {
        Ok(value) => Ok(Some(Setting { value, source })),
        Err(why) => Err(bad_value(spec, &text, &source, &why)),
    }
}

fn required<T>(spec: &OptionSpec, setting: Option<Setting<T>>) -> anyhow::Result<Setting<T>> {
    setting.with_context(|| format!("{} has no value", spec.key))
}

/// A path from the file is relative to the file's directory; others to the working directory.
fn path_setting(
    spec: &OptionSpec,
    flag: Option<PathBuf>,
    file: &ConfigFile,
) -> anyhow::Result<Option<Setting<PathBuf>>> {
    let picked = pick(spec, flag.map(|p| p.to_string_lossy().into_owned()), file)?;
    parse_setting(spec, picked, |text| {
        if text.is_empty() || text.len() > 4096 || text.contains('\0') {
            return Err("not a usable path".to_owned());
        }
        Ok(PathBuf::from(text))
    })
    .map(|setting| {
        setting.map(|mut s| {
            if let (Source::File(_), Some(base)) = (&s.source, file.base())
                && s.value.is_relative()
            {
                s.value = base.join(&s.value);
            }
            s
        })
    })
}

fn positive(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(0) => Err("must be a positive whole number".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("must be a positive whole number (at most 4294967295)".to_owned()),
    }
}

fn one_of(allowed: &'static [&'static str]) -> impl FnOnce(&str) -> Result<String, String> {
    move |text| {
        if allowed.contains(&text) {
            Ok(text.to_owned())
        } else {
            Err(format!("must be one of {}", allowed.join(", ")))
        }
    }
}

fn any_text(text: &str) -> Result<String, String> {
    if text.len() > 4096 || text.chars().any(char::is_control) {
        Err("must be at most 4096 printable characters".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

/// Where the service keeps its state, resolved: what every command that opens the store uses.
/// Not `Debug`: it holds secrets (database URL, tokens).
pub(crate) struct Location {
    pub data_dir: Setting<PathBuf>,
    pub database_url: Option<Setting<String>>,
    pub public_url: Option<Setting<String>>,
    pub file: ConfigFile,
}

impl Location {
    /// Resolves `--data-dir`, `--database-url`, `--public-url` and `--config`.
    pub fn resolve(place: &Place) -> anyhow::Result<Location> {
        let explicit = match &place.config {
            Some(path) => Some(path.clone()),
            None => env_value(CONFIG_META.env)?.map(PathBuf::from),
        };
        let none = ConfigFile::default();
        // Without an explicit file, the data directory is fixed before the file is looked
        // for inside it, so the file cannot move it.
        let file = match &explicit {
            Some(path) => ConfigFile::read(path)?,
            None => {
                let dir = required(
                    &DATA_DIR,
                    path_setting(&DATA_DIR, place.data_dir.clone(), &none)?,
                )?;
                let candidate = dir.value.join(CONFIG_FILE_NAME);
                // Anything by that name is read (and refused if it is not a regular file):
                // a directory or a broken link must not silently drop the settings.
                let present = match std::fs::symlink_metadata(&candidate) {
                    Ok(_) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot look for {}", candidate.display()));
                    }
                };
                if present {
                    let file = ConfigFile::read(&candidate)?;
                    if file.values.contains_key(DATA_DIR.key) {
                        bail!(
                            "`data_dir` in {} has no effect (the file is found inside the data \
                             directory); remove it, or pass the file with --config",
                            candidate.display()
                        );
                    }
                    file
                } else {
                    none
                }
            }
        };
        let data_dir = required(
            &DATA_DIR,
            path_setting(&DATA_DIR, place.data_dir.clone(), &file)?,
        )?;
        let database_url = parse_setting(
            &DATABASE_URL,
            pick(&DATABASE_URL, place.database_url.clone(), &file)?,
            |text| {
                if ["postgres://", "postgresql://", "sqlite:"]
                    .iter()
                    .any(|scheme| text.starts_with(scheme))
                {
                    any_text(text)
                } else {
                    Err("must be a postgres:// (or sqlite:) URL".to_owned())
                }
            },
        )?;
        let public_url = parse_setting(
            &PUBLIC_URL,
            pick(&PUBLIC_URL, place.public_url.clone(), &file)?,
            |text| crate::identity::check_public_url(text).map_err(|e| e.to_string()),
        )?;
        Ok(Location {
            data_dir,
            database_url,
            public_url,
            file,
        })
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Human,
    Json,
}

/// Everything `keyscope up` runs with.
/// Not `Debug`: it holds secrets (database URL, tokens).
pub(crate) struct UpSettings {
    pub location: Location,
    pub listen: Setting<SocketAddr>,
    pub rotation_hours: Setting<u32>,
    pub jwks_max_age: Setting<u32>,
    pub access_token_ttl: Setting<u32>,
    pub signing_alg: Setting<String>,
    pub rules: Option<Setting<PathBuf>>,
    pub alert_file: Option<Setting<PathBuf>>,
    pub alert_webhook: Option<Setting<String>>,
    pub alert_dedup_seconds: Setting<u32>,
    pub log_format: Setting<LogFormat>,
    pub log_level: Setting<tracing::Level>,
    pub metrics_token: Option<Setting<String>>,
    pub shutdown_grace_seconds: Setting<u32>,
    pub checkpoint_copy: Option<Setting<crate::checkpoint_copy::Target>>,
    pub checkpoint_copy_seconds: Setting<u32>,
}

impl UpSettings {
    /// Resolves every option of `up` from its flags, the environment and the file.
    pub fn resolve(args: &UpArgs) -> anyhow::Result<UpSettings> {
        let location = Location::resolve(&args.place)?;
        let file = &location.file;
        let number = |spec: &OptionSpec, flag: Option<u32>| {
            required(
                spec,
                parse_setting(
                    spec,
                    pick(spec, flag.map(|n| n.to_string()), file)?,
                    positive,
                )?,
            )
        };
        let listen = required(
            &LISTEN,
            parse_setting(
                &LISTEN,
                pick(&LISTEN, args.listen.map(|a| a.to_string()), file)?,
                |text| {
                    text.parse::<SocketAddr>()
                        .map_err(|_| "must be IP:PORT, e.g. 127.0.0.1:8080".to_owned())
                },
            )?,
        )?;
        let alert_webhook = parse_setting(
            &ALERT_WEBHOOK,
            pick(&ALERT_WEBHOOK, args.alert_webhook.clone(), file)?,
            |text| {
                crate::identity::check_webhook_url(text)
                    .map(|()| text.to_owned())
                    .map_err(|e| e.to_string())
            },
        )?;
        let metrics_token = parse_setting(
            &METRICS_TOKEN,
            pick(&METRICS_TOKEN, args.metrics_token.clone(), file)?,
            |text| {
                if text.len() < 16
                    || text.len() > 512
                    || !text.bytes().all(|b| b.is_ascii_graphic())
                {
                    Err("must be 16 to 512 printable ASCII characters without spaces".to_owned())
                } else {
                    Ok(text.to_owned())
                }
            },
        )?;
        Ok(UpSettings {
            listen,
            rotation_hours: number(&ROTATION_HOURS, args.rotation_hours)?,
            jwks_max_age: number(&JWKS_MAX_AGE, args.jwks_max_age)?,
            access_token_ttl: number(&ACCESS_TOKEN_TTL, args.access_token_ttl)?,
            signing_alg: required(
                &SIGNING_ALG,
                parse_setting(
                    &SIGNING_ALG,
                    pick(&SIGNING_ALG, args.signing_alg.clone(), file)?,
                    one_of(&["ES256", "EdDSA"]),
                )?,
            )?,
            rules: path_setting(&RULES, args.rules.clone(), file)?,
            alert_file: path_setting(&ALERT_FILE, args.alert_file.clone(), file)?,
            alert_webhook,
            alert_dedup_seconds: number(&ALERT_DEDUP_SECONDS, args.alert_dedup_seconds)?,
            log_format: required(
                &LOG_FORMAT,
                parse_setting(
                    &LOG_FORMAT,
                    pick(&LOG_FORMAT, args.log_format.clone(), file)?,
                    |text| match text {
                        "human" => Ok(LogFormat::Human),
                        "json" => Ok(LogFormat::Json),
                        _ => Err("must be human or json".to_owned()),
                    },
                )?,
            )?,
            log_level: required(
                &LOG_LEVEL,
                parse_setting(
                    &LOG_LEVEL,
                    pick(&LOG_LEVEL, args.log_level.clone(), file)?,
                    |text| match text {
                        "error" => Ok(tracing::Level::ERROR),
                        "warn" => Ok(tracing::Level::WARN),
                        "info" => Ok(tracing::Level::INFO),
                        "debug" => Ok(tracing::Level::DEBUG),
                        "trace" => Ok(tracing::Level::TRACE),
                        _ => Err("must be one of error, warn, info, debug, trace".to_owned()),
                    },
                )?,
            )?,
            metrics_token,
            shutdown_grace_seconds: number(&SHUTDOWN_GRACE_SECONDS, args.shutdown_grace_seconds)?,
            checkpoint_copy: parse_setting(
                &CHECKPOINT_COPY,
                pick(&CHECKPOINT_COPY, args.checkpoint_copy.clone(), file)?,
                |text| {
                    // Not the parser's own message: it would repeat the URL.
                    let target: crate::checkpoint_copy::Target = text.parse().map_err(|_| {
                        "must be a file path or an http(s)://host[:port]/path URL without \
                         credentials (the value is not shown)"
                            .to_owned()
                    })?;
                    Ok(target)
                },
            )?,
            checkpoint_copy_seconds: number(
                &CHECKPOINT_COPY_SECONDS,
                args.checkpoint_copy_seconds,
            )?,
            location,
        })
    }

    /// Every option as (key, shown value, source), secrets masked.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        fn row<T>(
            spec: &OptionSpec,
            setting: Option<&Setting<T>>,
            show: impl Fn(&T) -> String,
        ) -> (&'static str, String, String) {
            match setting {
                Some(s) => {
                    let shown = if spec.secret {
                        mask(spec, &show(&s.value))
                    } else {
                        show(&s.value)
                    };
                    (spec.key, shown, s.source.to_string())
                }
                None => (spec.key, NOT_SET.to_owned(), "default".to_owned()),
            }
        }
        let path = |p: &PathBuf| p.display().to_string();
        let text = |t: &String| t.clone();
        let number = |n: &u32| n.to_string();
        let location = &self.location;
        let mut rows = vec![
            (
                CONFIG_META.key,
                location
                    .file
                    .path
                    .as_ref()
                    .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string()),
                "".to_owned(),
            ),
            row(&DATA_DIR, Some(&location.data_dir), path),
            row(&DATABASE_URL, location.database_url.as_ref(), text),
            match &location.public_url {
                Some(_) => row(&PUBLIC_URL, location.public_url.as_ref(), text),
                // What `up` will use is in the store, which `config show` does not open.
                None => (
                    PUBLIC_URL.key,
                    "(the URL recorded in the store; on a new store http://LISTEN)".to_owned(),
                    "default".to_owned(),
                ),
            },
            row(&LISTEN, Some(&self.listen), |a: &SocketAddr| a.to_string()),
            row(&ROTATION_HOURS, Some(&self.rotation_hours), number),
            row(&JWKS_MAX_AGE, Some(&self.jwks_max_age), number),
            row(&ACCESS_TOKEN_TTL, Some(&self.access_token_ttl), number),
            row(&SIGNING_ALG, Some(&self.signing_alg), text),
            row(&RULES, self.rules.as_ref(), path),
            row(&ALERT_FILE, self.alert_file.as_ref(), path),
            row(&ALERT_WEBHOOK, self.alert_webhook.as_ref(), text),
            row(
                &ALERT_DEDUP_SECONDS,
                Some(&self.alert_dedup_seconds),
                number,
            ),
            row(&LOG_FORMAT, Some(&self.log_format), |f: &LogFormat| {
                match f {
                    LogFormat::Human => "human",
                    LogFormat::Json => "json",
                }
                .to_owned()
            }),
            row(&LOG_LEVEL, Some(&self.log_level), |l: &tracing::Level| {
                l.as_str().to_ascii_lowercase()
            }),
            row(&METRICS_TOKEN, self.metrics_token.as_ref(), text),
            row(
                &SHUTDOWN_GRACE_SECONDS,
                Some(&self.shutdown_grace_seconds),
                number,
            ),
            row(
                &CHECKPOINT_COPY,
                self.checkpoint_copy.as_ref(),
                |t: &crate::checkpoint_copy::Target| t.to_string(),
            ),
            row(
                &CHECKPOINT_COPY_SECONDS,
                Some(&self.checkpoint_copy_seconds),
                number,
            ),
        ];
        rows.push(master_key_row(&location.data_dir.value));
        rows
    }
}

/// Where the master key comes from (never its value).
fn master_key_row(data_dir: &Path) -> (&'static str, String, String) {
    // A master key variable that is not UTF-8 still counts as set (and will be refused).
    let from_env = std::env::var_os("KEYSCOPE_MASTER_KEY").is_some_and(|v| !v.is_empty());
    let (shown, source) = if from_env {
        ("********".to_owned(), "env KEYSCOPE_MASTER_KEY".to_owned())
    } else {
        let file = data_dir.join("master.key");
        if file.exists() {
            ("********".to_owned(), format!("file {}", file.display()))
        } else {
            (
                "(created on first start)".to_owned(),
                format!("file {}", file.display()),
            )
        }
    };
    ("master_key", shown, source)
}

/// Hides a secret: a URL keeps its scheme, host and path (its password and query are
/// masked), anything else becomes asterisks.
pub(crate) fn mask(spec: &OptionSpec, value: &str) -> String {
    if spec.key == METRICS_TOKEN.key {
        return "********".to_owned();
    }
    // A checkpoint copy may be a plain file path: nothing secret in it.
    if spec.key == CHECKPOINT_COPY.key && !value.contains("://") {
        return value.to_owned();
    }
    match reqwest::Url::parse(value) {
        Ok(mut url) if url.has_host() => {
            if url.password().is_some() {
                let _ = url.set_password(Some("********"));
            }
            if url.query().is_some() {
                url.set_query(Some("********"));
            }
            url.set_fragment(None);
            url.to_string()
        }
        _ => "********".to_owned(),
    }
}

/// `keyscope config …`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration of `keyscope up` (the same flags, variables and
    /// file), each value with where it came from; secrets are masked.
    Show(ShowArgs),
}

/// `keyscope config show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    up: UpArgs,
    /// Print JSON: {"options": {key: {"value", "source"}}}.
    #[arg(long)]
    json: bool,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Show(args) = command;
    let settings = UpSettings::resolve(&args.up)?;
    let rows = settings.rows();
    if args.json {
        let options: serde_json::Map<String, Value> = rows
            .iter()
            .map(|(key, value, source)| {
                // Unset options are null in JSON, not the table's "(not set)".
                let value = if value == NOT_SET {
                    Value::Null
                } else {
                    json!(value)
                };
                let source = if source.is_empty() {
                    Value::Null
                } else {
                    json!(source)
                };
                ((*key).to_owned(), json!({"value": value, "source": source}))
            })
            .collect();
        crate::input::print_json(&json!({ "options": options }));
    } else {
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let value_width = rows
            .iter()
            .map(|r| r.1.chars().count())
            .max()
            .unwrap_or(0)
            .min(60);
        for (key, value, source) in &rows {
            // Values may hold anything a variable or file held: control characters escaped.
            let value = keyscope_audit::export::printable_cell(value);
            let source = keyscope_audit::export::printable_cell(source);
            if source == "-" {
                crate::input::outln!("{key:<width$}  {value}");
            } else {
                crate::input::outln!("{key:<width$}  {value:<value_width$}  ({source})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_accepts_every_option_and_nothing_else() {
        let values =
            parse_toml("listen = \"0.0.0.0:9000\"\nrotation_hours = 12\nlog_format = \"json\"\n")
                .unwrap();
        assert_eq!(values.get("listen").unwrap(), "0.0.0.0:9000");
        assert_eq!(values.get("rotation_hours").unwrap(), "12");
        let typo = parse_toml("rotaton_hours = 12").unwrap_err().to_string();
        assert!(typo.contains("unknown option `rotaton_hours`"), "{typo}");
        assert!(typo.contains("rotation_hours"), "{typo}");
        let nested = parse_toml("[keys]\nrotation_hours = 1")
            .unwrap_err()
            .to_string();
        assert!(nested.contains("unknown option `keys`"), "{nested}");
        let table = parse_toml("listen = [1]").unwrap_err().to_string();
        assert!(table.contains("must be a string or a number"), "{table}");
        let master = parse_toml("master_key = \"x\"").unwrap_err().to_string();
        assert!(master.contains("does not belong"), "{master}");
        let broken = parse_toml("listen = ").unwrap_err().to_string();
        assert!(broken.contains("not valid TOML"), "{broken}");
        let meta = parse_toml("config = \"other.toml\"")
            .unwrap_err()
            .to_string();
        assert!(meta.contains("unknown option `config`"), "{meta}");
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask(
                &DATABASE_URL,
                "postgres://ks:hunter2@db.internal:5432/keyscope"
            ),
            "postgres://ks:********@db.internal:5432/keyscope"
        );
        assert_eq!(
            mask(&ALERT_WEBHOOK, "https://hooks.example/alert?token=abc#x"),
            "https://hooks.example/alert?********"
        );
        assert_eq!(mask(&METRICS_TOKEN, "0123456789abcdef"), "********");
        assert_eq!(mask(&DATABASE_URL, "not a url"), "********");
    }

    #[test]
    fn errors_name_the_place_and_hide_secrets() {
        let file = ConfigFile {
            path: Some(PathBuf::from("/etc/keyscope.toml")),
            values: BTreeMap::from([("jwks_max_age".to_owned(), "soon".to_owned())]),
        };
        let picked = pick(&JWKS_MAX_AGE, None, &file).unwrap();
        let error = parse_setting(&JWKS_MAX_AGE, picked, positive)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`jwks_max_age` in /etc/keyscope.toml"),
            "{error}"
        );
        assert!(error.contains("\"soon\""), "{error}");
        let secret = bad_value(&DATABASE_URL, "postgres://a:pw@h/d", &Source::Flag, "no");
        assert!(!secret.to_string().contains("pw"), "{secret}");
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let file = ConfigFile {
            path: Some(PathBuf::from("/srv/ks/keyscope.toml")),
            values: BTreeMap::from([("alert_dedup_seconds".to_owned(), "30".to_owned())]),
        };
        let (value, source) = pick(&ALERT_DEDUP_SECONDS, None, &file).unwrap().unwrap();
        assert_eq!(
            (value.as_str(), source.clone()),
            ("30", Source::File(PathBuf::from("/srv/ks/keyscope.toml")))
        );
        let (value, source) = pick(&ALERT_DEDUP_SECONDS, Some("5".to_owned()), &file)
            .unwrap()
            .unwrap();
        assert_eq!((value.as_str(), source), ("5", Source::Flag));
        let (value, source) = pick(&ROTATION_HOURS, None, &file).unwrap().unwrap();
        assert_eq!((value.as_str(), source), ("24", Source::Default));
        // Paths from the file are relative to the file.
        let file = ConfigFile {
            path: Some(PathBuf::from("/srv/ks/keyscope.toml")),
            values: BTreeMap::from([("rules".to_owned(), "rules.d".to_owned())]),
        };
        let rules = path_setting(&RULES, None, &file).unwrap().unwrap();
        assert_eq!(rules.value, PathBuf::from("/srv/ks/rules.d"));
    }

    #[test]
    fn arguments_never_print_their_secrets() {
        let place = Place {
            database_url: Some("postgres://ks:hunter2@db/keyscope".to_owned()),
            ..Place::default()
        };
        let shown = format!("{place:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("********"),
            "{shown}"
        );
    }

    #[test]
    fn numbers_must_be_positive() {
        assert!(positive("0").is_err());
        assert!(positive("-1").is_err());
        assert!(positive("99999999999").is_err());
        assert_eq!(positive("7"), Ok(7));
    }
}
