use std::path::PathBuf;

use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::error::Result;
use crate::import::{import_file, ImportKind};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each file is imported in one transaction: a bad row aborts the file with an \
error naming file, line and column, and nothing is written. Rows are upserted on the table key, so \
re-importing a file changes nothing. Dates are YYYY-MM-DD (years 0001-9999); a header or row is at \
most 1 MiB; extra columns are ignored."
)]
pub struct Args {
    /// What the files hold.
    #[arg(value_enum)]
    pub kind: ImportKind,
    /// CSV files with a header row.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub async fn run(g: &GlobalOpts, args: Args) -> Result<()> {
    let bars = Bars::default();
    let db = g.open_db().await?;
    for file in &args.files {
        let s = import_file(&db, args.kind, file, &bars).await?;
        println!(
            "imported {} {} rows from {} in {:.2} s",
            s.rows,
            s.kind.name(),
            s.file.display(),
            s.seconds
        );
    }
    Ok(())
}
