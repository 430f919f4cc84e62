//! Same-run comparison: Keyscope's full validation, bare aws-lc-rs signature verification and
//! the `jsonwebtoken` crate, measured in alternating 50 ms slices so that a noisy machine
//! (steal time, frequency changes) cannot favour one of them. Criterion (`benches/validate.rs`)
//! gives absolute times with confidence intervals; this gives ratios that hold up.
//!
//! Run: `cargo bench -p keyscope-trust --bench compare` (`KEYSCOPE_BENCH_SECONDS`, default 5,
//! sets the time per contender and algorithm).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{DecodingKey, Validation, decode};
use keyscope_jose::Algorithm;
use keyscope_trust::sample;
use serde_json::{Map, Value};

fn jsonwebtoken_setup(alg: Algorithm, s: &sample::Sample) -> (DecodingKey, Validation) {
    let members = s.signing_key.public_jwk_members();
    let text = |name: &str| members[name].as_str().unwrap();
    let (key, jwt_alg) = match alg {
        Algorithm::Es256 => (
            DecodingKey::from_ec_components(text("x"), text("y")).unwrap(),
            jsonwebtoken::Algorithm::ES256,
        ),
        Algorithm::EdDsa => (
            DecodingKey::from_ed_components(text("x")).unwrap(),
            jsonwebtoken::Algorithm::EdDSA,
        ),
        _ => (
            DecodingKey::from_rsa_components(text("n"), text("e")).unwrap(),
            jsonwebtoken::Algorithm::RS256,
        ),
    };
    // Its closest equivalent of Keyscope's policy (see benches/validate.rs).
    let mut validation = Validation::new(jwt_alg);
    validation.set_issuer(&[sample::ISSUER]);
    validation.set_audience(&[sample::AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 60;
    validation.validate_nbf = true;
    (key, validation)
}

fn main() {
    let seconds = std::env::var("KEYSCOPE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap();
    println!("one core, {seconds} s per contender and algorithm, interleaved 50 ms slices");
    println!(
        "{:<6} {:>14} {:>14} {:>14} {:>12} {:>14}",
        "alg", "keyscope/s", "bare/s", "jsonwebtoken/s", "ks / bare", "ks / jwt"
    );
    for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
        let s = sample::access_token(alg, now).unwrap();
        assert!(s.validator.validate(&s.token, s.now).is_accepted());
        let (key, validation) = jsonwebtoken_setup(alg, &s);
        decode::<Map<String, Value>>(&s.token, &key, &validation).unwrap();
        let rates = sample::interleaved_rates(
            Duration::from_secs(seconds),
            &mut [
                &mut || {
                    black_box(s.validator.validate(black_box(&s.token), s.now));
                },
                &mut || {
                    let _ = black_box(
                        s.bare_key
                            .verify_sig(black_box(&s.signing_input), black_box(&s.signature)),
                    );
                },
                &mut || {
                    let _ = black_box(decode::<Map<String, Value>>(
                        black_box(&s.token),
                        &key,
                        &validation,
                    ));
                },
            ],
        );
        let [full, bare, jwt] = [rates[0], rates[1], rates[2]];
        println!(
            "{:<6} {:>14.0} {:>14.0} {:>14.0} {:>12.3} {:>14.3}",
            alg.name(),
            full,
            bare,
            jwt,
            full / bare,
            full / jwt
        );
    }
}
