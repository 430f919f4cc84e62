#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Property tests: garbage never panics and is never accepted, and no single edit of a valid
//! token (flip, delete or insert one character, duplicate or swap segments, truncate) yields a
//! token that verifies, neither through [`Validator::validate`] nor through [`verify_jws`].

use std::sync::OnceLock;

use keyscope_jose::{Algorithm, JwkSet, SigningKey};
use keyscope_trust::{Policy, StaticKeys, TrustedIssuer, Validator, verify_jws};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, json};

const ISSUER: &str = "https://issuer.property.example";
const AUDIENCE: &str = "https://api.property.example";
const KID: &str = "prop-es256";
const IAT: i64 = 1_750_000_000;
const NOW: i64 = IAT + 10;

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Fixture {
    token: String,
    keys: JwkSet,
    validator: Validator,
}

/// One ES256 key, one valid access token, and a validator that accepts it at [`NOW`].
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SigningKey::generate(Algorithm::Es256, KID, None).unwrap();
        let claims = json!({
            "iss": ISSUER,
            "sub": "alice",
            "aud": AUDIENCE,
            "exp": IAT + 3_600,
            "iat": IAT,
            "jti": "prop-jti-1",
            "client_id": "prop-client",
        });
        let mut header = Map::new();
        header.insert("typ".to_owned(), "at+jwt".into());
        let token = key
            .sign_compact(header, claims.to_string().as_bytes())
            .unwrap();
        let keys = JwkSet::from_keys(vec![key.public_jwk().unwrap()]).unwrap();
        let validator = Validator::new(
            Policy::builder()
                .issuer(
                    TrustedIssuer::new(ISSUER, StaticKeys::new(keys.clone())).audiences([AUDIENCE]),
                )
                .build()
                .unwrap(),
        );
        Fixture {
            token,
            keys,
            validator,
        }
    })
}

/// Asserts that `candidate` is refused by both entry points (and that neither panics).
fn assert_refused(candidate: &str) -> Result<(), TestCaseError> {
    let f = fixture();
    let decision = f.validator.validate(candidate, NOW);
    prop_assert!(
        !decision.is_accepted(),
        "validate accepted {candidate:?}: {decision:?}"
    );
    let verified = verify_jws(candidate, &f.keys);
    prop_assert!(
        verified.is_err(),
        "verify_jws accepted {candidate:?}: {verified:?}"
    );
    Ok(())
}

/// Asserts that a mutation of the valid token is refused, if it changed anything.
fn assert_mutant_refused(mutant: &str) -> Result<(), TestCaseError> {
    prop_assume!(mutant != fixture().token);
    assert_refused(mutant)
}

fn segments() -> Vec<&'static str> {
    let parts: Vec<&str> = fixture().token.split('.').collect();
    assert_eq!(parts.len(), 3);
    parts
}

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: default.cases.max(256),
        ..default
    }
}

#[test]
fn the_fixture_token_is_valid() {
    let f = fixture();
    let decision = f.validator.validate(&f.token, NOW);
    assert!(decision.is_accepted(), "{decision:?}");
    let verified = verify_jws(&f.token, &f.keys).unwrap();
    assert_eq!(verified.alg, Algorithm::Es256);
    assert_eq!(verified.kid.as_deref(), Some(KID));
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes (lossy UTF-8), up to 20 KiB: beyond the 16 KiB limit too.
    #[test]
    fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..20 * 1024)) {
        assert_refused(&String::from_utf8_lossy(&bytes))?;
    }

    /// Strings over the token alphabet (base64url and dots).
    #[test]
    fn token_alphabet_strings_are_refused(text in "[A-Za-z0-9_.-]{0,600}") {
        assert_refused(&text)?;
    }

    /// Three base64url segments: these get past the split, and sometimes past base64.
    #[test]
    fn three_random_segments_are_refused(
        text in "[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,300}\\.[A-Za-z0-9_-]{0,120}"
    ) {
        assert_refused(&text)?;
    }

    /// The genuine header and claims with a random signature reach the signature check.
    #[test]
    fn genuine_signing_input_with_a_random_signature_is_refused(
        signature in proptest::collection::vec(any::<u8>(), 0..130)
    ) {
        let parts = segments();
        let candidate = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            keyscope_jose::b64::encode_url(&signature)
        );
        assert_mutant_refused(&candidate)?;
    }

    /// One character replaced by a different base64url character.
    #[test]
    fn flipping_one_char_breaks_the_token(at in any::<Index>(), offset in 1usize..64) {
        let mut bytes = fixture().token.clone().into_bytes();
        let i = at.index(bytes.len());
        let replacement = match BASE64URL.iter().position(|&b| b == bytes[i]) {
            Some(pos) => BASE64URL[(pos + offset) % 64],
            None => BASE64URL[offset],
        };
        prop_assert_ne!(replacement, bytes[i]);
        bytes[i] = replacement;
        assert_mutant_refused(&String::from_utf8(bytes).unwrap())?;
    }

    /// One character deleted.
    #[test]
    fn deleting_one_char_breaks_the_token(at in any::<Index>()) {
        let mut mutant = fixture().token.clone();
        mutant.remove(at.index(mutant.len()));
        assert_mutant_refused(&mutant)?;
    }

    /// One character inserted (base64url, a separator, or characters lenient decoders skip).
    #[test]
    fn inserting_one_char_breaks_the_token(
        at in any::<Index>(),
        c in proptest::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \n\t\0é"
                .chars()
                .collect::<Vec<char>>()
        )
    ) {
        let mut mutant = fixture().token.clone();
        let len = mutant.len();
        mutant.insert(at.index(len + 1), c);
        assert_mutant_refused(&mutant)?;
    }

    /// One segment copied over another (still three segments), or appended as a fourth.
    #[test]
    fn duplicating_a_segment_breaks_the_token(from in 0usize..3, to in 0usize..3, append in any::<bool>()) {
        let mut parts: Vec<&str> = segments();
        if append {
            parts.insert(from + 1, parts[from]);
        } else {
            prop_assume!(from != to);
            parts[to] = parts[from];
        }
        assert_mutant_refused(&parts.join("."))?;
    }

    /// Two segments swapped.
    #[test]
    fn swapping_segments_breaks_the_token(a in 0usize..3, b in 0usize..3) {
        prop_assume!(a != b);
        let mut parts = segments();
        parts.swap(a, b);
        assert_mutant_refused(&parts.join("."))?;
    }

    /// Truncated to any shorter length.
    #[test]
    fn truncating_breaks_the_token(at in any::<Index>()) {
        let token = &fixture().token;
        let mutant = &token[..at.index(token.len())];
        assert_mutant_refused(mutant)?;
    }
}
