-- The one rule set in force for every daemon (src/active_rules.rs): a
-- pointer to a version in ruleset_versions, with who activated it, when
-- and why. One row (id = 1); the history of activations is ruleset_changes.
CREATE TABLE ruleset_active (
    id            INTEGER PRIMARY KEY,
    version       TEXT NOT NULL,
    activated_at  TEXT NOT NULL,
    activated_by  TEXT NOT NULL,
    reason        TEXT NOT NULL
);
