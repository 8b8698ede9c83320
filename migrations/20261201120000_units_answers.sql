-- Units at the desk and their answers (issue 20, items 1 and 2).
--
-- An account with the role 'unit' works the items of its units only; an
-- account may belong to several units.
CREATE TABLE user_units (
    user_id TEXT NOT NULL REFERENCES users (id),
    unit_id TEXT NOT NULL,
    PRIMARY KEY (user_id, unit_id)
);
CREATE INDEX user_units_unit ON user_units (unit_id);

-- The colleague a unit member assigned the item to (an account id).
ALTER TABLE items ADD COLUMN assignee TEXT;

-- Outgoing documents: the answers to items, numbered in their own gap-free
-- series (`registration_counters` row with series '~outgoing', moved in the
-- transaction that registers the answer), linked to the incoming item.
CREATE TABLE answers (
    id              TEXT PRIMARY KEY,
    item_id         TEXT NOT NULL REFERENCES items (id),
    number          TEXT NOT NULL UNIQUE,
    reg_year        BIGINT NOT NULL,
    reg_seq         BIGINT NOT NULL,
    body            TEXT NOT NULL,
    -- The signed answer document uploaded instead of (or with) the text: a blob.
    document_sha256 TEXT,
    document_name   TEXT,
    -- 'email', 'sms', 'letter' (src/answers.rs: the channel of the item
    -- decides).
    delivery        TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    -- A letter: who printed and posted it, and when.
    posted_by       TEXT,
    posted_at       TEXT,
    UNIQUE (reg_year, reg_seq)
);
CREATE INDEX answers_item ON answers (item_id);

-- An answer sent electronically goes out through the replies table: the
-- item's row is (re)used for it, naming the answer.
ALTER TABLE replies ADD COLUMN answer_id TEXT;
