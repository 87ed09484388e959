//! `stabspace.connect`: the database and partitions the CLI uses, and the
//! query workflows a researcher calls in a loop, answered as the CLI's CSV
//! rows (a pandas DataFrame when pandas is installed).

use std::path::PathBuf;

use chrono::NaiveDate;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use stabspace::config::{
    parse_gigabytes, parse_partition_store, Config, CACHE_DIR_ENV, CACHE_MAX_GB_ENV, PARTITION_STORE_ENV,
};
use stabspace::diagnostics::{find_similar, portfolio_exposure};
use stabspace::output::{Cell, Table};
use std::sync::Arc;

use stabspace::nearest::breadth::Breadth;
use stabspace::nearest::{PartitionCache, SearchOpts};
use stabspace::portfolio::DEFAULT_MIN_COVERAGE;
use stabspace::report;
use stabspace::storage::{redact, Db};

use crate::arrays;
use crate::errors;
use crate::filters;

const JOINT_MODEL: &str = "joint-stab-fragility-v1";

/// Open the database the CLI would use: `database_url` (postgres://… or sqlite://…), else
/// the DATABASE_URL environment variable, else the embedded SQLite file
/// `<data_dir>/stabspace.db`; `data_dir` (else STABSPACE_DATA_DIR, else ./stabspace-data) also
/// holds the index partitions. Queries read `read_database_url` (else
/// STABSPACE_READ_DATABASE_URL), a read replica, when one is named: this only reads, so the
/// primary is then not opened at all. The partitions are read from `partition_store`
/// (`file://DIR` or `s3://BUCKET/PREFIX`, else STABSPACE_PARTITION_STORE, else
/// `<data_dir>/index`). From an s3:// store they are fetched into `cache_dir` (else
/// STABSPACE_CACHE_DIR, else `<data_dir>/cache`, at most `cache_max_gb` gigabytes, least
/// recently used evicted) and the manifest of versions is read again at most every
/// `refresh_secs` seconds. The database must exist.
#[pyfunction]
#[pyo3(signature = (database_url = None, data_dir = None, read_database_url = None, partition_store = None, *, cache_dir = None, cache_max_gb = None, refresh_secs = 10.0))]
#[allow(clippy::too_many_arguments, reason = "the CLI's global flags, one to one")]
pub fn connect(
    py: Python<'_>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    read_database_url: Option<String>,
    partition_store: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_max_gb: Option<f64>,
    refresh_secs: f64,
) -> PyResult<Connection> {
    let store = partition_store.or_else(|| std::env::var(PARTITION_STORE_ENV).ok());
    let store = store
        .map(|s| parse_partition_store(&s))
        .transpose()
        .map_err(|e| PyValueError::new_err(format!("partition_store: {e}")))?;
    let cache_dir = cache_dir.or_else(|| std::env::var_os(CACHE_DIR_ENV).map(PathBuf::from));
    let cache_max_gb = match cache_max_gb {
        Some(g) => Some(g),
        None => std::env::var(CACHE_MAX_GB_ENV)
            .ok()
            .map(|v| parse_gigabytes(&v))
            .transpose()
            .map_err(|e| PyValueError::new_err(format!("{CACHE_MAX_GB_ENV}: {e}")))?,
    };
    if cache_max_gb.is_some_and(|g| !(g > 0.0 && g.is_finite())) {
        return Err(PyValueError::new_err(
            "cache_max_gb must be a positive number of gigabytes",
        ));
    }
    if !(refresh_secs > 0.0 && refresh_secs.is_finite()) {
        return Err(PyValueError::new_err(
            "refresh_secs must be a positive number of seconds",
        ));
    }
    let config = Config::with_env_defaults(database_url, data_dir, read_database_url)
        .with_partition_store(store)
        .with_cache(cache_dir, cache_max_gb)
        .with_refresh(Some(std::time::Duration::from_secs_f64(refresh_secs)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| errors::DatabaseError::new_err(format!("cannot start the async runtime: {e}")))?;
    let db = py
        .detach(|| rt.block_on(config.open_db_read()))
        .map_err(errors::library)?;
    let partitions = config.partition_cache().map_err(errors::library)?;
    Ok(Connection {
        db,
        rt,
        config,
        partitions,
    })
}

/// An open database (and the partitions under its data directory). Its methods release the
/// GIL while they query; the connection may be shared between threads.
#[pyclass(frozen, module = "stabspace")]
pub struct Connection {
    // Fields drop in order: the pool before the runtime it runs on.
    db: Db,
    rt: tokio::runtime::Runtime,
    config: Config,
    /// Partitions opened once and shared by every call (reopened when a rebuild replaces the file).
    partitions: Arc<PartitionCache>,
}

#[pymethods]
impl Connection {
    fn __repr__(&self) -> String {
        format!(
            "stabspace.Connection({}, data_dir={:?})",
            redact(&self.config.read_url()),
            self.config.data_dir.display().to_string()
        )
    }

    /// The database queries read (password redacted): the read replica when one is named.
    #[getter]
    fn database(&self) -> String {
        redact(&self.config.read_url())
    }

    /// Where the index partitions are read from.
    #[getter]
    fn index_dir(&self) -> PathBuf {
        self.config.index_dir()
    }

    /// `find-similar-stab-scenarios`: the instrument's STAB state on `as_of` (its latest on or
    /// before it) and the `top_k` scenarios of the set nearest to it by cosine. Columns: rank,
    /// cosine, euclidean, scenario_set_id, scenario_id, scenario_as_of, instrument_id,
    /// as_of_date, answered_by, partition_stale, scenario_known_from. `ef`, `recall`, `exact`
    /// and `quantized=False` are the CLI's --ef, --recall, --exact and --no-quantized;
    /// `point_in_time=True` lists only scenarios known strictly before `as_of`, and
    /// `known_before` (a date), `shock_type` (a string or list) and `min_severity` (a number
    /// or LOW … EXTREME) filter as the CLI's flags do.
    #[pyo3(signature = (instrument_id, as_of, model_id = JOINT_MODEL.to_string(), scenario_set_id = None, top_k = 20, *, ef = None, recall = None, exact = false, quantized = true, point_in_time = false, known_before = None, shock_type = None, min_severity = None))]
    #[allow(clippy::too_many_arguments, reason = "the CLI's flags, one to one")]
    fn similar_scenarios<'py>(
        &self,
        py: Python<'py>,
        instrument_id: String,
        as_of: &Bound<'py, PyAny>,
        model_id: String,
        scenario_set_id: Option<String>,
        top_k: i64,
        ef: Option<i64>,
        recall: Option<f64>,
        exact: bool,
        quantized: bool,
        point_in_time: bool,
        known_before: Option<&Bound<'py, PyAny>>,
        shock_type: Option<&Bound<'py, PyAny>>,
        min_severity: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let as_of = date(as_of)?;
        let set = required(scenario_set_id)?;
        let k = arrays::positive("top_k", top_k)?;
        let search = SearchOpts {
            filter: filters::workflow(point_in_time, known_before, shock_type, min_severity)?,
            ..self.search_opts(ef, recall, exact, quantized)?
        };
        let found = py
            .detach(|| {
                self.rt.block_on(find_similar(
                    &self.db,
                    &search,
                    &instrument_id,
                    as_of,
                    &model_id,
                    &set,
                    k,
                ))
            })
            .map_err(errors::library)?;
        frame(py, report::similar_scenarios(&set, &instrument_id, as_of, found))
    }

    /// `show-portfolio-stab-scenario-exposure`: the portfolio's STAB vector on `as_of`
    /// (Σ wᵢ·zᵢ / Σ |wᵢ| over holdings with a state) and the `top_k` nearest scenarios.
    /// Columns: cosine, euclidean, scenario_set_id, scenario_id, scenario_as_of, portfolio_id,
    /// portfolio_ctx_norm, num_instruments_used, weight_covered. Below `min_coverage` of the
    /// absolute weight covered by states it raises ValueError, as the CLI fails.
    /// `point_in_time`, `known_before`, `shock_type` and `min_severity` filter the scenarios as
    /// in `similar_scenarios`.
    #[pyo3(signature = (portfolio_id, as_of, scenario_set_id, stab_model_id = JOINT_MODEL.to_string(), top_k = 20, *, ef = None, recall = None, exact = false, quantized = true, min_coverage = DEFAULT_MIN_COVERAGE, point_in_time = false, known_before = None, shock_type = None, min_severity = None))]
    #[allow(clippy::too_many_arguments, reason = "the CLI's flags, one to one")]
    fn portfolio_exposure<'py>(
        &self,
        py: Python<'py>,
        portfolio_id: String,
        as_of: &Bound<'py, PyAny>,
        scenario_set_id: String,
        stab_model_id: String,
        top_k: i64,
        ef: Option<i64>,
        recall: Option<f64>,
        exact: bool,
        quantized: bool,
        min_coverage: f64,
        point_in_time: bool,
        known_before: Option<&Bound<'py, PyAny>>,
        shock_type: Option<&Bound<'py, PyAny>>,
        min_severity: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let as_of = date(as_of)?;
        let k = arrays::positive("top_k", top_k)?;
        if !(0.0..=1.0).contains(&min_coverage) {
            return Err(PyValueError::new_err(format!(
                "min_coverage must be between 0 and 1, got {min_coverage}"
            )));
        }
        let search = SearchOpts {
            filter: filters::workflow(point_in_time, known_before, shock_type, min_severity)?,
            ..self.search_opts(ef, recall, exact, quantized)?
        };
        let e = py
            .detach(|| {
                self.rt.block_on(portfolio_exposure(
                    &self.db,
                    &search,
                    &portfolio_id,
                    as_of,
                    &scenario_set_id,
                    &stab_model_id,
                    k,
                    min_coverage,
                ))
            })
            .map_err(errors::library)?;
        frame(py, report::portfolio_exposure(&scenario_set_id, &portfolio_id, e))
    }
}

impl Connection {
    fn search_opts(
        &self,
        ef: Option<i64>,
        recall: Option<f64>,
        exact: bool,
        quantized: bool,
    ) -> PyResult<SearchOpts> {
        let asked = Breadth::checked(ef, recall, exact, None).map_err(arrays::refused)?;
        Ok(SearchOpts {
            partitions: Some(Arc::clone(&self.partitions)),
            ef: asked.ef,
            recall: asked.recall,
            exact: asked.exact,
            no_quantized: !quantized,
            filter: Default::default(),
        })
    }
}

fn required(set: Option<String>) -> PyResult<String> {
    set.ok_or_else(|| PyValueError::new_err("scenario_set_id is required: the scenario set to search"))
}

fn date(v: &Bound<'_, PyAny>) -> PyResult<NaiveDate> {
    filters::date(v, "as_of")
}

fn py_date(py: Python<'_>, d: NaiveDate) -> PyResult<Bound<'_, PyAny>> {
    use chrono::Datelike;
    py.import("datetime")?
        .getattr("date")?
        .call1((d.year(), d.month(), d.day()))
}

/// The command's table as a pandas DataFrame with its columns when pandas is installed, else
/// as a list of dicts (dates as `datetime.date`).
fn frame(py: Python<'_>, t: Table) -> PyResult<Bound<'_, PyAny>> {
    let rows = PyList::empty(py);
    for row in t.rows {
        let r = PyDict::new(py);
        for (column, cell) in t.columns.iter().zip(row) {
            match cell {
                Cell::Text(s) => r.set_item(column, s)?,
                Cell::Null => r.set_item(column, py.None())?,
                Cell::Date(d) => r.set_item(column, py_date(py, d)?)?,
                Cell::Int(i) => r.set_item(column, i)?,
                Cell::Float(x) => r.set_item(column, x)?,
                Cell::Bool(b) => r.set_item(column, b)?,
            }
        }
        rows.append(r)?;
    }
    match py.import("pandas") {
        Ok(pd) => {
            let kw = PyDict::new(py);
            kw.set_item("columns", t.columns.to_vec())?;
            pd.getattr("DataFrame")?.call((rows,), Some(&kw))
        }
        Err(_) => Ok(rows.into_any()),
    }
}
