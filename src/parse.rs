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

/// clap value parser for `--cache-max-gb` (and `STABSPACE_CACHE_MAX_GB`,
/// Python's `cache_max_gb=`): a positive number of gigabytes.
pub fn parse_gigabytes(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(g) if g > 0.0 && g.is_finite() => Ok(g),
        _ => Err(format!("{s:?} is not a positive number of gigabytes")),
    }
}

/// clap value parser for `--min-coverage`: a share between 0 and 1.
pub fn parse_share(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

/// clap value parser for `--recall-sample`: the share of queries checked
/// against an exact scan, between 0 (none) and 1 (every one).
pub fn parse_sample_share(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        Ok(x) => Err(format!(
            "{x} is not a share of queries between 0 and 1 (0.01: one query in a hundred; 0: none)"
        )),
        Err(_) => Err(format!(
            "{s:?} is not a number: give a share of queries between 0 and 1, such as 0.01"
        )),
    }
}

/// Where the index partitions live, as `--partition-store` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file://DIR`: a directory on this machine.
    Dir(PathBuf),
    /// `s3://BUCKET/PREFIX`: object storage through the S3 API.
    S3 { bucket: String, prefix: String },
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Dir(d) => write!(f, "file://{}", d.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// clap value parser for `--partition-store` (and `STABSPACE_PARTITION_STORE`,
/// Python's `partition_store=`): where the index partitions live, as a URL.
/// `file://DIR` is a directory on this machine (`file:///srv/index`,
/// `file://./index`); `s3://BUCKET/PREFIX` is a bucket reached through the
/// S3 API (`AWS_*` variables say where and as whom).
pub fn parse_partition_store(s: &str) -> std::result::Result<StoreUrl, String> {
    let s = s.trim();
    if let Some(dir) = s.strip_prefix("file://") {
        if dir.is_empty() {
            return Err("file:// names no directory: give file://DIR".into());
        }
        return Ok(StoreUrl::Dir(PathBuf::from(dir)));
    }
    if let Some(rest) = s.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Err(format!(
                "s3://{} does not name a bucket: give s3://BUCKET/PREFIX (a bucket name is 3 to 63 \
                 lowercase letters, digits, '-' or '.')",
                quote(bucket)
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!(
                "s3://{bucket}/{prefix}: the prefix has an empty, . or .. part"
            ));
        }
        return Ok(StoreUrl::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        });
    }
    match s.split_once("://") {
        Some((scheme, _)) => Err(format!(
            "{scheme}:// partition stores are not supported: give file://DIR or s3://BUCKET/PREFIX"
        )),
        None => Err(format!(
            "{} is not a partition store URL: give file://DIR or s3://BUCKET/PREFIX",
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
    fn partition_stores_are_file_or_s3_urls() {
        use super::{parse_partition_store as store, StoreUrl};
        assert_eq!(store("file:///srv/index"), Ok(StoreUrl::Dir("/srv/index".into())));
        assert_eq!(store(" file://./idx "), Ok(StoreUrl::Dir("./idx".into())));
        assert!(store("file://").unwrap_err().contains("names no directory"));
        let s3 = |b: &str, p: &str| StoreUrl::S3 {
            bucket: b.into(),
            prefix: p.into(),
        };
        assert_eq!(store("s3://bucket/prefix"), Ok(s3("bucket", "prefix")));
        assert_eq!(store("s3://bucket/a/b/"), Ok(s3("bucket", "a/b")));
        assert_eq!(store("s3://bucket"), Ok(s3("bucket", "")));
        assert_eq!(store("s3://bucket/a/b").unwrap().to_string(), "s3://bucket/a/b");
        assert!(store("s3://Bad_Bucket/x")
            .unwrap_err()
            .contains("does not name a bucket"));
        assert!(store("s3://bucket/a/../b").unwrap_err().contains(".."));
        assert!(store("gs://bucket/prefix")
            .unwrap_err()
            .starts_with("gs:// partition stores are not supported"));
        assert!(store("/srv/index")
            .unwrap_err()
            .contains("is not a partition store URL"));
    }
}
