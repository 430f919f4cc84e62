//! The identity service's settings, with the defaults the issue names.

/// Settings of the identity service. Durations are seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The externally visible base URL (no trailing slash); issuers are built from it.
    pub public_url: String,
    /// `Cache-Control: max-age` of the JWKS. A new key is published for two of these before
    /// it signs, so that every validator's cache has seen it.
    pub jwks_max_age: i64,
    /// Access-token lifetime.
    pub access_token_ttl: i64,
    /// ID-token lifetime.
    pub id_token_ttl: i64,
    /// Refresh-token lifetime (each rotation starts a new one).
    pub refresh_token_ttl: i64,
    /// Authorization-code lifetime.
    pub code_ttl: i64,
    /// How long a key signs before the next one takes over.
    pub rotation_period: i64,
    /// Signing algorithm for new keys (`ES256` or `EdDSA`).
    pub signing_alg: keyscope_jose::Algorithm,
    /// Clock leeway granted to validators, added to retention of retiring keys.
    pub leeway: i64,
}

impl IdentityConfig {
    /// The defaults: JWKS cached 300 s, access tokens 10 min, rotation every 24 h, ES256.
    pub fn new(public_url: &str) -> IdentityConfig {
        IdentityConfig {
            public_url: public_url.trim_end_matches('/').to_owned(),
            jwks_max_age: 300,
            access_token_ttl: 600,
            id_token_ttl: 600,
            refresh_token_ttl: 30 * 24 * 3600,
            code_ttl: 60,
            rotation_period: 24 * 3600,
            signing_alg: keyscope_jose::Algorithm::Es256,
            leeway: 60,
        }
    }

    /// How long a key is published before it may sign.
    pub fn publish_lead(&self) -> i64 {
        2 * self.jwks_max_age
    }

    /// The longest any token signed by a key stays valid after the key stops signing.
    pub fn longest_token_life(&self) -> i64 {
        self.access_token_ttl.max(self.id_token_ttl) + self.leeway
    }

    /// The issuer of a realm: `{public_url}/consumers` or `{public_url}/t/{tenant}`.
    pub fn issuer(&self, realm_id: &str) -> String {
        if realm_id == keyscope_store::CONSUMER_REALM {
            format!("{}/consumers", self.public_url)
        } else {
            format!("{}/t/{realm_id}", self.public_url)
        }
    }

    /// The mail service's resource identifier (the audience of tokens that open mailboxes):
    /// `{public_url}/jmap`.
    pub fn mail_resource(&self) -> String {
        format!("{}/jmap", self.public_url)
    }

    /// The realm an issuer belongs to, if it is one of ours.
    pub fn realm_of_issuer<'a>(&self, issuer: &'a str) -> Option<&'a str> {
        let rest = issuer.strip_prefix(self.public_url.as_str())?;
        if rest == "/consumers" {
            return Some(keyscope_store::CONSUMER_REALM);
        }
        let tenant = rest.strip_prefix("/t/")?;
        crate::names::check_tenant_name(tenant)
            .ok()
            .map(|()| tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_round_trip() {
        let config = IdentityConfig::new("https://id.example/");
        assert_eq!(config.issuer("consumers"), "https://id.example/consumers");
        assert_eq!(config.issuer("contoso"), "https://id.example/t/contoso");
        assert_eq!(
            config.realm_of_issuer("https://id.example/t/contoso"),
            Some("contoso")
        );
        assert_eq!(
            config.realm_of_issuer("https://id.example/consumers"),
            Some("consumers")
        );
        assert_eq!(config.realm_of_issuer("https://id.example/t/a/b"), None);
        assert_eq!(
            config.realm_of_issuer("https://evil.example/consumers"),
            None
        );
        assert_eq!(config.publish_lead(), 600);
    }
}
