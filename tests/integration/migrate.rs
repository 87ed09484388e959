use stabspace::storage::Db;
use stabspace::with_pool;

use crate::both_backends;
use crate::support::{count, TestDb};

both_backends!(unmigrated: migrations_keep_tables_other_tools_created_and_are_idempotent);

/// Tables another tool created first keep their rows and extra columns, and
/// migrating twice is harmless.
async fn migrations_keep_tables_other_tools_created_and_are_idempotent(t: TestDb) {
    with_pool!(t.db, p => {
        sqlx::query("CREATE TABLE legacy_notes (id TEXT PRIMARY KEY, note TEXT)").execute(p).await.unwrap();
        sqlx::query("INSERT INTO legacy_notes VALUES ('a', 'kept')").execute(p).await.unwrap();
        sqlx::query("CREATE TABLE markets (market_id TEXT PRIMARY KEY, region TEXT, other_tool_col TEXT)")
            .execute(p).await.unwrap();
        sqlx::query("INSERT INTO markets VALUES ('US_EQ', 'US', 'x')").execute(p).await.unwrap();
    });
    t.db.migrate().await.unwrap();
    let again = Db::open(&t.url).await.unwrap();
    again.migrate().await.unwrap();
    let (note, col): (String, String) = with_pool!(again, p => sqlx::query_as(
        "SELECT n.note, m.other_tool_col FROM legacy_notes n, markets m").fetch_one(p).await.unwrap());
    assert_eq!((note.as_str(), col.as_str()), ("kept", "x"));
    assert_eq!(
        count(&again, "prices_daily").await,
        0,
        "our tables were created beside them"
    );
    again.close().await;
}
