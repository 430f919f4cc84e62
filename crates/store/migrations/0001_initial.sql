-- Keyscope store, schema version 1. One file for SQLite and PostgreSQL: only types both
-- understand (TEXT, BIGINT), timestamps as Unix seconds, booleans as 0/1, binary data as
-- base64url text. Partial unique indexes (supported by both) enforce the key lifecycle's
-- "at most one active and one pending key per realm" even across nodes.

CREATE TABLE realms (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    realm_id TEXT NOT NULL REFERENCES realms (id),
    username TEXT NOT NULL,
    password_hash TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (realm_id, username)
);

CREATE TABLE apps (
    client_id TEXT PRIMARY KEY,
    realm_id TEXT NOT NULL REFERENCES realms (id),
    name TEXT NOT NULL,
    confidential BIGINT NOT NULL,
    secret_digest TEXT,
    grants TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    resources TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    realm_id TEXT NOT NULL REFERENCES realms (id),
    alg TEXT NOT NULL,
    state TEXT NOT NULL,
    backend TEXT NOT NULL,
    key_reference TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    retiring_at BIGINT,
    retired_at BIGINT,
    revoked_at BIGINT,
    revoked_reason TEXT,
    activate_after BIGINT NOT NULL,
    not_after BIGINT NOT NULL
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (realm_id) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_pending ON signing_keys (realm_id) WHERE state = 'pending';

CREATE TABLE token_families (
    id TEXT PRIMARY KEY,
    realm_id TEXT NOT NULL REFERENCES realms (id),
    client_id TEXT NOT NULL,
    user_id TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);

CREATE TABLE auth_codes (
    code_digest TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES token_families (id),
    realm_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT,
    nonce TEXT,
    code_challenge TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE refresh_tokens (
    token_digest TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES token_families (id),
    realm_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_id TEXT,
    scope TEXT NOT NULL,
    resource TEXT,
    auth_time BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- The issuance ledger: every access token ever issued. Resource servers refuse a token whose
-- jti is not here (a stolen key alone cannot add rows).
CREATE TABLE issued_tokens (
    jti TEXT PRIMARY KEY,
    realm_id TEXT NOT NULL,
    kid TEXT NOT NULL,
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    audience TEXT NOT NULL,
    scope TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    family_id TEXT,
    revoked_at BIGINT
);
CREATE INDEX issued_tokens_family ON issued_tokens (family_id);
CREATE INDEX issued_tokens_kid ON issued_tokens (kid);

-- Audit events written while another process held the audit log (an admin command beside a
-- running server); a server claims a row, appends it to its log and deletes it. A claim
-- older than a minute (its node died) may be taken over.
CREATE TABLE audit_outbox (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    event TEXT NOT NULL,
    claimed_by TEXT,
    claimed_at BIGINT
);

-- Deployment settings shared by every process on this store (the public URL the server
-- announced, so that admin commands mint tokens with the same issuers).
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Bumped by every change a running node must notice (keys, realms, apps, revocations); nodes
-- poll it and reload.
CREATE TABLE store_revision (
    id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO store_revision (id, revision) VALUES (1, 0);
