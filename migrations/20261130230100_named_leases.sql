-- Leased work beyond the queue tables (src/registry/lease.rs): work that is
-- not a row of its own is claimed under a name (one scan file, a channel's
-- SMS flush, the deadline recompute, a unit's daily digest, a mailbox), with
-- the same holder, database-clock expiry and fencing token as every queue.
CREATE TABLE work_leases (
    name         TEXT PRIMARY KEY,
    lease_holder TEXT,
    lease_until  TEXT,
    lease_token  BIGINT NOT NULL DEFAULT 0,
    -- What the last holder recorded (the deadline recompute: the rule-set
    -- version it was done for).
    state        TEXT,
    updated_at   TEXT
);

-- The embedded bus's deliveries are claims of the same primitive.
ALTER TABLE bus_messages ADD COLUMN lease_holder TEXT;
ALTER TABLE bus_messages ADD COLUMN lease_until TEXT;
ALTER TABLE bus_messages ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;

-- A held SMS group is sealed (the gateway id it is published under) before
-- it is published: a flush after a crash publishes exactly the sealed rows
-- again, and an SMS arriving later never joins a sealed group.
ALTER TABLE sms_pending ADD COLUMN sealed_as TEXT;
