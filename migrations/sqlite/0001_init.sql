-- stabspace schema, SQLite flavour (dates are ISO TEXT, JSON is TEXT). Every statement is additive
-- (CREATE ... IF NOT EXISTS): tables that other tools already created are
-- left as they are, never dropped or rewritten. The two large tables are
-- WITHOUT ROWID: stored in key order, so range scans read them sequentially.

CREATE TABLE IF NOT EXISTS markets (
    market_id TEXT PRIMARY KEY,
    region    TEXT
);

CREATE TABLE IF NOT EXISTS issuers (
    issuer_id TEXT PRIMARY KEY,
    name      TEXT
);

CREATE TABLE IF NOT EXISTS instruments (
    instrument_id TEXT PRIMARY KEY,
    issuer_id     TEXT,
    market_id     TEXT NOT NULL,
    region        TEXT,
    status        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instruments_market_idx ON instruments (market_id, status, instrument_id);

CREATE TABLE IF NOT EXISTS prices_daily (
    instrument_id TEXT NOT NULL,
    trade_date    TEXT NOT NULL,
    close         REAL NOT NULL,
    volume        REAL NOT NULL,
    PRIMARY KEY (instrument_id, trade_date)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS scenarios (
    scenario_set_id TEXT NOT NULL,
    scenario_id     TEXT NOT NULL,
    scenario_date   TEXT NOT NULL,
    shock_type      TEXT,
    severity        TEXT,
    PRIMARY KEY (scenario_set_id, scenario_id)
);

CREATE TABLE IF NOT EXISTS scenario_paths (
    scenario_set_id TEXT NOT NULL,
    scenario_id     TEXT NOT NULL,
    day_index       INTEGER NOT NULL,
    instrument_id   TEXT NOT NULL,
    return          REAL NOT NULL,
    PRIMARY KEY (scenario_set_id, scenario_id, day_index, instrument_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS numeric_window_embeddings (
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    scope_id     TEXT NOT NULL,
    as_of_date   TEXT NOT NULL,
    window_days  INTEGER NOT NULL,
    model_id     TEXT NOT NULL,
    vector       BLOB NOT NULL CHECK (length(vector) = 1536),
    window_start TEXT,
    window_end   TEXT,
    created_at   TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (model_id, entity_type, scope_id, entity_id, as_of_date)
);

-- One row per joint vector. entity_type/entity_id/scope_id denormalise the
-- entity_scope JSON so lookups are index scans and re-runs replace rows:
-- scope_id is the scenario set for SCENARIO rows and '' otherwise.
CREATE TABLE IF NOT EXISTS joint_embeddings (
    joint_type   TEXT NOT NULL,
    model_id     TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    scope_id     TEXT NOT NULL DEFAULT '',
    as_of_date   TEXT NOT NULL,
    issuer_id    TEXT,
    region       TEXT,
    entity_scope TEXT NOT NULL,
    vector       BLOB NOT NULL CHECK (length(vector) = 1536),
    created_at   TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (joint_type, model_id, entity_type, scope_id, entity_id, as_of_date)
);
CREATE INDEX IF NOT EXISTS joint_embeddings_date_idx ON joint_embeddings (joint_type, model_id, entity_type, as_of_date);

CREATE TABLE IF NOT EXISTS target_portfolios (
    portfolio_id     TEXT NOT NULL,
    as_of_date       TEXT NOT NULL,
    target_positions TEXT NOT NULL,
    PRIMARY KEY (portfolio_id, as_of_date)
);

CREATE TABLE IF NOT EXISTS portfolio_risk_reports (
    portfolio_id TEXT NOT NULL,
    as_of_date   TEXT NOT NULL,
    risk_metrics TEXT NOT NULL,
    PRIMARY KEY (portfolio_id, as_of_date)
);

CREATE TABLE IF NOT EXISTS backtest_runs (
    run_id       TEXT PRIMARY KEY,
    strategy_id  TEXT NOT NULL,
    start_date   TEXT NOT NULL,
    end_date     TEXT NOT NULL,
    config_json  TEXT NOT NULL,
    metrics_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backtest_runs_strategy_idx ON backtest_runs (strategy_id);

CREATE TABLE IF NOT EXISTS issuer_fundamentals (
    issuer_id    TEXT NOT NULL,
    as_of_date   TEXT NOT NULL,
    fundamentals TEXT NOT NULL,
    PRIMARY KEY (issuer_id, as_of_date)
);
