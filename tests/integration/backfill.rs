use std::collections::BTreeMap;
use std::fs;

use chrono::NaiveDate;
use sqlx::Row;
use stabspace::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use stabspace::import::{import_file, ImportKind};
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace::synth::MONTE_CARLO_SET;
use stabspace::{vector, with_pool, Error};

use crate::both_backends;
use crate::support::{count, import_all, read_csv, small_market, TestDb};

both_backends!(
    numeric_backfill_matches_the_csv_prices_and_reruns_replace,
    numeric_backfill_skips_with_reasons,
    scenario_backfill_flattens_panels_and_reruns_replace,
    scenario_with_a_missing_cell_is_an_error_and_writes_nothing,
    unknown_model_ids_are_errors_listing_the_known_ones,
    unknown_market_and_set_say_what_exists,
);

/// (entity_id → vector bytes) of one model.
async fn stored(db: &Db, model: &str) -> BTreeMap<String, Vec<u8>> {
    with_pool!(db, p => sqlx::query("SELECT entity_id, vector FROM numeric_window_embeddings WHERE model_id = $1")
        .bind(model)
        .fetch_all(p)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<String, _>(0), r.get::<Vec<u8>, _>(1)))
        .collect())
}

fn numeric(as_of: NaiveDate, window_days: usize) -> NumericBackfill {
    NumericBackfill {
        as_of,
        window_days,
        horizon_days: 20,
        market_id: "US_EQ".into(),
        limit: None,
        model_id: "num-stab-core-v1".into(),
    }
}

async fn numeric_backfill_matches_the_csv_prices_and_reruns_replace(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let s = backfill_numeric_embeddings(&t.db, &numeric(g.last_date, 20), &Quiet)
        .await
        .unwrap();
    assert_eq!(s.encoded, 29, "30 instruments, SYN0025 delisted: {s}");
    assert_eq!(s.skipped_total(), 0);

    let vectors = stored(&t.db, "num-stab-core-v1").await;
    assert_eq!(vectors.len(), 29);
    assert!(!vectors.contains_key("SYN0025.US"), "delisted instrument encoded");
    for (id, bytes) in &vectors {
        assert_eq!(bytes.len(), 1536, "{id}");
    }

    // Independent computation from the CSV: the last 21 prices of SYN0003.US.
    let prices: Vec<(f64, f64)> = read_csv(&g.files[1].1)
        .into_iter()
        .filter(|r| r["instrument_id"] == "SYN0003.US")
        .map(|r| (r["close"].parse().unwrap(), r["volume"].parse().unwrap()))
        .collect();
    let tail = &prices[prices.len() - 21..];
    let mut expected = Vec::new();
    for w in tail.windows(2) {
        expected.extend([w[1].0, w[1].1, (w[1].0 / w[0].0).ln()]);
    }
    expected.resize(384, 0.0);
    let got = vector::from_bytes(&vectors["SYN0003.US"], "SYN0003.US").unwrap();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(*g, *e as f32, "slot {i}");
    }

    let again = backfill_numeric_embeddings(&t.db, &numeric(g.last_date, 20), &Quiet)
        .await
        .unwrap();
    assert_eq!(again.encoded, 29);
    assert_eq!(
        count(&t.db, "numeric_window_embeddings").await,
        29,
        "re-run duplicated rows"
    );
    assert_eq!(stored(&t.db, "num-stab-core-v1").await, vectors);

    // --limit takes the first instruments in id order.
    let limited = NumericBackfill {
        limit: Some(3),
        model_id: "num-regime-core-v1".into(),
        ..numeric(g.last_date, 20)
    };
    backfill_numeric_embeddings(&t.db, &limited, &Quiet)
        .await
        .unwrap();
    let ids: Vec<String> = stored(&t.db, "num-regime-core-v1").await.into_keys().collect();
    assert_eq!(ids, ["SYN0001.US", "SYN0002.US", "SYN0003.US"]);
}

async fn numeric_backfill_skips_with_reasons(t: TestDb) {
    let path = t.path("i.csv");
    fs::write(&path, "instrument_id,issuer_id,market_id,region,status\nA,I,M,US,active\nB,I,M,US,active\nC,I,M,US,active\n").unwrap();
    import_file(&t.db, ImportKind::Instruments, &path, &Quiet)
        .await
        .unwrap();
    let path = t.path("p.csv");
    fs::write(
        &path,
        "instrument_id,trade_date,close,volume\n\
         A,2025-01-01,10,1\nA,2025-01-02,11,1\nA,2025-01-03,12,1\n\
         B,2025-01-01,10,1\nB,2025-01-03,12,1\n\
         C,2025-01-03,12,1\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Prices, &path, &Quiet)
        .await
        .unwrap();
    // Import refuses a close of 0; a database other tools write to may hold one.
    let day = NaiveDate::from_ymd_opt(2025, 1, 2).unwrap();
    with_pool!(t.db, p => sqlx::query("INSERT INTO prices_daily (instrument_id, trade_date, close, volume) VALUES ('B', $1, 0, 1)")
        .bind(day)
        .execute(p)
        .await
        .map(|_| ())
        .unwrap());
    let p = NumericBackfill {
        market_id: "M".into(),
        ..numeric(NaiveDate::from_ymd_opt(2025, 1, 3).unwrap(), 2)
    };
    let s = backfill_numeric_embeddings(&t.db, &p, &Quiet).await.unwrap();
    assert_eq!(s.encoded, 1);
    assert_eq!(s.skipped["non-positive close"][0].0, "B");
    assert_eq!(
        s.skipped["insufficient history"][0],
        ("C".into(), "insufficient history: 1 prices, need 3".into())
    );
    assert_eq!(stored(&t.db, "num-stab-core-v1").await.len(), 1);
}

async fn scenario_backfill_flattens_panels_and_reruns_replace(t: TestDb) {
    let (cfg, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let p = ScenarioBackfill {
        scenario_set_id: MONTE_CARLO_SET.into(),
        model_id: "num-scenario-core-v1".into(),
        horizon_days: 20,
        limit: None,
    };
    let s = backfill_numeric_scenario_embeddings(&t.db, &p, &Quiet)
        .await
        .unwrap();
    assert_eq!(s.encoded, cfg.mc_scenarios as u64);
    let vectors = stored(&t.db, "num-scenario-core-v1").await;
    assert_eq!(vectors.len(), cfg.mc_scenarios);
    for (id, bytes) in &vectors {
        assert_eq!(bytes.len(), 1536, "{id}");
    }

    // Independent: MC_000007's path cells sorted by (day, instrument), flattened, padded.
    let mut cells: Vec<(i32, String, f64)> = read_csv(&g.files[3].1)
        .into_iter()
        .filter(|r| r["scenario_set_id"] == MONTE_CARLO_SET && r["scenario_id"] == "MC_000007")
        .map(|r| {
            (
                r["day_index"].parse().unwrap(),
                r["instrument_id"].clone(),
                r["return"].parse().unwrap(),
            )
        })
        .collect();
    cells.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    assert_eq!(cells.len(), cfg.horizon * cfg.scenario_instruments);
    let got = vector::from_bytes(&vectors["MC_000007"], "MC_000007").unwrap();
    for (i, c) in cells.iter().enumerate() {
        assert_eq!(got[i], c.2 as f32, "slot {i}");
    }
    assert!(got[cells.len()..].iter().all(|&x| x == 0.0));

    // Stored with the scenario_date as as_of_date and the set as scope.
    let (scope, as_of): (String, NaiveDate) = with_pool!(t.db, p => sqlx::query_as(
        "SELECT scope_id, as_of_date FROM numeric_window_embeddings WHERE entity_type = 'SCENARIO' AND entity_id = 'MC_000007'")
        .fetch_one(p).await.unwrap());
    assert_eq!((scope.as_str(), as_of), (MONTE_CARLO_SET, g.last_date));

    backfill_numeric_scenario_embeddings(&t.db, &p, &Quiet)
        .await
        .unwrap();
    assert_eq!(stored(&t.db, "num-scenario-core-v1").await, vectors);
    let limited = ScenarioBackfill { limit: Some(5), ..p };
    assert_eq!(
        backfill_numeric_scenario_embeddings(&t.db, &limited, &Quiet)
            .await
            .unwrap()
            .encoded,
        5
    );
    assert_eq!(
        count(&t.db, "numeric_window_embeddings").await,
        cfg.mc_scenarios as i64
    );
}

async fn scenario_with_a_missing_cell_is_an_error_and_writes_nothing(t: TestDb) {
    let instruments = t.path("i.csv");
    fs::write(
        &instruments,
        "instrument_id,issuer_id,market_id,region,status\nX,I,M,US,active\nY,I,M,US,active\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Instruments, &instruments, &Quiet)
        .await
        .unwrap();
    let scen = t.path("s.csv");
    fs::write(
        &scen,
        "scenario_set_id,scenario_id,scenario_date,shock_type,severity\nS,A,2025-01-02,X,1\nS,B,2025-01-02,X,HIGH\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Scenarios, &scen, &Quiet)
        .await
        .unwrap();
    let paths = t.path("p.csv");
    fs::write(
        &paths,
        "scenario_set_id,scenario_id,day_index,instrument_id,return\n\
         S,A,0,X,0.1\nS,A,0,Y,0.2\nS,A,1,X,0.3\nS,A,1,Y,0.4\n\
         S,B,0,X,0.1\nS,B,0,Y,0.2\nS,B,1,X,0.3\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::ScenarioPaths, &paths, &Quiet)
        .await
        .unwrap();
    let p = ScenarioBackfill {
        scenario_set_id: "S".into(),
        model_id: "num-scenario-core-v1".into(),
        horizon_days: 20,
        limit: None,
    };
    let err = backfill_numeric_scenario_embeddings(&t.db, &p, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"B\"") && err.contains("\"Y\"") && err.contains("day_index 1"),
        "{err}"
    );
    assert_eq!(
        count(&t.db, "numeric_window_embeddings").await,
        0,
        "A was written before B failed"
    );

    // A scenario with paths but no row in `scenarios` is named. The import
    // refuses such paths; another tool writing the table may not.
    with_pool!(t.db, pool => sqlx::query(
        "INSERT INTO scenario_paths (scenario_set_id, scenario_id, day_index, instrument_id, return) \
         VALUES ('S', 'C', 0, 'X', 0.1)")
        .execute(pool)
        .await
        .map(|_| ())
        .unwrap());
    let err = backfill_numeric_scenario_embeddings(&t.db, &p, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"C\"") && err.contains("no row in `scenarios`"),
        "{err}"
    );
}

async fn unknown_model_ids_are_errors_listing_the_known_ones(t: TestDb) {
    let p = NumericBackfill {
        model_id: "num-stab-core-v9".into(),
        ..numeric(NaiveDate::from_ymd_opt(2025, 1, 3).unwrap(), 2)
    };
    let err = backfill_numeric_embeddings(&t.db, &p, &Quiet).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnknownModel { got, .. } if got == "num-stab-core-v9"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("num-stab-core-v1, num-regime-core-v1"),
        "{err}"
    );
    let s = ScenarioBackfill {
        scenario_set_id: "S".into(),
        model_id: "num-stab-core-v1".into(),
        horizon_days: 20,
        limit: None,
    };
    let err = backfill_numeric_scenario_embeddings(&t.db, &s, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("num-scenario-core-v1"), "{err}");
}

async fn unknown_market_and_set_say_what_exists(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let p = NumericBackfill {
        market_id: "XX_EQ".into(),
        ..numeric(g.last_date, 20)
    };
    let err = backfill_numeric_embeddings(&t.db, &p, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("XX_EQ") && err.contains("US_EQ"), "{err}");
    let s = ScenarioBackfill {
        scenario_set_id: "NOPE".into(),
        model_id: "num-scenario-core-v1".into(),
        horizon_days: 20,
        limit: None,
    };
    let err = backfill_numeric_scenario_embeddings(&t.db, &s, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("NOPE") && err.contains(MONTE_CARLO_SET), "{err}");
}
