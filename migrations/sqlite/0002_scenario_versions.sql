-- A change counter per (joint model, scenario set) of the STAB scenario
-- vectors in joint_embeddings, kept by triggers so that any writer (ours or
-- another tool's) is seen. An index partition records the counter (with the
-- row count) it was built from; a different value means the partition is stale.

CREATE TABLE IF NOT EXISTS joint_scenario_versions (
    model_id TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    version  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (model_id, scope_id)
);

CREATE TRIGGER IF NOT EXISTS joint_scenarios_inserted AFTER INSERT ON joint_embeddings
WHEN NEW.joint_type = 'STAB_FRAGILITY_V0' AND NEW.entity_type = 'SCENARIO'
BEGIN
    INSERT OR IGNORE INTO joint_scenario_versions (model_id, scope_id, version) VALUES (NEW.model_id, NEW.scope_id, 0);
    UPDATE joint_scenario_versions SET version = version + 1 WHERE model_id = NEW.model_id AND scope_id = NEW.scope_id;
END;

CREATE TRIGGER IF NOT EXISTS joint_scenarios_updated AFTER UPDATE ON joint_embeddings
WHEN (NEW.joint_type = 'STAB_FRAGILITY_V0' AND NEW.entity_type = 'SCENARIO')
  OR (OLD.joint_type = 'STAB_FRAGILITY_V0' AND OLD.entity_type = 'SCENARIO')
BEGIN
    INSERT OR IGNORE INTO joint_scenario_versions (model_id, scope_id, version) VALUES (NEW.model_id, NEW.scope_id, 0);
    INSERT OR IGNORE INTO joint_scenario_versions (model_id, scope_id, version) VALUES (OLD.model_id, OLD.scope_id, 0);
    UPDATE joint_scenario_versions SET version = version + 1
     WHERE (model_id = NEW.model_id AND scope_id = NEW.scope_id) OR (model_id = OLD.model_id AND scope_id = OLD.scope_id);
END;

CREATE TRIGGER IF NOT EXISTS joint_scenarios_deleted AFTER DELETE ON joint_embeddings
WHEN OLD.joint_type = 'STAB_FRAGILITY_V0' AND OLD.entity_type = 'SCENARIO'
BEGIN
    INSERT OR IGNORE INTO joint_scenario_versions (model_id, scope_id, version) VALUES (OLD.model_id, OLD.scope_id, 0);
    UPDATE joint_scenario_versions SET version = version + 1 WHERE model_id = OLD.model_id AND scope_id = OLD.scope_id;
END;
