//! `joint_embeddings`: the joint space's instrument states, scenarios and
//! issuer profiles, read for both backends; and the hints' "what exists".
//!
//! Every read binds its arguments, fetches tuples and maps them to the row
//! structs below through the helpers of [`super::sql`].

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::sql::{
    date_agg, distinct, fetch_all, fetch_one, placeholders, sql_limit, tx_execute, Arg, IN_CHUNK,
};
use super::{Db, Tx};
use crate::error::Result;

/// `joint_type` of stability/fragility states and scenarios.
pub const STAB_JOINT_TYPE: &str = "STAB_FRAGILITY_V0";
/// `joint_type` of issuer profile embeddings.
pub const PROFILE_JOINT_TYPE: &str = "PROFILE_CORE_V0";

/// The columns [`JointVector`] is read from, in order.
type VectorCols = (String, NaiveDate, Vec<u8>, Option<String>);

/// A stored joint vector.
#[derive(Clone, Debug)]
pub struct JointVector {
    pub entity_id: String,
    pub as_of_date: NaiveDate,
    pub vector: Vec<u8>,
    /// The recorded feature space (`None`: not recorded).
    pub feature_space: Option<String>,
}

impl From<VectorCols> for JointVector {
    fn from((entity_id, as_of_date, vector, feature_space): VectorCols) -> Self {
        JointVector {
            entity_id,
            as_of_date,
            vector,
            feature_space,
        }
    }
}

/// `leading` binds, then one text bind per id.
fn with_ids<'a>(leading: &[Arg<'a>], ids: &'a [String]) -> Vec<Arg<'a>> {
    let mut args = leading.to_vec();
    args.extend(ids.iter().map(|id| Arg::Text(id)));
    args
}

/// For each of `ids`, its latest joint vector (`joint_type`, `model`,
/// `entity_type`, scope '') on or before `as_of`. Ids without one are absent.
///
/// Two steps, each an index seek per id whatever the history length: first
/// every id's latest date (a backwards seek on the primary key), then the
/// vectors of the ids sharing a date in one query (one query in all when the
/// states were backfilled on common dates).
pub async fn latest_joint(
    db: &Db,
    joint_type: &str,
    model: &str,
    entity_type: &str,
    ids: &[String],
    as_of: NaiveDate,
) -> Result<HashMap<String, JointVector>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let values: Vec<String> = (5..5 + chunk.len()).map(|i| format!("(${i})")).collect();
        let sql = format!(
            "SELECT v.column1, (SELECT max(k.as_of_date) FROM joint_embeddings k \
                 WHERE k.joint_type = $1 AND k.model_id = $2 AND k.entity_type = $3 AND k.scope_id = '' \
                   AND k.entity_id = v.column1 AND k.as_of_date <= $4) \
             FROM (VALUES {}) AS v",
            values.join(", ")
        );
        let leading = [
            Arg::Text(joint_type),
            Arg::Text(model),
            Arg::Text(entity_type),
            Arg::Date(as_of),
        ];
        let latest: Vec<(String, Option<NaiveDate>)> =
            fetch_all(db, &sql, &with_ids(&leading, chunk)).await?;
        let mut by_date: BTreeMap<NaiveDate, Vec<String>> = Default::default();
        for (id, date) in latest {
            if let Some(d) = date {
                by_date.entry(d).or_default().push(id);
            }
        }
        for (date, group) in by_date {
            let sql = format!(
                "SELECT entity_id, as_of_date, vector, feature_space FROM joint_embeddings \
                 WHERE joint_type = $1 AND model_id = $2 AND entity_type = $3 AND scope_id = '' \
                   AND as_of_date = $4 AND entity_id IN ({})",
                placeholders(5, group.len())
            );
            let leading = [
                Arg::Text(joint_type),
                Arg::Text(model),
                Arg::Text(entity_type),
                Arg::Date(date),
            ];
            let rows: Vec<VectorCols> = fetch_all(db, &sql, &with_ids(&leading, &group)).await?;
            for v in rows.into_iter().map(JointVector::from) {
                out.insert(v.entity_id.clone(), v);
            }
        }
    }
    Ok(out)
}

/// Joint vectors of `ids` with `from < as_of_date <= to`, by entity then date.
pub async fn joint_between(
    db: &Db,
    joint_type: &str,
    model: &str,
    entity_type: &str,
    ids: &[String],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<JointVector>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT entity_id, as_of_date, vector, feature_space FROM joint_embeddings \
             WHERE joint_type = $1 AND model_id = $2 AND entity_type = $3 AND scope_id = '' \
               AND as_of_date > $4 AND as_of_date <= $5 AND entity_id IN ({}) \
             ORDER BY entity_id, as_of_date",
            placeholders(6, chunk.len())
        );
        let leading = [
            Arg::Text(joint_type),
            Arg::Text(model),
            Arg::Text(entity_type),
            Arg::Date(from),
            Arg::Date(to),
        ];
        let rows: Vec<VectorCols> = fetch_all(db, &sql, &with_ids(&leading, chunk)).await?;
        out.extend(rows.into_iter().map(JointVector::from));
    }
    Ok(out)
}

/// A joint state row as the show command lists it.
#[derive(Clone, Debug)]
pub struct StateRow {
    pub as_of_date: NaiveDate,
    pub instrument_id: String,
    pub issuer_id: Option<String>,
    pub region: Option<String>,
    pub vector: Vec<u8>,
    /// The recorded feature space (`None`: not recorded).
    pub feature_space: Option<String>,
}

/// Instrument states of a joint model in `[from, to]`, by date then instrument.
pub async fn joint_states(
    db: &Db,
    model: &str,
    from: NaiveDate,
    to: NaiveDate,
    instrument: Option<&str>,
    region: Option<&str>,
    limit: Option<u64>,
) -> Result<Vec<StateRow>> {
    let sql = "SELECT as_of_date, entity_id, issuer_id, region, vector, feature_space FROM joint_embeddings \
               WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'INSTRUMENT' AND scope_id = '' \
                 AND as_of_date >= $3 AND as_of_date <= $4 \
                 AND ($5 IS NULL OR entity_id = $5) AND ($6 IS NULL OR region = $6) \
               ORDER BY as_of_date, entity_id LIMIT $7";
    type Cols = (
        NaiveDate,
        String,
        Option<String>,
        Option<String>,
        Vec<u8>,
        Option<String>,
    );
    let rows: Vec<Cols> = fetch_all(
        db,
        sql,
        &[
            Arg::Text(STAB_JOINT_TYPE),
            Arg::Text(model),
            Arg::Date(from),
            Arg::Date(to),
            Arg::OptText(instrument),
            Arg::OptText(region),
            Arg::Int(sql_limit(limit)),
        ],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(as_of_date, instrument_id, issuer_id, region, vector, feature_space)| StateRow {
                as_of_date,
                instrument_id,
                issuer_id,
                region,
                vector,
                feature_space,
            },
        )
        .collect())
}

/// A scenario's vector with its date (as stored with the vector).
#[derive(Clone, Debug)]
pub struct ScenarioVector {
    pub scenario_id: String,
    pub as_of: NaiveDate,
    pub vector: Vec<u8>,
    /// The recorded feature space (`None`: not recorded).
    pub feature_space: Option<String>,
    /// The date the scenario is known from, stored with the vector (`None`:
    /// written before point-in-time search; a backfill stores it).
    pub known_from: Option<NaiveDate>,
    /// The scenario's `scenarios` row: shock type and severity.
    pub shock_type: Option<String>,
    pub severity: Option<String>,
}

pub(super) type ScenarioCols = (
    String,
    NaiveDate,
    Vec<u8>,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
);

impl From<ScenarioCols> for ScenarioVector {
    fn from(
        (scenario_id, as_of, vector, feature_space, known_from, shock_type, severity): ScenarioCols,
    ) -> Self {
        ScenarioVector {
            scenario_id,
            as_of,
            vector,
            feature_space,
            known_from,
            shock_type,
            severity,
        }
    }
}

/// The columns of a [`ScenarioVector`]: the vector's row `j` with its
/// `scenarios` row `s` joined.
const SCENARIO_COLS: &str = "SELECT j.entity_id, j.as_of_date, j.vector, j.feature_space, j.known_from, \
                             s.shock_type, s.severity FROM joint_embeddings j \
                             LEFT JOIN scenarios s ON s.scenario_set_id = j.scope_id AND s.scenario_id = j.entity_id";

/// One page of the joint scenario vectors of a set: scenario ids after
/// `after`, in order, at most `page` of them.
pub async fn joint_scenarios_page(
    db: &Db,
    model: &str,
    set: &str,
    after: Option<&str>,
    page: u64,
) -> Result<Vec<ScenarioVector>> {
    let sql = format!(
        "{SCENARIO_COLS} \
         WHERE j.joint_type = $1 AND j.model_id = $2 AND j.entity_type = 'SCENARIO' AND j.scope_id = $3 \
           AND ($4 IS NULL OR j.entity_id > $4) \
         ORDER BY j.entity_id LIMIT $5"
    );
    let args = [
        Arg::Text(STAB_JOINT_TYPE),
        Arg::Text(model),
        Arg::Text(set),
        Arg::OptText(after),
        Arg::Int(sql_limit(Some(page))),
    ];
    let rows: Vec<ScenarioCols> = fetch_all(db, &sql, &args).await?;
    Ok(rows.into_iter().map(ScenarioVector::from).collect())
}

/// The (scenario id, scenario date) of every STAB scenario vector of (model,
/// set), without the vectors: an index-only read of the primary key, to find
/// the rows a partition lacks.
pub async fn joint_scenario_keys(db: &Db, model: &str, set: &str) -> Result<Vec<(String, NaiveDate)>> {
    let sql = "SELECT entity_id, as_of_date FROM joint_embeddings \
               WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO' AND scope_id = $3";
    fetch_all(
        db,
        sql,
        &[Arg::Text(STAB_JOINT_TYPE), Arg::Text(model), Arg::Text(set)],
    )
    .await
}

/// The STAB scenario vectors of (model, set) with the given scenario ids, in
/// id order (an id stored at two dates gives two rows).
pub async fn joint_scenarios_by_ids(
    db: &Db,
    model: &str,
    set: &str,
    ids: &[String],
) -> Result<Vec<ScenarioVector>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "{SCENARIO_COLS} \
             WHERE j.joint_type = $1 AND j.model_id = $2 AND j.entity_type = 'SCENARIO' AND j.scope_id = $3 \
               AND j.entity_id IN ({}) ORDER BY j.entity_id, j.as_of_date",
            placeholders(4, chunk.len())
        );
        let leading = [Arg::Text(STAB_JOINT_TYPE), Arg::Text(model), Arg::Text(set)];
        let rows: Vec<ScenarioCols> = fetch_all(db, &sql, &with_ids(&leading, chunk)).await?;
        out.extend(rows.into_iter().map(ScenarioVector::from));
    }
    Ok(out)
}

/// The recorded feature spaces of a set's STAB scenario vectors under `model`,
/// with their row counts (`None`: not recorded).
pub async fn scenario_spaces(db: &Db, model: &str, set: &str) -> Result<Vec<(Option<String>, i64)>> {
    let sql = "SELECT feature_space, COUNT(*) FROM joint_embeddings \
               WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO' AND scope_id = $3 \
               GROUP BY feature_space";
    fetch_all(
        db,
        sql,
        &[Arg::Text(STAB_JOINT_TYPE), Arg::Text(model), Arg::Text(set)],
    )
    .await
}

/// The joint models with STAB scenario vectors of `set`, with their feature
/// space when all their vectors of the set record the same one.
pub async fn scenario_models_of_set(db: &Db, set: &str) -> Result<Vec<(String, Option<String>)>> {
    let sql = "SELECT model_id, CASE WHEN COUNT(DISTINCT feature_space) = 1 THEN MIN(feature_space) END \
               FROM joint_embeddings \
               WHERE joint_type = $1 AND entity_type = 'SCENARIO' AND scope_id = $2 \
               GROUP BY model_id ORDER BY model_id";
    fetch_all(db, sql, &[Arg::Text(STAB_JOINT_TYPE), Arg::Text(set)]).await
}

/// The sets with STAB scenario vectors under `model` (at most 50, for hints).
pub async fn scenario_sets_of_model(db: &Db, model: &str) -> Result<Vec<String>> {
    distinct(
        db,
        "scope_id",
        "joint_embeddings",
        "joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO'",
        &[Arg::Text(STAB_JOINT_TYPE), Arg::Text(model)],
    )
    .await
}

/// The joint models with STAB scenario vectors (at most 50, for hints).
pub async fn scenario_models(db: &Db) -> Result<Vec<String>> {
    distinct(
        db,
        "model_id",
        "joint_embeddings",
        "joint_type = $1 AND entity_type = 'SCENARIO'",
        &[Arg::Text(STAB_JOINT_TYPE)],
    )
    .await
}

/// The joint models with STAB instrument states (at most 50, for hints).
pub async fn state_models(db: &Db) -> Result<Vec<String>> {
    distinct(
        db,
        "model_id",
        "joint_embeddings",
        "joint_type = $1 AND entity_type = 'INSTRUMENT'",
        &[Arg::Text(STAB_JOINT_TYPE)],
    )
    .await
}

/// The latest date with STAB instrument states of `model`.
pub async fn latest_state_date(db: &Db, model: &str) -> Result<Option<NaiveDate>> {
    date_agg(
        db,
        "SELECT max(as_of_date) FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2 \
         AND entity_type = 'INSTRUMENT'",
        &[Arg::Text(STAB_JOINT_TYPE), Arg::Text(model)],
    )
    .await
}

/// The dates of an instrument's STAB states of `model` nearest to `as_of`:
/// the latest before it and the earliest after it.
pub async fn state_dates_around(
    db: &Db,
    model: &str,
    instrument: &str,
    as_of: NaiveDate,
) -> Result<(Option<NaiveDate>, Option<NaiveDate>)> {
    let sql = "SELECT max(CASE WHEN as_of_date < $4 THEN as_of_date END), \
                      min(CASE WHEN as_of_date > $4 THEN as_of_date END) \
               FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2 \
               AND entity_type = 'INSTRUMENT' AND scope_id = '' AND entity_id = $3";
    let args = [
        Arg::Text(STAB_JOINT_TYPE),
        Arg::Text(model),
        Arg::Text(instrument),
        Arg::Date(as_of),
    ];
    fetch_one(db, sql, &args).await
}

/// The earliest date with issuer profiles of `model`.
pub async fn earliest_profile_date(db: &Db, model: &str) -> Result<Option<NaiveDate>> {
    date_agg(
        db,
        "SELECT min(as_of_date) FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2",
        &[Arg::Text(PROFILE_JOINT_TYPE), Arg::Text(model)],
    )
    .await
}

/// How many STAB vectors (states and scenarios) `model` has.
pub async fn count_stab_vectors(db: &Db, model: &str) -> Result<i64> {
    let sql = "SELECT COUNT(*) FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2";
    let (n,): (i64,) = fetch_one(db, sql, &[Arg::Text(STAB_JOINT_TYPE), Arg::Text(model)]).await?;
    Ok(n)
}

/// Delete every STAB vector of `entity_type` stored under `model`, inside the
/// transaction; the rows deleted.
pub async fn delete_stab_vectors(tx: &mut Tx, model: &str, entity_type: &str) -> Result<u64, sqlx::Error> {
    let sql = "DELETE FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2 AND entity_type = $3";
    tx_execute(
        tx,
        sql,
        &[
            Arg::Text(STAB_JOINT_TYPE),
            Arg::Text(model),
            Arg::Text(entity_type),
        ],
    )
    .await
}

/// The most recent STAB instrument states of `model` on or before `until`
/// (every date when `None`), newest first, at most `limit`: (instrument,
/// date, vector). A backwards walk of `joint_embeddings_date_idx`.
pub async fn recent_states(
    db: &Db,
    model: &str,
    until: Option<NaiveDate>,
    limit: u64,
) -> Result<Vec<(String, NaiveDate, Vec<u8>)>> {
    let sql = "SELECT entity_id, as_of_date, vector FROM joint_embeddings \
               WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'INSTRUMENT' AND scope_id = '' \
                 AND as_of_date <= $3 \
               ORDER BY as_of_date DESC, entity_id LIMIT $4";
    fetch_all(
        db,
        sql,
        &[
            Arg::Text(STAB_JOINT_TYPE),
            Arg::Text(model),
            Arg::Date(until.unwrap_or(NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date"))),
            Arg::Int(sql_limit(Some(limit))),
        ],
    )
    .await
}
