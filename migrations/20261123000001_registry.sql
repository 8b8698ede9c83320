-- Pietura registry, v1. Written in the SQL that PostgreSQL and SQLite share:
-- times are RFC 3339 UTC text (sortable), JSON is text, ids are UUIDv7 text.

CREATE TABLE items (
    id                  TEXT PRIMARY KEY,
    idempotency_key     TEXT NOT NULL UNIQUE,
    registration_number TEXT NOT NULL UNIQUE,
    series              TEXT NOT NULL,
    reg_year            BIGINT NOT NULL,
    reg_seq             BIGINT NOT NULL,
    channel_kind        TEXT NOT NULL,
    channel_instance    TEXT NOT NULL,
    received_at         TEXT NOT NULL,
    registered_at       TEXT NOT NULL,
    state               TEXT NOT NULL,
    unit_id             TEXT,
    service_id          TEXT,
    rule_id             TEXT,
    ruleset_version     TEXT NOT NULL,
    review_reason       TEXT,
    priority            TEXT NOT NULL,
    tags                TEXT NOT NULL,
    reply_due           TEXT,
    sender_name         TEXT,
    sender_email        TEXT,
    sender_phone        TEXT,
    sender_address      TEXT,
    subject             TEXT,
    body                TEXT NOT NULL,
    message_json        TEXT NOT NULL,
    decision_json       TEXT NOT NULL,
    UNIQUE (series, reg_year, reg_seq)
);
CREATE INDEX items_state_received ON items (state, received_at);
CREATE INDEX items_unit_received ON items (unit_id, received_at);

CREATE TABLE attachments (
    item_id      TEXT NOT NULL REFERENCES items (id),
    ordinal      BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    PRIMARY KEY (item_id, ordinal)
);

-- Gap-free numbering: the counter row is updated in the registering
-- transaction, so a rollback gives the number back.
CREATE TABLE registration_counters (
    series   TEXT NOT NULL,
    reg_year BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (series, reg_year)
);

-- Every bus delivery seen, first or repeated: tracking ids resolve here.
CREATE TABLE received_messages (
    message_id  TEXT PRIMARY KEY,
    item_id     TEXT NOT NULL REFERENCES items (id),
    seen_at     TEXT NOT NULL,
    duplicate   BIGINT NOT NULL
);

-- Append-only: the code only ever inserts here.
CREATE TABLE audit_log (
    id      TEXT PRIMARY KEY,
    item_id TEXT NOT NULL REFERENCES items (id),
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_log_item ON audit_log (item_id, at);

-- Routed notices committed with the item, published to unit queues afterwards.
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,
    item_id     TEXT NOT NULL REFERENCES items (id),
    destination TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    last_error  TEXT
);

-- The embedded bus: a durable queue table for single-machine installs.
CREATE TABLE bus_messages (
    id          TEXT PRIMARY KEY,
    queue       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    deliveries  BIGINT NOT NULL,
    visible_at  BIGINT NOT NULL,
    dead_reason TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX bus_messages_ready ON bus_messages (queue, visible_at);
