-- Recall observed on live queries (#27): `serve --recall-sample` and
-- `backfill-portfolio-stab-scenario-metrics --recall-sample` re-run a sampled
-- share of their graph searches as exact scans of the same rows and record
-- here the mean recall@k of what they served: `serve` its recent window
-- every minute while samples arrive and at shutdown, the backfill once per
-- run. `index status` shows the latest row of each (model, set). Rows older
-- than 30 days are deleted as new ones are written.

CREATE TABLE IF NOT EXISTS partition_recall_observations (
    model_id          TEXT NOT NULL,
    scenario_set_id   TEXT NOT NULL,
    -- RFC 3339, UTC, to the microsecond: sorts as text.
    observed_at       TEXT NOT NULL,
    -- 'serve' or 'metrics-backfill'.
    source            TEXT NOT NULL,
    -- Sampled queries the mean is over.
    samples           BIGINT NOT NULL,
    observed_recall   REAL NOT NULL,
    -- The mean recall the sampled queries asked for (NULL: every one gave
    -- an explicit ef, so none asked for a recall).
    target_recall     REAL,
    PRIMARY KEY (model_id, scenario_set_id, observed_at, source)
);
