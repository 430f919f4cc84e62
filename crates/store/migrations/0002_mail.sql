-- Keyscope store, schema version 2: the mail service (JMAP, RFC 8620/8621).
--
-- Every mail row carries its account id, and every query the mail service makes filters on
-- it first: that is the isolation boundary between mailboxes, realms and tenants.
--
-- Changes: every created, updated or destroyed object gets its own modification sequence
-- number (modseq) from its account's counter, allocated under the account row's lock, so a
-- state string is exact and /changes can stop at any object boundary.
--
-- Blobs are content-addressed (SHA-256) and stored once; `account_blobs` says which accounts
-- may read each one, so the same content in two accounts reveals nothing across them.

CREATE TABLE mail_accounts (
    id TEXT PRIMARY KEY,
    realm_id TEXT NOT NULL REFERENCES realms (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    modseq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (realm_id, user_id)
);

CREATE TABLE mailboxes (
    account_id TEXT NOT NULL REFERENCES mail_accounts (id),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    parent_id TEXT,
    role TEXT,
    sort_order BIGINT NOT NULL,
    is_subscribed BIGINT NOT NULL,
    -- Maintained with every membership change, so counts and Inbox totals cost one row.
    total_emails BIGINT NOT NULL DEFAULT 0,
    unread_emails BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE mail_blobs (
    hash TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL
);

CREATE TABLE account_blobs (
    account_id TEXT NOT NULL REFERENCES mail_accounts (id),
    blob_id TEXT NOT NULL REFERENCES mail_blobs (hash),
    media_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, blob_id)
);

-- Searchable and sortable columns are stored lower-cased (the same comparison in both
-- databases); `summary` holds the parsed header properties so Email/get rarely re-parses.
CREATE TABLE emails (
    account_id TEXT NOT NULL REFERENCES mail_accounts (id),
    id TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    message_id TEXT,
    received_at BIGINT NOT NULL,
    sent_at BIGINT,
    size BIGINT NOT NULL,
    keywords TEXT NOT NULL,
    mailbox_ids TEXT NOT NULL,
    subject_key TEXT NOT NULL,
    from_key TEXT NOT NULL,
    to_key TEXT NOT NULL,
    cc_key TEXT NOT NULL,
    bcc_key TEXT NOT NULL,
    body_key TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX emails_by_received ON emails (account_id, received_at, id);
CREATE INDEX emails_by_thread ON emails (account_id, thread_id);
CREATE INDEX emails_by_blob ON emails (account_id, blob_id);

CREATE TABLE email_mailboxes (
    account_id TEXT NOT NULL,
    mailbox_id TEXT NOT NULL,
    email_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    unread BIGINT NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, email_id)
);
CREATE INDEX email_mailboxes_by_received ON email_mailboxes (account_id, mailbox_id, received_at, email_id);
CREATE INDEX email_mailboxes_by_email ON email_mailboxes (account_id, email_id);

-- Threads and how many emails each has: whether a new email starts or joins a thread, and
-- whether removing one ends it, is one primary-key row (no count over the emails).
CREATE TABLE threads (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    email_count BIGINT NOT NULL,
    PRIMARY KEY (account_id, id)
);

-- Message-IDs seen in an account, for threading replies to their parents.
CREATE TABLE thread_refs (
    account_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    PRIMARY KEY (account_id, message_id)
);

CREATE TABLE mail_changes (
    account_id TEXT NOT NULL,
    modseq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    op TEXT NOT NULL,
    PRIMARY KEY (account_id, modseq)
);
CREATE INDEX mail_changes_by_kind ON mail_changes (account_id, kind, modseq);

CREATE TABLE email_submissions (
    account_id TEXT NOT NULL REFERENCES mail_accounts (id),
    id TEXT NOT NULL,
    email_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    envelope TEXT NOT NULL,
    send_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, id)
);
