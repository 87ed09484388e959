//! The routes' request bodies, their checks and the handlers.
//!
//! Bodies are read as bytes and parsed here (not by an extractor) so that every
//! failure is the JSON error of [`ApiError`], naming the field: a type error
//! at `vectors[2][5]`, an unknown field, a missing one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::filters::{self, KnownBefore, Severity, ShockTypes};
use super::App;
use crate::config::parse_date;
use crate::diagnostics::{find_similar, portfolio_exposure};
use crate::nearest::breadth::{self, Breadth, Refused};
use crate::nearest::{AnsweredBy, FilteredHits, ScenarioHit, ScenarioSpace, SearchOpts};
use crate::portfolio::DEFAULT_MIN_COVERAGE;
use crate::report;

const JOINT_MODEL: &str = "joint-stab-fragility-v1";

/// The routes' patterns, as the metrics label them.
pub const SEARCH_ROUTE: &str = "/v1/partitions/{joint_model}/{scenario_set}/search";
pub const SIMILAR_ROUTE: &str = "/v1/similar-scenarios";
pub const EXPOSURE_ROUTE: &str = "/v1/portfolio-exposure";
/// Open to all, with or without `--api-key-file`: load balancers probe it.
pub const HEALTHZ_ROUTE: &str = "/healthz";

/// The widest single-vector graph search answered on an async worker.
const INLINE_MAX_EF: usize = 1024;

/// Parse a JSON body, naming the field at fault.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "request body above the server's limit (--max-body-mb)")
        } else {
            ApiError::new(status, r.body_text())
        }
    })?;
    // Structs would also take a JSON array (by position): only objects are requests.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::field(
            "body",
            "expected a JSON object, {\"field\": value, …}",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(&body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." { "body".to_string() } else { path };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else {
            inner.to_string()
        };
        ApiError::field(field, message)
    })?;
    // One JSON object and nothing after it but whitespace.
    de.end().map_err(|e| {
        ApiError::field(
            "body",
            format!("trailing bytes after the JSON object ({e}): send one object and nothing after it"),
        )
    })?;
    Ok(value)
}

/// A number that may be left out (for its default) but not given as `null`.
fn no_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(
            "null is not a number: give a number, or leave the field out for its default",
        )),
    }
}

/// An id, shown in a message: quoted, escaped, at most 64 characters of it.
fn shown(id: &str) -> String {
    let head: String = id.chars().take(64).collect();
    if head.len() < id.len() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

/// A joint model id: the registry's rule (it names a directory of partitions).
fn model_id(field: &str, id: &str) -> Result<(), ApiError> {
    crate::joint::check_model_id(id).map_err(|_| {
        ApiError::field(
            field,
            format!(
                "{} is not a joint model id: those are 1 to {} letters, digits, '.', '_' or '-', not starting \
                 with '.'",
                shown(id),
                crate::joint::MAX_ID_LEN
            ),
        )
    })
}

/// A scenario set, instrument or portfolio id: the import's id rule (1 to
/// `MAX_ID_BYTES` bytes, no control character).
fn id(field: &str, id: &str) -> Result<(), ApiError> {
    let max = crate::import::MAX_ID_BYTES;
    let problem = if id.is_empty() {
        "is empty".to_string()
    } else if id.len() > max {
        format!("is {} bytes long; ids are at most {max} bytes", id.len())
    } else if let Some(c) = id.chars().find(|c| c.is_control()) {
        format!("holds a control character (U+{:04X}); ids may not", u32::from(c))
    } else {
        return Ok(());
    };
    Err(ApiError::field(field, format!("{} {problem}", shown(id))))
}

/// A count of 1 up to the server's limit (the library's rule, [`breadth::positive`]).
fn positive(field: &'static str, v: i64, max: usize) -> Result<usize, ApiError> {
    breadth::positive(field, v, Some(max)).map_err(refused)
}

fn refused(r: Refused) -> ApiError {
    ApiError::field(r.field, r.message)
}

fn date(field: &str, s: &str) -> Result<NaiveDate, ApiError> {
    parse_date(s).map_err(|e| ApiError::field(field, e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    vector: Option<Vec<f32>>,
    vectors: Option<Vec<Vec<f32>>>,
    #[serde(default, deserialize_with = "no_null")]
    k: Option<i64>,
    #[serde(default, deserialize_with = "no_null")]
    ef: Option<i64>,
    #[serde(default, deserialize_with = "no_null")]
    recall: Option<f64>,
    #[serde(default)]
    exact: bool,
    /// Traverse on the f32 vectors instead of the int8 codes (the CLI's --no-quantized).
    #[serde(default)]
    no_quantized: bool,
    /// Only scenarios known strictly before this date (one, or one per vector).
    #[serde(default)]
    known_before: Option<KnownBefore>,
    #[serde(default)]
    shock_type: Option<ShockTypes>,
    #[serde(default)]
    min_severity: Option<Severity>,
}

#[derive(Serialize)]
struct HitOut<'a> {
    rank: usize,
    scenario_id: &'a str,
    cosine: f64,
    euclidean: f64,
    scenario_as_of: Option<NaiveDate>,
    known_from: Option<NaiveDate>,
}

#[derive(Serialize)]
struct HitsOut<'a> {
    hits: Vec<HitOut<'a>>,
    /// With a filter: how many scenarios it admitted (0: none was known before the date).
    #[serde(skip_serializing_if = "Option::is_none")]
    admitted: Option<usize>,
}

#[derive(Serialize)]
struct SearchOut<'a> {
    joint_model: &'a str,
    scenario_set: &'a str,
    /// The breadth the graph search used (at least k); None for an exact scan.
    ef: Option<usize>,
    /// How the answer was found: `index`, `index+delta` (the partition and an
    /// exact scan of the rows the database gained since it was built) or
    /// `exact-scan` (the set as the database holds it).
    answered_by: &'static str,
    /// Whether the partition file is behind the database.
    partition_stale: bool,
    /// Why the partition was not used (it could not be opened or fetched).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hits: Option<Vec<HitOut<'a>>>,
    /// With a filter and `vector`: how many scenarios it admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    admitted: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<HitsOut<'a>>>,
}

/// Check one query vector: its dimension, finite components, not all zeros.
fn check_vector(field: &str, v: &[f32], dim: usize) -> Result<(), ApiError> {
    if v.len() != dim {
        return Err(ApiError::field(
            field,
            format!("has {} components; the partition's vectors have {dim}", v.len()),
        ));
    }
    match crate::vector::unusable(v) {
        None => Ok(()),
        Some(crate::vector::Unusable::NonFinite { position, value }) => Err(ApiError::field(
            format!("{field}[{position}]"),
            format!("{value} is not a finite float32"),
        )),
        // The length was checked above: what is left is all zeros.
        Some(_) => Err(ApiError::field(
            field,
            "is all zeros: it has no direction, so no cosine",
        )),
    }
}

/// Hits of an unfiltered query, as a filtered answer (admitted is not reported).
fn unfiltered(hits: Vec<ScenarioHit>) -> FilteredHits {
    FilteredHits { hits, admitted: 0 }
}

fn hits_out(hits: &[ScenarioHit]) -> Vec<HitOut<'_>> {
    hits.iter()
        .enumerate()
        .map(|(i, h)| HitOut {
            rank: i + 1,
            scenario_id: &h.scenario_id,
            cosine: h.cosine,
            euclidean: h.euclidean,
            scenario_as_of: Some(h.scenario_as_of),
            known_from: h.known_from,
        })
        .collect()
}

/// `POST /v1/partitions/{joint_model}/{scenario_set}/search`.
pub async fn search(
    State(app): State<Arc<App>>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path((model, set)) = path.map_err(|r| ApiError::field("path", r.body_text()))?;
    model_id("joint_model", &model)?;
    id("scenario_set", &set)?;
    if app.hold {
        eprintln!("held at {}", crate::faults::SERVE_SEARCH_HELD);
        tokio::time::sleep(crate::faults::HOLD).await;
    }
    let req: SearchRequest = parse(body)?;
    let k = positive("k", req.k.unwrap_or(10), app.limits.max_k)?;
    let asked = Breadth::checked(req.ef, req.recall, req.exact, Some(app.limits.max_ef)).map_err(refused)?;
    let (queries, batch) = match (req.vector, req.vectors) {
        (Some(v), None) => (vec![v], false),
        (None, Some(vs)) => {
            if vs.is_empty() {
                return Err(ApiError::field("vectors", "is empty: give at least one vector"));
            }
            if vs.len() > app.limits.max_batch {
                return Err(ApiError::field(
                    "vectors",
                    format!(
                        "{} vectors is above the server's limit of {} per request",
                        vs.len(),
                        app.limits.max_batch
                    ),
                ));
            }
            (vs, true)
        }
        (Some(_), Some(_)) => return Err(ApiError::field("vector", "give `vector` or `vectors`, not both")),
        (None, None) => {
            return Err(ApiError::field(
                "vector",
                "missing: give `vector` (one query) or `vectors` (a batch)",
            ))
        }
    };
    // A partition that cannot be opened (a remote store down before this
    // node ever fetched it, a damaged file) is answered by an exact scan of
    // the database, as the query commands do, and the answer says why.
    let (opened, fallback) = match app.cache.prepare(&model, &set, !req.no_quantized) {
        Ok(Some(l)) => (Some(l), None),
        Ok(None) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no index partition for joint model {model:?}, scenario set {set:?} \
                     (GET /v1/partitions lists them)"
                ),
            ))
        }
        Err(e) => {
            let why = app
                .scrub
                .text(&format!("{e}; answered by an exact scan of the database instead"));
            eprintln!("warning: {model} / {set}: {why}");
            (None, Some(why))
        }
    };
    drop(opened);
    for (i, q) in queries.iter().enumerate() {
        let field = if batch {
            format!("vectors[{i}]")
        } else {
            "vector".to_string()
        };
        check_vector(&field, q, crate::vector::DIM)?;
    }
    let filters = filters::per_query(
        req.known_before,
        req.shock_type,
        req.min_severity,
        queries.len(),
        batch,
    )?;
    // The set as the database holds it now: the partition when it is
    // current, with the rows it lacks when the set only gained some, else the
    // database's vectors (always for `exact`).
    let exact = req.exact || fallback.is_some();
    let asked = if fallback.is_some() {
        Breadth {
            ef: None,
            recall: None,
            exact: true,
        }
    } else {
        asked
    };
    let mut opts = app.search_opts(asked, req.no_quantized);
    if let Some(f) = filters.as_ref().and_then(|f| f.first()) {
        // Marks the queries as filtered: a partition without per-row
        // attributes is then answered by an exact filtered scan.
        opts.filter.filter = f.clone();
    }
    let space = if exact {
        off_worker(ScenarioSpace::open(&app.db, &opts, &model, &set))?
    } else {
        ScenarioSpace::open(&app.db, &opts, &model, &set).await?
    };
    let answer = space.answer();
    app.metrics.count_answer(SEARCH_ROUTE, answer);
    let ef = space.breadth(k);
    // A graph search of one vector takes a fraction of a millisecond: it is
    // answered on this worker. Scans of a large partition or set, wide
    // breadths, delta scans and batches go to the blocking pool (a batch
    // spreads over the rayon threads), so that they never hold up the workers
    // that answer other requests.
    let inline = !batch
        && filters.is_none()
        && answer.by == AnsweredBy::Index
        && (space.len() <= stabspace_index::FLAT_THRESHOLD || ef.is_some_and(|e| e <= INLINE_MAX_EF));
    let filtered = filters.is_some();
    // Picked now, checked once answered, off the request path.
    let picked = app.recall.pick(&space, k, &queries, filters.as_deref());
    let found: Vec<FilteredHits> = if inline {
        vec![unfiltered(space.search(&queries[0], k)?)]
    } else {
        tokio::task::spawn_blocking(move || match (filters, batch) {
            (Some(f), _) => space.search_batch_filtered(&queries, &f, k),
            (None, true) => Ok(space
                .search_batch(&queries, k)?
                .into_iter()
                .map(unfiltered)
                .collect()),
            (None, false) => space.search(&queries[0], k).map(|h| vec![unfiltered(h)]),
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("search failed: {e}")))??
    };
    if let Some(p) = picked {
        app.recall.send(p, &found);
    }
    let mut out = SearchOut {
        joint_model: &model,
        scenario_set: &set,
        ef,
        answered_by: answer.by.label(),
        partition_stale: answer.partition_stale,
        note: fallback.as_deref(),
        hits: None,
        admitted: None,
        results: None,
    };
    let admitted = |f: &FilteredHits| filtered.then_some(f.admitted);
    if batch {
        out.results = Some(
            found
                .iter()
                .map(|f| HitsOut {
                    hits: hits_out(&f.hits),
                    admitted: admitted(f),
                })
                .collect(),
        );
    } else {
        out.hits = Some(hits_out(&found[0].hits));
        out.admitted = admitted(&found[0]);
    }
    Ok(json_response(&out))
}

fn json_response<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn default_model() -> String {
    JOINT_MODEL.to_string()
}

fn default_min_coverage() -> f64 {
    DEFAULT_MIN_COVERAGE
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarRequest {
    instrument_id: String,
    as_of: String,
    #[serde(default = "default_model")]
    model_id: String,
    scenario_set_id: String,
    #[serde(default, deserialize_with = "no_null")]
    top_k: Option<i64>,
    #[serde(default, deserialize_with = "no_null")]
    ef: Option<i64>,
    #[serde(default, deserialize_with = "no_null")]
    recall: Option<f64>,
    #[serde(default)]
    exact: bool,
    #[serde(default)]
    no_quantized: bool,
    /// Only scenarios known strictly before as_of.
    #[serde(default)]
    point_in_time: bool,
    #[serde(default)]
    known_before: Option<KnownBefore>,
    #[serde(default)]
    shock_type: Option<ShockTypes>,
    #[serde(default)]
    min_severity: Option<Severity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposureRequest {
    portfolio_id: String,
    as_of: String,
    scenario_set_id: String,
    #[serde(default = "default_model", alias = "joint_model_id")]
    stab_model_id: String,
    #[serde(default, deserialize_with = "no_null")]
    top_k: Option<i64>,
    #[serde(default, deserialize_with = "no_null")]
    ef: Option<i64>,
    #[serde(default, deserialize_with = "no_null")]
    recall: Option<f64>,
    #[serde(default)]
    exact: bool,
    #[serde(default)]
    no_quantized: bool,
    /// Only scenarios known strictly before as_of.
    #[serde(default)]
    point_in_time: bool,
    #[serde(default)]
    known_before: Option<KnownBefore>,
    #[serde(default)]
    shock_type: Option<ShockTypes>,
    #[serde(default)]
    min_severity: Option<Severity>,
    #[serde(default = "default_min_coverage")]
    min_coverage: f64,
}

impl App {
    /// The workflow routes' `top_k` (default 20) and search fields, checked, as the
    /// CLI's search options with partitions from the shared cache.
    fn workflow(
        &self,
        top_k: Option<i64>,
        ef: Option<i64>,
        recall: Option<f64>,
        exact: bool,
        no_quantized: bool,
    ) -> Result<(usize, SearchOpts), ApiError> {
        let k = positive("top_k", top_k.unwrap_or(20), self.limits.max_k)?;
        let asked = Breadth::checked(ef, recall, exact, Some(self.limits.max_ef)).map_err(refused)?;
        Ok((k, self.search_opts(asked, no_quantized)))
    }

    /// The CLI's search options, with partitions from the shared cache.
    fn search_opts(&self, asked: Breadth, no_quantized: bool) -> SearchOpts {
        SearchOpts {
            partitions: Some(Arc::clone(&self.cache)),
            ef: asked.ef,
            recall: asked.recall,
            exact: asked.exact,
            no_quantized,
            filter: Default::default(),
        }
    }
}

/// `POST /v1/similar-scenarios`: `find-similar-stab-scenarios`.
pub async fn similar(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: SimilarRequest = parse(body)?;
    id("instrument_id", &req.instrument_id)?;
    model_id("model_id", &req.model_id)?;
    id("scenario_set_id", &req.scenario_set_id)?;
    let as_of = date("as_of", &req.as_of)?;
    let (k, mut opts) = app.workflow(req.top_k, req.ef, req.recall, req.exact, req.no_quantized)?;
    opts.filter = filters::workflow(
        req.point_in_time,
        req.known_before,
        req.shock_type,
        req.min_severity,
    )?;
    // The workflow reads the database and searches (or, with exact, scans the
    // set's vectors from the database): this worker's other tasks move to
    // another worker meanwhile.
    let found = off_worker(find_similar(
        &app.db,
        &opts,
        &req.instrument_id,
        as_of,
        &req.model_id,
        &req.scenario_set_id,
        k,
    ))?;
    app.metrics.count_answer(SIMILAR_ROUTE, found.answer);
    let filter = (!opts.filter.is_empty()).then(|| opts.filter.at(as_of));
    app.recall
        .offer(found.check.as_ref(), &found.state, k, filter, &found.hits);
    let t = report::similar_scenarios(&req.scenario_set_id, &req.instrument_id, as_of, found);
    Ok(json_response(&json!({ "hits": t.json_rows() })))
}

/// `POST /v1/portfolio-exposure`: `show-portfolio-stab-scenario-exposure`.
pub async fn exposure(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ExposureRequest = parse(body)?;
    id("portfolio_id", &req.portfolio_id)?;
    id("scenario_set_id", &req.scenario_set_id)?;
    model_id("stab_model_id", &req.stab_model_id)?;
    let as_of = date("as_of", &req.as_of)?;
    let (k, mut opts) = app.workflow(req.top_k, req.ef, req.recall, req.exact, req.no_quantized)?;
    opts.filter = filters::workflow(
        req.point_in_time,
        req.known_before,
        req.shock_type,
        req.min_severity,
    )?;
    if !(0.0..=1.0).contains(&req.min_coverage) {
        return Err(ApiError::field(
            "min_coverage",
            format!("must be between 0 and 1, got {}", req.min_coverage),
        ));
    }
    let e = off_worker(portfolio_exposure(
        &app.db,
        &opts,
        &req.portfolio_id,
        as_of,
        &req.scenario_set_id,
        &req.stab_model_id,
        k,
        req.min_coverage,
    ))?;
    app.metrics.count_answer(EXPOSURE_ROUTE, e.answer);
    let filter = (!opts.filter.is_empty()).then(|| opts.filter.at(as_of));
    app.recall
        .offer(e.check.as_ref(), &e.vector.vector, k, filter, &e.hits);
    let t = report::portfolio_exposure(&req.scenario_set_id, &req.portfolio_id, e);
    Ok(json_response(&json!({ "hits": t.json_rows() })))
}

/// `GET /v1/partitions`: `index status`'s rows, each with `checksums`
/// (`pending` until its file version has been verified in the background,
/// then `ok` or `bad`; `null` without a readable file), in constant work per
/// partition ([`super::status`]), and the recall this server observes on
/// its sampled queries ([`super::recall`]: `observed_recall`,
/// `recall_samples`, `recall_target`, `recall_warning`; `null` before any).
pub async fn partitions(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    // Stats and opens files (constant work each): not on an async worker's time.
    let rows = off_worker(app.status.rows(&app.db))?;
    let mut statuses: Vec<_> = rows.iter().map(|r| r.status.clone()).collect();
    crate::partitions::with_observations(&app.db, &mut statuses).await?;
    let mut out: Vec<serde_json::Value> = report::partition_status(&statuses).json_rows();
    let live = app.recall.live();
    for ((o, r), s) in out.iter_mut().zip(&rows).zip(&statuses) {
        if let serde_json::Value::Object(m) = o {
            m.insert("checksums".into(), json!(r.checksums));
            let l = live.get(&(s.model_id.clone(), s.scenario_set_id.clone()));
            m.insert("observed_recall".into(), json!(l.map(|l| l.observed_recall)));
            m.insert("recall_samples".into(), json!(l.map_or(0, |l| l.samples)));
            m.insert("recall_target".into(), json!(l.and_then(|l| l.target)));
            m.insert("recall_warning".into(), json!(l.and_then(|l| l.warning.clone())));
        }
    }
    let mut body = json!({ "partitions": out });
    app.scrub.json(&mut body);
    Ok(json_response(&body))
}

/// `GET /healthz`.
pub async fn healthz(State(app): State<Arc<App>>) -> Response {
    json_response(&json!({ "status": "ok", "partitions_loaded": app.cache.len() }))
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.partitions_loaded.set(app.cache.len() as i64);
    app.metrics.observe_cache(app.cache.store().cache_stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// Any other path.
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; routes: GET /v1/partitions, POST /v1/partitions/{{joint_model}}/{{scenario_set}}/search, \
             POST /v1/similar-scenarios, POST /v1/portfolio-exposure, GET /healthz, GET /metrics",
            uri.path()
        ),
    )
}

pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

/// Run a future that does blocking work (checksums, scans) to completion on
/// this thread, with the runtime's other tasks moved to other workers.
fn off_worker<T>(f: impl std::future::Future<Output = crate::error::Result<T>>) -> crate::error::Result<T> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
