//! The outcome of a validation, carrying what an audit record needs either way.

use std::borrow::Cow;

use keyscope_jose::Algorithm;
use keyscope_jose::json::{self, Kind, ObjectView};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::reason::Reason;

/// What the token says about itself. On acceptance these values are verified; on rejection
/// they are whatever could be read and must be treated as attacker-controlled (they are what a
/// detection needs: the `jti` of a forged token, the `kid` it named, the tenant it aimed at).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenFacts {
    /// `iss` claim.
    pub iss: Option<String>,
    /// `kid` header.
    pub kid: Option<String>,
    /// `alg` header, as written.
    pub alg: Option<String>,
    /// `sub` claim.
    pub sub: Option<String>,
    /// `tid` claim (tenant).
    pub tid: Option<String>,
    /// `client_id` claim (or `azp` when `client_id` is absent).
    pub client_id: Option<String>,
    /// `jti` claim.
    pub jti: Option<String>,
    /// `aud` claim, as a list.
    pub aud: Vec<String>,
}

impl TokenFacts {
    /// Reads the audit-relevant claims in one pass over the members, keeping only those of
    /// the right type (types are judged later, in check order).
    pub(crate) fn read_claims(&mut self, claims: &ObjectView<'_>) {
        let mut azp = None;
        for (name, value) in claims.members() {
            let text = || value.as_str().map(Cow::into_owned);
            match name.as_ref() {
                "iss" => self.iss = text(),
                "sub" => self.sub = text(),
                "tid" => self.tid = text(),
                "client_id" => self.client_id = text(),
                "azp" => azp = text(),
                "jti" => self.jti = text(),
                "aud" => {
                    self.aud = match value.kind() {
                        Kind::Array => value
                            .array_items()
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|item| item.as_str().map(Cow::into_owned))
                            .collect(),
                        _ => text().into_iter().collect(),
                    }
                }
                _ => {}
            }
        }
        if self.client_id.is_none() {
            self.client_id = azp;
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The verified claims as JSON text (strict JSON, already checked).
    pub claims_json: String,
    /// The algorithm of the signature.
    pub alg: Algorithm,
    /// The `kid` of the key that verified it (`None` for a key without `kid`).
    pub kid: Option<String>,
    /// The `iss` of the token, which a trusted issuer vouched for.
    pub issuer: String,
    /// The trusted issuer entry (exact or template) that matched.
    pub trusted_issuer: String,
    /// The verified facts, for the audit record.
    pub facts: TokenFacts,
}

impl Accepted {
    /// The verified claims as a map. Decoded on request: validation itself reads only the
    /// claims it checks, so services that need just the facts never pay for the whole map.
    pub fn claims(&self) -> Map<String, Value> {
        json::parse_object(self.claims_json.as_bytes()).unwrap_or_default()
    }
}

/// A refused token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The stable reason code.
    pub reason: Reason,
    /// A human-readable explanation (never contains key material).
    pub detail: String,
    /// What could be read from the token, unverified.
    pub facts: TokenFacts,
}

/// The validator's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Every check passed.
    Accepted(Box<Accepted>),
    /// The first failing check.
    Rejected(Box<Rejected>),
}

impl Decision {
    /// Whether the token was accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Decision::Accepted(_))
    }

    /// The rejection reason, if rejected.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Accepted(_) => None,
            Decision::Rejected(r) => Some(r.reason),
        }
    }

    /// The token facts (verified when accepted).
    pub fn facts(&self) -> &TokenFacts {
        match self {
            Decision::Accepted(a) => &a.facts,
            Decision::Rejected(r) => &r.facts,
        }
    }

    /// The decision as the JSON object `keyscope token verify` prints.
    pub fn to_json(&self) -> Value {
        match self {
            Decision::Accepted(a) => serde_json::json!({
                "valid": true,
                "claims": a.claims(),
                "kid": a.kid,
                "alg": a.alg,
                "issuer": a.issuer,
            }),
            Decision::Rejected(r) => serde_json::json!({
                "valid": false,
                "reason": r.reason,
                "detail": r.detail,
            }),
        }
    }
}
