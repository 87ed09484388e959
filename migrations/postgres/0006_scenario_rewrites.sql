-- A second change counter per (joint model, scenario set) of the STAB
-- scenario vectors, beside version (0002): rewrites, bumped only when such a
-- row is updated or deleted, never when one is inserted. The bulk upsert
-- updates only rows whose values differ, so re-writing identical vectors bumps
-- neither counter. An index partition records both; a version that moved while
-- rewrites did not means the set only gained rows since the partition was
-- built. Counters that exist already start at 0 rewrites. Kept by the same
-- statement-level triggers (one update per statement, not per row), so that
-- any writer, ours or another tool's, is seen.

ALTER TABLE joint_scenario_versions ADD COLUMN IF NOT EXISTS rewrites BIGINT NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION stabspace_bump_scenario_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO joint_scenario_versions (model_id, scope_id, version, rewrites)
        SELECT model_id, scope_id, count(*), CASE WHEN TG_OP = 'UPDATE' THEN count(*) ELSE 0 END
          FROM new_rows
         WHERE joint_type = 'STAB_FRAGILITY_V0' AND entity_type = 'SCENARIO'
         GROUP BY model_id, scope_id
        ON CONFLICT (model_id, scope_id)
        DO UPDATE SET version = joint_scenario_versions.version + excluded.version,
                      rewrites = joint_scenario_versions.rewrites + excluded.rewrites;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO joint_scenario_versions (model_id, scope_id, version, rewrites)
        SELECT model_id, scope_id, count(*), count(*) FROM old_rows
         WHERE joint_type = 'STAB_FRAGILITY_V0' AND entity_type = 'SCENARIO'
         GROUP BY model_id, scope_id
        ON CONFLICT (model_id, scope_id)
        DO UPDATE SET version = joint_scenario_versions.version + excluded.version,
                      rewrites = joint_scenario_versions.rewrites + excluded.rewrites;
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
