//! Attack corpus for `Validator::validate`: every case carries exactly one defect (or a
//! deliberate pair, to pin the check order) and must be refused with one exact [`Reason`].
//!
//! The clock is a fixed input ([`NOW`]); nothing here reads the wall clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaEncoding};
use keyscope_jose::{Algorithm, Jwk, JwkSet, SigningKey, b64};
use keyscope_trust::{
    Accepted, Decision, KeySource, Policy, Reason, StaticKeys, TokenType, TrustedIssuer, Validator,
};
use serde_json::{Map, Value, json};

/// The validation time of every case.
const NOW: i64 = 1_800_000_000;

const ISS: &str = "https://issuer.example";
const AUD: &str = "api://keyscope";

const CONSUMER: &str = "https://login.consumer.example";
const ENTERPRISE: &str = "https://login.enterprise.example";
const CONSUMER_AUD: &str = "api://consumer-mail";
const ENTERPRISE_AUD: &str = "api://enterprise-mail";

const SHARED_A: &str = "https://a.example";
const SHARED_B: &str = "https://b.example";

const TEMPLATE: &str = "https://login.example/{tenantid}/v2.0";
const TENANT_AUD: &str = "api://tenant-app";
const STS_CONTOSO: &str = "https://sts.example/contoso/";
const STS_TEMPLATE: &str = "https://sts.example/{tenantid}/";

const SINGLE: &str = "https://single.example";

/// P-256 group order n.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

// ---------------------------------------------------------------------------------------------
// Signers
// ---------------------------------------------------------------------------------------------

enum Pair {
    Jose(SigningKey),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ec384(EcdsaKeyPair),
}

/// A private key with the `kid` and `alg` its tokens name.
struct Signer {
    kid: String,
    alg: &'static str,
    pair: Pair,
}

impl Signer {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::Jose(key) => key.sign_bytes(message).unwrap(),
            Pair::Rsa(pair, encoding) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), message, &mut out)
                    .unwrap();
                out
            }
            Pair::Ec384(pair) => pair
                .sign(&SystemRandom::new(), message)
                .unwrap()
                .as_ref()
                .to_vec(),
        }
    }

    /// The ordinary access-token header of this key.
    fn header(&self) -> String {
        json!({"alg": self.alg, "kid": self.kid, "typ": "at+jwt"}).to_string()
    }

    /// Signs arbitrary header and payload bytes.
    fn raw_bytes(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64::encode_url(header), b64::encode_url(payload));
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", b64::encode_url(&signature))
    }

    /// Signs an arbitrary header and payload text.
    fn raw(&self, header: &str, payload: &str) -> String {
        self.raw_bytes(header.as_bytes(), payload.as_bytes())
    }

    /// Signs `payload` under the ordinary header.
    fn at(&self, payload: &str) -> String {
        self.raw(&self.header(), payload)
    }

    /// Signs `payload` under the ordinary header with `extra` raw members added first.
    fn with_header_members(&self, extra: &str, payload: &str) -> String {
        self.raw(&prepend(&self.header(), extra), payload)
    }
}

/// A token with a chosen signature.
fn with_signature(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64::encode_url(header.as_bytes()),
        b64::encode_url(payload.as_bytes()),
        b64::encode_url(signature)
    )
}

/// Inserts raw JSON members at the start of a JSON object text.
fn prepend(object: &str, extra: &str) -> String {
    assert!(object.starts_with('{') && object.len() > 2);
    format!("{{{extra},{}", &object[1..])
}

fn jose_signer(alg: Algorithm, kid: &str, issuer: Option<&str>) -> (Signer, Map<String, Value>) {
    let key = SigningKey::generate(alg, kid, issuer.map(str::to_owned)).unwrap();
    let members = key.public_jwk_members();
    let signer = Signer {
        kid: kid.to_owned(),
        alg: alg.name(),
        pair: Pair::Jose(key),
    };
    (signer, members)
}

fn rsa_members(pair: &RsaKeyPair, kid: &str, alg: &str, issuer: &str) -> Map<String, Value> {
    let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let Value::Object(members) = json!({
        "kty": "RSA",
        "n": b64::encode_url(&public.n),
        "e": b64::encode_url(&public.e),
        "kid": kid,
        "alg": alg,
        "use": "sig",
        "issuer": issuer,
    }) else {
        unreachable!()
    };
    members
}

fn rsa_signer(
    size: KeySize,
    kid: &str,
    alg: &'static str,
    encoding: &'static dyn RsaEncoding,
) -> (Signer, Map<String, Value>) {
    let pair = RsaKeyPair::generate(size).unwrap();
    let members = rsa_members(&pair, kid, alg, ISS);
    let signer = Signer {
        kid: kid.to_owned(),
        alg,
        pair: Pair::Rsa(pair, encoding),
    };
    (signer, members)
}

fn es384_members(pair: &EcdsaKeyPair, kid: &str) -> Map<String, Value> {
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 97);
    let Value::Object(members) = json!({
        "kty": "EC",
        "crv": "P-384",
        "x": b64::encode_url(&point[1..49]),
        "y": b64::encode_url(&point[49..]),
        "kid": kid,
        "alg": "ES384",
        "use": "sig",
        "issuer": ISS,
    }) else {
        unreachable!()
    };
    members
}

fn jwk(mut members: Map<String, Value>, edit: impl FnOnce(&mut Map<String, Value>)) -> Jwk {
    edit(&mut members);
    Jwk::from_object(members).unwrap()
}

fn source(keys: Vec<Jwk>) -> Arc<dyn KeySource> {
    StaticKeys::new(JwkSet::from_keys(keys).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------------

fn base_claims(iss: &str, aud: &str) -> Map<String, Value> {
    let Value::Object(claims) = json!({
        "iss": iss,
        "sub": "alice",
        "aud": aud,
        "exp": NOW + 3600,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "jti": "jti-1",
        "client_id": "client-1",
    }) else {
        unreachable!()
    };
    claims
}

/// Access-token claims for `iss`/`aud`, edited.
fn claims_for(iss: &str, aud: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut claims = base_claims(iss, aud);
    edit(&mut claims);
    Value::Object(claims).to_string()
}

/// Access-token claims of the main issuer, edited.
fn claims(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    claims_for(ISS, AUD, edit)
}

fn good_claims() -> String {
    claims(|_| {})
}

fn set(name: &str, value: Value) -> impl FnOnce(&mut Map<String, Value>) {
    let name = name.to_owned();
    move |c| {
        c.insert(name, value);
    }
}

fn without(name: &str) -> impl FnOnce(&mut Map<String, Value>) {
    let name = name.to_owned();
    move |c| {
        c.remove(&name);
    }
}

/// Good main-issuer claims with raw members (possibly repeating names) inserted first.
fn claims_raw(extra: &str) -> String {
    prepend(&good_claims(), extra)
}

// ---------------------------------------------------------------------------------------------
// Token surgery
// ---------------------------------------------------------------------------------------------

fn segments(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    [parts[0], parts[1], parts[2]]
}

/// Sets unused low bits of the last character of a segment (same bytes under a lenient decoder).
fn non_canonical(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert!(
        matches!(segment.len() % 4, 2 | 3),
        "segment has no unused bits"
    );
    let last = segment.as_bytes()[segment.len() - 1];
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(index & 1, 0, "a canonical last character has zero low bits");
    let mut out = segment[..segment.len() - 1].to_owned();
    out.push(char::from(ALPHABET[index | 1]));
    out
}

/// Appends characters until the length is 1 mod 4, a length no base64 encoding has.
fn one_char_left_over(segment: &str) -> String {
    let mut out = segment.to_owned();
    while out.len() % 4 != 1 {
        out.push('A');
    }
    out
}

fn replace_first_char(segment: &str, with: char) -> String {
    let mut out = String::new();
    out.push(with);
    out.push_str(&segment[1..]);
    out
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let mut value: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    if value.first().is_none_or(|&b| b & 0x80 != 0) {
        value.insert(0, 0);
    }
    let mut out = vec![0x02, u8::try_from(value.len()).unwrap()];
    out.extend(value);
    out
}

/// Re-encodes a fixed `r||s` ECDSA signature as ASN.1 DER.
fn ecdsa_to_der(signature: &[u8]) -> Vec<u8> {
    let (r, s) = signature.split_at(signature.len() / 2);
    let mut body = der_integer(r);
    body.extend(der_integer(s));
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

fn b64_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

/// A valid es1 token of exactly `target` bytes (padding in a header member and a claim).
fn token_of_len(signer: &Signer, target: usize) -> String {
    for header_pad in 0..4 {
        let mut header: Map<String, Value> = serde_json::from_str(&signer.header()).unwrap();
        header.insert("x".into(), Value::String("h".repeat(header_pad)));
        let header = Value::Object(header).to_string();
        let fixed = b64_len(header.len()) + 2 + b64_len(64);
        for pad in 0..target {
            let payload = claims(set("pad", Value::String("p".repeat(pad))));
            let len = fixed + b64_len(payload.len());
            if len == target {
                let token = signer.raw(&header, &payload);
                assert_eq!(token.len(), target);
                return token;
            }
            if len > target {
                break;
            }
        }
    }
    panic!("no token of {target} bytes");
}

// ---------------------------------------------------------------------------------------------
// The world: keys and policies
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    /// One exact issuer (`ISS`) with a rich key set; access tokens; `revoked1` revoked.
    Main,
    /// As `Main` but with plain JWTs required.
    Jwt,
    /// As `Main` with a leeway of zero.
    NoLeeway,
    /// Storm-0558: consumer and enterprise issuers with their own key sets.
    Storm,
    /// Two issuers sharing one key source.
    Shared,
    /// A templated issuer (tenants contoso and fabrikam) and an exact per-tenant issuer.
    Tenant,
    /// One issuer with one ES256 and one Ed25519 key, for tokens without `kid`.
    Single,
}

struct World {
    es1: Signer,
    ed1: Signer,
    rs1: Signer,
    es_noalg: Signer,
    rs_noalg: Signer,
    enc1: Signer,
    ops1: Signer,
    expired1: Signer,
    future1: Signer,
    window1: Signer,
    shortlived: Signer,
    revoked1: Signer,
    alien: Signer,
    impostor: Signer,
    attacker: Signer,
    attacker_jwk: Map<String, Value>,
    rs1_n: Vec<u8>,
    rs384: Signer,
    rs512: Signer,
    ps256: Signer,
    ps384: Signer,
    ps512: Signer,
    es384: Signer,
    es384_noalg: Signer,
    msa1: Signer,
    msa_claims_ent: Signer,
    ent1: Signer,
    consumer_dup: Signer,
    sa: Signer,
    snone: Signer,
    tkey: Signer,
    tnoiss: Signer,
    tcontoso: Signer,
    xkey: Signer,
    only: Signer,
    only_ed: Signer,
    main: Validator,
    jwt: Validator,
    no_leeway: Validator,
    storm: Validator,
    shared: Validator,
    tenant: Validator,
    single: Validator,
}

impl World {
    fn validator(&self, policy: P) -> &Validator {
        match policy {
            P::Main => &self.main,
            P::Jwt => &self.jwt,
            P::NoLeeway => &self.no_leeway,
            P::Storm => &self.storm,
            P::Shared => &self.shared,
            P::Tenant => &self.tenant,
            P::Single => &self.single,
        }
    }
}

fn build_world() -> World {
    let iss = Some(ISS);
    let (es1, es1_m) = jose_signer(Algorithm::Es256, "es1", iss);
    let (ed1, ed1_m) = jose_signer(Algorithm::EdDsa, "ed1", iss);
    let (rs1, rs1_m) = jose_signer(Algorithm::Rs256, "rs1", iss);
    let rs1_n = b64::decode_url(rs1_m["n"].as_str().unwrap().as_bytes()).unwrap();
    let (es_noalg, es_noalg_m) = jose_signer(Algorithm::Es256, "es-noalg", iss);
    let (rs_noalg, rs_noalg_m) = jose_signer(Algorithm::Rs256, "rs-noalg", iss);
    let (enc1, enc1_m) = jose_signer(Algorithm::Es256, "enc1", iss);
    let (ops1, ops1_m) = jose_signer(Algorithm::Es256, "ops1", iss);
    let (expired1, expired1_m) = jose_signer(Algorithm::Es256, "expired1", iss);
    let (future1, future1_m) = jose_signer(Algorithm::Es256, "future1", iss);
    let (window1, window1_m) = jose_signer(Algorithm::Es256, "window1", iss);
    let (shortlived, shortlived_m) = jose_signer(Algorithm::Es256, "shortlived", iss);
    let (revoked1, revoked1_m) = jose_signer(Algorithm::Es256, "revoked1", iss);
    let (alien, alien_m) = jose_signer(
        Algorithm::Es256,
        "alien",
        Some("https://someone-else.example"),
    );
    // Same kid as es1, different key: never in any set.
    let (impostor, _) = jose_signer(Algorithm::Es256, "es1", iss);
    let (attacker, attacker_jwk) = jose_signer(Algorithm::Es256, "attacker", None);

    let (rs384, rs384_m) = rsa_signer(
        KeySize::Rsa2048,
        "rs384",
        "RS384",
        &signature::RSA_PKCS1_SHA384,
    );
    let (rs512, rs512_m) = rsa_signer(
        KeySize::Rsa2048,
        "rs512",
        "RS512",
        &signature::RSA_PKCS1_SHA512,
    );
    let (ps256, ps256_m) = rsa_signer(
        KeySize::Rsa3072,
        "ps256",
        "PS256",
        &signature::RSA_PSS_SHA256,
    );
    let (ps384, ps384_m) = rsa_signer(
        KeySize::Rsa2048,
        "ps384",
        "PS384",
        &signature::RSA_PSS_SHA384,
    );
    let (ps512, ps512_m) = rsa_signer(
        KeySize::Rsa3072,
        "ps512",
        "PS512",
        &signature::RSA_PSS_SHA512,
    );
    let es384_pair = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let es384_m = es384_members(&es384_pair, "es384");
    let es384 = Signer {
        kid: "es384".into(),
        alg: "ES384",
        pair: Pair::Ec384(es384_pair),
    };
    let es384b_pair = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let es384_noalg_m = es384_members(&es384b_pair, "es384-noalg");
    let es384_noalg = Signer {
        kid: "es384-noalg".into(),
        alg: "ES384",
        pair: Pair::Ec384(es384b_pair),
    };

    // A 1024-bit modulus: odd, top bit set.
    let mut weak_n = vec![0xc5u8; 128];
    weak_n[127] = 0x3b;
    let Value::Object(weak_m) = json!({
        "kty": "RSA", "kid": "weak1", "alg": "RS256", "use": "sig", "issuer": ISS,
        "n": b64::encode_url(&weak_n), "e": "AQAB",
    }) else {
        unreachable!()
    };
    // 2047 bits in 256 bytes: one bit short of the minimum.
    let mut short_n = vec![0x9du8; 256];
    short_n[0] = 0x7f;
    let Value::Object(short_m) = json!({
        "kty": "RSA", "kid": "rsa2047", "alg": "RS256", "use": "sig", "issuer": ISS,
        "n": b64::encode_url(&short_n), "e": "AQAB",
    }) else {
        unreachable!()
    };
    let Value::Object(p521_m) = json!({"kty": "EC", "crv": "P-521", "kid": "p521", "issuer": ISS})
    else {
        unreachable!()
    };
    let Value::Object(oct_m) = json!({"kty": "oct", "kid": "oct1", "issuer": ISS}) else {
        unreachable!()
    };
    let (_, ecrs_src) = jose_signer(Algorithm::Es256, "ec-with-rs-alg", iss);

    let main_keys = source(vec![
        jwk(es1_m, |_| {}),
        jwk(ed1_m, |_| {}),
        jwk(rs1_m, |_| {}),
        jwk(es_noalg_m, |m| {
            m.remove("alg");
        }),
        jwk(rs_noalg_m, |m| {
            m.remove("alg");
        }),
        jwk(enc1_m, set("use", json!("enc"))),
        jwk(ops1_m, |m| {
            m.remove("use");
            m.insert("key_ops".into(), json!(["sign"]));
        }),
        jwk(expired1_m, set("exp", json!(NOW - 1))),
        jwk(future1_m, set("nbf", json!(NOW + 1))),
        jwk(window1_m, |m| {
            m.insert("nbf".into(), json!(NOW - 10_000));
            m.insert("exp".into(), json!(NOW + 10_000));
        }),
        jwk(shortlived_m, set("exp", json!(NOW + 30))),
        jwk(revoked1_m, |_| {}),
        jwk(alien_m, |_| {}),
        jwk(rs384_m, |_| {}),
        jwk(rs512_m, |_| {}),
        jwk(ps256_m, |_| {}),
        jwk(ps384_m, |_| {}),
        jwk(ps512_m, |_| {}),
        jwk(es384_m, |_| {}),
        jwk(es384_noalg_m, |m| {
            m.remove("alg");
        }),
        jwk(weak_m, |_| {}),
        jwk(short_m, |_| {}),
        jwk(p521_m, |_| {}),
        jwk(oct_m, |_| {}),
        jwk(ecrs_src, set("alg", json!("RS256"))),
    ]);

    let main = Validator::new(
        Policy::builder()
            .issuer(TrustedIssuer::new(ISS, Arc::clone(&main_keys)).audiences([AUD]))
            .revoke_kid("revoked1")
            .build()
            .unwrap(),
    );
    let jwt = Validator::new(
        Policy::builder()
            .issuer(TrustedIssuer::new(ISS, Arc::clone(&main_keys)).audiences([AUD]))
            .token_type(TokenType::Jwt)
            .build()
            .unwrap(),
    );
    let no_leeway = Validator::new(
        Policy::builder()
            .issuer(TrustedIssuer::new(ISS, Arc::clone(&main_keys)).audiences([AUD]))
            .leeway(0)
            .build()
            .unwrap(),
    );

    // Storm-0558: neither set's keys name an issuer; each set belongs to one issuer only.
    let (msa1, msa1_m) = jose_signer(Algorithm::Rs256, "msa1", None);
    let (ent1, ent1_m) = jose_signer(Algorithm::Rs256, "ent1", None);
    // A key in the consumer set whose `issuer` member claims the enterprise issuer.
    let (msa_claims_ent, msa_claims_ent_m) =
        jose_signer(Algorithm::Es256, "msa-claims-ent", Some(ENTERPRISE));
    let (consumer_dup, consumer_dup_m) = jose_signer(Algorithm::Es256, "dup", None);
    let (_, enterprise_dup_m) = jose_signer(Algorithm::Es256, "dup", None);
    let strip_issuer = |m: &mut Map<String, Value>| {
        m.remove("issuer");
    };
    let storm = Validator::new(
        Policy::builder()
            .issuer(
                TrustedIssuer::new(
                    CONSUMER,
                    source(vec![
                        jwk(msa1_m, strip_issuer),
                        jwk(consumer_dup_m, strip_issuer),
                        jwk(msa_claims_ent_m, |_| {}),
                    ]),
                )
                .audiences([CONSUMER_AUD]),
            )
            .issuer(
                TrustedIssuer::new(
                    ENTERPRISE,
                    source(vec![
                        jwk(ent1_m, strip_issuer),
                        jwk(enterprise_dup_m, strip_issuer),
                    ]),
                )
                .audiences([ENTERPRISE_AUD]),
            )
            .build()
            .unwrap(),
    );

    // One key source serving two issuers.
    let (sa, sa_m) = jose_signer(Algorithm::Es256, "sa", Some(SHARED_A));
    let (snone, snone_m) = jose_signer(Algorithm::Es256, "snone", None);
    let shared_keys = source(vec![jwk(sa_m, |_| {}), jwk(snone_m, |_| {})]);
    let shared = Validator::new(
        Policy::builder()
            .issuer(TrustedIssuer::new(SHARED_A, Arc::clone(&shared_keys)).audiences([AUD]))
            .issuer(TrustedIssuer::new(SHARED_B, shared_keys).audiences([AUD]))
            .build()
            .unwrap(),
    );

    // Per-tenant issuers.
    let (tkey, tkey_m) = jose_signer(Algorithm::Es256, "tkey", Some(TEMPLATE));
    let (tnoiss, tnoiss_m) = jose_signer(Algorithm::Es256, "tnoiss", None);
    let (tcontoso, tcontoso_m) = jose_signer(
        Algorithm::Es256,
        "tcontoso",
        Some("https://login.example/contoso/v2.0"),
    );
    let (xkey, xkey_m) = jose_signer(Algorithm::Es256, "xkey", Some(STS_TEMPLATE));
    let tenant = Validator::new(
        Policy::builder()
            .issuer(
                TrustedIssuer::new(
                    TEMPLATE,
                    source(vec![
                        jwk(tkey_m, |_| {}),
                        jwk(tnoiss_m, |_| {}),
                        jwk(tcontoso_m, |_| {}),
                    ]),
                )
                .audiences([TENANT_AUD])
                .tenants(["contoso", "fabrikam"]),
            )
            .issuer(
                TrustedIssuer::new(STS_CONTOSO, source(vec![jwk(xkey_m, |_| {})]))
                    .audiences([TENANT_AUD]),
            )
            .build()
            .unwrap(),
    );

    // Exactly one key per type, for tokens without kid.
    let (only, only_m) = jose_signer(Algorithm::Es256, "only", Some(SINGLE));
    let (only_ed, only_ed_m) = jose_signer(Algorithm::EdDsa, "only-ed", Some(SINGLE));
    let single = Validator::new(
        Policy::builder()
            .issuer(
                TrustedIssuer::new(
                    SINGLE,
                    source(vec![jwk(only_m, |_| {}), jwk(only_ed_m, |_| {})]),
                )
                .audiences([AUD]),
            )
            .build()
            .unwrap(),
    );

    World {
        es1,
        ed1,
        rs1,
        es_noalg,
        rs_noalg,
        enc1,
        ops1,
        expired1,
        future1,
        window1,
        shortlived,
        revoked1,
        alien,
        impostor,
        attacker,
        attacker_jwk,
        rs1_n,
        rs384,
        rs512,
        ps256,
        ps384,
        ps512,
        es384,
        es384_noalg,
        msa1,
        msa_claims_ent,
        ent1,
        consumer_dup,
        sa,
        snone,
        tkey,
        tnoiss,
        tcontoso,
        xkey,
        only,
        only_ed,
        main,
        jwt,
        no_leeway,
        storm,
        shared,
        tenant,
        single,
    }
}

static WORLD: LazyLock<World> = LazyLock::new(build_world);

fn world() -> &'static World {
    &WORLD
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    policy: P,
    token: String,
    expected: Reason,
}

#[allow(clippy::too_many_lines)]
fn corpus(w: &World) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &'static str, policy: P, token: String, expected: Reason| {
        cases.push(Case {
            name,
            policy,
            token,
            expected,
        });
    };
    use P::{Jwt, Main, NoLeeway, Shared, Single, Storm, Tenant};
    use Reason as R;

    let good = w.es1.at(&good_claims());
    let [good_h, good_p, good_s] = segments(&good);
    let es_header = w.es1.header();

    // --- 1. size ---------------------------------------------------------------------------
    add(
        "size: valid token of 16 KiB + 1 bytes",
        Main,
        token_of_len(&w.es1, 16 * 1024 + 1),
        R::TooLarge,
    );
    add(
        "size: 16 KiB + 1 bytes of garbage is too_large, not malformed",
        Main,
        "!".repeat(16 * 1024 + 1),
        R::TooLarge,
    );

    // --- 2. structure and base64url ---------------------------------------------------------
    add("structure: empty token", Main, String::new(), R::Malformed);
    add(
        "structure: two segments",
        Main,
        format!("{good_h}.{good_p}"),
        R::Malformed,
    );
    add(
        "structure: four segments",
        Main,
        format!("{good}.{good_s}"),
        R::Malformed,
    );
    add(
        "structure: four segments, empty last",
        Main,
        format!("{good}."),
        R::Malformed,
    );
    add(
        "structure: empty header segment",
        Main,
        format!(".{good_p}.{good_s}"),
        R::Malformed,
    );
    add(
        "structure: JWE-like five segments",
        Main,
        format!("{good_h}..{good_p}.{good_s}.{good_s}"),
        R::Malformed,
    );
    add(
        "base64url: non-zero unused trailing bits in signature",
        Main,
        format!("{good_h}.{good_p}.{}", non_canonical(good_s)),
        R::Malformed,
    );
    add(
        "base64url: padding '=' on signature",
        Main,
        format!("{good}=="),
        R::Malformed,
    );
    add(
        "base64url: '+' from the standard alphabet",
        Main,
        format!("{good_h}.{good_p}.{}", replace_first_char(good_s, '+')),
        R::Malformed,
    );
    add(
        "base64url: '/' from the standard alphabet",
        Main,
        format!("{good_h}.{good_p}.{}", replace_first_char(good_s, '/')),
        R::Malformed,
    );
    add(
        "base64url: space after the first dot",
        Main,
        good.replacen('.', ". ", 1),
        R::Malformed,
    );
    add(
        "base64url: line break inside the payload",
        Main,
        format!("{good_h}.{}\n{}.{good_s}", &good_p[..20], &good_p[20..]),
        R::Malformed,
    );
    add(
        "base64url: trailing newline",
        Main,
        format!("{good}\n"),
        R::Malformed,
    );
    add(
        "base64url: impossible length (one char left over)",
        Main,
        format!("{good_h}.{}.{good_s}", one_char_left_over(good_p)),
        R::Malformed,
    );

    // --- 2. JSON ---------------------------------------------------------------------------
    add(
        "json: header is an array",
        Main,
        with_signature("[]", &good_claims(), &[1; 64]),
        R::Malformed,
    );
    add(
        "json: header is not JSON",
        Main,
        with_signature("alg=ES256", &good_claims(), &[1; 64]),
        R::Malformed,
    );
    add(
        "json: header with trailing data",
        Main,
        w.es1.raw(&format!("{es_header} x"), &good_claims()),
        R::Malformed,
    );
    add(
        "json: header with a UTF-8 BOM",
        Main,
        w.es1.raw(&format!("\u{feff}{es_header}"), &good_claims()),
        R::Malformed,
    );
    add(
        "json: header without alg",
        Main,
        w.es1.raw(r#"{"kid":"es1","typ":"at+jwt"}"#, &good_claims()),
        R::Malformed,
    );
    add(
        "json: alg is a number",
        Main,
        w.es1
            .raw(r#"{"alg":256,"kid":"es1","typ":"at+jwt"}"#, &good_claims()),
        R::Malformed,
    );
    add(
        "json: alg is an array",
        Main,
        w.es1.raw(
            r#"{"alg":["ES256"],"kid":"es1","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::Malformed,
    );
    add(
        "json: kid is a number",
        Main,
        w.es1
            .raw(r#"{"alg":"ES256","kid":1,"typ":"at+jwt"}"#, &good_claims()),
        R::Malformed,
    );
    add(
        "json: typ is null",
        Main,
        w.es1
            .raw(r#"{"alg":"ES256","kid":"es1","typ":null}"#, &good_claims()),
        R::Malformed,
    );
    add(
        "json: cty is an object",
        Main,
        w.es1.with_header_members(r#""cty":{}"#, &good_claims()),
        R::Malformed,
    );
    add(
        "json: claims are an array",
        Main,
        w.es1.at("[1,2]"),
        R::Malformed,
    );
    add(
        "json: claims are a string",
        Main,
        w.es1.at(r#""sub""#),
        R::Malformed,
    );
    add("json: empty payload", Main, w.es1.at(""), R::Malformed);
    add(
        "json: invalid UTF-8 in claims",
        Main,
        w.es1.raw_bytes(
            es_header.as_bytes(),
            &[br#"{"sub":""#.as_slice(), b"\xff\xfe", br#"","iss":"x"}"#].concat(),
        ),
        R::Malformed,
    );
    add(
        "json: lone surrogate escape in claims",
        Main,
        w.es1.at(&claims_raw(r#""name":"\ud800""#)),
        R::Malformed,
    );
    add(
        "json: claims nested 65 deep",
        Main,
        w.es1.at(&claims_raw(&format!(
            r#""deep":{}{}"#,
            "[".repeat(64),
            "]".repeat(64)
        ))),
        R::Malformed,
    );
    add(
        "json: header nested 65 deep",
        Main,
        w.es1.with_header_members(
            &format!(r#""deep":{}{}"#, "[".repeat(64), "]".repeat(64)),
            &good_claims(),
        ),
        R::Malformed,
    );
    add(
        "json: claims with trailing comma",
        Main,
        w.es1.at(&good_claims().replacen('}', ",}", 1)),
        R::Malformed,
    );

    // --- 2. duplicate members -----------------------------------------------------------------
    add(
        "duplicate: alg twice in header",
        Main,
        w.es1.with_header_members(r#""alg":"none""#, &good_claims()),
        R::DuplicateMember,
    );
    add(
        "duplicate: kid twice via \\u escape in header",
        Main,
        w.es1
            .with_header_members(r#""\u006bid":"rs1""#, &good_claims()),
        R::DuplicateMember,
    );
    add(
        "duplicate: sub twice in claims",
        Main,
        w.es1.at(&claims_raw(r#""sub":"admin""#)),
        R::DuplicateMember,
    );
    add(
        "duplicate: sub twice via \\u escape in claims",
        Main,
        w.es1.at(&claims_raw(r#""\u0073ub":"admin""#)),
        R::DuplicateMember,
    );
    add(
        "duplicate: nested object member",
        Main,
        w.es1.at(&claims_raw(r#""cnf":{"jkt":"a","jkt":"b"}"#)),
        R::DuplicateMember,
    );
    add(
        "duplicate: member inside an array of objects",
        Main,
        w.es1.at(&claims_raw(
            r#""roles":[{"r":"user"},{"r":"user","r":"admin"}]"#,
        )),
        R::DuplicateMember,
    );
    add(
        "order: duplicate claims beat alg none",
        Main,
        with_signature(
            r#"{"alg":"none","typ":"at+jwt"}"#,
            &claims_raw(r#""sub":"admin""#),
            b"",
        ),
        R::DuplicateMember,
    );

    // --- 3. alg ---------------------------------------------------------------------------
    add(
        "alg: none with empty signature",
        Main,
        with_signature(
            r#"{"alg":"none","kid":"es1","typ":"at+jwt"}"#,
            &good_claims(),
            b"",
        ),
        R::AlgNotAllowed,
    );
    add(
        "alg: None",
        Main,
        with_signature(
            r#"{"alg":"None","kid":"es1","typ":"at+jwt"}"#,
            &good_claims(),
            b"",
        ),
        R::AlgNotAllowed,
    );
    add(
        "alg: NONE",
        Main,
        with_signature(
            r#"{"alg":"NONE","kid":"es1","typ":"at+jwt"}"#,
            &good_claims(),
            b"",
        ),
        R::AlgNotAllowed,
    );
    {
        // Key confusion: HMAC with the RSA public modulus as the secret.
        let header = r#"{"alg":"HS256","kid":"rs1","typ":"at+jwt"}"#;
        let input = format!(
            "{}.{}",
            b64::encode_url(header.as_bytes()),
            b64::encode_url(good_claims().as_bytes())
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &w.rs1_n),
            input.as_bytes(),
        );
        add(
            "alg: HS256 keyed with the RSA public key",
            Main,
            format!("{input}.{}", b64::encode_url(tag.as_ref())),
            R::AlgNotAllowed,
        );
    }
    add(
        "alg: wrong case es256",
        Main,
        w.es1.raw(
            r#"{"alg":"es256","kid":"es1","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "alg: unsupported ES512",
        Main,
        w.es1.raw(
            r#"{"alg":"ES512","kid":"es1","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "alg: empty string",
        Main,
        w.es1
            .raw(r#"{"alg":"","kid":"es1","typ":"at+jwt"}"#, &good_claims()),
        R::AlgNotAllowed,
    );
    add(
        "order: alg none beats unknown kid",
        Main,
        with_signature(
            r#"{"alg":"none","kid":"nobody","typ":"at+jwt"}"#,
            &good_claims(),
            b"",
        ),
        R::AlgNotAllowed,
    );

    // --- 3. forbidden header members ------------------------------------------------------
    {
        let attacker_header =
            json!({"alg": "ES256", "kid": "attacker", "typ": "at+jwt", "jwk": w.attacker_jwk})
                .to_string();
        add(
            "header: embedded jwk (CVE-2018-0114)",
            Main,
            w.attacker.raw(&attacker_header, &good_claims()),
            R::UnsupportedHeader,
        );
    }
    add(
        "header: jku",
        Main,
        w.es1
            .with_header_members(r#""jku":"https://evil.example/jwks""#, &good_claims()),
        R::UnsupportedHeader,
    );
    add(
        "header: x5u",
        Main,
        w.es1
            .with_header_members(r#""x5u":"https://evil.example/cert.pem""#, &good_claims()),
        R::UnsupportedHeader,
    );
    add(
        "header: x5c",
        Main,
        w.es1
            .with_header_members(r#""x5c":["MIIBszCCAVmgAwIBAgIUEeZ"]"#, &good_claims()),
        R::UnsupportedHeader,
    );
    add(
        "header: crit",
        Main,
        w.es1
            .with_header_members(r#""crit":["exp"]"#, &good_claims()),
        R::UnsupportedHeader,
    );
    add(
        "header: b64 false",
        Main,
        w.es1.with_header_members(r#""b64":false"#, &good_claims()),
        R::UnsupportedHeader,
    );
    add(
        "order: forbidden header beats typ",
        Main,
        w.es1.raw(
            r#"{"alg":"ES256","kid":"es1","jku":"https://evil.example"}"#,
            &good_claims(),
        ),
        R::UnsupportedHeader,
    );

    // --- 3. typ ---------------------------------------------------------------------------
    add(
        "typ: JWT where an access token is required",
        Main,
        w.es1
            .raw(r#"{"alg":"ES256","kid":"es1","typ":"JWT"}"#, &good_claims()),
        R::TokenTypeMismatch,
    );
    add(
        "typ: absent where an access token is required",
        Main,
        w.es1.raw(r#"{"alg":"ES256","kid":"es1"}"#, &good_claims()),
        R::TokenTypeMismatch,
    );
    add(
        "typ: application/json",
        Main,
        w.es1.raw(
            r#"{"alg":"ES256","kid":"es1","typ":"application/json"}"#,
            &good_claims(),
        ),
        R::TokenTypeMismatch,
    );
    add(
        "typ: at+jwt where a plain JWT is required",
        Jwt,
        w.es1.at(&good_claims()),
        R::TokenTypeMismatch,
    );
    add(
        "order: typ beats unknown kid",
        Main,
        w.es1.raw(
            r#"{"alg":"ES256","kid":"nobody","typ":"JWT"}"#,
            &good_claims(),
        ),
        R::TokenTypeMismatch,
    );

    // --- 4. key lookup ----------------------------------------------------------------------
    let named = |kid: &str| json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"}).to_string();
    add(
        "kid: empty string",
        Main,
        w.es1.raw(&named(""), &good_claims()),
        R::UnknownKey,
    );
    add(
        "kid: unknown",
        Main,
        w.es1.raw(&named("nobody"), &good_claims()),
        R::UnknownKey,
    );
    add(
        "kid: path traversal",
        Main,
        w.es1.raw(&named("../../../dev/null"), &good_claims()),
        R::UnknownKey,
    );
    add(
        "kid: SQL injection",
        Main,
        w.es1.raw(&named("' OR '1'='1"), &good_claims()),
        R::UnknownKey,
    );
    add(
        "kid: embedded null byte",
        Main,
        w.es1.raw(&named("es1\u{0}"), &good_claims()),
        R::UnknownKey,
    );
    add(
        "kid: 4096 characters",
        Main,
        w.es1.raw(&named(&"k".repeat(4096)), &good_claims()),
        R::UnknownKey,
    );
    add(
        "kid: different case",
        Main,
        w.es1.raw(&named("ES1"), &good_claims()),
        R::UnknownKey,
    );
    add(
        "kid: absent with several ES256 keys",
        Main,
        w.es1
            .raw(r#"{"alg":"ES256","typ":"at+jwt"}"#, &good_claims()),
        R::UnknownKey,
    );
    add(
        "kid: absent and no RSA key at all",
        Single,
        w.rs1.raw(
            r#"{"alg":"RS256","typ":"at+jwt"}"#,
            &claims_for(SINGLE, AUD, |_| {}),
        ),
        R::UnknownKey,
    );
    // Contract: without a kid, exactly one key of the fitting type may exist across all
    // trusted sets. Two RSA keys exist (msa1, ent1); the token's unverified iss must not be
    // used to pick between them.
    add(
        "kid: absent, one RSA key in each of two trusted sets",
        Storm,
        w.ent1.raw(
            r#"{"alg":"RS256","typ":"at+jwt"}"#,
            &claims_for(ENTERPRISE, ENTERPRISE_AUD, |_| {}),
        ),
        R::UnknownKey,
    );
    add(
        "kid: key of another validator's trust",
        Single,
        w.es1.at(&claims_for(SINGLE, AUD, |_| {})),
        R::UnknownKey,
    );
    add(
        "order: unknown kid beats bad signature and bad claims",
        Main,
        with_signature(&named("nobody"), "{}", &[0; 64]),
        R::UnknownKey,
    );

    // --- 5. key state -----------------------------------------------------------------------
    add(
        "key: revoked",
        Main,
        w.revoked1.at(&good_claims()),
        R::KeyRevoked,
    );
    add(
        "order: revoked beats bad signature",
        Main,
        with_signature(&w.revoked1.header(), &good_claims(), &[7; 64]),
        R::KeyRevoked,
    );
    add(
        "key: use enc",
        Main,
        w.enc1.at(&good_claims()),
        R::KeyNotUsable,
    );
    add(
        "key: key_ops without verify",
        Main,
        w.ops1.at(&good_claims()),
        R::KeyNotUsable,
    );
    add(
        "key: RSA modulus of 1024 bits",
        Main,
        with_signature(
            r#"{"alg":"RS256","kid":"weak1","typ":"at+jwt"}"#,
            &good_claims(),
            &[0x42; 128],
        ),
        R::KeyNotUsable,
    );
    add(
        "key: RSA modulus of 2047 bits",
        Main,
        with_signature(
            r#"{"alg":"RS256","kid":"rsa2047","typ":"at+jwt"}"#,
            &good_claims(),
            &[0x42; 256],
        ),
        R::KeyNotUsable,
    );
    add(
        "key: unsupported curve P-521",
        Main,
        with_signature(
            r#"{"alg":"ES256","kid":"p521","typ":"at+jwt"}"#,
            &good_claims(),
            &[1; 64],
        ),
        R::KeyNotUsable,
    );
    add(
        "key: symmetric oct key named by an RS256 token",
        Main,
        with_signature(
            r#"{"alg":"RS256","kid":"oct1","typ":"at+jwt"}"#,
            &good_claims(),
            &[1; 256],
        ),
        R::KeyNotUsable,
    );
    add(
        "key: EC key whose alg is RS256",
        Main,
        with_signature(
            r#"{"alg":"ES256","kid":"ec-with-rs-alg","typ":"at+jwt"}"#,
            &good_claims(),
            &[1; 64],
        ),
        R::KeyNotUsable,
    );
    add(
        "key alg: ES256 key, token EdDSA",
        Main,
        w.ed1.raw(
            r#"{"alg":"EdDSA","kid":"es1","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "key alg: Ed25519 key, token ES256",
        Main,
        w.es1.raw(
            r#"{"alg":"ES256","kid":"ed1","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "key alg: RS256 key, token PS256",
        Main,
        w.ps256.raw(
            r#"{"alg":"PS256","kid":"rs1","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "key alg: RSA key without alg, token RS384",
        Main,
        w.rs384.raw(
            r#"{"alg":"RS384","kid":"rs-noalg","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "key alg: P-256 key without alg, token ES384",
        Main,
        w.es384.raw(
            r#"{"alg":"ES384","kid":"es-noalg","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "key alg: P-384 key without alg, token ES256",
        Main,
        w.es1.raw(
            r#"{"alg":"ES256","kid":"es384-noalg","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "key alg: PS384 key, token PS256",
        Main,
        w.ps384.raw(
            r#"{"alg":"PS256","kid":"ps384","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::AlgNotAllowed,
    );
    add(
        "key window: JWK exp one second ago",
        Main,
        w.expired1.at(&good_claims()),
        R::KeyExpired,
    );
    add(
        "key window: JWK nbf one second ahead",
        Main,
        w.future1.at(&good_claims()),
        R::KeyExpired,
    );
    add(
        "order: key window beats bad signature",
        Main,
        with_signature(&w.expired1.header(), &good_claims(), &[7; 64]),
        R::KeyExpired,
    );

    // --- 6. signature -------------------------------------------------------------------------
    {
        let forged = claims(set("sub", json!("admin")));
        add(
            "sig: payload modified after signing",
            Main,
            format!("{good_h}.{}.{good_s}", b64::encode_url(forged.as_bytes())),
            R::BadSignature,
        );
        let header = prepend(&es_header, r#""x":1"#);
        add(
            "sig: header modified after signing",
            Main,
            format!("{}.{good_p}.{good_s}", b64::encode_url(header.as_bytes())),
            R::BadSignature,
        );
    }
    add(
        "sig: ECDSA r = s = 0 (CVE-2022-21449)",
        Main,
        with_signature(&es_header, &good_claims(), &[0; 64]),
        R::BadSignature,
    );
    {
        let mut r_is_n = P256_N.to_vec();
        r_is_n.extend([0; 31]);
        r_is_n.push(1);
        add(
            "sig: ECDSA r = n",
            Main,
            with_signature(&es_header, &good_claims(), &r_is_n),
            R::BadSignature,
        );
        let mut s_is_n = vec![0; 31];
        s_is_n.push(1);
        s_is_n.extend(P256_N);
        add(
            "sig: ECDSA s = n",
            Main,
            with_signature(&es_header, &good_claims(), &s_is_n),
            R::BadSignature,
        );
        add(
            "sig: ECDSA r = s = 0xff..ff",
            Main,
            with_signature(&es_header, &good_claims(), &[0xff; 64]),
            R::BadSignature,
        );
        add(
            "sig: ES384 r = s = 0 (CVE-2022-21449)",
            Main,
            with_signature(&w.es384.header(), &good_claims(), &[0; 96]),
            R::BadSignature,
        );
    }
    {
        let token = w.rs1.at(&good_claims());
        let [h, p, s] = segments(&token);
        let sig = b64::decode_url(s.as_bytes()).unwrap();
        add(
            "sig: RS256 signature one byte short",
            Main,
            format!("{h}.{p}.{}", b64::encode_url(&sig[1..])),
            R::BadSignature,
        );
        let mut padded = vec![0u8];
        padded.extend(&sig);
        add(
            "sig: RS256 signature with a leading zero byte",
            Main,
            format!("{h}.{p}.{}", b64::encode_url(&padded)),
            R::BadSignature,
        );
    }
    {
        let payload = good_claims();
        let input = format!(
            "{}.{}",
            b64::encode_url(es_header.as_bytes()),
            b64::encode_url(payload.as_bytes())
        );
        let fixed = w.es1.sign(input.as_bytes());
        add(
            "sig: DER-encoded ECDSA signature of the right key",
            Main,
            format!("{input}.{}", b64::encode_url(&ecdsa_to_der(&fixed))),
            R::BadSignature,
        );
        add(
            "sig: truncated ECDSA signature",
            Main,
            format!("{input}.{}", b64::encode_url(&fixed[..63])),
            R::BadSignature,
        );
        let mut flipped = fixed.clone();
        flipped[10] ^= 0x01;
        add(
            "sig: one bit flipped in ECDSA signature",
            Main,
            format!("{input}.{}", b64::encode_url(&flipped)),
            R::BadSignature,
        );
    }
    add(
        "sig: empty signature",
        Main,
        format!("{good_h}.{good_p}."),
        R::BadSignature,
    );
    add(
        "sig: another key with the same kid",
        Main,
        w.impostor.at(&good_claims()),
        R::BadSignature,
    );
    {
        let token = w.ed1.at(&good_claims());
        let [h, p, s] = segments(&token);
        let mut sig = b64::decode_url(s.as_bytes()).unwrap();
        sig[0] ^= 0x80;
        add(
            "sig: Ed25519 signature with a flipped bit",
            Main,
            format!("{h}.{p}.{}", b64::encode_url(&sig)),
            R::BadSignature,
        );
        add(
            "sig: Ed25519 signature truncated",
            Main,
            format!("{h}.{p}.{}", b64::encode_url(&sig[..32])),
            R::BadSignature,
        );
    }
    {
        let token = w.rs1.at(&good_claims());
        let [h, p, s] = segments(&token);
        let mut sig = b64::decode_url(s.as_bytes()).unwrap();
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        add(
            "sig: RS256 signature with a flipped bit",
            Main,
            format!("{h}.{p}.{}", b64::encode_url(&sig)),
            R::BadSignature,
        );
    }
    add(
        "sig: PS256 kid signed by another RSA key",
        Main,
        w.ps384.raw(
            r#"{"alg":"PS256","kid":"ps256","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::BadSignature,
    );
    add(
        "sig: RS256 kid signed by another 2048-bit RSA key",
        Main,
        w.rs_noalg.raw(
            r#"{"alg":"RS256","kid":"rs1","typ":"at+jwt"}"#,
            &good_claims(),
        ),
        R::BadSignature,
    );
    add(
        "sig: signature of another token",
        Main,
        format!(
            "{good_h}.{good_p}.{}",
            segments(&w.es1.at(&claims(set("jti", json!("other")))))[2]
        ),
        R::BadSignature,
    );
    add(
        "sig: Storm-0558 attacker names the enterprise kid",
        Storm,
        w.msa1.raw(
            r#"{"alg":"RS256","kid":"ent1","typ":"at+jwt"}"#,
            &claims_for(ENTERPRISE, ENTERPRISE_AUD, |_| {}),
        ),
        R::BadSignature,
    );
    add(
        "sig: kid in both sets, consumer key, enterprise iss",
        Storm,
        w.consumer_dup
            .at(&claims_for(ENTERPRISE, ENTERPRISE_AUD, |_| {})),
        R::BadSignature,
    );
    add(
        "order: bad signature beats missing claims and expiry",
        Main,
        with_signature(
            &es_header,
            &claims(|c| {
                c.remove("sub");
                c.insert("exp".into(), json!(1));
            }),
            &[9; 64],
        ),
        R::BadSignature,
    );

    // --- 7. claim presence --------------------------------------------------------------------
    for (name, claim) in [
        ("claims: access token without iss", "iss"),
        ("claims: access token without sub", "sub"),
        ("claims: access token without aud", "aud"),
        ("claims: access token without exp", "exp"),
        ("claims: access token without iat", "iat"),
        ("claims: access token without jti", "jti"),
        ("claims: access token without client_id", "client_id"),
    ] {
        add(
            name,
            Main,
            w.es1.at(&claims(without(claim))),
            R::MissingClaim,
        );
    }
    add(
        "claims: azp does not stand in for client_id",
        Main,
        w.es1.at(&claims(|c| {
            c.remove("client_id");
            c.insert("azp".into(), json!("client-1"));
        })),
        R::MissingClaim,
    );
    add(
        "claims: empty claims object",
        Main,
        w.es1.at("{}"),
        R::MissingClaim,
    );
    let plain = |claims: &str| w.es1.raw(r#"{"alg":"ES256","kid":"es1"}"#, claims);
    add(
        "claims: JWT without aud",
        Jwt,
        plain(&claims(without("aud"))),
        R::MissingClaim,
    );
    add(
        "claims: JWT without exp",
        Jwt,
        plain(&claims(without("exp"))),
        R::MissingClaim,
    );
    add(
        "claims: JWT without iss",
        Jwt,
        plain(&claims(without("iss"))),
        R::MissingClaim,
    );
    add(
        "order: missing claim beats untrusted issuer",
        Main,
        w.es1.at(&claims(|c| {
            c.remove("jti");
            c.insert("iss".into(), json!("https://evil.example"));
        })),
        R::MissingClaim,
    );

    // --- 7. claim types -------------------------------------------------------------------------
    add(
        "claims: exp as a string (CVE-2026-25537)",
        Main,
        w.es1
            .at(&claims(set("exp", json!((NOW + 3600).to_string())))),
        R::InvalidClaim,
    );
    add(
        "claims: iat as a string",
        Main,
        w.es1.at(&claims(set("iat", json!((NOW - 60).to_string())))),
        R::InvalidClaim,
    );
    add(
        "claims: nbf as a string",
        Main,
        w.es1.at(&claims(set("nbf", json!((NOW - 60).to_string())))),
        R::InvalidClaim,
    );
    add(
        "claims: exp 1e300",
        Main,
        w.es1.at(&claims(set("exp", json!(1e300)))),
        R::InvalidClaim,
    );
    add(
        "claims: exp 2^53",
        Main,
        w.es1
            .at(&claims(set("exp", json!(9_007_199_254_740_992_i64)))),
        R::InvalidClaim,
    );
    add(
        "claims: exp u64::MAX",
        Main,
        w.es1.at(&claims(set("exp", json!(u64::MAX)))),
        R::InvalidClaim,
    );
    add(
        "claims: exp null",
        Main,
        w.es1.at(&claims(set("exp", Value::Null))),
        R::InvalidClaim,
    );
    add(
        "claims: exp true",
        Main,
        w.es1.at(&claims(set("exp", json!(true)))),
        R::InvalidClaim,
    );
    add(
        "claims: aud a number",
        Main,
        w.es1.at(&claims(set("aud", json!(42)))),
        R::InvalidClaim,
    );
    add(
        "claims: aud an empty array",
        Main,
        w.es1.at(&claims(set("aud", json!([])))),
        R::InvalidClaim,
    );
    add(
        "claims: aud array with a number",
        Main,
        w.es1.at(&claims(set("aud", json!([AUD, 1])))),
        R::InvalidClaim,
    );
    add(
        "claims: aud an object",
        Main,
        w.es1.at(&claims(set("aud", json!({"aud": AUD})))),
        R::InvalidClaim,
    );
    add(
        "claims: iss a number",
        Main,
        w.es1.at(&claims(set("iss", json!(1)))),
        R::InvalidClaim,
    );
    add(
        "claims: iss an array holding the trusted issuer",
        Main,
        w.es1.at(&claims(set("iss", json!([ISS])))),
        R::InvalidClaim,
    );
    add(
        "claims: sub an object",
        Main,
        w.es1.at(&claims(set("sub", json!({"id": "alice"})))),
        R::InvalidClaim,
    );
    add(
        "claims: tid a number",
        Main,
        w.es1.at(&claims(set("tid", json!(7)))),
        R::InvalidClaim,
    );
    add(
        "claims: client_id a number",
        Main,
        w.es1.at(&claims(set("client_id", json!(1)))),
        R::InvalidClaim,
    );
    add(
        "claims: jti null",
        Main,
        w.es1.at(&claims(set("jti", Value::Null))),
        R::InvalidClaim,
    );
    add(
        "order: invalid claim beats untrusted issuer",
        Main,
        w.es1.at(&claims(|c| {
            c.insert("exp".into(), json!("never"));
            c.insert("iss".into(), json!("https://evil.example"));
        })),
        R::InvalidClaim,
    );

    // --- 8. issuer --------------------------------------------------------------------------------
    add(
        "iss: untrusted issuer",
        Main,
        w.es1.at(&claims(set("iss", json!("https://evil.example")))),
        R::IssuerMismatch,
    );
    add(
        "iss: trailing slash",
        Main,
        w.es1.at(&claims(set("iss", json!(format!("{ISS}/"))))),
        R::IssuerMismatch,
    );
    add(
        "iss: different case",
        Main,
        w.es1
            .at(&claims(set("iss", json!("HTTPS://ISSUER.EXAMPLE")))),
        R::IssuerMismatch,
    );
    add(
        "iss: empty string",
        Main,
        w.es1.at(&claims(set("iss", json!("")))),
        R::IssuerMismatch,
    );
    add(
        "iss: template with two path segments",
        Tenant,
        w.tkey.at(&claims_for(
            "https://login.example/a/b/v2.0",
            TENANT_AUD,
            set("tid", json!("a/b")),
        )),
        R::IssuerMismatch,
    );
    add(
        "iss: template with a %-escaped slash",
        Tenant,
        w.tkey.at(&claims_for(
            "https://login.example/a%2Fb/v2.0",
            TENANT_AUD,
            set("tid", json!("a%2Fb")),
        )),
        R::IssuerMismatch,
    );
    add(
        "iss: the literal template",
        Tenant,
        w.tkey.at(&claims_for(
            TEMPLATE,
            TENANT_AUD,
            set("tid", json!("{tenantid}")),
        )),
        R::IssuerMismatch,
    );
    add(
        "order: untrusted issuer beats audience and expiry",
        Main,
        w.es1.at(&claims(|c| {
            c.insert("iss".into(), json!("https://evil.example"));
            c.insert("aud".into(), json!("api://other"));
            c.insert("exp".into(), json!(NOW - 7200));
        })),
        R::IssuerMismatch,
    );

    // --- 9. tenant ----------------------------------------------------------------------------------
    let contoso = "https://login.example/contoso/v2.0";
    add(
        "tenant: templated issuer, tid missing",
        Tenant,
        w.tkey.at(&claims_for(contoso, TENANT_AUD, |_| {})),
        R::TenantMismatch,
    );
    add(
        "tenant: tid differs from the tenant in iss",
        Tenant,
        w.tkey.at(&claims_for(
            contoso,
            TENANT_AUD,
            set("tid", json!("fabrikam")),
        )),
        R::TenantMismatch,
    );
    add(
        "tenant: tenant not in the allowed list",
        Tenant,
        w.tkey.at(&claims_for(
            "https://login.example/evilcorp/v2.0",
            TENANT_AUD,
            set("tid", json!("evilcorp")),
        )),
        R::TenantMismatch,
    );
    add(
        "tenant: tid differs only in case",
        Tenant,
        w.tkey.at(&claims_for(
            contoso,
            TENANT_AUD,
            set("tid", json!("Contoso")),
        )),
        R::TenantMismatch,
    );
    add(
        "order: tenant beats key binding",
        Tenant,
        w.tnoiss.at(&claims_for(
            "https://login.example/evilcorp/v2.0",
            TENANT_AUD,
            set("tid", json!("evilcorp")),
        )),
        R::TenantMismatch,
    );

    // --- 9. key↔issuer binding ----------------------------------------------------------------------
    add(
        "binding: Storm-0558, consumer key signs an enterprise token",
        Storm,
        w.msa1.at(&claims_for(
            ENTERPRISE,
            ENTERPRISE_AUD,
            set("jti", json!("forged-jti")),
        )),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: Storm-0558 with the consumer audience",
        Storm,
        w.msa1.at(&claims_for(ENTERPRISE, CONSUMER_AUD, |_| {})),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: consumer-set key whose issuer member claims the enterprise",
        Storm,
        w.msa_claims_ent
            .at(&claims_for(ENTERPRISE, ENTERPRISE_AUD, |_| {})),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: enterprise key signs a consumer token",
        Storm,
        w.ent1.at(&claims_for(CONSUMER, CONSUMER_AUD, |_| {})),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: key's issuer member names another issuer",
        Main,
        w.alien.at(&good_claims()),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: shared set, key without issuer",
        Shared,
        w.snone.at(&claims_for(SHARED_A, AUD, |_| {})),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: shared set, key bound to A, token from B",
        Shared,
        w.sa.at(&claims_for(SHARED_B, AUD, |_| {})),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: templated issuer, key without issuer",
        Tenant,
        w.tnoiss.at(&claims_for(
            contoso,
            TENANT_AUD,
            set("tid", json!("contoso")),
        )),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: key bound to contoso signs for fabrikam",
        Tenant,
        w.tcontoso.at(&claims_for(
            "https://login.example/fabrikam/v2.0",
            TENANT_AUD,
            set("tid", json!("fabrikam")),
        )),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: key {tenantid} expands to another tenant",
        Tenant,
        w.xkey.at(&claims_for(
            STS_CONTOSO,
            TENANT_AUD,
            set("tid", json!("fabrikam")),
        )),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: key bound with {tenantid}, token without tid",
        Tenant,
        w.xkey.at(&claims_for(STS_CONTOSO, TENANT_AUD, |_| {})),
        R::KeyIssuerMismatch,
    );
    add(
        "binding: per-tenant key used for the exact issuer",
        Tenant,
        w.tkey.at(&claims_for(
            STS_CONTOSO,
            TENANT_AUD,
            set("tid", json!("contoso")),
        )),
        R::KeyIssuerMismatch,
    );
    add(
        "order: key binding beats audience and expiry",
        Storm,
        w.msa1.at(&claims_for(
            ENTERPRISE,
            "api://nobody",
            set("exp", json!(NOW - 7200)),
        )),
        R::KeyIssuerMismatch,
    );

    // --- 10. audience ---------------------------------------------------------------------------------
    add(
        "aud: another audience",
        Main,
        w.es1.at(&claims(set("aud", json!("api://other")))),
        R::AudienceMismatch,
    );
    add(
        "aud: array of other audiences",
        Main,
        w.es1.at(&claims(set("aud", json!(["api://a", "api://b"])))),
        R::AudienceMismatch,
    );
    add(
        "aud: different case",
        Main,
        w.es1.at(&claims(set("aud", json!("API://KEYSCOPE")))),
        R::AudienceMismatch,
    );
    add(
        "aud: prefix of the audience",
        Main,
        w.es1.at(&claims(set("aud", json!("api://key")))),
        R::AudienceMismatch,
    );
    add(
        "aud: consumer audience at the enterprise issuer",
        Storm,
        w.ent1.at(&claims_for(ENTERPRISE, CONSUMER_AUD, |_| {})),
        R::AudienceMismatch,
    );
    add(
        "order: audience beats expiry",
        Main,
        w.es1.at(&claims(|c| {
            c.insert("aud".into(), json!("api://other"));
            c.insert("exp".into(), json!(NOW - 7200));
        })),
        R::AudienceMismatch,
    );

    // --- 11. time -----------------------------------------------------------------------------------
    add(
        "time: exp = now - 60 (exactly at the leeway edge)",
        Main,
        w.es1.at(&claims(set("exp", json!(NOW - 60)))),
        R::Expired,
    );
    add(
        "time: exp an hour ago",
        Main,
        w.es1.at(&claims(set("exp", json!(NOW - 3600)))),
        R::Expired,
    );
    add(
        "time: exp 0",
        Main,
        w.es1.at(&claims(set("exp", json!(0)))),
        R::Expired,
    );
    add(
        "time: exp negative",
        Main,
        w.es1.at(&claims(set("exp", json!(-1)))),
        R::Expired,
    );
    add(
        "time: fractional exp floors to now - 60",
        Main,
        w.es1.at(&claims(set("exp", json!(NOW as f64 - 59.5)))),
        R::Expired,
    );
    add(
        "time: exp = now with no leeway",
        NoLeeway,
        w.es1.at(&claims(set("exp", json!(NOW)))),
        R::Expired,
    );
    add(
        "time: nbf = now + 61",
        Main,
        w.es1.at(&claims(set("nbf", json!(NOW + 61)))),
        R::NotYetValid,
    );
    add(
        "time: nbf next year",
        Main,
        w.es1.at(&claims(set("nbf", json!(NOW + 365 * 86_400)))),
        R::NotYetValid,
    );
    add(
        "time: iat = now + 61",
        Main,
        w.es1.at(&claims(set("iat", json!(NOW + 61)))),
        R::NotYetValid,
    );
    add(
        "time: nbf = now + 1 with no leeway",
        NoLeeway,
        w.es1.at(&claims(set("nbf", json!(NOW + 1)))),
        R::NotYetValid,
    );
    add(
        "order: expired beats nbf in the future",
        Main,
        w.es1.at(&claims(|c| {
            c.insert("exp".into(), json!(NOW - 3600));
            c.insert("nbf".into(), json!(NOW + 3600));
        })),
        R::Expired,
    );
    add(
        "time: iat before the key's nbf",
        Main,
        w.window1.at(&claims(|c| {
            c.insert("iat".into(), json!(NOW - 20_000));
            c.remove("nbf");
        })),
        R::KeyExpired,
    );
    add(
        "time: iat after the key's exp (within leeway)",
        Main,
        w.shortlived.at(&claims(set("iat", json!(NOW + 45)))),
        R::KeyExpired,
    );
    add(
        "order: iat in the future beats iat outside the key window",
        Main,
        w.shortlived.at(&claims(set("iat", json!(NOW + 120)))),
        R::NotYetValid,
    );

    cases
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Accepted(a) => format!(
            "accepted (kid {:?}, alg {}, iss {:?})",
            a.kid, a.alg, a.issuer
        ),
        Decision::Rejected(r) => format!("{} ({})", r.reason, r.detail),
    }
}

#[test]
fn attack_corpus() {
    let w = world();
    let cases = corpus(w);
    assert!(cases.len() >= 70, "only {} cases", cases.len());
    let mut names = HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name),
            "duplicate case name {:?}",
            case.name
        );
    }
    let mut failures = Vec::new();
    for case in &cases {
        let decision = w.validator(case.policy).validate(&case.token, NOW);
        if std::env::var_os("CORPUS_DUMP").is_some() {
            eprintln!("{} => {}", case.name, describe(&decision));
        }
        if decision.reason() != Some(case.expected) {
            failures.push(format!(
                "  {}: expected {}, got {}",
                case.name,
                case.expected,
                describe(&decision)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attack cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_reason_but_the_reserved_ones_is_exercised() {
    let w = world();
    let seen: HashSet<Reason> = corpus(w).iter().map(|c| c.expected).collect();
    for reason in Reason::ALL {
        if matches!(reason, Reason::TokenRevoked | Reason::TokenNotIssued) {
            continue;
        }
        assert!(seen.contains(&reason), "no case expects {reason}");
    }
}

fn accept(policy: P, token: &str) -> Accepted {
    match world().validator(policy).validate(token, NOW) {
        Decision::Accepted(accepted) => *accepted,
        Decision::Rejected(r) => panic!("expected acceptance, got {} ({})", r.reason, r.detail),
    }
}

/// Checks acceptance and the verified facts of a token with the base claims.
fn assert_accepted(
    policy: P,
    token: &str,
    kid: &str,
    alg: Algorithm,
    iss: &str,
    aud: &str,
) -> Accepted {
    let accepted = accept(policy, token);
    assert_eq!(accepted.kid.as_deref(), Some(kid));
    assert_eq!(accepted.alg, alg);
    assert_eq!(accepted.issuer, iss);
    let facts = &accepted.facts;
    assert_eq!(facts.iss.as_deref(), Some(iss));
    assert_eq!(facts.sub.as_deref(), Some("alice"));
    assert_eq!(facts.client_id.as_deref(), Some("client-1"));
    assert_eq!(facts.jti.as_deref(), Some("jti-1"));
    assert_eq!(facts.aud, [aud]);
    assert_eq!(facts.kid.as_deref(), Some(kid));
    assert_eq!(facts.alg.as_deref(), Some(alg.name()));
    assert_eq!(accepted.claims()["sub"], "alice");
    accepted
}

fn assert_main_accepts(signer: &Signer, alg: Algorithm) {
    let accepted = assert_accepted(
        P::Main,
        &signer.at(&good_claims()),
        &signer.kid,
        alg,
        ISS,
        AUD,
    );
    assert_eq!(accepted.trusted_issuer, ISS);
    assert_eq!(accepted.facts.tid, None);
}

#[test]
fn accepts_es256() {
    assert_main_accepts(&world().es1, Algorithm::Es256);
}

#[test]
fn accepts_eddsa() {
    assert_main_accepts(&world().ed1, Algorithm::EdDsa);
}

#[test]
fn accepts_rs256() {
    assert_main_accepts(&world().rs1, Algorithm::Rs256);
}

#[test]
fn accepts_rs384() {
    assert_main_accepts(&world().rs384, Algorithm::Rs384);
}

#[test]
fn accepts_rs512() {
    assert_main_accepts(&world().rs512, Algorithm::Rs512);
}

#[test]
fn accepts_ps256() {
    assert_main_accepts(&world().ps256, Algorithm::Ps256);
}

#[test]
fn accepts_ps384() {
    assert_main_accepts(&world().ps384, Algorithm::Ps384);
}

#[test]
fn accepts_ps512() {
    assert_main_accepts(&world().ps512, Algorithm::Ps512);
}

#[test]
fn accepts_es384() {
    assert_main_accepts(&world().es384, Algorithm::Es384);
}

#[test]
fn keys_without_alg_accept_their_type_default() {
    let w = world();
    assert_main_accepts(&w.es_noalg, Algorithm::Es256);
    assert_main_accepts(&w.rs_noalg, Algorithm::Rs256);
    assert_main_accepts(&w.es384_noalg, Algorithm::Es384);
}

#[test]
fn accepts_token_without_kid_when_exactly_one_key_fits() {
    let w = world();
    let payload = claims_for(SINGLE, AUD, |_| {});
    let token = w.only.raw(r#"{"alg":"ES256","typ":"at+jwt"}"#, &payload);
    let accepted = accept(P::Single, &token);
    assert_eq!(accepted.kid.as_deref(), Some("only"));
    assert_eq!(accepted.alg, Algorithm::Es256);
    assert_eq!(accepted.issuer, SINGLE);
    assert_eq!(accepted.facts.kid, None, "the token itself named no kid");
    assert_eq!(accepted.facts.jti.as_deref(), Some("jti-1"));

    let token = w.only_ed.raw(r#"{"alg":"EdDSA","typ":"at+jwt"}"#, &payload);
    let accepted = accept(P::Single, &token);
    assert_eq!(accepted.kid.as_deref(), Some("only-ed"));
    assert_eq!(accepted.alg, Algorithm::EdDsa);
}

#[test]
fn accepts_templated_issuer_with_allowed_tenant_and_tenant_bound_key() {
    let w = world();
    for tenant in ["contoso", "fabrikam"] {
        let iss = format!("https://login.example/{tenant}/v2.0");
        let token = w
            .tkey
            .at(&claims_for(&iss, TENANT_AUD, set("tid", json!(tenant))));
        let accepted = assert_accepted(
            P::Tenant,
            &token,
            "tkey",
            Algorithm::Es256,
            &iss,
            TENANT_AUD,
        );
        assert_eq!(accepted.trusted_issuer, TEMPLATE);
        assert_eq!(accepted.facts.tid.as_deref(), Some(tenant));
    }
}

#[test]
fn accepts_key_bound_to_one_tenant_for_that_tenant() {
    let w = world();
    let iss = "https://login.example/contoso/v2.0";
    let token = w
        .tcontoso
        .at(&claims_for(iss, TENANT_AUD, set("tid", json!("contoso"))));
    assert_accepted(
        P::Tenant,
        &token,
        "tcontoso",
        Algorithm::Es256,
        iss,
        TENANT_AUD,
    );
}

#[test]
fn accepts_exact_issuer_with_template_bound_key_and_matching_tid() {
    let w = world();
    let token = w.xkey.at(&claims_for(
        STS_CONTOSO,
        TENANT_AUD,
        set("tid", json!("contoso")),
    ));
    let accepted = assert_accepted(
        P::Tenant,
        &token,
        "xkey",
        Algorithm::Es256,
        STS_CONTOSO,
        TENANT_AUD,
    );
    assert_eq!(accepted.trusted_issuer, STS_CONTOSO);
    assert_eq!(accepted.facts.tid.as_deref(), Some("contoso"));
}

#[test]
fn accepts_application_at_jwt_typ() {
    let w = world();
    for typ in ["application/at+jwt", "AT+JWT"] {
        let header = json!({"alg": "ES256", "kid": "es1", "typ": typ}).to_string();
        assert_accepted(
            P::Main,
            &w.es1.raw(&header, &good_claims()),
            "es1",
            Algorithm::Es256,
            ISS,
            AUD,
        );
    }
}

#[test]
fn jwt_policy_accepts_plain_jwts() {
    let w = world();
    let payload = json!({"iss": ISS, "aud": AUD, "exp": NOW + 600}).to_string();
    for header in [
        r#"{"alg":"ES256","kid":"es1"}"#,
        r#"{"alg":"ES256","kid":"es1","typ":"JWT"}"#,
    ] {
        let accepted = accept(P::Jwt, &w.es1.raw(header, &payload));
        assert_eq!(accepted.kid.as_deref(), Some("es1"));
        assert_eq!(accepted.alg, Algorithm::Es256);
        assert_eq!(accepted.issuer, ISS);
        let facts = &accepted.facts;
        assert_eq!(facts.iss.as_deref(), Some(ISS));
        assert_eq!(facts.aud, [AUD]);
        assert_eq!(
            (
                facts.sub.as_ref(),
                facts.jti.as_ref(),
                facts.client_id.as_ref()
            ),
            (None, None, None)
        );
    }
}

#[test]
fn storm_0558_issuers_accept_their_own_keys() {
    let w = world();
    assert_accepted(
        P::Storm,
        &w.msa1.at(&claims_for(CONSUMER, CONSUMER_AUD, |_| {})),
        "msa1",
        Algorithm::Rs256,
        CONSUMER,
        CONSUMER_AUD,
    );
    assert_accepted(
        P::Storm,
        &w.ent1.at(&claims_for(ENTERPRISE, ENTERPRISE_AUD, |_| {})),
        "ent1",
        Algorithm::Rs256,
        ENTERPRISE,
        ENTERPRISE_AUD,
    );
}

#[test]
fn storm_0558_forgery_is_refused_with_forensic_facts() {
    let w = world();
    let token = w.msa1.at(&claims_for(ENTERPRISE, ENTERPRISE_AUD, |c| {
        c.insert("jti".into(), json!("forged-jti"));
        c.insert("sub".into(), json!("ceo@enterprise.example"));
    }));
    let decision = w.storm.validate(&token, NOW);
    let Decision::Rejected(rejected) = &decision else {
        panic!("the forgery was accepted");
    };
    assert_eq!(
        rejected.reason,
        Reason::KeyIssuerMismatch,
        "{}",
        rejected.detail
    );
    let facts = decision.facts();
    assert_eq!(facts.jti.as_deref(), Some("forged-jti"));
    assert_eq!(facts.kid.as_deref(), Some("msa1"));
    assert_eq!(facts.alg.as_deref(), Some("RS256"));
    assert_eq!(facts.iss.as_deref(), Some(ENTERPRISE));
    assert_eq!(facts.sub.as_deref(), Some("ceo@enterprise.example"));
    assert_eq!(facts.aud, [ENTERPRISE_AUD]);
}

#[test]
fn shared_set_accepts_key_bound_to_its_issuer() {
    let w = world();
    assert_accepted(
        P::Shared,
        &w.sa.at(&claims_for(SHARED_A, AUD, |_| {})),
        "sa",
        Algorithm::Es256,
        SHARED_A,
        AUD,
    );
}

#[test]
fn leeway_edges_are_inclusive_where_they_should_be() {
    let w = world();
    // exp = now - 59: now < exp + 60.
    accept(P::Main, &w.es1.at(&claims(set("exp", json!(NOW - 59)))));
    // nbf and iat exactly at now + leeway.
    accept(P::Main, &w.es1.at(&claims(set("nbf", json!(NOW + 60)))));
    accept(P::Main, &w.es1.at(&claims(set("iat", json!(NOW + 60)))));
    // No leeway: exp one second ahead, nbf = now.
    accept(P::NoLeeway, &w.es1.at(&claims(set("exp", json!(NOW + 1)))));
    accept(P::NoLeeway, &w.es1.at(&claims(set("nbf", json!(NOW)))));
    // Key window edges: iat exactly at the key's nbf and exp.
    accept(
        P::Main,
        &w.window1.at(&claims(|c| {
            c.insert("iat".into(), json!(NOW - 10_000));
            c.remove("nbf");
        })),
    );
    accept(
        P::Main,
        &w.shortlived.at(&claims(set("iat", json!(NOW + 30)))),
    );
}

#[test]
fn size_and_depth_limits_are_inclusive() {
    let w = world();
    let token = token_of_len(&w.es1, 16 * 1024);
    assert_accepted(P::Main, &token, "es1", Algorithm::Es256, ISS, AUD);
    let deep = claims_raw(&format!(r#""deep":{}{}"#, "[".repeat(63), "]".repeat(63)));
    assert_accepted(P::Main, &w.es1.at(&deep), "es1", Algorithm::Es256, ISS, AUD);
}

#[test]
fn audience_array_needs_one_match() {
    let w = world();
    let token = w.es1.at(&claims(set("aud", json!(["api://other", AUD]))));
    let accepted = accept(P::Main, &token);
    assert_eq!(accepted.facts.aud, ["api://other", AUD]);
}
