//! Keyscope's identity service: realms, OAuth 2.0 / OpenID Connect endpoints, key lifecycle, issuance.
