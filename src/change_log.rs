//! One line of a change log, as `dsink` replays it: `{"time": <u64>, "diff": <±n>, "row": <JSON>}`.
//!
//! [`ChangeLine::parse`] reads a line in one of two ways. A scan of the line's fixed envelope
//! (the three members in any order, any spacing) reads `time` and `diff` and checks the row with
//! [`JsonRow`]'s canonical-text scan, which validates it as it goes; when that succeeds — rows
//! written from a fixed struct, members in name order and no whitespace, the common case — the
//! row is copied as is and the line is read once. Anything else (another member, a repeated
//! one, escapes in a name, a number the scan does not read, a row not in canonical form, invalid
//! JSON) goes to `serde_json`, which reads the line exactly as it always does and reports its
//! errors; the row is then canonicalized from the text `serde_json` checked.
//!
//! Guarantee: both ways give the same `time`, `diff` and row for every line the scan accepts,
//! and every line the scan does not accept gets exactly `serde_json`'s answer.

use crate::json_row::fast::canonical_end;
use crate::JsonRow;
use serde::Deserialize;

/// A change-log line, read: its time, its diff and its row's text (not yet a [`JsonRow`], so
/// that a schema can check it first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeLine<'a> {
    /// The logical time of the change.
    pub time: u64,
    /// +n for inserts, -n for retractions.
    pub diff: isize,
    /// The row's JSON text, valid JSON (checked by the parse).
    row: &'a str,
    /// Whether `row` is already the row's canonical text.
    canonical: bool,
}

#[derive(Deserialize)]
struct Line<'a> {
    time: u64,
    diff: isize,
    #[serde(borrow)]
    row: &'a serde_json::value::RawValue,
}

impl<'a> ChangeLine<'a> {
    /// Reads `line`, or returns `serde_json`'s error for it.
    ///
    /// ```
    /// use differential_sinks::change_log::ChangeLine;
    /// let l = ChangeLine::parse(r#"{"time": 3, "diff": -1, "row": {"b": 1, "a": [2.50]}}"#).unwrap();
    /// assert_eq!((l.time, l.diff), (3, -1));
    /// assert_eq!(l.row().unwrap().as_str(), r#"{"a":[2.5],"b":1}"#);
    /// assert!(ChangeLine::parse(r#"{"time": 3, "row": {}}"#).is_err());
    /// ```
    pub fn parse(line: &'a str) -> Result<Self, serde_json::Error> {
        if let Some(l) = scan(line) {
            return Ok(l);
        }
        let l: Line<'a> = serde_json::from_str(line)?;
        Ok(ChangeLine { time: l.time, diff: l.diff, row: l.row.get(), canonical: false })
    }

    /// The row's JSON text as the line has it (valid JSON, not necessarily canonical).
    pub fn row_text(&self) -> &'a str {
        self.row
    }

    /// The row, or `serde_json`'s error for a row nested deeper than it reads into a value.
    pub fn row(&self) -> Result<JsonRow, serde_json::Error> {
        if self.canonical {
            Ok(JsonRow::from_canonical(self.row))
        } else {
            JsonRow::from_valid(self.row)
        }
    }
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| is_ws(*c)) {
        i += 1;
    }
    i
}

/// The envelope scan: `None` for anything it does not read as `serde_json` would.
fn scan(line: &str) -> Option<ChangeLine<'_>> {
    let b = line.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let (mut time, mut diff, mut row) = (None, None, None);
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let name_end = i + 1 + memchr::memchr(b'"', b.get(i + 1..)?)?;
        let name = b.get(i + 1..name_end)?;
        i = skip_ws(b, name_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        // Names with escapes, other names and repeated names are serde_json's to judge.
        i = match name {
            b"time" if time.is_none() => {
                let (t, end) = unsigned(b, i)?;
                time = Some(t);
                end
            }
            b"diff" if diff.is_none() => {
                let (d, end) = signed(b, i)?;
                diff = Some(d);
                end
            }
            b"row" if row.is_none() => {
                let end = canonical_end(b, i)?;
                row = Some(line.get(i..end)?);
                end
            }
            _ => return None,
        };
        i = skip_ws(b, i);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => break,
            _ => return None,
        }
    }
    if skip_ws(b, i + 1) != b.len() {
        return None;
    }
    Some(ChangeLine { time: time?, diff: diff?, row: row?, canonical: true })
}

/// A JSON integer without sign, fraction or exponent (and no leading zero), that fits a `u64`;
/// the caller checks that what follows ends the value.
fn unsigned(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let digits = b.get(i..)?.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 1 && b[i] == b'0' {
        return None;
    }
    let mut n = 0u64;
    for &c in &b[i..i + digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some((n, i + digits))
}

/// As [`unsigned`], with an optional minus, fitting an `isize` (`-0` and the most negative
/// value are left to `serde_json`).
fn signed(b: &[u8], i: usize) -> Option<(isize, usize)> {
    let negative = b.get(i) == Some(&b'-');
    let (magnitude, end) = unsigned(b, i + usize::from(negative))?;
    let magnitude = isize::try_from(magnitude).ok()?;
    match (negative, magnitude) {
        (true, 0) => None,
        (true, m) => Some((-m, end)),
        (false, m) => Some((m, end)),
    }
}

#[cfg(test)]
mod tests {
    //! The envelope scan against `serde_json`'s reading of the same lines (the reference: how
    //! lines were read before the scan), on random rows, member orders, spacing and edits.

    use super::*;
    use crate::json_row::fast::tests::{scrambled, value};
    use proptest::prelude::*;
    use serde_json::Value;

    /// `serde_json`'s reading of a line: time, diff and the row of the value it reads.
    fn reference(line: &str) -> Option<(u64, isize, JsonRow)> {
        let l: Line<'_> = serde_json::from_str(line).ok()?;
        let v: Value = serde_json::from_str(l.row.get()).ok()?;
        Some((l.time, l.diff, JsonRow::new(&v)))
    }

    fn read(line: &str) -> Option<(u64, isize, JsonRow)> {
        let l = ChangeLine::parse(line).ok()?;
        Some((l.time, l.diff, l.row().ok()?))
    }

    fn line(members: [(&str, String); 3], order: usize, spaced: bool) -> String {
        let mut m = members.to_vec();
        m.rotate_left(order % 3);
        if order >= 3 {
            m.swap(0, 1);
        }
        let sep = if spaced { ", " } else { "," };
        let colon = if spaced { ": " } else { ":" };
        let body: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\"{colon}{v}")).collect();
        format!("{{{}}}", body.join(sep))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_scan_reads_lines_as_serde_json_does(
            time in prop_oneof![any::<u64>(), 0..100u64],
            diff in prop_oneof![any::<isize>(), -3..3isize],
            row in value(),
            order in 0..6usize,
            spaced: bool,
            scramble in any::<u64>(),
        ) {
            let text = if scramble % 2 == 0 {
                serde_json::to_string(&row).unwrap()
            } else {
                let mut t = String::new();
                scrambled(&row, &mut (scramble | 1), &mut t);
                t
            };
            let l = line([("time", time.to_string()), ("diff", diff.to_string()), ("row", text.clone())], order, spaced);
            let expected = reference(&l);
            prop_assert!(expected.is_some(), "{}", l);
            prop_assert_eq!(read(&l), expected.clone(), "{}", l);
            // The common case takes the scan: a canonical row, a plain envelope.
            if expected.is_some_and(|(_, _, r)| r.as_str() == text) && !text.contains('\\') && diff != isize::MIN {
                prop_assert!(scan(&l).is_some(), "{} not scanned", l);
            }
        }

        /// Random edits of a line: read exactly when serde_json reads it, and then the same.
        #[test]
        fn edited_lines_are_read_exactly_when_serde_json_reads_them(
            row in value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, prop::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"", "\\", " ", "-", "0", "1", ".", "e", "\"time\":1,", "\"diff\"", "\"row\"", "null", "é",
            ])), 1..4),
        ) {
            let mut l = line([("time", "12".into()), ("diff", "-1".into()), ("row", serde_json::to_string(&row).unwrap())], 0, false);
            for (at, op, s) in edits {
                let bounds: Vec<usize> = l.char_indices().map(|(i, _)| i).chain([l.len()]).collect();
                let i = bounds[at.index(bounds.len())];
                let next = bounds.iter().copied().find(|&j| j > i);
                match (op, next) {
                    (0, Some(j)) => l.replace_range(i..j, ""),
                    (1, Some(j)) => l.replace_range(i..j, s),
                    _ => l.insert_str(i, s),
                }
            }
            prop_assert_eq!(read(&l), reference(&l), "{}", l);
        }
    }

    #[test]
    fn envelope_numbers_and_members() {
        let ok = [
            (r#"{"diff":1,"row":{"a":1},"time":0}"#, (0, 1)),
            (
                r#" { "time" : 18446744073709551615 , "diff" : -9223372036854775807 , "row" : null } "#,
                (u64::MAX, -isize::MAX),
            ),
            (r#"{"time":1,"diff":-9223372036854775808,"row":[]}"#, (1, isize::MIN)),
            (r#"{"time":1,"diff":0,"row":[],"extra":{"x":[1]}}"#, (1, 0)),
        ];
        for (l, (time, diff)) in ok {
            let c = ChangeLine::parse(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert_eq!((c.time, c.diff), (time, diff), "{l}");
            assert_eq!(read(l), reference(l), "{l}");
        }
        for bad in [
            r#"{"time":1,"diff":1}"#,
            r#"{"time":1,"diff":1,"row":1,"time":2}"#,
            r#"{"time":01,"diff":1,"row":1}"#,
            // serde_json reads `-0` as a float.
            r#"{"time":1,"diff":-0,"row":1}"#,
            r#"{"time":1.0,"diff":1,"row":1}"#,
            r#"{"time":-1,"diff":1,"row":1}"#,
            r#"{"time":18446744073709551616,"diff":1,"row":1}"#,
            r#"{"time":1,"diff":1,"row":{"a":1,}}"#,
            r#"{"time":1,"diff":1,"row":{"a":1}} x"#,
            r#"{"time":1,"diff":1,"row":{"a":1}"#,
        ] {
            assert!(ChangeLine::parse(bad).is_err(), "{bad} was read");
        }
    }

    /// A row nested deeper than serde_json reads is an error, not a stack overflow.
    #[test]
    fn a_deeply_nested_row_is_an_error() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let l = format!(r#"{{"time":1,"diff":1,"row":{deep}}}"#);
        let e = ChangeLine::parse(&l).and_then(|c| c.row()).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }
}
