//! Strict JOSE for Keyscope: JWS compact serialization, JWK/JWKS parsing, signature
//! verification and signing, on `aws-lc-rs`.
//!
//! This crate is pure: no I/O, no clock, no policy. It answers "is this a well-formed token,
//! and does this key's signature over it verify?" and nothing more; which keys and issuers to
//! trust, and the claims, are the `keyscope-trust` crate's job.
//!
//! # Strictness (the point of the crate)
//! - base64url without padding, canonical only (unused trailing bits zero), no whitespace,
//!   exactly three segments; a token over [`jws::MAX_TOKEN_BYTES`] is refused unread;
//! - JSON must be valid UTF-8 with no duplicate member names at any depth and nesting bounded
//!   by [`json::MAX_DEPTH`];
//! - `alg` names are exact; `none` and HMAC cannot be represented ([`Algorithm`]);
//! - `jku`, `jwk`, `x5u`, `x5c`, `crit` and `b64` in a header are refused: keys never come
//!   from the token;
//! - a key accepts exactly one algorithm (its `alg`, or its type's default);
//! - ECDSA signatures are fixed-length `r||s` with both halves in range; RSA keys under 2048
//!   bits, keys whose `use` is not `sig` or whose `key_ops` lack `verify` are not usable;
//! - a JWKS with duplicate `kid`s or private members is an error, not a silent pick.
//!
//! # Non-features
//! - JWE, JSON serialization, detached and unencoded payloads: no Keyscope token uses them,
//!   and each is attack surface.
//! - ES512 / P-521 and secp256k1: not used by the issuers Keyscope targets.
//! - Fetching keys (`jku`, JWKS URLs): I/O belongs to the services.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alg;
pub mod b64;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod sign;

pub use alg::{Algorithm, KeyFamily};
pub use jwk::{Jwk, JwkError, JwkSet, KeyMaterial, Unusable, VerifyError};
pub use jws::{CompactJws, JwsError, MAX_TOKEN_BYTES};
pub use sign::{SignError, SigningKey};
