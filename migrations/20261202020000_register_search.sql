-- The register on the desk (issue 19): every item's words for full-text
-- search, folded and stemmed by the same Rust function as the rules
-- (rules::text::index_text), written in the registering transaction.
-- The full-text index over it is the dialect's own and is created by the
-- registry after the migrations (registry::listing::prepare): a GIN index
-- on to_tsvector('simple', search_text) in PostgreSQL, an FTS5 table kept
-- in step by triggers in SQLite. Items registered before this table are
-- indexed at start-up, in batches.
CREATE TABLE item_search (
    item_id     TEXT PRIMARY KEY REFERENCES items (id),
    search_text TEXT NOT NULL
);
-- The register lists newest first.
CREATE INDEX items_registered ON items (registered_at, id);
