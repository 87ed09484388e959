use chrono::NaiveDate;

use crate::backfill::{backfill_numeric_embeddings, NumericBackfill};
use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::config::parse_date;
use crate::encoders::{is_signature_model, resolve_horizon, DEFAULT_WINDOW_DAYS};
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Encodes the last --window-days trading days on or before --as-of of each \
active instrument of the market as (close, volume, log_return) per day, flattened and zero-padded to \
384 float32 values, into numeric_window_embeddings (entity_type INSTRUMENT). Instruments that cannot \
be encoded are skipped and listed with the reason. Re-running replaces the stored vectors.\n\n\
num-stab-core-v2 instead encodes the last --horizon-days log returns as their fragility signature \
(sorted ascending, then absolute values sorted ascending, zero-padded): the space of \
num-scenario-core-v2 scenarios with the same --horizon-days.\n\n\
num-stab-core-v3 encodes the same returns at four horizons (H/4, H/2, 3H/4, H) together with the \
market's mean return and cross-sectional spread on each of those days, computed over all the \
market's active instruments (README, \"v3\"): the space of num-scenario-core-v3.\n\n\
Examples:\n  stabspace backfill-numeric-embeddings --as-of 2025-01-31 --window-days 63 --market-id US_EQ \
--limit 500 --model-id num-stab-core-v1\n  stabspace backfill-numeric-embeddings --as-of 2025-01-31 \
--market-id US_EQ --model-id num-stab-core-v2 --horizon-days 20"
)]
pub struct Args {
    /// Last date of the windows (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub as_of: NaiveDate,
    /// Trading days per window (window_days + 1 prices are needed) [default: 63; v2: the horizon].
    #[arg(long)]
    pub window_days: Option<usize>,
    /// H, the log returns encoded by num-stab-core-v2/v3 [default: 20; v3: a multiple of 4].
    #[arg(long, value_name = "H")]
    pub horizon_days: Option<usize>,
    /// Market whose active instruments are encoded.
    #[arg(long)]
    pub market_id: String,
    /// At most this many instruments, in instrument_id order.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Encoder: num-stab-core-v1, num-regime-core-v1 (flatten and pad), num-stab-core-v2 (signature)
    /// or num-stab-core-v3 (multi-scale market signature).
    #[arg(long, default_value = "num-stab-core-v1")]
    pub model_id: String,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    let horizon_days = resolve_horizon(&a.model_id, a.horizon_days)?;
    let window_days = match a.window_days {
        Some(w) if is_signature_model(&a.model_id) && w != horizon_days => {
            return Err(Error::Invalid(format!(
                "--window-days {w}: {} encodes exactly --horizon-days ({horizon_days}) returns; give \
                 --horizon-days {w} instead",
                a.model_id
            )))
        }
        Some(w) => w,
        None if is_signature_model(&a.model_id) => horizon_days,
        None => DEFAULT_WINDOW_DAYS,
    };
    let db = g.open_db().await?;
    let summary = backfill_numeric_embeddings(
        &db,
        &NumericBackfill {
            as_of: a.as_of,
            window_days,
            horizon_days,
            market_id: a.market_id,
            limit: a.limit,
            model_id: a.model_id,
        },
        &bars,
    )
    .await?;
    print!("{summary}");
    Ok(())
}
