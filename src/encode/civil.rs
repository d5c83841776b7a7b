//! Calendar dates, date-times and exact decimals read from text — the one implementation every
//! encoder uses (Avro, RowBinary, JDBC cells).
//!
//! * Dates are proleptic Gregorian, counted in days since 1970-01-01 ([`days_from_civil`] and its
//!   inverse [`civil_from_days`], valid for any year, negative ones included). Text is exactly
//!   `YYYY-MM-DD` with a four-digit year; a date that does not exist (`2023-02-29`, `2024-04-31`,
//!   month 13, day 0) is refused.
//! * Date-times are `YYYY-MM-DD`, optionally followed by `T` or a space, `hh:mm:ss`, a fraction
//!   `.f…` (any number of digits) and an offset `Z`, `±hh`, `±hhmm` or `±hh:mm`. Hours are 0–23,
//!   minutes and seconds 0–59 (no leap second). [`parse_datetime`] returns the parts; each encoder
//!   decides what a missing time, fraction or offset means for its target.
//! * Decimals are `[+-]digits[.digits]`, scaled by `10^scale` into an `i128`; trailing zeros of
//!   the fraction are not places, any other digit past `scale` is refused (never rounded), and a
//!   value that does not fit an `i128` is refused.
//!
//! Nothing here panics on any input: text is read byte by byte and sliced only at ASCII
//! positions, and every error is a [`CivilError`] naming the text.

use std::fmt;

/// Why a text is not a date, date-time or decimal. Each variant carries the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CivilError {
    /// Not an existing `YYYY-MM-DD` date.
    NotADate(String),
    /// Not a date-time in the accepted form.
    NotADateTime(String),
    /// Not decimal text.
    NotADecimal(String),
    /// More significant decimal places than the scale.
    TooManyPlaces {
        /// The text.
        text: String,
        /// The scale it had to fit.
        scale: u32,
    },
    /// The scaled value does not fit an `i128`.
    TooLarge(String),
}

impl fmt::Display for CivilError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotADate(s) => write!(f, "`{s}` is not a date (YYYY-MM-DD)"),
            Self::NotADateTime(s) => {
                write!(f, "`{s}` is not a date-time (YYYY-MM-DD hh:mm:ss[.f], optionally with T, Z or ±hh:mm)")
            }
            Self::NotADecimal(s) => write!(f, "`{s}` is not a decimal number"),
            Self::TooManyPlaces { text, scale } => write!(f, "{text} has more than {scale} decimal places"),
            Self::TooLarge(s) => write!(f, "{s} is too large"),
        }
    }
}

impl std::error::Error for CivilError {}

/// Whether `y` is a Gregorian leap year.
pub const fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// The number of days of month `m` (1–12) of year `y`; 0 for a month that does not exist.
pub const fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (`m` 1–12, `d` 1–31; not checked).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian `(year, month, day)` of `z` days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The value of ASCII digits `b` (at most 9 of them), or `None`.
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0u32, |v, c| c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0')))
}

/// Days since 1970-01-01 of the date `YYYY-MM-DD`; a date that does not exist is refused.
pub fn parse_date(s: &str) -> Result<i64, CivilError> {
    date_bytes(s.as_bytes()).ok_or_else(|| CivilError::NotADate(s.to_string()))
}

fn date_bytes(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (i64::from(digits(&b[0..4])?), digits(&b[5..7])?, digits(&b[8..10])?);
    (d >= 1 && d <= days_in_month(y, m)).then(|| days_from_civil(y, m, d))
}

/// A parsed date-time: the parts as written, for the encoder to combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime<'a> {
    /// Days since 1970-01-01 of the date.
    pub days: i64,
    /// Seconds since midnight, if a time was written.
    pub time: Option<u32>,
    /// The fraction's digits as written (empty without one).
    pub fraction: &'a str,
    /// The offset from UTC in seconds, if one was written (`Z` is 0).
    pub offset: Option<i32>,
}

impl DateTime<'_> {
    /// Seconds since 1970-01-01 00:00 of the written date and time, ignoring the offset.
    pub fn local_seconds(&self) -> i64 {
        self.days * 86_400 + i64::from(self.time.unwrap_or(0))
    }

    /// Unix seconds, reading text without an offset as UTC.
    pub fn utc_seconds(&self) -> i64 {
        self.local_seconds() - i64::from(self.offset.unwrap_or(0))
    }

    /// The fraction as microseconds (digits past the sixth are dropped).
    pub fn fraction_micros(&self) -> u32 {
        let b = self.fraction.as_bytes();
        (0..6).fold(0, |v, i| v * 10 + b.get(i).map_or(0, |c| u32::from(c - b'0')))
    }
}

/// Reads `YYYY-MM-DD[(T| )hh:mm:ss[.f…][Z|±hh|±hhmm|±hh:mm]]`. A date alone has no time, fraction
/// or offset.
pub fn parse_datetime(s: &str) -> Result<DateTime<'_>, CivilError> {
    datetime_bytes(s).ok_or_else(|| CivilError::NotADateTime(s.to_string()))
}

fn datetime_bytes(s: &str) -> Option<DateTime<'_>> {
    let b = s.as_bytes();
    let days = date_bytes(b.get(..10)?)?;
    let rest = b.get(10..)?;
    if rest.is_empty() {
        return Some(DateTime { days, time: None, fraction: "", offset: None });
    }
    let t = rest.get(..9)?;
    if !(t[0] == b'T' || t[0] == b' ') || t[3] != b':' || t[6] != b':' {
        return None;
    }
    let (h, mi, se) = (digits(&t[1..3])?, digits(&t[4..6])?, digits(&t[7..9])?);
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    // Everything up to byte 19 is ASCII, so byte positions from here on are char boundaries
    // wherever they follow ASCII bytes.
    let mut at = 19;
    let mut fraction = "";
    if b.get(at) == Some(&b'.') {
        let n = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        fraction = s.get(at + 1..at + 1 + n)?;
        at += 1 + n;
    }
    let zone = &b[at..];
    let offset = if zone.is_empty() { None } else { Some(offset_bytes(zone)?) };
    Some(DateTime { days, time: Some(h * 3600 + mi * 60 + se), fraction, offset })
}

/// An offset `Z`, `z`, `±hh`, `±hhmm` or `±hh:mm` (hours 0–23, minutes 0–59) in seconds.
pub fn parse_offset(s: &str) -> Option<i32> {
    offset_bytes(s.as_bytes())
}

fn offset_bytes(z: &[u8]) -> Option<i32> {
    let (sign, hm) = match z {
        b"Z" | b"z" => return Some(0),
        [b'+', rest @ ..] => (1, rest),
        [b'-', rest @ ..] => (-1, rest),
        _ => return None,
    };
    let (h, m) = match hm {
        [_, _] => (digits(hm)?, 0),
        [a, b, c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
        [a, b, b':', c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
        _ => return None,
    };
    (h <= 23 && m <= 59).then(|| sign * (h * 3600 + m * 60) as i32)
}

/// Decimal text `[+-]int[.frac]` as an integer scaled by `10^scale`. Trailing zeros of the
/// fraction are not places; any other digit past `scale` is refused, as is a value too large for
/// an `i128`. No whitespace is skipped.
pub fn parse_decimal(text: &str, scale: u32) -> Result<i128, CivilError> {
    let b = text.as_bytes();
    let (neg, body) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (int, frac) = match body.iter().position(|c| *c == b'.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &[][..]),
    };
    if int.is_empty() && frac.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return Err(CivilError::NotADecimal(text.to_string()));
    }
    let places = frac.iter().rposition(|c| *c != b'0').map_or(0, |i| i + 1);
    let frac = &frac[..places];
    if places > scale as usize {
        return Err(CivilError::TooManyPlaces { text: text.to_string(), scale });
    }
    let padding = std::iter::repeat_n(b'0', scale as usize - places);
    let mut v: i128 = 0;
    for c in int.iter().chain(frac).copied().chain(padding) {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(c - b'0')))
            .ok_or_else(|| CivilError::TooLarge(text.to_string()))?;
    }
    Ok(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_back() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2106, 2, 7), 49_710);
        assert_eq!(days_from_civil(0, 3, 1), -719_468);
        assert_eq!(days_from_civil(-1, 12, 31), -719_529);
        for z in [-1_000_000, -719_529, -719_468, -1, 0, 1, 10_957, 11_016, 11_017, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{z} -> {y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-719_529), (-1, 12, 31));
    }

    #[test]
    fn leap_years_and_month_lengths() {
        assert!(is_leap(2000) && is_leap(2024) && is_leap(0) && is_leap(-4));
        assert!(!is_leap(1900) && !is_leap(2023) && !is_leap(2100));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2023, 4), 30);
        assert_eq!(days_in_month(2023, 13), 0);
        assert_eq!(days_in_month(2023, 0), 0);
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-02"), Ok(1));
        assert_eq!(parse_date("2000-03-01"), Ok(11_017));
        assert_eq!(parse_date("2000-02-29"), Ok(11_016));
        assert_eq!(parse_date("0000-01-01"), Ok(-719_528));
        assert_eq!(parse_date("9999-12-31"), Ok(2_932_896));
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-02-30",
            "2024-02-31",
            "2024-04-31",
            "2024-13-01",
            "2024-00-10",
            "2024-01-00",
            "2024-1-01",
            "24-01-01",
            "2024/01/01",
            "2024-01-01 ",
            "",
            "-001-01-01",
            "+2024-01-1",
            "２０２４-01-01",
            "2024-01-0é",
            "2024-é1-01",
        ] {
            assert_eq!(parse_date(bad), Err(CivilError::NotADate(bad.to_string())), "{bad}");
        }
        assert_eq!(parse_date("2023-02-29").unwrap_err().to_string(), "`2023-02-29` is not a date (YYYY-MM-DD)");
    }

    #[test]
    fn datetimes() {
        let dt = parse_datetime("2001-09-09 01:46:40").unwrap();
        assert_eq!((dt.utc_seconds(), dt.offset, dt.fraction), (1_000_000_000, None, ""));
        assert_eq!(parse_datetime("2001-09-09T03:46:40+02:00").unwrap().utc_seconds(), 1_000_000_000);
        assert_eq!(parse_datetime("2001-09-08T22:46:40-03:00").unwrap().utc_seconds(), 1_000_000_000);
        assert_eq!(parse_datetime("2001-09-08T22:46:40-0300").unwrap().utc_seconds(), 1_000_000_000);
        assert_eq!(parse_datetime("2001-09-08T22:46:40-03").unwrap().utc_seconds(), 1_000_000_000);
        assert_eq!(parse_datetime("2001-09-09T01:46:40z").unwrap().offset, Some(0));
        let dt = parse_datetime("2001-09-09").unwrap();
        assert_eq!((dt.time, dt.utc_seconds()), (None, 999_993_600));
        // Fractions: kept as written, read as microseconds (truncated past the sixth digit).
        let dt = parse_datetime("2024-01-01T00:00:00.5Z").unwrap();
        assert_eq!((dt.fraction, dt.fraction_micros()), ("5", 500_000));
        let dt = parse_datetime("2024-01-01T00:00:00.123456789+01:30").unwrap();
        assert_eq!((dt.fraction, dt.fraction_micros(), dt.offset), ("123456789", 123_456, Some(5400)));
        for bad in [
            "2001-09-09 25:00:00",
            "2001-09-09 23:60:00",
            "2001-09-09 23:59:60",
            "2001-09-09X01:46:40",
            "2001-09-09 01:46",
            "2001-09-09 01:46:40.",
            "2001-09-09 01:46:40+2",
            "2001-09-09 01:46:40+24:00",
            "2001-09-09 01:46:40+01:60",
            "2001-09-09 01:46:40+01-30",
            "2001-09-09 01:46:40 Z",
            "2001-09-09Z",
            "2001-02-29 00:00:00",
            "2001-09-09 01:46:4é",
            "2001-09-09 01:46:40.5é",
            "2001-09-09 01:46:40+é",
            "2001-09-09 é1:46:40",
            "2001-09-0é",
            "é",
        ] {
            assert_eq!(parse_datetime(bad), Err(CivilError::NotADateTime(bad.to_string())), "{bad}");
        }
        assert_eq!(parse_offset("+05:30"), Some(19_800));
        assert_eq!(parse_offset("-00"), Some(0));
        assert_eq!(parse_offset("+5"), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("12.30", 2), Ok(1230));
        assert_eq!(parse_decimal("12.3000000", 2), Ok(1230));
        assert_eq!(parse_decimal("-0.5", 2), Ok(-50));
        assert_eq!(parse_decimal("+.5", 1), Ok(5));
        assert_eq!(parse_decimal("7.", 3), Ok(7000));
        assert_eq!(parse_decimal("007", 0), Ok(7));
        assert_eq!(parse_decimal("1.234", 2), Err(CivilError::TooManyPlaces { text: "1.234".into(), scale: 2 }));
        assert_eq!(parse_decimal("1.234", 2).unwrap_err().to_string(), "1.234 has more than 2 decimal places");
        let max = i128::MAX.to_string();
        assert_eq!(parse_decimal(&max, 0), Ok(i128::MAX));
        assert_eq!(parse_decimal(&max, 1), Err(CivilError::TooLarge(max.clone())));
        assert_eq!(parse_decimal("1e5", 2).unwrap_err().to_string(), "`1e5` is not a decimal number");
        for bad in ["", ".", "-", "+", "-.", "1.2.3", " 1", "1 ", "--1", "1,5", "١٢", "1.é", "é"] {
            assert_eq!(parse_decimal(bad, 2), Err(CivilError::NotADecimal(bad.to_string())), "{bad}");
        }
    }
}
