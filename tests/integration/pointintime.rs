//! Point-in-time search: a backtest day sees only the scenarios known
//! before it. Each known-from date is checked against an independent
//! computation from the generated CSV files, each filtered answer against a
//! brute-force ranking restricted to the admissible scenarios, on both
//! backends, through the database scan and through partitions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value as Json;
use stabspace::diagnostics::{
    backfill_backtest_metrics, backfill_portfolio_metrics, find_similar, MetricsBackfill,
};
use stabspace::gen_scenarios::{gen_scenarios, GenScenarios, Market};
use stabspace::import::{import_file, ImportKind};
use stabspace::joint::{backfill_joint_scenarios, ScenarioProjection, Weights};
use stabspace::nearest::{AnsweredBy, PartitionCache, ScenarioSpace, SearchOpts};
use stabspace::partitions::{build, BuildMode, LocalDir, PartitionStore, Provenance};
use stabspace::pointintime::{QueryFilter, ScenarioFilter};
use stabspace::progress::Quiet;
use stabspace::storage::joint::joint_scenarios_page;
use stabspace::storage::reports::risk_metrics;
use stabspace::storage::Db;
use stabspace::synth::{HISTORICAL_SET, MONTE_CARLO_SET};
use stabspace_index::{BuildParams, Partition, PartitionBuilder};

use crate::both_backends;
use crate::joint::{pipeline, JOINT};
use crate::support::{read_csv, TestDb, DB_SCAN};

both_backends!(
    windows_are_known_from_the_last_day_of_their_path_and_never_returned_before_it,
    a_known_from_column_of_the_scenarios_csv_overrides_the_computed_date,
    the_filtered_answer_is_the_exact_ranking_of_the_admissible_scenarios_at_every_selectivity,
    the_metrics_backfill_skips_days_with_nothing_admissible_and_records_point_in_time,
    an_old_partition_without_attributes_falls_back_to_an_exact_filtered_scan,
    rows_added_since_the_build_are_filtered_too,
);

fn point_in_time(base: SearchOpts) -> SearchOpts {
    SearchOpts {
        filter: QueryFilter {
            point_in_time: true,
            ..Default::default()
        },
        ..base
    }
}

/// A local partition store under `dir` and the search options through it.
fn partitions(dir: &Path) -> (LocalDir, SearchOpts) {
    let store = LocalDir::new(dir);
    let opts = SearchOpts {
        partitions: Some(Arc::new(PartitionCache::local(dir))),
        ..DB_SCAN
    };
    (store, opts)
}

/// (id, vector, known_from, shock_type, severity) of every STAB scenario vector of a set.
type Row = (
    String,
    Vec<f32>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
);

async fn rows(db: &Db, model: &str, set: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = joint_scenarios_page(db, model, set, after.as_deref(), 5000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.scenario_id.clone());
        for s in page {
            let v = s
                .vector
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            out.push((s.scenario_id, v, s.known_from, s.shock_type, s.severity));
        }
    }
    out
}

/// The exact top-k ids among `admit`ted rows by cosine in f64, ties by id, computed here.
fn brute_force(rows: &[Row], q: &[f32], k: usize, admit: impl Fn(&Row) -> bool) -> Vec<(String, f64)> {
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    let qn = norm(q);
    let mut scored: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| admit(r))
        .map(|r| {
            let dot: f64 =
                r.1.iter()
                    .zip(q)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
            (r.0.clone(), dot / (norm(&r.1) * qn))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}

async fn windows_are_known_from_the_last_day_of_their_path_and_never_returned_before_it(t: TestDb) {
    let m = pipeline(&t).await;
    // Independently: each window's first day and path length from the CSV
    // files, counted on the market's trading days.
    let file = |kind| {
        m.g.files
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, p, _)| p.clone())
            .unwrap()
    };
    let mut days: HashMap<String, usize> = HashMap::new();
    for r in read_csv(&file(ImportKind::ScenarioPaths)) {
        if r["scenario_set_id"] == HISTORICAL_SET {
            let d: usize = r["day_index"].parse().unwrap();
            let e = days.entry(r["scenario_id"].clone()).or_default();
            *e = (*e).max(d + 1);
        }
    }
    let mut expected: BTreeMap<String, NaiveDate> = BTreeMap::new();
    for r in read_csv(&file(ImportKind::Scenarios)) {
        let date: NaiveDate = r["scenario_date"].parse().unwrap();
        let want = if r["scenario_set_id"] == HISTORICAL_SET {
            let start = m.dates.iter().position(|&d| d == date).unwrap();
            m.dates[start + days[&r["scenario_id"]] - 1]
        } else {
            date
        };
        expected.insert(format!("{}/{}", r["scenario_set_id"], r["scenario_id"]), want);
    }
    for set in [HISTORICAL_SET, MONTE_CARLO_SET] {
        for (id, _, known, _, _) in rows(&t.db, JOINT, set).await {
            assert_eq!(known, Some(expected[&format!("{set}/{id}")]), "{set} {id}");
        }
    }
    let windows = rows(&t.db, JOINT, HISTORICAL_SET).await;
    assert!(windows.len() >= 2, "the market plants windows");

    // Point-in-time answers, from the database and from a partition: only
    // windows whose last day is before the query's date, every one of them,
    // ranked as the brute force ranks them.
    let (store, through) = partitions(&t.dir.path().join("index"));
    build(
        &t.db,
        &store,
        JOINT,
        HISTORICAL_SET,
        &BuildParams::default(),
        BuildMode::Full,
        &Quiet,
    )
    .await
    .unwrap();
    let mut answered = 0;
    let mut refused = 0;
    for &d in &m.state_dates {
        for opts in [point_in_time(DB_SCAN), point_in_time(through.clone())] {
            let found = find_similar(&t.db, &opts, "SYN0001.US", d, JOINT, HISTORICAL_SET, 50).await;
            let admissible = windows.iter().filter(|w| w.2.unwrap() < d).count();
            match found {
                Ok(f) => {
                    answered += 1;
                    let want = brute_force(&windows, &f.state, 50, |w| w.2.unwrap() < d);
                    let got: Vec<&str> = f.hits.iter().map(|h| h.scenario_id.as_str()).collect();
                    let want_ids: Vec<&str> = want.iter().map(|w| w.0.as_str()).collect();
                    assert_eq!(got, want_ids, "on {d}");
                    for h in &f.hits {
                        assert!(
                            h.known_from.unwrap() < d,
                            "{} known from {:?}, asked on {d}",
                            h.scenario_id,
                            h.known_from
                        );
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert_eq!(admissible, 0, "on {d}: {e}");
                    let e = e.to_string();
                    assert!(
                        e.contains("none of its") && e.contains(&format!("known before {d}")),
                        "{e}"
                    );
                }
            }
        }
    }
    assert!(
        answered > 0 && refused > 0,
        "{answered} answered, {refused} refused: both cases are exercised"
    );
}

async fn a_known_from_column_of_the_scenarios_csv_overrides_the_computed_date(t: TestDb) {
    let m = pipeline(&t).await;
    let windows = rows(&t.db, JOINT, HISTORICAL_SET).await;
    let (id, _, computed, _, _) = &windows[0];
    let later = computed.unwrap() + chrono::Duration::days(400);
    // The scenarios file again, with a known_from column set on one row.
    let path =
        m.g.files
            .iter()
            .find(|(k, _, _)| *k == ImportKind::Scenarios)
            .map(|(_, p, _)| p.clone())
            .unwrap();
    let mut text = String::from("scenario_set_id,scenario_id,scenario_date,shock_type,severity,known_from\n");
    for r in read_csv(&path) {
        let k = if &r["scenario_id"] == id {
            later.to_string()
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{},{},{},{},{},{k}\n",
            r["scenario_set_id"], r["scenario_id"], r["scenario_date"], r["shock_type"], r["severity"]
        ));
    }
    let with = t.dir.path().join("scenarios_known_from.csv");
    std::fs::write(&with, text).unwrap();
    import_file(&t.db, ImportKind::Scenarios, &with, &Quiet)
        .await
        .unwrap();
    let projection = ScenarioProjection {
        scenario_set_id: HISTORICAL_SET.into(),
        scenario_model_id: "num-scenario-core-v1".into(),
        joint_model_id: JOINT.into(),
        weights: Weights::default(),
        limit: None,
        replace: false,
    };
    backfill_joint_scenarios(&t.db, &projection, &Quiet)
        .await
        .unwrap();
    for (other, _, known, _, _) in rows(&t.db, JOINT, HISTORICAL_SET).await {
        let before = windows.iter().find(|w| w.0 == other).unwrap().2;
        if &other == id {
            assert_eq!(known, Some(later), "the override wins");
        } else {
            assert_eq!(known, before, "{other} keeps its computed date");
        }
    }
    // A bad date in the column is refused naming the file, line and column.
    std::fs::write(
        &with,
        format!("scenario_set_id,scenario_id,scenario_date,shock_type,severity,known_from\n{HISTORICAL_SET},{id},2020-01-02,historical_window,HIGH,2020-13-01\n"),
    )
    .unwrap();
    let e = import_file(&t.db, ImportKind::Scenarios, &with, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scenarios_known_from.csv:2: column \"known_from\""),
        "{e}"
    );
}

async fn the_filtered_answer_is_the_exact_ranking_of_the_admissible_scenarios_at_every_selectivity(
    t: TestDb,
) {
    // Above the flat threshold, so that the partition has a graph.
    let spec = GenScenarios {
        scenario_set_id: "PIT".into(),
        count: 4000,
        model_id: JOINT.into(),
        seed: 11,
        scenario_date: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
        spread_years: 20,
    };
    gen_scenarios(&t.db, &spec, &Quiet).await.unwrap();
    let all = rows(&t.db, JOINT, "PIT").await;
    let mut known: Vec<NaiveDate> = all.iter().map(|r| r.2.unwrap()).collect();
    known.sort();
    assert!(
        known[0] < NaiveDate::from_ymd_opt(2005, 6, 1).unwrap(),
        "spread over 20 years: {}",
        known[0]
    );
    let (store, through) = partitions(&t.dir.path().join("index"));
    build(
        &t.db,
        &store,
        JOINT,
        "PIT",
        &BuildParams::default(),
        BuildMode::Full,
        &Quiet,
    )
    .await
    .unwrap();
    let filtered = QueryFilter {
        filter: ScenarioFilter {
            known_before: Some(known[0]),
            ..Default::default()
        },
        ..Default::default()
    };
    let graph = ScenarioSpace::open(
        &t.db,
        &SearchOpts {
            filter: filtered.clone(),
            ..through
        },
        JOINT,
        "PIT",
    )
    .await
    .unwrap();
    assert_eq!(graph.answered_by(), AnsweredBy::Index);
    assert!(graph.partition().unwrap().has_graph());
    let exact = ScenarioSpace::open(
        &t.db,
        &SearchOpts {
            filter: filtered,
            ..DB_SCAN
        },
        JOINT,
        "PIT",
    )
    .await
    .unwrap();
    let market = Market::simulate(&mut ChaCha8Rng::seed_from_u64(99));
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let queries: Vec<Vec<f32>> = (0..30).map(|_| market.scenario(&mut rng)).collect();
    for share in [0.01, 0.1, 0.5, 1.0] {
        let before = if share >= 1.0 {
            *known.last().unwrap() + chrono::Duration::days(1)
        } else {
            known[(known.len() as f64 * share) as usize]
        };
        let admit = |r: &Row| r.2.unwrap() < before;
        let f = ScenarioFilter {
            known_before: Some(before),
            ..Default::default()
        };
        let (mut found, mut wanted) = (0, 0);
        for q in &queries {
            let want = brute_force(&all, q, 10, admit);
            let a = exact.search_filtered(q, 10, &f).unwrap();
            let got: Vec<&str> = a.hits.iter().map(|h| h.scenario_id.as_str()).collect();
            let want_ids: Vec<&str> = want.iter().map(|w| w.0.as_str()).collect();
            assert_eq!(got, want_ids, "exact at {share}");
            assert_eq!(a.admitted, all.iter().filter(|r| admit(r)).count());
            let g = graph.search_filtered(q, 10, &f).unwrap();
            assert_eq!(
                g.admitted, a.admitted,
                "the partition admits what the database does"
            );
            for h in &g.hits {
                assert!(h.known_from.unwrap() < before, "{} at {share}", h.scenario_id);
            }
            wanted += want.len();
            found += g
                .hits
                .iter()
                .filter(|h| want_ids.contains(&h.scenario_id.as_str()))
                .count();
        }
        let recall = found as f64 / wanted as f64;
        assert!(
            recall >= 0.95,
            "recall@10 {recall:.3} at selectivity {share} (default recall 0.95)"
        );
    }
    // Shock type and severity filters: every hit matches, and the exact answer is the brute force's.
    let f = ScenarioFilter {
        shock_types: vec!["synthetic".into()],
        min_severity: Some(3.0),
        ..Default::default()
    };
    let admit = |r: &Row| r.3.as_deref() == Some("synthetic") && r.4.as_deref() == Some("HIGH");
    assert!(all.iter().any(admit) && !all.iter().all(admit));
    for q in &queries[..5] {
        let want = brute_force(&all, q, 10, admit);
        let got = exact.search_filtered(q, 10, &f).unwrap();
        let ids: Vec<&str> = got.hits.iter().map(|h| h.scenario_id.as_str()).collect();
        assert_eq!(ids, want.iter().map(|w| w.0.as_str()).collect::<Vec<_>>());
        let g = graph.search_filtered(q, 10, &f).unwrap();
        let ok: std::collections::HashSet<&str> =
            all.iter().filter(|r| admit(r)).map(|r| r.0.as_str()).collect();
        assert!(g.hits.iter().all(|h| ok.contains(h.scenario_id.as_str())));
    }
    let none = ScenarioFilter {
        shock_types: vec!["NO_SUCH_TYPE".into()],
        ..Default::default()
    };
    let g = graph.search_filtered(&queries[0], 10, &none).unwrap();
    assert_eq!((g.admitted, g.hits.len()), (0, 0));
}

async fn the_metrics_backfill_skips_days_with_nothing_admissible_and_records_point_in_time(t: TestDb) {
    let m = pipeline(&t).await;
    let windows: HashMap<String, NaiveDate> = rows(&t.db, JOINT, HISTORICAL_SET)
        .await
        .into_iter()
        .map(|r| (r.0, r.2.unwrap()))
        .collect();
    let first_known = *windows.values().min().unwrap();
    let spec = |search| MetricsBackfill {
        portfolio_id: None,
        scenario_set_id: HISTORICAL_SET.into(),
        model_id: JOINT.into(),
        start: m.g.first_date,
        end: m.g.last_date,
        search,
        min_coverage: 0.0,
        recall_sample: 0.0,
    };
    let s = backfill_portfolio_metrics(&t.db, &spec(point_in_time(DB_SCAN)), &Quiet)
        .await
        .unwrap();
    let reason = "point-in-time: no scenario of the set was known before the day";
    let skipped = s.skipped.get(reason).cloned().unwrap_or_default();
    assert!(!skipped.is_empty() && s.computed > 0, "{s}");
    assert!(skipped.iter().all(|(_, d)| *d <= first_known), "{s}");
    let pid = &skipped[0].0;
    let mut scored = 0;
    for (date, text) in risk_metrics(&t.db, pid, m.g.first_date, m.g.last_date)
        .await
        .unwrap()
    {
        let r: Json = serde_json::from_str(&text).unwrap();
        // Days without a closest scenario were skipped (this reason or another).
        if let Some(id) = r.get("stab_closest_scenario_id").and_then(Json::as_str) {
            {
                scored += 1;
                assert!(
                    windows[id] < date,
                    "{date}: closest {id} known from {}",
                    windows[id]
                );
                assert_eq!(r["stab_point_in_time"], Json::Bool(true));
                assert_eq!(
                    r["stab_closest_scenario_known_from"],
                    Json::String(windows[id].to_string())
                );
            }
        }
    }
    assert!(scored > 0);
    let b = backfill_backtest_metrics(&t.db, None, None).await.unwrap();
    for r in &b.runs {
        assert_eq!(r.patch["stab_point_in_time"], Json::Bool(true), "{b}");
        assert_eq!(r.patch["stab_num_days_not_point_in_time"], 0);
    }
    // Scored again against every scenario: the backtest summary says so.
    let s = backfill_portfolio_metrics(&t.db, &spec(DB_SCAN), &Quiet)
        .await
        .unwrap();
    assert!(s.to_string().contains("not point-in-time"), "{s}");
    let b = backfill_backtest_metrics(&t.db, None, None).await.unwrap();
    assert!(b
        .runs
        .iter()
        .any(|r| r.patch["stab_num_days_not_point_in_time"].as_u64() > Some(0)));
    assert!(b.to_string().contains("were not scored point-in-time"), "{b}");
}

async fn an_old_partition_without_attributes_falls_back_to_an_exact_filtered_scan(t: TestDb) {
    let spec = GenScenarios {
        scenario_set_id: "OLD".into(),
        count: 300,
        model_id: JOINT.into(),
        seed: 3,
        scenario_date: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
        spread_years: 10,
    };
    gen_scenarios(&t.db, &spec, &Quiet).await.unwrap();
    let dir = t.dir.path().join("index");
    let (store, through) = partitions(&dir);
    build(
        &t.db,
        &store,
        JOINT,
        "OLD",
        &BuildParams::default(),
        BuildMode::Full,
        &Quiet,
    )
    .await
    .unwrap();
    // The same rows and provenance written as a build before point-in-time search did.
    let path = store.locate(JOINT, "OLD");
    let p = Partition::open(&path).unwrap();
    assert!(p.has_attrs());
    let mut prov = Provenance::of(&p).unwrap();
    prov.shock_types = None;
    let mut b = PartitionBuilder::new(p.dim()).unwrap();
    for row in 0..p.len() {
        let v: Vec<f32> = p.vector(row).iter().map(|&x| x * p.norms()[row] as f32).collect();
        b.add(p.id(row).unwrap(), &v, p.payload(row).unwrap()).unwrap();
    }
    drop(p);
    b.write(
        &path,
        &BuildParams::default(),
        &serde_json::to_string(&prov).unwrap(),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(!Partition::open(&path).unwrap().has_attrs());

    let all = rows(&t.db, JOINT, "OLD").await;
    let before = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let f = ScenarioFilter {
        known_before: Some(before),
        ..Default::default()
    };
    let opts = SearchOpts {
        filter: QueryFilter {
            filter: f.clone(),
            ..Default::default()
        },
        ..through.clone()
    };
    let space = ScenarioSpace::open(&t.db, &opts, JOINT, "OLD").await.unwrap();
    assert_eq!(space.answered_by(), AnsweredBy::ExactScan, "not the partition");
    let q = &all[0].1;
    let got = space.search_filtered(q, 10, &f).unwrap();
    let want = brute_force(&all, q, 10, |r| r.2.unwrap() < before);
    assert_eq!(
        got.hits.iter().map(|h| h.scenario_id.clone()).collect::<Vec<_>>(),
        want.into_iter().map(|w| w.0).collect::<Vec<_>>()
    );
    // Unfiltered queries still use it.
    let plain = ScenarioSpace::open(&t.db, &through, JOINT, "OLD").await.unwrap();
    assert_eq!(plain.answered_by(), AnsweredBy::Index);
}

/// The flags as a user runs them, on the demo's database: the listing's
/// known_from column, --point-in-time and the explicit filters, a day with
/// nothing admissible, a bad severity.
#[test]
fn the_cli_filters_point_in_time_and_says_when_nothing_was_known() {
    use crate::support::{stabspace, stabspace_ok, text};
    const V2: &str = "joint-stab-fragility-v2";
    let dir = tempfile::tempdir().unwrap();
    stabspace_ok(&["demo", "--instruments", "12", "--days", "260"], dir.path());
    let listing = stabspace_ok(
        &[
            "show-joint-stab-fragility-scenarios",
            "--scenario-set-id",
            HISTORICAL_SET,
            "--model-id",
            V2,
        ],
        dir.path(),
    );
    let mut known: Vec<(String, NaiveDate)> = Vec::new();
    for line in listing.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (as_of, k): (NaiveDate, NaiveDate) = (f[2].parse().unwrap(), f[6].parse().unwrap());
        assert!(k > as_of, "a window is known after its first day: {line}");
        known.push((f[1].to_string(), k));
    }
    known.sort_by_key(|k| k.1);
    // The instrument's state dates (month ends): a day after the second
    // window ended and before the last one did, and one before any ended.
    let states = stabspace_ok(
        &[
            "show-joint-stab-fragility-states",
            "--start",
            "2000-01-01",
            "--end",
            "2100-01-01",
            "--instrument-id",
            "SYN0002.US",
            "--model-id",
            V2,
        ],
        dir.path(),
    );
    let dates: Vec<NaiveDate> = states.lines().skip(1).map(|l| l[..10].parse().unwrap()).collect();
    let day = dates
        .iter()
        .find(|&&d| d > known[1].1 && d <= known[known.len() - 1].1)
        .expect("a state date between the windows' ends")
        .to_string();
    let early = dates
        .iter()
        .find(|&&d| d <= known[0].1)
        .expect("a state date before any window ended")
        .to_string();
    let find = |extra: &[&str]| {
        let mut args = vec![
            "find-similar-stab-scenarios",
            "--instrument-id",
            "SYN0002.US",
            "--as-of",
            &day,
            "--scenario-set-id",
            HISTORICAL_SET,
            "--model-id",
            V2,
            "--top-k",
            "50",
        ];
        args.extend_from_slice(extra);
        stabspace(&args, dir.path())
    };
    let all = find(&[]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    assert_eq!(
        text(&all.stdout).lines().count() - 1,
        known.len(),
        "every window without the flag"
    );
    assert!(
        want_some_not_all(&known, &day),
        "{day}: some windows known before it, not all"
    );
    let o = find(&["--point-in-time"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let ids: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap())
        .collect();
    let mut want: Vec<&str> = known
        .iter()
        .filter(|k| k.1.to_string() < day)
        .map(|k| k.0.as_str())
        .collect();
    let mut got = ids.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{out}");
    for line in out.lines().skip(1) {
        assert!(line.rsplit(',').next().unwrap() < day.as_str(), "{line}");
    }
    // --known-before: the same bound, given as a date.
    let o = find(&["--known-before", &day]);
    assert_eq!(text(&o.stdout), out);
    // A day before any window ended: said plainly, non-zero exit.
    let o = find(&["--known-before", &early]);
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(
        e.contains("none of its") && e.contains(&format!("known before {early}")),
        "{e}"
    );
    // Shock type and severity: the Monte-Carlo set's rows of one type only.
    let o = stabspace_ok(
        &[
            "find-similar-stab-scenarios",
            "--instrument-id",
            "SYN0002.US",
            "--as-of",
            &day,
            "--scenario-set-id",
            MONTE_CARLO_SET,
            "--model-id",
            V2,
            "--top-k",
            "500",
            "--shock-type",
            "EQUITY_CRASH",
            "--min-severity",
            "high",
        ],
        dir.path(),
    );
    let scenarios = std::fs::read_to_string(dir.path().join("demo/scenarios.csv")).unwrap();
    let want: std::collections::BTreeSet<String> = scenarios
        .lines()
        .filter(|l| l.starts_with(MONTE_CARLO_SET) && l.ends_with(",EQUITY_CRASH,HIGH"))
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    let got: std::collections::BTreeSet<String> = o
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    assert!(!got.is_empty(), "{o}");
    // eval-retrieval --point-in-time: each window competes only with the
    // windows known before its query date, so fewer scenarios are ranked.
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval-retrieval",
            "--scenario-set-id",
            HISTORICAL_SET,
            "--market-id",
            "US_EQ",
            "--joint-model-id",
            V2,
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let r: serde_json::Value = serde_json::from_str(&stabspace_ok(&args, dir.path())).unwrap();
        r
    };
    let plain = eval(&[]);
    let pit = eval(&["--point-in-time"]);
    assert!(plain["filter"].is_null(), "{plain}");
    assert!(
        pit["filter"].as_str().unwrap().starts_with("point-in-time"),
        "{pit}"
    );
    let chance = |r: &serde_json::Value| r["scores"][0]["chance_at_3"].as_f64().unwrap();
    assert!(chance(&pit) > chance(&plain), "fewer competitors: {pit}");
    let o = stabspace(
        &[
            "find-similar-stab-scenarios",
            "--min-severity",
            "bad",
            "--instrument-id",
            "X",
            "--as-of",
            &day,
            "--scenario-set-id",
            "S",
        ],
        dir.path(),
    );
    assert!(
        text(&o.stderr).contains("is not a severity"),
        "{}",
        text(&o.stderr)
    );
}

/// Whether some but not all windows were known before `day`.
fn want_some_not_all(known: &[(String, NaiveDate)], day: &str) -> bool {
    let n = known.iter().filter(|k| k.1.to_string().as_str() < day).count();
    n > 0 && n < known.len()
}

async fn rows_added_since_the_build_are_filtered_too(t: TestDb) {
    let spec = |count| GenScenarios {
        scenario_set_id: "GROW".into(),
        count,
        model_id: JOINT.into(),
        seed: 21,
        scenario_date: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
        spread_years: 20,
    };
    gen_scenarios(&t.db, &spec(2500), &Quiet).await.unwrap();
    let (store, through) = partitions(&t.dir.path().join("index"));
    build(
        &t.db,
        &store,
        JOINT,
        "GROW",
        &BuildParams::default(),
        BuildMode::Full,
        &Quiet,
    )
    .await
    .unwrap();
    // The same seed writes the same first 2,500 rows, and 150 more.
    gen_scenarios(&t.db, &spec(2650), &Quiet).await.unwrap();
    let all = rows(&t.db, JOINT, "GROW").await;
    assert_eq!(all.len(), 2650);
    let before = NaiveDate::from_ymd_opt(2015, 1, 1).unwrap();
    let f = ScenarioFilter {
        known_before: Some(before),
        ..Default::default()
    };
    // A breadth of every row: the partition and its delta are both scanned exactly.
    let opts = SearchOpts {
        ef: Some(10_000),
        filter: QueryFilter {
            filter: f.clone(),
            ..Default::default()
        },
        ..through
    };
    let space = ScenarioSpace::open(&t.db, &opts, JOINT, "GROW").await.unwrap();
    assert_eq!(space.answered_by(), AnsweredBy::IndexDelta);
    let admit = |r: &Row| r.2.unwrap() < before;
    let added: std::collections::HashSet<&str> = all[2500..].iter().map(|r| r.0.as_str()).collect();
    let mut from_delta = 0;
    let queries: Vec<&Row> = all
        .iter()
        .step_by(97)
        .take(20)
        .chain(all[2500..].iter().filter(|r| admit(r)).take(3))
        .collect();
    for r in queries {
        let want = brute_force(&all, &r.1, 10, admit);
        let got = space.search_filtered(&r.1, 10, &f).unwrap();
        assert_eq!(got.admitted, all.iter().filter(|r| admit(r)).count());
        let ids: Vec<&str> = got.hits.iter().map(|h| h.scenario_id.as_str()).collect();
        assert_eq!(ids, want.iter().map(|w| w.0.as_str()).collect::<Vec<_>>());
        from_delta += ids.iter().filter(|i| added.contains(*i)).count();
    }
    assert!(from_delta > 0, "some answers hold rows added since the build");
}
