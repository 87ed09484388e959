//! Recall watched live (`serve --recall-sample`, the metrics backfill's
//! `--recall-sample`): the sampled recall equals an exact check computed
//! here, the gauge and `GET /v1/partitions` follow a partition degraded on
//! purpose and warn about it (only for queries that asked for a recall),
//! `index status` shows the last observation recorded, a read-only database
//! is said once while serving goes on, and bad flag values are refused.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stabspace_index::Partition;

use crate::both_backends;
use crate::serve::{
    agent, cli, generate, market, metric, partition_file, partitions, post, row_vector, search_url, series,
    Server, GRAPH_SET, MODEL,
};
use crate::support::{stabspace, text, TestDb};

/// A graph so sparse (M 2, ef_construction 2) that no breadth reaches recall 0.9.
const POOR_SET: &str = "GEN_POOR";

fn labels(set: &str) -> String {
    format!("joint_model=\"{MODEL}\",scenario_set=\"{set}\"")
}

/// Wait (at most 60 s) until the server has checked `n` sampled queries of `set`.
fn await_checks(s: &Server, set: &str, n: f64) {
    let a = agent();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let done = series(&a, s, "stabspace_recall_samples_total", &labels(set));
        if done >= n {
            assert_eq!(done, n, "more checks of {set} than sampled queries");
            return;
        }
        assert!(Instant::now() < until, "{done} of {n} queries of {set} checked");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Recall@k counted as the server counts it: a served hit counts when its
/// cosine is at least the exact k-th one minus 1e-6.
fn recall(served: &Value, exact: &[f64], k: usize) -> f64 {
    let kth = exact[k.min(exact.len()) - 1];
    let found = served
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["cosine"].as_f64().unwrap() >= kth - 1e-6)
        .count();
    found.min(k) as f64 / k.min(exact.len()) as f64
}

fn cosines(p: &Partition, q: &[f32], k: usize) -> Vec<f64> {
    p.search_exact(q, k).unwrap().iter().map(|h| h.cosine).collect()
}

/// A query between two rows of the partition (in none of them).
fn between(p: &Partition, i: usize) -> Vec<f32> {
    let (a, b) = (row_vector(p, 2 * i), row_vector(p, 2 * i + 1));
    a.iter().zip(&b).map(|(x, y)| x + 0.7 * y).collect()
}

fn row<'a>(rows: &'a [Value], set: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["scenario_set_id"] == set)
        .unwrap_or_else(|| panic!("no row of {set} in {rows:?}"))
}

fn index_status(t: &TestDb) -> Vec<Value> {
    let v: Value = serde_json::from_str(&cli(t, &["index", "status", "--format", "json"])).unwrap();
    v.as_array().unwrap().clone()
}

both_backends!(unmigrated: sampled_recall_equals_an_exact_check_and_index_status_shows_it);

/// Every query sampled (`--recall-sample 1`): single searches, a batch and a
/// workflow route are each checked once, off the request path; the gauge is
/// the mean of the recalls computed here against the partition's exact scan
/// (within 0.02, the target; in fact to rounding), an exact answer is
/// counted and not checked, and once the server has stopped `index status`
/// shows what it recorded. The metrics backfill records its own.
async fn sampled_recall_equals_an_exact_check_and_index_status_shows_it(t: TestDb) {
    let m = market(&t);
    let p = Partition::open(partition_file(&t, GRAPH_SET)).unwrap();
    let k = 10;
    let queries: Vec<Vec<f32>> = (0..60).map(|i| between(&p, i)).collect();
    let mut s = Server::start(&t, &["--recall-sample", "1"], &[]);
    let a = agent();
    let url = search_url(&s, GRAPH_SET);
    let mut offline = Vec::new();
    for q in &queries[..40] {
        let (status, got) = post(&a, &url, &json!({"vector": q, "k": k}));
        assert_eq!((status, &got["answered_by"]), (200, &json!("index")), "{got}");
        assert!(
            got["ef"].as_u64().is_some_and(|ef| (ef as usize) < p.len()),
            "{got}"
        );
        offline.push(recall(&got["hits"], &cosines(&p, q, k), k));
    }
    let (status, got) = post(&a, &url, &json!({"vectors": &queries[40..], "k": k}));
    assert_eq!(status, 200, "{got}");
    for (r, q) in got["results"].as_array().unwrap().iter().zip(&queries[40..]) {
        offline.push(recall(&r["hits"], &cosines(&p, q, k), k));
    }
    // A workflow route's search of the partition is sampled too.
    let similar = json!({"instrument_id": m.instrument, "as_of": m.day, "model_id": MODEL,
                         "scenario_set_id": GRAPH_SET, "top_k": k});
    let (status, got) = post(&a, &s.url("/v1/similar-scenarios"), &similar);
    assert_eq!(status, 200, "{got}");
    let exact: Value = serde_json::from_str(&cli(
        &t,
        &[
            "find-similar-stab-scenarios",
            "--instrument-id",
            &m.instrument,
            "--as-of",
            &m.day,
            "--scenario-set-id",
            GRAPH_SET,
            "--model-id",
            MODEL,
            "--top-k",
            "10",
            "--exact",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let exact: Vec<f64> = exact
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["cosine"].as_f64().unwrap())
        .collect();
    offline.push(recall(&got["hits"], &exact, k));
    // An exact answer: nothing to check, counted.
    let (status, _) = post(&a, &url, &json!({"vector": queries[0], "k": k, "exact": true}));
    assert_eq!(status, 200);

    let n = offline.len() as f64;
    await_checks(&s, GRAPH_SET, n);
    let want = offline.iter().sum::<f64>() / n;
    let gauge = series(&a, &s, "stabspace_observed_recall", &labels(GRAPH_SET));
    eprintln!("observed recall {gauge:.4} live, {want:.4} by the exact check here, over {n} queries");
    assert!((gauge - want).abs() <= 0.02, "live {gauge} against {want}");
    assert!((gauge - want).abs() < 1e-9, "live {gauge} against {want}");
    assert!(
        want < 1.0,
        "every query found its exact top-{k}: the check tests nothing"
    );
    assert_eq!(
        series(&a, &s, "stabspace_query_recall_count", &labels(GRAPH_SET)),
        n
    );
    assert_eq!(
        metric(&s, None, "stabspace_recall_samples_exact_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&s, None, "stabspace_recall_samples_dropped_total"),
        Some(0.0)
    );
    let (rows, _) = partitions(&a, &s);
    let live = row(&rows, GRAPH_SET);
    assert!(
        (live["observed_recall"].as_f64().unwrap() - gauge).abs() < 1e-12,
        "{live}"
    );
    assert_eq!(live["recall_samples"], json!(n as u64), "{live}");
    assert_eq!(live["recall_target"], json!(0.95), "{live}");
    assert!(
        live["last_observed_recall"].is_null(),
        "nothing recorded yet: {live}"
    );

    // Recorded at shutdown: `index status` shows it, in every format.
    assert!(s.terminate().success());
    let st = index_status(&t);
    let r = row(&st, GRAPH_SET);
    assert!(
        (r["last_observed_recall"].as_f64().unwrap() - gauge).abs() < 1e-9,
        "{r}"
    );
    assert_eq!(
        (
            &r["last_recall_samples"],
            &r["last_recall_target"],
            &r["last_observed_by"]
        ),
        (&json!(n as u64), &json!(0.95), &json!("serve")),
        "{r}"
    );
    let at = r["last_observed_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    let csv = cli(&t, &["index", "status", "--format", "csv"]);
    assert!(
        csv.lines().next().unwrap().contains("last_observed_recall"),
        "{csv}"
    );
    assert!(cli(&t, &["index", "status"]).contains("last_observed_recall"));

    // The metrics backfill: every portfolio-day checked, the mean printed and recorded.
    let metrics_backfill = |extra: &[&str]| {
        let mut args = vec![
            "backfill-portfolio-stab-scenario-metrics",
            "--scenario-set-id",
            GRAPH_SET,
            "--stab-model-id",
            MODEL,
            "--start",
            "2000-01-01",
            "--end",
            "2100-01-01",
        ];
        args.extend_from_slice(extra);
        cli(&t, &args)
    };
    let out = metrics_backfill(&["--recall-sample", "1"]);
    let line = out
        .lines()
        .find(|l| l.contains("observed recall@3"))
        .unwrap_or_else(|| panic!("no observed recall in\n{out}"));
    let scored: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let st = index_status(&t);
    let r = row(&st, GRAPH_SET);
    assert_eq!(
        (&r["last_observed_by"], &r["last_recall_samples"]),
        (&json!("metrics-backfill"), &json!(scored)),
        "{r}\n{out}"
    );
    let mean = r["last_observed_recall"].as_f64().unwrap();
    assert!(line.contains(&format!("{mean:.4}")), "{line} against {r}");
    // Exact answers are not checked: said, and nothing recorded.
    let out = metrics_backfill(&["--exact"]);
    assert!(
        out.contains("recall: not sampled: the answers were exact"),
        "{out}"
    );
    assert_eq!(
        row(&index_status(&t), GRAPH_SET)["last_observed_at"],
        r["last_observed_at"]
    );
}

both_backends!(unmigrated: a_degraded_partition_moves_the_gauge_and_is_warned_about);

/// Two partitions of the same kind of vectors, one built well and one so
/// sparse that its graph misses most neighbours: queries at an explicit
/// breadth move the gauge but warn about nothing (they asked for no recall);
/// queries that ask for one leave the good partition alone and warn, once,
/// about the poor one, on stderr and in `GET /v1/partitions`.
async fn a_degraded_partition_moves_the_gauge_and_is_warned_about(t: TestDb) {
    generate(&t, GRAPH_SET, 3000, &[]);
    generate(&t, POOR_SET, 3000, &["--m", "2", "--ef-construction", "2"]);
    let good = Partition::open(partition_file(&t, GRAPH_SET)).unwrap();
    let poor = Partition::open(partition_file(&t, POOR_SET)).unwrap();
    let s = Server::start(&t, &["--recall-sample", "1"], &[]);
    let a = agent();
    let k = 10;
    let ask = |set: &str, p: &Partition, rows: std::ops::Range<usize>, extra: Value| {
        for i in rows {
            let mut body = json!({"vector": row_vector(p, i), "k": k});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let (status, got) = post(&a, &search_url(&s, set), &body);
            assert_eq!((status, &got["answered_by"]), (200, &json!("index")), "{got}");
        }
    };
    let gauge = |set: &str| series(&a, &s, "stabspace_observed_recall", &labels(set));
    let live = |set: &str| row(&partitions(&a, &s).0, set).clone();

    // Explicit breadth k: the poor graph misses, the gauge shows it, no target, no warning.
    ask(POOR_SET, &poor, 0..60, json!({"ef": k}));
    await_checks(&s, POOR_SET, 60.0);
    let low = gauge(POOR_SET);
    assert!(low < 0.5, "the poor partition's recall at ef {k}: {low}");
    let r = live(POOR_SET);
    assert!(
        r["recall_target"].is_null() && r["recall_warning"].is_null(),
        "{r}"
    );
    // The good partition, at the breadth calibrated for the default recall 0.95.
    ask(GRAPH_SET, &good, 0..60, json!({}));
    await_checks(&s, GRAPH_SET, 60.0);
    let high = gauge(GRAPH_SET);
    assert!(high >= 0.95, "the good partition's observed recall: {high}");
    let r = live(GRAPH_SET);
    assert_eq!(
        (&r["recall_target"], &r["recall_warning"]),
        (&json!(0.95), &Value::Null),
        "{r}"
    );
    // Queries that ask for recall 0.95 of the poor partition: below it, warned about.
    ask(POOR_SET, &poor, 60..120, json!({"recall": 0.95}));
    await_checks(&s, POOR_SET, 120.0);
    assert!(gauge(POOR_SET) < 0.95, "{}", gauge(POOR_SET));
    let warned = s.await_stderr(&format!("warning: recall: {MODEL} / {POOR_SET}: observed recall"));
    assert!(warned.contains("below their target 0.950"), "{warned}");
    let r = live(POOR_SET);
    let why = r["recall_warning"]
        .as_str()
        .unwrap_or_else(|| panic!("no warning: {r}"));
    assert!(why.contains("below their target 0.950"), "{why}");
    assert!(live(GRAPH_SET)["recall_warning"].is_null());
    // Said once, not at every query.
    ask(POOR_SET, &poor, 120..140, json!({"recall": 0.95}));
    await_checks(&s, POOR_SET, 140.0);
    let again: Vec<String> = s
        .stderr_so_far()
        .into_iter()
        .filter(|l| l.contains("warning: recall:"))
        .collect();
    assert!(again.is_empty(), "{again:?}");
}

both_backends!(unmigrated: a_database_that_refuses_the_record_is_said_once_and_serving_goes_on);

/// Served from a read-only view of the database (a replica, as
/// `--read-database-url` names it): the record is refused, said once on
/// stderr, and the server serves and stops as usual.
async fn a_database_that_refuses_the_record_is_said_once_and_serving_goes_on(t: TestDb) {
    generate(&t, GRAPH_SET, 3000, &[]);
    let replica = if t.url.starts_with("sqlite:") {
        format!("{}?mode=ro", t.url)
    } else {
        format!("{}?options=-c%20default_transaction_read_only%3Don", t.url)
    };
    let p = Partition::open(partition_file(&t, GRAPH_SET)).unwrap();
    let mut s = Server::start(
        &t,
        &["--recall-sample", "1", "--read-database-url", &replica],
        &[],
    );
    let a = agent();
    for i in 0..5 {
        let (status, got) = post(&a, &search_url(&s, GRAPH_SET), &json!({"vector": between(&p, i)}));
        assert_eq!(status, 200, "{got}");
    }
    await_checks(&s, GRAPH_SET, 5.0);
    assert!(s.terminate().success());
    let said = s.await_stderr("cannot record the observed recall");
    assert!(said.contains("serving on"), "{said}");
    assert!(row(&index_status(&t), GRAPH_SET)["last_observed_recall"].is_null());
}

/// `--recall-sample` takes a share between 0 and 1, on both commands.
#[test]
fn recall_sample_flags_refuse_a_value_outside_zero_to_one() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            vec!["serve", "--recall-sample", "1.5"],
            "1.5 is not a share of queries between 0 and 1",
        ),
        (
            vec!["serve", "--recall-sample=-0.1"],
            "-0.1 is not a share of queries between 0 and 1",
        ),
        (
            vec!["serve", "--recall-sample", "often"],
            "\"often\" is not a number",
        ),
        (
            vec![
                "backfill-portfolio-stab-scenario-metrics",
                "--scenario-set-id",
                "S",
                "--start",
                "2020-01-01",
                "--end",
                "2020-12-31",
                "--recall-sample",
                "2",
            ],
            "2 is not a share of queries between 0 and 1",
        ),
    ] {
        let o = stabspace(&args, dir.path());
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(
            err.contains("--recall-sample") && err.contains(says),
            "{args:?}: {err}"
        );
    }
}
