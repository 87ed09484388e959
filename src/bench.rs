//! `stabspace bench`: recall and latency of the index against the exact scan,
//! per search breadth, on a partition or on raw vector files, in the columns
//! of `shared/bench/peer_ann.py` so the two outputs can be concatenated.

use std::path::{Path, PathBuf};
use std::time::Instant;

use stabspace_index::sweep::{measure, measure_filtered, truth, truth_filtered, SweepRow, Truth};
use stabspace_index::vecfile::read_matrix;
use stabspace_index::{BuildParams, Partition, PartitionBuilder, Quantization, RowAttrs, RowFilter};

use crate::error::{Error, Result};

/// One measured setting.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    pub engine: String,
    pub n: usize,
    pub dim: usize,
    pub k: usize,
    pub m: usize,
    pub efc: usize,
    /// As asked, 0 for the exact scan (as peer_ann.py writes it).
    pub ef: usize,
    /// Recall, QPS on one and all threads, latency percentiles.
    pub measured: SweepRow,
    pub build_s: f64,
    pub threads: usize,
    pub open_us: f64,
    pub bytes_per_vector: f64,
    /// Percent of the base rows the query's filter admits (`None`: no filter).
    pub selectivity: Option<usize>,
}

/// The base to search: an existing partition file, or vectors to build one from.
pub enum Base {
    Partition(PathBuf),
    Vectors { dim: usize, rows: Vec<Vec<f32>> },
}

pub struct BenchSpec {
    pub base: Base,
    pub queries: Vec<Vec<f32>>,
    pub k: usize,
    pub efs: Vec<usize>,
    pub params: BuildParams,
    /// Where a partition built from vectors is written (a scratch path).
    pub scratch: PathBuf,
    /// After the full build, also build the base without its last
    /// `appends × append_rows` rows and append those in `appends` steps
    /// (vector files only), measuring each append and the result's recall.
    pub appends: usize,
    pub append_rows: usize,
    /// Filtered search (vector files only): every base row gets a key
    /// ([`bench_keys`]) and each selectivity is measured with the filter
    /// `key_below` [`key_cut`], against the exact filtered answer.
    pub filter: Option<KeySpec>,
    /// Queries to calibrate a partition built from vectors on, besides its
    /// held-out rows (`--calibration-queries`).
    pub calibration_queries: Vec<Vec<f32>>,
}

/// Keys for a filtered benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySpec {
    /// Percent of the rows each measured filter admits.
    pub selectivities: Vec<usize>,
    /// The keys, one per base row ([`bench_keys`]).
    pub keys: Vec<i32>,
}

/// First day of the benchmark keys: 2005-01-01, in days since 1970-01-01.
pub const KEY_FIRST_DAY: i32 = 12_784;
/// Days the keys range over (20 years).
pub const KEY_DAYS: i32 = 7_305;
/// Seed of the benchmark keys.
pub const KEY_SEED: u64 = 20_261_207;

/// One key per row, a day as stabspace stores a scenario's known-from date:
/// uniformly random over [`KEY_DAYS`] days from [`KEY_FIRST_DAY`] (row i:
/// splitmix64 of `KEY_SEED + i`, modulo the days), or, `correlated`, the
/// same keys sorted so that they increase with row order (rows in time order).
pub fn bench_keys(n: usize, correlated: bool) -> Vec<i32> {
    let mut keys: Vec<i32> = (0..n as u64)
        .map(|i| KEY_FIRST_DAY + (splitmix64(KEY_SEED.wrapping_add(i)) % KEY_DAYS as u64) as i32)
        .collect();
    if correlated {
        keys.sort_unstable();
    }
    keys
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The smallest bound admitting at least `pct` % of `keys` with `key < bound`:
/// one more than the ⌈n·pct/100⌉-th smallest key (at least the first).
pub fn key_cut(keys: &[i32], pct: usize) -> i32 {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let want = (sorted.len() * pct).div_ceil(100).clamp(1, sorted.len().max(1));
    sorted.get(want - 1).map_or(i32::MIN, |&k| k + 1)
}

/// What the appends did.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendReport {
    pub steps: usize,
    pub rows_per_step: usize,
    pub first_rows: usize,
    /// Seconds of each append (read, insert, calibrate, write).
    pub seconds: Vec<f64>,
    /// Seconds of the full build of every row, for the ratio.
    pub full_build_s: f64,
}

impl std::fmt::Display for AppendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mean = self.seconds.iter().sum::<f64>() / self.seconds.len().max(1) as f64;
        write!(
            f,
            "appends: {} × {} rows onto {} in {:.2} s each on average ({:.1}% of the full build, {:.1} s); \
             each: {}",
            self.steps,
            self.rows_per_step,
            self.first_rows,
            mean,
            100.0 * mean / self.full_build_s.max(1e-9),
            self.full_build_s,
            self.seconds
                .iter()
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Read a vector file (`.npy`, `.fvecs`, raw `.f32` with `dim`) as rows.
pub fn read_vectors(path: &Path, dim: Option<usize>) -> Result<(usize, Vec<Vec<f32>>)> {
    let m = read_matrix(path, dim)?;
    Ok((m.dim, m.to_rows()))
}

/// Vectors as rows.
pub type Rows = Vec<Vec<f32>>;

/// Hold out `n` rows spread evenly over `rows` (every len/n-th): (rest, held out).
pub fn hold_out(rows: Rows, n: usize) -> Result<(Rows, Rows)> {
    if n == 0 || n >= rows.len() {
        return Err(Error::Invalid(format!(
            "--sample {n}: need 1 ≤ N < {} (the base size)",
            rows.len()
        )));
    }
    let step = rows.len() / n;
    let (mut base, mut held) = (Vec::with_capacity(rows.len() - n), Vec::with_capacity(n));
    for (i, r) in rows.into_iter().enumerate() {
        if i % step == 0 && held.len() < n {
            held.push(r);
        } else {
            base.push(r);
        }
    }
    Ok((base, held))
}

/// Build (when given vectors), open, and measure the exact scan and every `ef`.
pub fn run(
    spec: BenchSpec,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(Vec<BenchRow>, Option<AppendReport>)> {
    if spec.queries.is_empty() {
        return Err(Error::Invalid("no query vectors".into()));
    }
    if spec.k == 0 {
        return Err(Error::Invalid("--k must be at least 1".into()));
    }
    let threads = if spec.params.deterministic {
        1
    } else {
        rayon::current_num_threads()
    };
    // The graph's builder, from the partition's own record when it was not built here.
    let mut engine = match spec.params.builder {
        stabspace_index::GraphBuilder::Native => "stabspace",
        stabspace_index::GraphBuilder::HnswRs => "stabspace-hnsw_rs",
    };
    let mut appended = None;
    match (&spec.filter, &spec.base) {
        (Some(_), Base::Partition(_)) => {
            return Err(Error::Invalid(
                "--selectivity needs a vector file (--base): the keys are made for its rows".into(),
            ))
        }
        (Some(f), Base::Vectors { rows, .. }) if f.keys.len() != rows.len() => {
            return Err(Error::Invalid(format!(
                "{} keys for {} base vectors",
                f.keys.len(),
                rows.len()
            )))
        }
        (Some(_), _) if spec.appends > 0 => {
            return Err(Error::Invalid(
                "--selectivity and --appends do not combine".into(),
            ))
        }
        _ => {}
    }
    let (path, build_s) = match &spec.base {
        Base::Partition(p) => {
            engine = "stabspace";
            (p.clone(), 0.0)
        }
        Base::Vectors { dim, rows } => {
            let dim = *dim;
            progress(&format!("building a partition of {} vectors", rows.len()));
            let started = Instant::now();
            let mut b = PartitionBuilder::with_capacity(dim, rows.len())?;
            for (i, r) in rows.iter().enumerate() {
                match &spec.filter {
                    Some(f) => {
                        let attrs = RowAttrs {
                            key: f.keys[i],
                            ..RowAttrs::NONE
                        };
                        b.add_with(&i.to_string(), r, b"", attrs)?
                    }
                    None => b.add(&i.to_string(), r, b"")?,
                };
            }
            if !spec.calibration_queries.is_empty() {
                let flat: Vec<f32> = spec.calibration_queries.iter().flatten().copied().collect();
                b.calibrate_on(&flat)?;
            }
            if let Some(dir) = spec.scratch.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let stats = b.write(
                &spec.scratch,
                &spec.params,
                "{\"source\":\"stabspace bench\"}",
                &mut |_, _| {},
            )?;
            eprintln!(
                "built {} vectors with {} in {:.1} s: graph {:.1} s, recall calibration {:.1} s, the rest \
                 normalising and writing",
                rows.len(),
                spec.params.builder.name(),
                started.elapsed().as_secs_f64(),
                stats.graph_seconds,
                stats.calibration_seconds
            );
            for c in &stats.calibrations {
                let efs: Vec<String> = stabspace_index::RECALL_TARGETS
                    .iter()
                    .map(|&t| c.ef_for(t).map_or("-".into(), |ef| ef.to_string()))
                    .collect();
                eprintln!(
                    "recall calibration on {} {}: ef {} for recall@{} 0.90/0.95/0.98/0.99",
                    c.sample,
                    c.queries.name(),
                    efs.join("/"),
                    c.k
                );
            }
            (spec.scratch.clone(), started.elapsed().as_secs_f64())
        }
    };
    // Open time: the median of a few opens (the first may read the file from disk).
    let p = Partition::open(&path)?;
    let mut opens: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let opened = Partition::open(&path);
            let us = t.elapsed().as_secs_f64() * 1e6;
            drop(opened);
            us
        })
        .collect();
    opens.sort_by(f64::total_cmp);
    let info = p.info();
    let (n, dim) = (p.len(), p.dim());
    if spec.queries.iter().any(|q| q.len() != dim) {
        return Err(Error::Invalid(format!(
            "query vectors must have {dim} dimensions, as the base"
        )));
    }
    let k = spec.k.min(n);
    let row = |engine: &str, ef: usize, measured: SweepRow, selectivity: Option<usize>| BenchRow {
        engine: engine.to_string(),
        n,
        dim,
        k,
        m: info.m as usize,
        efc: info.ef_construction as usize,
        ef,
        measured,
        build_s,
        threads,
        open_us: opens[opens.len() / 2],
        bytes_per_vector: info.file_bytes as f64 / n.max(1) as f64,
        selectivity,
    };
    if let Some(f) = &spec.filter {
        return Ok((filtered(&spec, f, &path, engine, k, &row, progress)?, None));
    }
    progress(&format!("exact top-{k} of {} queries", spec.queries.len()));
    let t = truth(&p, &spec.queries, k)?;
    let row = |engine: &str, ef: usize, measured: SweepRow| row(engine, ef, measured, None);
    let mut out = vec![row("stabspace-exact", 0, measure(&p, &spec.queries, &t, None)?)];
    if p.has_graph() {
        // Each breadth on both traversals, when there are codes and
        // --no-quantized did not turn them off: the f32 vectors (`engine`)
        // and the int8 codes (`engine-i8`), each re-ranked exactly.
        let quantized = p.has_quantized() && spec.params.quantization != Quantization::None;
        let mut on_f32 = Partition::open(&path)?;
        on_f32.set_quantized(false);
        let i8_engine = format!("{engine}-i8");
        for &ef in &spec.efs {
            progress(&format!("ef {ef}"));
            out.push(row(
                engine,
                ef,
                measure(&on_f32, &spec.queries, &t, Some(ef.max(k)))?,
            ));
            if quantized {
                progress(&format!("ef {ef}, int8 traversal"));
                out.push(row(
                    &i8_engine,
                    ef,
                    measure(&p, &spec.queries, &t, Some(ef.max(k)))?,
                ));
            }
        }
        if let (Base::Vectors { dim, rows }, true) = (&spec.base, spec.appends > 0) {
            let report = appends(&spec, *dim, rows, build_s, progress)?;
            let a = Partition::open(&spec.scratch)?;
            let on = if a.quantized_traversal() {
                &i8_engine
            } else {
                engine
            };
            let label = format!("{on}+{}appends", spec.appends);
            for &ef in &spec.efs {
                progress(&format!("ef {ef} after the appends"));
                let mut r = row(&label, ef, measure(&a, &spec.queries, &t, Some(ef.max(k)))?);
                r.build_s = report.seconds.iter().sum::<f64>() / report.seconds.len().max(1) as f64;
                out.push(r);
            }
            appended = Some(report);
        }
    } else {
        eprintln!(
            "note: {n} vectors is below the graph threshold ({}): the partition is scanned exactly, so \
             there is no ef sweep",
            stabspace_index::FLAT_THRESHOLD
        );
    }
    Ok((out, appended))
}

/// Makes a result row: (engine, threads, the sweep's figures, the selectivity in percent).
type RowOf<'a> = &'a dyn Fn(&str, usize, SweepRow, Option<usize>) -> BenchRow;

/// The filtered sweep: per selectivity, the exact filtered scan and every
/// `ef` on the f32 and (when there are codes) int8 traversals, each against
/// the exact filtered top-k.
fn filtered(
    spec: &BenchSpec,
    f: &KeySpec,
    path: &Path,
    engine: &str,
    k: usize,
    row: RowOf<'_>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<BenchRow>> {
    let p = Partition::open(path)?;
    let mut on_f32 = Partition::open(path)?;
    on_f32.set_quantized(false);
    let quantized = p.has_quantized() && spec.params.quantization != Quantization::None;
    let qs = &spec.queries;
    let mut out = Vec::new();
    for &sel in &f.selectivities {
        let filter = RowFilter {
            key_below: Some(key_cut(&f.keys, sel)),
            ..RowFilter::default()
        };
        progress(&format!("{sel}%: exact filtered top-{k} of {} queries", qs.len()));
        let t: Truth = truth_filtered(&p, qs, k, &filter)?;
        let m = |p: &Partition, ef| measure_filtered(p, qs, &t, ef, Some(&filter));
        out.push(row("stabspace-exact", 0, m(&p, None)?, Some(sel)));
        if !p.has_graph() {
            continue;
        }
        for &ef in &spec.efs {
            progress(&format!("{sel}%: ef {ef}"));
            out.push(row(engine, ef, m(&on_f32, Some(ef.max(k)))?, Some(sel)));
            if quantized {
                let i8_engine = format!("{engine}-i8");
                out.push(row(&i8_engine, ef, m(&p, Some(ef.max(k)))?, Some(sel)));
            }
        }
    }
    Ok(out)
}

/// Build the first rows of `rows` at the scratch path, then append the rest
/// in `spec.appends` steps of `spec.append_rows`, timing each append.
fn appends(
    spec: &BenchSpec,
    dim: usize,
    rows: &[Vec<f32>],
    full_build_s: f64,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<AppendReport> {
    let tail = spec.appends * spec.append_rows;
    if tail >= rows.len() {
        return Err(Error::Invalid(format!(
            "--appends {} of {} rows need more than {tail} base vectors",
            spec.appends, spec.append_rows
        )));
    }
    let first = rows.len() - tail;
    progress(&format!("building {first} vectors to append to"));
    let mut b = PartitionBuilder::with_capacity(dim, first)?;
    for (i, r) in rows[..first].iter().enumerate() {
        b.add(&i.to_string(), r, b"")?;
    }
    b.write(&spec.scratch, &spec.params, "{}", &mut |_, _| {})?;
    let mut seconds = Vec::with_capacity(spec.appends);
    for step in 0..spec.appends {
        progress(&format!("append {} of {}", step + 1, spec.appends));
        let started = Instant::now();
        let p = Partition::open(&spec.scratch)?;
        let mut b = PartitionBuilder::extending(&p, spec.append_rows)?;
        drop(p);
        let from = first + step * spec.append_rows;
        for (i, r) in rows[from..from + spec.append_rows].iter().enumerate() {
            b.add(&(from + i).to_string(), r, b"")?;
        }
        let stats = b.write(&spec.scratch, &spec.params, "{}", &mut |_, _| {})?;
        if stats.appended != Some(spec.append_rows) {
            return Err(Error::Invalid(format!(
                "append {} rebuilt the graph instead of appending (parameters {:?})",
                step + 1,
                spec.params
            )));
        }
        seconds.push(started.elapsed().as_secs_f64());
    }
    Ok(AppendReport {
        steps: spec.appends,
        rows_per_step: spec.append_rows,
        first_rows: first,
        seconds,
        full_build_s,
    })
}

/// The CSV columns: peer_ann.py's, then ours.
pub const CSV_COLUMNS: &[&str] = &[
    "engine",
    "n",
    "dim",
    "k",
    "M",
    "efc",
    "ef",
    "recall",
    "qps",
    "p50_us",
    "p99_us",
    "build_s",
    "threads",
    "qps_all_threads",
    "p95_us",
    "open_us",
    "bytes_per_vector",
    "selectivity",
];

impl BenchRow {
    pub fn csv(&self) -> Vec<String> {
        vec![
            self.engine.clone(),
            self.n.to_string(),
            self.dim.to_string(),
            self.k.to_string(),
            self.m.to_string(),
            self.efc.to_string(),
            self.ef.to_string(),
            format!("{:.4}", self.measured.recall),
            format!("{:.1}", self.measured.qps),
            format!("{:.1}", self.measured.p50_us),
            format!("{:.1}", self.measured.p99_us),
            format!("{:.2}", self.build_s),
            self.threads.to_string(),
            format!("{:.1}", self.measured.qps_all_threads),
            format!("{:.1}", self.measured.p95_us),
            format!("{:.1}", self.open_us),
            format!("{:.1}", self.bytes_per_vector),
            self.selectivity.map_or(String::new(), |s| s.to_string()),
        ]
    }
}

/// Points (recall, qps) per engine, for the plot.
pub type Series = Vec<(String, Vec<(f64, f64)>)>;

/// An SVG line chart of QPS (log scale) against recall, one line per engine.
pub fn svg_plot(series: &Series, title: &str) -> String {
    const W: f64 = 720.0;
    const H: f64 = 440.0;
    const L: f64 = 70.0;
    const R: f64 = 170.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    let xmin = pts.iter().map(|p| p.0).fold(1.0, f64::min).clamp(0.0, 0.9);
    let (ymin, ymax) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (ly0, ly1) = (
        ymin.max(1e-3).log10().floor(),
        ymax.max(1e-3).log10().ceil().max(ymin.log10().floor() + 1.0),
    );
    let x = |r: f64| L + (r - xmin) / (1.0 - xmin).max(1e-9) * (W - L - R);
    let y = |q: f64| T + (ly1 - q.max(1e-3).log10()) / (ly1 - ly0) * (H - T - B);
    let colours = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" \
         font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        (W - R + L) / 2.0,
        xml(title)
    );
    s += &format!(
        "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" \
         y2=\"{}\" stroke=\"black\"/>\n",
        H - B,
        W - R,
        H - B,
        H - B
    );
    for i in 0..=5 {
        let r = xmin + (1.0 - xmin) * f64::from(i) / 5.0;
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{r:.2}</text>\n",
            x(r),
            H - B + 18.0
        );
    }
    let mut e = ly0;
    while e <= ly1 {
        let q = 10f64.powf(e);
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n<line x1=\"{L}\" y1=\"{:.1}\" x2=\"{}\" \
             y2=\"{:.1}\" stroke=\"#ddd\"/>\n",
            L - 6.0,
            y(q) + 4.0,
            q,
            y(q),
            W - R,
            y(q)
        );
        e += 1.0;
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">recall@k</text>\n<text x=\"16\" y=\"{}\" \
         transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">queries per second (one thread, log)</text>\n",
        (W - R + L) / 2.0,
        H - 12.0,
        (H - B + T) / 2.0,
        (H - B + T) / 2.0
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let mut sorted = points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = sorted
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            path.join(" ")
        );
        for p in &sorted {
            s += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>\n",
                x(p.0),
                y(p.1)
            );
        }
        let ly = T + 10.0 + 18.0 * i as f64;
        s += &format!(
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            W - R + 15.0,
            ly - 10.0,
            W - R + 32.0,
            ly,
            xml(name)
        );
    }
    s + "</svg>\n"
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The recall promise checked (`stabspace bench --promise`): for each
/// calibration of a partition and each target recall, the breadth the
/// calibration chooses, the recall it delivers on the queries, and the
/// smallest breadth that reaches the target on them.
#[derive(Clone, Debug)]
pub struct PromiseRow {
    pub target: f64,
    /// What the calibration measured ("held-out rows", "given queries").
    pub calibrated_on: String,
    /// Queries measured by the calibration.
    pub calibration_sample: usize,
    /// Whether queries take their breadth from this calibration.
    pub used: bool,
    /// The breadth chosen (`None`: no breadth measured reaches the target;
    /// queries then use the largest measured).
    pub ef: Option<usize>,
    /// Strict and near recall at the breadth chosen (or the largest measured).
    pub recall: f64,
    pub near_recall: f64,
    /// The smallest breadth reaching the target on these queries (`None`:
    /// not up to 4,096).
    pub smallest_ef: Option<usize>,
}

/// Largest breadth [`promise`] searches for the smallest one that reaches a target.
const PROMISE_MAX_EF: usize = 4096;

/// Check the recall promise of the partition at `path` on `queries`.
pub fn promise(
    path: &Path,
    queries: &[Vec<f32>],
    k: usize,
    targets: &[f64],
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<PromiseRow>> {
    let p = Partition::open(path)?;
    if !p.has_graph() {
        return Err(Error::Invalid(format!(
            "{}: {} rows and no graph, searched exactly: there is no recall promise to check",
            path.display(),
            p.len()
        )));
    }
    let all = p.calibrations()?;
    let used = p.calibration()?;
    progress(&format!("exact top-{k} of {} queries", queries.len()));
    let t = truth(&p, queries, k)?;
    let mut out = Vec::new();
    for &target in targets {
        progress(&format!("smallest breadth reaching {target}"));
        let smallest = stabspace_index::sweep::smallest_ef(&p, queries, &t, target, k, PROMISE_MAX_EF)?;
        for c in &all {
            let ef = c.ef_for(target);
            let at = ef.unwrap_or_else(|| c.points.last().map_or(k, |p| p.0));
            let (recall, near_recall) = stabspace_index::sweep::recall_at(&p, queries, &t, at.max(k))?;
            out.push(PromiseRow {
                target,
                calibrated_on: c.queries.name().to_string(),
                calibration_sample: c.sample,
                used: used.as_ref() == Some(c),
                ef,
                recall,
                near_recall,
                smallest_ef: smallest,
            });
        }
    }
    Ok(out)
}
