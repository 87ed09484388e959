use std::fs;

use sqlx::Row;
use stabspace::import::{import_file, ImportKind};
use stabspace::storage::Db;
use stabspace::{with_pool, Error};

use crate::both_backends;
use crate::support::{count, import_all, read_csv, small_market, TestDb};

both_backends!(
    imports_a_generated_market_and_reimport_changes_nothing,
    bad_rows_abort_the_whole_file_and_leave_the_database_unchanged,
    instruments_create_missing_markets_and_issuers,
    portfolios_are_stored_as_target_positions_weights,
);

const TABLES: &[&str] = &[
    "markets",
    "issuers",
    "instruments",
    "prices_daily",
    "scenarios",
    "scenario_paths",
    "target_portfolios",
    "portfolio_risk_reports",
    "backtest_runs",
    "issuer_fundamentals",
];

async fn counts(db: &Db) -> Vec<i64> {
    let mut out = Vec::new();
    for t in TABLES {
        out.push(count(db, t).await);
    }
    out
}

async fn close_of(db: &Db, instrument: &str, date: &str) -> f64 {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    with_pool!(db, p => sqlx::query("SELECT close FROM prices_daily WHERE instrument_id = $1 AND trade_date = $2")
        .bind(instrument)
        .bind(date)
        .fetch_one(p)
        .await
        .unwrap()
        .get::<f64, _>(0))
}

async fn imports_a_generated_market_and_reimport_changes_nothing(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let first = counts(&t.db).await;
    let expected: Vec<i64> = g.files.iter().map(|(_, _, rows)| *rows as i64).collect();
    // instruments, prices, scenarios, paths, portfolios, reports, runs, fundamentals
    assert_eq!(first[2..].to_vec(), expected);
    assert_eq!(first[0], 1, "one market");
    assert_eq!(first[1], 15, "30 instruments, two per issuer");

    // Values round-trip exactly as written in the CSV.
    let prices = read_csv(&g.files[1].1);
    let row = &prices[17];
    let close = close_of(&t.db, &row["instrument_id"], &row["trade_date"]).await;
    assert_eq!(close, row["close"].parse::<f64>().unwrap());

    import_all(&t.db, &g).await;
    assert_eq!(counts(&t.db).await, first, "re-import must not duplicate");
}

/// Each case: a file whose good rows would change the database, then one bad row.
async fn bad_rows_abort_the_whole_file_and_leave_the_database_unchanged(t: TestDb) {
    let good = t.path("good.csv");
    fs::write(
        &good,
        "instrument_id,trade_date,close,volume\nAAA.US,2025-01-02,100.0,5\nAAA.US,2025-01-03,101.0,6\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Prices, &good).await.unwrap();
    fs::write(
        t.path("p.csv"),
        "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{\"\"AAA.US\"\": 1.0}\"\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Portfolios, &t.path("p.csv"))
        .await
        .unwrap();
    let before = counts(&t.db).await;

    // (kind, file body, expected line, expected column or message fragment)
    let update_then_new = "AAA.US,2025-01-02,555.0,5\nBBB.US,2025-01-02,1.0,1\n";
    let cases: Vec<(ImportKind, String, u64, &str)> = vec![
        (ImportKind::Prices, format!("instrument_id,trade_date,close,volume\n{update_then_new}BBB.US,2025-01-03,abc,1\n"), 4, "close"),
        (ImportKind::Prices, format!("instrument_id,trade_date,close,volume\n{update_then_new}BBB.US,2025-13-03,1.0,1\n"), 4, "trade_date"),
        (ImportKind::Prices, format!("instrument_id,trade_date,close,volume\n{update_then_new}BBB.US,2025-01-03,NaN,1\n"), 4, "close"),
        (ImportKind::Prices, format!("instrument_id,trade_date,close,volume\n{update_then_new}BBB.US,2025-01-03,1.0,inf\n"), 4, "volume"),
        (ImportKind::Prices, format!("instrument_id,trade_date,close,volume\n{update_then_new}BBB.US,2025-01-03,1.0\n"), 4, "fields"),
        (ImportKind::Prices, format!("instrument_id,trade_date,close,volume\n{update_then_new},2025-01-03,1.0,1\n"), 4, "instrument_id"),
        (ImportKind::Portfolios, "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{\"\"BBB.US\"\": 1}\"\nP1,2025-01-03,{not json\n".into(), 3, "weights_json"),
        (ImportKind::Portfolios, "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{\"\"BBB.US\"\": 1}\"\nP1,2025-01-03,\"{\"\"X\"\": \"\"a\"\"}\"\n".into(), 3, "weights_json"),
        (ImportKind::ScenarioPaths, "scenario_set_id,scenario_id,day_index,instrument_id,return\nS,A,0,X,0.1\nS,A,-1,X,0.1\n".into(), 3, "day_index"),
    ];
    for (i, (kind, body, line, what)) in cases.into_iter().enumerate() {
        let path = t.path(&format!("bad{i}.csv"));
        fs::write(&path, &body).unwrap();
        let err = import_file(&t.db, kind, &path).await.expect_err(&body);
        let msg = err.to_string();
        assert!(msg.contains(&format!("bad{i}.csv:{line}")), "case {i}: {msg}");
        assert!(msg.contains(what), "case {i}: {msg}");
        assert!(
            matches!(err, Error::BadField { .. } | Error::BadRow { .. }),
            "case {i}: {err:?}"
        );
        assert_eq!(counts(&t.db).await, before, "case {i} changed row counts");
        assert_eq!(
            close_of(&t.db, "AAA.US", "2025-01-02").await,
            100.0,
            "case {i} updated a row"
        );
    }

    // A header without a required column names the column.
    let path = t.path("nocol.csv");
    fs::write(&path, "instrument_id,trade_date,close\nAAA.US,2025-01-02,1\n").unwrap();
    let err = import_file(&t.db, ImportKind::Prices, &path).await.unwrap_err();
    assert!(
        matches!(&err, Error::MissingColumn { column, .. } if column == "volume"),
        "{err:?}"
    );
    assert!(err.to_string().contains("nocol.csv"));
    assert_eq!(counts(&t.db).await, before);
}

async fn instruments_create_missing_markets_and_issuers(t: TestDb) {
    let path = t.path("i.csv");
    fs::write(
        &path,
        "status,region,market_id,issuer_id,instrument_id,extra\nactive,US,US_EQ,ISS_A,AAA.US,x\nactive,EU,EU_EQ,ISS_A,BBB.EU,y\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Instruments, &path).await.unwrap();
    assert_eq!(count(&t.db, "markets").await, 2);
    assert_eq!(count(&t.db, "issuers").await, 1);
    let region: String = with_pool!(t.db, p => sqlx::query_scalar("SELECT region FROM markets WHERE market_id = 'EU_EQ'")
        .fetch_one(p).await.unwrap());
    assert_eq!(region, "EU");
}

async fn portfolios_are_stored_as_target_positions_weights(t: TestDb) {
    let path = t.path("p.csv");
    fs::write(
        &path,
        "portfolio_id,as_of_date,weights_json\nP1,2025-01-31,\"{\"\"AAA.US\"\": 0.25, \"\"BBB.US\"\": -0.75}\"\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Portfolios, &path).await.unwrap();
    let v: sqlx::types::Json<serde_json::Value> = with_pool!(t.db, p => sqlx::query_scalar(
        "SELECT target_positions FROM target_portfolios WHERE portfolio_id = 'P1'")
        .fetch_one(p).await.unwrap());
    assert_eq!(
        v.0,
        serde_json::json!({"weights": {"AAA.US": 0.25, "BBB.US": -0.75}})
    );
}
