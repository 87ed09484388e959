use chrono::NaiveDate;

use crate::cli::args::OutputArgs;
use crate::cli::global::GlobalOpts;
use crate::config::parse_date;
use crate::diagnostics::stab_states_hint;
use crate::error::{Error, Result};
use crate::output::Table;
use crate::storage::joint::joint_states;
use crate::vector;

#[derive(Debug, clap::Args)]
#[command(after_help = "Lists the stored STAB states as \
as_of_date,instrument_id,issuer_id,region,model_id,dim,l2_norm, ordered by date then instrument.\n\n\
Example: stabspace show-joint-stab-fragility-states --as-of 2025-01-31 --model-id joint-stab-fragility-v1 \
--limit 200")]
pub struct Args {
    /// One date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date, conflicts_with_all = ["start", "end"],
          required_unless_present_all = ["start", "end"])]
    pub as_of: Option<NaiveDate>,
    /// First date of a range (with --end).
    #[arg(long, value_parser = parse_date, requires = "end")]
    pub start: Option<NaiveDate>,
    /// Last date of a range (with --start).
    #[arg(long, value_parser = parse_date, requires = "start")]
    pub end: Option<NaiveDate>,
    /// Joint model.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub model_id: String,
    /// Only the states of this instrument (instruments.instrument_id).
    #[arg(long)]
    pub instrument_id: Option<String>,
    /// Only instruments of this region (instruments.region, e.g. US).
    #[arg(long)]
    pub region: Option<String>,
    /// At most this many rows.
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let (from, to) = match (a.as_of, a.start, a.end) {
        (Some(d), _, _) => (d, d),
        (None, Some(s), Some(e)) => (s, e),
        _ => return Err(Error::Invalid("give --as-of, or --start and --end".into())),
    };
    let db = g.open_db_read().await?;
    let rows = joint_states(
        &db,
        &a.model_id,
        from,
        to,
        a.instrument_id.as_deref(),
        a.region.as_deref(),
        a.limit,
    )
    .await?;
    if rows.is_empty() {
        let mut what = format!(
            "no STAB states of {} {}",
            a.model_id,
            crate::output::span(from, to)
        );
        if let Some(i) = &a.instrument_id {
            what.push_str(&format!(" for instrument {i:?}"));
        }
        if let Some(r) = &a.region {
            what.push_str(&format!(" in region {r:?}"));
        }
        return Err(stab_states_hint(&db, &a.model_id, &what).await?);
    }
    let mut t = Table::new(&[
        "as_of_date",
        "instrument_id",
        "issuer_id",
        "region",
        "model_id",
        "dim",
        "l2_norm",
    ]);
    for r in rows {
        let what = format!("STAB state of {} on {}", r.instrument_id, r.as_of_date);
        let v = vector::from_bytes(&r.vector, &what)?;
        t.push(vec![
            r.as_of_date.into(),
            r.instrument_id.into(),
            r.issuer_id.into(),
            r.region.into(),
            a.model_id.clone().into(),
            v.len().into(),
            vector::l2_norm(&v).into(),
        ]);
    }
    a.out.emit(&t)
}
