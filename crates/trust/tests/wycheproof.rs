#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Project Wycheproof's JOSE vectors (C2SP/wycheproof `testvectors_v1`) through
//! [`keyscope_trust::verify_jws`], the signature-level entry point behind `keyscope jws verify`.
//!
//! Rules:
//! - every group with a `public` key: the key (or key set) is parsed with
//!   [`JwkSet::parse_set_or_key`]; a refused key set rejects every token of the group. The label
//!   `valid` must mean `Ok`, `invalid` must mean `Err`, except for the vectors listed in the
//!   `*_DEVIATIONS` tables, which must really disagree (so the tables stay honest);
//! - groups without a `public` key are symmetric (HMAC, AES): Keyscope never accepts them, so
//!   every token is checked to be rejected, whatever its label; a token with an `HS*` header that
//!   parses is rejected with `alg_not_allowed`;
//! - JWE vectors (`jwe` instead of `jws`) are skipped: Keyscope does no JWE.
//!
//! The corpus lives beside the clone in `../shared/corpus`; a missing corpus fails the test
//! unless `KEYSCOPE_SKIP_CORPUS=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use keyscope_jose::{CompactJws, JwkSet};
use keyscope_trust::{Reason, verify_jws};
use serde::Deserialize;
use serde_json::Value;

const CORPUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/");

/// Reads a corpus file. `None` (skip) only when it is missing and `KEYSCOPE_SKIP_CORPUS=1`.
fn read_corpus(relative: &str) -> Option<String> {
    let path = format!("{CORPUS_DIR}{relative}");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(error) => {
            if std::env::var("KEYSCOPE_SKIP_CORPUS").as_deref() == Ok("1") {
                println!(
                    "skipping: corpus file {path} is unavailable ({error}) and KEYSCOPE_SKIP_CORPUS=1"
                );
                None
            } else {
                panic!(
                    "corpus file {path} is unavailable ({error}); put the shared corpus beside \
                     the clone (../shared/corpus) or set KEYSCOPE_SKIP_CORPUS=1 to skip"
                );
            }
        }
    }
}

#[derive(Deserialize)]
struct VectorFile {
    #[serde(rename = "numberOfTests")]
    number_of_tests: usize,
    #[serde(rename = "testGroups")]
    test_groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    comment: String,
    public: Option<Value>,
    tests: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    #[serde(rename = "tcId")]
    tc_id: u32,
    comment: String,
    /// A compact JWS string, or an object for the JSON serialization.
    jws: Option<Value>,
    jwe: Option<Value>,
    result: String,
}

impl Vector {
    /// The token as `keyscope jws verify` would receive it: the compact string, or the JSON
    /// text of a JSON-serialized JWS (which must be refused as malformed).
    fn token(&self) -> Option<String> {
        match self.jws.as_ref()? {
            Value::String(token) => Some(token.clone()),
            other => Some(other.to_string()),
        }
    }

    fn labelled_valid(&self) -> bool {
        match self.result.as_str() {
            "valid" => true,
            "invalid" => false,
            other => panic!("tcId {}: unexpected result label {other:?}", self.tc_id),
        }
    }
}

/// What Keyscope made of one vector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Rejected(Reason),
    /// The group's key set was refused as a whole, so nothing can verify against it.
    KeySetRefused(String),
}

impl Outcome {
    fn accepted(&self) -> bool {
        matches!(self, Outcome::Accepted)
    }

    /// A short code: `accepted`, a reason code, or `key_set_refused`.
    fn code(&self) -> &str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected(reason) => reason.as_str(),
            Outcome::KeySetRefused(_) => "key_set_refused",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::KeySetRefused(why) => write!(f, "key_set_refused ({why})"),
            other => f.write_str(other.code()),
        }
    }
}

fn verify(keys: &Result<JwkSet, String>, token: &str) -> Outcome {
    match keys {
        Err(why) => Outcome::KeySetRefused(why.clone()),
        Ok(set) => match verify_jws(token, set) {
            Ok(_) => Outcome::Accepted,
            Err(rejected) => Outcome::Rejected(rejected.reason),
        },
    }
}

/// A vector whose label a strict verifier disagrees with, and the outcome Keyscope gives.
struct Deviation {
    tc_id: u32,
    /// `accepted`, a reason code, or `key_set_refused`.
    outcome: &'static str,
    why: &'static str,
}

/// Deviations in `json_web_signature_test.json` (asymmetric groups only; see
/// `HMAC_KNOWN_DEFECTS` for the defective vectors in the symmetric groups).
const SIGNATURE_DEVIATIONS: &[Deviation] = &[
    Deviation {
        tc_id: 346,
        outcome: "alg_not_allowed",
        why: "RFC 7520 Figure 20: a PS384 signature checked against a key labelled alg PS256; \
              a key accepts exactly its own alg",
    },
    Deviation {
        tc_id: 347,
        outcome: "alg_not_allowed",
        why: "RFC 7520 Figure 27: ES512 over P-521 with a key labelled with the non-standard \
              alg ES521; Keyscope does not verify ES512/P-521",
    },
    Deviation {
        tc_id: 350,
        outcome: "alg_not_allowed",
        why: "RFC 7520 Figure 20 (key_ops variant): a PS384 signature against a key labelled \
              alg PS256",
    },
    Deviation {
        tc_id: 351,
        outcome: "alg_not_allowed",
        why: "RFC 7520 Figure 27 (key_ops variant): ES512/P-521 with the non-standard key alg \
              ES521",
    },
];

/// Deviations in `json_web_key_test.json` (groups with a `public` key set).
const KEY_DEVIATIONS: &[Deviation] = &[Deviation {
    tc_id: 7,
    outcome: "accepted",
    why: "the RSA key has the ROCA (CVE-2017-15361) structure; Keyscope has no ROCA \
          fingerprint check, and the signature itself is valid",
}];

/// Deviations in `json_web_crypto_test.json` (groups with a `public` key).
const CRYPTO_DEVIATIONS: &[Deviation] = &[Deviation {
    tc_id: 46,
    outcome: "accepted",
    why: "the RSA key has the ROCA (CVE-2017-15361) structure; Keyscope has no ROCA \
          fingerprint check, and the signature itself is valid",
}];

/// Exact outcomes pinned for vectors whose reason is part of what they test (beyond
/// accept/reject), in `json_web_signature_test.json`.
const SIGNATURE_PINNED: &[(u32, &str)] = &[
    (17, "malformed"),          // JSON serialization, not compact
    (16, "alg_not_allowed"),    // alg none with an HMAC kid
    (31, "alg_not_allowed"),    // HS256 with the EC public key as HMAC secret
    (32, "unsupported_header"), // attacker-provided embedded jwk
    (341, "alg_not_allowed"),   // alg none
    (342, "alg_not_allowed"),   // alg NONE
    (343, "alg_not_allowed"),   // alg none, kid none
    (344, "alg_not_allowed"),   // alg none with the real kid
    (332, "alg_not_allowed"),   // RS256 header, PS512 key
    (334, "alg_not_allowed"),   // RS384 header, PS512 key
    (336, "alg_not_allowed"),   // RS512 header, PS512 key
    (338, "alg_not_allowed"),   // PS256 header, PS512 key
    (340, "alg_not_allowed"),   // PS384 header, PS512 key
    (331, "bad_signature"),     // PS512 header, RS256 signature
    (353, "key_not_usable"),    // RSA key with use enc
    (354, "key_not_usable"),    // EC key with use enc
    (355, "key_not_usable"),    // RSA key with key_ops [encrypt]
    (356, "key_not_usable"),    // EC key with key_ops [encrypt]
    (379, "bad_signature"),     // ES256 signature too long
    (386, "bad_signature"),     // r = s = 0 (CVE-2022-21449)
    (401, "bad_signature"),     // r = s = n
];

/// Pinned outcomes in `json_web_key_test.json`.
const KEY_PINNED: &[(u32, &str)] = &[
    (6, "key_not_usable"),   // use enc, alg RSA1_5
    (8, "key_not_usable"),   // 1024-bit RSA
    (9, "key_not_usable"),   // public exponent 1
    (19, "key_not_usable"),  // alg ES521 on a P-256 key
    (20, "key_not_usable"),  // alg ES224
    (21, "key_not_usable"),  // use enc
    (22, "key_set_refused"), // point not on the curve
    (23, "key_set_refused"), // P-256 coordinates labelled P-384
    (24, "key_set_refused"), // EC coordinates labelled kty RSA
];

/// Pinned outcomes in `json_web_crypto_test.json`.
const CRYPTO_PINNED: &[(u32, &str)] = &[
    (16, "alg_not_allowed"),    // alg none
    (17, "malformed"),          // JSON serialization
    (31, "alg_not_allowed"),    // symmetric confusion
    (32, "unsupported_header"), // embedded jwk
];

/// The README's known defects that sit in the symmetric (`base64`, HS256) group of
/// `json_web_signature_test.json`. They need no deviation entry, because Keyscope rejects every
/// HMAC token whatever its label; they are listed to check the reasons and the corpus claim.
/// - 357, 367, 370 are byte-identical yet labelled valid / invalid / invalid;
/// - 372 and 373 contain `?`, which is not base64url, yet are labelled valid.
const HMAC_KNOWN_DEFECTS: &[(u32, &str)] = &[
    (357, "alg_not_allowed"),
    (367, "alg_not_allowed"),
    (370, "alg_not_allowed"),
    (372, "malformed"),
    (373, "malformed"),
];

#[derive(Default)]
struct Tally {
    total: usize,
    applicable: usize,
    agree: usize,
    deviate_listed: usize,
    symmetric_rejected: usize,
    symmetric_labelled_valid: usize,
    jwe_skipped: usize,
    by_outcome: BTreeMap<String, usize>,
    outcomes: BTreeMap<u32, Outcome>,
    tokens: BTreeMap<u32, String>,
    symmetric: BTreeSet<u32>,
}

/// Runs one vector file. Returns `None` if the corpus is skipped.
fn run_file(
    name: &str,
    deviations: &[Deviation],
    pinned: &[(u32, &str)],
    expected_total: usize,
) -> Option<Tally> {
    let text = read_corpus(&format!("wycheproof/{name}"))?;
    let file: VectorFile = serde_json::from_str(&text).expect("vector file parses");
    let deviation_of: BTreeMap<u32, &Deviation> = deviations.iter().map(|d| (d.tc_id, d)).collect();
    assert_eq!(
        deviation_of.len(),
        deviations.len(),
        "{name}: duplicate deviation entry"
    );

    let mut tally = Tally::default();
    let mut failures: Vec<String> = Vec::new();
    for group in &file.test_groups {
        let keys = group.public.as_ref().map(|public| {
            let bytes = serde_json::to_vec(public).unwrap();
            JwkSet::parse_set_or_key(&bytes).map_err(|e| e.to_string())
        });
        for vector in &group.tests {
            tally.total += 1;
            let Some(token) = vector.token() else {
                assert!(
                    vector.jwe.is_some(),
                    "{name} tcId {}: neither jws nor jwe",
                    vector.tc_id
                );
                tally.jwe_skipped += 1;
                continue;
            };
            let label_valid = vector.labelled_valid();
            let context = format!(
                "{name} tcId {} ({}, group {:?}, labelled {})",
                vector.tc_id, vector.comment, group.comment, vector.result
            );
            let outcome = match &keys {
                Some(keys) => {
                    tally.applicable += 1;
                    let outcome = verify(keys, &token);
                    match deviation_of.get(&vector.tc_id) {
                        Some(deviation) => {
                            if outcome.accepted() == label_valid {
                                failures.push(format!(
                                    "{context}: listed as a deviation ({}) but Keyscope agrees \
                                     with the label ({outcome}); remove it from the list",
                                    deviation.why
                                ));
                            } else if outcome.code() != deviation.outcome {
                                failures.push(format!(
                                    "{context}: deviates as listed, but with {outcome} instead \
                                     of {}",
                                    deviation.outcome
                                ));
                            } else {
                                tally.deviate_listed += 1;
                            }
                        }
                        None => {
                            if outcome.accepted() == label_valid {
                                tally.agree += 1;
                            } else {
                                failures.push(format!(
                                    "{context}: Keyscope says {outcome}, the label says {}",
                                    vector.result
                                ));
                            }
                        }
                    }
                    outcome
                }
                None => {
                    // Symmetric group: no public key; Keyscope must refuse whatever the label.
                    let outcome = verify(&Ok(JwkSet::default()), &token);
                    tally.symmetric.insert(vector.tc_id);
                    if label_valid {
                        tally.symmetric_labelled_valid += 1;
                    }
                    if outcome.accepted() {
                        failures.push(format!("{context}: an HMAC/symmetric token was accepted"));
                    } else {
                        tally.symmetric_rejected += 1;
                    }
                    let hmac_header = CompactJws::parse(&token)
                        .ok()
                        .map(|jws| jws.alg_name().starts_with("HS"))
                        .unwrap_or(false);
                    if hmac_header && outcome != Outcome::Rejected(Reason::AlgNotAllowed) {
                        failures.push(format!(
                            "{context}: an HS* header must be refused with alg_not_allowed, \
                             got {outcome}"
                        ));
                    }
                    if deviation_of.contains_key(&vector.tc_id) {
                        failures.push(format!(
                            "{context}: symmetric vectors need no deviation entry"
                        ));
                    }
                    outcome
                }
            };
            *tally
                .by_outcome
                .entry(outcome.code().to_owned())
                .or_default() += 1;
            assert!(
                tally.outcomes.insert(vector.tc_id, outcome).is_none(),
                "{context}: duplicate tcId"
            );
            tally.tokens.insert(vector.tc_id, token);
        }
    }

    assert_eq!(tally.total, file.number_of_tests, "{name}: numberOfTests");
    assert_eq!(tally.total, expected_total, "{name}: the corpus changed");
    for deviation in deviations {
        if !tally.outcomes.contains_key(&deviation.tc_id) {
            failures.push(format!(
                "{name}: deviation tcId {} is not in the file",
                deviation.tc_id
            ));
        }
    }
    for (tc_id, expected) in pinned {
        match tally.outcomes.get(tc_id) {
            Some(outcome) if outcome.code() == *expected => {}
            other => failures.push(format!(
                "{name} tcId {tc_id}: expected {expected}, got {other:?}"
            )),
        }
    }

    println!(
        "{name}: {} vectors; {} with a public key: {} agree with the label, {} listed \
         deviations; {} symmetric (no public key), all {} rejected ({} of them labelled valid); \
         {} JWE skipped",
        tally.total,
        tally.applicable,
        tally.agree,
        tally.deviate_listed,
        tally.symmetric.len(),
        tally.symmetric_rejected,
        tally.symmetric_labelled_valid,
        tally.jwe_skipped,
    );
    println!("{name}: outcomes {:?}", tally.by_outcome);
    for deviation in deviations {
        println!(
            "{name}: deviation tcId {} -> {}: {}",
            deviation.tc_id, deviation.outcome, deviation.why
        );
    }
    assert!(
        failures.is_empty(),
        "{name}: {} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        tally.agree + tally.deviate_listed,
        tally.applicable,
        "{name}: every applicable vector is accounted for"
    );
    Some(tally)
}

#[test]
fn json_web_signature_vectors() {
    let Some(tally) = run_file(
        "json_web_signature_test.json",
        SIGNATURE_DEVIATIONS,
        SIGNATURE_PINNED,
        401,
    ) else {
        return;
    };
    // The README's claims about the defective HMAC vectors hold, and Keyscope refuses them.
    let token = |tc_id: u32| tally.tokens[&tc_id].as_str();
    assert_eq!(token(357), token(367), "357 and 367 are byte-identical");
    assert_eq!(token(357), token(370), "357 and 370 are byte-identical");
    assert!(token(372).contains('?') && token(373).contains('?'));
    for (tc_id, expected) in HMAC_KNOWN_DEFECTS {
        assert!(
            tally.symmetric.contains(tc_id),
            "tcId {tc_id} is in a symmetric group"
        );
        assert_eq!(tally.outcomes[tc_id].code(), *expected, "tcId {tc_id}");
    }
    // Every valid-labelled asymmetric vector in the standard groups verifies.
    assert!(tally.agree >= 300, "agreement collapsed: {}", tally.agree);
}

#[test]
fn json_web_key_vectors() {
    run_file("json_web_key_test.json", KEY_DEVIATIONS, KEY_PINNED, 26);
}

#[test]
fn json_web_crypto_vectors() {
    run_file(
        "json_web_crypto_test.json",
        CRYPTO_DEVIATIONS,
        CRYPTO_PINNED,
        83,
    );
}
