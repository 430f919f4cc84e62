//! Full validation versus bare signature verification versus the `jsonwebtoken` crate.
//!
//! Run: `cargo bench -p keyscope-trust --bench validate`. Results go to docs/benchmarks.md.
//!
//! The `jsonwebtoken` configuration is its closest equivalent of Keyscope's policy: one
//! algorithm, issuer and audience required and checked, `exp`/`nbf` validated with a 60 s
//! leeway, `exp`, `iss`, `aud` and `sub` required. It does not check `typ`, `iat`, `jti`,
//! `client_id`, tenants, key validity windows or key-to-issuer binding, so it does less work.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, Validation, decode};
use keyscope_jose::Algorithm;
use keyscope_trust::sample;
use serde_json::{Map, Value};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn jsonwebtoken_key(members: &Map<String, Value>) -> DecodingKey {
    let text = |name: &str| members[name].as_str().unwrap();
    match text("kty") {
        "EC" => DecodingKey::from_ec_components(text("x"), text("y")).unwrap(),
        "OKP" => DecodingKey::from_ed_components(text("x")).unwrap(),
        _ => DecodingKey::from_rsa_components(text("n"), text("e")).unwrap(),
    }
}

fn jsonwebtoken_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        _ => jsonwebtoken::Algorithm::RS256,
    }
}

fn bench_validate(c: &mut Criterion) {
    for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
        let s = sample::access_token(alg, now()).unwrap();
        assert!(s.validator.validate(&s.token, s.now).is_accepted());

        let key = jsonwebtoken_key(&s.signing_key.public_jwk_members());
        let mut validation = Validation::new(jsonwebtoken_alg(alg));
        validation.set_issuer(&[sample::ISSUER]);
        validation.set_audience(&[sample::AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        validation.validate_nbf = true;
        decode::<Map<String, Value>>(&s.token, &key, &validation).unwrap();

        let mut group = c.benchmark_group(alg.name());
        group.bench_function("keyscope_full_validation", |b| {
            b.iter(|| black_box(s.validator.validate(black_box(&s.token), s.now)))
        });
        group.bench_function("aws_lc_rs_bare_signature", |b| {
            b.iter(|| {
                black_box(
                    s.bare_key
                        .verify_sig(black_box(&s.signing_input), black_box(&s.signature)),
                )
            })
        });
        group.bench_function("jsonwebtoken_decode", |b| {
            b.iter(|| {
                black_box(decode::<Map<String, Value>>(
                    black_box(&s.token),
                    &key,
                    &validation,
                ))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_validate);
criterion_main!(benches);
