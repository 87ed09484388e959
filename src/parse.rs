//! The parsers of values users type: dates, counts, shares, recall targets.
//! One parser each, shared by the CLI's flags (as clap value parsers), CSV
//! import, the server's JSON and Python.

use std::path::PathBuf;

use chrono::NaiveDate;

use crate::text::quote;

/// clap value parser for counts that must be at least 1 (`--top-k`, `--k`).
pub fn parse_positive(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// clap value parser for a count of results or a search breadth: a whole
/// number of 1 or more, where any number too large for this machine means
/// "as many as there are" (the search clamps it to the set's size).
pub fn parse_clamped(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Ok(usize::MAX),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// The one parser of dates from user input: CSV fields (`import`), command-line
/// flags (`--as-of`, …, as a clap value parser), the server's JSON (`as_of`) and
/// Python's `as_of`.
///
/// A date is exactly `YYYY-MM-DD`: ten bytes, a four-digit year from 0001 to
/// 9999, a two-digit month and day, and a day that exists. chrono's `%Y-%m-%d`
/// alone also takes `2023-1-5`, `+2023-01-05` and year 0 (stored as `0000-…`
/// on SQLite and `… BC` on PostgreSQL), so the shape is checked here first; the
/// years allowed are those both backends store and print alike. The message
/// quotes at most [`crate::text::EXCERPT_CHARS`] characters of the input.
pub fn parse_date(s: &str) -> std::result::Result<NaiveDate, String> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, &c)| {
            if i == 4 || i == 7 {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return Err(format!(
            "invalid date {}, expected YYYY-MM-DD (a four-digit year, a two-digit month and day)",
            quote(s)
        ));
    }
    let num = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    if year == 0 {
        return Err(format!(
            "invalid date \"{s}\", expected YYYY-MM-DD with a year from 0001 to 9999"
        ));
    }
    NaiveDate::from_ymd_opt(year as i32, month, day)
        .ok_or_else(|| format!("invalid date \"{s}\": there is no such day (expected YYYY-MM-DD)"))
}

/// clap value parser for `--recall`: a number in (0, 1].
pub fn parse_recall(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        Ok(r) => Err(format!("{r} is not a recall between 0 (exclusive) and 1")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// clap value parser for `--min-coverage`: a share between 0 and 1.
pub fn parse_share(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

/// clap value parser for `--partition-store` (and `STABSPACE_PARTITION_STORE`,
/// Python's `partition_store=`): where the index partitions live, as a URL.
/// `file://DIR` is a directory on this machine (`file:///srv/index`,
/// `file://./index`); it is the only kind of store in this version.
pub fn parse_partition_store(s: &str) -> std::result::Result<PathBuf, String> {
    let s = s.trim();
    if let Some(dir) = s.strip_prefix("file://") {
        if dir.is_empty() {
            return Err("file:// names no directory: give file://DIR".into());
        }
        return Ok(PathBuf::from(dir));
    }
    match s.split_once("://") {
        Some((scheme, _)) => Err(format!(
            "{scheme}:// partition stores are not supported yet: give a directory as file://DIR"
        )),
        None => Err(format!(
            "{} is not a partition store URL: give a directory as file://DIR",
            quote(s)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_date;
    use chrono::NaiveDate;

    #[test]
    fn dates_are_exactly_yyyy_mm_dd_with_years_0001_to_9999() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(parse_date("2023-01-05"), Ok(d(2023, 1, 5)));
        assert_eq!(parse_date("0001-01-01"), Ok(d(1, 1, 1)));
        assert_eq!(parse_date("9999-12-31"), Ok(d(9999, 12, 31)));
        assert_eq!(parse_date("2024-02-29"), Ok(d(2024, 2, 29)));
        for bad in [
            "2023-1-5",
            "2023-01-5",
            "2023-1-05",
            "+2023-01-05",
            "-2023-01-05",
            "10000-01-01",
            "23-01-05",
            " 2023-01-05",
            "2023-01-05 ",
            "2023/01/05",
            "2023-01-05T00:00",
            "２０２３-01-05",
            "",
        ] {
            let e = parse_date(bad).expect_err(bad);
            assert!(e.contains("expected YYYY-MM-DD (a four-digit year"), "{bad}: {e}");
        }
        let e = parse_date("0000-01-05").unwrap_err();
        assert!(e.contains("year from 0001 to 9999"), "{e}");
        for bad in [
            "2023-02-29",
            "2023-13-01",
            "2023-00-10",
            "2023-01-00",
            "2023-04-31",
        ] {
            let e = parse_date(bad).expect_err(bad);
            assert!(e.contains("no such day"), "{bad}: {e}");
        }
        // A long input is quoted as an excerpt.
        let e = parse_date(&"9".repeat(1 << 20)).unwrap_err();
        assert!(e.len() < 300 && e.contains("(1048576 bytes)"), "{e}");
    }

    #[test]
    fn partition_stores_are_directories_given_as_file_urls() {
        use super::parse_partition_store as store;
        assert_eq!(
            store("file:///srv/index"),
            Ok(std::path::PathBuf::from("/srv/index"))
        );
        assert_eq!(store(" file://./idx "), Ok(std::path::PathBuf::from("./idx")));
        assert!(store("file://").unwrap_err().contains("names no directory"));
        assert!(store("s3://bucket/prefix")
            .unwrap_err()
            .starts_with("s3:// partition stores are not supported yet"));
        assert!(store("/srv/index")
            .unwrap_err()
            .contains("is not a partition store URL"));
    }
}
