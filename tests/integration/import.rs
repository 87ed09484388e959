use std::fs;
use std::path::Path;

use sqlx::Row;
use stabspace::import::{import_file, ImportKind, MAX_ID_BYTES, MAX_LINE_BYTES};
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace::{with_pool, Error};

use crate::both_backends;
use crate::support::{count, import_all, read_csv, small_market, stabspace, text, TestDb};

both_backends!(
    imports_a_generated_market_and_reimport_changes_nothing,
    bad_rows_abort_the_whole_file_and_leave_the_database_unchanged,
    instruments_create_missing_markets_and_issuers,
    portfolios_are_stored_as_target_positions_weights,
    prices_need_a_positive_close_and_a_whole_non_negative_volume,
    path_returns_must_be_greater_than_minus_one,
    instrument_status_must_be_one_of_the_documented_set,
    prices_and_paths_must_name_imported_instruments,
    portfolio_weights_naming_unknown_instruments_import_with_a_list,
    a_key_repeated_in_one_file_is_an_error_naming_both_lines,
    a_column_named_twice_in_the_header_is_an_error,
    ids_are_at_most_128_bytes_without_control_characters,
    lf_and_crlf_files_report_the_same_line_numbers,
    errors_quote_only_a_short_excerpt_of_the_input,
    dates_are_exactly_yyyy_mm_dd_with_years_0001_to_9999,
    date_flags_are_exactly_yyyy_mm_dd_and_name_the_flag,
    scenario_paths_must_name_imported_scenarios,
    risk_reports_and_fundamentals_naming_unknown_ids_import_with_a_list,
    json_keys_given_twice_and_numbers_not_stored_exactly_are_errors,
    a_header_or_row_over_1_mib_is_an_error_at_its_line,
    unbalanced_quotes_empty_files_and_integer_limits_are_named,
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

/// A field as long as a row may hold with a little room for the rest of it.
const BIG: usize = MAX_LINE_BYTES - 1024;

async fn counts(db: &Db) -> Vec<i64> {
    let mut out = Vec::new();
    for t in TABLES {
        out.push(count(db, t).await);
    }
    out
}

/// `close` or `volume` of one stored price row.
async fn price_field(db: &Db, column: &str, instrument: &str, date: &str) -> f64 {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    let sql = format!("SELECT {column} FROM prices_daily WHERE instrument_id = $1 AND trade_date = $2");
    with_pool!(db, p => sqlx::query(&sql)
        .bind(instrument)
        .bind(date)
        .fetch_one(p)
        .await
        .unwrap()
        .get::<f64, _>(0))
}

async fn close_of(db: &Db, instrument: &str, date: &str) -> f64 {
    price_field(db, "close", instrument, date).await
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
    let instruments = t.path("i.csv");
    fs::write(
        &instruments,
        "instrument_id,issuer_id,market_id,region,status\nAAA.US,I,M,US,active\nBBB.US,I,M,US,active\nX,I,M,US,active\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Instruments, &instruments, &Quiet)
        .await
        .unwrap();
    let good = t.path("good.csv");
    fs::write(
        &good,
        "instrument_id,trade_date,close,volume\nAAA.US,2025-01-02,100.0,5\nAAA.US,2025-01-03,101.0,6\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Prices, &good, &Quiet)
        .await
        .unwrap();
    fs::write(
        t.path("p.csv"),
        "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{\"\"AAA.US\"\": 1.0}\"\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Portfolios, &t.path("p.csv"), &Quiet)
        .await
        .unwrap();
    fs::write(
        t.path("s.csv"),
        "scenario_set_id,scenario_id,scenario_date,shock_type,severity\nS,A,2025-01-02,X,HIGH\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Scenarios, &t.path("s.csv"), &Quiet)
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
        let err = import_file(&t.db, kind, &path, &Quiet).await.expect_err(&body);
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
    let err = import_file(&t.db, ImportKind::Prices, &path, &Quiet)
        .await
        .unwrap_err();
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
    import_file(&t.db, ImportKind::Instruments, &path, &Quiet)
        .await
        .unwrap();
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
    import_file(&t.db, ImportKind::Portfolios, &path, &Quiet)
        .await
        .unwrap();
    let v: sqlx::types::Json<serde_json::Value> = with_pool!(t.db, p => sqlx::query_scalar(
        "SELECT target_positions FROM target_portfolios WHERE portfolio_id = 'P1'")
        .fetch_one(p).await.unwrap());
    assert_eq!(
        v.0,
        serde_json::json!({"weights": {"AAA.US": 0.25, "BBB.US": -0.75}})
    );
}

/// Instruments AAA.US, BBB.US, X and Y; two prices of AAA.US (close 100 on
/// 2025-01-02); scenario S/A with one path cell. Returns the table counts.
async fn seed(t: &TestDb) -> Vec<i64> {
    let files = [
        (
            ImportKind::Instruments,
            "instrument_id,issuer_id,market_id,region,status\n\
             AAA.US,I,M,US,active\nBBB.US,I,M,US,active\nX,I,M,US,active\nY,I,M,US,delisted\n",
        ),
        (
            ImportKind::Prices,
            "instrument_id,trade_date,close,volume\nAAA.US,2025-01-02,100.0,5\nAAA.US,2025-01-03,101.0,6\n",
        ),
        (
            ImportKind::Scenarios,
            "scenario_set_id,scenario_id,scenario_date,shock_type,severity\nS,A,2025-01-02,X,HIGH\n",
        ),
        (
            ImportKind::ScenarioPaths,
            "scenario_set_id,scenario_id,day_index,instrument_id,return\nS,A,0,X,0.1\n",
        ),
    ];
    for (i, (kind, body)) in files.into_iter().enumerate() {
        let path = t.path(&format!("seed{i}.csv"));
        fs::write(&path, body).unwrap();
        import_file(&t.db, kind, &path, &Quiet).await.unwrap();
    }
    counts(&t.db).await
}

/// Import `body` as `name`; it must fail naming `name:line:`, the column (when
/// given) and `fragment`, and leave the database as `before` (and AAA.US's
/// close on 2025-01-02 at 100). Returns the message.
#[allow(clippy::too_many_arguments)]
async fn rejected(
    t: &TestDb,
    before: &[i64],
    kind: ImportKind,
    name: &str,
    body: &str,
    line: u64,
    column: Option<&str>,
    fragment: &str,
) -> String {
    let path = t.path(name);
    fs::write(&path, body).unwrap();
    let err = match import_file(&t.db, kind, &path, &Quiet).await {
        Ok(s) => panic!("{name}: imported {} rows, expected an error", s.rows),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        matches!(err, Error::BadField { .. } | Error::BadRow { .. }),
        "{name}: {msg}"
    );
    assert!(msg.contains(&format!("{name}:{line}: ")), "{name}: {msg}");
    if let Some(c) = column {
        assert!(msg.contains(&format!("column \"{c}\"")), "{name}: {msg}");
    }
    assert!(msg.contains(fragment), "{name}: {msg}");
    assert_eq!(counts(&t.db).await, before, "{name} changed row counts");
    assert_eq!(
        close_of(&t.db, "AAA.US", "2025-01-02").await,
        100.0,
        "{name} updated a row"
    );
    msg
}

/// A prices file whose first rows would change the database (an update and a new row).
fn prices(bad: &str) -> String {
    format!(
        "instrument_id,trade_date,close,volume\nAAA.US,2025-01-02,555.0,5\nBBB.US,2025-01-02,1.0,1\n{bad}\n"
    )
}

/// A scenario-paths file whose first rows would change the database.
fn paths(bad: &str) -> String {
    format!("scenario_set_id,scenario_id,day_index,instrument_id,return\nS,A,0,X,0.5\nS,A,1,X,0.2\n{bad}\n")
}

async fn volume_of(db: &Db, instrument: &str, date: &str) -> f64 {
    price_field(db, "volume", instrument, date).await
}

async fn prices_need_a_positive_close_and_a_whole_non_negative_volume(t: TestDb) {
    let before = seed(&t).await;
    let p = ImportKind::Prices;
    let cases = [
        ("BBB.US,2025-01-03,0,1", "close", "greater than 0"),
        ("BBB.US,2025-01-03,-0.0,1", "close", "greater than 0"),
        ("BBB.US,2025-01-03,-12.5,1", "close", "greater than 0"),
        ("BBB.US,2025-01-03,1.0,-1", "volume", "whole number of 0 or more"),
        (
            "BBB.US,2025-01-03,1.0,1000.5",
            "volume",
            "whole number of 0 or more",
        ),
        (
            "BBB.US,2025-01-03,1.0,1e-3",
            "volume",
            "whole number of 0 or more",
        ),
    ];
    for (i, (bad, col, what)) in cases.into_iter().enumerate() {
        rejected(
            &t,
            &before,
            p,
            &format!("price{i}.csv"),
            &prices(bad),
            4,
            Some(col),
            what,
        )
        .await;
    }
    // A whole number may be written as a float or with an exponent.
    let path = t.path("ok.csv");
    fs::write(
        &path,
        "instrument_id,trade_date,close,volume\nBBB.US,2025-01-02,1.5,1000.0\nBBB.US,2025-01-03,1.5,1e3\nBBB.US,2025-01-06,1.5,0\n",
    )
    .unwrap();
    import_file(&t.db, p, &path, &Quiet).await.unwrap();
    assert_eq!(volume_of(&t.db, "BBB.US", "2025-01-02").await, 1000.0);
    assert_eq!(volume_of(&t.db, "BBB.US", "2025-01-03").await, 1000.0);
    assert_eq!(volume_of(&t.db, "BBB.US", "2025-01-06").await, 0.0);
}

async fn path_returns_must_be_greater_than_minus_one(t: TestDb) {
    let before = seed(&t).await;
    let k = ImportKind::ScenarioPaths;
    for (i, bad) in ["S,A,2,X,-1", "S,A,2,X,-1.0", "S,A,2,X,-1.5", "S,A,2,X,-1e9"]
        .into_iter()
        .enumerate()
    {
        rejected(
            &t,
            &before,
            k,
            &format!("ret{i}.csv"),
            &paths(bad),
            4,
            Some("return"),
            "greater than -1",
        )
        .await;
    }
    let path = t.path("ok.csv");
    fs::write(&path, paths("S,A,2,X,-0.999")).unwrap();
    assert_eq!(import_file(&t.db, k, &path, &Quiet).await.unwrap().rows, 3);
}

async fn instrument_status_must_be_one_of_the_documented_set(t: TestDb) {
    let before = seed(&t).await;
    let body = |status: &str| {
        format!("instrument_id,issuer_id,market_id,region,status\nNEW.US,I,M2,US,active\nAAA.US,I,M,US,delisted\nZZZ.US,I,M,US,{status}\n")
    };
    for (i, bad) in ["listed", "inactive", "activ", "\"\"", "active suspended"]
        .into_iter()
        .enumerate()
    {
        let fragment = if bad == "\"\"" {
            "empty value"
        } else {
            "active, delisted, suspended"
        };
        let body = body(bad);
        rejected(
            &t,
            &before,
            ImportKind::Instruments,
            &format!("st{i}.csv"),
            &body,
            4,
            Some("status"),
            fragment,
        )
        .await;
    }
    assert_eq!(count(&t.db, "markets").await, before[0], "market M2 created");
    // Any case; stored as written.
    let path = t.path("ok.csv");
    fs::write(
        &path,
        "instrument_id,issuer_id,market_id,region,status\nN1,I,M,US,ACTIVE\nN2,I,M,US,Suspended\nN3,I,M,US,delisted\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Instruments, &path, &Quiet)
        .await
        .unwrap();
    let s: String = with_pool!(t.db, p => sqlx::query_scalar("SELECT status FROM instruments WHERE instrument_id = 'N2'")
        .fetch_one(p).await.unwrap());
    assert_eq!(s, "Suspended");
}

async fn prices_and_paths_must_name_imported_instruments(t: TestDb) {
    let before = seed(&t).await;
    let msg = rejected(
        &t,
        &before,
        ImportKind::Prices,
        "unknown_price.csv",
        &prices("NOPE.US,2025-01-03,1.0,1"),
        4,
        Some("instrument_id"),
        "unknown instrument \"NOPE.US\"",
    )
    .await;
    assert!(msg.contains("import instruments"), "{msg}");
    let msg = rejected(
        &t,
        &before,
        ImportKind::ScenarioPaths,
        "unknown_path.csv",
        &paths("S,A,2,NOPE.US,0.1"),
        4,
        Some("instrument_id"),
        "unknown instrument \"NOPE.US\"",
    )
    .await;
    assert!(msg.contains("import instruments"), "{msg}");
    // Ids compare exactly: another case is another instrument.
    rejected(
        &t,
        &before,
        ImportKind::Prices,
        "case.csv",
        &prices("aaa.us,2025-01-03,1.0,1"),
        4,
        Some("instrument_id"),
        "unknown instrument \"aaa.us\"",
    )
    .await;
}

async fn portfolio_weights_naming_unknown_instruments_import_with_a_list(t: TestDb) {
    seed(&t).await;
    let path = t.path("p.csv");
    fs::write(
        &path,
        "portfolio_id,as_of_date,weights_json\n\
         P1,2025-01-02,\"{\"\"AAA.US\"\": 0.5, \"\"GHOST2\"\": 0.25, \"\"GHOST1\"\": 0.25}\"\n\
         P1,2025-01-03,\"{\"\"GHOST1\"\": 0.5, \"\"X\"\": 0.5}\"\n",
    )
    .unwrap();
    let s = import_file(&t.db, ImportKind::Portfolios, &path, &Quiet)
        .await
        .unwrap();
    assert_eq!(s.rows, 2);
    assert_eq!(s.unknown, ["GHOST1", "GHOST2"]);
    assert_eq!(count(&t.db, "target_portfolios").await, 2);

    fs::write(
        &path,
        "portfolio_id,as_of_date,weights_json\nP2,2025-01-02,\"{\"\"AAA.US\"\": 1}\"\n",
    )
    .unwrap();
    let s = import_file(&t.db, ImportKind::Portfolios, &path, &Quiet)
        .await
        .unwrap();
    assert!(s.unknown.is_empty(), "{:?}", s.unknown);
}

/// The warning on stderr names the first few unknown instruments and how many more.
#[test]
fn unknown_portfolio_instruments_are_a_warning_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let instruments = dir.path().join("i.csv");
    fs::write(
        &instruments,
        "instrument_id,issuer_id,market_id,region,status\nAAA.US,I,M,US,active\n",
    )
    .unwrap();
    let portfolios = dir.path().join("weights.csv");
    let weights: Vec<String> = (1..=7).map(|i| format!("\"\"G{i}\"\": 0.1")).collect();
    fs::write(
        &portfolios,
        format!(
            "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{{\"\"AAA.US\"\": 0.3, {}}}\"\n",
            weights.join(", ")
        ),
    )
    .unwrap();
    let run = |kind: &str, file: &Path| stabspace(&["import", kind, file.to_str().unwrap()], dir.path());
    let o = run("instruments", &instruments);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run("portfolios", &portfolios);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: ")
            && err.contains("weights.csv")
            && err.contains("7 instruments not in the instruments table")
            && err.contains("\"G1\", \"G2\", \"G3\", \"G4\", \"G5\", and 2 more"),
        "{err}"
    );
    assert!(!err.contains("AAA.US"), "{err}");
}

async fn a_key_repeated_in_one_file_is_an_error_naming_both_lines(t: TestDb) {
    let before = seed(&t).await;
    let msg = rejected(
        &t,
        &before,
        ImportKind::Prices,
        "dup_prices.csv",
        &prices("AAA.US,2025-01-02,556.0,5"),
        4,
        None,
        "line 2 has the same key",
    )
    .await;
    assert!(
        msg.contains("instrument_id \"AAA.US\", trade_date 2025-01-02"),
        "{msg}"
    );
    // Keys compare as parsed values: day 01 is day 1.
    let msg = rejected(
        &t,
        &before,
        ImportKind::ScenarioPaths,
        "dup_paths.csv",
        &paths("S,A,01,X,0.3"),
        4,
        None,
        "line 3 has the same key",
    )
    .await;
    assert!(
        msg.contains("scenario_set_id \"S\", scenario_id \"A\", day_index 1, instrument_id \"X\""),
        "{msg}"
    );
    rejected(
        &t,
        &before,
        ImportKind::Instruments,
        "dup_instruments.csv",
        "instrument_id,issuer_id,market_id,region,status\nNEW,I,M,US,active\nAAA.US,I,M,US,active\nC,I,M,US,active\nAAA.US,I,M,US,delisted\n",
        5,
        None,
        "line 3 has the same key (instrument_id \"AAA.US\")",
    )
    .await;
    // The same key in two files is an update, not an error.
    let path = t.path("again.csv");
    fs::write(
        &path,
        "instrument_id,trade_date,close,volume\nAAA.US,2025-01-03,102.0,6\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Prices, &path, &Quiet)
        .await
        .unwrap();
    assert_eq!(close_of(&t.db, "AAA.US", "2025-01-03").await, 102.0);
}

async fn a_column_named_twice_in_the_header_is_an_error(t: TestDb) {
    let before = seed(&t).await;
    rejected(
        &t,
        &before,
        ImportKind::Prices,
        "dup_header.csv",
        "instrument_id,trade_date,close,volume,Close\nAAA.US,2025-01-02,555.0,5,1.0\n",
        1,
        Some("Close"),
        "names this column twice (fields 3 and 5)",
    )
    .await;
    // An extra column named twice is as ambiguous.
    rejected(
        &t,
        &before,
        ImportKind::Prices,
        "dup_extra.csv",
        "note,instrument_id,trade_date,close,volume,note\nx,AAA.US,2025-01-02,555.0,5,y\n",
        1,
        Some("note"),
        "twice",
    )
    .await;
}

async fn ids_are_at_most_128_bytes_without_control_characters(t: TestDb) {
    let before = seed(&t).await;
    let longest = "I".repeat(MAX_ID_BYTES);
    let too_long = "I".repeat(MAX_ID_BYTES + 1);
    // As long as a row may be (1 MiB with the rest of its row).
    let huge = "I".repeat(BIG);
    let instruments = |id: &str| {
        format!("instrument_id,issuer_id,market_id,region,status\nNEW,I,M2,US,active\n{id},I,M,US,active\n")
    };
    let cases: Vec<(ImportKind, String, &str, &str)> = vec![
        (ImportKind::Instruments, instruments(&too_long), "instrument_id", "129 bytes long"),
        (ImportKind::Instruments, instruments(&huge), "instrument_id", "1047552 bytes long"),
        (ImportKind::Instruments, instruments("A\0B"), "instrument_id", "control character (NUL)"),
        (ImportKind::Instruments, instruments("\"A\tB\""), "instrument_id", "control character (tab)"),
        (ImportKind::Instruments, instruments("\"A\nB\""), "instrument_id", "control character (line feed)"),
        (
            ImportKind::Instruments,
            format!("instrument_id,issuer_id,market_id,region,status\nNEW,I,M2,US,active\nC,{too_long},M,US,active\n"),
            "issuer_id",
            "at most 128 bytes",
        ),
        (
            ImportKind::Instruments,
            "instrument_id,issuer_id,market_id,region,status\nNEW,I,M2,US,active\nC,I,M\u{1b}X,US,active\n".into(),
            "market_id",
            "control character (U+001B)",
        ),
        (
            ImportKind::Instruments,
            "instrument_id,issuer_id,market_id,region,status\nNEW,I,M2,US,active\nC,I,M,U\0S,active\n".into(),
            "region",
            "control character (NUL)",
        ),
        (
            ImportKind::Scenarios,
            format!("scenario_set_id,scenario_id,scenario_date,shock_type,severity\nS,B,2025-01-02,X,LOW\nS,{too_long},2025-01-02,X,LOW\n"),
            "scenario_id",
            "at most 128 bytes",
        ),
        (
            ImportKind::Scenarios,
            "scenario_set_id,scenario_id,scenario_date,shock_type,severity\nS,B,2025-01-02,X,LOW\nS\0,C,2025-01-02,X,LOW\n".into(),
            "scenario_set_id",
            "NUL",
        ),
        (
            ImportKind::Portfolios,
            format!("portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{{\"\"AAA.US\"\": 1}}\"\n{too_long},2025-01-02,\"{{\"\"AAA.US\"\": 1}}\"\n"),
            "portfolio_id",
            "at most 128 bytes",
        ),
        (
            ImportKind::Portfolios,
            format!("portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{{\"\"AAA.US\"\": 1}}\"\nP2,2025-01-02,\"{{\"\"{too_long}\"\": 1}}\"\n"),
            "weights_json",
            "instrument id \"IIII",
        ),
        (
            ImportKind::Portfolios,
            "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{\"\"AAA.US\"\": 1}\"\nP2,2025-01-02,\"{\"\"A\\u0000B\"\": 1}\"\n".into(),
            "weights_json",
            "NUL",
        ),
        (
            ImportKind::Portfolios,
            "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{\"\"AAA.US\"\": 1}\"\nP2,2025-01-02,\"{\"\" AAA.US\"\": 1}\"\n".into(),
            "weights_json",
            "whitespace at its start or end",
        ),
        (
            ImportKind::BacktestRuns,
            format!("run_id,strategy_id,start_date,end_date,config_json,metrics_json\nR1,S,2025-01-01,2025-01-31,{{}},{{}}\nR2,{too_long},2025-01-01,2025-01-31,{{}},{{}}\n"),
            "strategy_id",
            "at most 128 bytes",
        ),
        (
            ImportKind::RiskReports,
            "portfolio_id,as_of_date,risk_metrics_json\nP1,2025-01-02,{}\nP1,2025-01-03,\"{\"\"note\"\": \"\"a\\u0000b\"\"}\"\n".into(),
            "risk_metrics_json",
            "NUL",
        ),
    ];
    for (i, (kind, body, col, what)) in cases.into_iter().enumerate() {
        let msg = rejected(
            &t,
            &before,
            kind,
            &format!("id{i}.csv"),
            &body,
            3,
            Some(col),
            what,
        )
        .await;
        assert!(msg.len() < 400, "id{i}.csv: message of {} bytes", msg.len());
    }
    // 128 bytes fit, on both backends.
    let path = t.path("ok.csv");
    fs::write(&path, instruments(&longest)).unwrap();
    import_file(&t.db, ImportKind::Instruments, &path, &Quiet)
        .await
        .unwrap();
    fs::write(
        &path,
        format!("instrument_id,trade_date,close,volume\n{longest},2025-01-02,1,1\n"),
    )
    .unwrap();
    import_file(&t.db, ImportKind::Prices, &path, &Quiet)
        .await
        .unwrap();
    assert_eq!(close_of(&t.db, &longest, "2025-01-02").await, 1.0);
}

async fn lf_and_crlf_files_report_the_same_line_numbers(t: TestDb) {
    let before = seed(&t).await;
    // (rows after the header, line of the bad row)
    let cases: [(&[&str], u64); 4] = [
        (&["AAA.US,2025-01-02,555.0,5", "BBB.US,2025-01-03,x,1"], 3),
        (&["BBB.US,2025-01-03,x,1"], 2),
        // A blank line is skipped but counted.
        (&["AAA.US,2025-01-02,555.0,5", "", "BBB.US,2025-01-03,x,1"], 4),
        // A quoted field over two lines: the next row starts a line later.
        (
            &[
                "\"AAA.US\",2025-01-02,555.0,\"5\"",
                "\"BBB.US\",\"2025-01-03\",\"1\",\"1",
                "\"",
                "BBB.US,2025-01-04,x,1",
            ],
            5,
        ),
    ];
    for (i, (rows, line)) in cases.into_iter().enumerate() {
        for (ending, name) in [("\n", "lf"), ("\r\n", "crlf"), ("\r", "cr")] {
            let mut body = format!("instrument_id,trade_date,close,volume{ending}");
            for r in rows {
                body.push_str(r);
                body.push_str(ending);
            }
            let file = format!("{name}{i}.csv");
            rejected(
                &t,
                &before,
                ImportKind::Prices,
                &file,
                &body,
                line,
                Some("close"),
                "invalid number \"x\"",
            )
            .await;
        }
    }
    // Errors of the CSV reader itself (a short row) name the same line too.
    for (ending, name) in [("\n", "lf"), ("\r\n", "crlf")] {
        let body = [
            "instrument_id,trade_date,close,volume",
            "AAA.US,2025-01-02,555.0,5",
            "BBB.US,2025-01-03,1",
            "",
        ]
        .join(ending);
        rejected(
            &t,
            &before,
            ImportKind::Prices,
            &format!("short_{name}.csv"),
            &body,
            3,
            None,
            "row has 3 fields",
        )
        .await;
    }
    // A duplicate key names both lines the same way.
    let body = [
        "instrument_id,trade_date,close,volume",
        "BBB.US,2025-01-02,1,1",
        "",
        "BBB.US,2025-01-02,2,1",
        "",
    ]
    .join("\r\n");
    rejected(
        &t,
        &before,
        ImportKind::Prices,
        "dup_crlf.csv",
        &body,
        4,
        None,
        "line 2 has the same key",
    )
    .await;
}

async fn errors_quote_only_a_short_excerpt_of_the_input(t: TestDb) {
    let before = seed(&t).await;
    let huge = "x".repeat(BIG);
    let short = |msg: &str, name: &str| assert!(msg.len() < 400, "{name}: message of {} bytes", msg.len());

    // A header of almost 1 MiB without a required column.
    let path = t.path("header.csv");
    fs::write(
        &path,
        format!("instrument_id,trade_date,{huge},volume\nAAA.US,2025-01-02,1,1\n"),
    )
    .unwrap();
    let err = import_file(&t.db, ImportKind::Prices, &path, &Quiet)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::MissingColumn { column, .. } if column == "close"),
        "{msg}"
    );
    assert!(
        msg.contains("header.csv") && msg.contains(&format!("{} bytes", BIG + 32)),
        "{msg}"
    );
    short(&msg, "header.csv");
    assert_eq!(counts(&t.db).await, before);

    let cases: Vec<(ImportKind, String, &str, &str)> = vec![
        (ImportKind::Prices, prices(&format!("BBB.US,2025-01-03,{huge},1")), "close", "\"xxxxxxxxxx"),
        (ImportKind::Prices, prices(&format!("BBB.US,{huge},1,1")), "trade_date", "(1047552 bytes)"),
        (
            ImportKind::RiskReports,
            format!("portfolio_id,as_of_date,risk_metrics_json\nP1,2025-01-02,{{}}\nP1,2025-01-03,\"[\"\"{huge}\"\"]\"\n"),
            "risk_metrics_json",
            "expected a JSON object, got an array",
        ),
        (
            ImportKind::Portfolios,
            format!("portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{{\"\"AAA.US\"\": 1}}\"\nP1,2025-01-03,\"{{\"\"AAA.US\"\": \"\"{huge}\"\"}}\"\n"),
            "weights_json",
            "is a string, expected a number",
        ),
        (
            ImportKind::Instruments,
            format!("instrument_id,issuer_id,market_id,region,status\nNEW,I,M2,US,active\nC,I,M,US,{huge}\n"),
            "status",
            "(1047552 bytes)",
        ),
    ];
    for (i, (kind, body, col, what)) in cases.into_iter().enumerate() {
        let name = format!("big{i}.csv");
        let line = if kind == ImportKind::Prices { 4 } else { 3 };
        let msg = rejected(&t, &before, kind, &name, &body, line, Some(col), what).await;
        short(&msg, &name);
    }
    // A duplicated column name of half a MiB.
    let half = &huge[..BIG / 2];
    let body = format!("instrument_id,trade_date,close,volume,{half},{half}\n");
    let msg = rejected(
        &t,
        &before,
        ImportKind::Prices,
        "dupbig.csv",
        &body,
        1,
        None,
        "twice",
    )
    .await;
    short(&msg, "dupbig.csv");
}

/// Dates are exactly YYYY-MM-DD, years 0001 to 9999, in every date column:
/// the loose forms chrono takes are errors (before, `2023-1-5` was stored as
/// 2023-01-05 and its upsert overwrote a real close), and the extreme years
/// are stored and read back alike on both backends.
async fn dates_are_exactly_yyyy_mm_dd_with_years_0001_to_9999(t: TestDb) {
    let before = seed(&t).await;
    let shape = "expected YYYY-MM-DD (a four-digit year, a two-digit month and day)";
    let cases = [
        ("2023-1-5", shape),
        ("2023-01-5", shape),
        ("+2023-01-05", shape),
        ("10000-01-01", shape),
        ("2025-1-2", shape),
        (" 2025-01-02x", shape),
        ("0000-01-05", "with a year from 0001 to 9999"),
        ("2023-02-29", "there is no such day"),
    ];
    for (i, (date, what)) in cases.into_iter().enumerate() {
        // The good rows first update AAA.US's close on 2025-01-02; a loose
        // date for that day would have updated it again.
        let msg = rejected(
            &t,
            &before,
            ImportKind::Prices,
            &format!("date{i}.csv"),
            &prices(&format!("AAA.US,{date},777.0,5")),
            4,
            Some("trade_date"),
            what,
        )
        .await;
        assert!(
            msg.contains(&format!("invalid date \"{}\"", date.trim())),
            "{msg}"
        );
    }
    // Every kind with a date checks it the same way.
    let others: [(ImportKind, &str, &str); 5] = [
        (
            ImportKind::Scenarios,
            "scenario_set_id,scenario_id,scenario_date,shock_type,severity\nS,NEW,2025-01-02,X,LOW\nS,B,2023-1-5,X,LOW\n",
            "scenario_date",
        ),
        (
            ImportKind::Portfolios,
            "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{\"\"AAA.US\"\": 1}\"\nP1,+2023-01-05,\"{\"\"AAA.US\"\": 1}\"\n",
            "as_of_date",
        ),
        (
            ImportKind::RiskReports,
            "portfolio_id,as_of_date,risk_metrics_json\nP1,2025-01-02,{}\nP1,0000-01-05,{}\n",
            "as_of_date",
        ),
        (
            ImportKind::BacktestRuns,
            "run_id,strategy_id,start_date,end_date,config_json,metrics_json\nR1,S,2025-01-01,2025-01-31,{},{}\nR2,S,2025-01-01,10000-01-01,{},{}\n",
            "end_date",
        ),
        (
            ImportKind::Fundamentals,
            "issuer_id,as_of_date,fundamentals_json\nI,2025-01-02,{}\nI,2023-01-5,{}\n",
            "as_of_date",
        ),
    ];
    for (i, (kind, body, col)) in others.into_iter().enumerate() {
        rejected(
            &t,
            &before,
            kind,
            &format!("kind{i}.csv"),
            body,
            3,
            Some(col),
            "invalid date",
        )
        .await;
    }

    // The first and last days of the range round-trip, the same text on both backends.
    let path = t.path("extremes.csv");
    fs::write(
        &path,
        "instrument_id,trade_date,close,volume\nBBB.US,0001-01-01,1,1\nBBB.US,9999-12-31,2,1\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Prices, &path, &Quiet)
        .await
        .unwrap();
    let stored: Vec<(String, chrono::NaiveDate)> = with_pool!(t.db, p => sqlx::query(
        "SELECT CAST(trade_date AS TEXT), trade_date FROM prices_daily \
         WHERE instrument_id = 'BBB.US' ORDER BY 2")
        .fetch_all(p)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect());
    let d = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    assert_eq!(
        stored,
        [
            ("0001-01-01".to_string(), d(1, 1, 1)),
            ("9999-12-31".to_string(), d(9999, 12, 31))
        ]
    );
}

/// A date flag (`--as-of`, `--start`) takes the same dates: the loose forms
/// are a usage error naming the flag, before the database is touched.
async fn date_flags_are_exactly_yyyy_mm_dd_and_name_the_flag(t: TestDb) {
    let before = seed(&t).await;
    let dir = tempfile::tempdir().unwrap();
    for date in [
        "2023-1-5",
        "2023-01-5",
        "+2023-01-05",
        "0000-01-05",
        "10000-01-01",
    ] {
        for args in [
            vec!["backfill-numeric-embeddings", "--market-id", "M", "--as-of", date],
            vec![
                "backfill-portfolio-stab-scenario-metrics",
                "--portfolio-id",
                "P1",
                "--scenario-set-id",
                "S",
                "--start",
                date,
                "--end",
                "2025-01-31",
            ],
        ] {
            let mut all = vec!["--database-url", t.url.as_str()];
            all.extend_from_slice(&args);
            let o = stabspace(&all, dir.path());
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            let flag = if args[0] == "backfill-numeric-embeddings" {
                "--as-of"
            } else {
                "--start"
            };
            assert!(
                err.contains(&format!("'{date}' for '{flag}"))
                    && err.contains(&format!("invalid date \"{date}\""))
                    && err.contains("YYYY-MM-DD"),
                "{args:?}: {err}"
            );
            assert_eq!(counts(&t.db).await, before, "{args:?}");
        }
    }
}

async fn scenario_paths_must_name_imported_scenarios(t: TestDb) {
    let before = seed(&t).await;
    let msg = rejected(
        &t,
        &before,
        ImportKind::ScenarioPaths,
        "unknown_set.csv",
        &paths("NOSET,A,0,X,0.1"),
        4,
        Some("scenario_set_id"),
        "unknown scenario set \"NOSET\"",
    )
    .await;
    assert!(msg.contains("import scenarios"), "{msg}");
    let msg = rejected(
        &t,
        &before,
        ImportKind::ScenarioPaths,
        "unknown_scenario.csv",
        &paths("S,B,0,X,0.1"),
        4,
        Some("scenario_id"),
        "unknown scenario \"B\" of set \"S\"",
    )
    .await;
    assert!(msg.contains("import scenarios"), "{msg}");
    // Ids compare exactly.
    rejected(
        &t,
        &before,
        ImportKind::ScenarioPaths,
        "case.csv",
        &paths("S,a,0,X,0.1"),
        4,
        Some("scenario_id"),
        "unknown scenario \"a\"",
    )
    .await;
    // Once the scenario is imported, its paths are.
    let path = t.path("scenarios.csv");
    fs::write(
        &path,
        "scenario_set_id,scenario_id,scenario_date,shock_type,severity\nS,B,2025-01-02,X,LOW\nT,A,2025-01-02,X,LOW\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Scenarios, &path, &Quiet)
        .await
        .unwrap();
    let path = t.path("ok.csv");
    fs::write(&path, paths("S,B,0,X,0.1\nT,A,0,X,0.1")).unwrap();
    assert_eq!(
        import_file(&t.db, ImportKind::ScenarioPaths, &path, &Quiet)
            .await
            .unwrap()
            .rows,
        4
    );
}

async fn risk_reports_and_fundamentals_naming_unknown_ids_import_with_a_list(t: TestDb) {
    seed(&t).await;
    let path = t.path("p.csv");
    fs::write(
        &path,
        "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{\"\"AAA.US\"\": 1}\"\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Portfolios, &path, &Quiet)
        .await
        .unwrap();

    let path = t.path("reports.csv");
    fs::write(
        &path,
        "portfolio_id,as_of_date,risk_metrics_json\nP1,2025-01-02,{}\nGHOST2,2025-01-02,{}\nGHOST1,2025-01-02,{}\nGHOST2,2025-01-03,{}\n",
    )
    .unwrap();
    let s = import_file(&t.db, ImportKind::RiskReports, &path, &Quiet)
        .await
        .unwrap();
    assert_eq!(
        (s.rows, s.unknown.as_slice()),
        (4, &["GHOST1".to_string(), "GHOST2".into()][..])
    );
    assert_eq!(count(&t.db, "portfolio_risk_reports").await, 4);

    // Issuers come from instruments (seed: issuer I).
    let path = t.path("fundamentals.csv");
    fs::write(
        &path,
        "issuer_id,as_of_date,fundamentals_json\nI,2025-01-02,{}\nNOISSUER,2025-01-02,{}\n",
    )
    .unwrap();
    let s = import_file(&t.db, ImportKind::Fundamentals, &path, &Quiet)
        .await
        .unwrap();
    assert_eq!((s.rows, s.unknown.as_slice()), (2, &["NOISSUER".to_string()][..]));
    assert_eq!(count(&t.db, "issuer_fundamentals").await, 2);

    fs::write(&path, "issuer_id,as_of_date,fundamentals_json\nI,2025-01-03,{}\n").unwrap();
    let s = import_file(&t.db, ImportKind::Fundamentals, &path, &Quiet)
        .await
        .unwrap();
    assert!(s.unknown.is_empty(), "{:?}", s.unknown);
}

/// The warnings on stderr list the unknown portfolios and issuers.
#[test]
fn unknown_portfolios_and_issuers_are_a_warning_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        fs::write(&p, body).unwrap();
        p
    };
    let instruments = file(
        "i.csv",
        "instrument_id,issuer_id,market_id,region,status\nAAA.US,ISS,M,US,active\n",
    );
    let reports = file(
        "reports.csv",
        "portfolio_id,as_of_date,risk_metrics_json\nPX,2025-01-02,{}\nPY,2025-01-02,{}\n",
    );
    let fundamentals = file(
        "fund.csv",
        "issuer_id,as_of_date,fundamentals_json\nISS,2025-01-02,{}\nNOPE,2025-01-02,{}\n",
    );
    let run = |kind: &str, f: &Path| stabspace(&["import", kind, f.to_str().unwrap()], dir.path());
    let o = run("instruments", &instruments);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run("risk-reports", &reports);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: ")
            && err.contains("reports.csv")
            && err.contains("2 portfolios with no target weights in target_portfolios")
            && err.contains("\"PX\", \"PY\""),
        "{err}"
    );
    let o = run("fundamentals", &fundamentals);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: ")
            && err.contains("fund.csv")
            && err.contains("1 issuer not in the issuers table")
            && err.contains("\"NOPE\"")
            && !err.contains("ISS\""),
        "{err}"
    );
}

/// JSON with a key given twice (serde_json kept the last), weights that are
/// not finite or overflow when summed (they failed later as "all zeros"), and
/// integers beyond what their column stores exactly (a volume of 2⁵³ + 1 was
/// rounded) are errors at the field.
async fn json_keys_given_twice_and_numbers_not_stored_exactly_are_errors(t: TestDb) {
    let before = seed(&t).await;
    let portfolio = |bad: &str| {
        format!(
            "portfolio_id,as_of_date,weights_json\nP1,2025-01-02,\"{{\"\"AAA.US\"\": 1}}\"\nP1,2025-01-03,\"{}\"\n",
            bad.replace('"', "\"\"")
        )
    };
    let report = |bad: &str| {
        format!(
            "portfolio_id,as_of_date,risk_metrics_json\nP1,2025-01-02,{{}}\nP1,2025-01-03,\"{}\"\n",
            bad.replace('"', "\"\"")
        )
    };
    let w = ImportKind::Portfolios;
    let r = ImportKind::RiskReports;
    let cases: Vec<(ImportKind, String, &str, &str)> = vec![
        (w, portfolio(r#"{"AAA.US": 0.5, "BBB.US": 0.2, "AAA.US": 0.3}"#), "weights_json", "the key \"AAA.US\" is given twice in one object at line 1 column"),
        (r, report(r#"{"var": {"p99": 1, "p99": 2}}"#), "risk_metrics_json", "the key \"p99\" is given twice"),
        (
            ImportKind::BacktestRuns,
            "run_id,strategy_id,start_date,end_date,config_json,metrics_json\nR1,S,2025-01-01,2025-01-31,{},{}\nR2,S,2025-01-01,2025-01-31,\"{\"\"a\"\": 1, \"\"a\"\": 1}\",{}\n".into(),
            "config_json",
            "given twice",
        ),
        (w, portfolio(r#"{"AAA.US": 1e308, "BBB.US": 1e308}"#), "weights_json", "overflow a double (above about 1.8e308) when summed, at the weight of \"BBB.US\""),
        (w, portfolio(r#"{"AAA.US": -1.7e308, "BBB.US": 0.5, "X": 1.7e308}"#), "weights_json", "at the weight of \"X\""),
        (w, portfolio(r#"{"AAA.US": Infinity}"#), "weights_json", "JSON has no NaN or Infinity"),
        (w, portfolio(r#"{"AAA.US": -Infinity}"#), "weights_json", "JSON has no NaN or Infinity"),
        (w, portfolio(r#"{"AAA.US": NaN}"#), "weights_json", "JSON has no NaN or Infinity"),
        (w, portfolio(r#"{"AAA.US": 1e400}"#), "weights_json", "number out of range"),
        (r, report(r#"{"n": 123456789012345678901234}"#), "risk_metrics_json", "the integer 123456789012345678901234 at line 1 column 7 of the JSON does not fit 64 bits"),
        (r, report(r#"{"n": [1, -9223372036854775809]}"#), "risk_metrics_json", "-9223372036854775809"),
        (ImportKind::Prices, prices("BBB.US,2025-01-03,1.0,9007199254740993"), "volume", "is above the largest volume, 2^53 = 9007199254740992"),
        (ImportKind::Prices, prices("BBB.US,2025-01-03,1.0,1e20"), "volume", "above the largest volume"),
        (ImportKind::Prices, prices("BBB.US,2025-01-03,1.0,1e400"), "volume", "not a finite number"),
        (ImportKind::Prices, prices("BBB.US,2025-01-03,1.0,5000000000000000.5"), "volume", "expected a whole number of 0 or more"),
        (ImportKind::ScenarioPaths, paths("S,A,2147483648,X,0.1"), "day_index", "above the limit 2147483647"),
        (ImportKind::ScenarioPaths, paths("S,A,99999999999999999999999,X,0.1"), "day_index", "above the limit 2147483647"),
    ];
    for (i, (kind, body, col, what)) in cases.into_iter().enumerate() {
        let line = if matches!(kind, ImportKind::Prices | ImportKind::ScenarioPaths) {
            4
        } else {
            3
        };
        rejected(
            &t,
            &before,
            kind,
            &format!("json{i}.csv"),
            &body,
            line,
            Some(col),
            what,
        )
        .await;
    }

    // At the limits, values are stored exactly.
    let path = t.path("limits.csv");
    fs::write(
        &path,
        "instrument_id,trade_date,close,volume\nBBB.US,2025-01-03,1,9007199254740992\nBBB.US,2025-01-06,1,9.007199254740991e15\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::Prices, &path, &Quiet)
        .await
        .unwrap();
    assert_eq!(volume_of(&t.db, "BBB.US", "2025-01-03").await, 9007199254740992.0);
    assert_eq!(volume_of(&t.db, "BBB.US", "2025-01-06").await, 9007199254740991.0);
    fs::write(&path, paths("S,A,2147483647,X,0.1")).unwrap();
    import_file(&t.db, ImportKind::ScenarioPaths, &path, &Quiet)
        .await
        .unwrap();
    let top: i32 = with_pool!(t.db, p => sqlx::query_scalar("SELECT MAX(day_index) FROM scenario_paths")
        .fetch_one(p).await.unwrap());
    assert_eq!(top, 2147483647);
    // Large weights whose sum is finite, and 64-bit integers, are kept as written.
    fs::write(
        &path,
        portfolio(r#"{"AAA.US": 1e307, "BBB.US": -1e307}"#).replace("P1,2025-01-02", "P0,2025-01-02"),
    )
    .unwrap();
    import_file(&t.db, w, &path, &Quiet).await.unwrap();
    fs::write(
        &path,
        report(r#"{"a": 18446744073709551615, "b": -9223372036854775808, "c": "123456789012345678901234"}"#),
    )
    .unwrap();
    import_file(&t.db, r, &path, &Quiet).await.unwrap();
    let v: sqlx::types::Json<serde_json::Value> = with_pool!(t.db, p => sqlx::query_scalar(
        "SELECT risk_metrics FROM portfolio_risk_reports WHERE as_of_date = $1")
        .bind(chrono::NaiveDate::from_ymd_opt(2025, 1, 3).unwrap())
        .fetch_one(p).await.unwrap());
    assert_eq!(
        v.0,
        serde_json::json!({"a": 18446744073709551615u64, "b": i64::MIN, "c": "123456789012345678901234"})
    );
}

/// A header or row over 1 MiB is an error at the line where it starts, quoted
/// line breaks included; one of exactly 1 MiB imports.
async fn a_header_or_row_over_1_mib_is_an_error_at_its_line(t: TestDb) {
    let before = seed(&t).await;
    let limit = format!("longer than {MAX_LINE_BYTES} bytes (1 MiB)");
    // A header with an extra column making it one byte over.
    let head = "instrument_id,trade_date,close,volume,";
    let header = format!(
        "{head}{}\nAAA.US,2025-01-02,555.0,5,x\n",
        "n".repeat(MAX_LINE_BYTES + 1 - head.len())
    );
    let msg = rejected(
        &t,
        &before,
        ImportKind::Prices,
        "long_header.csv",
        &header,
        1,
        None,
        &limit,
    )
    .await;
    assert!(msg.contains("the header is longer"), "{msg}");

    // Rows with a note column: the good rows would change the database.
    let body = |ending: &str, row: &str| {
        [
            "instrument_id,trade_date,close,volume,note",
            "AAA.US,2025-01-02,555.0,5,a",
            "BBB.US,2025-01-02,1.0,1,b",
            row,
            "BBB.US,2025-01-06,1.0,1,c",
            "",
        ]
        .join(ending)
    };
    let prefix = "BBB.US,2025-01-03,1.0,1,";
    let exact = format!("{prefix}{}", "x".repeat(MAX_LINE_BYTES - prefix.len()));
    let over = format!("{exact}x");
    for ending in ["\n", "\r\n", "\r"] {
        let msg = rejected(
            &t,
            &before,
            ImportKind::Prices,
            "long_row.csv",
            &body(ending, &over),
            4,
            None,
            &limit,
        )
        .await;
        assert!(msg.contains("this row is longer"), "{msg}");
    }
    // Line breaks inside a quoted field count: a row of many short lines.
    let quoted = format!("{prefix}\"{}\"", "xxxxxxx\n".repeat(MAX_LINE_BYTES / 8));
    let msg = rejected(
        &t,
        &before,
        ImportKind::Prices,
        "long_quoted.csv",
        &body("\n", &quoted),
        4,
        None,
        &limit,
    )
    .await;
    assert!(
        msg.contains("inside the quoted field 5 (\"note\") opened on line 4: is that quote unbalanced?"),
        "{msg}"
    );

    let path = t.path("exact.csv");
    fs::write(&path, body("\n", &exact)).unwrap();
    assert_eq!(
        import_file(&t.db, ImportKind::Prices, &path, &Quiet)
            .await
            .unwrap()
            .rows,
        4
    );
    assert_eq!(close_of(&t.db, "AAA.US", "2025-01-02").await, 555.0);
}

/// Messages say what is wrong: the line where an unbalanced quote opened (the
/// parser alone saw a row of too few fields), "empty file", and the limits of
/// integers.
async fn unbalanced_quotes_empty_files_and_integer_limits_are_named(t: TestDb) {
    let before = seed(&t).await;
    // The quote opened on line 4 runs to the end of the file.
    let body = prices("BBB.US,\"2025-01-03,1.0,1\nBBB.US,2025-01-06,1.0,1\nBBB.US,2025-01-07,1.0,1");
    rejected(
        &t,
        &before,
        ImportKind::Prices,
        "quote.csv",
        &body,
        4,
        None,
        "unbalanced quote: the quote opening field 2 (\"trade_date\") on line 4 is never closed (the file ends inside it)",
    )
    .await;
    // In a row whose first field holds a line break, the quote's own line.
    let body = prices("\"BBB\n.US\",2025-01-03,\"1.0,1\nBBB.US,2025-01-06,1.0,1");
    rejected(
        &t,
        &before,
        ImportKind::Prices,
        "quote2.csv",
        &body,
        5,
        None,
        "the quote opening field 3 (\"close\") on line 5 is never closed (the file ends inside it); its row starts on line 4",
    )
    .await;
    // A quote closed on a later line, leaving too few fields, is pointed at.
    let body = prices("BBB.US,\"2025-01-03,1.0\n\",1\nBBB.US,2025-01-06,1.0,1");
    rejected(
        &t,
        &before,
        ImportKind::Prices,
        "quote3.csv",
        &body,
        4,
        None,
        "row has 3 fields, the header has 4; the quote opening field 2 (\"trade_date\") on line 4 spans a line break: is it unbalanced?",
    )
    .await;
    // A quote in the middle of an unquoted field is an ordinary character.
    let path = t.path("inner.csv");
    fs::write(
        &path,
        "instrument_id,trade_date,close,volume,note\nBBB.US,2025-01-03,1.0,1,5\" screen\nBBB.US,2025-01-06,1.0,1,x\n",
    )
    .unwrap();
    assert_eq!(
        import_file(&t.db, ImportKind::Prices, &path, &Quiet)
            .await
            .unwrap()
            .rows,
        2
    );
    let before = counts(&t.db).await;

    for (name, body, what) in [
        (
            "empty.csv",
            "",
            "empty file: expected a header row naming the columns instrument_id,trade_date,close,volume",
        ),
        (
            "blank.csv",
            "\n\r\n\n",
            "empty file (only blank lines): expected a header row",
        ),
    ] {
        let msg = rejected(&t, &before, ImportKind::Prices, name, body, 1, None, what).await;
        assert!(!msg.contains("header has: )"), "{msg}");
    }
    let path = t.path("commas.csv");
    fs::write(&path, ",,,\nAAA.US,2025-01-02,1,1\n").unwrap();
    let err = import_file(&t.db, ImportKind::Prices, &path, &Quiet)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("commas.csv: missing required column \"instrument_id\" (header has: no column names)"),
        "{err}"
    );
    assert_eq!(counts(&t.db).await, before);

    for (i, (bad, what)) in [
        (
            "S,A,2147483648,X,0.1",
            "day index \"2147483648\" is above the limit 2147483647 (2^31 - 1",
        ),
        (
            "S,A,-3,X,0.1",
            "day index \"-3\" is negative: expected an integer from 0 to 2147483647",
        ),
        (
            "S,A,1.5,X,0.1",
            "invalid day index \"1.5\", expected an integer from 0 to 2147483647",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        rejected(
            &t,
            &before,
            ImportKind::ScenarioPaths,
            &format!("day{i}.csv"),
            &paths(bad),
            4,
            Some("day_index"),
            what,
        )
        .await;
    }
    rejected(
        &t,
        &before,
        ImportKind::Prices,
        "volume.csv",
        &prices("BBB.US,2025-01-03,1.0,18446744073709551616"),
        4,
        Some("volume"),
        "\"18446744073709551616\" is above the largest volume, 2^53 = 9007199254740992: volumes are stored as doubles",
    )
    .await;
}
