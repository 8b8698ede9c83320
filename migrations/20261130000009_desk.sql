-- The records office's web desk: local accounts, their sessions, and the
-- history of rule edits made in the browser (or rolled back there).

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    -- 'officer', 'admin' or 'readonly'.
    role          TEXT NOT NULL,
    -- Argon2id PHC string; NULL for accounts that sign in elsewhere (OIDC later).
    password_hash TEXT,
    created_at    TEXT NOT NULL,
    disabled_at   TEXT
);

-- tower-sessions records: the id is the cookie's value, data is JSON.
CREATE TABLE web_sessions (
    id          TEXT PRIMARY KEY,
    data        TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- Every saved or rolled-back rule edit: who, when, which file, from which
-- version to which. The texts of both versions are in ruleset_versions.
CREATE TABLE ruleset_changes (
    id               TEXT PRIMARY KEY,
    at               TEXT NOT NULL,
    actor            TEXT NOT NULL,
    action           TEXT NOT NULL,
    file             TEXT,
    from_version     TEXT NOT NULL,
    to_version       TEXT NOT NULL,
    note             TEXT NOT NULL
);
CREATE INDEX ruleset_changes_at ON ruleset_changes (at);
