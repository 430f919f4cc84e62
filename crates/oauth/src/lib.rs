//! The protocol layer of Keyscope's OAuth 2.0 / OpenID Connect authorization server.
//!
//! This crate turns hostile bytes from the network into validated values, and validated values
//! into protocol output (error bodies, redirect URIs, `WWW-Authenticate` headers, the sign-in
//! page). It does **no I/O**: no sockets, no files, no clock, no database, no policy. The HTTP
//! server calls these functions and decides what to do with the answers; which clients exist,
//! which redirect URIs they registered and which scopes they may have are its business.
//!
//! # Modules
//! - [`error`]: the OAuth error codes ([`ErrorCode`]), [`OAuthError`] with its HTTP status and
//!   JSON body (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009, RFC 8707, OpenID Connect Core §3.1.2.6).
//! - [`form`]: a strict `application/x-www-form-urlencoded` parser ([`Form`]): bounded size and
//!   parameter count, strict percent-decoding, UTF-8 only, no repeated parameters.
//! - [`pkce`]: RFC 7636 with `S256` only.
//! - [`client_auth`]: client authentication at the token endpoint (RFC 6749 §2.3): HTTP Basic,
//!   `client_secret_post` or a public client, and the secret helpers.
//! - [`bearer`]: RFC 6750 bearer tokens in the `Authorization` header and the
//!   `WWW-Authenticate` challenge.
//! - [`redirect`]: redirect URI registration rules, exact matching (RFC 6749 §3.1.2.3, OAuth
//!   2.1, RFC 8252 loopback ports) and building the authorization response.
//! - [`scope`]: RFC 6749 §3.3 scope strings.
//! - [`resource`]: RFC 8707 resource indicators.
//! - [`page`]: the server-rendered, script-free sign-in and error pages and their security
//!   headers.
//! - [`token`]: random tokens and the digests under which codes and refresh tokens are stored.
//!
//! # Conventions
//! Every function that takes untrusted input bounds it, validates it against the grammar of the
//! relevant RFC and returns a precise error; nothing here panics on any input. Error
//! descriptions never contain secrets, and are restricted to the character set RFC 6749 allows
//! for `error_description`.

#![forbid(unsafe_code)]

mod b64;
pub mod bearer;
pub mod client_auth;
pub mod error;
pub mod form;
pub mod page;
pub mod pkce;
pub mod redirect;
pub mod resource;
pub mod scope;
pub mod token;

pub use bearer::{BearerError, bearer_token, www_authenticate};
pub use client_auth::{ClientCredentials, client_credentials};
pub use error::{ErrorCode, OAuthError};
pub use form::{Form, is_form_content_type};
pub use page::{PAGE_SECURITY_HEADERS, SignInPage, render_error_page};
