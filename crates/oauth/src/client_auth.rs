//! Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).
//!
//! [`client_credentials`] extracts what the client presented, without deciding whether it is
//! right: the server looks the client up, checks that the method matches the client's
//! registered `token_endpoint_auth_method`, and compares [`secret_digest`] of the presented
//! secret with the stored digest using [`constant_time_eq`].
//!
//! Secrets are held in [`Zeroizing`] strings, never appear in error descriptions, and are
//! redacted from `Debug` output.

use std::fmt;

use aws_lc_rs::{constant_time, digest, rand};
use zeroize::Zeroizing;

use crate::b64;
use crate::error::OAuthError;
use crate::form::{Form, decode_component};

/// Longest accepted `Authorization` header value, in bytes.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// What a client presented to authenticate itself.
#[derive(Clone)]
pub enum ClientCredentials {
    /// `client_secret_basic`: HTTP Basic in the `Authorization` header (RFC 6749 §2.3.1).
    Basic {
        /// The client identifier (form-urldecoded).
        client_id: String,
        /// The client secret (form-urldecoded).
        secret: Zeroizing<String>,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the request body.
    Post {
        /// The client identifier.
        client_id: String,
        /// The client secret.
        secret: Zeroizing<String>,
    },
    /// No authentication, only `client_id` (a public client, `token_endpoint_auth_method`
    /// `none`).
    None {
        /// The client identifier.
        client_id: String,
    },
}

impl ClientCredentials {
    /// The client identifier.
    #[must_use]
    pub fn client_id(&self) -> &str {
        match self {
            ClientCredentials::Basic { client_id, .. }
            | ClientCredentials::Post { client_id, .. }
            | ClientCredentials::None { client_id } => client_id,
        }
    }

    /// The presented secret, if any.
    #[must_use]
    pub fn secret(&self) -> Option<&str> {
        match self {
            ClientCredentials::Basic { secret, .. } | ClientCredentials::Post { secret, .. } => {
                Some(secret.as_str())
            }
            ClientCredentials::None { .. } => None,
        }
    }

    /// The `token_endpoint_auth_method` name (RFC 7591 §2): `client_secret_basic`,
    /// `client_secret_post` or `none`.
    #[must_use]
    pub const fn method(&self) -> &'static str {
        match self {
            ClientCredentials::Basic { .. } => "client_secret_basic",
            ClientCredentials::Post { .. } => "client_secret_post",
            ClientCredentials::None { .. } => "none",
        }
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            ClientCredentials::Basic { .. } => "Basic",
            ClientCredentials::Post { .. } => "Post",
            ClientCredentials::None { .. } => "None",
        };
        let mut s = f.debug_struct(variant);
        s.field("client_id", &self.client_id());
        if self.secret().is_some() {
            s.field("secret", &"<redacted>");
        }
        s.finish()
    }
}

/// Extracts the client's credentials from the `Authorization` header and the request body.
///
/// `form` must be the parsed request **body**: RFC 6749 §2.3.1 forbids credentials in the
/// query string.
///
/// - `Authorization: Basic base64(urlencode(client_id) ":" urlencode(secret))` →
///   [`ClientCredentials::Basic`]; both parts are form-urldecoded (RFC 6749 §2.3.1), so a `:`
///   in a client id arrives as `%3A`. A `client_id` in the body must then be equal to the
///   header's.
/// - `client_id` and `client_secret` in the body → [`ClientCredentials::Post`].
/// - `client_id` alone → [`ClientCredentials::None`].
///
/// # Errors
/// - `invalid_request` if more than one method is used (RFC 6749 §2.3: "MUST NOT use more than
///   one authentication method in each request"), if the body's `client_id` differs from the
///   Basic one, or if `client_secret` comes without `client_id`;
/// - `invalid_client` for a malformed Basic header (bad base64, no `:`, empty id or secret, bad
///   percent-encoding, control characters), an `Authorization` scheme other than Basic, JWT
///   client assertions (not supported), or no client identification at all.
pub fn client_credentials(
    authorization: Option<&str>,
    form: &Form,
) -> Result<ClientCredentials, OAuthError> {
    let body_id = form.get("client_id");
    let body_secret = form.get("client_secret");
    let assertion = form.contains("client_assertion") || form.contains("client_assertion_type");

    if let Some(header) = authorization {
        let (client_id, secret) = parse_basic(header)?;
        if body_secret.is_some() || assertion {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method used",
            ));
        }
        if body_id.is_some_and(|id| id != client_id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body does not match the Authorization header",
            ));
        }
        return Ok(ClientCredentials::Basic { client_id, secret });
    }

    if assertion {
        if body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method used",
            ));
        }
        return Err(OAuthError::invalid_client(
            "client assertion authentication is not supported",
        ));
    }

    match (body_id, body_secret) {
        (Some(id), Some(secret)) => Ok(ClientCredentials::Post {
            client_id: id.to_owned(),
            secret: Zeroizing::new(secret.to_owned()),
        }),
        (Some(id), None) => Ok(ClientCredentials::None {
            client_id: id.to_owned(),
        }),
        (None, Some(_)) => Err(OAuthError::invalid_request("missing parameter client_id")),
        (None, None) => Err(OAuthError::invalid_client("client authentication required")),
    }
}

/// Parses `Basic <token68>`; everything that goes wrong is `invalid_client`.
fn parse_basic(header: &str) -> Result<(String, Zeroizing<String>), OAuthError> {
    let malformed =
        |what: &str| OAuthError::invalid_client(format!("malformed Basic credentials: {what}"));
    if header.len() > MAX_AUTHORIZATION_BYTES {
        return Err(malformed("header too long"));
    }
    let Some((scheme, token)) = header.split_once(' ') else {
        return Err(malformed("expected 'Basic <credentials>'"));
    };
    if !scheme.eq_ignore_ascii_case("Basic") {
        return Err(OAuthError::invalid_client(
            "unsupported authentication scheme; use Basic",
        ));
    }
    let decoded =
        Zeroizing::new(b64::decode_std_padded(token).ok_or_else(|| malformed("bad base64"))?);
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| malformed("no ':' separator"))?;
    let raw_id = decoded.get(..colon).unwrap_or_default();
    let raw_secret = decoded.get(colon + 1..).unwrap_or_default();
    let client_id =
        decode_component(raw_id).map_err(|e| malformed(&format!("client id: {}", e.describe())))?;
    let secret = Zeroizing::new(
        decode_component(raw_secret)
            .map_err(|e| malformed(&format!("secret: {}", e.describe())))?,
    );
    if client_id.is_empty() {
        return Err(malformed("empty client id"));
    }
    if secret.is_empty() {
        return Err(malformed("empty secret"));
    }
    Ok((client_id, secret))
}

/// The SHA-256 digest under which a client secret is stored and compared.
///
/// A fast hash is the right tool here: client secrets are 256-bit random strings generated by
/// Keyscope ([`generate_secret`]), so there is nothing to brute-force and no dictionary to try,
/// and a slow password hash would only make the token endpoint a denial-of-service target.
/// Argon2 is for human-chosen passwords, which have little entropy; never use this for those.
#[must_use]
pub fn secret_digest(secret: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A new client secret: 32 bytes from the system CSPRNG, base64url without padding (43
/// characters). Show it to the client once and store only [`secret_digest`].
///
/// The process aborts if the CSPRNG fails (see [`crate::token::random_token`]).
#[must_use]
pub fn generate_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    if rand::fill(bytes.as_mut()).is_err() {
        std::process::abort();
    }
    Zeroizing::new(b64::encode_url(bytes.as_ref()))
}

/// Compares two byte strings in time independent of their contents (not of their lengths).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes()).unwrap()
    }

    fn basic(raw: &str) -> String {
        format!("Basic {}", b64::encode_std(raw.as_bytes()))
    }

    #[test]
    fn rfc6749_basic_example() {
        // RFC 6749 §2.3.1: Authorization: Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW
        let c = client_credentials(Some("Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW"), &form("")).unwrap();
        assert_eq!(c.client_id(), "s6BhdRkqt3");
        assert_eq!(c.secret(), Some("gX1fBat3bV"));
        assert_eq!(c.method(), "client_secret_basic");
        assert!(matches!(c, ClientCredentials::Basic { .. }));
    }

    #[test]
    fn basic_is_form_urldecoded() {
        let c = client_credentials(
            Some(&basic("urn%3Aexample%3Aapp:p%40ss+word%3A%2B")),
            &form(""),
        )
        .unwrap();
        assert_eq!(c.client_id(), "urn:example:app");
        assert_eq!(c.secret(), Some("p@ss word:+"));
        // The first raw ':' separates; a raw ':' in the secret is kept.
        let c = client_credentials(Some(&basic("id:a:b")), &form("")).unwrap();
        assert_eq!(c.secret(), Some("a:b"));
        // Scheme is case-insensitive.
        let h = basic("id:s").replacen("Basic", "bAsIc", 1);
        assert!(client_credentials(Some(&h), &form("")).is_ok());
    }

    #[test]
    fn malformed_basic_is_invalid_client() {
        let cases = [
            "Basic".to_owned(),
            "Basic ".to_owned(),
            "Basic  czZCaGRSa3F0MzpnWDFmQmF0M2JW".to_owned(),
            "Basic czZCaGRSa3F0Mzpnw".to_owned(),
            "Basic !!!!".to_owned(),
            basic("no-colon"),
            basic(":secret"),
            basic("id:"),
            basic("id%zz:secret"),
            basic("id:se%ffcret"),
            basic("id:se%0Acret"),
            format!("Basic {}", b64::encode_std(b"id:\xff")),
            format!("Basic {}", "A".repeat(MAX_AUTHORIZATION_BYTES)),
            "Bearer abc".to_owned(),
            "Digest username=x".to_owned(),
        ];
        for h in &cases {
            let e = client_credentials(Some(h), &form("")).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{h}");
            assert_eq!(e.status(), 401);
        }
    }

    #[test]
    fn errors_never_contain_the_secret() {
        for h in [basic("id:hunter2%zz"), basic("id:hunter2%0A")] {
            let e = client_credentials(Some(&h), &form("")).unwrap_err();
            assert!(!e.description.contains("hunter2"));
        }
    }

    #[test]
    fn post_and_public() {
        let c = client_credentials(None, &form("client_id=app&client_secret=s3cr%2Bt")).unwrap();
        assert!(matches!(c, ClientCredentials::Post { .. }));
        assert_eq!(c.client_id(), "app");
        assert_eq!(c.secret(), Some("s3cr+t"));
        assert_eq!(c.method(), "client_secret_post");

        let c = client_credentials(None, &form("client_id=app&code=x")).unwrap();
        assert!(matches!(c, ClientCredentials::None { .. }));
        assert_eq!(c.secret(), None);
        assert_eq!(c.method(), "none");

        // An empty secret is an omitted secret (RFC 6749 §3.1).
        let c = client_credentials(None, &form("client_id=app&client_secret=")).unwrap();
        assert_eq!(c.method(), "none");
    }

    #[test]
    fn nothing_or_secret_alone() {
        let e = client_credentials(None, &form("grant_type=x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        let e = client_credentials(None, &form("client_secret=x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.description, "missing parameter client_id");
    }

    #[test]
    fn two_methods_conflict() {
        let e = client_credentials(
            Some(&basic("app:s")),
            &form("client_id=app&client_secret=s"),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("more than one"));
        let e = client_credentials(Some(&basic("app:s")), &form("client_secret=s")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let e = client_credentials(
            Some(&basic("app:s")),
            &form("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=x"),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn body_client_id_must_match_basic() {
        let c = client_credentials(Some(&basic("app:s")), &form("client_id=app")).unwrap();
        assert_eq!(c.client_id(), "app");
        let e = client_credentials(Some(&basic("app:s")), &form("client_id=other")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        // Compared after decoding both.
        let c = client_credentials(Some(&basic("a%3Ab:s")), &form("client_id=a%3Ab")).unwrap();
        assert_eq!(c.client_id(), "a:b");
    }

    #[test]
    fn assertions_are_unsupported() {
        let e = client_credentials(None, &form("client_id=app&client_assertion=x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        let e = client_credentials(None, &form("client_secret=s&client_assertion=x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn debug_redacts() {
        let c = client_credentials(Some(&basic("app:hunter2")), &form("")).unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("app"));
        assert!(!dbg.contains("hunter2"));
        assert_eq!(dbg, r#"Basic { client_id: "app", secret: "<redacted>" }"#);
        let c = client_credentials(None, &form("client_id=pub")).unwrap();
        assert_eq!(format!("{c:?}"), r#"None { client_id: "pub" }"#);
    }

    #[test]
    fn secrets() {
        let a = generate_secret();
        let b = generate_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(*a, *b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(b64::decode_url(&a).unwrap().len(), 32);
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            secret_digest("abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
                0xf2, 0x00, 0x15, 0xad
            ]
        );
        assert!(constant_time_eq(&secret_digest(&a), &secret_digest(&a)));
        assert!(!constant_time_eq(&secret_digest(&a), &secret_digest(&b)));
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
