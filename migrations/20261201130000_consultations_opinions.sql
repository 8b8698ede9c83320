-- Consultations (issue 20): a visit or call that is not a submission,
-- logged at the desk with its topic (a service of the catalogue), the
-- channel and the minutes spent, and nothing about the person. unit_id is
-- the service's unit when it was logged, for one unit's report.
CREATE TABLE consultations (
    id          TEXT PRIMARY KEY,
    logged_at   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    service_id  TEXT NOT NULL,
    unit_id     TEXT,
    minutes     BIGINT NOT NULL CHECK (minutes BETWEEN 1 AND 600)
);
CREATE INDEX consultations_logged_at ON consultations (logged_at);

-- Client opinions: at most one per item, given on the citizen's status page
-- once the item is closed (a score 1-5 and an optional comment). Reports
-- count them per channel and unit; the export never names the item.
CREATE TABLE opinions (
    item_id   TEXT PRIMARY KEY REFERENCES items (id),
    score     BIGINT NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment   TEXT,
    given_at  TEXT NOT NULL
);
CREATE INDEX opinions_given_at ON opinions (given_at);
