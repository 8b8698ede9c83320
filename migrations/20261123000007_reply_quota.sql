-- Answers taken against the daily limit per address (phone number or
-- e-mail), per calendar day in Riga. Taken with one conditional upsert before
-- sending, so two daemons can never together exceed the limit; given back
-- when nothing was sent.
CREATE TABLE reply_quota (
    address TEXT NOT NULL,
    day     TEXT NOT NULL,
    taken   BIGINT NOT NULL,
    PRIMARY KEY (address, day)
);
