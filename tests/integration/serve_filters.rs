//! The server's filter fields: `known_before` (one date, or one per vector of
//! a batch), `shock_type`, `min_severity` on the search route, and
//! `point_in_time` on the workflow routes; each answer holds only admitted
//! scenarios and says how many the filter admitted.

use chrono::NaiveDate;
use serde_json::{json, Value};
use stabspace_index::Partition;

use crate::both_backends;
use crate::serve::{
    agent, bad_field, cli, generate, partition_file, post, row_vector, search_url, Server, MODEL,
};
use crate::support::TestDb;

both_backends!(unmigrated: search_filters_answer_only_admitted_scenarios);

const SET: &str = "GEN_PIT";

async fn search_filters_answer_only_admitted_scenarios(t: TestDb) {
    generate(&t, SET, 2500, &["--spread-years", "20"]);
    let listing = cli(
        &t,
        &[
            "show-joint-stab-fragility-scenarios",
            "--scenario-set-id",
            SET,
            "--model-id",
            MODEL,
        ],
    );
    let known: std::collections::HashMap<String, NaiveDate> = listing
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[6].parse().unwrap())
        })
        .collect();
    let before = NaiveDate::from_ymd_opt(2012, 1, 1).unwrap();
    let admissible = known.values().filter(|&&k| k < before).count();
    assert!(
        admissible > 100 && admissible < known.len(),
        "{admissible} of {}",
        known.len()
    );
    let p = Partition::open(partition_file(&t, SET)).unwrap();
    let q = row_vector(&p, 0);
    let s = Server::start(&t, &[], &[]);
    let a = agent();
    let url = search_url(&s, SET);

    let (status, got) = post(
        &a,
        &url,
        &json!({"vector": q, "k": 10, "known_before": before.to_string()}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["admitted"], admissible, "{got}");
    let hits = got["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 10);
    for h in hits {
        let id = h["scenario_id"].as_str().unwrap();
        assert!(known[id] < before, "{h}");
        assert_eq!(h["known_from"], Value::String(known[id].to_string()));
    }
    // Exact: the ten best admitted rows by cosine, ranked as the brute force ranks them.
    let (_, exact) = post(
        &a,
        &url,
        &json!({"vector": q, "k": 10, "known_before": before.to_string(), "exact": true}),
    );
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    let mut want: Vec<(f64, String)> = (0..p.len())
        .filter(|&r| known[p.id(r).unwrap()] < before)
        .map(|r| {
            let v = row_vector(&p, r);
            let dot: f64 = v.iter().zip(&q).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
            (dot / (norm(&v) * norm(&q)), p.id(r).unwrap().to_string())
        })
        .collect();
    want.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| x.1.cmp(&y.1)));
    let got_ids: Vec<&str> = exact["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["scenario_id"].as_str().unwrap())
        .collect();
    let want_ids: Vec<&str> = want.iter().take(10).map(|w| w.1.as_str()).collect();
    assert_eq!(got_ids, want_ids);

    // A batch with one date per vector: each answer admits its own.
    let early = NaiveDate::from_ymd_opt(2006, 1, 1).unwrap();
    let (status, got) = post(
        &a,
        &url,
        &json!({"vectors": [q, q], "k": 5, "known_before": [before.to_string(), early.to_string()]}),
    );
    assert_eq!(status, 200, "{got}");
    let results = got["results"].as_array().unwrap();
    assert_eq!(results[0]["admitted"], admissible);
    assert_eq!(
        results[1]["admitted"],
        known.values().filter(|&&k| k < early).count()
    );
    for h in results[1]["hits"].as_array().unwrap() {
        assert!(known[h["scenario_id"].as_str().unwrap()] < early, "{h}");
    }
    // Nothing admitted: an empty answer that says so.
    let (status, got) = post(&a, &url, &json!({"vector": q, "known_before": "1990-01-01"}));
    assert_eq!((status, got["admitted"].as_u64()), (200, Some(0)), "{got}");
    assert_eq!(got["hits"].as_array().map(Vec::len), Some(0));
    // Shock type and severity.
    let (_, got) = post(
        &a,
        &url,
        &json!({"vector": q, "shock_type": ["synthetic"], "min_severity": "HIGH"}),
    );
    assert!(got["admitted"].as_u64().unwrap() > 0, "{got}");
    let (_, got) = post(&a, &url, &json!({"vector": q, "shock_type": "NOPE"}));
    assert_eq!(got["admitted"], 0, "{got}");

    // Bad fields, named.
    bad_field(
        &post(&a, &url, &json!({"vector": q, "known_before": "2012-13-01"})),
        "known_before",
        "no such day",
    );
    bad_field(
        &post(
            &a,
            &url,
            &json!({"vectors": [q, q], "known_before": ["2012-01-01"]}),
        ),
        "known_before",
        "has 1 dates for 2 vectors",
    );
    bad_field(
        &post(
            &a,
            &url,
            &json!({"vectors": [q], "known_before": ["2012-01-01", "bad"]}),
        ),
        "known_before",
        "has 2 dates for 1 vectors",
    );
    bad_field(
        &post(&a, &url, &json!({"vector": q, "min_severity": "huge"})),
        "min_severity",
        "not a severity",
    );
    bad_field(
        &post(&a, &url, &json!({"vector": q, "shock_type": []})),
        "shock_type",
        "empty array",
    );
    let similar = s.url("/v1/similar-scenarios");
    bad_field(
        &post(
            &a,
            &similar,
            &json!({"instrument_id": "X", "as_of": "2020-01-02", "scenario_set_id": SET,
                    "point_in_time": true, "known_before": "2020-01-01"}),
        ),
        "known_before",
        "not both",
    );
}
