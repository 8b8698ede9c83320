-- Deadlines (issue 8): what an item's deadlines are computed from besides
-- the calendar, the recorded deadline actions, and who routed it when.
-- Dates are ISO text (YYYY-MM-DD); times RFC 3339 UTC text, as in 0001.

ALTER TABLE items ADD COLUMN forward_due TEXT;
-- A rule's or service's own reply term (working days); NULL = the law's.
ALTER TABLE items ADD COLUMN reply_working_days BIGINT;
ALTER TABLE items ADD COLUMN paused_working_days BIGINT NOT NULL DEFAULT 0;
ALTER TABLE items ADD COLUMN paused_since TEXT;
ALTER TABLE items ADD COLUMN extended_until TEXT;
ALTER TABLE items ADD COLUMN extension_reason TEXT;
-- 'rules' when a rule routed it at registration, else the officer's name.
ALTER TABLE items ADD COLUMN routed_by TEXT;
ALTER TABLE items ADD COLUMN routed_at TEXT;
ALTER TABLE items ADD COLUMN closed_at TEXT;
ALTER TABLE items ADD COLUMN reply_reference TEXT;
-- Bumped by every recorded action: an action applies only to the revision
-- it read, so two people acting on one item at once get a conflict.
ALTER TABLE items ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

UPDATE items SET routed_by = 'rules', routed_at = registered_at
    WHERE state IN ('routed', 'forwarding');
UPDATE items SET forward_due = reply_due, reply_due = NULL WHERE state = 'forwarding';

CREATE INDEX items_open_due ON items (closed_at, unit_id, reply_due);
CREATE INDEX items_received ON items (received_at);

-- One digest per unit per day, whichever daemon instance sends it.
CREATE TABLE digests_sent (
    day     TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    items   BIGINT NOT NULL,
    PRIMARY KEY (day, unit_id)
);
