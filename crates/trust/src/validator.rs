//! The check sequence. Every step either passes or returns the one reason that decides.

use std::sync::Arc;

use keyscope_jose::json::{self, JsonError, Kind, Number, ObjectView, RawValue};
use keyscope_jose::{Algorithm, CompactJws, Jwk, JwkSet, JwsError, MAX_TOKEN_BYTES, VerifyError};

use crate::decision::{Accepted, Decision, Rejected, TokenFacts};
use crate::policy::{IssuerEntry, IssuerPattern, Policy, TENANT_PLACEHOLDER, TokenType};
use crate::reason::Reason;

type Failure = (Reason, String);

fn fail<T>(reason: Reason, detail: impl Into<String>) -> Result<T, Failure> {
    Err((reason, detail.into()))
}

/// Validates tokens against a [`Policy`]. Cheap to share between threads.
pub struct Validator {
    policy: Policy,
}

/// A token whose signature verified at the JWS level only ([`verify_jws`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsVerified {
    /// The algorithm.
    pub alg: Algorithm,
    /// The `kid` of the key used.
    pub kid: Option<String>,
    /// The verified payload bytes.
    pub payload: Vec<u8>,
}

impl Validator {
    /// A validator for this policy.
    pub fn new(policy: Policy) -> Validator {
        Validator { policy }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Validates `token` at `now` (seconds since the Unix epoch). Pure: the clock is an input.
    pub fn validate(&self, token: &str, now: i64) -> Decision {
        let mut facts = TokenFacts::default();
        match self.run(token, now, &mut facts) {
            Ok(mut accepted) => {
                accepted.facts = facts;
                Decision::Accepted(Box::new(accepted))
            }
            Err((reason, detail)) => Decision::Rejected(Box::new(Rejected {
                reason,
                detail,
                facts,
            })),
        }
    }

    /// Validates at the current system time.
    pub fn validate_now(&self, token: &str) -> Decision {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.validate(token, now)
    }

    fn run(&self, token: &str, now: i64, facts: &mut TokenFacts) -> Result<Accepted, Failure> {
        let policy = &self.policy;

        // 1–2. Size, structure, strict JSON for header and claims.
        let jws = parse_structure(token)?;
        facts.alg = Some(jws.alg_name().to_owned());
        facts.kid = jws.kid().map(str::to_owned);
        let claims = json::scan_object(jws.payload()).or_else(|e| match e {
            JsonError::DuplicateMember(name) => fail(
                Reason::DuplicateMember,
                format!("duplicate member {name:?} in the claims"),
            ),
            JsonError::NotObject => fail(Reason::Malformed, "the claims are not a JSON object"),
            other => fail(Reason::Malformed, format!("claims: {other}")),
        })?;
        facts.read_claims(&claims);

        // 3. Header: algorithm, forbidden members, token type.
        let alg = check_header(&jws)?;
        let typ = jws.typ();
        if !policy.token_type.accepts(typ) {
            return fail(
                Reason::TokenTypeMismatch,
                format!(
                    "typ {} does not match the required token type {}",
                    typ.map_or_else(|| "(absent)".to_owned(), |t| format!("{t:?}")),
                    policy.token_type.name()
                ),
            );
        }

        // 4. Key lookup across the trusted key sets.
        let snapshots: Vec<Arc<JwkSet>> = policy.sources.iter().map(|s| s.key_set()).collect();
        let unverified_iss = facts.iss.as_deref();
        let (source, key) = self.find_key(&snapshots, jws.kid(), alg, unverified_iss)?;

        // 5. Key state.
        if let Some(kid) = key.kid()
            && policy.is_revoked(kid)
        {
            return fail(Reason::KeyRevoked, format!("key {kid:?} has been revoked"));
        }
        check_key_usable(key, alg)?;
        if !key.valid_at(now) {
            return fail(
                Reason::KeyExpired,
                format!(
                    "key {} is outside its validity window {} at {now}",
                    key_name(key),
                    window(key)
                ),
            );
        }

        // 6. Signature.
        verify_signature(key, alg, &jws)?;

        // 7. Claim presence and types.
        let access_token = match policy.token_type {
            TokenType::AccessToken => true,
            TokenType::Jwt => false,
            TokenType::Any => TokenType::is_access_token_typ(typ),
        };
        let times = check_claims(&claims, access_token)?;
        drop(claims);
        // Both token types require iss, and its type was checked: it is in the facts.
        let iss = facts.iss.as_deref().unwrap_or_default();

        // 8. Issuer.
        let (entry, segment) = self.match_issuer(iss)?;

        // 9. Tenant, then the key's binding to the issuer.
        let tid = facts.tid.as_deref();
        check_tenant(entry, segment, tid)?;
        check_key_binding(entry, source, key, iss, tid)?;

        // 10. Audience.
        if !entry.audiences.is_empty() && !facts.aud.iter().any(|a| entry.audiences.contains(a)) {
            return fail(
                Reason::AudienceMismatch,
                format!(
                    "aud {:?} names none of the required audiences {:?}",
                    facts.aud, entry.audiences
                ),
            );
        }

        // 11. Time.
        check_times(&times, now, policy.leeway, key)?;

        Ok(Accepted {
            issuer: iss.to_owned(),
            alg,
            kid: key.kid().map(str::to_owned),
            // The scan above proved the payload is UTF-8 JSON.
            claims_json: String::from_utf8(jws.into_payload()).unwrap_or_default(),
            trusted_issuer: entry.issuer.clone(),
            facts: TokenFacts::default(),
        })
    }

    /// Finds the one key that may have signed. With a `kid`, the key of that id; if several
    /// trusted sets hold that id, the set of the issuer the token names is preferred (the
    /// binding check still decides later). Without a `kid`, exactly one key of a fitting type
    /// must exist, or the choice would be a guess.
    fn find_key<'s>(
        &self,
        snapshots: &'s [Arc<JwkSet>],
        kid: Option<&str>,
        alg: Algorithm,
        unverified_iss: Option<&str>,
    ) -> Result<(usize, &'s Jwk), Failure> {
        let mut candidates: Vec<(usize, &Jwk)> = Vec::new();
        for (source, set) in snapshots.iter().enumerate() {
            match kid {
                Some(kid) => candidates.extend(set.get(kid).map(|key| (source, key))),
                None => candidates.extend(
                    set.keys()
                        .iter()
                        .filter(|key| key.could_sign(alg))
                        .map(|key| (source, key)),
                ),
            }
        }
        // Narrowing by the (unverified) issuer only disambiguates a kid that several sets
        // share; without a kid, more than one fitting key means the token is ambiguous.
        if candidates.len() > 1
            && kid.is_some()
            && let Some(iss) = unverified_iss
        {
            candidates.retain(|(source, _)| {
                self.policy
                    .issuers
                    .iter()
                    .any(|e| e.source == *source && e.pattern.matches(iss).is_some())
            });
        }
        match (candidates.as_slice(), kid) {
            ([(source, key)], _) => Ok((*source, *key)),
            ([], Some(kid)) => fail(
                Reason::UnknownKey,
                format!("no trusted key has kid {kid:?}"),
            ),
            ([], None) => fail(
                Reason::UnknownKey,
                format!("the token has no kid and no trusted key fits {alg}"),
            ),
            (_, Some(kid)) => fail(
                Reason::UnknownKey,
                format!("kid {kid:?} is ambiguous across trusted key sets"),
            ),
            (_, None) => fail(
                Reason::UnknownKey,
                format!("the token has no kid and several trusted keys fit {alg}"),
            ),
        }
    }

    fn match_issuer<'i>(&self, iss: &'i str) -> Result<(&IssuerEntry, Option<&'i str>), Failure> {
        let issuers = &self.policy.issuers;
        let exact = issuers
            .iter()
            .find(|e| matches!(&e.pattern, IssuerPattern::Exact(x) if x == iss));
        if let Some(entry) = exact {
            return Ok((entry, None));
        }
        for entry in issuers {
            if let IssuerPattern::Template { .. } = entry.pattern
                && let Some(segment) = entry.pattern.matches(iss)
            {
                return Ok((entry, Some(segment)));
            }
        }
        fail(
            Reason::IssuerMismatch,
            format!("iss {iss:?} is not a trusted issuer"),
        )
    }
}

/// Signature-level verification only (no claims, no time, no issuer policy): the structure,
/// header, key lookup, key usability and signature checks of the validator, in the same order
/// and with the same reason codes. For interoperability testing (`keyscope jws verify`).
pub fn verify_jws(token: &str, keys: &JwkSet) -> Result<JwsVerified, Box<Rejected>> {
    let mut facts = TokenFacts::default();
    let result = (|| {
        let jws = parse_structure(token)?;
        facts.alg = Some(jws.alg_name().to_owned());
        facts.kid = jws.kid().map(str::to_owned);
        let alg = check_header(&jws)?;
        let key = match jws.kid() {
            Some(kid) => keys
                .get(kid)
                .ok_or_else(|| (Reason::UnknownKey, format!("no key has kid {kid:?}")))?,
            None => {
                let mut fitting = keys.keys().iter().filter(|k| k.could_sign(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => key,
                    _ => {
                        return fail(
                            Reason::UnknownKey,
                            format!("the token has no kid and not exactly one key fits {alg}"),
                        );
                    }
                }
            }
        };
        check_key_usable(key, alg)?;
        verify_signature(key, alg, &jws)?;
        Ok(JwsVerified {
            alg,
            kid: key.kid().map(str::to_owned),
            payload: jws.payload().to_vec(),
        })
    })();
    result.map_err(|(reason, detail)| {
        Box::new(Rejected {
            reason,
            detail,
            facts,
        })
    })
}

fn parse_structure(token: &str) -> Result<CompactJws<'_>, Failure> {
    if token.len() > MAX_TOKEN_BYTES {
        return fail(
            Reason::TooLarge,
            format!(
                "token is {} bytes, more than the {MAX_TOKEN_BYTES}-byte limit",
                token.len()
            ),
        );
    }
    CompactJws::parse(token).map_err(jws_failure)
}

fn check_header(jws: &CompactJws<'_>) -> Result<Algorithm, Failure> {
    jws.check_header().map_err(jws_failure)
}

fn jws_failure(error: JwsError) -> Failure {
    (Reason::from(&error), error.to_string())
}

fn check_key_usable(key: &Jwk, alg: Algorithm) -> Result<(), Failure> {
    key.check_usable_for(alg)
        .map_err(|e| verify_failure(key, e))
}

fn verify_signature(key: &Jwk, alg: Algorithm, jws: &CompactJws<'_>) -> Result<(), Failure> {
    key.verify_signature(alg, jws.signing_input(), jws.signature())
        .map_err(|e| verify_failure(key, e))
}

fn verify_failure(key: &Jwk, error: VerifyError) -> Failure {
    let reason = match &error {
        VerifyError::KeyNotUsable(_) => Reason::KeyNotUsable,
        VerifyError::AlgNotAllowed { .. } => Reason::AlgNotAllowed,
        VerifyError::BadSignature(_) => Reason::BadSignature,
    };
    (reason, format!("key {}: {error}", key_name(key)))
}

fn key_name(key: &Jwk) -> String {
    key.kid()
        .map_or_else(|| "(no kid)".to_owned(), |kid| format!("{kid:?}"))
}

fn window(key: &Jwk) -> String {
    let show = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
    format!("[{}, {}]", show(key.not_before()), show(key.not_after()))
}

struct TimeClaims {
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

const ACCESS_TOKEN_REQUIRED: [&str; 7] = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"];
const JWT_REQUIRED: [&str; 3] = ["iss", "aud", "exp"];
/// A bit per claim that some token type requires (0 for others).
fn required_claim_bit(name: &str) -> u8 {
    match name {
        "iss" => 1,
        "sub" => 2,
        "aud" => 4,
        "exp" => 8,
        "iat" => 16,
        "jti" => 32,
        "client_id" => 64,
        _ => 0,
    }
}

/// Claims that must be strings when present.
fn is_string_claim(name: &str) -> bool {
    matches!(
        name,
        "iss" | "sub" | "jti" | "client_id" | "tid" | "scope" | "azp"
    )
}

fn check_claims(claims: &ObjectView<'_>, access_token: bool) -> Result<TimeClaims, Failure> {
    let required: &[&str] = if access_token {
        &ACCESS_TOKEN_REQUIRED
    } else {
        &JWT_REQUIRED
    };
    // Presence of every required claim, from one pass over the member names.
    let mut present = 0u8;
    for (name, _) in claims.members() {
        present |= required_claim_bit(name);
    }
    if let Some(missing) = required
        .iter()
        .find(|name| present & required_claim_bit(name) == 0)
    {
        let kind = if access_token {
            "an access token"
        } else {
            "a JWT"
        };
        return fail(
            Reason::MissingClaim,
            format!("{kind} requires the {missing:?} claim"),
        );
    }
    let mut times = TimeClaims {
        exp: None,
        nbf: None,
        iat: None,
    };
    // One pass over the members: claims are looked up by name only once each.
    for (name, value) in claims.members() {
        let name = name.as_ref();
        if is_string_claim(name) && value.kind() != Kind::String {
            return fail(
                Reason::InvalidClaim,
                format!("claim {name:?} must be a string"),
            );
        }
        match name {
            "aud" => {
                let valid = match value.kind() {
                    Kind::String => true,
                    Kind::Array => value.array_items().is_some_and(|items| {
                        !items.is_empty() && items.iter().all(|i| i.kind() == Kind::String)
                    }),
                    _ => false,
                };
                if !valid {
                    return fail(
                        Reason::InvalidClaim,
                        "claim \"aud\" must be a string or a non-empty array of strings",
                    );
                }
            }
            "exp" | "nbf" | "iat" => {
                let seconds = numeric_date(name, *value)?;
                match name {
                    "exp" => times.exp = Some(seconds),
                    "nbf" => times.nbf = Some(seconds),
                    _ => times.iat = Some(seconds),
                }
            }
            _ => {}
        }
    }
    Ok(times)
}

/// A NumericDate claim: a JSON number (never a string, CVE-2026-25537) of plausible size.
fn numeric_date(name: &str, value: RawValue<'_>) -> Result<i64, Failure> {
    if value.kind() != Kind::Number {
        return fail(
            Reason::InvalidClaim,
            format!("claim {name:?} must be a NumericDate number"),
        );
    }
    value
        .as_number()
        .and_then(Number::as_numeric_date)
        .ok_or_else(|| {
            (
                Reason::InvalidClaim,
                format!("claim {name:?} is not a usable NumericDate"),
            )
        })
}

fn check_tenant(
    entry: &IssuerEntry,
    segment: Option<&str>,
    tid: Option<&str>,
) -> Result<(), Failure> {
    if let Some(segment) = segment {
        match tid {
            None => {
                return fail(
                    Reason::TenantMismatch,
                    format!(
                        "issuer {:?} is per tenant but the token has no tid",
                        entry.issuer
                    ),
                );
            }
            Some(tid) if tid != segment => {
                return fail(
                    Reason::TenantMismatch,
                    format!("tid {tid:?} differs from the tenant {segment:?} in iss"),
                );
            }
            Some(_) => {}
        }
    }
    if !entry.tenants.is_empty() {
        match tid {
            Some(tid) if entry.tenants.iter().any(|t| t == tid) => {}
            Some(tid) => {
                return fail(
                    Reason::TenantMismatch,
                    format!("tenant {tid:?} is not allowed"),
                );
            }
            None => {
                return fail(
                    Reason::TenantMismatch,
                    "the token has no tid and only listed tenants are allowed",
                );
            }
        }
    }
    Ok(())
}

/// The key must come from the matched issuer's own key set, and if it names an issuer (with
/// `{tenantid}` replaced by the token's `tid`) that must be the token's `iss` exactly. In a
/// shared set a key that names no issuer is refused: fail closed, unlike the 2023 library
/// fix, which passed such keys.
fn check_key_binding(
    entry: &IssuerEntry,
    source: usize,
    key: &Jwk,
    iss: &str,
    tid: Option<&str>,
) -> Result<(), Failure> {
    if entry.source != source {
        return fail(
            Reason::KeyIssuerMismatch,
            format!(
                "key {} belongs to another issuer's key set, not to {:?}",
                key_name(key),
                entry.issuer
            ),
        );
    }
    match key.issuer() {
        Some(bound) => {
            let expanded = if bound.contains(TENANT_PLACEHOLDER) {
                match tid {
                    Some(tid) => bound.replace(TENANT_PLACEHOLDER, tid),
                    None => {
                        return fail(
                            Reason::KeyIssuerMismatch,
                            format!(
                                "key {} is bound to {bound:?} but the token has no tid",
                                key_name(key)
                            ),
                        );
                    }
                }
            } else {
                bound.to_owned()
            };
            if expanded != iss {
                return fail(
                    Reason::KeyIssuerMismatch,
                    format!(
                        "key {} belongs to issuer {expanded:?}, not {iss:?}",
                        key_name(key)
                    ),
                );
            }
            Ok(())
        }
        None if entry.shared => fail(
            Reason::KeyIssuerMismatch,
            format!(
                "key {} names no issuer and its key set is shared, so it cannot vouch for {iss:?}",
                key_name(key)
            ),
        ),
        None => Ok(()),
    }
}

fn check_times(times: &TimeClaims, now: i64, leeway: i64, key: &Jwk) -> Result<(), Failure> {
    if let Some(exp) = times.exp
        && now >= exp.saturating_add(leeway)
    {
        return fail(
            Reason::Expired,
            format!("expired at {exp} (now {now}, leeway {leeway} s)"),
        );
    }
    if let Some(nbf) = times.nbf
        && nbf > now.saturating_add(leeway)
    {
        return fail(
            Reason::NotYetValid,
            format!("not valid before {nbf} (now {now}, leeway {leeway} s)"),
        );
    }
    if let Some(iat) = times.iat {
        if iat > now.saturating_add(leeway) {
            return fail(
                Reason::NotYetValid,
                format!("issued in the future at {iat} (now {now}, leeway {leeway} s)"),
            );
        }
        if !key.valid_at(iat) {
            return fail(
                Reason::KeyExpired,
                format!(
                    "issued at {iat}, outside the validity window {} of key {}",
                    window(key),
                    key_name(key)
                ),
            );
        }
    }
    Ok(())
}
