-- A door's small keyed state (issue 18): positions, tokens and markers a
-- source keeps between runs, namespaced by its channel instance. Written
-- through `channels::DoorState` (get / put / compare-and-set); leases stay
-- on the named-work rows of the one lease primitive. The existing per-door
-- tables (mailbox_state, sms_pending, door_claims) are kept as they are:
-- the desk's channel overview and the janitor read them.
CREATE TABLE door_state (
    channel_instance TEXT NOT NULL,
    state_key TEXT NOT NULL,
    state_value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (channel_instance, state_key)
);
