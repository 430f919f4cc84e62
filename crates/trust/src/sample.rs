//! A realistic sample issuer, key and access token, for benchmarks and demonstrations.
//!
//! Both `keyscope bench verify` and the criterion benchmarks measure the same thing through
//! this module: the full validation path for one RFC 9068 access token, next to a bare
//! aws-lc-rs signature check over the same signing input with the same, pre-parsed key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use keyscope_jose::{Algorithm, CompactJws, JwkSet, KeyMaterial, SigningKey};
use serde_json::{Map, Value, json};

use crate::policy::{KeySource, Policy, StaticKeys, TrustedIssuer};
use crate::validator::Validator;

/// The issuer of the sample token.
pub const ISSUER: &str = "https://keyscope.example/t/contoso";
/// The audience of the sample token.
pub const AUDIENCE: &str = "https://mail.keyscope.example";

/// A validator, a token it accepts, and the pieces for a bare signature check.
pub struct Sample {
    /// A validator trusting [`ISSUER`] with one key.
    pub validator: Validator,
    /// An access token that `validator` accepts at `now`.
    pub token: String,
    /// The time the token was made for (issued 30 s before, valid for 10 minutes).
    pub now: i64,
    /// The signing input of `token`.
    pub signing_input: Vec<u8>,
    /// The signature of `token`.
    pub signature: Vec<u8>,
    /// The public key, parsed once, for aws-lc-rs directly.
    pub bare_key: ParsedPublicKey,
    /// The signing key (for producing more tokens in comparisons).
    pub signing_key: SigningKey,
}

/// Why a sample could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the sample: {0}")]
pub struct SampleError(String);

fn sample_error(e: impl std::fmt::Display) -> SampleError {
    SampleError(e.to_string())
}

/// The claims of a typical Keyscope access token, issued 30 s before `now`.
pub fn access_token_claims(now: i64) -> Map<String, Value> {
    let claims = json!({
        "iss": ISSUER,
        "sub": "u-5f2c9a71",
        "aud": AUDIENCE,
        "exp": now + 570,
        "iat": now - 30,
        "nbf": now - 30,
        "jti": "01JDZ8M4Q8K2VJ7W3X9T6R5N4P",
        "client_id": "app-outlook-web",
        "tid": "contoso",
        "scope": "mail.read mail.send",
    });
    match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Builds a sample for a signing algorithm (ES256, EdDSA or RS256), valid at `now`.
pub fn access_token(alg: Algorithm, now: i64) -> Result<Sample, SampleError> {
    let signing_key = SigningKey::generate(alg, format!("sample-{alg}"), Some(ISSUER.to_owned()))
        .map_err(sample_error)?;
    let public = signing_key.public_jwk().map_err(sample_error)?;
    let bare_key = bare_key(public.material(), alg)?;
    let keys: Arc<dyn KeySource> =
        StaticKeys::new(JwkSet::from_keys(vec![public]).map_err(sample_error)?);
    let policy = Policy::builder()
        .issuer(TrustedIssuer::new(ISSUER, keys).audiences([AUDIENCE]))
        .build()
        .map_err(sample_error)?;
    let mut header = Map::new();
    header.insert("typ".into(), "at+jwt".into());
    let payload = Value::Object(access_token_claims(now)).to_string();
    let token = signing_key
        .sign_compact(header, payload.as_bytes())
        .map_err(sample_error)?;
    let jws = CompactJws::parse(&token).map_err(sample_error)?;
    let (signing_input, signature) = (jws.signing_input().to_vec(), jws.signature().to_vec());
    Ok(Sample {
        validator: Validator::new(policy),
        token,
        now,
        signing_input,
        signature,
        bare_key,
        signing_key,
    })
}

/// The same public key, parsed by aws-lc-rs without any of Keyscope's code in between.
fn bare_key(material: &KeyMaterial, alg: Algorithm) -> Result<ParsedPublicKey, SampleError> {
    match (material, alg) {
        (KeyMaterial::Ec { point, .. }, Algorithm::Es256) => {
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).map_err(sample_error)
        }
        (KeyMaterial::Ed25519 { x }, Algorithm::EdDsa) => {
            ParsedPublicKey::new(&signature::ED25519, x).map_err(sample_error)
        }
        (KeyMaterial::Rsa { n, e }, Algorithm::Rs256) => RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .map_err(sample_error),
        _ => Err(SampleError(format!("no bare verifier for {alg}"))),
    }
}

/// Times several operations in alternating slices of about 50 ms until each has run for
/// `budget`, and returns their rates in operations per second, in order. Alternating keeps
/// frequency scaling, steal time and background load from favouring whichever ran first, so
/// the ratios between the rates are trustworthy even on a noisy machine.
pub fn interleaved_rates(budget: Duration, ops: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    const SLICE: Duration = Duration::from_millis(50);
    const BATCH: u64 = 16;
    let mut totals = vec![(Duration::ZERO, 0u64); ops.len()];
    // Warm caches and branch predictors before timing.
    for op in ops.iter_mut() {
        for _ in 0..BATCH {
            op();
        }
    }
    while totals.iter().any(|(spent, _)| *spent < budget) {
        for (op, total) in ops.iter_mut().zip(totals.iter_mut()) {
            let start = Instant::now();
            let mut done = 0u64;
            while start.elapsed() < SLICE {
                for _ in 0..BATCH {
                    op();
                }
                done += BATCH;
            }
            total.0 += start.elapsed();
            total.1 += done;
        }
    }
    totals
        .into_iter()
        .map(|(spent, done)| done as f64 / spent.as_secs_f64())
        .collect()
}
