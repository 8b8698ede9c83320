-- Clients of the item API (issue 17): each with a name (the actor on the
-- audit log), the SHA-256 of its random token (never the token), the units
-- whose items it may see and act on ('*' = every unit, else a JSON array)
-- and the actions it may take (comma-separated). Revoked clients are kept,
-- so a name on the audit log always means one client.

CREATE TABLE api_clients (
    name          TEXT PRIMARY KEY,
    token_sha256  TEXT NOT NULL UNIQUE,
    units         TEXT NOT NULL,
    actions       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
