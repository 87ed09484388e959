//! `joint_models`: the joint model registry's rows. What a claim means and
//! when it agrees with a row is the registry's business (`joint::registry`);
//! here are the reads and writes, with `registered_at` read as
//! `YYYY-MM-DD HH:MM:SS` UTC on both backends.

use super::sql::{fetch_all, fetch_optional, tx_execute, tx_fetch_one, Arg};
use super::{Backend, Db, Tx};
use crate::error::Result;

/// A column that a backfill determines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    FeatureSpace,
    StabModelId,
    ScenarioModelId,
    ProfileModelId,
    WStab,
    WScen,
    WProf,
}

impl Column {
    /// The column's name in `joint_models`.
    pub fn name(self) -> &'static str {
        match self {
            Column::FeatureSpace => "feature_space",
            Column::StabModelId => "stab_model_id",
            Column::ScenarioModelId => "scenario_model_id",
            Column::ProfileModelId => "profile_model_id",
            Column::WStab => "w_stab",
            Column::WScen => "w_scen",
            Column::WProf => "w_prof",
        }
    }
}

/// A value written into a [`Column`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    /// Text, or NULL.
    Text(Option<&'a str>),
    Number(f64),
}

/// One row of `joint_models`.
#[derive(Clone, Debug, PartialEq)]
pub struct JointModelRow {
    pub joint_model_id: String,
    pub kind: String,
    pub feature_space: Option<String>,
    pub stab_model_id: Option<String>,
    pub scenario_model_id: Option<String>,
    pub profile_model_id: Option<String>,
    pub w_stab: Option<f64>,
    pub w_scen: Option<f64>,
    pub w_prof: Option<f64>,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub registered_at: String,
}

type Cols = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    String,
);

impl From<Cols> for JointModelRow {
    fn from(r: Cols) -> Self {
        JointModelRow {
            joint_model_id: r.0,
            kind: r.1,
            feature_space: r.2,
            stab_model_id: r.3,
            scenario_model_id: r.4,
            profile_model_id: r.5,
            w_stab: r.6,
            w_scen: r.7,
            w_prof: r.8,
            registered_at: r.9,
        }
    }
}

/// The columns of a row; `registered_at` as `YYYY-MM-DD HH:MM:SS` UTC on both backends.
fn columns(backend: Backend) -> String {
    let at = match backend {
        Backend::Postgres => "to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
        Backend::Sqlite => "CAST(registered_at AS TEXT)",
    };
    format!(
        "joint_model_id, kind, feature_space, stab_model_id, scenario_model_id, profile_model_id, \
         w_stab, w_scen, w_prof, {at}"
    )
}

/// Every registered joint model, by id.
pub async fn joint_models(db: &Db) -> Result<Vec<JointModelRow>> {
    let sql = format!(
        "SELECT {} FROM joint_models ORDER BY joint_model_id",
        columns(db.backend())
    );
    let rows: Vec<Cols> = fetch_all(db, &sql, &[]).await?;
    Ok(rows.into_iter().map(JointModelRow::from).collect())
}

/// The registered joint model `id`, if any.
pub async fn find(db: &Db, id: &str) -> Result<Option<JointModelRow>> {
    let sql = format!(
        "SELECT {} FROM joint_models WHERE joint_model_id = $1",
        columns(db.backend())
    );
    let row: Option<Cols> = fetch_optional(db, &sql, &[Arg::Text(id)]).await?;
    Ok(row.map(JointModelRow::from))
}

/// `cells` as binds, after `leading`.
fn binds<'a>(leading: &[Arg<'a>], cells: &[(Column, Cell<'a>)]) -> Vec<Arg<'a>> {
    let mut args = leading.to_vec();
    args.extend(cells.iter().map(|(_, c)| match *c {
        Cell::Number(n) => Arg::Float(n),
        Cell::Text(t) => Arg::OptText(t),
    }));
    args
}

/// Insert `id` of `kind` with `cells` unless it is registered already;
/// whether it was inserted. A concurrent insert of the same id waits on the
/// key instead of failing on it, and on SQLite this takes the write lock.
pub async fn insert_if_absent(
    tx: &mut Tx,
    id: &str,
    kind: &str,
    cells: &[(Column, Cell<'_>)],
) -> Result<bool, sqlx::Error> {
    let cols: Vec<&str> = cells.iter().map(|(c, _)| c.name()).collect();
    let sql = format!(
        "INSERT INTO joint_models (joint_model_id, kind, {}) VALUES ($1, $2, {}) \
         ON CONFLICT (joint_model_id) DO NOTHING",
        cols.join(", "),
        (3..3 + cells.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let inserted = tx_execute(tx, &sql, &binds(&[Arg::Text(id), Arg::Text(kind)], cells)).await?;
    Ok(inserted == 1)
}

/// The row of `id`, locked (PostgreSQL) so that no other transaction changes
/// it until this one ends.
pub async fn lock(tx: &mut Tx, id: &str) -> Result<JointModelRow, sqlx::Error> {
    let lock = match tx.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT {} FROM joint_models WHERE joint_model_id = $1{lock}",
        columns(tx.backend())
    );
    let row: Cols = tx_fetch_one(tx, &sql, &[Arg::Text(id)]).await?;
    Ok(row.into())
}

/// Set `columns` of `id` to NULL.
pub async fn clear(tx: &mut Tx, id: &str, columns: &[Column]) -> Result<u64, sqlx::Error> {
    let clear: Vec<String> = columns.iter().map(|c| format!("{} = NULL", c.name())).collect();
    let sql = format!(
        "UPDATE joint_models SET {} WHERE joint_model_id = $1",
        clear.join(", ")
    );
    tx_execute(tx, &sql, &[Arg::Text(id)]).await
}

/// Set `cells` of `id` and its `updated_at`.
pub async fn update(tx: &mut Tx, id: &str, cells: &[(Column, Cell<'_>)]) -> Result<u64, sqlx::Error> {
    let assigns: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{} = ${}", c.name(), i + 2))
        .collect();
    let sql = format!(
        "UPDATE joint_models SET {}, updated_at = CURRENT_TIMESTAMP WHERE joint_model_id = $1",
        assigns.join(", ")
    );
    tx_execute(tx, &sql, &binds(&[Arg::Text(id)], cells)).await
}
