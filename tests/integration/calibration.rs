//! Recall you can trust: a partition's breadth is calibrated on the queries
//! users send (the joint model's most recent instrument states) when the
//! database holds some, and `index calibrate` redoes that in place when they
//! change, without touching the graph. Real SQLite and PostgreSQL, real files;
//! every recall against brute force.

use std::path::Path;

use chrono::NaiveDate;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stabspace::gen_scenarios::{gen_scenarios, GenScenarios, Market};
use stabspace::partitions::{build, partition_path, status_of, BuildMode, Freshness, LocalDir, Provenance};
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace::with_pool;
use stabspace_index::format::{kind, Header};
use stabspace_index::{BuildParams, CalibrationQueries, Partition};

use crate::both_backends;
use crate::support::{stabspace, text, TestDb};

both_backends!(a_build_calibrates_on_the_recent_states_and_index_calibrate_redoes_it_in_place);

const MODEL: &str = "joint-stab-fragility-v1";
const SET: &str = "C";

/// States of a market the scenarios were not drawn from, each pushed off
/// the scenario manifold by noise: the users' queries sit elsewhere in the
/// space than the rows.
fn states(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let m = Market::simulate(&mut rng);
    (0..n)
        .map(|_| {
            let a = m.scenario(&mut rng);
            let b = m.scenario(&mut rng);
            a.iter().zip(&b).map(|(x, y)| x + 0.7 * y).collect()
        })
        .collect()
}

async fn insert_states(db: &Db, vectors: &[Vec<f32>], date: NaiveDate) {
    for (i, v) in vectors.iter().enumerate() {
        let bytes = stabspace::vector::to_bytes(v);
        with_pool!(db, p => sqlx::query(
            "INSERT INTO joint_embeddings (joint_type, model_id, entity_type, entity_id, scope_id, as_of_date, \
             entity_scope, vector) VALUES ('STAB_FRAGILITY_V0', $1, 'INSTRUMENT', $2, '', $3, '{}', $4)")
            .bind(MODEL)
            .bind(format!("S{i:04}.US"))
            .bind(date)
            .bind(bytes)
            .execute(p).await.map(|_| ()))
        .unwrap();
    }
}

/// Every section's bytes of kind `k` in the file at `path`.
fn section(path: &Path, k: u32) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let header = Header::read(&bytes);
    let s = header.sections[..header.section_count as usize]
        .iter()
        .find(|s| s.kind == k)
        .unwrap_or_else(|| panic!("no section {k}"));
    bytes[s.offset as usize..(s.offset + s.len) as usize].to_vec()
}

/// Tie-aware recall@10 of the partition at `ef` on `queries`, against brute force.
fn recall(p: &Partition, queries: &[Vec<f32>], ef: usize) -> f64 {
    let mut hits = 0;
    for q in queries {
        let exact = p.search_exact(q, 10).unwrap();
        let kth = exact.last().unwrap().cosine;
        hits += p
            .search(q, 10, ef)
            .unwrap()
            .iter()
            .filter(|h| h.cosine >= kth - 1e-6)
            .count();
    }
    hits as f64 / (queries.len() * 10) as f64
}

async fn a_build_calibrates_on_the_recent_states_and_index_calibrate_redoes_it_in_place(t: TestDb) {
    let data = t.path("data");
    let dir = data.join("index");
    let store = LocalDir::new(&dir);
    let g = GenScenarios {
        scenario_set_id: SET.into(),
        count: 3_000,
        model_id: MODEL.into(),
        seed: 11,
        scenario_date: NaiveDate::from_ymd_opt(2020, 3, 16).unwrap(),
        spread_years: 0,
    };
    gen_scenarios(&t.db, &g, &Quiet).await.unwrap();
    let params = BuildParams {
        flat_threshold: 0,
        ..BuildParams::default()
    };
    // No states yet: held-out rows only, and the build says so.
    let built = build(&t.db, &store, MODEL, SET, &params, BuildMode::Full, &Quiet)
        .await
        .unwrap();
    let p = &built.provenance;
    assert!(p.calibration.as_ref().unwrap().on_rows(), "{p:?}");
    assert_eq!(p.calibrations.len(), 1);
    assert!(
        p.calibration_note
            .as_deref()
            .unwrap()
            .contains("no instrument states"),
        "{p:?}"
    );
    assert!(
        built
            .to_string()
            .contains("no instrument states of joint-stab-fragility-v1"),
        "{built}"
    );
    let path = partition_path(&dir, MODEL, SET);
    let level0 = section(&path, kind::LEVEL0);

    // States arrive: two dates of 300, and 300 more of their kind held out.
    let d1 = NaiveDate::from_ymd_opt(2024, 6, 27).unwrap();
    let d2 = NaiveDate::from_ymd_opt(2024, 6, 28).unwrap();
    let all = states(900, 5);
    insert_states(&t.db, &all[..300], d1).await;
    insert_states(&t.db, &all[300..600], d2).await;
    let held_out = &all[600..];

    // `index calibrate` through the binary, as a user runs it.
    let db_args = ["--database-url", t.url.as_str()];
    let run = |args: &[&str]| {
        let mut full: Vec<&str> = db_args.to_vec();
        full.extend_from_slice(args);
        stabspace(&full, &data)
    };
    let calibrate = |extra: &[&str]| {
        let mut args = vec!["index", "calibrate", "--scenario-set-id", SET];
        args.extend_from_slice(extra);
        run(&args)
    };
    let o = calibrate(&[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("recalibrated in place (graph unchanged)"), "{out}");
    assert!(
        out.contains("of 600 joint-stab-fragility-v1 states from 2024-06-27 to 2024-06-28"),
        "{out}"
    );
    assert!(out.contains("(queries use it)"), "{out}");
    assert_eq!(section(&path, kind::LEVEL0), level0, "the graph's bytes changed");
    assert_eq!(
        status_of(&t.db, &store, MODEL, SET).await.unwrap().state,
        Freshness::Fresh
    );
    let part = Partition::open(&path).unwrap();
    let c = part.calibration().unwrap().unwrap();
    assert_eq!((c.queries, c.sample), (CalibrationQueries::Given, 500));
    let prov = Provenance::of(&part).unwrap();
    assert!(prov
        .calibration
        .as_ref()
        .unwrap()
        .queries
        .as_deref()
        .unwrap()
        .contains("states"));
    assert!(prov.calibrated_at.is_some() && prov.calibration_note.is_none());
    // The breadth for 0.95 meets it on states the calibration did not see.
    let ef = c.ef_for(0.95).expect("a breadth reaches 0.95");
    let got = recall(&part, held_out, ef);
    let rows_ef = part.calibrations().unwrap()[0].ef_for(0.95).unwrap();
    println!(
        "states' ef {ef}: {got:.4}; held-out rows' ef {rows_ef}: {:.4}",
        recall(&part, held_out, rows_ef)
    );
    assert!(
        got >= 0.94,
        "ef {ef} calibrated on states gives {got:.4} on held-out states"
    );

    // `index status` says what the calibration was measured on.
    let o = run(&["index", "status", "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("of 600 joint-stab-fragility-v1 states"),
        "{}",
        text(&o.stdout)
    );

    // --as-of picks the states on or before it; before the first: a clear error.
    let o = calibrate(&["--as-of", "2024-06-27"]);
    assert!(
        text(&o.stdout).contains("of 300 joint-stab-fragility-v1 states of 2024-06-27"),
        "{}",
        text(&o.stdout)
    );
    let o = calibrate(&["--as-of", "2024-01-01"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no instrument states of joint-stab-fragility-v1 on or before 2024-01-01"),
        "{}",
        text(&o.stderr)
    );
    // A file of queries; a file that is not whole rows is refused, naming it.
    let file = t.path("q.f32");
    let bytes: Vec<u8> = held_out[..40]
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let o = calibrate(&["--queries", file.to_str().unwrap()]);
    assert!(
        text(&o.stdout).contains("of 40 queries from"),
        "{} {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    std::fs::write(&file, &bytes[..bytes.len() - 4]).unwrap();
    let o = calibrate(&["--queries", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("q.f32") && text(&o.stderr).contains("whole number"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        section(&path, kind::LEVEL0),
        level0,
        "a refused calibration changed the file"
    );

    // A rebuild now calibrates on the states by itself.
    let built = build(&t.db, &store, MODEL, SET, &params, BuildMode::Full, &Quiet)
        .await
        .unwrap();
    let p = &built.provenance;
    assert_eq!(p.calibrations.len(), 2);
    assert!(!p.calibration.as_ref().unwrap().on_rows(), "{p:?}");
    assert!(p.calibration_note.is_none());
}
