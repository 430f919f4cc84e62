#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The store against SQLite always, and PostgreSQL when KEYSCOPE_TEST_DATABASE_URL is set.

use keyscope_store::{
    CodeOutcome, IssuedToken, KeyRecord, KeyState, NewApp, NewCode, NewRefresh, RealmKind,
    RefreshOutcome, Store, StoreError, User,
};

async fn stores() -> Vec<(&'static str, Store, Option<std::path::PathBuf>)> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keyscope-store-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = vec![("sqlite", Store::open_sqlite(&dir).await.unwrap(), Some(dir))];
    if let Some(url) = keyscope_store::testing::postgres_url().await {
        out.push(("postgres", Store::connect(&url).await.unwrap(), None));
    }
    out
}

fn cleanup(dir: Option<std::path::PathBuf>) {
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn key(kid: &str, realm: &str, state: KeyState, created: i64) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        realm_id: realm.into(),
        alg: "ES256".into(),
        state,
        backend: "sealed".into(),
        key_reference: "c2VhbGVk".into(),
        public_jwk: "{}".into(),
        created_at: created,
        activated_at: (state == KeyState::Active).then_some(created),
        retiring_at: None,
        retired_at: None,
        revoked_at: None,
        revoked_reason: None,
        activate_after: created,
        not_after: created + 1000,
    }
}

#[tokio::test]
async fn realms_users_apps() {
    for (name, store, dir) in stores().await {
        let consumer = store.ensure_consumer_realm(10).await.unwrap();
        assert_eq!(consumer.id, "consumers", "{name}");
        // Idempotent.
        store.ensure_consumer_realm(11).await.unwrap();
        store
            .create_realm("contoso", RealmKind::Tenant, 12)
            .await
            .unwrap();
        assert!(matches!(
            store.create_realm("contoso", RealmKind::Tenant, 13).await,
            Err(StoreError::Conflict(_))
        ));
        let realms = store.realms().await.unwrap();
        assert_eq!(
            realms.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["consumers", "contoso"],
            "{name}"
        );
        let user = User {
            id: "u1".into(),
            realm_id: "contoso".into(),
            username: "alice".into(),
            password_hash: Some("$argon2id$…".into()),
            created_at: 14,
        };
        store.add_user(&user).await.unwrap();
        let same_name = User {
            id: "u2".into(),
            ..user.clone()
        };
        assert!(matches!(
            store.add_user(&same_name).await,
            Err(StoreError::Conflict(_))
        ));
        // The same username in another realm is another user.
        let other_realm = User {
            id: "u3".into(),
            realm_id: "consumers".into(),
            ..user.clone()
        };
        store.add_user(&other_realm).await.unwrap();
        assert_eq!(
            store.user_by_name("contoso", "alice").await.unwrap(),
            Some(user.clone())
        );
        assert_eq!(store.user("contoso", "u3").await.unwrap(), None, "{name}");
        assert!(!format!("{user:?}").contains("argon2"));

        let app = NewApp {
            client_id: "c1".into(),
            realm_id: "contoso".into(),
            name: "Mail".into(),
            secret_digest: Some("digest".into()),
            grants: vec!["client_credentials".into(), "refresh_token".into()],
            redirect_uris: vec!["https://a.example/cb".into(), "http://127.0.0.1/cb".into()],
            resources: vec!["https://mail.example".into()],
            created_at: 15,
        };
        let before = store.revision().await.unwrap();
        store.add_app(&app).await.unwrap();
        assert!(store.revision().await.unwrap() > before);
        let loaded = store.app("c1").await.unwrap().unwrap();
        assert!(loaded.confidential);
        assert_eq!(loaded.redirect_uris, app.redirect_uris);
        assert_eq!(loaded.grants, app.grants);
        assert!(loaded.allows_grant("refresh_token") && !loaded.allows_grant("password"));
        assert_eq!(store.apps("contoso").await.unwrap().len(), 1);
        assert!(store.app("nope").await.unwrap().is_none());
        store.close().await;
        cleanup(dir);
    }
}

#[tokio::test]
async fn key_lifecycle_rules() {
    for (name, store, dir) in stores().await {
        store.ensure_consumer_realm(0).await.unwrap();
        store
            .create_realm("contoso", RealmKind::Tenant, 0)
            .await
            .unwrap();
        store
            .insert_key(&key("k1", "consumers", KeyState::Active, 1))
            .await
            .unwrap();
        // A second active key in the same realm is refused by the database itself.
        assert!(matches!(
            store
                .insert_key(&key("k2", "consumers", KeyState::Active, 2))
                .await,
            Err(StoreError::Conflict(_))
        ));
        // Another realm may have its own.
        store
            .insert_key(&key("t1", "contoso", KeyState::Active, 2))
            .await
            .unwrap();
        store
            .insert_key(&key("k2", "consumers", KeyState::Pending, 3))
            .await
            .unwrap();
        assert!(matches!(
            store
                .insert_key(&key("k3", "consumers", KeyState::Pending, 3))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(
            store.activate_key("consumers", "k2", 10).await.unwrap(),
            "{name}"
        );
        // Twice: the second finds nothing pending.
        assert!(!store.activate_key("consumers", "k2", 11).await.unwrap());
        // A kid of another realm cannot be activated in this one.
        assert!(!store.activate_key("consumers", "t1", 11).await.unwrap());
        let k1 = store.key("k1").await.unwrap().unwrap();
        assert_eq!(k1.state, KeyState::Retiring);
        assert_eq!(k1.retiring_at, Some(10));
        assert_eq!(
            store.key("k2").await.unwrap().unwrap().state,
            KeyState::Active
        );
        assert_eq!(
            store.key("t1").await.unwrap().unwrap().state,
            KeyState::Active
        );
        assert!(store.retire_key("k1", 20).await.unwrap());
        assert!(!store.retire_key("k1", 21).await.unwrap());
        let rev = store.revision().await.unwrap();
        let before = store.revoke_key("t1", "leaked", 30).await.unwrap();
        assert_eq!(before.state, KeyState::Active);
        assert!(store.revision().await.unwrap() > rev);
        let t1 = store.key("t1").await.unwrap().unwrap();
        assert_eq!(
            (t1.state, t1.revoked_reason.as_deref()),
            (KeyState::Revoked, Some("leaked"))
        );
        assert!(matches!(
            store.revoke_key("zz", "x", 1).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.realm_keys("consumers").await.unwrap().len(), 2);
        assert_eq!(store.keys().await.unwrap().len(), 3);
        store.close().await;
        cleanup(dir);
    }
}

#[tokio::test]
async fn codes_refresh_and_ledger() {
    for (name, store, dir) in stores().await {
        store.ensure_consumer_realm(0).await.unwrap();
        store
            .create_family("f1", "consumers", "c1", Some("u1"), 0)
            .await
            .unwrap();
        let code = NewCode {
            code_digest: "d1".into(),
            family_id: "f1".into(),
            realm_id: "consumers".into(),
            client_id: "c1".into(),
            user_id: "u1".into(),
            redirect_uri: "https://a/cb".into(),
            scope: "openid".into(),
            resource: None,
            nonce: Some("n".into()),
            code_challenge: "ch".into(),
            auth_time: 1,
            expires_at: 60,
        };
        store.insert_code(&code).await.unwrap();
        assert!(
            matches!(store.redeem_code("d1", 5).await.unwrap(), CodeOutcome::Fresh(c) if c.code == code)
        );
        assert!(
            matches!(
                store.redeem_code("d1", 6).await.unwrap(),
                CodeOutcome::Replayed(_)
            ),
            "{name}"
        );
        assert_eq!(
            store.redeem_code("nope", 6).await.unwrap(),
            CodeOutcome::Unknown
        );
        let late = NewCode {
            code_digest: "d2".into(),
            ..code.clone()
        };
        store.insert_code(&late).await.unwrap();
        assert!(matches!(
            store.redeem_code("d2", 61).await.unwrap(),
            CodeOutcome::Expired(_)
        ));

        let refresh = NewRefresh {
            token_digest: "r1".into(),
            family_id: "f1".into(),
            realm_id: "consumers".into(),
            client_id: "c1".into(),
            user_id: Some("u1".into()),
            scope: "openid".into(),
            resource: None,
            auth_time: Some(1),
            created_at: 5,
            expires_at: 1000,
        };
        store.insert_refresh(&refresh).await.unwrap();
        let ledger = IssuedToken {
            jti: "j1".into(),
            realm_id: "consumers".into(),
            kid: "k1".into(),
            subject: "u1".into(),
            client_id: "c1".into(),
            audience: "https://mail".into(),
            scope: "openid".into(),
            issued_at: 5,
            expires_at: 605,
            family_id: Some("f1".into()),
            revoked_at: None,
        };
        store.record_issued(&ledger).await.unwrap();
        assert_eq!(store.issued("j1").await.unwrap(), Some(ledger.clone()));
        assert_eq!(store.last_expiry_signed_by("k1").await.unwrap(), Some(605));
        assert_eq!(store.last_expiry_signed_by("k9").await.unwrap(), None);
        assert!(matches!(
            store.spend_refresh("r1", 10).await.unwrap(),
            RefreshOutcome::Fresh(_)
        ));
        assert!(
            matches!(store.spend_refresh("r1", 11).await.unwrap(), RefreshOutcome::Replayed(r) if r.family_id() == "f1")
        );
        assert_eq!(
            store
                .revoke_family("f1", "refresh token replayed", 12)
                .await
                .unwrap(),
            1
        );
        assert!(store.family_revoked("f1").await.unwrap());
        assert!(
            store
                .issued("j1")
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
        let next = NewRefresh {
            token_digest: "r2".into(),
            ..refresh.clone()
        };
        store.insert_refresh(&next).await.unwrap();
        assert!(matches!(
            store.spend_refresh("r2", 13).await.unwrap(),
            RefreshOutcome::FamilyRevoked(_)
        ));
        assert_eq!(
            store.spend_refresh("r9", 13).await.unwrap(),
            RefreshOutcome::Unknown
        );
        assert!(!store.revoke_issued("j1", 14).await.unwrap());
        store.close().await;
        cleanup(dir);
    }
}

#[tokio::test]
async fn reopening_keeps_data_and_bad_urls_are_refused() {
    let dir = std::env::temp_dir().join(format!("keyscope-store-reopen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open_sqlite(&dir).await.unwrap();
    store.ensure_consumer_realm(1).await.unwrap();
    store.close().await;
    let store = Store::open_sqlite(&dir).await.unwrap();
    assert!(store.realm("consumers").await.unwrap().is_some());
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(
        Store::connect("mysql://x").await,
        Err(StoreError::Location(_))
    ));
    let err = Store::connect("postgres://user:hunter2@127.0.0.1:1/db")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn notice_webhooks_and_realm_administrators() {
    for (name, store, dir) in stores().await {
        store.ensure_consumer_realm(10).await.unwrap();
        store
            .create_realm("contoso", RealmKind::Tenant, 12)
            .await
            .unwrap();
        assert_eq!(
            store.notify_webhook("contoso").await.unwrap(),
            None,
            "{name}"
        );
        store
            .set_notify_webhook("contoso", Some("https://soc.example/hook"))
            .await
            .unwrap();
        assert_eq!(
            store.notify_webhook("contoso").await.unwrap().as_deref(),
            Some("https://soc.example/hook"),
            "{name}"
        );
        store.set_notify_webhook("contoso", None).await.unwrap();
        assert_eq!(
            store.notify_webhook("contoso").await.unwrap(),
            None,
            "{name}"
        );
        assert!(matches!(
            store.set_notify_webhook("nowhere", Some("https://x")).await,
            Err(StoreError::NotFound(_))
        ));
        for (id, username) in [("u1", "bob"), ("u2", "alice"), ("u3", "carol")] {
            store
                .add_user(&User {
                    id: id.into(),
                    realm_id: "contoso".into(),
                    username: username.into(),
                    password_hash: None,
                    created_at: 14,
                })
                .await
                .unwrap();
        }
        assert!(store.realm_admins("contoso").await.unwrap().is_empty());
        store.set_realm_admin("contoso", "bob", true).await.unwrap();
        store
            .set_realm_admin("contoso", "alice", true)
            .await
            .unwrap();
        store
            .set_realm_admin("contoso", "alice", false)
            .await
            .unwrap();
        store
            .set_realm_admin("contoso", "carol", true)
            .await
            .unwrap();
        assert_eq!(
            store.realm_admins("contoso").await.unwrap(),
            ["bob", "carol"],
            "{name}"
        );
        assert!(store.realm_admins("consumers").await.unwrap().is_empty());
        store
            .set_password_hash("contoso", "carol", "$argon2id$new")
            .await
            .unwrap();
        let carol = store
            .user_by_name("contoso", "carol")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            carol.password_hash.as_deref(),
            Some("$argon2id$new"),
            "{name}"
        );
        assert!(matches!(
            store.set_password_hash("consumers", "carol", "x").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.set_realm_admin("contoso", "nobody", true).await,
            Err(StoreError::NotFound(_))
        ));
        store.close().await;
        cleanup(dir);
    }
}
