//! Strict reading of numbers and JSON: whole numbers decided on the decimal
//! text, JSON objects with no key given twice and no integer beyond 64 bits.

use serde_json::{Map, Value as Json};

use super::text::quote;

/// The exact value of a decimal number as written, when it is whole.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Whole {
    Int(u128),
    /// Whole and positive, beyond 2¹²⁸.
    TooLarge,
    /// Not a whole number.
    Fraction,
    /// Below zero.
    Negative,
}

/// What the decimal text `s` (`12`, `+1.5e3`, `-0.0`, `.5`) is exactly, without
/// rounding through a double: `9007199254740993` is that integer, not 2⁵³, and
/// `5000000000000000.3` is not whole. `None` if `s` is not a decimal number.
pub(super) fn whole(s: &str) -> Option<Whole> {
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    // The power of ten, saturated far beyond any meaningful range.
    let mut exp: i64 = match exponent {
        None => 0,
        Some(e) => {
            let (sign, digits) = match e.as_bytes().first() {
                Some(b'-') => (-1, &e[1..]),
                Some(b'+') => (1, &e[1..]),
                _ => (1, e),
            };
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let digits = digits.trim_start_matches('0');
            sign * if digits.len() > 12 {
                1_000_000_000_000
            } else {
                digits.parse::<i64>().unwrap_or(0)
            }
        }
    };
    exp -= frac.len() as i64;
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(Whole::Int(0));
    }
    if negative {
        return Some(Whole::Negative);
    }
    let significant = digits.trim_end_matches('0');
    exp += (digits.len() - significant.len()) as i64;
    if exp < 0 {
        return Some(Whole::Fraction);
    }
    if significant.len() as i64 + exp > 39 {
        return Some(Whole::TooLarge);
    }
    let n = significant.parse::<u128>().ok();
    let n = n.and_then(|n| 10u128.checked_pow(exp as u32).and_then(|p| n.checked_mul(p)));
    Some(n.map_or(Whole::TooLarge, Whole::Int))
}

/// A JSON value parsed as `serde_json::Value` is, except that a key given
/// twice in one object is an error (serde_json keeps the last silently).
pub(super) struct StrictJson(pub(super) Json);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

pub(super) struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> std::result::Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, b: bool) -> std::result::Result<Json, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> std::result::Result<Json, E> {
        Ok(Json::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> std::result::Result<Json, E> {
        Ok(Json::from(n))
    }
    fn visit_f64<E: serde::de::Error>(self, x: f64) -> std::result::Result<Json, E> {
        serde_json::Number::from_f64(x)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, s: &str) -> std::result::Result<Json, E> {
        Ok(Json::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> std::result::Result<Json, E> {
        Ok(Json::String(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Json, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {} is given twice in one object",
                    quote(&key)
                )));
            }
            let StrictJson(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Json::Object(out))
    }
}

/// The message for JSON that does not parse, with a hint where it holds
/// `NaN` or `Infinity` (which JSON does not have).
pub(super) fn json_error(text: &str, e: &serde_json::Error) -> String {
    // serde_json's messages are short and quote no input; ours quote keys cut short.
    let mut m = format!("invalid JSON: {e}");
    if e.is_syntax() {
        let at = text
            .split_inclusive('\n')
            .take(e.line().saturating_sub(1))
            .map(str::len)
            .sum::<usize>()
            + e.column().saturating_sub(1);
        let rest = text.get(at..).unwrap_or("").trim_start_matches('-');
        if ["NaN", "nan", "Infinity", "inf"]
            .iter()
            .any(|w| rest.starts_with(w))
        {
            m.push_str(" (JSON has no NaN or Infinity: numbers must be finite)");
        }
    }
    m
}

/// Line and column (1-based, in characters) of byte `at` of `text`.
pub(super) fn json_position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// The first integer in JSON text (already parsed) that fits neither `i64`
/// nor `u64`, which serde_json would round to a double: its byte offset and text.
pub(super) fn long_integer(text: &str) -> Option<(usize, &str)> {
    let b = text.as_bytes();
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if c == b'"' {
            in_string = true;
        } else if c == b'-' || c.is_ascii_digit() {
            let start = i;
            while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                i += 1;
            }
            let token = &text[start..i];
            if !token.contains(['.', 'e', 'E'])
                && token.parse::<i64>().is_err()
                && token.parse::<u64>().is_err()
            {
                return Some((start, token));
            }
            continue;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_reads_decimal_text_exactly() {
        assert_eq!(whole("1000"), Some(Whole::Int(1000)));
        assert_eq!(whole("1000.0"), Some(Whole::Int(1000)));
        assert_eq!(whole("1e3"), Some(Whole::Int(1000)));
        assert_eq!(whole("+1.5E3"), Some(Whole::Int(1500)));
        assert_eq!(whole("12000e-3"), Some(Whole::Int(12)));
        assert_eq!(whole("-0.0"), Some(Whole::Int(0)));
        assert_eq!(whole("0e999999999999999999999"), Some(Whole::Int(0)));
        assert_eq!(whole(".5"), Some(Whole::Fraction));
        assert_eq!(whole("1000.5"), Some(Whole::Fraction));
        assert_eq!(whole("1e-3"), Some(Whole::Fraction));
        assert_eq!(whole("5000000000000000.3"), Some(Whole::Fraction));
        assert_eq!(whole("1.0000000000000000001"), Some(Whole::Fraction));
        assert_eq!(whole("-1"), Some(Whole::Negative));
        assert_eq!(whole("9007199254740993"), Some(Whole::Int(9_007_199_254_740_993)));
        assert_eq!(whole("1e39"), Some(Whole::TooLarge));
        assert_eq!(whole("1e999999999999999999999"), Some(Whole::TooLarge));
        assert_eq!(whole("1e38"), Some(Whole::Int(10u128.pow(38))));
        for bad in ["", ".", "e5", "1e", "1e+", "x", "1.2.3", "inf", "NaN", "--1"] {
            assert_eq!(whole(bad), None, "{bad}");
        }
    }

    #[test]
    fn long_integers_are_found_outside_strings_only() {
        assert_eq!(
            long_integer(r#"{"a": 18446744073709551615, "b": -9223372036854775808}"#),
            None
        );
        let t = r#"{"a": "123456789012345678901234", "b": [1.5e300, 18446744073709551616]}"#;
        assert_eq!(long_integer(t), Some((49, "18446744073709551616")));
        assert_eq!(
            long_integer(r#"{"a\"1": -9223372036854775809}"#).map(|x| x.1),
            Some("-9223372036854775809")
        );
        assert_eq!(long_integer(r#"{"a": 123456789012345678901234.0}"#), None);
    }
}
