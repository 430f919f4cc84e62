#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Two genuine 2016 ID tokens and the keys their issuers published (`../shared/corpus/realworld`):
//! one signed by Microsoft's consumer-account (MSA) key `1LTMzakihiRla_8z2BEJVXeWMqo`, the key
//! Storm-0558 used in 2023, and one signed by Google. They verify at their own time, and the
//! validator refuses them once the key's certificate has expired, when the key id is revoked,
//! and at a validator that trusts only an enterprise tenant.
//!
//! A missing corpus fails these tests unless `KEYSCOPE_SKIP_CORPUS=1`.

use std::sync::Arc;

use keyscope_jose::{Algorithm, JwkSet, b64};
use keyscope_trust::{
    Decision, KeySource, Policy, Reason, StaticKeys, TENANT_PLACEHOLDER, TokenType, TrustedIssuer,
    Validator,
};
use serde_json::{Map, Value};

const CORPUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/");

const MSA_KID: &str = "1LTMzakihiRla_8z2BEJVXeWMqo";
const MSA_IAT: i64 = 1_469_765_135;
const MSA_EXP: i64 = 1_469_851_535;
/// The `x5c` certificate's validity: 2016-04-05T14:43:35Z .. 2021-04-04T14:43:35Z.
const MSA_CERT_NOT_BEFORE: i64 = 1_459_867_415;
const MSA_CERT_NOT_AFTER: i64 = 1_617_547_415;
/// Microsoft's own enterprise tenant: the kind of tenant the forged 2023 tokens aimed at.
const ENTERPRISE_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The consumer (MSA) tenant that the token's `iss` and `tid` name.
const CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const ENTRA_TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

const GOOGLE_IAT: i64 = 1_470_217_781;
const GOOGLE_EXP: i64 = 1_470_221_381;

/// Reads `realworld.json`. `None` (skip) only when it is missing and `KEYSCOPE_SKIP_CORPUS=1`.
fn corpus() -> Option<Map<String, Value>> {
    let path = format!("{CORPUS_DIR}realworld/realworld.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).expect("realworld.json parses")),
        Err(error) => {
            if std::env::var("KEYSCOPE_SKIP_CORPUS").as_deref() == Ok("1") {
                println!(
                    "skipping: corpus file {path} is unavailable ({error}) and KEYSCOPE_SKIP_CORPUS=1"
                );
                None
            } else {
                panic!(
                    "corpus file {path} is unavailable ({error}); put the shared corpus beside \
                     the clone (../shared/corpus) or set KEYSCOPE_SKIP_CORPUS=1 to skip"
                );
            }
        }
    }
}

/// One token with its key set and its (unverified) claims.
struct Vector {
    token: String,
    jwk: Value,
    keys: Arc<dyn KeySource>,
    claims: Map<String, Value>,
}

impl Vector {
    fn load(corpus: &Map<String, Value>, token: &str, jwk: &str) -> Vector {
        let token = corpus[token]
            .as_str()
            .expect("token is a string")
            .to_owned();
        let jwk = corpus[jwk].clone();
        let set = JwkSet::parse_set_or_key(&serde_json::to_vec(&jwk).unwrap())
            .expect("the published key parses");
        let payload = token.split('.').nth(1).expect("three segments");
        let claims: Map<String, Value> =
            serde_json::from_slice(&b64::decode_url(payload.as_bytes()).unwrap()).unwrap();
        Vector {
            token,
            jwk,
            keys: StaticKeys::new(set),
            claims,
        }
    }

    fn claim(&self, name: &str) -> &str {
        self.claims[name].as_str().expect("string claim")
    }

    fn time(&self, name: &str) -> i64 {
        self.claims[name].as_i64().expect("numeric claim")
    }
}

fn validator(
    issuer: TrustedIssuer,
    configure: impl FnOnce(PolicyParts) -> PolicyParts,
) -> Validator {
    let parts = configure(PolicyParts {
        issuers: vec![issuer],
        revoked: Vec::new(),
    });
    let mut builder = Policy::builder().token_type(TokenType::Jwt);
    for issuer in parts.issuers {
        builder = builder.issuer(issuer);
    }
    for kid in parts.revoked {
        builder = builder.revoke_kid(kid);
    }
    Validator::new(builder.build().expect("policy builds"))
}

struct PolicyParts {
    issuers: Vec<TrustedIssuer>,
    revoked: Vec<String>,
}

fn reason(decision: &Decision) -> Reason {
    match decision {
        Decision::Accepted(accepted) => panic!("unexpectedly accepted: {:?}", accepted.claims()),
        Decision::Rejected(rejected) => rejected.reason,
    }
}

fn accepted(decision: Decision) -> keyscope_trust::Accepted {
    match decision {
        Decision::Accepted(accepted) => *accepted,
        Decision::Rejected(rejected) => {
            panic!("rejected {}: {}", rejected.reason, rejected.detail)
        }
    }
}

fn msa(corpus: &Map<String, Value>) -> Vector {
    let msa = Vector::load(corpus, "msa_token", "msa_jwk");
    assert_eq!(msa.time("iat"), MSA_IAT);
    assert_eq!(msa.time("exp"), MSA_EXP);
    assert_eq!(msa.claim("tid"), CONSUMER_TENANT);
    msa
}

/// The MSA key as published: no `alg` (so RS256 by default), an `issuer` member and an `x5c`
/// certificate whose validity becomes the key's window.
#[test]
fn msa_key_is_parsed_as_published() {
    let Some(corpus) = corpus() else { return };
    let msa = msa(&corpus);
    let set = JwkSet::parse_set_or_key(&serde_json::to_vec(&msa.jwk).unwrap()).unwrap();
    let key = set.get(MSA_KID).expect("the key is found by kid");
    assert!(msa.jwk.get("alg").is_none());
    assert_eq!(key.algorithm(), Ok(Algorithm::Rs256));
    assert_eq!(key.not_before(), Some(MSA_CERT_NOT_BEFORE));
    assert_eq!(key.not_after(), Some(MSA_CERT_NOT_AFTER));
    // The key's issuer is the consumer tenant's issuer spelled out, not a `{tenantid}` template,
    // so an exact trusted issuer equal to the token's `iss` satisfies the key binding.
    assert_eq!(key.issuer(), Some(msa.claim("iss")));
    assert!(!msa.claim("iss").contains(TENANT_PLACEHOLDER));
}

/// (a) Accepted at a time inside [iat, exp) with the token's own issuer and audience.
#[test]
fn msa_token_verifies_at_its_own_time() {
    let Some(corpus) = corpus() else { return };
    let msa = msa(&corpus);
    let iss = msa.claim("iss").to_owned();
    let aud = msa.claim("aud").to_owned();
    let exact = validator(
        TrustedIssuer::new(iss.clone(), Arc::clone(&msa.keys)).audiences([aud.clone()]),
        |p| p,
    );
    for now in [MSA_IAT, MSA_IAT + 3_600, MSA_EXP - 1] {
        let ok = accepted(exact.validate(&msa.token, now));
        assert_eq!(ok.alg, Algorithm::Rs256);
        assert_eq!(ok.kid.as_deref(), Some(MSA_KID));
        assert_eq!(ok.issuer, iss);
        assert_eq!(ok.trusted_issuer, iss);
        assert_eq!(ok.claims()["tid"], CONSUMER_TENANT);
        assert_eq!(ok.facts.aud, std::slice::from_ref(&aud));
        assert_eq!(ok.facts.sub.as_deref(), Some(msa.claim("sub")));
    }

    // The Entra template also accepts it: the template makes the key set shared, and the key
    // names its issuer, which equals the token's `iss` (tenant = the consumer tenant).
    let template = validator(
        TrustedIssuer::new(ENTRA_TEMPLATE, Arc::clone(&msa.keys)).audiences([aud]),
        |p| p,
    );
    let ok = accepted(template.validate(&msa.token, MSA_IAT + 60));
    assert_eq!(ok.trusted_issuer, ENTRA_TEMPLATE);
    assert_eq!(ok.issuer, iss);

    // Not an access token: an at+jwt policy refuses it on its typ.
    let strict_type = Validator::new(
        Policy::builder()
            .issuer(TrustedIssuer::new(iss, Arc::clone(&msa.keys)))
            .build()
            .unwrap(),
    );
    assert_eq!(
        reason(&strict_type.validate(&msa.token, MSA_IAT + 60)),
        Reason::TokenTypeMismatch
    );
}

/// (b) In 2023 the key's certificate (NotAfter 2021-04-04) has expired. `exp` (2016) has
/// passed as well, but key state is step 5 and time claims step 11: `key_expired` decides.
#[test]
fn msa_token_is_refused_once_the_certificate_expired() {
    let Some(corpus) = corpus() else { return };
    let msa = msa(&corpus);
    let v = validator(
        TrustedIssuer::new(msa.claim("iss"), Arc::clone(&msa.keys)).audiences([msa.claim("aud")]),
        |p| p,
    );
    let decision = v.validate(&msa.token, 1_700_000_000);
    assert_eq!(reason(&decision), Reason::KeyExpired);
    assert_eq!(decision.facts().kid.as_deref(), Some(MSA_KID));
    assert_eq!(decision.facts().tid.as_deref(), Some(CONSUMER_TENANT));
    // One second after NotAfter is already too late; at NotAfter the key is still in its
    // window, and then `exp` (2016) is what refuses the token.
    assert_eq!(
        reason(&v.validate(&msa.token, MSA_CERT_NOT_AFTER + 1)),
        Reason::KeyExpired
    );
    assert_eq!(
        reason(&v.validate(&msa.token, MSA_CERT_NOT_AFTER)),
        Reason::Expired
    );
    // Before the certificate's NotBefore the key is not yet valid either.
    assert_eq!(
        reason(&v.validate(&msa.token, MSA_CERT_NOT_BEFORE - 1)),
        Reason::KeyExpired
    );
}

/// (c) A revoked kid is refused before the signature is even checked.
#[test]
fn msa_token_is_refused_when_the_kid_is_revoked() {
    let Some(corpus) = corpus() else { return };
    let msa = msa(&corpus);
    let v = validator(
        TrustedIssuer::new(msa.claim("iss"), Arc::clone(&msa.keys)).audiences([msa.claim("aud")]),
        |mut p| {
            p.revoked.push(MSA_KID.to_owned());
            p
        },
    );
    assert_eq!(
        reason(&v.validate(&msa.token, MSA_IAT + 60)),
        Reason::KeyRevoked
    );
    // Revocation (step 5) also comes before the expired certificate (later in step 5).
    assert_eq!(
        reason(&v.validate(&msa.token, 1_700_000_000)),
        Reason::KeyRevoked
    );
}

/// (d) A validator that trusts only an enterprise tenant refuses the consumer token.
#[test]
fn msa_token_is_refused_by_an_enterprise_only_validator() {
    let Some(corpus) = corpus() else { return };
    let msa = msa(&corpus);
    let now = MSA_IAT + 60;

    // Template issuer, tenants = [the enterprise tenant], keys = the MSA set. Walking the check
    // order in crates/trust/src/lib.rs: steps 1-7 pass (well-formed RS256 JWT, kid found, key
    // valid in 2016, signature genuine, claims present); step 8 passes because the token's
    // `iss` (https://login.microsoftonline.com/9188040d-…/v2.0) matches the template, with
    // tenant segment 9188040d-…; step 9 first checks the tenant: `tid` equals the segment, but
    // it is not in the allowed list, so the decision is `tenant_mismatch` (the key↔issuer
    // binding, the second half of step 9, is never reached).
    let enterprise = validator(
        TrustedIssuer::new(ENTRA_TEMPLATE, Arc::clone(&msa.keys))
            .audiences([msa.claim("aud")])
            .tenants([ENTERPRISE_TENANT]),
        |p| p,
    );
    let decision = enterprise.validate(&msa.token, now);
    assert_eq!(reason(&decision), Reason::TenantMismatch);
    assert_eq!(decision.facts().tid.as_deref(), Some(CONSUMER_TENANT));

    // Control: the same policy with the consumer tenant allowed accepts it, so the tenant
    // list alone made the difference.
    let both = validator(
        TrustedIssuer::new(ENTRA_TEMPLATE, Arc::clone(&msa.keys))
            .audiences([msa.claim("aud")])
            .tenants([ENTERPRISE_TENANT, CONSUMER_TENANT]),
        |p| p,
    );
    assert!(both.validate(&msa.token, now).is_accepted());

    // Trusting the enterprise tenant's exact issuer instead: the consumer `iss` matches no
    // trusted issuer, so step 8 decides with `issuer_mismatch`.
    let exact_enterprise = validator(
        TrustedIssuer::new(
            format!("https://login.microsoftonline.com/{ENTERPRISE_TENANT}/v2.0"),
            Arc::clone(&msa.keys),
        )
        .audiences([msa.claim("aud")]),
        |p| p,
    );
    assert_eq!(
        reason(&exact_enterprise.validate(&msa.token, now)),
        Reason::IssuerMismatch
    );

    // The consumer issuer trusted with its own keys, but an enterprise issuer listed beside it
    // sharing the same key set: the token is still the consumer's, and the key names the
    // consumer issuer, so it is accepted for that issuer only.
    let shared = validator(
        TrustedIssuer::new(msa.claim("iss"), Arc::clone(&msa.keys)),
        |mut p| {
            p.issuers.push(TrustedIssuer::new(
                format!("https://login.microsoftonline.com/{ENTERPRISE_TENANT}/v2.0"),
                Arc::clone(&msa.keys),
            ));
            p
        },
    );
    let ok = accepted(shared.validate(&msa.token, now));
    assert_eq!(ok.trusted_issuer, msa.claim("iss"));
}

/// (e) The Google token verifies at its own time and is `expired` an hour after `exp`.
#[test]
fn google_token_verifies_then_expires() {
    let Some(corpus) = corpus() else { return };
    let google = Vector::load(&corpus, "google_token", "google_jwk");
    assert_eq!(google.time("iat"), GOOGLE_IAT);
    assert_eq!(google.time("exp"), GOOGLE_EXP);
    let iss = google.claim("iss").to_owned();
    assert_eq!(iss, "https://accounts.google.com");
    let aud = google.claim("aud").to_owned();
    let v = validator(
        TrustedIssuer::new(iss.clone(), Arc::clone(&google.keys)).audiences([aud.clone()]),
        |p| p,
    );

    let ok = accepted(v.validate(&google.token, GOOGLE_IAT + 60));
    assert_eq!(ok.alg, Algorithm::Rs256);
    assert_eq!(ok.issuer, iss);
    assert_eq!(ok.claims()["email"], "petebomber@gmail.com");
    assert_eq!(
        ok.facts.client_id.as_deref(),
        Some(aud.as_str()),
        "azp stands in for client_id"
    );
    assert!(v.validate(&google.token, GOOGLE_EXP - 1).is_accepted());
    // Within the 60 s leeway, still accepted; an hour later, expired.
    assert!(v.validate(&google.token, GOOGLE_EXP + 59).is_accepted());
    assert_eq!(
        reason(&v.validate(&google.token, GOOGLE_EXP + 3_600)),
        Reason::Expired
    );

    // Another audience is refused.
    let other_aud = validator(
        TrustedIssuer::new(iss, Arc::clone(&google.keys)).audiences(["someone-else"]),
        |p| p,
    );
    assert_eq!(
        reason(&other_aud.validate(&google.token, GOOGLE_IAT + 60)),
        Reason::AudienceMismatch
    );

    // Google's key cannot vouch for Microsoft's token and vice versa: with Google's key only,
    // the MSA kid is unknown.
    let msa = msa(&corpus);
    let cross = validator(
        TrustedIssuer::new(msa.claim("iss"), Arc::clone(&google.keys)),
        |p| p,
    );
    assert_eq!(
        reason(&cross.validate(&msa.token, MSA_IAT + 60)),
        Reason::UnknownKey
    );
}
