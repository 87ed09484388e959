-- The manifest of partitions published to a remote partition store
-- (`--partition-store s3://…`, src/partitions/remote.rs). Each build or
-- append uploads its file under a content-addressed key and then inserts one
-- row here, generation = the previous generation + 1, in one transaction: the
-- database is the commit point. A reader sees the newest generation of a
-- (model, set) only once its object is whole in the store, and two builders
-- that started from the same generation cannot both commit (the primary key
-- refuses the second; its object is left for `index gc`). `index drop`
-- deletes a (model, set)'s rows; `index gc` deletes superseded rows and the
-- objects no row names, after a grace period.

CREATE TABLE IF NOT EXISTS partition_manifest (
    model_id          TEXT NOT NULL,
    scenario_set_id   TEXT NOT NULL,
    generation        BIGINT NOT NULL,
    object_key        TEXT NOT NULL,
    size_bytes        BIGINT NOT NULL,
    sha256            TEXT NOT NULL,
    database_id       TEXT NOT NULL,
    scenario_version  BIGINT NOT NULL,
    scenario_rewrites BIGINT NOT NULL,
    row_count         BIGINT NOT NULL,
    format_version    BIGINT NOT NULL,
    built_at          TEXT NOT NULL,
    published_at      TEXT NOT NULL,
    -- What the file records (provenance, format, sections) as JSON: `index
    -- status` and the freshness checks read it instead of fetching the file.
    summary           TEXT NOT NULL,
    PRIMARY KEY (model_id, scenario_set_id, generation)
);

CREATE INDEX IF NOT EXISTS partition_manifest_key ON partition_manifest (object_key);
