-- e-adrese (src/eadrese/, src/channels/eadrese.rs).
--
-- The addressee directory cache: who has an active e-adrese, refreshed from
-- the DIV service's initial and changed addressee lists (the sync token is
-- the state of the named work `eadrese-directory:<channel>`).
CREATE TABLE eadrese_addressees (
    e_address  TEXT PRIMARY KEY,
    active     BIGINT NOT NULL, -- 1 active, 0 not
    updated_at TEXT NOT NULL
);

-- Answers sent to an e-adrese: when, the service's message id, and its
-- delivery confirmation. The legal notification date is the second working
-- day after sending (Paziņošanas likums, s. 9).
CREATE TABLE eadrese_sent (
    item_id          TEXT PRIMARY KEY REFERENCES items (id),
    div_message_id   TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    sent_at          TEXT NOT NULL,
    notified_on      TEXT NOT NULL,
    delivery_status  TEXT,
    delivered_at     TEXT,
    confirmed_at     TEXT
);
