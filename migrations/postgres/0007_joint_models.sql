-- Joint models as named, recorded spaces (src/joint/registry.rs). A backfill
-- under a new joint_model_id registers it; a later backfill under the same id
-- must combine the same branches in the same feature space (or pass
-- --replace). NULL means "not known yet": a state backfill records the state
-- and profile branches and their weights, a scenario projection the scenario
-- branch; profile_model_id 'none' records states without a profile branch.
-- Joint models that already have vectors are registered from them, with what
-- the vectors tell (their feature space, when it is one).

CREATE TABLE IF NOT EXISTS joint_models (
    joint_model_id    TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    feature_space     TEXT,
    stab_model_id     TEXT,
    scenario_model_id TEXT,
    profile_model_id  TEXT,
    w_stab            DOUBLE PRECISION,
    w_scen            DOUBLE PRECISION,
    w_prof            DOUBLE PRECISION,
    registered_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO joint_models (joint_model_id, kind, feature_space)
SELECT model_id, 'identity-weighted-average',
       CASE WHEN COUNT(DISTINCT feature_space) = 1 THEN MIN(feature_space) END
  FROM joint_embeddings
 WHERE joint_type = 'STAB_FRAGILITY_V0'
 GROUP BY model_id
ON CONFLICT (joint_model_id) DO NOTHING;
