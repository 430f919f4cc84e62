-- Detection and response: where a tenant's incident notices go, and who administers it.
-- A tenant's webhook receives signed notices; without one, its administrators' mailboxes do.
ALTER TABLE realms ADD COLUMN notify_webhook TEXT;
ALTER TABLE users ADD COLUMN realm_admin BIGINT NOT NULL DEFAULT 0;
