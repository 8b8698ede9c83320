-- Answers to the sender on the channel the item came by ("same channel"),
-- written in the registering transaction and sent by the channel's replier.
-- A row stays until it is sent or given up, with its attempts and last error.
CREATE TABLE replies (
    item_id          TEXT PRIMARY KEY REFERENCES items (id),
    channel_instance TEXT NOT NULL,
    address          TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    done_at          TEXT,
    -- 'sent', or why none was sent ('suppressed: …').
    outcome          TEXT
);
CREATE INDEX replies_due ON replies (done_at, next_attempt_at);
CREATE INDEX replies_address ON replies (address, done_at);
