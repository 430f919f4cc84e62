#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! Token signing per second per algorithm, through the key store (the path the identity
//! service takes for every token): `cargo bench -p keyscope-custody --bench sign`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keyscope_custody::{KeySpec, KeyStore, MasterKey, SealedKeyStore};
use keyscope_jose::Algorithm;
use serde_json::{Map, Value, json};

fn bench(c: &mut Criterion) {
    let Ok(master) = MasterKey::generate() else {
        return;
    };
    let store = SealedKeyStore::new(master);
    // A typical RFC 9068 access token payload.
    let payload = json!({
        "iss": "https://id.example/t/contoso", "sub": "XnxTZ9zwrU3XJ26upN18lw",
        "aud": "https://mail.example/", "exp": 1_795_366_819, "iat": 1_795_366_219,
        "nbf": 1_795_366_219, "jti": "H7T35ErXJ8MRqEvUvtcGcA", "client_id": "QfAsluBG61HcUNUmUK_oWg",
        "tid": "contoso", "scope": "openid mail.read"
    })
    .to_string();
    let mut group = c.benchmark_group("sign_access_token");
    for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
        let spec = KeySpec {
            kid: "bench",
            issuer: "keyscope-realm:contoso",
            alg,
        };
        let Ok(created) = store.create(&spec) else {
            continue;
        };
        let Ok(signer) = store.open(&spec, &created.reference) else {
            continue;
        };
        group.bench_function(alg.name(), |b| {
            b.iter(|| {
                let mut header = Map::new();
                header.insert("typ".into(), Value::String("at+jwt".into()));
                black_box(signer.sign_compact(header, black_box(payload.as_bytes())))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
