//! **Dangerous, on purpose**: a token validator with the 2023 mail system's flaw, for the
//! drill's `--naive` contrast only.
//!
//! It does almost everything right: structure, algorithm, refused header members, the
//! signature, expiry and audience. It looks the token's `kid` up in the keys of *every*
//! realm, as published together (the 2023 "common key-metadata endpoint"), and never asks
//! which issuer the key that verified belongs to. That one missing check is the whole attack.
//!
//! Nothing in Keyscope's services can reach this module: it is private to `demo`, and the
//! mail service validates with `keyscope-trust` (keys bound to their issuer, fail closed)
//! plus the issuance ledger.

use keyscope_jose::{Algorithm, CompactJws, JwkSet};
use serde_json::Value;

/// One realm's published keys, as fetched from its `jwks` endpoint.
pub(super) struct PublishedKeys {
    pub realm: String,
    pub keys: JwkSet,
}

/// What the naive validator accepted, and on whose word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NaiveAcceptance {
    /// The key that verified the signature.
    pub kid: String,
    /// The realm that published that key.
    pub key_realm: String,
    /// The issuer the key itself names (ignored, which is the flaw).
    pub key_issuer: Option<String>,
    /// The token's claims, believed.
    pub iss: String,
    pub tid: Option<String>,
    pub sub: String,
}

/// Validates like the 2023 mail system: **never use this for anything but the drill.**
pub(super) fn validate(
    token: &str,
    published: &[PublishedKeys],
    audience: &str,
    now: i64,
) -> Result<NaiveAcceptance, String> {
    let jws = CompactJws::parse(token).map_err(|e| e.to_string())?;
    let alg: Algorithm = jws.check_header().map_err(|e| e.to_string())?;
    let kid = jws.kid().ok_or("the token has no kid")?;
    // Every realm's keys in one pool: whichever verifies, vouches.
    let (realm, key) = published
        .iter()
        .filter_map(|p| p.keys.get(kid).map(|k| (p.realm.as_str(), k)))
        .find(|(_, key)| {
            key.verify(alg, jws.signing_input(), jws.signature())
                .is_ok()
        })
        .ok_or_else(|| format!("no published key {kid:?} verifies the signature"))?;
    let claims: Value =
        serde_json::from_slice(jws.payload()).map_err(|e| format!("claims: {e}"))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("no numeric exp")?;
    if exp <= now {
        return Err("expired".to_owned());
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !audience_ok {
        return Err("not for this audience".to_owned());
    }
    // The flaw: `iss` is read and believed, and never compared with the issuer of the key
    // that verified the signature.
    Ok(NaiveAcceptance {
        kid: kid.to_owned(),
        key_realm: realm.to_owned(),
        key_issuer: key.issuer().map(str::to_owned),
        iss: text("iss").ok_or("no iss")?,
        tid: text("tid"),
        sub: text("sub").ok_or("no sub")?,
    })
}

/// What the mail service would have served for the accepted token: the Inbox of the
/// token's `sub` in the token's `tid`, read straight from the store.
pub(super) async fn mailbox_it_would_open(
    store: &keyscope_store::Store,
    realm: &str,
    user_id: &str,
) -> anyhow::Result<Option<(String, i64, Vec<String>)>> {
    use anyhow::Context;
    use keyscope_store::{EmailFilter, EmailSort, EmailSortKey};
    let Some(account) = store.mail_account_of_user(realm, user_id).await? else {
        return Ok(None);
    };
    let inbox = store
        .mailboxes(&account.id)
        .await?
        .into_iter()
        .find(|m| m.role.as_deref() == Some("inbox"))
        .context("the account has no Inbox")?;
    let filter = EmailFilter::InMailbox(inbox.id.clone());
    let sort = [EmailSort {
        key: EmailSortKey::ReceivedAt,
        ascending: false,
    }];
    let total = store.count_emails(&account.id, Some(&filter)).await?;
    let ids: Vec<String> = store
        .query_emails(&account.id, Some(&filter), &sort, 0, Some(20))
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let emails = store.emails(&account.id, &ids).await?;
    let subjects = ids
        .iter()
        .filter_map(|id| emails.iter().find(|e| &e.id == id))
        .map(|e| {
            serde_json::from_str::<Value>(&e.summary)
                .ok()
                .and_then(|s| s.get("subject").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| "(no subject)".to_owned())
        })
        .collect();
    Ok(Some((account.email, total, subjects)))
}

#[cfg(test)]
mod tests {
    use keyscope_jose::SigningKey;
    use serde_json::{Map, json};

    use super::*;

    const AUD: &str = "https://ks.example/jmap";
    const NOW: i64 = 1_800_000_000;

    fn realm(name: &str, kid: &str) -> (SigningKey, PublishedKeys) {
        let issuer = format!("https://ks.example/{name}");
        let key = SigningKey::generate(Algorithm::Es256, kid, Some(issuer)).unwrap();
        let keys = JwkSet::from_keys(vec![key.public_jwk().unwrap()]).unwrap();
        (
            key,
            PublishedKeys {
                realm: name.to_owned(),
                keys,
            },
        )
    }

    fn token(key: &SigningKey, claims: Value) -> String {
        let mut header = Map::new();
        header.insert("typ".into(), json!("at+jwt"));
        key.sign_compact(header, claims.to_string().as_bytes())
            .unwrap()
    }

    fn claims(iss: &str, tid: &str) -> Value {
        json!({"iss": iss, "tid": tid, "sub": "alice", "aud": AUD, "exp": NOW + 600,
               "iat": NOW, "jti": "j", "client_id": "mail"})
    }

    #[test]
    fn accepts_an_enterprise_token_signed_with_the_consumer_key() {
        let (consumer, consumer_keys) = realm("consumers", "c1");
        let (_, contoso_keys) = realm("t/contoso", "k1");
        let forged = token(&consumer, claims("https://ks.example/t/contoso", "contoso"));
        let accepted = validate(&forged, &[consumer_keys, contoso_keys], AUD, NOW).unwrap();
        assert_eq!(accepted.key_realm, "consumers");
        assert_eq!(
            accepted.key_issuer.as_deref(),
            Some("https://ks.example/consumers")
        );
        assert_eq!(accepted.iss, "https://ks.example/t/contoso");
        assert_eq!(accepted.tid.as_deref(), Some("contoso"));
        assert_eq!(accepted.sub, "alice");
    }

    #[test]
    fn keyscope_refuses_the_token_the_naive_validator_accepts() {
        // The same token through the real validator: the key is bound to its issuer.
        let (consumer, consumer_keys) = realm("consumers", "c1");
        let (_, contoso_keys) = realm("t/contoso", "k1");
        let forged = token(&consumer, claims("https://ks.example/t/contoso", "contoso"));
        let mut jwks = consumer_keys.keys.to_json();
        let contoso = contoso_keys.keys.to_json();
        let all: Vec<Value> = [&jwks, &contoso]
            .iter()
            .flat_map(|s| s["keys"].as_array().unwrap().clone())
            .collect();
        jwks["keys"] = Value::Array(all);
        let shared = JwkSet::parse(jwks.to_string().as_bytes()).unwrap();
        let naive = validate(
            &forged,
            &[PublishedKeys {
                realm: "common".into(),
                keys: shared.clone(),
            }],
            AUD,
            NOW,
        );
        assert!(naive.is_ok(), "{naive:?}");
        let source: std::sync::Arc<dyn keyscope_trust::KeySource> =
            keyscope_trust::StaticKeys::new(shared);
        let trusted =
            |iss: &str| keyscope_trust::TrustedIssuer::new(iss, source.clone()).audiences([AUD]);
        let policy = keyscope_trust::Policy::builder()
            .issuer(trusted("https://ks.example/consumers"))
            .issuer(trusted("https://ks.example/t/contoso"))
            .build()
            .unwrap();
        let decision = keyscope_trust::Validator::new(policy).validate(&forged, NOW);
        assert_eq!(
            decision.reason().map(|r| r.as_str()),
            Some("key_issuer_mismatch")
        );
    }

    #[test]
    fn still_checks_signature_expiry_audience_and_kid() {
        let (consumer, consumer_keys) = realm("consumers", "c1");
        let (stranger, _) = realm("elsewhere", "c1");
        let published = [consumer_keys];
        let good = claims("https://ks.example/t/contoso", "contoso");
        // Signed by another key with the same kid.
        assert!(validate(&token(&stranger, good.clone()), &published, AUD, NOW).is_err());
        let mut expired = good.clone();
        expired["exp"] = json!(NOW - 1);
        assert_eq!(
            validate(&token(&consumer, expired), &published, AUD, NOW),
            Err("expired".to_owned())
        );
        let mut elsewhere = good.clone();
        elsewhere["aud"] = json!("https://other.example");
        assert!(validate(&token(&consumer, elsewhere), &published, AUD, NOW).is_err());
        let (unknown, _) = realm("consumers", "c2");
        assert!(validate(&token(&unknown, good), &published, AUD, NOW).is_err());
    }
}
