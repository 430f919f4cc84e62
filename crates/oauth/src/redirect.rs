//! Redirect URIs: what may be registered, how a requested one is matched, and how the
//! authorization response is appended to it.
//!
//! Matching is exact string comparison (RFC 6749 §3.1.2.3, RFC 9700 §4.1.3, OAuth 2.1): no
//! prefix, wildcard or normalisation, which is what open-redirect and code-theft attacks
//! exploit. The single exception is RFC 8252 §7.3: for loopback `http` URIs of native apps the
//! port may differ, because the app listens on an ephemeral port.

use url::{Host, Url};

/// Longest redirect URI accepted at registration, in bytes.
pub const MAX_REDIRECT_URI_BYTES: usize = 2048;

/// The loopback hosts for which plain `http` is allowed (RFC 8252 §7.3, §8.3).
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Checks a redirect URI offered at client registration.
///
/// Accepted:
/// - `https` URIs with a host;
/// - `http` URIs whose host is `localhost`, `127.0.0.1` or `[::1]` (RFC 8252 §7.3; the port is
///   ignored when matching);
/// - private-use schemes containing a `.`, i.e. reverse domain names such as
///   `com.example.app:/oauth2redirect` (RFC 8252 §7.1).
///
/// Always refused: relative URIs, fragments (RFC 6749 §3.1.2), user information
/// (`https://user@host`), and URIs that are not in the canonical form the `url` crate (WHATWG)
/// gives them (upper-case scheme or host, default port, `..` segments, missing `/` path, stray
/// whitespace or backslashes...). Requiring the canonical form keeps the registered string and
/// what browsers navigate to identical, so exact matching means what it says. The error says
/// what the canonical form would be, where there is one.
///
/// # Errors
/// A human-readable reason, suitable as the `error_description` of an
/// `invalid_redirect_uri` registration error (RFC 7591 §3.2.2).
pub fn validate_registered_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.is_empty() {
        return Err("redirect URI is empty".to_owned());
    }
    if uri.len() > MAX_REDIRECT_URI_BYTES {
        return Err(format!(
            "redirect URI is longer than {MAX_REDIRECT_URI_BYTES} bytes"
        ));
    }
    if uri.contains('#') {
        return Err("redirect URI must not contain a fragment".to_owned());
    }
    let url = Url::parse(uri).map_err(|e| format!("redirect URI is not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err("redirect URI must not contain a fragment".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("redirect URI must not contain user information".to_owned());
    }
    match url.scheme() {
        "https" => {
            if url.host().is_none() {
                return Err("https redirect URI has no host".to_owned());
            }
        }
        "http" => {
            let loopback = match url.host() {
                Some(Host::Domain(d)) => d == "localhost",
                Some(Host::Ipv4(ip)) => ip.octets() == [127, 0, 0, 1],
                Some(Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(
                    "http redirect URIs are only allowed for the loopback hosts localhost, 127.0.0.1 and [::1]; use https"
                        .to_owned(),
                );
            }
        }
        scheme if scheme.contains('.') => {}
        scheme => {
            return Err(format!(
                "scheme {scheme} is not allowed; use https, http on a loopback host, or a private-use scheme in reverse domain name form such as com.example.app"
            ));
        }
    }
    if url.as_str() != uri {
        return Err(format!(
            "redirect URI is not in canonical form; register {} instead",
            url.as_str()
        ));
    }
    Ok(())
}

/// Splits a loopback `http` URI into (host, port-free rest), or `None` if it is not one.
///
/// The rest starts at the path (`/…`), the query (`?…`) or is empty; a port, if present, is 1
/// to 5 digits between 1 and 65535.
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let after_scheme = uri.strip_prefix("http://")?;
    let host = LOOPBACK_HOSTS
        .into_iter()
        .find(|h| after_scheme.starts_with(h))?;
    let mut rest = after_scheme.get(host.len()..)?;
    if let Some(port_and_rest) = rest.strip_prefix(':') {
        let digits = port_and_rest.bytes().take_while(u8::is_ascii_digit).count();
        let port: u32 = port_and_rest.get(..digits)?.parse().ok()?;
        if digits > 5 || !(1..=65535).contains(&port) {
            return None;
        }
        rest = port_and_rest.get(digits..)?;
    }
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
        Some((host, rest))
    } else {
        None
    }
}

/// `true` if `requested` is one of the `registered` redirect URIs.
///
/// Comparison is exact and case-sensitive: `https://a.example/cb` does not match
/// `https://a.example/cb/` or `https://a.example/CB`. For registered loopback `http` URIs
/// (`localhost`, `127.0.0.1`, `[::1]`) the port of the requested URI may differ or be absent,
/// and everything else must still be identical (RFC 8252 §7.3).
#[must_use]
pub fn redirect_uri_matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Some((req_host, req_rest)) = split_loopback(requested) else {
        return false;
    };
    registered
        .iter()
        .any(|r| split_loopback(r).is_some_and(|(host, rest)| host == req_host && rest == req_rest))
}

/// Appends authorization response parameters (`code`, `state`, `iss`, or `error`,
/// `error_description`...) to the query of `redirect_uri` (RFC 6749 §4.1.2, §4.1.2.1).
///
/// An existing query is kept verbatim (RFC 6749 §3.1.2: it "MUST be retained") and the new
/// parameters are form-urlencoded after it with `&`; without a query, `?` starts one. A
/// fragment, which a validated redirect URI never has, is dropped. Values should already be
/// restricted to their RFC character sets (see [`crate::error::sanitize_description`]); the
/// encoding makes any value safe regardless.
#[must_use]
pub fn authorization_response(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let base = redirect_uri
        .split_once('#')
        .map_or(redirect_uri, |(before, _)| before);
    let mut out = String::from(base);
    if params.is_empty() {
        return out;
    }
    match base.split_once('?') {
        None => out.push('?'),
        Some((_, query)) if query.is_empty() || query.ends_with('&') => {}
        Some(_) => out.push('&'),
    }
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    out.push_str(&encoded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(uris: &[&str]) -> Vec<String> {
        uris.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn registration_accepts() {
        for ok in [
            "https://client.example.com/cb",
            "https://client.example.com/cb?tenant=a",
            "https://client.example.com:8443/cb",
            "https://client.example.com/",
            "http://localhost/cb",
            "http://localhost:8080/cb",
            "http://127.0.0.1/oauth",
            "http://127.0.0.1:51004/oauth",
            "http://[::1]/cb",
            "http://[::1]:3000/",
            "com.example.app:/oauth2redirect/example-provider",
            "com.example.app://callback",
        ] {
            assert_eq!(validate_registered_redirect_uri(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn registration_refuses() {
        for bad in [
            "",
            "/cb",
            "cb",
            "//client.example.com/cb",
            "https://client.example.com/cb#frag",
            "https://client.example.com/cb#",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox",
            "file:///etc/passwd",
            "ftp://example.com/",
            "myapp://callback",
            "http://client.example.com/cb",
            "http://127.0.0.2/cb",
            "http://localhost.evil.com/cb",
            "http://[::2]/cb",
            "https://user:pw@client.example.com/cb",
            "https://user@client.example.com/cb",
            "HTTPS://client.example.com/cb",
            "https://Client.Example.com/cb",
            "https://client.example.com:443/cb",
            "https://client.example.com",
            "https://client.example.com/a/../cb",
            "https://client.example.com/cb\t",
            " https://client.example.com/cb",
            "https:\\\\client.example.com\\cb",
            "http://127.1/cb",
            "https://exa mple.com/cb",
        ] {
            assert!(validate_registered_redirect_uri(bad).is_err(), "{bad:?}");
        }
        let long = format!("https://a.example/{}", "a".repeat(MAX_REDIRECT_URI_BYTES));
        assert!(validate_registered_redirect_uri(&long).is_err());
        assert_eq!(
            validate_registered_redirect_uri("https://client.example.com"),
            Err("redirect URI is not in canonical form; register https://client.example.com/ instead".to_owned())
        );
        assert!(
            validate_registered_redirect_uri("javascript:alert(1)")
                .unwrap_err()
                .contains("not allowed")
        );
    }

    #[test]
    fn exact_matching() {
        let r = reg(&[
            "https://client.example.com/cb",
            "https://client.example.com/cb2?x=1",
        ]);
        assert!(redirect_uri_matches(&r, "https://client.example.com/cb"));
        assert!(redirect_uri_matches(
            &r,
            "https://client.example.com/cb2?x=1"
        ));
        assert!(!redirect_uri_matches(&r, "https://client.example.com/cb/"));
        assert!(!redirect_uri_matches(&r, "https://client.example.com/CB"));
        assert!(!redirect_uri_matches(&r, "https://CLIENT.example.com/cb"));
        assert!(!redirect_uri_matches(&r, "https://client.example.com/cb?"));
        assert!(!redirect_uri_matches(
            &r,
            "https://client.example.com/cb?x=1"
        ));
        assert!(!redirect_uri_matches(&r, "https://client.example.com/cb2"));
        assert!(!redirect_uri_matches(
            &r,
            "https://client.example.com/cb2?x=1&y=2"
        ));
        assert!(!redirect_uri_matches(&r, "https://client.example.com/cb#x"));
        assert!(!redirect_uri_matches(
            &r,
            "https://client.example.com:443/cb"
        ));
        assert!(!redirect_uri_matches(
            &r,
            "https://client.example.com/cb/../cb"
        ));
        assert!(!redirect_uri_matches(
            &r,
            "https://client.example.com.evil.com/cb"
        ));
        assert!(!redirect_uri_matches(&r, ""));
        assert!(!redirect_uri_matches(&[], "https://client.example.com/cb"));
    }

    #[test]
    fn loopback_port_may_differ() {
        let r = reg(&[
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb?a=b",
            "http://localhost:1/",
        ]);
        assert!(redirect_uri_matches(&r, "http://127.0.0.1/cb"));
        assert!(redirect_uri_matches(&r, "http://127.0.0.1:51004/cb"));
        assert!(redirect_uri_matches(&r, "http://127.0.0.1:65535/cb"));
        assert!(redirect_uri_matches(&r, "http://[::1]/cb?a=b"));
        assert!(redirect_uri_matches(&r, "http://[::1]:9/cb?a=b"));
        assert!(redirect_uri_matches(&r, "http://localhost:4000/"));
        // Everything but the port must be identical.
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:51004/cb/"));
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:51004/CB"));
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:51004/cb?x"));
        assert!(!redirect_uri_matches(&r, "http://[::1]:9/cb"));
        assert!(!redirect_uri_matches(&r, "http://localhost:4000"));
        // Hosts are not interchangeable.
        assert!(!redirect_uri_matches(&r, "http://localhost:51004/cb"));
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:8080/cb?a=b"));
        // Not https, and no tricks with the authority.
        assert!(!redirect_uri_matches(&r, "https://127.0.0.1:51004/cb"));
        assert!(!redirect_uri_matches(
            &r,
            "http://127.0.0.1:80@evil.example/cb"
        ));
        assert!(!redirect_uri_matches(
            &r,
            "http://127.0.0.1.evil.example/cb"
        ));
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:/cb"));
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:0/cb"));
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:65536/cb"));
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:000080/cb"));
        assert!(!redirect_uri_matches(
            &r,
            "http://127.0.0.1:99999999999999999999/cb"
        ));
        assert!(!redirect_uri_matches(&r, "HTTP://127.0.0.1:5/cb"));
        // The port rule is only for loopback.
        let r = reg(&["https://client.example.com:8443/cb"]);
        assert!(!redirect_uri_matches(
            &r,
            "https://client.example.com:9443/cb"
        ));
        let r = reg(&["http://127.0.0.1:8080/cb"]);
        assert!(redirect_uri_matches(&r, "http://127.0.0.1/cb"));
    }

    #[test]
    fn response_building() {
        assert_eq!(
            authorization_response(
                "https://client.example.com/cb",
                &[("code", "SplxlOBeZQQYbYS6WxSbIA"), ("state", "xyz")]
            ),
            "https://client.example.com/cb?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz"
        );
        assert_eq!(
            authorization_response("https://c.example/cb?tenant=a", &[("code", "x")]),
            "https://c.example/cb?tenant=a&code=x"
        );
        assert_eq!(
            authorization_response("https://c.example/cb?", &[("code", "x")]),
            "https://c.example/cb?code=x"
        );
        assert_eq!(
            authorization_response("https://c.example/cb?a=1&", &[("code", "x")]),
            "https://c.example/cb?a=1&code=x"
        );
        assert_eq!(
            authorization_response("https://c.example/cb#frag", &[("code", "x")]),
            "https://c.example/cb?code=x"
        );
        assert_eq!(
            authorization_response("https://c.example/cb", &[]),
            "https://c.example/cb"
        );
        assert_eq!(
            authorization_response(
                "com.example.app:/cb",
                &[
                    ("error", "access_denied"),
                    ("error_description", "The user said no & left"),
                    ("state", "a=b&c#d é"),
                    ("iss", "https://ks.example/t/contoso"),
                ]
            ),
            "com.example.app:/cb?error=access_denied&error_description=The+user+said+no+%26+left&state=a%3Db%26c%23d+%C3%A9&iss=https%3A%2F%2Fks.example%2Ft%2Fcontoso"
        );
    }

    #[test]
    fn response_round_trips_through_form_parser() {
        let uri = authorization_response(
            "https://c.example/cb?tenant=a",
            &[("code", "a+b/c=="), ("state", "s p&a=c")],
        );
        let query = uri.split_once('?').unwrap().1;
        let f = crate::form::Form::parse(query.as_bytes()).unwrap();
        assert_eq!(f.get("tenant"), Some("a"));
        assert_eq!(f.get("code"), Some("a+b/c=="));
        assert_eq!(f.get("state"), Some("s p&a=c"));
    }
}
