//! `keyscope token …` and `keyscope jws …`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use keyscope_jose::jwk::MAX_JWKS_BYTES;
use keyscope_jose::{JwkSet, MAX_TOKEN_BYTES, SigningKey, b64, jws};
use keyscope_trust::{
    DEFAULT_LEEWAY_SECONDS, Decision, KeySource, Policy, Reason, Rejected, StaticKeys, TokenFacts,
    TokenType, TrustedIssuer, Validator, verify_jws,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::EXIT_NEGATIVE;
use crate::input::{print_json, read_bounded, read_file_bounded, unix_now};

/// Most bytes read from stdin for a token: past the token limit, but bounded, so that an
/// oversized token is still answered `too_large` rather than read forever.
const STDIN_TOKEN_LIMIT: usize = 4 * MAX_TOKEN_BYTES;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint an access token from the identity service (recorded in the issuance ledger and
    /// the audit log like any other). Prints the token alone, or JSON with --json.
    Issue(crate::identity::IssueArgs),
    /// Validate a token against a trust policy. Prints one JSON object; exit 0 when
    /// accepted, 1 when rejected (with the reason code), 2 when the policy input is unusable.
    Verify(VerifyArgs),
    /// Sign claims with a development key from `keyscope key generate` (prints the token).
    /// Real tokens come from the identity service; this is for development and tests.
    Sign {
        /// The private JWK file written by `keyscope key generate`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The `typ` header ("at+jwt" for access tokens, "JWT" for plain JWTs).
        #[arg(long, default_value = "at+jwt")]
        typ: String,
        /// The claims as a JSON object, or `-` to read them from stdin.
        claims: String,
    },
    /// Decode a token's header and claims WITHOUT verifying anything.
    Inspect {
        /// The token, or `-` to read it from stdin.
        token: String,
        /// Print JSON only.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A trusted issuer (repeatable). May contain `{tenantid}` as one whole path segment.
    /// When omitted, the issuers named by the keys' `issuer` members are trusted. With more
    /// than one issuer, or a templated one, every key must carry an `issuer` member.
    #[arg(long = "issuer", value_name = "ISS")]
    issuers: Vec<String>,
    /// A required audience (repeatable; `aud` must name at least one).
    #[arg(long = "audience", value_name = "AUD")]
    audiences: Vec<String>,
    /// The trusted keys: a JWKS file (or a single JWK).
    #[arg(long, value_name = "FILE")]
    jwks: PathBuf,
    /// An allowed tenant (`tid`, repeatable). Default: any tenant.
    #[arg(long = "tenant", value_name = "TID")]
    tenants: Vec<String>,
    /// A revoked key id (repeatable).
    #[arg(long = "revoked-kid", value_name = "KID")]
    revoked_kids: Vec<String>,
    /// Validate as of this time (seconds since the Unix epoch) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<i64>,
    /// Clock leeway in seconds for exp, nbf and iat (at most 600).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_LEEWAY_SECONDS)]
    leeway: u32,
    /// The required token type.
    #[arg(long, value_enum, default_value = "at+jwt")]
    token_type: TokenTypeArg,
    /// Output is always JSON; accepted for uniformity with other commands.
    #[arg(long)]
    json: bool,
    /// The token, or `-` to read it from stdin (surrounding whitespace trimmed).
    token: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum TokenTypeArg {
    #[value(name = "at+jwt")]
    AtJwt,
    #[value(name = "jwt")]
    Jwt,
    #[value(name = "any")]
    Any,
}

impl From<TokenTypeArg> for TokenType {
    fn from(arg: TokenTypeArg) -> TokenType {
        match arg {
            TokenTypeArg::AtJwt => TokenType::AccessToken,
            TokenTypeArg::Jwt => TokenType::Jwt,
            TokenTypeArg::Any => TokenType::Any,
        }
    }
}

#[derive(Subcommand)]
pub enum JwsCommand {
    /// Verify a compact JWS signature against a key set (no claims policy). Exit 0 and the
    /// payload when the signature verifies, 1 and the reason when not.
    Verify {
        /// The keys: a JWKS file (or a single JWK).
        #[arg(long, value_name = "FILE")]
        jwks: PathBuf,
        /// Output is always JSON; accepted for uniformity with other commands.
        #[arg(long)]
        json: bool,
        /// The token, or `-` to read it from stdin (surrounding whitespace trimmed).
        token: String,
    },
}

pub fn run_token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Issue(args) => crate::identity::run_issue(args),
        TokenCommand::Verify(args) => verify(args),
        TokenCommand::Inspect { token, json } => inspect(&token, json),
        TokenCommand::Sign { key, typ, claims } => sign(&key, &typ, &claims),
    }
}

pub fn run_jws(command: JwsCommand) -> anyhow::Result<ExitCode> {
    match command {
        JwsCommand::Verify { jwks, token, .. } => {
            let keys = load_jwks(&jwks)?;
            let token = match read_token(&token)? {
                Ok(token) => token,
                Err(rejected) => return Ok(print_rejection(&rejected)),
            };
            match verify_jws(&token, &keys) {
                Ok(verified) => {
                    let out = json!({
                        "valid": true,
                        "alg": verified.alg,
                        "kid": verified.kid,
                        "payload": std::str::from_utf8(&verified.payload).ok(),
                        "payload_b64": b64::encode_url(&verified.payload),
                    });
                    print_json(&out);
                    Ok(ExitCode::SUCCESS)
                }
                Err(rejected) => Ok(print_rejection(&rejected)),
            }
        }
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = load_jwks(&args.jwks)?;
    let issuers = if args.issuers.is_empty() {
        issuers_named_by_keys(&keys, &args.jwks)?
    } else {
        args.issuers.clone()
    };
    if args.audiences.is_empty() {
        eprintln!("keyscope: warning: no --audience given: the token's audience is not checked");
    }
    let source: Arc<dyn KeySource> = StaticKeys::new(keys);
    let mut builder = Policy::builder()
        .token_type(args.token_type.into())
        .leeway(args.leeway);
    for issuer in issuers {
        builder = builder.issuer(
            TrustedIssuer::new(issuer, Arc::clone(&source))
                .audiences(args.audiences.iter().cloned())
                .tenants(args.tenants.iter().cloned()),
        );
    }
    for kid in &args.revoked_kids {
        builder = builder.revoke_kid(kid.clone());
    }
    let validator = Validator::new(builder.build().context("invalid trust policy")?);
    let token = match read_token(&args.token)? {
        Ok(token) => token,
        Err(rejected) => return Ok(print_rejection(&rejected)),
    };
    let decision = validator.validate(&token, args.at.unwrap_or_else(unix_now));
    print_json(&decision.to_json());
    Ok(match decision {
        Decision::Accepted(_) => ExitCode::SUCCESS,
        Decision::Rejected(_) => ExitCode::from(EXIT_NEGATIVE),
    })
}

/// Largest claims document accepted for signing.
const MAX_CLAIMS_BYTES: usize = 8 * 1024;

fn sign(key_path: &Path, typ: &str, claims: &str) -> anyhow::Result<ExitCode> {
    let key_bytes = Zeroizing::new(read_file_bounded(key_path, 64 * 1024)?);
    let key = SigningKey::from_private_jwk(&key_bytes)
        .with_context(|| format!("cannot use signing key {}", key_path.display()))?;
    let claims = if claims == "-" {
        read_bounded(std::io::stdin().lock(), MAX_CLAIMS_BYTES).context("cannot read claims")?
    } else {
        claims.as_bytes().to_vec()
    };
    if claims.len() > MAX_CLAIMS_BYTES {
        bail!("claims are larger than {MAX_CLAIMS_BYTES} bytes");
    }
    // Strict JSON object, so that Keyscope never signs what its own validator would refuse.
    keyscope_jose::json::scan_object(&claims).context("claims must be one strict JSON object")?;
    let mut header = serde_json::Map::new();
    if !typ.is_empty() {
        header.insert("typ".to_owned(), Value::String(typ.to_owned()));
    }
    crate::input::outln!("{}", key.sign_compact(header, &claims)?);
    Ok(ExitCode::SUCCESS)
}

fn inspect(token: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let token = match read_token(token)? {
        Ok(token) => token,
        Err(rejected) => return Ok(print_rejection(&rejected)),
    };
    let jws::Inspected { header, payload } = match jws::inspect(&token) {
        Ok(parts) => parts,
        Err(error) => {
            let rejected = Rejected {
                reason: Reason::from(&error),
                detail: error.to_string(),
                facts: TokenFacts::default(),
            };
            return Ok(print_rejection(&rejected));
        }
    };
    let notice = "UNVERIFIED: decoded without checking the signature, the key or any claim";
    let claims_value = match payload {
        Ok(value) => value,
        Err(error) => json!({ "error": format!("payload is not strict JSON: {error}") }),
    };
    if as_json {
        print_json(&json!({
            "verified": false,
            "notice": notice,
            "header": header,
            "claims": claims_value,
        }));
    } else {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        crate::input::outln!("*** {notice} ***");
        crate::input::outln!("header (unverified):\n{}", pretty(&Value::Object(header)));
        crate::input::outln!("claims (unverified):\n{}", pretty(&claims_value));
    }
    Ok(ExitCode::SUCCESS)
}

/// The trusted issuers when none are given: every distinct `issuer` member in the set. A key
/// without one makes that impossible to decide, which is the operator's to fix.
fn issuers_named_by_keys(keys: &JwkSet, path: &Path) -> anyhow::Result<Vec<String>> {
    let mut issuers = BTreeSet::new();
    for key in keys.keys() {
        match key.issuer() {
            Some(issuer) => {
                issuers.insert(issuer.to_owned());
            }
            None => bail!(
                "no --issuer given and key {} in {} has no issuer member; name the trusted issuer with --issuer",
                key.kid()
                    .map_or_else(|| "(no kid)".to_owned(), |k| format!("{k:?}")),
                path.display()
            ),
        }
    }
    Ok(issuers.into_iter().collect())
}

fn load_jwks(path: &Path) -> anyhow::Result<JwkSet> {
    let bytes = read_file_bounded(path, MAX_JWKS_BYTES)
        .with_context(|| format!("cannot use key set {}", path.display()))?;
    let keys = JwkSet::parse_set_or_key(&bytes)
        .with_context(|| format!("invalid key set {}", path.display()))?;
    if keys.is_empty() {
        bail!("key set {} contains no keys", path.display());
    }
    Ok(keys)
}

/// The token from the argument, or from stdin for `-` (trimmed). Stdin that is not UTF-8 or
/// exceeds the read limit is a property of the token, answered as a rejection, not as an
/// operator error.
fn read_token(argument: &str) -> anyhow::Result<Result<String, Rejected>> {
    if argument != "-" {
        return Ok(Ok(argument.to_owned()));
    }
    let rejected = |reason: Reason, detail: String| Rejected {
        reason,
        detail,
        facts: TokenFacts::default(),
    };
    let Ok(bytes) = read_bounded(std::io::stdin().lock(), STDIN_TOKEN_LIMIT) else {
        return Ok(Err(rejected(
            Reason::TooLarge,
            format!("token on stdin is larger than {STDIN_TOKEN_LIMIT} bytes"),
        )));
    };
    Ok(match String::from_utf8(bytes) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(_) => Err(rejected(
            Reason::Malformed,
            "the token is not UTF-8 text".to_owned(),
        )),
    })
}

fn print_rejection(rejected: &Rejected) -> ExitCode {
    print_json(&json!({
        "valid": false,
        "reason": rejected.reason,
        "detail": rejected.detail,
    }));
    ExitCode::from(EXIT_NEGATIVE)
}
