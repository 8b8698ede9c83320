-- Desk identity (issue 17): where an account signs in (local password,
-- OpenID Connect, LDAP / Active Directory), its directory identity and last
-- sign-in; the accounts' own audit log (sign-ins, failures, administrators'
-- changes); and the desk's signing key for stateless tokens (the sign-in
-- form's CSRF token, the OpenID round trip), shared by every daemon.

ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN last_sign_in_at TEXT;
CREATE UNIQUE INDEX users_external ON users (source, external_id);

CREATE TABLE account_events (
    id       TEXT PRIMARY KEY,
    at       TEXT NOT NULL,
    -- Who acted: an account's "Name (username)", or "anonymous".
    actor    TEXT NOT NULL,
    -- sign_in, sign_in_failed, sign_in_refused, user_added, user_disabled,
    -- user_enabled, role_changed.
    action   TEXT NOT NULL,
    -- The account concerned, when there is one (never the typed username
    -- of a failed sign-in for an account that does not exist).
    user_id  TEXT,
    -- JSON: address, source, reason, old and new role …
    detail   TEXT NOT NULL
);
CREATE INDEX account_events_at ON account_events (at);

CREATE TABLE desk_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
