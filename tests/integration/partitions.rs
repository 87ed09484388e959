//! Index partitions in the application: built from the database, searched
//! instead of the stored vectors, stale when the source rows change, safe to
//! rebuild under readers in other processes, and never trusted when damaged.

use std::path::Path;

use chrono::NaiveDate;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stabspace::gen_scenarios::{gen_scenarios, GenScenarios, Market};
use stabspace::nearest::{open_checked, ScenarioSpace, SearchOpts};
use stabspace::partitions::{
    build, counters, partition_path, status_of, BuildKind, BuildMode, Change, Counters, Freshness, LocalDir,
};
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace::with_pool;
use stabspace_index::BuildParams;

use crate::both_backends;
use crate::support::{stabspace, stabspace_ok, text, TestDb};

both_backends!(
    partition_answers_match_the_exact_scan,
    stale_after_adding_changing_or_deleting_a_scenario_and_fresh_after_rebuild,
    inserts_bump_only_version_and_updates_or_deletes_bump_rewrites_too,
    a_query_of_a_fresh_partition_reads_no_row_of_the_set,
    a_rebuild_appends_what_a_set_only_gained_and_builds_in_full_after_a_change_or_delete,
    queries_search_with_the_calibrated_breadth_for_the_recall_asked,
);

const MODEL: &str = "joint-stab-fragility-v1";

fn scenarios(set: &str, count: usize) -> GenScenarios {
    GenScenarios {
        scenario_set_id: set.into(),
        count,
        model_id: MODEL.into(),
        seed: 3,
        scenario_date: NaiveDate::from_ymd_opt(2020, 3, 16).unwrap(),
        spread_years: 0,
    }
}

async fn build_default(db: &Db, dir: &Path, set: &str) {
    build(
        db,
        &LocalDir::new(dir),
        MODEL,
        set,
        &BuildParams::default(),
        BuildMode::Full,
        &Quiet,
    )
    .await
    .unwrap();
}

fn opts(dir: &Path, ef: Option<usize>, exact: bool) -> SearchOpts {
    crate::support::partition_opts(dir, ef, exact)
}

/// Query vectors from a market the stored scenarios were not drawn from.
fn queries(n: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let m = Market::simulate(&mut rng);
    (0..n).map(|_| m.scenario(&mut rng)).collect()
}

async fn partition_answers_match_the_exact_scan(t: TestDb) {
    let dir = t.path("index");
    // Above the flat threshold (2,000), so the partition has a graph.
    gen_scenarios(&t.db, &scenarios("BIG", 2500), &Quiet)
        .await
        .unwrap();
    gen_scenarios(&t.db, &scenarios("SMALL", 60), &Quiet)
        .await
        .unwrap();
    build_default(&t.db, &dir, "BIG").await;
    build_default(&t.db, &dir, "SMALL").await;
    let qs = queries(40);
    let k = 10;

    let truth = ScenarioSpace::load(&t.db, MODEL, "BIG", None).await.unwrap();
    let want = truth.search_batch(&qs, k).unwrap();
    let graph = ScenarioSpace::open(&t.db, &opts(&dir, Some(128), false), MODEL, "BIG")
        .await
        .unwrap();
    assert_eq!(
        graph.describe(),
        "index partition, ef 128, int8 traversal, exact re-rank"
    );
    let got = graph.search_batch(&qs, k).unwrap();
    let found: usize = got
        .iter()
        .zip(&want)
        .map(|(g, w)| {
            g.iter()
                .filter(|h| w.iter().any(|x| x.scenario_id == h.scenario_id))
                .count()
        })
        .sum();
    let recall = found as f64 / (qs.len() * k) as f64;
    assert!(recall >= 0.98, "recall@10 {recall} against the exact scan");
    // Hits the graph finds carry the exact cosine and the scenario date.
    for (g, w) in got.iter().zip(&want) {
        for h in g {
            if let Some(x) = w.iter().find(|x| x.scenario_id == h.scenario_id) {
                assert!((h.cosine - x.cosine).abs() < 1e-9, "{} vs {}", h.cosine, x.cosine);
                assert!((h.euclidean - x.euclidean).abs() <= 1e-9 * x.euclidean.max(1.0));
                assert_eq!(h.scenario_as_of, x.scenario_as_of);
            }
        }
    }

    // --exact on the partition, and any ef on a small (flat) partition: identical top-k.
    let exact = ScenarioSpace::open(&t.db, &opts(&dir, None, true), MODEL, "BIG")
        .await
        .unwrap();
    let small_truth = ScenarioSpace::load(&t.db, MODEL, "SMALL", None).await.unwrap();
    let small = ScenarioSpace::open(&t.db, &opts(&dir, Some(4), false), MODEL, "SMALL")
        .await
        .unwrap();
    for (space, truth) in [(&exact, &truth), (&small, &small_truth)] {
        for q in &qs {
            let a = space.search(q, k).unwrap();
            let b = truth.search(q, k).unwrap();
            let ids = |h: &[stabspace::nearest::ScenarioHit]| {
                h.iter().map(|x| x.scenario_id.clone()).collect::<Vec<_>>()
            };
            assert_eq!(ids(&a), ids(&b));
            for (x, y) in a.iter().zip(&b) {
                assert!((x.cosine - y.cosine).abs() < 1e-12);
            }
        }
    }
}

async fn state(t: &TestDb, dir: &Path, set: &str) -> Freshness {
    status_of(&t.db, &LocalDir::new(dir), MODEL, set)
        .await
        .unwrap()
        .state
}

async fn stale_after_adding_changing_or_deleting_a_scenario_and_fresh_after_rebuild(t: TestDb) {
    let dir = t.path("index");
    gen_scenarios(&t.db, &scenarios("S", 30), &Quiet).await.unwrap();
    assert_eq!(state(&t, &dir, "S").await, Freshness::Missing);
    build_default(&t.db, &dir, "S").await;
    assert_eq!(state(&t, &dir, "S").await, Freshness::Fresh);
    // Rewriting identical vectors changes nothing.
    gen_scenarios(&t.db, &scenarios("S", 30), &Quiet).await.unwrap();
    assert_eq!(state(&t, &dir, "S").await, Freshness::Fresh, "identical rewrite");

    // Added: the same seed, one more scenario.
    gen_scenarios(&t.db, &scenarios("S", 31), &Quiet).await.unwrap();
    assert_eq!(state(&t, &dir, "S").await, Freshness::Stale, "added");
    build_default(&t.db, &dir, "S").await;
    assert_eq!(state(&t, &dir, "S").await, Freshness::Fresh);

    // Changed, by another tool: one vector replaced with another's.
    with_pool!(t.db, p => sqlx::query(
        "UPDATE joint_embeddings SET vector = (SELECT vector FROM joint_embeddings WHERE entity_id = 'SYN_000001' \
         AND scope_id = 'S') WHERE entity_id = 'SYN_000005' AND scope_id = 'S'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    assert_eq!(state(&t, &dir, "S").await, Freshness::Stale, "changed");
    // A partition whose rows changed is not searched: the database answers.
    let space = ScenarioSpace::open(&t.db, &opts(&dir, None, false), MODEL, "S")
        .await
        .unwrap();
    assert_eq!(space.len(), 31);
    assert_eq!(
        (space.answered_by(), space.partition_stale),
        (stabspace::nearest::AnsweredBy::ExactScan, true)
    );
    build_default(&t.db, &dir, "S").await;
    assert_eq!(state(&t, &dir, "S").await, Freshness::Fresh);

    // Deleted.
    with_pool!(t.db, p => sqlx::query("DELETE FROM joint_embeddings WHERE entity_id = 'SYN_000007' AND scope_id = 'S'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    assert_eq!(state(&t, &dir, "S").await, Freshness::Stale, "deleted");
    build_default(&t.db, &dir, "S").await;
    let st = status_of(&t.db, &LocalDir::new(&dir), MODEL, "S").await.unwrap();
    assert_eq!(st.state, Freshness::Fresh);
    assert_eq!(st.provenance.unwrap().rows, 30);
}

/// Queries do not read a whole partition to open it: a damaged data section
/// (a flipped bit in the vectors) is found by `index verify` and `index
/// status`, which check every checksum, and `index rebuild` replaces the file;
/// a damaged header or section table, which every open checks, makes queries
/// scan the database instead.
#[test]
fn a_damaged_partition_fails_verify_and_status_and_a_damaged_header_makes_queries_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace(
        &["gen-scenarios", "--scenario-set-id", "D", "--count", "2200"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = stabspace(&["index", "verify"], dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let file = partition_path(&dir.path().join("index"), MODEL, "D");
    let good = std::fs::read(&file).unwrap();
    let mut bytes = good.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let o = stabspace(&["index", "verify"], dir.path());
    assert!(!o.status.success(), "verify passed a damaged file");
    let out = text(&o.stdout) + &text(&o.stderr);
    assert!(out.contains("FAILED") && out.contains("D.stabidx"), "{out}");
    let o = stabspace(&["index", "status"], dir.path());
    let out = text(&o.stdout);
    assert!(
        out.contains("unreadable") && out.contains("checksum mismatch"),
        "{out}"
    );
    // The query path checks the header and section table only (constant
    // work), not the checksum of every section.
    let (p, _) = open_checked(&LocalDir::new(dir.path().join("index")), MODEL, "D").unwrap();
    assert_eq!(p.len(), 2200);
    assert!(p.verify().is_err());
    drop(p);

    // A damaged header: the open fails, naming the file, and queries do not use it.
    let mut bytes = good.clone();
    bytes[20] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let e = open_checked(&LocalDir::new(dir.path().join("index")), MODEL, "D")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("D.stabidx") && e.contains("rebuild"), "{e}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = Db::open(&format!("sqlite://{}", dir.path().join("stabspace.db").display()))
            .await
            .unwrap();
        let space = ScenarioSpace::open(&db, &opts(&dir.path().join("index"), None, false), MODEL, "D")
            .await
            .unwrap();
        assert_eq!(space.describe(), "exact scan from the database");
        assert_eq!(space.len(), 2200);
        db.close().await;
    });
    let o = stabspace(&["index", "rebuild"], dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = stabspace(&["index", "verify"], dir.path());
    assert!(o.status.success(), "{}", text(&o.stdout));
}

/// Give instrument X.US, on 2025-01-31, the STAB state of `scenario` of
/// `set`, in the embedded database of `data_dir`.
fn state_of_scenario(data_dir: &Path, set: &str, scenario: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = Db::open(&format!("sqlite://{}", data_dir.join("stabspace.db").display()))
            .await
            .unwrap();
        with_pool!(db, p => sqlx::query(
            "INSERT INTO joint_embeddings (joint_type, model_id, entity_type, entity_id, scope_id, as_of_date, \
             entity_scope, vector) SELECT joint_type, model_id, 'INSTRUMENT', 'X.US', '', '2025-01-31', '{}', vector \
             FROM joint_embeddings WHERE scope_id = $1 AND entity_id = $2")
            .bind(set)
            .bind(scenario)
            .execute(p).await.map(|_| ()))
        .unwrap();
        db.close().await;
    });
}

/// `--top-k 100000000000` once aborted the process on an 800 GB allocation:
/// k and ef beyond the set's size are clamped to it, on the graph, on an exact
/// scan of the partition and on an exact scan of the database, and a number
/// beyond 64 bits is accepted as "all".
#[test]
fn queries_traverse_int8_codes_by_default_and_f32_on_request_with_the_same_exact_cosines() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| stabspace_ok(args, dir.path());
    run(&["gen-scenarios", "--scenario-set-id", "Q", "--count", "2100"]);
    state_of_scenario(dir.path(), "Q", "SYN_000011");
    let traversal = || {
        let status = run(&["index", "status", "--format", "json"]);
        let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
        rows[0]["traversal"].as_str().unwrap_or("null").to_string()
    };
    assert_eq!(traversal(), "int8-per-dimension");
    let query = [
        "find-similar-stab-scenarios",
        "--instrument-id",
        "X.US",
        "--as-of",
        "2025-01-31",
        "--scenario-set-id",
        "Q",
        "--top-k",
        "10",
    ];
    // id -> cosine text, per answer.
    let answer = |extra: &[&str]| -> Vec<(String, String)> {
        run(&[&query[..], extra].concat())
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[4].to_string(), f[1].to_string())
            })
            .collect()
    };
    let (int8, f32_path) = (answer(&[]), answer(&["--no-quantized"]));
    assert_eq!(int8.len(), 10);
    assert_eq!(int8[0], ("SYN_000011".to_string(), "1.000000".to_string()));
    assert_eq!(f32_path[0], int8[0]);
    for (id, cos) in &int8 {
        if let Some((_, c)) = f32_path.iter().find(|(i, _)| i == id) {
            assert_eq!(c, cos, "{id}: exact cosine either way");
        }
    }
    let shared = int8.iter().filter(|a| f32_path.contains(a)).count();
    assert!(shared >= 9, "the two traversals agree on {shared} of 10");
    // A partition built without codes: traversed on f32, same answers as --no-quantized.
    run(&["index", "build", "--scenario-set-id", "Q", "--no-quantized"]);
    assert_eq!(traversal(), "f32");
    assert_eq!(answer(&[]).len(), 10);
    let o = stabspace(&[&query[..], &["--no-quantized", "--exact"]].concat(), dir.path());
    assert!(!o.status.success(), "--no-quantized has no meaning with --exact");
}

#[test]
fn huge_top_k_and_ef_list_every_scenario_of_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let count = 2100; // above the flat threshold: the partition has a graph
    let o = stabspace(
        &[
            "gen-scenarios",
            "--scenario-set-id",
            "H",
            "--count",
            &count.to_string(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    state_of_scenario(dir.path(), "H", "SYN_000007");
    let query = [
        "find-similar-stab-scenarios",
        "--instrument-id",
        "X.US",
        "--as-of",
        "2025-01-31",
        "--scenario-set-id",
        "H",
    ];
    for extra in [
        &["--top-k", "100000000000", "--ef", "100000000000"][..],
        &["--top-k", "100000000000", "--ef", "100000000000000000000000"],
        &["--top-k", "100000000000000000000000", "--exact"],
    ] {
        let o = stabspace(&[&query[..], extra].concat(), dir.path());
        assert!(o.status.success(), "{extra:?}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.len(),
            count + 1,
            "{extra:?}: one line per scenario and the header"
        );
        assert!(
            lines[1].starts_with("1,1.000000,0.000000,H,SYN_000007,"),
            "{extra:?}: {}",
            lines[1]
        );
        let ids: std::collections::BTreeSet<&str> =
            lines[1..].iter().map(|l| l.split(',').nth(4).unwrap()).collect();
        assert_eq!(ids.len(), count, "{extra:?}: every scenario once");
        let cosines: Vec<f64> = lines[1..]
            .iter()
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(cosines.windows(2).all(|w| w[0] >= w[1]), "{extra:?}: best first");
    }
    let o = stabspace(&[&query[..], &["--top-k", "0"]].concat(), dir.path());
    assert!(
        !o.status.success() && text(&o.stderr).contains("at least 1"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn readers_in_other_processes_see_a_whole_partition_while_it_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace(
        &["gen-scenarios", "--scenario-set-id", "C", "--count", "3000"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // One instrument whose STAB state is scenario SYN_000042's vector: its top hit is known.
    state_of_scenario(dir.path(), "C", "SYN_000042");
    let query = [
        "find-similar-stab-scenarios",
        "--instrument-id",
        "X.US",
        "--as-of",
        "2025-01-31",
        "--scenario-set-id",
        "C",
        "--top-k",
        "5",
    ];
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let d = dir.path().to_path_buf();
            std::thread::spawn(move || {
                (0..8)
                    .map(|_| {
                        let o = stabspace(&query, &d);
                        (o.status.success(), text(&o.stdout), text(&o.stderr))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for m in ["8", "16", "12", "16"] {
        let o = stabspace(
            &["index", "build", "--scenario-set-id", "C", "--m", m],
            dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    for r in readers {
        for (ok, out, err) in r.join().unwrap() {
            assert!(ok, "a reader failed during the rebuilds: {err}");
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), 6, "{out}");
            assert!(lines[1].starts_with("1,1.000000,0.000000,C,SYN_000042,"), "{out}");
        }
    }
}

#[test]
fn bench_on_a_generated_partition_reports_exact_recall_and_the_ef_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace(
        &["gen-scenarios", "--scenario-set-id", "B", "--count", "2600"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (csv, svg) = (dir.path().join("bench.csv"), dir.path().join("bench.svg"));
    let o = stabspace(
        &[
            "bench",
            "--scenario-set-id",
            "B",
            "--sample",
            "100",
            "--k",
            "10",
            "--ef",
            "16,64,256",
            "--csv",
            csv.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    assert!(
        table.contains("stabspace-exact") && table.contains("qps_1t"),
        "{table}"
    );
    let rows = crate::support::read_csv(&csv);
    // The exact scan, then each ef on the f32 vectors and on the int8 codes.
    assert_eq!(rows.len(), 7, "{rows:?}");
    let first_line = std::fs::read_to_string(&csv).unwrap();
    assert!(
        first_line.starts_with("engine,n,dim,k,M,efc,ef,recall,qps,p50_us,p99_us,build_s,threads"),
        "{first_line}"
    );
    let exact = &rows[0];
    assert_eq!(exact["engine"], "stabspace-exact");
    // 1 by definition: the bench's truth is this very scan. What makes it a
    // truth is checked below, against a brute force of the test's own.
    assert_eq!(exact["recall"].parse::<f64>().unwrap(), 1.0);
    assert_eq!(exact["n"], "2500", "100 held out of 2600");
    exact_scan_of_the_bench_inputs_equals_a_brute_force(dir.path(), "B", 100);
    for (top, engine) in [(&rows[5], "stabspace"), (&rows[6], "stabspace-i8")] {
        assert_eq!((top["engine"].as_str(), top["ef"].as_str()), (engine, "256"));
        let recall: f64 = top["recall"].parse().unwrap();
        assert!(recall >= 0.95, "{engine} recall at ef 256: {recall}");
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("stabspace-exact"),
        "{plot}"
    );
}

/// The exact scan the bench measures against, on the bench's own inputs (the
/// rows of `set`'s partition, every len/`sample`-th held out as a query, as
/// `--sample` documents), returns a top-10 that an f64 brute force over the
/// remaining rows agrees with (tie-aware, as the bench counts recall).
fn exact_scan_of_the_bench_inputs_equals_a_brute_force(data_dir: &Path, set: &str, sample: usize) {
    let stored =
        stabspace_index::Partition::open(partition_path(&data_dir.join("index"), MODEL, set)).unwrap();
    let step = stored.len() / sample;
    let (mut base, mut held) = (Vec::new(), Vec::new());
    for r in 0..stored.len() {
        let v: Vec<f32> = stored
            .vector(r)
            .iter()
            .map(|&x| (f64::from(x) * stored.norms()[r]) as f32)
            .collect();
        if r % step == 0 && held.len() < sample {
            held.push(v);
        } else {
            base.push(v);
        }
    }
    let scratch = data_dir.join("bench-base.stabidx");
    let mut b = stabspace_index::PartitionBuilder::with_capacity(stored.dim(), base.len()).unwrap();
    for (i, v) in base.iter().enumerate() {
        b.add(&i.to_string(), v, b"").unwrap();
    }
    b.write(&scratch, &BuildParams::default(), "{}", &mut |_, _| {})
        .unwrap();
    let p = stabspace_index::Partition::open(&scratch).unwrap();
    let cos = |a: &[f32], b: &[f32]| {
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x), f64::from(y));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa.sqrt() * bb.sqrt())
    };
    // The bench's truth is the batched scan; its exact row, one query at a time.
    let batched = p.search_batch(&held, 10, None).unwrap();
    for (i, q) in held.iter().enumerate() {
        let mut all: Vec<f64> = base.iter().map(|v| cos(q, v)).collect();
        all.sort_by(|a, b| b.total_cmp(a));
        let kth = all[9];
        for got in [p.search_exact(q, 10).unwrap(), batched[i].clone()] {
            let mut rows: Vec<u32> = got.iter().map(|h| h.row).collect();
            rows.sort_unstable();
            rows.dedup();
            assert_eq!(rows.len(), 10, "query {i}: {got:?}");
            for h in &got {
                let c = cos(q, &base[h.row as usize]);
                assert!(
                    c >= kth - 1e-6,
                    "query {i}: row {} (cosine {c}) is not in the brute-force top 10 (10th: {kth})",
                    h.row
                );
            }
        }
    }
}

/// Opening a fresh partition for a query is constant work: freshness comes
/// from the change counters and the feature space from the provenance, never
/// from a scan of the set. Shown by changing the rows behind the triggers'
/// back (not a supported write: it is how this test sees what is read): rows
/// given two feature spaces, then all deleted, go unseen; before, the query
/// counted the rows (and failed on an empty set) and grouped them by space
/// (and failed on two).
async fn a_query_of_a_fresh_partition_reads_no_row_of_the_set(t: TestDb) {
    let dir = t.path("index");
    gen_scenarios(&t.db, &scenarios("Q", 40), &Quiet).await.unwrap();
    build_default(&t.db, &dir, "Q").await;
    let built = status_of(&t.db, &LocalDir::new(&dir), MODEL, "Q")
        .await
        .unwrap()
        .provenance
        .unwrap();
    assert_eq!((built.feature_space.as_deref(), built.spaces_read), (None, true));
    let unseen = if t.url.starts_with("sqlite:") {
        "DROP TRIGGER joint_scenarios_updated; DROP TRIGGER joint_scenarios_deleted"
    } else {
        "ALTER TABLE joint_embeddings DISABLE TRIGGER USER"
    };
    with_pool!(t.db, p => sqlx::raw_sql(unseen).execute(p).await.map(|_| ())).unwrap();
    let open = || async {
        let space = ScenarioSpace::open(&t.db, &opts(&dir, Some(16), false), MODEL, "Q")
            .await
            .unwrap();
        assert_eq!(space.describe(), "index partition, exact scan");
        assert_eq!(space.len(), 40);
        assert_eq!(space.search(&queries(1)[0], 3).unwrap().len(), 3);
    };
    with_pool!(t.db, p => sqlx::query(
        "UPDATE joint_embeddings SET feature_space = CASE WHEN entity_id < 'SYN_000020' THEN 'stab-v1' \
         ELSE 'stab-v2-signature-h20' END WHERE scope_id = 'Q'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    open().await;
    with_pool!(t.db, p => sqlx::query("DELETE FROM joint_embeddings WHERE scope_id = 'Q'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    open().await;
    // index status, which is not a query, counts: the set is empty.
    assert_eq!(state(&t, &dir, "Q").await, Freshness::Orphaned);
}

/// The two trigger-kept counters of a set (migrations 0002, 0006): `version`
/// moves on every insert, update or delete of a scenario vector, `rewrites`
/// only on updates and deletes, and an upsert of identical vectors moves
/// neither, whether the write comes through the bulk upsert or plain SQL.
async fn inserts_bump_only_version_and_updates_or_deletes_bump_rewrites_too(t: TestDb) {
    let dir = t.path("index");
    let now = || async { counters(&t.db, MODEL, "R").await.unwrap() };
    assert_eq!(now().await, Counters::default(), "a set never written");

    gen_scenarios(&t.db, &scenarios("R", 30), &Quiet).await.unwrap();
    let inserted = now().await;
    assert!(inserted.version > 0, "{inserted}");
    assert_eq!(inserted.rewrites, 0, "inserts are not rewrites: {inserted}");
    build_default(&t.db, &dir, "R").await;
    let built = status_of(&t.db, &LocalDir::new(&dir), MODEL, "R").await.unwrap();
    let recorded = built.provenance.unwrap().fingerprint;
    assert_eq!((recorded.version, recorded.rewrites), (inserted.version, Some(0)));
    assert_eq!(recorded.change_since(inserted), Change::None);

    // The bulk upsert of identical vectors updates no row.
    gen_scenarios(&t.db, &scenarios("R", 30), &Quiet).await.unwrap();
    assert_eq!(now().await, inserted, "identical re-upsert");

    // New rows (and the 30 identical ones again): version only.
    gen_scenarios(&t.db, &scenarios("R", 33), &Quiet).await.unwrap();
    let added = now().await;
    assert!(added.version > inserted.version, "{inserted} → {added}");
    assert_eq!(added.rewrites, 0, "{inserted} → {added}");
    assert_eq!(recorded.change_since(added), Change::OnlyAdded);

    // Changed vectors through the bulk upsert (another seed): rewrites.
    let other = GenScenarios {
        seed: 4,
        ..scenarios("R", 2)
    };
    gen_scenarios(&t.db, &other, &Quiet).await.unwrap();
    let changed = now().await;
    assert!(changed.version > added.version, "{added} → {changed}");
    assert!(changed.rewrites > 0, "{added} → {changed}");
    assert_eq!(recorded.change_since(changed), Change::Rewritten);

    // Changed by another tool, in plain SQL.
    with_pool!(t.db, p => sqlx::query(
        "UPDATE joint_embeddings SET vector = (SELECT vector FROM joint_embeddings WHERE entity_id = 'SYN_000010' \
         AND scope_id = 'R') WHERE entity_id = 'SYN_000011' AND scope_id = 'R'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    let updated = now().await;
    assert!(
        updated.version > changed.version && updated.rewrites > changed.rewrites,
        "{changed} → {updated}"
    );

    // Deleted.
    with_pool!(t.db, p => sqlx::query("DELETE FROM joint_embeddings WHERE entity_id = 'SYN_000012' AND scope_id = 'R'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    let deleted = now().await;
    assert!(
        deleted.version > updated.version && deleted.rewrites > updated.rewrites,
        "{updated} → {deleted}"
    );

    // Another set's writes leave this set's counters alone.
    gen_scenarios(&t.db, &scenarios("OTHER", 5), &Quiet)
        .await
        .unwrap();
    assert_eq!(now().await, deleted);

    // A partition from before `rewrites` was recorded cannot tell an append.
    let old = stabspace::partitions::Fingerprint {
        rewrites: None,
        ..recorded.clone()
    };
    assert_eq!(old.change_since(added), Change::Rewritten);
    assert_eq!(old.change_since(inserted), Change::None);
}

/// `index rebuild` builds each partition again with the M, ef_construction,
/// seed and deterministic setting it records, not the defaults; a flag given
/// overrides that one setting; a set without a partition gets the defaults.
/// The output says which parameters each build used and where they came from.
#[test]
fn rebuild_keeps_each_partitions_recorded_parameters_unless_a_flag_overrides_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| stabspace_ok(args, dir.path());
    let file = partition_path(&dir.path().join("index"), MODEL, "K");
    let params = || {
        let p = stabspace_index::Partition::open(&file).unwrap();
        let prov = stabspace::partitions::Provenance::of(&p).unwrap();
        let info = p.info();
        assert_eq!(
            (
                info.m as usize,
                info.ef_construction as usize,
                info.deterministic,
                info.seed
            ),
            (
                prov.params.m,
                prov.params.ef_construction,
                prov.params.deterministic,
                prov.params.seed
            ),
            "header and provenance agree"
        );
        (prov.params, prov.rows)
    };
    let gen = ["gen-scenarios", "--scenario-set-id", "K", "--count"];
    run(&[
        &gen[..],
        &[
            "60",
            "--m",
            "8",
            "--ef-construction",
            "40",
            "--deterministic",
            "--builder",
            "hnsw_rs",
            "--no-quantized",
        ],
    ]
    .concat());
    let (built, _) = params();
    assert_eq!(
        (built.m, built.ef_construction, built.deterministic),
        (8, 40, true)
    );
    assert_eq!(
        (built.builder.as_deref(), built.quantization.as_deref()),
        (Some("hnsw_rs"), Some("none"))
    );
    // More vectors (the same seed keeps the first 60): the partition is stale.
    run(&[&gen[..], &["75", "--no-index"]].concat());

    let out = run(&["index", "rebuild"]);
    assert!(
        out.contains(&format!(
            "index {MODEL} / K: rebuilding with M 8 (recorded), ef_construction 40 (recorded), seed {} \
             (recorded), deterministic (recorded), builder hnsw_rs (recorded), quantisation none (recorded)",
            built.seed
        )),
        "{out}"
    );
    let (kept, rows) = params();
    assert_eq!(rows, 75);
    assert_eq!(kept, built, "recorded parameters kept");

    // A flag overrides its setting only.
    let out = run(&["index", "rebuild", "--all", "--m", "12"]);
    assert!(
        out.contains("M 12 (--m), ef_construction 40 (recorded)") && out.contains("deterministic (recorded)"),
        "{out}"
    );
    let (p, _) = params();
    assert_eq!((p.m, p.ef_construction, p.deterministic), (12, 40, true));
    let out = run(&["index", "rebuild", "--all", "--deterministic", "false"]);
    assert!(
        out.contains("M 12 (recorded)") && out.contains("parallel (--deterministic)"),
        "{out}"
    );
    let (p, _) = params();
    assert_eq!((p.m, p.ef_construction, p.deterministic), (12, 40, false));
    // Codes on, then off again; the builder stays the recorded one.
    let out = run(&["index", "rebuild", "--all", "--quantized"]);
    assert!(
        out.contains("builder hnsw_rs (recorded), quantisation int8-per-dimension (--quantized)"),
        "{out}"
    );
    // (75 rows: a flat file, so no codes are written; the setting is recorded.)
    let (p, _) = params();
    assert_eq!(p.quantization.as_deref(), Some("int8-per-dimension"));
    let out = run(&["index", "rebuild", "--all", "--quantized", "false"]);
    assert!(out.contains("quantisation none (--quantized)"), "{out}");
    let (p, _) = params();
    assert_eq!(
        (p.builder.as_deref(), p.quantization.as_deref()),
        (Some("hnsw_rs"), Some("none"))
    );

    // No partition: the defaults of `index build`.
    run(&["index", "drop", "--scenario-set-id", "K"]);
    let out = run(&["index", "rebuild"]);
    let d = BuildParams::default();
    assert!(
        out.contains(&format!(
            "rebuilding with M {} (default), ef_construction {} (default), seed {} (default), parallel \
             (default), builder stabspace (default), quantisation int8-per-dimension (default)",
            d.m, d.ef_construction, d.seed
        )),
        "{out}"
    );
    let (p, _) = params();
    assert_eq!(
        (p.m, p.ef_construction, p.deterministic),
        (d.m, d.ef_construction, false)
    );
}

/// The rows of a partition file by id: (row, normalised vector).
fn rows_by_id(p: &stabspace_index::Partition) -> std::collections::HashMap<String, Vec<f32>> {
    (0..p.len())
        .map(|r| (p.id(r).unwrap().to_string(), p.vector(r).to_vec()))
        .collect()
}

/// A rebuild that may append inserts only the rows a set gained into the
/// existing graph (`index status` predicts it, the provenance records it),
/// and builds in full as soon as a stored row was changed or deleted, so
/// neither survives in the file.
async fn a_rebuild_appends_what_a_set_only_gained_and_builds_in_full_after_a_change_or_delete(t: TestDb) {
    let dir = t.path("index");
    // A graph even at a few hundred rows.
    let params = BuildParams {
        flat_threshold: 0,
        ..BuildParams::default()
    };
    let rebuild = || async {
        build(
            &t.db,
            &LocalDir::new(&dir),
            MODEL,
            "A",
            &params,
            BuildMode::AppendIfOnlyGained,
            &Quiet,
        )
        .await
        .unwrap()
        .provenance
    };
    let next = || async {
        status_of(&t.db, &LocalDir::new(&dir), MODEL, "A")
            .await
            .unwrap()
            .next_rebuild
    };
    gen_scenarios(&t.db, &scenarios("A", 300), &Quiet).await.unwrap();
    let first = rebuild().await;
    assert_eq!(first.build, Some(BuildKind::Full));
    assert_eq!(
        first.full_build_reason.as_deref(),
        Some("there was no partition to extend")
    );
    assert_eq!(next().await, "none");

    // 30 new scenarios, the 300 rewritten identical: an append of 30.
    gen_scenarios(&t.db, &scenarios("A", 330), &Quiet).await.unwrap();
    assert_eq!(next().await, "append 30 row(s)");
    let appended = rebuild().await;
    assert_eq!(
        (appended.build, appended.appended_rows),
        (Some(BuildKind::Append), Some(30))
    );
    assert_eq!(appended.rows, 330);
    assert!(appended.calibration.is_some(), "an append is calibrated again");
    let path = partition_path(&dir, MODEL, "A");
    let p = stabspace_index::Partition::open(&path).unwrap();
    for row in 300..330 {
        let hit = &p.search(p.vector(row), 1, 64).unwrap()[0];
        assert_eq!(
            hit.row as usize, row,
            "appended row {row} is found by its own vector"
        );
    }
    assert_eq!(state(&t, &dir, "A").await, Freshness::Fresh);

    // One vector changed by another tool: a full build, with the new vector.
    with_pool!(t.db, p => sqlx::query(
        "UPDATE joint_embeddings SET vector = (SELECT vector FROM joint_embeddings WHERE entity_id = 'SYN_000001' \
         AND scope_id = 'A') WHERE entity_id = 'SYN_000005' AND scope_id = 'A'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    assert_eq!(next().await, "full: rows were changed or removed");
    let changed = rebuild().await;
    assert_eq!(changed.build, Some(BuildKind::Full));
    assert!(
        changed
            .full_build_reason
            .as_deref()
            .unwrap_or("")
            .contains("1 of the partition's 330 rows"),
        "{:?}",
        changed.full_build_reason
    );
    let rows = rows_by_id(&stabspace_index::Partition::open(&path).unwrap());
    assert_eq!(
        rows["SYN_000005"], rows["SYN_000001"],
        "the changed vector is the one in the file"
    );

    // New rows and a deleted one: a full build without the deleted row.
    gen_scenarios(&t.db, &scenarios("A", 340), &Quiet).await.unwrap();
    with_pool!(t.db, p => sqlx::query("DELETE FROM joint_embeddings WHERE entity_id = 'SYN_000007' AND scope_id = 'A'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    assert_eq!(next().await, "full: rows were changed or removed");
    let deleted = rebuild().await;
    assert_eq!((deleted.build, deleted.rows), (Some(BuildKind::Full), 339));
    let rows = rows_by_id(&stabspace_index::Partition::open(&path).unwrap());
    assert!(!rows.contains_key("SYN_000007"), "the deleted row is gone");

    // Other parameters: full, and said why.
    gen_scenarios(&t.db, &scenarios("A", 345), &Quiet).await.unwrap();
    let other = BuildParams {
        m: 8,
        ..params.clone()
    };
    let b = build(
        &t.db,
        &LocalDir::new(&dir),
        MODEL,
        "A",
        &other,
        BuildMode::AppendIfOnlyGained,
        &Quiet,
    )
    .await
    .unwrap()
    .provenance;
    assert_eq!(b.build, Some(BuildKind::Full));
    assert!(b.full_build_reason.unwrap().contains("build parameters changed"));
}

/// Without --ef, a query searches with the breadth the partition's
/// calibration gives for the recall asked (0.95 by default); a higher target
/// never gets a smaller breadth.
async fn queries_search_with_the_calibrated_breadth_for_the_recall_asked(t: TestDb) {
    let dir = t.path("index");
    gen_scenarios(&t.db, &scenarios("C", 400), &Quiet).await.unwrap();
    let params = BuildParams {
        flat_threshold: 0,
        ..BuildParams::default()
    };
    let built = build(
        &t.db,
        &LocalDir::new(&dir),
        MODEL,
        "C",
        &params,
        BuildMode::Full,
        &Quiet,
    )
    .await
    .unwrap();
    let c = built.provenance.calibration.expect("calibrated");
    assert_eq!(c.ef_for_recall.len(), 4);
    let p = stabspace_index::Partition::open(partition_path(&dir, MODEL, "C")).unwrap();
    let mut efs = Vec::new();
    for recall in [0.5, 0.9, 0.95, 0.99] {
        let (ef, _) = stabspace::nearest::calibrated_ef(&p, recall).unwrap();
        let o = SearchOpts {
            recall: Some(recall),
            ..opts(&dir, None, false)
        };
        let space = ScenarioSpace::open(&t.db, &o, MODEL, "C").await.unwrap();
        assert_eq!(
            space.describe(),
            format!(
                "index partition, ef {} (calibrated for recall@10 {recall}), int8 traversal, exact re-rank",
                ef.min(400)
            )
        );
        efs.push(ef);
    }
    assert!(efs.windows(2).all(|w| w[0] <= w[1]), "breadths {efs:?}");
    // The provenance records the breadth the file's calibration gives for 0.95.
    assert_eq!(c.ef_for_recall["0.95"], Some(efs[2]), "{c:?}");
    // The default is 0.95.
    let space = ScenarioSpace::open(&t.db, &opts(&dir, None, false), MODEL, "C")
        .await
        .unwrap();
    assert!(
        space
            .describe()
            .contains("(calibrated for recall@10 0.95), int8 traversal"),
        "{}",
        space.describe()
    );
}
