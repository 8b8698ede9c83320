-- A door's claim on an idempotency key (a form's page token, an API
-- client's Idempotency-Key), written before the message is published and
-- kept with the SHA-256 of the submission's content: the same key with the
-- same content is the earlier submission (its item, or its tracking id while
-- it is still on its way), the same key with other content is refused, never
-- answered with the earlier item while the new content is dropped.
CREATE TABLE door_claims (
    idempotency_key TEXT PRIMARY KEY,
    content_sha256  TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    claimed_at      TEXT NOT NULL
);
