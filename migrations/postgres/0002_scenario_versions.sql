-- A change counter per (joint model, scenario set) of the STAB scenario
-- vectors in joint_embeddings, kept by statement-level triggers (one update
-- per statement, not per row) so that any writer, ours or another tool's, is
-- seen. An index partition records the counter (with the row count) it was
-- built from; a different value means the partition is stale.

CREATE TABLE IF NOT EXISTS joint_scenario_versions (
    model_id TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    version  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (model_id, scope_id)
);

CREATE OR REPLACE FUNCTION stabspace_bump_scenario_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO joint_scenario_versions (model_id, scope_id, version)
        SELECT model_id, scope_id, count(*) FROM new_rows
         WHERE joint_type = 'STAB_FRAGILITY_V0' AND entity_type = 'SCENARIO'
         GROUP BY model_id, scope_id
        ON CONFLICT (model_id, scope_id)
        DO UPDATE SET version = joint_scenario_versions.version + excluded.version;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO joint_scenario_versions (model_id, scope_id, version)
        SELECT model_id, scope_id, count(*) FROM old_rows
         WHERE joint_type = 'STAB_FRAGILITY_V0' AND entity_type = 'SCENARIO'
         GROUP BY model_id, scope_id
        ON CONFLICT (model_id, scope_id)
        DO UPDATE SET version = joint_scenario_versions.version + excluded.version;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER joint_scenarios_inserted AFTER INSERT ON joint_embeddings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stabspace_bump_scenario_versions();
CREATE OR REPLACE TRIGGER joint_scenarios_updated AFTER UPDATE ON joint_embeddings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stabspace_bump_scenario_versions();
CREATE OR REPLACE TRIGGER joint_scenarios_deleted AFTER DELETE ON joint_embeddings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stabspace_bump_scenario_versions();
