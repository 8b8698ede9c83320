-- Parked items: what the bus dead-lettered (the delivery limit burned by
-- restarts, a message the registry refused), kept with its raw bytes so
-- nothing accepted is lost unseen. `pietura parked retry` (and, for a
-- transient reason, the dead-letter consumer itself) publishes it to intake
-- again; the engine's idempotency makes a retry of a registered item harmless.
CREATE TABLE parked (
    id          TEXT PRIMARY KEY,
    message_id  TEXT,
    payload_b64 TEXT NOT NULL,
    reason      TEXT NOT NULL,
    transient   INTEGER NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    retry_after TEXT NOT NULL
);
CREATE INDEX parked_message ON parked (message_id);
