-- The janitor runs as named work of the leased-work primitive
-- (`work_leases`, src/registry/lease.rs), one daemon at a time.
-- What the janitor prunes by age.
CREATE INDEX bus_messages_queue_created ON bus_messages (queue, created_at);
CREATE INDEX door_claims_claimed ON door_claims (claimed_at);
-- Who last asked for a parked item to be retried (a records officer on the
-- desk): written on the item's audit log once it is registered.
ALTER TABLE parked ADD COLUMN retried_by TEXT;
