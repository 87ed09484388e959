//! Typed access to the fields of one record ([`Fields`]): each column kind
//! checked and converted to a cell, with errors that name file, line and column.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value as Json};

use super::door::Door;
use super::strict::{json_error, json_position, long_integer, whole, StrictJson, Whole};
use super::text::{excerpt, id_problem, quote};
use super::{MAX_DAY_INDEX, MAX_VOLUME, STATUSES};
use crate::error::{Error, Result};
use crate::storage::bulk::Value;

/// "an array", "a string", …: what a JSON value is, without quoting it.
pub(super) fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// The first string (key or value) in a JSON value that holds U+0000, which
/// PostgreSQL's JSONB cannot store.
pub(super) fn json_nul(v: &Json) -> Option<&str> {
    match v {
        Json::String(s) if s.contains('\0') => Some(s),
        Json::Array(a) => a.iter().find_map(json_nul),
        Json::Object(m) => m.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(k.as_str())
            } else {
                json_nul(v)
            }
        }),
        _ => None,
    }
}

/// Typed access to the fields of one record, with errors that name the place.
pub(super) struct Fields<'a> {
    pub(super) file: &'a Path,
    pub(super) line: u64,
    pub(super) record: &'a csv::StringRecord,
    pub(super) columns: &'a HashMap<&'static str, usize>,
}

impl Fields<'_> {
    pub(super) fn raw(&self, col: &str) -> &str {
        self.columns
            .get(col)
            .and_then(|&i| self.record.get(i))
            .unwrap_or("")
    }

    pub(super) fn bad(&self, col: &str, message: String) -> Error {
        Error::BadField {
            file: self.file.to_path_buf(),
            line: self.line,
            column: col.to_string(),
            message,
        }
    }

    /// A required, non-empty identifier following the id rule.
    pub(super) fn id(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        if s.is_empty() {
            return Err(self.bad(col, "empty value".into()));
        }
        if let Some(p) = id_problem(s) {
            return Err(self.bad(col, p));
        }
        Ok(Value::Text(s.to_string()))
    }

    /// An optional id or label: empty is NULL, anything else follows the id rule.
    pub(super) fn opt_label(&self, col: &str) -> Result<Value> {
        match self.raw(col) {
            "" => Ok(Value::Null),
            _ => self.id(col),
        }
    }

    /// An instrument status from [`STATUSES`], any case, stored as written.
    pub(super) fn status(&self, col: &str) -> Result<Value> {
        let v = self.id(col)?;
        let s = self.raw(col);
        if STATUSES.iter().any(|k| k.eq_ignore_ascii_case(s)) {
            return Ok(v);
        }
        Err(self.bad(
            col,
            format!(
                "unknown status {}; expected one of {} (any case)",
                quote(s),
                STATUSES.join(", ")
            ),
        ))
    }

    /// An instrument id that is in the `instruments` table.
    pub(super) fn instrument(&self, col: &str, door: &Door) -> Result<Value> {
        let v = self.id(col)?;
        let s = self.raw(col);
        if door.known.as_ref().is_some_and(|k| !k.contains(s)) {
            return Err(self.bad(
                col,
                format!(
                    "unknown instrument {}: it is not in the instruments table; import it with \
                     `stabspace import instruments` first",
                    quote(s)
                ),
            ));
        }
        Ok(v)
    }

    /// An id that should be in the database ([`ImportKind::known_ids`]): one
    /// that is not is noted in `door` for the warning, not an error.
    pub(super) fn noted_id(&self, col: &str, door: &mut Door) -> Result<Value> {
        let v = self.id(col)?;
        let s = self.raw(col);
        if door.known.as_ref().is_some_and(|k| !k.contains(s)) && !door.unknown.contains(s) {
            door.unknown.insert(s.to_string());
        }
        Ok(v)
    }

    /// A scenario path's set and scenario must be in `scenarios` (the set's ids
    /// are in `door.sets`).
    pub(super) fn known_scenario(&self, door: &Door, set: &str, scenario: &str) -> Result<()> {
        let ids = &door.sets[set];
        if ids.is_empty() {
            return Err(self.bad(
                "scenario_set_id",
                format!(
                    "unknown scenario set {}: it has no scenarios in the scenarios table; import \
                     them with `stabspace import scenarios` first",
                    quote(set)
                ),
            ));
        }
        if !ids.contains(&door.keys.id_hash(scenario)) {
            return Err(self.bad(
                "scenario_id",
                format!(
                    "unknown scenario {} of set {}: it is not in the scenarios table; import it \
                     with `stabspace import scenarios` first",
                    quote(scenario),
                    quote(set)
                ),
            ));
        }
        Ok(())
    }

    /// A date, exactly `YYYY-MM-DD` with a year from 0001 to 9999 ([`crate::parse::parse_date`]).
    pub(super) fn date(&self, col: &str) -> Result<Value> {
        crate::parse::parse_date(self.raw(col))
            .map(Value::Date)
            .map_err(|m| self.bad(col, m))
    }

    /// An optional date: empty (or the column absent) is NULL.
    pub(super) fn opt_date(&self, col: &str) -> Result<Value> {
        match self.raw(col) {
            "" => Ok(Value::Null),
            _ => self.date(col),
        }
    }

    pub(super) fn number(&self, col: &str) -> Result<f64> {
        let s = self.raw(col);
        let x: f64 = s
            .parse()
            .map_err(|_| self.bad(col, format!("invalid number {}", quote(s))))?;
        if !x.is_finite() {
            return Err(self.bad(col, format!("{} is not a finite number", quote(s))));
        }
        Ok(x)
    }

    /// A closing price: a number greater than 0.
    pub(super) fn close(&self, col: &str) -> Result<Value> {
        let x = self.number(col)?;
        if x <= 0.0 {
            let s = quote(self.raw(col));
            return Err(self.bad(col, format!("{s} is not a price: a close must be greater than 0")));
        }
        Ok(Value::Float(x))
    }

    /// A traded volume: a whole number from 0 to [`MAX_VOLUME`] as written
    /// (`1000`, `1000.0` and `1e3` are the same value; `1000.5` is not a volume,
    /// nor is `9007199254740993`, which a double would round).
    pub(super) fn volume(&self, col: &str) -> Result<Value> {
        self.number(col)?;
        let s = self.raw(col);
        match whole(s) {
            Some(Whole::Int(n)) if n <= u128::from(MAX_VOLUME) => Ok(Value::Float(n as f64)),
            Some(Whole::Int(_) | Whole::TooLarge) => Err(self.bad(
                col,
                format!(
                    "{} is above the largest volume, 2^53 = {MAX_VOLUME}: volumes are stored as \
                     doubles, which hold every whole number exactly only up to there",
                    quote(s)
                ),
            )),
            _ => Err(self.bad(
                col,
                format!(
                    "{} is not a volume: expected a whole number of 0 or more",
                    quote(s)
                ),
            )),
        }
    }

    /// A simple return over one day: greater than −1 (a loss of at most the whole position).
    pub(super) fn path_return(&self, col: &str) -> Result<Value> {
        let x = self.number(col)?;
        if x <= -1.0 {
            let s = quote(self.raw(col));
            return Err(self.bad(
                col,
                format!("{s} loses the whole position or more: a return must be greater than -1"),
            ));
        }
        Ok(Value::Float(x))
    }

    /// A day index: an integer from 0 to [`MAX_DAY_INDEX`].
    pub(super) fn day_index(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(self.bad(
                col,
                format!(
                    "invalid day index {}, expected an integer from 0 to {MAX_DAY_INDEX}",
                    quote(s)
                ),
            ));
        }
        let significant = digits.trim_start_matches('0');
        let value = if significant.len() > 19 {
            u64::MAX
        } else {
            significant.parse::<u64>().unwrap_or(0)
        };
        if negative && value > 0 {
            return Err(self.bad(
                col,
                format!(
                    "day index {} is negative: expected an integer from 0 to {MAX_DAY_INDEX}",
                    quote(s)
                ),
            ));
        }
        if value > MAX_DAY_INDEX {
            return Err(self.bad(
                col,
                format!(
                    "day index {} is above the limit {MAX_DAY_INDEX} (2^31 - 1, the largest an \
                     INTEGER column holds)",
                    quote(s)
                ),
            ));
        }
        Ok(Value::Int(value as i64))
    }

    /// A JSON object, strictly: no key twice in any object, no integer that
    /// does not fit 64 bits (it would be rounded to a double), no NUL.
    pub(super) fn object(&self, col: &str) -> Result<Map<String, Json>> {
        let s = self.raw(col);
        let v = serde_json::from_str::<StrictJson>(s)
            .map_err(|e| self.bad(col, json_error(s, &e)))?
            .0;
        if let Some((at, integer)) = long_integer(s) {
            let (line, column) = json_position(s, at);
            return Err(self.bad(
                col,
                format!(
                    "the integer {} at line {line} column {column} of the JSON does not fit 64 bits: \
                     JSON integers are stored exactly from -2^63 to 2^64 - 1; write it with a \
                     decimal point or an exponent to store it as a double",
                    excerpt(integer).0
                ),
            ));
        }
        if let Some(nul) = json_nul(&v) {
            return Err(self.bad(
                col,
                format!(
                    "the JSON string {} holds a NUL character, which PostgreSQL cannot store",
                    quote(nul)
                ),
            ));
        }
        match v {
            Json::Object(m) => Ok(m),
            other => Err(self.bad(col, format!("expected a JSON object, got {}", json_kind(&other)))),
        }
    }

    pub(super) fn json_object(&self, col: &str) -> Result<Value> {
        Ok(Value::Json(Json::Object(self.object(col)?).to_string()))
    }

    /// A JSON object of instrument_id → finite numeric weight, the absolute
    /// weights summing to a finite number (the portfolio vector divides by
    /// that sum). Ids follow the id rule; ids not in `instruments` are noted in
    /// `door` (a warning, not an error).
    pub(super) fn weights(&self, col: &str, door: &mut Door) -> Result<Map<String, Json>> {
        let m = self.object(col)?;
        let mut total = 0f64;
        for (k, v) in &m {
            if k.is_empty() {
                return Err(self.bad(col, "a weight has an empty instrument id".into()));
            }
            if let Some(p) = id_problem(k) {
                return Err(self.bad(col, format!("instrument id {p}")));
            }
            let Some(w) = v.as_f64().filter(|w| w.is_finite()) else {
                return Err(self.bad(
                    col,
                    format!("weight of {} is {}, expected a number", quote(k), json_kind(v)),
                ));
            };
            total += w.abs();
            if !total.is_finite() {
                return Err(self.bad(
                    col,
                    format!(
                        "the absolute weights overflow a double (above about 1.8e308) when \
                         summed, at the weight of {}; scale them down: only their ratios matter",
                        quote(k)
                    ),
                ));
            }
            if door.known.as_ref().is_some_and(|known| !known.contains(k)) {
                door.unknown.insert(k.clone());
            }
        }
        Ok(m)
    }
}
