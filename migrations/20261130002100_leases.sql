-- Leased work (src/registry/lease.rs): a row of a queue table is claimed by
-- one daemon (`lease_holder`) until `lease_until` (the database's clock);
-- every claim raises `lease_token`, the fence its completion must name.
ALTER TABLE outbox ADD COLUMN lease_holder TEXT;
ALTER TABLE outbox ADD COLUMN lease_until TEXT;
ALTER TABLE outbox ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE replies ADD COLUMN lease_holder TEXT;
ALTER TABLE replies ADD COLUMN lease_until TEXT;
ALTER TABLE replies ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dms_registrations ADD COLUMN lease_holder TEXT;
ALTER TABLE dms_registrations ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
