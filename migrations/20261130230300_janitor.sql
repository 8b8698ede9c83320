-- Periodic jobs that one daemon at a time runs (the janitor's pruning):
-- one row per job, claimed through the leased-work primitive
-- (src/registry/lease.rs) when `next_run_at` (the database's clock) has
-- come, and moved on by whoever ran it.
CREATE TABLE periodic_jobs (
    name         TEXT PRIMARY KEY,
    next_run_at  TEXT NOT NULL,
    last_run_at  TEXT,
    last_result  TEXT,
    lease_holder TEXT,
    lease_until  TEXT,
    lease_token  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO periodic_jobs (name, next_run_at) VALUES ('janitor', '1970-01-01T00:00:00.000000Z');
-- What the janitor prunes by age.
CREATE INDEX bus_messages_queue_created ON bus_messages (queue, created_at);
CREATE INDEX door_claims_claimed ON door_claims (claimed_at);
-- Who last asked for a parked item to be retried (a records officer on the
-- desk): written on the item's audit log once it is registered.
ALTER TABLE parked ADD COLUMN retried_by TEXT;
