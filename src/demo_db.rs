//! The demo's own database: `stabspace demo` writes only into a database that
//! is empty or that an earlier demo filled (marked in `stabspace_meta`), and
//! empties it first, so its figures never depend on earlier runs and it never
//! mixes synthetic rows into a user's data.

use crate::error::{Error, Result};
use crate::storage::{demo, meta, Db};

/// Make `db` ready for the demo: mark an empty database as the demo's, empty
/// one the demo filled before, refuse anything else. Returns whether earlier
/// demo data was cleared.
pub async fn claim(db: &Db) -> Result<bool> {
    let marked = meta::get(db, meta::DEMO_KEY).await?.is_some();
    let found = demo::contents(db).await?;
    if !marked && !found.is_empty() {
        let what: Vec<String> = found.iter().map(|(t, n)| format!("{n} rows in {t}")).collect();
        return Err(Error::Invalid(format!(
            "{} holds data that `stabspace demo` did not create ({}); the demo only writes into an empty \
             database or one an earlier demo filled. Run it with another --data-dir (its own SQLite file), or \
             give `demo --database-url` an empty database",
            db.label(),
            what.join(", ")
        )));
    }
    let cleared = !found.is_empty();
    demo::empty(db).await?;
    meta::set(db, meta::DEMO_KEY, "created by stabspace demo").await?;
    Ok(cleared)
}
