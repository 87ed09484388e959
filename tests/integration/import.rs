use std::fs;
use std::path::Path;

use sqlx::Row;
use stabspace::import::{import_file, ImportKind, MAX_ID_BYTES};
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
    import_file(&t.db, ImportKind::Instruments, &instruments)
        .await
        .unwrap();
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
        import_file(&t.db, kind, &path).await.unwrap();
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
    let err = match import_file(&t.db, kind, &path).await {
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
    import_file(&t.db, p, &path).await.unwrap();
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
    assert_eq!(import_file(&t.db, k, &path).await.unwrap().rows, 3);
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
    import_file(&t.db, ImportKind::Instruments, &path).await.unwrap();
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
    let s = import_file(&t.db, ImportKind::Portfolios, &path).await.unwrap();
    assert_eq!(s.rows, 2);
    assert_eq!(s.unknown_instruments, ["GHOST1", "GHOST2"]);
    assert_eq!(count(&t.db, "target_portfolios").await, 2);

    fs::write(
        &path,
        "portfolio_id,as_of_date,weights_json\nP2,2025-01-02,\"{\"\"AAA.US\"\": 1}\"\n",
    )
    .unwrap();
    let s = import_file(&t.db, ImportKind::Portfolios, &path).await.unwrap();
    assert!(s.unknown_instruments.is_empty(), "{:?}", s.unknown_instruments);
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
    import_file(&t.db, ImportKind::Prices, &path).await.unwrap();
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
    let huge = "I".repeat(10 << 20);
    let instruments = |id: &str| {
        format!("instrument_id,issuer_id,market_id,region,status\nNEW,I,M2,US,active\n{id},I,M,US,active\n")
    };
    let cases: Vec<(ImportKind, String, &str, &str)> = vec![
        (ImportKind::Instruments, instruments(&too_long), "instrument_id", "129 bytes long"),
        (ImportKind::Instruments, instruments(&huge), "instrument_id", "10485760 bytes long"),
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
    import_file(&t.db, ImportKind::Instruments, &path).await.unwrap();
    fs::write(
        &path,
        format!("instrument_id,trade_date,close,volume\n{longest},2025-01-02,1,1\n"),
    )
    .unwrap();
    import_file(&t.db, ImportKind::Prices, &path).await.unwrap();
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
    let huge = "x".repeat(10 << 20);
    let short = |msg: &str, name: &str| assert!(msg.len() < 400, "{name}: message of {} bytes", msg.len());

    // A 10 MB header without a required column.
    let path = t.path("header.csv");
    fs::write(
        &path,
        format!("instrument_id,trade_date,{huge},volume\nAAA.US,2025-01-02,1,1\n"),
    )
    .unwrap();
    let err = import_file(&t.db, ImportKind::Prices, &path).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::MissingColumn { column, .. } if column == "close"),
        "{msg}"
    );
    assert!(
        msg.contains("header.csv") && msg.contains("10485792 bytes"),
        "{msg}"
    );
    short(&msg, "header.csv");
    assert_eq!(counts(&t.db).await, before);

    let cases: Vec<(ImportKind, String, &str, &str)> = vec![
        (ImportKind::Prices, prices(&format!("BBB.US,2025-01-03,{huge},1")), "close", "\"xxxxxxxxxx"),
        (ImportKind::Prices, prices(&format!("BBB.US,{huge},1,1")), "trade_date", "(10485760 bytes)"),
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
            "(10485760 bytes)",
        ),
    ];
    for (i, (kind, body, col, what)) in cases.into_iter().enumerate() {
        let name = format!("big{i}.csv");
        let line = if kind == ImportKind::Prices { 4 } else { 3 };
        let msg = rejected(&t, &before, kind, &name, &body, line, Some(col), what).await;
        short(&msg, &name);
    }
    // A duplicated 10 MB column name.
    let body = format!("instrument_id,trade_date,close,volume,{huge},{huge}\n");
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
