use chrono::NaiveDate;

use crate::cli::global::GlobalOpts;
use crate::config::parse_date;
use crate::error::Result;
use crate::joint::{backfill_joint_profiles, ProfileBackfill};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Per issuer, takes the latest issuer_fundamentals row on or before --as-of. \
The numeric fields (the union of keys over those issuers, in sorted key order) are standardised across \
issuers as z-scores with the population standard deviation; a constant field, or a field an issuer \
lacks, gives 0. The z-scores are zero-padded to 384 float32 values and stored in joint_embeddings with \
joint_type PROFILE_CORE_V0 and entity_type ISSUER. Re-running replaces the stored vectors.\n\n\
Example: stabspace backfill-joint-profiles --as-of 2025-01-31 --model-id joint-profile-core-v1"
)]
pub struct Args {
    /// Date of the profiles (YYYY-MM-DD): fundamentals on or before it are used.
    #[arg(long, value_parser = parse_date)]
    pub as_of: NaiveDate,
    /// Profile model.
    #[arg(long, default_value = "joint-profile-core-v1")]
    pub model_id: String,
    /// At most this many issuers, in issuer_id order (the z-scores are taken over them).
    #[arg(long)]
    pub limit: Option<u64>,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let db = g.open_db().await?;
    let s = backfill_joint_profiles(
        &db,
        &ProfileBackfill {
            as_of: a.as_of,
            model_id: a.model_id,
            limit: a.limit,
        },
    )
    .await?;
    print!("{s}");
    Ok(())
}
