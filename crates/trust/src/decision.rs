//! The outcome of a validation, carrying what an audit record needs either way.

use keyscope_jose::Algorithm;
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
    pub(crate) fn read_claims(&mut self, claims: &Map<String, Value>) {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        self.iss = text("iss");
        self.sub = text("sub");
        self.tid = text("tid");
        self.client_id = text("client_id").or_else(|| text("azp"));
        self.jti = text("jti");
        self.aud = match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The verified claims.
    pub claims: Map<String, Value>,
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
                "claims": a.claims,
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
