//! `backfill-numeric-embeddings`: price windows of a market's active instruments.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use chrono::NaiveDate;

use super::BackfillSummary;
use crate::encoders::{window_encoder, MarketContext, PriceWindow, SkipReason};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::bulk::{BulkWriter, Value};
use crate::storage::market::{active_instruments, active_markets};
use crate::storage::prices::{recent_prices, PriceRows};
use crate::storage::prune::{keep_only, VectorKey};
use crate::storage::tables::NUMERIC_WINDOW_EMBEDDINGS;
use crate::storage::Db;
use crate::vector;

#[derive(Clone, Debug)]
pub struct NumericBackfill {
    pub as_of: NaiveDate,
    /// Trading days per window (v1 encoders; the v2 encoder uses its horizon).
    pub window_days: usize,
    /// H of the v2 signature encoder.
    pub horizon_days: usize,
    pub market_id: String,
    pub limit: Option<u64>,
    pub model_id: String,
}

pub async fn backfill_numeric_embeddings(
    db: &Db,
    p: &NumericBackfill,
    progress: &dyn Progress,
) -> Result<BackfillSummary> {
    let started = Instant::now();
    let encoder = window_encoder(&p.model_id, p.horizon_days)?;
    let window_days = encoder.fixed_window_days().unwrap_or(p.window_days);
    let space = encoder.feature_space();
    if window_days == 0 {
        return Err(Error::Invalid("--window-days must be at least 1".into()));
    }
    let instruments = active_instruments(db, &p.market_id, p.limit).await?;
    if instruments.is_empty() {
        let markets = active_markets(db).await?;
        return Err(Error::Invalid(format!(
            "market {:?} has no active instruments; markets with active instruments: {}",
            p.market_id,
            if markets.is_empty() {
                "none (import instruments first)".into()
            } else {
                markets.join(", ")
            }
        )));
    }
    let need = encoder.prices_needed(window_days);
    // An encoder that sees the market's cross-section sees all its active
    // instruments (--limit bounds what is encoded, not the market): their
    // windows are read once, for both.
    let windows = if encoder.uses_market() && p.limit.is_some() {
        let all = active_instruments(db, &p.market_id, None).await?;
        price_windows(db, &all, p.as_of, need).await?
    } else {
        price_windows(db, &instruments, p.as_of, need).await?
    };
    let market = if encoder.uses_market() {
        MarketContext::from_windows(windows.values())
    } else {
        MarketContext::default()
    };

    progress.start("instruments", Some(instruments.len() as u64));
    progress.message(&format!("{} {}", p.model_id, p.market_id));
    let mut summary = BackfillSummary {
        model_id: p.model_id.clone(),
        ..Default::default()
    };
    let mut tx = db.begin().await?;
    let mut writer = BulkWriter::new(&NUMERIC_WINDOW_EMBEDDINGS);
    let mut written: BTreeSet<&str> = BTreeSet::new();
    for id in &instruments {
        progress.advance(1);
        let have = windows.get(id).map_or(0, |w| w.dates.len());
        let encoded = match windows.get(id) {
            Some(w) if have >= need => encoder.encode_in_market(w, &market).map(|v| (v, w.span())),
            _ => Err(SkipReason::InsufficientHistory { have, need }),
        };
        match encoded {
            Ok((v, span)) => {
                let (start, end) = span.map_or((Value::Null, Value::Null), |(s, e)| {
                    (Value::Date(s), Value::Date(e))
                });
                let row = vec![
                    Value::Text("INSTRUMENT".into()),
                    Value::Text(id.clone()),
                    Value::Text(p.market_id.clone()),
                    Value::Date(p.as_of),
                    Value::Int(window_days as i64),
                    Value::Text(p.model_id.clone()),
                    Value::Bytes(vector::to_bytes(&v)),
                    start,
                    end,
                    Value::Text(space.clone()),
                ];
                writer.push(&mut tx, row).await.map_err(|e| db.err(e))?;
                written.insert(id);
                summary.encoded += 1;
            }
            Err(reason) => summary
                .skipped
                .entry(reason.kind())
                .or_default()
                .push((id.clone(), reason.to_string())),
        }
    }
    writer.finish(&mut tx).await.map_err(|e| db.err(e))?;
    // What an earlier run stored for instruments skipped now (or no longer
    // active) no longer matches the prices. With --limit only the instruments
    // this run considered are settled.
    let considered: BTreeSet<&str> = instruments.iter().map(String::as_str).collect();
    let key = VectorKey {
        joint_type: None,
        model_id: &p.model_id,
        entity_type: "INSTRUMENT",
        scope_id: &p.market_id,
        as_of: p.as_of,
    };
    summary.removed = keep_only(&mut tx, key, &written, p.limit.map(|_| &considered))
        .await
        .map_err(|e| db.err(e))?;
    db.commit(tx).await?;
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// For each instrument, its last `n` prices on or before `as_of` as a window.
async fn price_windows(
    db: &Db,
    instruments: &[String],
    as_of: NaiveDate,
    n: usize,
) -> Result<HashMap<String, PriceWindow>> {
    let rows = recent_prices(db, instruments, as_of, n).await?;
    Ok(rows.into_iter().map(|(id, r)| (id, price_window(r))).collect())
}

/// The encoders' view of one instrument's prices.
fn price_window(r: PriceRows) -> PriceWindow {
    PriceWindow {
        instrument_id: r.instrument_id,
        dates: r.dates,
        close: r.close,
        volume: r.volume,
    }
}
