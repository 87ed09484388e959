use chrono::NaiveDate;

use crate::backfill::{backfill_numeric_embeddings, NumericBackfill};
use crate::cli::{parse_date, GlobalOpts};
use crate::error::Result;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Encodes the last --window-days trading days on or before --as-of of each \
active instrument of the market as (close, volume, log_return) per day, flattened and zero-padded to \
384 float32 values, into numeric_window_embeddings (entity_type INSTRUMENT). Instruments that cannot \
be encoded are skipped and listed with the reason. Re-running replaces the stored vectors.\n\n\
Example: stabspace backfill-numeric-embeddings --as-of 2025-01-31 --window-days 63 --market-id US_EQ \
--limit 500 --model-id num-stab-core-v1"
)]
pub struct Args {
    /// Last date of the windows (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub as_of: NaiveDate,
    /// Trading days per window (window_days + 1 prices are needed).
    #[arg(long, default_value_t = 63)]
    pub window_days: usize,
    /// Market whose active instruments are encoded.
    #[arg(long)]
    pub market_id: String,
    /// At most this many instruments, in instrument_id order.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Encoder: num-stab-core-v1 or num-regime-core-v1.
    #[arg(long, default_value = "num-stab-core-v1")]
    pub model_id: String,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let db = g.open_db().await?;
    let summary = backfill_numeric_embeddings(
        &db,
        &NumericBackfill {
            as_of: a.as_of,
            window_days: a.window_days,
            market_id: a.market_id,
            limit: a.limit,
            model_id: a.model_id,
        },
    )
    .await?;
    print!("{summary}");
    Ok(())
}
