use chrono::NaiveDate;

use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::config::parse_date;
use crate::error::Result;
use crate::joint::{backfill_joint_states, StateBackfill, Weights};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "For each instrument of the market (and region) with a numeric stability vector \
(--stab-model-id) on --as-of, combines it with its issuer's latest profile on or before --as-of (when \
--profile-joint-model-id is given and the issuer has one): z_num = (w_stab·z_stab + w_prof·z_prof) / \
(w_stab + w_prof) over the branches present, passed unchanged through the identity joint model. Stored in \
joint_embeddings with joint_type STAB_FRAGILITY_V0. Re-running replaces the stored vectors.\n\n\
The first backfill under a --joint-model-id registers it (show-joint-models): its state encoder, profile \
branch (or none), weights and feature space. A later one under the same id must agree, or it stops \
naming what differs (--replace redefines the model). joint-stab-fragility-v1 holds the v1 encoders' \
space, joint-stab-fragility-v2 the v2 pair's, joint-stab-fragility-v3 the v3 pair's; any other id is \
yours to name (e.g. joint-stab-prof-v1 for profile-augmented states).\n\n\
Example: stabspace backfill-joint-stab-fragility-states --as-of 2025-01-31 --market-id US_EQ \
--stab-model-id num-stab-core-v1 --profile-joint-model-id joint-profile-core-v1 \
--joint-model-id joint-stab-fragility-v1 --region US"
)]
pub struct Args {
    /// Date of the states (YYYY-MM-DD); the numeric vectors must exist for it.
    #[arg(long, value_parser = parse_date)]
    pub as_of: NaiveDate,
    /// Market whose instruments get states (instruments.market_id, e.g. US_EQ).
    #[arg(long)]
    pub market_id: String,
    /// Numeric stability model whose vectors are the stab branch.
    #[arg(long, default_value = "num-stab-core-v1")]
    pub stab_model_id: String,
    /// Profile model for the optional profile branch (see backfill-joint-profiles).
    #[arg(long)]
    pub profile_joint_model_id: Option<String>,
    /// Joint model the states are stored under.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub joint_model_id: String,
    /// Only instruments of this region.
    #[arg(long)]
    pub region: Option<String>,
    /// At most this many instruments, in instrument_id order.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Weight of the stability branch.
    #[arg(long, default_value_t = 1.0)]
    pub w_stab: f64,
    /// Weight of the profile branch.
    #[arg(long, default_value_t = 1.0)]
    pub w_prof: f64,
    /// If the joint model is registered with other branches, weights or feature space, redefine
    /// it: the registry takes this run's definition and the vectors stored under the old one are
    /// deleted (without it, such a run is an error naming what differs).
    #[arg(long)]
    pub replace: bool,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    let db = g.open_db().await?;
    let s = backfill_joint_states(
        &db,
        &StateBackfill {
            as_of: a.as_of,
            market_id: a.market_id,
            region: a.region,
            stab_model_id: a.stab_model_id,
            profile_model_id: a.profile_joint_model_id,
            joint_model_id: a.joint_model_id,
            weights: Weights {
                stab: a.w_stab,
                profile: a.w_prof,
                ..Weights::default()
            },
            limit: a.limit,
            replace: a.replace,
        },
        &bars,
    )
    .await?;
    print!("{s}");
    Ok(())
}
