-- Every rule set that registered an item, stored once per version: an
-- item's routing can be explained later by the very rules that routed it,
-- and the rules editor has its history.
CREATE TABLE ruleset_versions (
    version      TEXT PRIMARY KEY,
    sources_json TEXT NOT NULL,
    first_used   TEXT NOT NULL
);
