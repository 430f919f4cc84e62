#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Interoperability with the `jsonwebtoken` crate (v10, aws-lc-rs backend), both ways:
//! access tokens it signs verify through [`Validator::validate`], and tokens Keyscope signs
//! ([`SigningKey::sign_compact`]) verify in `jsonwebtoken`.
//!
//! Keys are generated with aws-lc-rs; the public JWKs handed to Keyscope are written by hand
//! from the raw key material, so nothing on the Keyscope side is shared with the signer.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use keyscope_jose::{Algorithm, JwkSet, SigningKey, b64};
use keyscope_trust::{Decision, Policy, Reason, StaticKeys, TrustedIssuer, Validator};
use serde_json::{Map, Value, json};

const ISSUER: &str = "https://auth.interop.example";
const AUDIENCE: &str = "https://api.interop.example";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// A key pair generated with aws-lc-rs: what `jsonwebtoken` signs with, and the public JWK
/// members written by hand for Keyscope.
struct ThirdPartyKey {
    alg: jsonwebtoken::Algorithm,
    encoding: EncodingKey,
    public_jwk: Map<String, Value>,
}

fn jwk(members: Value) -> Map<String, Value> {
    match members {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn es256_key(kid: &str) -> ThirdPartyKey {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    assert_eq!(point[0], 4);
    ThirdPartyKey {
        alg: jsonwebtoken::Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        public_jwk: jwk(json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64::encode_url(&point[1..33]),
            "y": b64::encode_url(&point[33..]),
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        })),
    }
}

fn eddsa_key(kid: &str) -> ThirdPartyKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    ThirdPartyKey {
        alg: jsonwebtoken::Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        public_jwk: jwk(json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64::encode_url(pair.public_key().as_ref()),
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        })),
    }
}

/// Reads one DER element with the expected tag: its contents and what follows.
fn der_element(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input[0], tag, "DER tag");
    let (len, header) = match input[1] {
        short if short < 0x80 => (usize::from(short), 2),
        0x81 => (usize::from(input[2]), 3),
        0x82 => ((usize::from(input[2]) << 8) | usize::from(input[3]), 4),
        other => panic!("unexpected DER length byte {other:#x}"),
    };
    (&input[header..header + len], &input[header + len..])
}

/// `jsonwebtoken`'s `EncodingKey::from_rsa_der` wants a PKCS#1 `RSAPrivateKey` (aws-lc-rs
/// `RsaKeyPair::from_der`), but aws-lc-rs exports PKCS#8 only: unwrap the `privateKey` OCTET
/// STRING of the PKCS#8 `PrivateKeyInfo`.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (info, _) = der_element(pkcs8, 0x30);
    let (_version, rest) = der_element(info, 0x02);
    let (_algorithm, rest) = der_element(rest, 0x30);
    let (private_key, _) = der_element(rest, 0x04);
    private_key.to_vec()
}

fn rs256_key(kid: &str) -> ThirdPartyKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref());
    // Sanity: aws-lc-rs itself reads the extracted PKCS#1 document back.
    RsaKeyPair::from_der(&pkcs1).expect("PKCS#1 extracted from PKCS#8");
    let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    ThirdPartyKey {
        alg: jsonwebtoken::Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(&pkcs1),
        public_jwk: jwk(json!({
            "kty": "RSA",
            "n": b64::encode_url(&public.n),
            "e": b64::encode_url(&public.e),
            "kid": kid,
            "alg": "RS256",
            "use": "sig",
        })),
    }
}

fn access_claims(now: i64, jti: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "user-4711",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": jti,
        "client_id": "interop-client",
        "scope": "read write",
    })
}

fn validator_for(public_jwks: Vec<Map<String, Value>>) -> Validator {
    let document = json!({ "keys": public_jwks });
    let set = JwkSet::parse(document.to_string().as_bytes()).expect("hand-written JWKS parses");
    Validator::new(
        Policy::builder()
            .issuer(TrustedIssuer::new(ISSUER, StaticKeys::new(set)).audiences([AUDIENCE]))
            .build()
            .unwrap(),
    )
}

fn jsonwebtoken_sign(key: &ThirdPartyKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("jsonwebtoken signs")
}

#[test]
fn jsonwebtoken_access_tokens_validate() {
    let cases = [
        (
            "es256-interop",
            es256_key("es256-interop"),
            Algorithm::Es256,
        ),
        (
            "eddsa-interop",
            eddsa_key("eddsa-interop"),
            Algorithm::EdDsa,
        ),
        (
            "rs256-interop",
            rs256_key("rs256-interop"),
            Algorithm::Rs256,
        ),
    ];
    let validator = validator_for(
        cases
            .iter()
            .map(|(_, key, _)| key.public_jwk.clone())
            .collect(),
    );
    let now = now();
    for (kid, key, alg) in &cases {
        let claims = access_claims(now, &format!("jti-{kid}"));
        let token = jsonwebtoken_sign(key, kid, &claims);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));

        let accepted = match validator.validate(&token, now + 1) {
            Decision::Accepted(accepted) => accepted,
            Decision::Rejected(rejected) => panic!(
                "{kid}: jsonwebtoken token rejected: {} ({})",
                rejected.reason, rejected.detail
            ),
        };
        assert_eq!(accepted.alg, *alg, "{kid}");
        assert_eq!(accepted.kid.as_deref(), Some(*kid));
        assert_eq!(accepted.issuer, ISSUER);
        assert_eq!(Value::Object(accepted.claims()), claims, "{kid}: claims");
        assert_eq!(accepted.facts.sub.as_deref(), Some("user-4711"));
        assert_eq!(accepted.facts.client_id.as_deref(), Some("interop-client"));
        assert_eq!(accepted.facts.jti, Some(format!("jti-{kid}")));
        assert_eq!(accepted.facts.aud, [AUDIENCE]);

        // The same token is expired once exp (+ leeway) has passed.
        assert_eq!(
            validator.validate(&token, now + 300 + 60).reason(),
            Some(Reason::Expired),
            "{kid}"
        );
    }
}

#[test]
fn jsonwebtoken_tokens_keyscope_must_refuse() {
    let es = es256_key("es-a");
    let other = es256_key("es-b");
    let validator = validator_for(vec![es.public_jwk.clone()]);
    let now = now();

    // Signed by a key that is not the one named by the kid.
    let forged = jsonwebtoken_sign(&other, "es-a", &access_claims(now, "j1"));
    assert_eq!(
        validator.validate(&forged, now).reason(),
        Some(Reason::BadSignature)
    );

    // jsonwebtoken's default header (typ "JWT") is not an access token.
    let mut plain = Header::new(jsonwebtoken::Algorithm::ES256);
    plain.kid = Some("es-a".to_owned());
    let jwt = jsonwebtoken::encode(&plain, &access_claims(now, "j2"), &es.encoding).unwrap();
    assert_eq!(
        validator.validate(&jwt, now).reason(),
        Some(Reason::TokenTypeMismatch)
    );

    // An HS256 token keyed with the public key's coordinates (algorithm confusion).
    let mut hmac = Header::new(jsonwebtoken::Algorithm::HS256);
    hmac.typ = Some("at+jwt".to_owned());
    hmac.kid = Some("es-a".to_owned());
    let secret = Value::Object(es.public_jwk.clone()).to_string();
    let confused = jsonwebtoken::encode(
        &hmac,
        &access_claims(now, "j3"),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        validator.validate(&confused, now).reason(),
        Some(Reason::AlgNotAllowed)
    );

    // A missing client_id is refused for an access token.
    let mut claims = access_claims(now, "j4");
    claims.as_object_mut().unwrap().remove("client_id");
    let incomplete = jsonwebtoken_sign(&es, "es-a", &claims);
    assert_eq!(
        validator.validate(&incomplete, now).reason(),
        Some(Reason::MissingClaim)
    );
}

fn decoding_key(members: &Map<String, Value>) -> DecodingKey {
    let text = |name: &str| members[name].as_str().unwrap();
    match text("kty") {
        "EC" => DecodingKey::from_ec_components(text("x"), text("y")).unwrap(),
        "OKP" => DecodingKey::from_ed_components(text("x")).unwrap(),
        "RSA" => DecodingKey::from_rsa_components(text("n"), text("e")).unwrap(),
        other => panic!("unexpected kty {other}"),
    }
}

#[test]
fn keyscope_tokens_verify_in_jsonwebtoken() {
    let now = now();
    for (alg, theirs) in [
        (Algorithm::Es256, jsonwebtoken::Algorithm::ES256),
        (Algorithm::Rs256, jsonwebtoken::Algorithm::RS256),
        (Algorithm::EdDsa, jsonwebtoken::Algorithm::EdDSA),
    ] {
        let kid = format!("keyscope-{alg}");
        let key = SigningKey::generate(alg, kid.clone(), None).unwrap();
        let claims = access_claims(now, &format!("jti-{alg}"));
        let mut header = Map::new();
        header.insert("typ".to_owned(), "at+jwt".into());
        let token = key
            .sign_compact(header, claims.to_string().as_bytes())
            .unwrap();

        let mut validation = Validation::new(theirs);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &decoding_key(&key.public_jwk_members()),
            &validation,
        )
        .unwrap_or_else(|e| panic!("{alg}: jsonwebtoken refused a Keyscope token: {e}"));
        assert_eq!(data.claims, claims, "{alg}");
        assert_eq!(data.header.alg, theirs);
        assert_eq!(data.header.kid.as_deref(), Some(kid.as_str()));
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));

        // And Keyscope accepts its own token with the public JWK it publishes.
        let set = JwkSet::from_keys(vec![key.public_jwk().unwrap()]).unwrap();
        let validator = Validator::new(
            Policy::builder()
                .issuer(
                    TrustedIssuer::new(ISSUER, Arc::new(StaticKeysWrapper(StaticKeys::new(set))))
                        .audiences([AUDIENCE]),
                )
                .build()
                .unwrap(),
        );
        assert!(validator.validate(&token, now).is_accepted(), "{alg}");

        // jsonwebtoken refuses the Keyscope token under a key of the other party.
        let stranger = SigningKey::generate(alg, "stranger", None).unwrap();
        let refused = jsonwebtoken::decode::<Value>(
            &token,
            &decoding_key(&stranger.public_jwk_members()),
            &validation,
        );
        assert!(refused.is_err(), "{alg}: verified under the wrong key");
    }
}

/// Shows that any [`keyscope_trust::KeySource`] works, not only [`StaticKeys`] itself.
struct StaticKeysWrapper(Arc<StaticKeys>);

impl keyscope_trust::KeySource for StaticKeysWrapper {
    fn key_set(&self) -> Arc<JwkSet> {
        self.0.key_set()
    }
}
