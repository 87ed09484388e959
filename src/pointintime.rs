//! Point-in-time search: when a scenario could first have been known, and the
//! filters a query applies to the scenarios it may see. Pure functions; the
//! dates are read and stored by the scenario backfills, the filters applied
//! by `nearest` (through the engine's per-row attributes).
//!
//! - A scenario's *known-from* date is the CSV's `known_from` when given;
//!   else, for a historical window (shock type `historical_window`, or any
//!   shock type starting `hist`, any case), the last trading day its path
//!   covers on its market's calendar (day 0 is `scenario_date`); else its
//!   `scenario_date`.
//! - A query dated D sees, point-in-time, only scenarios known strictly
//!   before D.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, Weekday};
use stabspace_index::{RowAttrs, RowFilter};

/// Whether a shock type names a historical window (known only once its path ends).
pub fn is_historical(shock_type: Option<&str>) -> bool {
    shock_type.is_some_and(|s| s.len() >= 4 && s[..4].eq_ignore_ascii_case("hist"))
}

/// The last day of a path of `max_day + 1` days that starts at `start`:
/// counted on `calendar` (sorted trading days) from the first trading day
/// on or after `start`; days the calendar does not reach are counted as
/// weekdays after its last day (or after `start` without a calendar).
pub fn last_path_day(calendar: &[NaiveDate], start: NaiveDate, max_day: usize) -> NaiveDate {
    let first = calendar.partition_point(|d| *d < start);
    if let Some(d) = calendar.get(first + max_day) {
        return *d;
    }
    let (mut day, mut left) = match calendar.len().checked_sub(1) {
        Some(last) if first <= last => (calendar[last], max_day - (last - first)),
        _ => (start, max_day),
    };
    while left > 0 {
        day = day.succ_opt().unwrap_or(day);
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    day
}

/// The known-from date of a scenario: the override, else the last day of a
/// historical window's path (`last_day`, when its path and calendar are
/// known), else the scenario date.
pub fn known_from(
    scenario_date: NaiveDate,
    shock_type: Option<&str>,
    override_date: Option<NaiveDate>,
    last_day: Option<NaiveDate>,
) -> NaiveDate {
    override_date.unwrap_or(match (is_historical(shock_type), last_day) {
        (true, Some(d)) => d,
        _ => scenario_date,
    })
}

/// The order of a severity: a number as written, else LOW 1, MEDIUM 2,
/// HIGH 3, SEVERE or EXTREME 4 (any case); `None` for anything else.
pub fn severity_rank(severity: &str) -> Option<f32> {
    let s = severity.trim();
    if let Ok(x) = s.parse::<f32>() {
        return x.is_finite().then_some(x);
    }
    [
        ("LOW", 1.0),
        ("MEDIUM", 2.0),
        ("HIGH", 3.0),
        ("SEVERE", 4.0),
        ("EXTREME", 4.0),
    ]
    .iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(s))
    .map(|(_, r)| *r)
}

/// Parse a `--min-severity` value: a number or LOW, MEDIUM, HIGH, SEVERE, EXTREME.
pub fn parse_min_severity(s: &str) -> std::result::Result<f32, String> {
    severity_rank(s).ok_or_else(|| {
        format!("{s:?} is not a severity: give a number or one of LOW, MEDIUM, HIGH, SEVERE, EXTREME")
    })
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("valid date"),
};

/// A date as the engine's row key: days since 1970-01-01.
pub fn day_key(d: NaiveDate) -> i32 {
    (d - EPOCH).num_days() as i32
}

/// The date of an engine row key ([`day_key`]); `None` for a row with no key.
pub fn key_day(key: i32) -> Option<NaiveDate> {
    (key != RowAttrs::NO_KEY).then(|| EPOCH + chrono::Duration::days(i64::from(key)))
}

/// Which scenarios a query may see. The default sees every one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScenarioFilter {
    /// Only scenarios known strictly before this date.
    pub known_before: Option<NaiveDate>,
    /// Only scenarios of these shock types (any of them).
    pub shock_types: Vec<String>,
    /// Only scenarios at least this severe ([`severity_rank`]).
    pub min_severity: Option<f32>,
}

impl ScenarioFilter {
    pub fn is_empty(&self) -> bool {
        self.known_before.is_none() && self.shock_types.is_empty() && self.min_severity.is_none()
    }

    /// The same filter, known before `d` (the earlier of `d` and any bound it has).
    pub fn before(&self, d: NaiveDate) -> ScenarioFilter {
        ScenarioFilter {
            known_before: Some(self.known_before.map_or(d, |k| k.min(d))),
            ..self.clone()
        }
    }

    /// Whether a scenario is admitted.
    pub fn admits(
        &self,
        known_from: Option<NaiveDate>,
        shock_type: Option<&str>,
        severity: Option<&str>,
    ) -> bool {
        self.known_before
            .is_none_or(|b| known_from.is_some_and(|k| k < b))
            && (self.shock_types.is_empty()
                || shock_type.is_some_and(|s| self.shock_types.iter().any(|t| t == s)))
            && self
                .min_severity
                .is_none_or(|m| severity.and_then(severity_rank).is_some_and(|r| r >= m))
    }

    /// The engine's filter over rows tagged by [`ShockTypes`] of `types`.
    pub fn row_filter(&self, types: &ShockTypes) -> RowFilter {
        RowFilter {
            key_below: self.known_before.map(day_key),
            tags: (!self.shock_types.is_empty())
                .then(|| self.shock_types.iter().filter_map(|s| types.tag(s)).collect()),
            value_at_least: self.min_severity,
        }
    }

    /// In words, for notes: "known before 2008-10-31, shock type X, severity ≥ 3".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.known_before {
            parts.push(format!("known before {d}"));
        }
        if !self.shock_types.is_empty() {
            parts.push(format!("shock type {}", self.shock_types.join(" or ")));
        }
        if let Some(s) = self.min_severity {
            parts.push(format!("severity at least {s}"));
        }
        if parts.is_empty() {
            "every scenario".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The filter of a run of queries: a fixed [`ScenarioFilter`], and with
/// `point_in_time` each query also bounded by its own date.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryFilter {
    pub point_in_time: bool,
    pub filter: ScenarioFilter,
}

impl QueryFilter {
    /// Whether queries are filtered at all.
    pub fn is_empty(&self) -> bool {
        !self.point_in_time && self.filter.is_empty()
    }

    /// The filter of a query dated `d`.
    pub fn at(&self, d: NaiveDate) -> ScenarioFilter {
        if self.point_in_time {
            self.filter.before(d)
        } else {
            self.filter.clone()
        }
    }

    /// In words, for summaries.
    pub fn describe(&self) -> String {
        match (self.point_in_time, self.filter.is_empty()) {
            (false, _) => self.filter.describe(),
            (true, true) => "point-in-time (known before each query's date)".into(),
            (true, false) => format!(
                "point-in-time (known before each query's date), {}",
                self.filter.describe()
            ),
        }
    }
}

/// The shock types of a partition, numbered as its rows' tags: in the order
/// the build first met them (an append keeps the numbers and adds new ones
/// at the end).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShockTypes(pub Vec<String>);

impl ShockTypes {
    pub fn of<'a>(types: impl IntoIterator<Item = Option<&'a str>>) -> ShockTypes {
        let set: BTreeSet<&str> = types.into_iter().flatten().collect();
        ShockTypes(set.into_iter().map(str::to_string).collect())
    }

    pub fn tag(&self, shock_type: &str) -> Option<u32> {
        self.0.iter().position(|s| s == shock_type).map(|i| i as u32)
    }

    /// The tag of `shock_type`, numbering it if it is new.
    pub fn tag_or_add(&mut self, shock_type: &str) -> u32 {
        match self.tag(shock_type) {
            Some(t) => t,
            None => {
                self.0.push(shock_type.to_string());
                (self.0.len() - 1) as u32
            }
        }
    }

    pub fn name(&self, tag: u32) -> Option<&str> {
        self.0.get(tag as usize).map(String::as_str)
    }

    /// A row's attributes for the engine, numbering a new shock type.
    pub fn attrs_adding(
        &mut self,
        known_from: Option<NaiveDate>,
        shock_type: Option<&str>,
        severity: Option<&str>,
    ) -> RowAttrs {
        if let Some(s) = shock_type {
            self.tag_or_add(s);
        }
        self.attrs(known_from, shock_type, severity)
    }

    /// A row's attributes for the engine.
    pub fn attrs(
        &self,
        known_from: Option<NaiveDate>,
        shock_type: Option<&str>,
        severity: Option<&str>,
    ) -> RowAttrs {
        RowAttrs {
            key: known_from.map_or(RowAttrs::NO_KEY, day_key),
            tag: shock_type.and_then(|s| self.tag(s)).unwrap_or(RowAttrs::NO_TAG),
            value: severity.and_then(severity_rank).unwrap_or(f32::NAN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_window_is_known_on_the_last_trading_day_of_its_path() {
        let cal: Vec<NaiveDate> = [
            "2008-10-23",
            "2008-10-24",
            "2008-10-27",
            "2008-10-28",
            "2008-10-29",
        ]
        .iter()
        .map(|s| d(s))
        .collect();
        assert_eq!(last_path_day(&cal, d("2008-10-24"), 2), d("2008-10-28"));
        // Starting on a holiday: counted from the next trading day.
        assert_eq!(last_path_day(&cal, d("2008-10-25"), 0), d("2008-10-27"));
        // Past the calendar: weekdays after its last day.
        assert_eq!(last_path_day(&cal, d("2008-10-27"), 4), d("2008-10-31"));
        assert_eq!(last_path_day(&cal, d("2008-10-27"), 5), d("2008-11-03"));
        assert_eq!(last_path_day(&[], d("2020-03-13"), 1), d("2020-03-16"));
        assert_eq!(
            known_from(
                d("2008-10-24"),
                Some("historical_window"),
                None,
                Some(d("2008-11-20"))
            ),
            d("2008-11-20")
        );
        assert_eq!(
            known_from(d("2008-10-24"), Some("EQUITY_CRASH"), None, Some(d("2008-11-20"))),
            d("2008-10-24")
        );
        assert_eq!(
            known_from(
                d("2008-10-24"),
                Some("HISTORICAL"),
                Some(d("2009-01-02")),
                Some(d("2008-11-20"))
            ),
            d("2009-01-02")
        );
    }

    #[test]
    fn filters_admit_what_they_name() {
        let f = ScenarioFilter {
            known_before: Some(d("2008-10-31")),
            shock_types: vec!["VOL_SPIKE".into()],
            min_severity: Some(2.0),
        };
        assert!(f.admits(Some(d("2008-10-30")), Some("VOL_SPIKE"), Some("HIGH")));
        assert!(
            !f.admits(Some(d("2008-10-31")), Some("VOL_SPIKE"), Some("HIGH")),
            "strictly before"
        );
        assert!(!f.admits(None, Some("VOL_SPIKE"), Some("HIGH")), "unknown date");
        assert!(!f.admits(Some(d("2008-01-01")), Some("RALLY"), Some("HIGH")));
        assert!(!f.admits(Some(d("2008-01-01")), Some("VOL_SPIKE"), Some("LOW")));
        let types = ShockTypes::of([Some("VOL_SPIKE"), Some("RALLY"), None]);
        let rf = f.row_filter(&types);
        for (k, t, s, want) in [
            (Some(d("2008-10-30")), Some("VOL_SPIKE"), Some("MEDIUM"), true),
            (Some(d("2008-10-31")), Some("VOL_SPIKE"), Some("MEDIUM"), false),
            (Some(d("2008-10-30")), Some("RALLY"), Some("MEDIUM"), false),
            (Some(d("2008-10-30")), Some("VOL_SPIKE"), Some("odd"), false),
            (None, Some("VOL_SPIKE"), Some("HIGH"), false),
        ] {
            assert_eq!(rf.admits(&types.attrs(k, t, s)), want, "{k:?} {t:?} {s:?}");
            assert_eq!(f.admits(k, t, s), want);
        }
        assert_eq!(key_day(day_key(d("1999-12-31"))), Some(d("1999-12-31")));
        assert_eq!(parse_min_severity("high"), Ok(3.0));
        assert!(parse_min_severity("bad").is_err());
    }
}
