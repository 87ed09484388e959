//! `serve --recall-sample FRACTION`: recall watched on live queries.
//!
//! A sampled query (each query of a request is picked with probability
//! FRACTION; the search route, and the workflow routes' searches of a
//! partition) is handed, once its answer is computed, to a bounded queue;
//! one background thread re-runs it as an exact scan of the same rows with
//! the same filter ([`ExactCheck`]) and counts the recall@k of what was
//! served, tie-aware. Nothing of this is on the request path: a full queue
//! drops the sample (counted), and the thread spends at most
//! [`CHECK_BUDGET`] of one core. Answers that were exact already (a flat
//! partition, `exact`, a scan) are not checked, only counted: a recall of 1
//! by construction would hide a graph that misses. A stale partition's
//! `index+delta` answer is checked against the exact top-k of the partition
//! and its delta together.
//!
//! Per partition: the recall of its last [`WINDOW`] checked queries, their
//! mean (the gauge `stabspace_observed_recall`, `GET /v1/partitions`'
//! `observed_recall`) and each one (the histogram `stabspace_query_recall`).
//! The target is the recall the sampled queries asked for (`recall`, default
//! 0.95); a query that gave `ef` asked for no recall: it moves the gauge but
//! never the warning. With [`MIN_SAMPLES`] queries that asked for a recall in
//! the window, a mean significantly below their mean target (by more than
//! twice its standard error) is warned about once, on stderr and in
//! `recall_warning`, until the mean is back at the target (said once too).
//! The windows are recorded in `partition_recall_observations` every
//! [`RECORD_EVERY`] while new samples arrive, and at shutdown, for `index status`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use super::metrics::{PartitionLabels, RecallMetrics};
use crate::nearest::{ExactCheck, FilteredHits, ScenarioHit, ScenarioSpace};
use crate::pointintime::ScenarioFilter;
use crate::storage::recall::RecallObservation;
use crate::storage::Db;

/// Checked queries per partition whose mean is the observed recall: enough
/// for a mean known to about ±0.01 (a query's recall@10 spreads by about
/// 0.07 around 0.95), few enough to follow a partition swapped or degraded
/// within minutes at 1% of a few hundred queries per second.
pub const WINDOW: usize = 200;

/// Queries that asked for a recall, in a window, before its mean is compared
/// with their target: one query's recall@10 moves in steps of 0.1, and over
/// fewer than 50 the mean is too noisy (±0.03 at two standard errors) to say
/// a partition misses its target rather than a few queries were hard.
pub const MIN_SAMPLES: usize = 50;

/// Samples waiting for their check, at most; more are dropped and counted.
const QUEUE: usize = 1024;

/// The share of one core the checks may take: the thread rests
/// `t · (1/CHECK_BUDGET − 1)` after each round of checks that took `t`. An
/// exact scan costs 5–50 graph searches (more on large partitions), so at
/// `--recall-sample 0.01` the checks could take half the server's CPU at
/// full load without a budget; with it they take at most 3% of one core
/// (1.5% of a busy 2-core server; 1.2% of its CPU time measured at 100,000
/// rows by `benches/recall_sample.sh`), and samples past it wait in the
/// queue, then are dropped.
pub const CHECK_BUDGET: f64 = 0.03;

/// How often the windows that gained samples are recorded in the database.
pub const RECORD_EVERY: Duration = Duration::from_secs(60);

/// One sampled query, waiting for its check.
struct Sample {
    check: ExactCheck,
    query: Vec<f32>,
    k: usize,
    filter: Option<ScenarioFilter>,
    /// The cosines served, best first.
    served: Vec<f64>,
}

/// One partition's recent checked queries.
#[derive(Default)]
struct Window {
    /// (recall, the recall asked for), oldest first.
    recent: VecDeque<(f64, Option<f64>)>,
    /// When the last one was checked.
    last: Option<DateTime<Utc>>,
    /// Whether a warning is standing.
    warned: bool,
    /// Samples since the window was last recorded.
    unrecorded: bool,
}

impl Window {
    fn push(&mut self, recall: f64, target: Option<f64>) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((recall, target));
        self.last = Some(Utc::now());
        self.unrecorded = true;
    }

    fn mean(&self) -> Option<f64> {
        let n = self.recent.len();
        (n > 0).then(|| self.recent.iter().map(|r| r.0).sum::<f64>() / n as f64)
    }

    /// The queries that asked for a recall: (how many, mean recall, mean
    /// target, standard error of the mean shortfall).
    fn targeted(&self) -> Option<(usize, f64, f64, f64)> {
        let gaps: Vec<(f64, f64)> = self
            .recent
            .iter()
            .filter_map(|&(r, t)| t.map(|t| (r, t)))
            .collect();
        let n = gaps.len();
        if n == 0 {
            return None;
        }
        let mean_r = gaps.iter().map(|g| g.0).sum::<f64>() / n as f64;
        // Targets are short decimals (0.95): rounded, their mean shows as one.
        let mean_t = (gaps.iter().map(|g| g.1).sum::<f64>() / n as f64 * 1e9).round() / 1e9;
        let mean_gap = mean_r - mean_t;
        let var = gaps.iter().map(|g| (g.0 - g.1 - mean_gap).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        Some((n, mean_r, mean_t, (var / n as f64).sqrt()))
    }

    fn target(&self) -> Option<f64> {
        self.targeted().map(|t| t.2)
    }

    /// Whether the warning stands after this window: raised when the
    /// targeted mean is below the target by more than two standard errors,
    /// lowered once it is back at the target, kept in between.
    fn judge(&self) -> bool {
        match self.targeted() {
            Some((n, r, t, se)) if n >= MIN_SAMPLES => {
                if r + 2.0 * se < t {
                    true
                } else if r >= t {
                    false
                } else {
                    self.warned
                }
            }
            _ => self.warned,
        }
    }

    fn warning(&self) -> Option<String> {
        let (n, r, t, _) = self.targeted()?;
        self.warned.then(|| {
            format!(
                "observed recall {r:.3} over the last {n} sampled queries that asked for a recall is below \
                 their target {t:.3}: rebuild the partition, or ask a higher recall or ef"
            )
        })
    }
}

/// A partition's live figures, for `GET /v1/partitions`.
pub struct Live {
    pub observed_recall: f64,
    pub samples: usize,
    pub target: Option<f64>,
    pub warning: Option<String>,
}

type Windows = BTreeMap<(String, String), Window>;

/// What the checking thread and the handlers share.
struct Shared {
    windows: Mutex<Windows>,
    metrics: RecallMetrics,
}

fn lock(m: &Mutex<Windows>) -> MutexGuard<'_, Windows> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn observe(&self, model: &str, set: &str, recall: f64, target: Option<f64>) {
        let labels = PartitionLabels {
            joint_model: model.to_string(),
            scenario_set: set.to_string(),
        };
        let mut windows = lock(&self.windows);
        let w = windows.entry((model.to_string(), set.to_string())).or_default();
        w.push(recall, target);
        let warn = w.judge();
        if warn != w.warned {
            w.warned = warn;
            match w.warning() {
                Some(why) => eprintln!("warning: recall: {model} / {set}: {why}"),
                None => eprintln!(
                    "recall: {model} / {set}: observed recall {:.3} is back at its target {:.3}",
                    w.targeted().map_or(recall, |t| t.1),
                    w.target().unwrap_or_default()
                ),
            }
        }
        self.metrics.per_query.get_or_create(&labels).observe(recall);
        self.metrics.checked.get_or_create(&labels).inc();
        if let Some(m) = w.mean() {
            self.metrics.observed.get_or_create(&labels).set(m);
        }
    }
}

/// Picks queries, queues them, and holds what their checks found.
pub struct Sampler {
    fraction: f64,
    queue: Option<SyncSender<Sample>>,
    shared: Arc<Shared>,
    /// A splitmix64 counter: which queries are picked.
    draws: AtomicU64,
    /// Where the windows are recorded (`None`: nowhere).
    record_to: Option<Db>,
    /// Whether a failed record was said (once).
    record_failed: AtomicBool,
}

/// The picked queries of one answer, with what checking them needs.
pub struct Picked {
    check: ExactCheck,
    k: usize,
    /// (the query's place in the request, its vector, its filter).
    queries: Vec<(usize, Vec<f32>, Option<ScenarioFilter>)>,
}

impl Sampler {
    /// Check a `fraction` of queries (0: none, and no thread is started),
    /// recording the windows in `record_to`.
    pub fn new(fraction: f64, metrics: RecallMetrics, record_to: Option<Db>) -> Sampler {
        let shared = Arc::new(Shared {
            windows: Mutex::new(BTreeMap::new()),
            metrics,
        });
        let queue = (fraction > 0.0).then(|| {
            let (tx, rx) = sync_channel(QUEUE);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("recall-checks".into())
                .spawn(move || check_loop(rx, &shared))
                .map(|_| tx)
                .map_err(|e| eprintln!("warning: --recall-sample: cannot start the checking thread: {e}"))
                .ok()
        });
        Sampler {
            fraction,
            queue: queue.flatten(),
            shared,
            draws: AtomicU64::new(0x5EED_2700_0000_0001),
            record_to,
            record_failed: AtomicBool::new(false),
        }
    }

    /// Whether to check the next query.
    fn draw(&self) -> bool {
        if self.queue.is_none() {
            return false;
        }
        // splitmix64 of a shared counter: lock-free, and uniform enough to pick.
        let mut z = self
            .draws
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < self.fraction
    }

    /// Pick among the `queries` of one request to `space` (each with its
    /// filter, when filtered). `None`: none picked, or the answers are exact
    /// (counted, not checked).
    pub fn pick(
        &self,
        space: &ScenarioSpace,
        k: usize,
        queries: &[Vec<f32>],
        filters: Option<&[ScenarioFilter]>,
    ) -> Option<Picked> {
        let picked: Vec<usize> = (0..queries.len()).filter(|_| self.draw()).collect();
        if picked.is_empty() {
            return None;
        }
        let Some(check) = space.exact_check(k) else {
            self.shared.metrics.exact.inc_by(picked.len() as u64);
            return None;
        };
        let queries = picked
            .into_iter()
            .map(|i| (i, queries[i].clone(), filters.map(|f| f[i].clone())))
            .collect();
        Some(Picked { check, k, queries })
    }

    /// Queue the picked queries with the answers they were served.
    pub fn send(&self, picked: Picked, found: &[FilteredHits]) {
        for (i, query, filter) in picked.queries {
            let served = found.get(i).map_or_else(Vec::new, |f| cosines(&f.hits));
            self.queue_one(Sample {
                check: picked.check.clone(),
                query,
                k: picked.k,
                filter,
                served,
            });
        }
    }

    /// One query of a workflow route (`check`: `None` when its answer was
    /// exact), picked or not here.
    pub fn offer(
        &self,
        check: Option<&ExactCheck>,
        query: &[f32],
        k: usize,
        filter: Option<ScenarioFilter>,
        hits: &[ScenarioHit],
    ) {
        if !self.draw() {
            return;
        }
        match check {
            None => {
                self.shared.metrics.exact.inc();
            }
            Some(check) => self.queue_one(Sample {
                check: check.clone(),
                query: query.to_vec(),
                k,
                filter,
                served: cosines(hits),
            }),
        }
    }

    fn queue_one(&self, s: Sample) {
        let Some(q) = &self.queue else { return };
        match q.try_send(s) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.metrics.dropped.inc();
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Each partition's live figures, by (model, set).
    pub fn live(&self) -> BTreeMap<(String, String), Live> {
        lock(&self.shared.windows)
            .iter()
            .filter_map(|(key, w)| {
                Some((
                    key.clone(),
                    Live {
                        observed_recall: w.mean()?,
                        samples: w.recent.len(),
                        target: w.target(),
                        warning: w.warning(),
                    },
                ))
            })
            .collect()
    }

    /// The windows that gained samples since they were last taken, as rows
    /// of `partition_recall_observations`, marked as taken.
    fn take_observations(&self) -> Vec<RecallObservation> {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut windows = lock(&self.shared.windows);
        windows
            .iter_mut()
            .filter(|(_, w)| w.unrecorded)
            .filter_map(|((model, set), w)| {
                w.unrecorded = false;
                Some(RecallObservation {
                    model_id: model.clone(),
                    scenario_set_id: set.clone(),
                    observed_at: now.clone(),
                    source: "serve".into(),
                    samples: w.recent.len() as i64,
                    observed_recall: w.mean()?,
                    target_recall: w.target(),
                })
            })
            .collect()
    }

    /// Record the windows that gained samples since the last record. Best
    /// effort: a database that refuses (a read replica, a read-only file) is
    /// said once on stderr, the windows are offered again next time, and
    /// serving goes on.
    pub async fn record(&self) {
        let Some(db) = &self.record_to else { return };
        let rows = self.take_observations();
        if rows.is_empty() {
            return;
        }
        if let Err(e) = crate::storage::recall::record(db, &rows).await {
            self.untake(&rows);
            if !self.record_failed.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: --recall-sample: cannot record the observed recall in {}: {e}; serving on \
                     (GET /v1/partitions and /metrics still show it; said once)",
                    db.label()
                );
            }
        }
    }

    /// Put back observations that could not be recorded (taken again next time).
    fn untake(&self, rows: &[RecallObservation]) {
        let mut windows = lock(&self.shared.windows);
        for r in rows {
            if let Some(w) = windows.get_mut(&(r.model_id.clone(), r.scenario_set_id.clone())) {
                w.unrecorded = true;
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    pub fn fraction(&self) -> f64 {
        self.fraction
    }
}

/// Record the sampler's windows every [`RECORD_EVERY`] until `stopping`
/// (the shutdown records them once more when the requests in flight are done).
pub async fn record_every(app: Arc<super::App>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECORD_EVERY) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        app.recall.record().await;
    }
}

fn cosines(hits: &[ScenarioHit]) -> Vec<f64> {
    hits.iter().map(|h| h.cosine).collect()
}

/// Waiting samples checked together, at most: unfiltered queries of the same
/// rows and k share each pass of the exact scan (eight at a time through the
/// multi-query kernel), which costs a fraction of a pass each. Sixteen is one
/// block of the engine's batch scan: one thread, as the budget assumes.
const BATCH: usize = 16;

/// The checking thread: the samples waiting (up to [`BATCH`]), those of the
/// same rows scanned together, then a rest that keeps it within
/// [`CHECK_BUDGET`]; it ends when the sampler is gone.
fn check_loop(rx: Receiver<Sample>, shared: &Shared) {
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        let started = Instant::now();
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter().take(BATCH - 1));
        while !waiting.is_empty() {
            let head = waiting.swap_remove(0);
            let mut group = vec![head];
            if group[0].filter.as_ref().is_none_or(ScenarioFilter::is_empty) {
                let (same, rest): (Vec<Sample>, Vec<Sample>) = waiting.into_iter().partition(|s| {
                    s.k == group[0].k
                        && s.filter.as_ref().is_none_or(ScenarioFilter::is_empty)
                        && s.check.same_rows(&group[0].check)
                });
                group.extend(same);
                waiting = rest;
            }
            if let Err(e) = check(&group, shared) {
                if !failed {
                    failed = true;
                    eprintln!(
                        "warning: --recall-sample: the exact check of queries of {} / {} failed: {e} (said once)",
                        group[0].check.model_id(),
                        group[0].check.set_id()
                    );
                }
            }
        }
        let rest = started.elapsed().mul_f64(1.0 / CHECK_BUDGET - 1.0);
        std::thread::sleep(rest.min(Duration::from_secs(10)));
    }
}

/// Check `group`: one sample (with its filter), or unfiltered samples of the
/// same rows and k in one batch.
fn check(group: &[Sample], shared: &Shared) -> crate::error::Result<()> {
    let first = &group[0];
    let found = if let [s] = group {
        vec![s.check.recall(&s.query, s.k, s.filter.as_ref(), &s.served)?]
    } else {
        let queries: Vec<Vec<f32>> = group.iter().map(|s| s.query.clone()).collect();
        let served: Vec<Vec<f64>> = group.iter().map(|s| s.served.clone()).collect();
        first.check.recall_batch(&queries, first.k, None, &served)?
    };
    for (s, r) in group.iter().zip(found) {
        if let Some(r) = r {
            shared.observe(s.check.model_id(), s.check.set_id(), r, s.check.target);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(samples: &[(f64, Option<f64>)]) -> Window {
        let mut w = Window::default();
        for &(r, t) in samples {
            w.push(r, t);
            w.warned = w.judge();
        }
        w
    }

    #[test]
    fn a_window_warns_only_when_enough_targeted_queries_miss_clearly() {
        // Below the target, but too few queries to say.
        assert!(!window(&[(0.5, Some(0.95)); MIN_SAMPLES - 1]).warned);
        // Clearly below: warned, with what was asked and found.
        let low = window(&[(0.5, Some(0.95)); MIN_SAMPLES]);
        assert!(low.warned);
        assert!(low.warning().unwrap().contains("0.500"), "{:?}", low.warning());
        // Queries that gave ef asked for nothing: they move the mean, never the warning.
        let untargeted = window(&[(0.2, None); WINDOW]);
        assert!(!untargeted.warned && untargeted.target().is_none());
        assert!((untargeted.mean().unwrap() - 0.2).abs() < 1e-12);
        // On target on average with the usual spread: no warning.
        let noisy: Vec<_> = (0..WINDOW)
            .map(|i| (if i % 10 == 0 { 0.9 } else { 0.96 }, Some(0.95)))
            .collect();
        assert!(!window(&noisy).warned);
        // Back at the target: lowered; the window holds the last WINDOW only.
        let mut w = low;
        for _ in 0..WINDOW {
            w.push(1.0, Some(0.95));
            w.warned = w.judge();
        }
        assert!(!w.warned && w.warning().is_none());
        assert_eq!(w.recent.len(), WINDOW);
    }
}
