-- SMS held before registration: parts of a concatenated message waiting for
-- the rest (gateways that do not join them), and messages from one number
-- held for the joining window. Each row is written before the gateway gets
-- its 2xx; a group is published as one item, then marked published and kept
-- a week, so a gateway's late retry of any of its SMS is recognised.
CREATE TABLE sms_pending (
    channel_instance TEXT NOT NULL,
    gateway_id       TEXT NOT NULL,
    group_key        TEXT NOT NULL,
    from_address     TEXT NOT NULL,
    to_address       TEXT,
    text             TEXT NOT NULL,
    part_no          BIGINT NOT NULL,
    part_count       BIGINT NOT NULL,
    received_at      TEXT NOT NULL,
    published_at     TEXT,
    PRIMARY KEY (channel_instance, gateway_id)
);
CREATE INDEX sms_pending_group ON sms_pending (channel_instance, group_key);
