-- Recreate the change-counter triggers of 0002 without `INSERT OR IGNORE`:
-- inside a trigger fired by an upsert that updates a row, SQLite applies the
-- outer statement's conflict policy instead, so re-projecting a set with
-- changed vectors failed with "UNIQUE constraint failed:
-- joint_scenario_versions". The counter row is now created only when it is
-- missing, which cannot conflict.

DROP TRIGGER IF EXISTS joint_scenarios_inserted;
DROP TRIGGER IF EXISTS joint_scenarios_updated;
DROP TRIGGER IF EXISTS joint_scenarios_deleted;

CREATE TRIGGER joint_scenarios_inserted AFTER INSERT ON joint_embeddings
WHEN NEW.joint_type = 'STAB_FRAGILITY_V0' AND NEW.entity_type = 'SCENARIO'
BEGIN
    INSERT INTO joint_scenario_versions (model_id, scope_id, version)
    SELECT NEW.model_id, NEW.scope_id, 0
     WHERE NOT EXISTS (SELECT 1 FROM joint_scenario_versions
                        WHERE model_id = NEW.model_id AND scope_id = NEW.scope_id);
    UPDATE joint_scenario_versions SET version = version + 1
     WHERE model_id = NEW.model_id AND scope_id = NEW.scope_id;
END;

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
    UPDATE joint_scenario_versions SET version = version + 1
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
    UPDATE joint_scenario_versions SET version = version + 1
     WHERE model_id = OLD.model_id AND scope_id = OLD.scope_id;
END;
