//! Keyscope's token validator: which issuers and keys are trusted, in which order the checks
//! run, and the one stable reason a token is refused.
//!
//! The crate does no network I/O and reads no clock unless asked ([`Validator::validate`]
//! takes the time as an argument). Keys arrive through the [`KeySource`] trait, so a service
//! can plug in a JWKS fetcher or its own in-process key registry.
//!
//! # The promise
//! A key is trusted only for the issuer (and tenant) it belongs to. In 2023 a consumer-account
//! signing key opened enterprise mailboxes because the validator checked the signature but
//! not whose key had made it; here that token is refused with
//! [`Reason::KeyIssuerMismatch`]. Missing information fails closed: in a key set shared by
//! several issuers a key without an `issuer` member vouches for nobody.
//!
//! # Check order (a contract)
//! 1. size → `too_large`
//! 2. structure, base64url, UTF-8, JSON objects, depth, header member types → `malformed`;
//!    repeated member names → `duplicate_member`
//! 3. `alg` → `alg_not_allowed`; `jku`/`jwk`/`x5u`/`x5c`/`crit`/`b64` → `unsupported_header`;
//!    `typ` → `token_type_mismatch`
//! 4. key lookup by `kid` → `unknown_key`
//! 5. revoked → `key_revoked`; unusable → `key_not_usable`; wrong `alg` for the key →
//!    `alg_not_allowed`; validation time outside the key's window → `key_expired`
//! 6. signature → `bad_signature`
//! 7. claim presence and types → `missing_claim` / `invalid_claim`
//! 8. `iss` → `issuer_mismatch`
//! 9. tenant → `tenant_mismatch`; key↔issuer binding → `key_issuer_mismatch`
//! 10. audience → `audience_mismatch`
//! 11. `exp` → `expired`; `nbf`/`iat` in the future → `not_yet_valid`; `iat` outside the
//!     key's window → `key_expired`
//!
//! `token_revoked` and `token_not_issued` are reserved for first-party resources that consult
//! the issuer's ledger.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod decision;
pub mod policy;
pub mod reason;
pub mod sample;
pub mod validator;

pub use decision::{Accepted, Decision, Rejected, TokenFacts};
pub use policy::{
    DEFAULT_LEEWAY_SECONDS, KeySource, Policy, PolicyBuilder, PolicyError, StaticKeys,
    TENANT_PLACEHOLDER, TokenType, TrustedIssuer,
};
pub use reason::Reason;
pub use validator::{JwsVerified, Validator, verify_jws};
