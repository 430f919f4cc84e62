//! What a validator trusts: issuers, their key sets, audiences, tenants, token type, leeway and
//! revoked key ids.

use std::collections::HashSet;
use std::sync::Arc;

use keyscope_jose::JwkSet;
use thiserror::Error;

/// The placeholder for a tenant id in issuers (Entra ID's convention), in both trusted issuers
/// and a JWK's `issuer` member.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Default clock leeway in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u32 = 60;

/// Largest clock leeway accepted: beyond ten minutes a leeway hides a broken clock.
pub const MAX_LEEWAY_SECONDS: u32 = 600;

/// Where a trusted issuer's keys come from. The validator asks for a snapshot on every
/// validation, so an implementation can refresh keys (a JWKS fetcher) or revoke them (the
/// identity service's in-process registry) by swapping the set it returns.
pub trait KeySource: Send + Sync {
    /// The keys this source vouches for right now.
    fn key_set(&self) -> Arc<JwkSet>;
}

/// A fixed key set, for files and tests.
#[derive(Debug, Clone)]
pub struct StaticKeys(Arc<JwkSet>);

impl StaticKeys {
    /// Wraps a key set.
    pub fn new(set: JwkSet) -> Arc<StaticKeys> {
        Arc::new(StaticKeys(Arc::new(set)))
    }
}

impl KeySource for StaticKeys {
    fn key_set(&self) -> Arc<JwkSet> {
        Arc::clone(&self.0)
    }
}

/// Which `typ` a token must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenType {
    /// RFC 9068 access tokens: `typ` `at+jwt` or `application/at+jwt`.
    #[default]
    AccessToken,
    /// Plain JWTs: `typ` absent, `JWT` or `application/jwt`.
    Jwt,
    /// No `typ` requirement; the required claims follow the `typ` the token carries.
    Any,
}

impl TokenType {
    /// Whether `typ` is an access-token type (media types compare case-insensitively,
    /// RFC 7515 §4.1.9).
    pub fn is_access_token_typ(typ: Option<&str>) -> bool {
        typ.is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        })
    }

    /// Whether `typ` is a plain JWT type (or absent).
    pub fn is_plain_jwt_typ(typ: Option<&str>) -> bool {
        typ.is_none_or(|t| {
            t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt")
        })
    }

    /// Whether a token with this `typ` is acceptable.
    pub fn accepts(self, typ: Option<&str>) -> bool {
        match self {
            TokenType::AccessToken => TokenType::is_access_token_typ(typ),
            TokenType::Jwt => TokenType::is_plain_jwt_typ(typ),
            TokenType::Any => true,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TokenType::AccessToken => "at+jwt",
            TokenType::Jwt => "jwt",
            TokenType::Any => "any",
        }
    }
}

/// One issuer the validator trusts.
#[derive(Clone)]
pub struct TrustedIssuer {
    /// The exact `iss`, or a template with one [`TENANT_PLACEHOLDER`] path segment.
    pub issuer: String,
    /// The issuer's keys.
    pub keys: Arc<dyn KeySource>,
    /// Audiences of which `aud` must name at least one (empty: `aud` is not compared).
    pub audiences: Vec<String>,
    /// Tenants (`tid`) allowed (empty: any tenant).
    pub tenants: Vec<String>,
}

impl TrustedIssuer {
    /// An issuer with its keys, and no audience or tenant restriction yet.
    pub fn new(issuer: impl Into<String>, keys: Arc<dyn KeySource>) -> TrustedIssuer {
        TrustedIssuer {
            issuer: issuer.into(),
            keys,
            audiences: Vec::new(),
            tenants: Vec::new(),
        }
    }

    /// Requires one of these audiences.
    pub fn audiences<I: IntoIterator<Item = S>, S: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Allows only these tenants.
    pub fn tenants<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tenants: I) -> Self {
        self.tenants = tenants.into_iter().map(Into::into).collect();
        self
    }
}

/// A policy that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// Nothing would ever be accepted.
    #[error("no trusted issuer given")]
    NoIssuer,
    /// An empty issuer string.
    #[error("a trusted issuer must not be empty")]
    EmptyIssuer,
    /// The same issuer twice.
    #[error("issuer {0:?} is listed twice")]
    DuplicateIssuer(String),
    /// A template that is not one whole path segment, or has more than one placeholder.
    #[error(
        "issuer template {0:?} must contain {TENANT_PLACEHOLDER} once, as a whole path segment"
    )]
    BadTemplate(String),
    /// Leeway above [`MAX_LEEWAY_SECONDS`].
    #[error("leeway of {0} s is more than the maximum of {MAX_LEEWAY_SECONDS} s")]
    LeewayTooLarge(u32),
}

/// The pattern side of a trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IssuerPattern {
    Exact(String),
    Template { prefix: String, suffix: String },
}

impl IssuerPattern {
    fn parse(issuer: &str) -> Result<IssuerPattern, PolicyError> {
        if issuer.is_empty() {
            return Err(PolicyError::EmptyIssuer);
        }
        match issuer.split_once(TENANT_PLACEHOLDER) {
            None => Ok(IssuerPattern::Exact(issuer.to_owned())),
            Some((prefix, suffix)) => {
                let whole_segment = prefix.ends_with('/')
                    && (suffix.is_empty() || suffix.starts_with('/'))
                    && !suffix.contains(TENANT_PLACEHOLDER);
                if !whole_segment {
                    return Err(PolicyError::BadTemplate(issuer.to_owned()));
                }
                Ok(IssuerPattern::Template {
                    prefix: prefix.to_owned(),
                    suffix: suffix.to_owned(),
                })
            }
        }
    }

    /// For a template, the tenant segment `iss` fills in; for an exact issuer, `Some("")` on
    /// a match. `None` when `iss` does not match.
    pub(crate) fn matches<'i>(&self, iss: &'i str) -> Option<&'i str> {
        match self {
            IssuerPattern::Exact(exact) => (exact == iss).then_some(""),
            IssuerPattern::Template { prefix, suffix } => {
                let segment = iss
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix(suffix.as_str())?;
                is_tenant_segment(segment).then_some(segment)
            }
        }
    }
}

/// One non-empty path segment of unreserved and sub-delimiter characters: no `/`, `?`, `#`,
/// `%`-escapes, whitespace or controls, so a tenant cannot smuggle path structure.
pub(crate) fn is_tenant_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.len() <= 256
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub(crate) struct IssuerEntry {
    pub(crate) issuer: String,
    pub(crate) pattern: IssuerPattern,
    pub(crate) source: usize,
    pub(crate) shared: bool,
    pub(crate) audiences: Vec<String>,
    pub(crate) tenants: Vec<String>,
}

/// A validated set of trust decisions; build it with [`Policy::builder`].
pub struct Policy {
    pub(crate) issuers: Vec<IssuerEntry>,
    pub(crate) sources: Vec<Arc<dyn KeySource>>,
    pub(crate) token_type: TokenType,
    pub(crate) leeway: i64,
    pub(crate) revoked_kids: HashSet<String>,
}

impl Policy {
    /// Starts a policy.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            issuers: Vec::new(),
            token_type: TokenType::default(),
            leeway: DEFAULT_LEEWAY_SECONDS,
            revoked_kids: HashSet::new(),
        }
    }

    /// The required token type.
    pub fn token_type(&self) -> TokenType {
        self.token_type
    }

    /// Whether a key id is revoked.
    pub fn is_revoked(&self, kid: &str) -> bool {
        self.revoked_kids.contains(kid)
    }
}

/// Collects a [`Policy`].
pub struct PolicyBuilder {
    issuers: Vec<TrustedIssuer>,
    token_type: TokenType,
    leeway: u32,
    revoked_kids: HashSet<String>,
}

impl PolicyBuilder {
    /// Trusts an issuer.
    pub fn issuer(mut self, issuer: TrustedIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Sets the required token type (default: access tokens).
    pub fn token_type(mut self, token_type: TokenType) -> Self {
        self.token_type = token_type;
        self
    }

    /// Sets the clock leeway in seconds (default 60).
    pub fn leeway(mut self, seconds: u32) -> Self {
        self.leeway = seconds;
        self
    }

    /// Marks a key id as revoked.
    pub fn revoke_kid(mut self, kid: impl Into<String>) -> Self {
        self.revoked_kids.insert(kid.into());
        self
    }

    /// Checks the policy and computes which key sets are shared.
    ///
    /// A key set is *shared* when more than one trusted issuer uses it (the same
    /// [`KeySource`] object) or when it serves a templated issuer. In a shared set a key must
    /// name its issuer, since the set alone no longer says which issuer a key belongs to.
    pub fn build(self) -> Result<Policy, PolicyError> {
        if self.issuers.is_empty() {
            return Err(PolicyError::NoIssuer);
        }
        if self.leeway > MAX_LEEWAY_SECONDS {
            return Err(PolicyError::LeewayTooLarge(self.leeway));
        }
        let mut sources: Vec<Arc<dyn KeySource>> = Vec::new();
        let mut entries = Vec::with_capacity(self.issuers.len());
        for trusted in self.issuers {
            if entries
                .iter()
                .any(|e: &IssuerEntry| e.issuer == trusted.issuer)
            {
                return Err(PolicyError::DuplicateIssuer(trusted.issuer));
            }
            let pattern = IssuerPattern::parse(&trusted.issuer)?;
            let source = match sources.iter().position(|s| Arc::ptr_eq(s, &trusted.keys)) {
                Some(index) => index,
                None => {
                    sources.push(Arc::clone(&trusted.keys));
                    sources.len() - 1
                }
            };
            entries.push(IssuerEntry {
                issuer: trusted.issuer,
                pattern,
                source,
                shared: false,
                audiences: trusted.audiences,
                tenants: trusted.tenants,
            });
        }
        let shared_sources: Vec<bool> = (0..sources.len())
            .map(|source| {
                let users: Vec<&IssuerEntry> =
                    entries.iter().filter(|e| e.source == source).collect();
                users.len() > 1
                    || users
                        .iter()
                        .any(|e| matches!(e.pattern, IssuerPattern::Template { .. }))
            })
            .collect();
        for entry in &mut entries {
            entry.shared = shared_sources.get(entry.source).copied().unwrap_or(true);
        }
        Ok(Policy {
            issuers: entries,
            sources,
            token_type: self.token_type,
            leeway: i64::from(self.leeway),
            revoked_kids: self.revoked_kids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment() {
        let p = IssuerPattern::parse("https://login.example/{tenantid}/v2.0").unwrap();
        assert_eq!(
            p.matches("https://login.example/contoso/v2.0"),
            Some("contoso")
        );
        assert_eq!(p.matches("https://login.example//v2.0"), None);
        assert_eq!(p.matches("https://login.example/a/b/v2.0"), None);
        assert_eq!(p.matches("https://login.example/a?x/v2.0"), None);
        assert_eq!(p.matches("https://login.example/a%2Fb/v2.0"), None);
        assert_eq!(p.matches("https://login.example/../v2.0"), None);
        assert_eq!(p.matches("https://login.example/./v2.0"), None);
        let trailing = IssuerPattern::parse("https://ks.example/t/{tenantid}").unwrap();
        assert_eq!(trailing.matches("https://ks.example/t/acme"), Some("acme"));
        assert_eq!(trailing.matches("https://ks.example/t/acme/"), None);
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "https://x/{tenantid}{tenantid}",
            "https://x/t-{tenantid}",
            "https://x/{tenantid}x",
            "https://x/{tenantid}/{tenantid}",
        ] {
            assert!(matches!(
                IssuerPattern::parse(bad),
                Err(PolicyError::BadTemplate(_))
            ));
        }
    }

    #[test]
    fn token_types() {
        assert!(TokenType::AccessToken.accepts(Some("at+jwt")));
        assert!(TokenType::AccessToken.accepts(Some("application/at+jwt")));
        assert!(!TokenType::AccessToken.accepts(Some("JWT")));
        assert!(!TokenType::AccessToken.accepts(None));
        assert!(TokenType::Jwt.accepts(None));
        assert!(TokenType::Jwt.accepts(Some("JWT")));
        assert!(!TokenType::Jwt.accepts(Some("at+jwt")));
        assert!(TokenType::Any.accepts(Some("at+jwt")));
    }

    #[test]
    fn sharing_is_computed() {
        let keys: Arc<dyn KeySource> = StaticKeys::new(JwkSet::default());
        let other: Arc<dyn KeySource> = StaticKeys::new(JwkSet::default());
        let policy = Policy::builder()
            .issuer(TrustedIssuer::new("https://a", Arc::clone(&keys)))
            .issuer(TrustedIssuer::new("https://b", keys))
            .issuer(TrustedIssuer::new("https://c", other))
            .build()
            .unwrap();
        let shared: Vec<bool> = policy.issuers.iter().map(|e| e.shared).collect();
        assert_eq!(shared, [true, true, false]);
        assert_eq!(policy.sources.len(), 2);
    }
}
