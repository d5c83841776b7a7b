//! Recognising text that is already canonical, so that a row is copied instead of rewritten.
//!
//! Most producers write rows from a fixed struct: members in name order, no whitespace, plain
//! integers, strings without escapes. Such text is its own canonical form. [`canonical_end`]
//! checks that in one forward scan which also validates the text, so the caller can copy it as
//! the row without any other parse, split or sort.
//!
//! The scan accepts only a subset of JSON and gives up (`None`) on anything else: whitespace,
//! members out of order or repeated, escapes or control characters in strings, numbers that
//! `serde_json` would write differently (floats are read and written back by `serde_json` and
//! compared), nesting deeper than [`MAX_DEPTH`], and all invalid text. Giving up is always safe:
//! the caller then takes the general path, which canonicalizes the text or reports `serde_json`'s
//! error.
//!
//! Guarantee: if `canonical_end(b, i)` is `Some(end)`, then `b[i..end]` is exactly one valid JSON
//! value and its canonical text (as [`JsonRow`](super::JsonRow) defines it) is `b[i..end]` itself.

use std::fmt::Write as _;

/// Deepest nesting of objects and arrays the scan follows (below `serde_json`'s own limit of
/// 128); deeper text goes the general way, which `serde_json` bounds.
pub(crate) const MAX_DEPTH: u32 = 64;

/// The end of the canonical JSON value starting at `b[i]`, or `None` if the text there is not a
/// canonical value (or not JSON at all).
pub(crate) fn canonical_end(b: &[u8], i: usize) -> Option<usize> {
    value(b, i, 0)
}

fn value(b: &[u8], i: usize, depth: u32) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' if depth < MAX_DEPTH => object(b, i, depth + 1),
        b'[' if depth < MAX_DEPTH => array(b, i, depth + 1),
        b'n' => literal(b, i, b"null"),
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'-' | b'0'..=b'9' => number(b, i),
        _ => None,
    }
}

/// Members strictly increasing by name (so none repeated), no whitespace.
fn object(b: &[u8], i: usize, depth: u32) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j) == Some(&b'}') {
        return Some(j + 1);
    }
    let mut previous: Option<&[u8]> = None;
    loop {
        let name_end = string_end(b, j)?;
        let name = b.get(j + 1..name_end - 1)?;
        // Names without escapes compare as their bytes, as the general path compares them.
        if previous.is_some_and(|p| p >= name) {
            return None;
        }
        previous = Some(name);
        if b.get(name_end) != Some(&b':') {
            return None;
        }
        let value_end = value(b, name_end + 1, depth)?;
        match b.get(value_end)? {
            b',' => j = value_end + 1,
            b'}' => return Some(value_end + 1),
            _ => return None,
        }
    }
}

fn array(b: &[u8], i: usize, depth: u32) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j) == Some(&b']') {
        return Some(j + 1);
    }
    loop {
        let value_end = value(b, j, depth)?;
        match b.get(value_end)? {
            b',' => j = value_end + 1,
            b']' => return Some(value_end + 1),
            _ => return None,
        }
    }
}

/// A string with nothing `serde_json` would escape: no backslash, no control character. (The
/// text is a `str`, so its bytes are UTF-8.)
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let rest = b.get(i + 1..)?;
    let close = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[close] != b'"' || rest[..close].iter().any(|&c| c < 0x20) {
        return None;
    }
    Some(i + 1 + close + 1)
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b.get(i..)?.starts_with(word).then_some(i + word.len())
}

/// A number token: plain integers (as [`super::plain_integer`] defines them) are canonical; any
/// other number is canonical if `serde_json` reads it and writes it back unchanged.
fn number(b: &[u8], i: usize) -> Option<usize> {
    let len = b.get(i..)?.iter().take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).count();
    let end = i + len;
    // ASCII by construction.
    let token = std::str::from_utf8(b.get(i..end)?).ok()?;
    if super::plain_integer(token) {
        return Some(end);
    }
    let n: serde_json::Number = serde_json::from_str(token).ok()?;
    // A negative zero is written `0.0`, never as its token (which starts with `-`).
    if n.as_f64().is_some_and(|f| f == 0.0) && token.starts_with('-') {
        return None;
    }
    // As the general path writes it: serde_json's own number form (`Value`'s, not `Number`'s
    // `Display`).
    let mut same = Same(token.as_bytes());
    (write!(same, "{}", serde_json::Value::Number(n)).is_ok() && same.0.is_empty()).then_some(end)
}

/// A `fmt::Write` that succeeds while what is written matches the expected text, consuming it.
struct Same<'a>(&'a [u8]);

impl std::fmt::Write for Same<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        match self.0.strip_prefix(s.as_bytes()) {
            Some(rest) => {
                self.0 = rest;
                Ok(())
            }
            None => Err(std::fmt::Error),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The fast scan against the general path (the member-sorting scan) and against the row of
    //! the value `serde_json` reads, on random values written canonically, out of order, with
    //! whitespace, and with random edits.

    use super::canonical_end;
    use crate::JsonRow;
    use proptest::prelude::*;
    use serde_json::Value;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "",
                "a",
                "b",
                "aa",
                "a b",
                "id",
                "é",
                "𝄞",
                "q\"uote",
                "back\\slash",
                "nl\n",
                "\u{1}",
                "\u{7f}",
                "}",
                "],",
            ])
            .prop_map(String::from),
            "\\PC{0,4}",
        ]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            prop::sample::select(vec![0.0, -0.0, 2.5, 100.0, 1e300, -1.5e-7, 1e16, 0.1]).prop_map(Value::from),
            name().prop_map(Value::String),
        ]
    }

    pub(crate) fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((name(), inner), 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn next(rng: &mut u64, n: u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    }

    fn ws(rng: &mut u64, out: &mut String) {
        for _ in 0..next(rng, 4).saturating_sub(2) {
            out.push([' ', '\n', '\t', '\r'][next(rng, 4) as usize]);
        }
    }

    /// `v` written with members in reverse order (where `rng` says) and random whitespace.
    pub(crate) fn scrambled(v: &Value, rng: &mut u64, out: &mut String) {
        ws(rng, out);
        match v {
            Value::Object(m) => {
                let mut members: Vec<_> = m.iter().collect();
                if next(rng, 2) == 0 {
                    members.reverse();
                }
                out.push('{');
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    ws(rng, out);
                    out.push(':');
                    scrambled(v, rng, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    scrambled(v, rng, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
        ws(rng, out);
    }

    /// The general path's row of valid `text`: the member-sorting scan, without the fast scan.
    fn general(text: &str) -> String {
        let mut out = String::new();
        super::super::canonical_valid(text.as_bytes(), text, &mut out, 0).expect("valid JSON");
        out
    }

    /// What every parse of `text` must agree with: the row of the value `serde_json` reads.
    fn check(text: &str) -> Result<(), TestCaseError> {
        let fast = canonical_end(text.as_bytes(), 0);
        match serde_json::from_str::<Value>(text) {
            Ok(v) => {
                let reference = JsonRow::new(&v);
                if fast == Some(text.len()) {
                    prop_assert_eq!(text, reference.as_str(), "accepted as canonical");
                }
                prop_assert_eq!(general(text), reference.as_str());
                let parsed = JsonRow::parse(text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                prop_assert_eq!(parsed, reference);
            }
            Err(_) => {
                prop_assert!(fast != Some(text.len()), "invalid {:?} accepted", text);
                prop_assert!(JsonRow::parse(text).is_err(), "invalid {:?} parsed", text);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// serde_json's own writing (members in order, no whitespace): mostly canonical already.
        #[test]
        fn canonical_text_is_recognised_exactly(v in value()) {
            let text = serde_json::to_string(&v).unwrap();
            check(&text)?;
            // (serde_json may read a float back as a neighbour of the one it wrote.)
            let reference = JsonRow::new(&serde_json::from_str::<Value>(&text).unwrap());
            // Canonical text is recognised unless it has escapes (which the scan leaves to the
            // general path).
            if reference.as_str() == text && !text.contains('\\') {
                prop_assert_eq!(canonical_end(text.as_bytes(), 0), Some(text.len()), "{} not recognised", text);
            }
        }

        #[test]
        fn scrambled_text_gives_the_same_row(v in value(), seed in any::<u64>()) {
            let mut text = String::new();
            scrambled(&v, &mut (seed | 1), &mut text);
            check(&text)?;
        }

        /// Random edits of canonical text (structure, quotes, escapes, number spellings): the
        /// scan accepts only valid text whose row is itself.
        #[test]
        fn edited_text_is_accepted_only_when_valid_and_canonical(
            v in value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, prop::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"", "\\", " ", "-", "0", "1", ".", "e", "E+", "n", "null", "\\u00e9", "\u{1}", "é",
            ])), 1..4),
        ) {
            let mut text = serde_json::to_string(&v).unwrap();
            for (at, op, s) in edits {
                let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
                let i = bounds[at.index(bounds.len())];
                let next = bounds.iter().copied().find(|&j| j > i);
                match (op, next) {
                    (0, Some(j)) => text.replace_range(i..j, ""),
                    (1, Some(j)) => text.replace_range(i..j, s),
                    _ => text.insert_str(i, s),
                }
            }
            check(&text)?;
        }
    }

    #[test]
    fn number_spellings() {
        let written = [2.5, 1e300, 1e16, 1e-7, 0.1, -1.5].map(|f| serde_json::to_string(&f).unwrap());
        let integers = ["0", "-1", "12", "18446744073709551615", "-9223372036854775808"];
        for t in written.iter().map(String::as_str).chain(integers) {
            assert_eq!(canonical_end(t.as_bytes(), 0), Some(t.len()), "{t}");
        }
        for t in ["-0", "-0.0", "2.50", "1e2", "1e300", "1E+300", "007", "1.", ".5", "+1", "1e", "--1", "1.0e1"] {
            assert_eq!(canonical_end(t.as_bytes(), 0), None, "{t}");
            check(t).unwrap();
        }
    }

    /// Nesting deeper than the scan follows goes the general way; deeper than serde_json allows
    /// is an error, not a stack overflow.
    #[test]
    fn deep_nesting_is_bounded() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(canonical_end(deep(64).as_bytes(), 0).is_some());
        assert_eq!(canonical_end(deep(65).as_bytes(), 0), None);
        assert_eq!(JsonRow::parse(&deep(100)).unwrap().as_str(), deep(100));
        assert!(JsonRow::parse(&deep(100_000)).is_err());
        assert_eq!(canonical_end(deep(100_000).as_bytes(), 0), None);
    }
}
