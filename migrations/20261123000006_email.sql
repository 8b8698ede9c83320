-- E-mail intake. One row per (channel, mailbox): where reading stopped
-- (UIDVALIDITY and the last UID handed on) and which daemon holds the
-- mailbox (a lease renewed while it reads; another daemon takes over only
-- after it expires).
CREATE TABLE mailbox_state (
    channel_instance TEXT NOT NULL,
    mailbox          TEXT NOT NULL,
    uid_validity     BIGINT NOT NULL,
    last_uid         BIGINT NOT NULL,
    lease_holder     TEXT,
    lease_until      TEXT,
    last_error       TEXT,
    last_read_at     TEXT,
    PRIMARY KEY (channel_instance, mailbox)
);

-- A follow-up (the sender's reply to our acknowledgement) is its own item,
-- linked to the item it answers.
ALTER TABLE items ADD COLUMN linked_item_id TEXT;
CREATE INDEX items_linked ON items (linked_item_id);
