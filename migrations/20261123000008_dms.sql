-- Registration in an external document-management system (when `[dms]` is
-- configured): one row per item, written in the registering transaction and
-- worked off by the DMS task. `lease_until` keeps two daemons from uploading
-- the same item at once; `external_id` is the DMS's document id once known;
-- `stale_since` is set when the item changes after it was registered there,
-- so its metadata is sent again.
CREATE TABLE dms_registrations (
    item_id         TEXT PRIMARY KEY REFERENCES items (id),
    connector       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    external_id     TEXT,
    external_url    TEXT,
    registered_at   TEXT,
    stale_since     TEXT
);
-- Only the rows with work left: registered items pile up over the years
-- and must not slow the task's once-a-second look.
CREATE INDEX dms_registrations_due ON dms_registrations (next_attempt_at)
    WHERE registered_at IS NULL OR stale_since IS NOT NULL;
