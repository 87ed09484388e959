-- The identity of this database: a random id made once, at the first
-- migration, and never changed. Index partitions record the id of the
-- database they were built from (src/partitions.rs), so a partition built
-- from another database (a data directory shared between a SQLite file and a
-- PostgreSQL server, say) is never used to answer a query here. The demo
-- records here that it created the database's contents (key 'demo').

CREATE TABLE IF NOT EXISTS stabspace_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO stabspace_meta (key, value)
VALUES ('database_id', md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text))
ON CONFLICT (key) DO NOTHING;
