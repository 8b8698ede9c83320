-- Cross-channel near-duplicates (issue 19, item 6): the same letter arriving
-- by e-mail, e-adrese and post is linked, never merged or dropped
-- (src/enrich/duplicates.rs decides; src/registry/duplicates.rs stores).
--
-- Each registered item's fingerprint: its MinHash signature over word
-- shingles of the folded text (hex; NULL when the text is too short to say
-- anything), kept so that a new item is compared with stored signatures and
-- no stored message is read again.
CREATE TABLE duplicate_signatures (
    item_id      TEXT PRIMARY KEY REFERENCES items (id),
    received_at  TEXT NOT NULL,
    channel_kind TEXT NOT NULL,
    minhash      TEXT
);

-- The keys an item is found by within the window: the signature's LSH bands
-- (`t<band>:<hash>`) and its sender's identities (`s:<SHA-256 of the
-- normalised e-mail, phone, e-adrese or name>`, never the identity itself).
CREATE TABLE duplicate_keys (
    lookup      TEXT NOT NULL,
    item_id     TEXT NOT NULL REFERENCES items (id),
    received_at TEXT NOT NULL,
    PRIMARY KEY (lookup, item_id)
);
CREATE INDEX duplicate_keys_lookup_received ON duplicate_keys (lookup, received_at);

-- Two items that may be the same letter, once per pair (item_a < item_b):
-- the estimated similarity of their texts in percent and why they were
-- linked ('text', 'sender', 'sender_text').
CREATE TABLE duplicate_links (
    item_a     TEXT NOT NULL REFERENCES items (id),
    item_b     TEXT NOT NULL REFERENCES items (id),
    percent    BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    found_at   TEXT NOT NULL,
    PRIMARY KEY (item_a, item_b)
);
CREATE INDEX duplicate_links_b ON duplicate_links (item_b);
