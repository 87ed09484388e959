use std::path::PathBuf;

use chrono::NaiveDate;

use crate::bench::{
    bench_keys, hold_out, read_vectors, run as run_bench, svg_plot, Base, BenchRow, BenchSpec, KeySpec,
    Series, CSV_COLUMNS,
};
use crate::cli::global::GlobalOpts;
use crate::commands::index::ParamArgs;
use crate::config::parse_date;
use crate::error::{Error, Result};
use crate::output::{check_output_dir, write_file_atomically, Cell, Format, Table};
use crate::storage::joint::joint_states;
use crate::vector;

#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("source").required(true).args(["scenario_set_id", "base"]),
    group = clap::ArgGroup::new("query_source").required(true).args(["queries", "as_of", "sample"]),
    after_help = "Measures, per --ef, recall@k against the exact scan, queries per second on one thread \
and on all threads, and p50/p95/p99 latency; plus the exact scan itself (engine stabspace-exact), build \
time, open time and bytes per vector.\n\n\
Sources: an index partition (--scenario-set-id, --model-id), or a vector file (--base: .npy, .fvecs, or raw \
little-endian .f32 with --dim) that is built into a scratch partition with --m and --ef-construction.\n\
Queries: a vector file (--queries), the STAB states of instruments on --as-of, or --sample N vectors held \
out from the base (the base is then rebuilt without them).\n\n\
--csv writes engine,n,dim,k,M,efc,ef,recall,qps,p50_us,p99_us,build_s,threads (then qps_all_threads, \
p95_us, open_us, bytes_per_vector): the columns of shared/bench/peer_ann.py, so the files concatenate. \
--plot draws recall against QPS, one line per engine (--compare adds a peer_ann.py CSV to the plot).\n\n\
Filtered search (--base only): --selectivity 1,10,50,100 gives every base row a key, a day drawn uniformly \
over 20 years (seeded; --correlated-keys: increasing with row order), and measures each percentage with \
the filter key < the cut admitting that share of the rows, against the exact filtered top-k; rows get a \
selectivity column (last). --keys-out writes the keys, one per line, for bench/peer_filtered.py.\n\n\
Examples:\n  stabspace bench --scenario-set-id BENCH_100K --sample 1000\n  \
stabspace bench --base base.npy --queries queries.npy --m 16 --ef-construction 200 --csv ours.csv \
--plot recall.svg --compare peers.csv"
)]
pub struct Args {
    /// Benchmark this set's partition (under --model-id).
    #[arg(long)]
    pub scenario_set_id: Option<String>,
    /// Joint model of the partition benchmarked with --scenario-set-id, and of the states queried with --as-of.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub model_id: String,
    /// Base vectors from a file instead of a partition.
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    /// Query vectors from a file.
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
    /// Query with the STAB states of the instruments on this date.
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// Query with N vectors held out from the base.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Dimension of raw .f32 files.
    #[arg(long)]
    pub dim: Option<usize>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10, value_parser = crate::config::parse_positive)]
    pub k: usize,
    /// Search breadths to sweep.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    pub ef: Vec<usize>,
    #[command(flatten)]
    pub params: ParamArgs,
    /// Write the rows as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Draw recall against QPS as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// A peer_ann.py CSV whose engines are drawn beside ours in --plot.
    #[arg(long, value_name = "FILE", requires = "plot")]
    pub compare: Option<PathBuf>,
    /// Also measure appends (--base only): build the base without its last N × F rows, append
    /// them in N steps of F of the base each, time every append against the full build, and
    /// sweep --ef on the result (engine `stabspace+Nappends`), beside the fresh build.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "base")]
    pub appends: usize,
    /// Filtered search: percents of the base rows each query's key filter admits (--base only).
    #[arg(long, value_delimiter = ',', value_name = "PERCENTS", requires = "base", value_parser = parse_percent)]
    pub selectivity: Vec<usize>,
    /// With --selectivity: keys increase with row order (rows in time order) instead of uniformly random.
    #[arg(long)]
    pub correlated_keys: bool,
    /// Write the base rows' keys (as --selectivity gives them) to FILE, one integer per line.
    #[arg(long, value_name = "FILE", requires = "base")]
    pub keys_out: Option<PathBuf>,
    /// Check the recall promise: for each recall calibration of the partition (held-out rows;
    /// given queries) and each --targets recall, the breadth it chooses, the recall that delivers
    /// on the queries (strict, and near: hits within 1e-3 cosine of the exact k-th), and the
    /// smallest breadth that reaches the target on them, with the ratio. Query with data the
    /// calibration did not see: states of a later date than `index calibrate --as-of`, or
    /// --calibration-queries with --base.
    #[arg(long)]
    pub promise: bool,
    /// Recall targets of --promise.
    #[arg(long, value_delimiter = ',', default_value = "0.95", requires = "promise", value_parser = parse_target)]
    pub targets: Vec<f64>,
    /// With --base: calibrate the scratch partition on the first N query vectors (as `index
    /// calibrate --queries` would) and measure with the others only.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "base")]
    pub calibration_queries: usize,
    /// Fraction of the base each append adds (with --appends).
    #[arg(long, value_name = "F", default_value_t = 0.01, value_parser = parse_fraction)]
    pub append_fraction: f64,
}

fn parse_percent(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a percentage from 1 to 100")),
    }
}

fn parse_target(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a recall between 0 (exclusive) and 1")),
    }
}

fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1 (exclusive)")),
    }
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    // Output paths are checked before minutes of measuring, not after.
    for path in [&a.csv, &a.plot, &a.keys_out].into_iter().flatten() {
        check_output_dir(path)?;
    }
    let scratch = g
        .config()
        .index_dir()
        .join(".bench")
        .join(format!("scratch-{}.stabidx", std::process::id()));
    let mut params = a.params.params();
    let store = g.config().partition_store()?;
    let (base, name) = match (&a.scenario_set_id, &a.base) {
        (Some(set), _) => {
            let path = store.locate(&a.model_id, set);
            if !store.exists(&path) {
                return Err(Error::Invalid(format!(
                    "no index partition for {} / {set} ({}); build it with `stabspace index build --model-id {} \
                     --scenario-set-id {set}`",
                    a.model_id,
                    path.display(),
                    a.model_id
                )));
            }
            (Base::Partition(path), format!("{} / {set}", a.model_id))
        }
        (None, Some(file)) => {
            let (dim, rows) = read_vectors(file, a.dim)?;
            (Base::Vectors { dim, rows }, file.display().to_string())
        }
        (None, None) => unreachable!("clap requires a source"),
    };
    let (base, queries) = match (&a.queries, a.as_of, a.sample) {
        (Some(file), _, _) => {
            let base_dim = match &base {
                Base::Vectors { dim, .. } => *dim,
                Base::Partition(path) => store.open(path)?.0.dim(),
            };
            let (dim, queries) = read_vectors(file, a.dim.or(Some(base_dim)))?;
            if dim != base_dim {
                return Err(Error::Invalid(format!(
                    "{}: the query vectors have {dim} dimensions, the base vectors of {name} have {base_dim}",
                    file.display()
                )));
            }
            (base, queries)
        }
        (None, Some(d), _) => {
            let db = g.open_db_read().await?;
            let rows = joint_states(&db, &a.model_id, d, d, None, None, None).await?;
            if rows.is_empty() {
                return Err(Error::Invalid(format!(
                    "no STAB states of {} on {d} to query with",
                    a.model_id
                )));
            }
            let qs = rows
                .iter()
                .map(|r| vector::from_bytes(&r.vector, &r.instrument_id))
                .collect::<Result<Vec<_>>>()?;
            (base, qs)
        }
        (None, None, Some(n)) => {
            let (dim, rows) = match base {
                Base::Vectors { dim, rows } => (dim, rows),
                Base::Partition(path) => {
                    // Held-out queries need a base without them: rebuild from the
                    // partition's vectors, with its own parameters unless given.
                    let (p, _) = store.open(&path)?;
                    let info = p.info();
                    if a.params.m == 16 && a.params.ef_construction == 200 {
                        params.m = info.m.max(2) as usize;
                        params.ef_construction = info.ef_construction.max(1) as usize;
                    }
                    let rows = (0..p.len())
                        .map(|r| {
                            p.vector(r)
                                .iter()
                                .map(|&x| (f64::from(x) * p.norms()[r]) as f32)
                                .collect()
                        })
                        .collect();
                    (p.dim(), rows)
                }
            };
            let (rest, held) = hold_out(rows, n)?;
            (Base::Vectors { dim, rows: rest }, held)
        }
        _ => unreachable!("clap requires a query source"),
    };
    let (calibration_queries, queries) = if a.calibration_queries > 0 {
        if a.calibration_queries >= queries.len() {
            return Err(Error::Invalid(format!(
                "--calibration-queries {} leaves none of the {} query vectors to measure with",
                a.calibration_queries,
                queries.len()
            )));
        }
        let mut q = queries;
        let rest = q.split_off(a.calibration_queries);
        (q, rest)
    } else {
        (Vec::new(), queries)
    };
    let promise_queries = a.promise.then(|| queries.clone());
    let append_rows = match &base {
        Base::Vectors { rows, .. } => ((rows.len() as f64 * a.append_fraction).round() as usize).max(1),
        Base::Partition(_) => 0,
    };
    let keys = match &base {
        Base::Vectors { rows, .. } if !a.selectivity.is_empty() || a.keys_out.is_some() => {
            Some(bench_keys(rows.len(), a.correlated_keys))
        }
        _ => None,
    };
    if let (Some(path), Some(keys)) = (&a.keys_out, &keys) {
        let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
        write_file_atomically(path, text.as_bytes())?;
        println!("wrote {} keys to {}", keys.len(), path.display());
    }
    let filter = match keys {
        Some(keys) if !a.selectivity.is_empty() => Some(KeySpec {
            selectivities: a.selectivity.clone(),
            keys,
        }),
        _ => None,
    };
    let spec = BenchSpec {
        base,
        queries,
        k: a.k,
        efs: a.ef.clone(),
        params,
        scratch: scratch.clone(),
        appends: a.appends,
        append_rows,
        filter,
        calibration_queries,
    };
    let promise_path = match &spec.base {
        Base::Partition(p) => p.clone(),
        Base::Vectors { .. } => scratch.clone(),
    };
    // Steps: the build (vector files only), the exact top-k, one per ef.
    let sels = spec.filter.as_ref().map_or(1, |f| f.selectivities.len()) as u64;
    let steps = u64::from(matches!(spec.base, Base::Vectors { .. }))
        + sels * (1 + spec.efs.len() as u64)
        + u64::from(spec.appends > 0) * (1 + spec.appends + spec.efs.len()) as u64;
    let pb = crate::cli::progress::steps(steps);
    let bar = pb.clone();
    let mut started = 0u64;
    let rows = tokio::task::block_in_place(|| {
        run_bench(spec, &mut |m: &str| {
            started += 1;
            bar.set_position(started);
            bar.set_message(m.to_string());
        })
    });
    pb.finish_and_clear();
    let promised = match (&promise_queries, &rows) {
        (Some(qs), Ok(_)) => {
            let pb = crate::cli::progress::steps(1 + a.targets.len() as u64);
            let mut at = 0;
            let r = tokio::task::block_in_place(|| {
                crate::bench::promise(&promise_path, qs, a.k, &a.targets, &mut |m: &str| {
                    at += 1;
                    pb.set_position(at);
                    pb.set_message(m.to_string());
                })
            });
            pb.finish_and_clear();
            Some(r)
        }
        _ => None,
    };
    let _ = std::fs::remove_file(&scratch);
    let (rows, appended) = rows?;
    let promised = promised.transpose()?;

    let first = &rows[0];
    println!(
        "{name}: {} vectors of {} dims, k {}, M {}, ef_construction {}; build {:.2} s, open {:.0} µs, {:.0} bytes/vector",
        first.n, first.dim, first.k, first.m, first.efc, first.build_s, first.open_us, first.bytes_per_vector
    );
    table(&rows).emit_to(Format::Text, None)?;
    if let Some(report) = &appended {
        println!("{report}");
    }
    if let Some(promised) = &promised {
        println!(
            "\nrecall promise on {} queries (k {}):",
            promise_queries.as_ref().map_or(0, Vec::len),
            a.k
        );
        promise_table(promised).emit_to(Format::Text, None)?;
    }
    if let Some(path) = &a.csv {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(CSV_COLUMNS);
        for r in &rows {
            let _ = w.write_record(r.csv());
        }
        write_file_atomically(path, &w.into_inner().unwrap_or_default())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.plot {
        let mut series: Series = Vec::new();
        for r in &rows {
            let sel = r.selectivity.map_or(String::new(), |s| format!(" {s}%"));
            let name = if r.ef > 0 {
                format!("stabspace{sel}")
            } else {
                format!("stabspace-exact{sel}")
            };
            let point = (r.measured.recall, r.measured.qps);
            match series.iter_mut().find(|s| s.0 == name) {
                Some(s) => s.1.push(point),
                None => series.push((name, vec![point])),
            }
        }
        if let Some(peers) = &a.compare {
            series.extend(read_peer_series(peers)?);
        }
        series.retain(|s| !s.1.is_empty());
        let title = format!("{name}: {} vectors, k {}", first.n, first.k);
        write_file_atomically(path, svg_plot(&series, &title).as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn table(rows: &[BenchRow]) -> Table {
    let mut t = Table::new(&[
        "engine",
        "selectivity",
        "ef",
        "recall",
        "qps_1t",
        "qps_all",
        "p50_us",
        "p95_us",
        "p99_us",
    ]);
    for r in rows {
        t.push(vec![
            r.engine.clone().into(),
            r.selectivity.map_or(Cell::Null, |s| Cell::Int(s as i64)),
            if r.ef == 0 { Cell::Null } else { r.ef.into() },
            r.measured.recall.into(),
            Cell::Int(r.measured.qps.round() as i64),
            Cell::Int(r.measured.qps_all_threads.round() as i64),
            Cell::Int(r.measured.p50_us.round() as i64),
            Cell::Int(r.measured.p95_us.round() as i64),
            Cell::Int(r.measured.p99_us.round() as i64),
        ]);
    }
    t
}

fn promise_table(rows: &[crate::bench::PromiseRow]) -> Table {
    let mut t = Table::new(&[
        "target",
        "calibrated_on",
        "calibration_sample",
        "used",
        "ef",
        "recall",
        "near_recall",
        "smallest_ef",
        "ef_ratio",
    ]);
    for r in rows {
        t.push(vec![
            Cell::Float(r.target),
            r.calibrated_on.clone().into(),
            r.calibration_sample.into(),
            Cell::Bool(r.used),
            r.ef.map_or(Cell::Null, |e| e.into()),
            Cell::Float((r.recall * 1e4).round() / 1e4),
            Cell::Float((r.near_recall * 1e4).round() / 1e4),
            r.smallest_ef.map_or(Cell::Null, |e| e.into()),
            match (r.ef, r.smallest_ef) {
                (Some(e), Some(s)) => Cell::Float((e as f64 / s as f64 * 100.0).round() / 100.0),
                _ => Cell::Null,
            },
        ]);
    }
    t
}

/// (engine, [(recall, qps)]) from a CSV with at least engine, recall and qps columns.
fn read_peer_series(path: &std::path::Path) -> Result<Series> {
    let mut r =
        csv::Reader::from_path(path).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let headers = r
        .headers()
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::MissingColumn {
                file: path.to_path_buf(),
                column: name.into(),
                found: headers.iter().collect::<Vec<_>>().join(","),
            })
    };
    let (e, rc, q) = (col("engine")?, col("recall")?, col("qps")?);
    let mut series: Series = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|err| Error::BadRow {
            file: path.to_path_buf(),
            line: i as u64 + 2,
            message: err.to_string(),
        })?;
        let num = |c: usize, name: &str| {
            rec[c].parse::<f64>().map_err(|_| Error::BadField {
                file: path.to_path_buf(),
                line: i as u64 + 2,
                column: name.into(),
                message: format!("not a number: {:?}", &rec[c]),
            })
        };
        let point = (num(rc, "recall")?, num(q, "qps")?);
        match series.iter_mut().find(|s| s.0 == rec[e]) {
            Some(s) => s.1.push(point),
            None => series.push((rec[e].to_string(), vec![point])),
        }
    }
    Ok(series)
}
