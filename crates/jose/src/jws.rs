//! JWS compact serialization (RFC 7515 §7.1), parsed strictly and in stages.
//!
//! Parsing is split so that a validator can apply its checks in a fixed order:
//! [`CompactJws::parse`] covers size and structure (segments, base64url, strict JSON header);
//! [`CompactJws::check_header`] covers the algorithm and the header members that would let a
//! token choose its own key. The payload is left as bytes: it is only JSON for JWTs.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::alg::Algorithm;
use crate::b64;
use crate::json::{self, JsonError};

/// Largest token accepted, in bytes, checked before anything else is looked at.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Header members that are refused outright: each lets the token name or carry the key that
/// should verify it (`jku`, `jwk` — CVE-2018-0114 —, `x5u`, `x5c`), or changes what is signed
/// or how it must be processed (`crit`, `b64` from RFC 7797) in ways no Keyscope token needs.
pub const FORBIDDEN_HEADER_MEMBERS: [&str; 6] = ["jku", "jwk", "x5u", "x5c", "crit", "b64"];

/// Header members whose type, when present, must be a string.
const STRING_HEADER_MEMBERS: [&str; 4] = ["alg", "kid", "typ", "cty"];

/// Why a compact JWS was refused before its signature was looked at.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwsError {
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("token is {0} bytes, more than the {MAX_TOKEN_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not three canonical base64url segments with a JSON-object header.
    #[error("{0}")]
    Malformed(String),
    /// A member name repeated in the header.
    #[error("duplicate member {0:?} in the header")]
    DuplicateMember(String),
    /// `alg` is `none`, an HMAC, or anything else that is not an accepted algorithm.
    #[error("algorithm {0:?} is not allowed")]
    AlgNotAllowed(String),
    /// A header member in [`FORBIDDEN_HEADER_MEMBERS`].
    #[error("header member {0:?} is not supported: keys are never taken from the token")]
    UnsupportedHeader(String),
}

/// A structurally valid compact JWS; nothing in it is trusted yet.
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    signing_input: &'a str,
    header_json: String,
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    forbidden: Option<&'static str>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> CompactJws<'a> {
    /// Checks size and structure. Exactly three segments of canonical base64url without
    /// padding or whitespace; the header must be a strict JSON object with a string `alg`.
    pub fn parse(token: &'a str) -> Result<CompactJws<'a>, JwsError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwsError::TooLarge(token.len()));
        }
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(JwsError::Malformed(
                "a compact JWS has exactly three segments".to_owned(),
            ));
        };
        if header_b64.is_empty() {
            return Err(JwsError::Malformed(
                "the header segment is empty".to_owned(),
            ));
        }
        let decode = |segment: &str, name: &str| {
            b64::decode_url(segment.as_bytes())
                .map_err(|e| JwsError::Malformed(format!("{name} segment: {e}")))
        };
        let header_bytes = decode(header_b64, "header")?;
        let payload = decode(payload_b64, "payload")?;
        let signature = decode(signature_b64, "signature")?;

        let header = json::scan_object(&header_bytes).map_err(|e| match e {
            JsonError::DuplicateMember(name) => JwsError::DuplicateMember(name),
            JsonError::NotObject => JwsError::Malformed("the header is not a JSON object".into()),
            other => JwsError::Malformed(format!("header: {other}")),
        })?;
        let string_member = |name: &str| -> Result<Option<String>, JwsError> {
            match header.get(name) {
                None => Ok(None),
                Some(value) => value.as_str().map(|s| Some(s.into_owned())).ok_or_else(|| {
                    JwsError::Malformed(format!("header member {name:?} must be a string"))
                }),
            }
        };
        let mut alg = None;
        let (mut kid, mut typ) = (None, None);
        for name in STRING_HEADER_MEMBERS {
            let value = string_member(name)?;
            match name {
                "alg" => alg = value,
                "kid" => kid = value,
                "typ" => typ = value,
                _ => {}
            }
        }
        let alg = alg.ok_or_else(|| JwsError::Malformed("the header has no \"alg\"".to_owned()))?;
        let forbidden = FORBIDDEN_HEADER_MEMBERS
            .into_iter()
            .find(|member| header.contains(member));
        drop(header);

        let signing_input_len = header_b64.len() + 1 + payload_b64.len();
        Ok(CompactJws {
            signing_input: token.get(..signing_input_len).unwrap_or_default(),
            // The header was validated as UTF-8 JSON by the scan above.
            header_json: String::from_utf8(header_bytes).unwrap_or_default(),
            alg,
            kid,
            typ,
            forbidden,
            payload,
            signature,
        })
    }

    /// Checks `alg` (exact, never `none` or HMAC) and refuses [`FORBIDDEN_HEADER_MEMBERS`].
    pub fn check_header(&self) -> Result<Algorithm, JwsError> {
        let alg = Algorithm::from_name(&self.alg)
            .ok_or_else(|| JwsError::AlgNotAllowed(self.alg.clone()))?;
        if let Some(member) = self.forbidden {
            return Err(JwsError::UnsupportedHeader(member.to_owned()));
        }
        Ok(alg)
    }

    /// The `alg` header value as written (unchecked).
    pub fn alg_name(&self) -> &str {
        &self.alg
    }

    /// The `kid` header value.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `typ` header value.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// The whole header, decoded into a map (for display; checks use the accessors).
    pub fn header(&self) -> Map<String, Value> {
        json::parse_object(self.header_json.as_bytes()).unwrap_or_default()
    }

    /// The decoded payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the decoded payload.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes that are signed.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }
}

/// A token decoded for display, with nothing verified.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The header.
    pub header: Map<String, Value>,
    /// The payload as strict JSON, or why it is not.
    pub payload: Result<Value, String>,
}

/// Decodes a token's header and payload without verifying anything, for display.
pub fn inspect(token: &str) -> Result<Inspected, JwsError> {
    let jws = CompactJws::parse(token)?;
    let payload = json::parse_value(jws.payload()).map_err(|e| e.to_string());
    Ok(Inspected {
        header: jws.header(),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64::encode_url(header.as_bytes()),
            b64::encode_url(payload.as_bytes()),
            b64::encode_url(b"sig")
        )
    }

    #[test]
    fn parses_structure_and_keeps_signing_input() {
        let t = token(r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#, "{}");
        let jws = CompactJws::parse(&t).unwrap();
        assert_eq!(jws.kid(), Some("k1"));
        assert_eq!(jws.typ(), Some("at+jwt"));
        assert_eq!(jws.signature(), b"sig");
        assert_eq!(
            jws.signing_input(),
            t.rsplit_once('.').unwrap().0.as_bytes()
        );
        assert_eq!(jws.check_header(), Ok(Algorithm::Es256));
    }

    #[test]
    fn structure_errors() {
        let good = token(r#"{"alg":"ES256"}"#, "{}");
        let cases = [
            String::new(),
            "a.b".to_owned(),
            format!("{good}.x"),
            format!(" {good}"),
            good.replace('.', ". "),
            format!(".{}", good.split_once('.').unwrap().1),
            token("[]", "{}"),
            token(r#"{"alg":1}"#, "{}"),
            token(r#"{"kid":"x"}"#, "{}"),
            token(r#"{"alg":"ES256"} x"#, "{}"),
        ];
        for case in cases {
            assert!(
                matches!(CompactJws::parse(&case), Err(JwsError::Malformed(_))),
                "{case:?}"
            );
        }
    }

    #[test]
    fn size_is_checked_first() {
        let huge = "!".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            CompactJws::parse(&huge).unwrap_err(),
            JwsError::TooLarge(MAX_TOKEN_BYTES + 1)
        );
    }

    #[test]
    fn duplicate_header_member() {
        let t = token(r#"{"alg":"ES256","alg":"none"}"#, "{}");
        assert_eq!(
            CompactJws::parse(&t).unwrap_err(),
            JwsError::DuplicateMember("alg".into())
        );
    }

    #[test]
    fn header_checks() {
        for alg in ["none", "HS256", "es256", "ES512"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(
                CompactJws::parse(&t).unwrap().check_header(),
                Err(JwsError::AlgNotAllowed(alg.into()))
            );
        }
        for member in FORBIDDEN_HEADER_MEMBERS {
            let t = token(&format!(r#"{{"alg":"ES256","{member}":{{}}}}"#), "{}");
            assert_eq!(
                CompactJws::parse(&t).unwrap().check_header(),
                Err(JwsError::UnsupportedHeader(member.into()))
            );
        }
    }
}
