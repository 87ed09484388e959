-- A second change counter per (joint model, scenario set) of the STAB
-- scenario vectors, beside version (0002, 0004): rewrites, bumped only when
-- such a row is updated or deleted, never when one is inserted. The bulk
-- upsert updates only rows whose values differ, so re-writing identical
-- vectors bumps neither counter. An index partition records both; a version
-- that moved while rewrites did not means the set only gained rows since the
-- partition was built. Counters that exist already start at 0 rewrites. The
-- update and delete triggers of 0004 are recreated to bump both; the insert
-- trigger stays as it is.

ALTER TABLE joint_scenario_versions ADD COLUMN rewrites INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER IF EXISTS joint_scenarios_updated;
DROP TRIGGER IF EXISTS joint_scenarios_deleted;

CREATE TRIGGER joint_scenarios_updated AFTER UPDATE ON joint_embeddings
WHEN (NEW.joint_type = 'STAB_FRAGILITY_V0' AND NEW.entity_type = 'SCENARIO')
  OR (OLD.joint_type = 'STAB_FRAGILITY_V0' AND OLD.entity_type = 'SCENARIO')
BEGIN
    INSERT INTO joint_scenario_versions (model_id, scope_id, version)
    SELECT NEW.model_id, NEW.scope_id, 0
     WHERE NOT EXISTS (SELECT 1 FROM joint_scenario_versions
                        WHERE model_id = NEW.model_id AND scope_id = NEW.scope_id);
    INSERT INTO joint_scenario_versions (model_id, scope_id, version)
    SELECT OLD.model_id, OLD.scope_id, 0
     WHERE NOT EXISTS (SELECT 1 FROM joint_scenario_versions
                        WHERE model_id = OLD.model_id AND scope_id = OLD.scope_id);
    UPDATE joint_scenario_versions SET version = version + 1, rewrites = rewrites + 1
     WHERE (model_id = NEW.model_id AND scope_id = NEW.scope_id)
        OR (model_id = OLD.model_id AND scope_id = OLD.scope_id);
END;

CREATE TRIGGER joint_scenarios_deleted AFTER DELETE ON joint_embeddings
WHEN OLD.joint_type = 'STAB_FRAGILITY_V0' AND OLD.entity_type = 'SCENARIO'
BEGIN
    INSERT INTO joint_scenario_versions (model_id, scope_id, version)
    SELECT OLD.model_id, OLD.scope_id, 0
     WHERE NOT EXISTS (SELECT 1 FROM joint_scenario_versions
                        WHERE model_id = OLD.model_id AND scope_id = OLD.scope_id);
    UPDATE joint_scenario_versions SET version = version + 1, rewrites = rewrites + 1
     WHERE model_id = OLD.model_id AND scope_id = OLD.scope_id;
END;
