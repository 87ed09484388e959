//! `backfill-joint-profiles`: issuer fundamentals as standardised profile vectors.
//!
//! Per issuer, the latest `issuer_fundamentals` row on or before the as-of
//! date. The numeric fields (the union of keys over those issuers, sorted) are
//! each standardised across issuers as a z-score with the population standard
//! deviation (ddof 0); a constant field, or a field an issuer lacks, gives 0.
//! The z-scores are then zero-padded to 384 (PadToDim).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::NaiveDate;
use serde_json::{json, Value as Json};

use super::PROFILE_JOINT_TYPE;
use crate::backfill::BackfillSummary;
use crate::encoders::pad_to_dim;
use crate::error::{Error, Result};
use crate::storage::bulk::{BulkWriter, Value};
use crate::storage::market::{earliest_fundamentals, latest_fundamentals};
use crate::storage::prune::{keep_only, VectorKey};
use crate::storage::tables::JOINT_EMBEDDINGS;
use crate::storage::Db;
use crate::vector;

/// Model ids of the profile encoders.
pub const PROFILE_MODELS: &[&str] = &["joint-profile-core-v1"];

#[derive(Clone, Debug)]
pub struct ProfileBackfill {
    pub as_of: NaiveDate,
    pub model_id: String,
    pub limit: Option<u64>,
}

/// Encode issuers' fundamentals: `(issuer, fields)` in, `(field names, issuer → vector)` out.
pub fn encode_profiles(issuers: &[(String, BTreeMap<String, f64>)]) -> (Vec<String>, Vec<Vec<f32>>) {
    let fields: Vec<String> = issuers
        .iter()
        .flat_map(|(_, f)| f.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let stats: Vec<Option<(f64, f64)>> = fields
        .iter()
        .map(|name| {
            let xs: Vec<f64> = issuers.iter().filter_map(|(_, f)| f.get(name).copied()).collect();
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            (sd > 0.0 && sd.is_finite()).then_some((mean, sd))
        })
        .collect();
    let vectors = issuers
        .iter()
        .map(|(_, f)| {
            pad_to_dim(
                fields
                    .iter()
                    .zip(&stats)
                    .map(|(name, st)| match (f.get(name), st) {
                        (Some(x), Some((mean, sd))) => (x - mean) / sd,
                        _ => 0.0,
                    }),
            )
        })
        .collect();
    (fields, vectors)
}

/// The numeric fields of one fundamentals JSON object.
fn numeric_fields(issuer: &str, date: NaiveDate, text: &str) -> Result<BTreeMap<String, f64>> {
    let bad = |why: String| Error::Invalid(format!("issuer_fundamentals of {issuer:?} on {date}: {why}"));
    let obj: Json = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Json::Object(map) = obj else {
        return Err(bad("not a JSON object".into()));
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| v.as_f64().filter(|x| x.is_finite()).map(|x| (k, x)))
        .collect())
}

pub async fn backfill_joint_profiles(db: &Db, p: &ProfileBackfill) -> Result<BackfillSummary> {
    let started = Instant::now();
    if !PROFILE_MODELS.contains(&p.model_id.as_str()) {
        return Err(Error::UnknownModel {
            what: "profile backfills",
            got: p.model_id.clone(),
            known: PROFILE_MODELS.iter().map(|s| s.to_string()).collect(),
        });
    }
    let rows = latest_fundamentals(db, p.as_of, p.limit).await?;
    if rows.is_empty() {
        let first = earliest_fundamentals(db).await?;
        return Err(Error::Invalid(match first {
            Some(d) => format!(
                "no issuer_fundamentals on or before {}; the earliest are from {d}",
                p.as_of
            ),
            None => "issuer_fundamentals is empty; import fundamentals first".into(),
        }));
    }
    let issuers: Vec<(String, BTreeMap<String, f64>)> = rows
        .iter()
        .map(|(id, date, text)| Ok((id.clone(), numeric_fields(id, *date, text)?)))
        .collect::<Result<_>>()?;
    let (fields, vectors) = encode_profiles(&issuers);
    if fields.len() > vector::DIM {
        eprintln!(
            "warning: {} numeric fundamentals fields; only the first {} (in key order) fit in a vector",
            fields.len(),
            vector::DIM
        );
    }

    let mut summary = BackfillSummary {
        model_id: p.model_id.clone(),
        ..Default::default()
    };
    let mut tx = db.begin().await?;
    let mut writer = BulkWriter::new(&JOINT_EMBEDDINGS);
    let mut written: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for (((issuer, f), v), (_, fdate, _)) in issuers.iter().zip(&vectors).zip(&rows) {
        if f.is_empty() {
            summary
                .skipped
                .entry("no numeric fundamentals")
                .or_default()
                .push((
                    issuer.clone(),
                    format!("fundamentals of {fdate} have no numeric field"),
                ));
            continue;
        }
        let scope = json!({
            "entity_type": "ISSUER",
            "entity_id": issuer,
            "as_of_date": p.as_of.to_string(),
            "fundamentals_as_of": fdate.to_string(),
        });
        let row = vec![
            Value::Text(PROFILE_JOINT_TYPE.into()),
            Value::Text(p.model_id.clone()),
            Value::Text("ISSUER".into()),
            Value::Text(issuer.clone()),
            Value::Text(String::new()),
            Value::Date(p.as_of),
            Value::Text(issuer.clone()),
            Value::Null,
            Value::Json(scope.to_string()),
            Value::Bytes(vector::to_bytes(v)),
            Value::Text(crate::encoders::V1_SPACE.into()),
            Value::Null,
        ];
        writer.push(&mut tx, row).await.map_err(|e| db.err(e))?;
        written.insert(issuer.as_str());
        summary.encoded += 1;
    }
    writer.finish(&mut tx).await.map_err(|e| db.err(e))?;
    // Profiles an earlier run stored on this date for issuers skipped now;
    // with --limit only the issuers this run read are settled.
    let considered: std::collections::BTreeSet<&str> = issuers.iter().map(|(id, _)| id.as_str()).collect();
    let key = VectorKey {
        joint_type: Some(PROFILE_JOINT_TYPE),
        model_id: &p.model_id,
        entity_type: "ISSUER",
        scope_id: "",
        as_of: p.as_of,
    };
    summary.removed = keep_only(&mut tx, key, &written, p.limit.map(|_| &considered))
        .await
        .map_err(|e| db.err(e))?;
    db.commit(tx).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_z_scores_in_key_order_with_zero_for_constant_or_missing() {
        let issuers = vec![
            (
                "A".to_string(),
                BTreeMap::from([("lev".to_string(), 1.0), ("k".to_string(), 5.0)]),
            ),
            (
                "B".to_string(),
                BTreeMap::from([("lev".to_string(), 3.0), ("k".to_string(), 5.0)]),
            ),
            (
                "C".to_string(),
                BTreeMap::from([("k".to_string(), 5.0), ("roe".to_string(), 0.1)]),
            ),
        ];
        let (fields, v) = encode_profiles(&issuers);
        assert_eq!(fields, ["k", "lev", "roe"]);
        // k is constant → 0; lev over A, B: mean 2, population sd 1; roe: one value → sd 0 → 0.
        assert_eq!(&v[0][..4], &[0.0, -1.0, 0.0, 0.0]);
        assert_eq!(&v[1][..4], &[0.0, 1.0, 0.0, 0.0]);
        assert_eq!(&v[2][..4], &[0.0, 0.0, 0.0, 0.0], "C lacks lev");
        assert_eq!(v[0].len(), 384);
    }

    #[test]
    fn non_numeric_values_are_ignored_and_bad_json_is_named() {
        let d = NaiveDate::from_ymd_opt(2025, 1, 31).unwrap();
        let f = numeric_fields("I", d, r#"{"a": 1.5, "b": "x", "c": true, "d": null}"#).unwrap();
        assert_eq!(f, BTreeMap::from([("a".to_string(), 1.5)]));
        let e = numeric_fields("ISS_9", d, "[1,2]").unwrap_err().to_string();
        assert!(e.contains("ISS_9") && e.contains("2025-01-31"), "{e}");
    }
}
