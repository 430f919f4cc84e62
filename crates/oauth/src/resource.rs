//! Resource indicators (RFC 8707).
//!
//! The `resource` parameter names the protected resource a token is meant for; the server
//! restricts the token's audience to it. RFC 8707 §2: it "MUST be an absolute URI", "MAY include
//! a query component" and "MUST NOT include a fragment component". Whether the resource is one
//! the client may ask for is the server's decision.

use url::Url;

use crate::error::OAuthError;

/// Longest accepted resource URI, in bytes.
pub const MAX_RESOURCE_BYTES: usize = 2048;

/// `true` if `b` may appear in a URI (RFC 3986 §2: unreserved, reserved or `%`).
const fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// Checks a `resource` parameter value.
///
/// Accepted: an absolute URI (scheme and the rest, RFC 3986 §4.3) of at most
/// [`MAX_RESOURCE_BYTES`] bytes, made only of URI characters, with well-formed `%XX` escapes and
/// no fragment.
///
/// # Errors
/// `invalid_target` naming the rule that was broken.
pub fn check_resource(uri: &str) -> Result<(), OAuthError> {
    if uri.len() > MAX_RESOURCE_BYTES {
        return Err(OAuthError::invalid_target(format!(
            "resource is longer than {MAX_RESOURCE_BYTES} bytes"
        )));
    }
    if uri.contains('#') {
        return Err(OAuthError::invalid_target(
            "resource must not contain a fragment",
        ));
    }
    let bytes = uri.as_bytes();
    if !bytes.iter().copied().all(is_uri_char) {
        return Err(OAuthError::invalid_target(
            "resource contains characters not allowed in a URI",
        ));
    }
    let escapes_ok = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return Err(OAuthError::invalid_target(
            "resource contains a malformed percent-encoding",
        ));
    }
    match Url::parse(uri) {
        Ok(url) if url.fragment().is_none() => Ok(()),
        Ok(_) => Err(OAuthError::invalid_target(
            "resource must not contain a fragment",
        )),
        Err(_) => Err(OAuthError::invalid_target(
            "resource must be an absolute URI",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn accepts() {
        for ok in [
            "https://mail.ks.example",
            "https://mail.ks.example/",
            "https://api.example.com/app/",
            "https://api.example.com/v1?tenant=contoso",
            "https://api.example.com/a%20b",
            "urn:example:resource",
        ] {
            assert_eq!(check_resource(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses() {
        for bad in [
            "",
            "/relative",
            "mail.ks.example",
            "//mail.ks.example/",
            "https://mail.ks.example/#frag",
            "https://mail.ks.example/#",
            "https://mail.ks.example/a b",
            "https://mail.ks.example/\u{e9}",
            "https://mail.ks.example/%zz",
            "https://mail.ks.example/%4",
            "https://mail.ks.example/<x>",
            "https://mail.ks.example/\"",
            "https://mail.ks.example\\x",
            "https://mail.ks.example/\n",
        ] {
            let e = check_resource(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidTarget, "{bad:?}");
            assert_eq!(e.status(), 400);
        }
        let long = format!("https://a.example/{}", "a".repeat(MAX_RESOURCE_BYTES));
        assert!(check_resource(&long).is_err());
    }
}
