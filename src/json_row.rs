//! Dynamic rows: a JSON value that can flow through a dataflow and into any sink, held compactly
//! as its canonical text.
//!
//! A `serde_json::Value` tree costs several hundred bytes of small allocations per row and is
//! neither ordered (needed to consolidate updates) nor encodable by the binary format timely uses
//! between processes. [`JsonRow`] holds one allocation: the value's **canonical** JSON text —
//! object members sorted by key (at every depth), no whitespace, strings escaped as `serde_json`
//! escapes them, integers as integers and floats in `serde_json`'s shortest round-trip form (a
//! negative zero written as `0.0`). Two rows are equal exactly when their values are equal in
//! `serde_json` (an update and its retraction cancel whatever the member order or spacing of the
//! lines they came from), and they are ordered by their text.
//!
//! Encoding a row walks its text with `serde_json`'s parser and hands each token to the target
//! serializer ([`serde_transcode`]), so it encodes — and exposes its fields to key extraction — as
//! the value itself, without building a tree. An object's members are split first, each value
//! encoding from its own text, so a serializer may skip fields it does not need. Between processes and in spill files it travels as
//! its text.
//!
//! Parsing first tries a fast scan (module `fast`), which recognises text that already is canonical (the
//! common case of rows written from a fixed struct) and validates it in the same pass; such text
//! is copied once. Other text is canonicalized by splitting and sorting its members.

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt::Write as _;

pub(crate) mod fast;

/// A JSON value usable as a dataflow record and a sink row, stored as canonical JSON text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JsonRow(Box<str>);

impl JsonRow {
    /// The row of `value`.
    pub fn new(value: &Value) -> Self {
        let mut out = String::with_capacity(128);
        canonical(value, &mut out);
        JsonRow(out.into_boxed_str())
    }

    /// Parses JSON text (any member order, any spacing) into its row.
    ///
    /// ```
    /// use differential_sinks::JsonRow;
    /// let a = JsonRow::parse(r#"{"b": [1, 2.50], "a": "x"}"#).unwrap();
    /// assert_eq!(a.as_str(), r#"{"a":"x","b":[1,2.5]}"#);
    /// assert_eq!(a, JsonRow::parse(r#"{"a":"x","b":[1,2.5]}"#).unwrap());
    /// ```
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        if fast::canonical_end(text.as_bytes(), 0) == Some(text.len()) {
            return Ok(JsonRow(text.into()));
        }
        let raw: &RawValue = serde_json::from_str(text)?;
        JsonRow::from_valid(raw.get())
    }

    /// The row of `text`, which [`fast::canonical_end`] accepted whole: valid and canonical.
    pub(crate) fn from_canonical(text: &str) -> Self {
        JsonRow(text.into())
    }

    /// The row of JSON text already checked by `serde_json` (say, a field of a larger document
    /// parsed as `&RawValue`): canonicalized by a scan, without parsing it again.
    ///
    /// A `&RawValue` may nest deeper than the 128 levels `serde_json` reads into a value; such
    /// text gives the `null` row ([`JsonRow::parse`] reports it as an error instead).
    pub fn from_raw(raw: &RawValue) -> Self {
        JsonRow::from_valid(raw.get()).unwrap_or_else(|_| JsonRow("null".into()))
    }

    /// The row of `text`, valid JSON (checked by `serde_json`), or `serde_json`'s error for text
    /// nested deeper than it reads.
    pub(crate) fn from_valid(text: &str) -> Result<Self, serde_json::Error> {
        if fast::canonical_end(text.as_bytes(), 0) == Some(text.len()) {
            return Ok(JsonRow(text.into()));
        }
        let mut out = String::with_capacity(text.len());
        if canonical_valid(text.as_bytes(), text, &mut out, 0).is_none() {
            // Text nested too deep (or, never for valid JSON, not JSON): through a tree, which
            // refuses such text with serde_json's error.
            out.clear();
            canonical(&serde_json::from_str::<Value>(text)?, &mut out);
        }
        Ok(JsonRow(out.into_boxed_str()))
    }

    /// The members of an object row — names (unescaped) and canonical value texts — in name
    /// order; `None` if the row is not an object. An item is `None` (and the last) if the text
    /// is not canonical after all.
    pub(crate) fn members(&self) -> Option<impl Iterator<Item = Option<(Cow<'_, str>, &str)>>> {
        self.0.starts_with('{').then(|| Members::of(&self.0))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value, as a `serde_json` tree (parsed from the text).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl From<Value> for JsonRow {
    fn from(v: Value) -> Self {
        JsonRow::new(&v)
    }
}

impl From<&Value> for JsonRow {
    fn from(v: &Value) -> Self {
        JsonRow::new(v)
    }
}

/// Writes `v`'s canonical text.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => string(s, out),
        Value::Number(n) if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) && n.is_f64() => {
            out.push_str("0.0")
        }
        // Null, booleans and numbers: serde_json's own text (integers as integers, floats in
        // their shortest round-trip form).
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Writes the canonical text of valid JSON `text` (`b` is its bytes), without building a tree:
/// an object's members are found by a scan (whitespace allowed), sorted by name and written
/// recursively; integers written plainly and strings without escapes are copied; other numbers
/// and strings are read and written back as `serde_json` writes them. `None` if the text turns
/// out not to be valid JSON after all, or nests deeper than `serde_json` reads (`depth` is the
/// nesting of the value in its document).
fn canonical_valid(b: &[u8], text: &str, out: &mut String, depth: u32) -> Option<()> {
    if depth >= MAX_NESTING {
        return None;
    }
    let (start, end) = trim(b, 0, b.len());
    let t = text.get(start..end)?;
    match b.get(start)? {
        b'{' => {
            let mut members: Vec<(Cow<'_, str>, usize, usize)> = Vec::with_capacity(8);
            let mut i = skip_ws(b, start + 1);
            if b.get(i) != Some(&b'}') {
                loop {
                    let name_end = skip_string(b, i)?;
                    members.push((name(text, i, name_end)?, 0, 0));
                    i = skip_ws(b, name_end);
                    if b.get(i) != Some(&b':') {
                        return None;
                    }
                    let value_start = skip_ws(b, i + 1);
                    let value_end = skip_value(b, value_start)?;
                    let last = members.last_mut()?;
                    (last.1, last.2) = (value_start, value_end);
                    i = skip_ws(b, value_end);
                    match b.get(i)? {
                        b',' => i = skip_ws(b, i + 1),
                        b'}' => break,
                        _ => return None,
                    }
                }
            }
            if !members.is_sorted_by(|a, b| a.0 < b.0) {
                members.sort_by(|a, b| a.0.cmp(&b.0));
                // Duplicate names: the last one wins, as in a `serde_json::Value`. The ones it
                // replaces must still be values serde_json reads (the scan that found them does
                // not check that a number is in range): each is canonicalized and thrown away.
                let mut replaced = String::new();
                for pair in members.windows(2).filter(|pair| pair[0].0 == pair[1].0) {
                    let (from, to) = (pair[0].1, pair[0].2);
                    replaced.clear();
                    canonical_valid(b.get(from..to)?, text.get(from..to)?, &mut replaced, depth + 1)?;
                }
                members.reverse();
                members.dedup_by(|a, b| a.0 == b.0);
                members.reverse();
            }
            out.push('{');
            for (n, (name, from, to)) in members.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                match name {
                    // Valid JSON has no control characters in strings, and without a backslash
                    // there is no quote either: nothing to escape.
                    Cow::Borrowed(raw) => {
                        out.push('"');
                        out.push_str(raw);
                        out.push('"');
                    }
                    Cow::Owned(unescaped) => string(unescaped, out),
                }
                out.push(':');
                canonical_valid(b.get(*from..*to)?, text.get(*from..*to)?, out, depth + 1)?;
            }
            out.push('}');
        }
        b'[' => {
            out.push('[');
            let mut i = skip_ws(b, start + 1);
            let mut n = 0;
            while b.get(i) != Some(&b']') {
                if n > 0 {
                    out.push(',');
                }
                let value_end = skip_value(b, i)?;
                canonical_valid(b.get(i..value_end)?, text.get(i..value_end)?, out, depth + 1)?;
                n += 1;
                i = skip_ws(b, value_end);
                match b.get(i)? {
                    b',' => i = skip_ws(b, i + 1),
                    b']' => {}
                    _ => return None,
                }
            }
            out.push(']');
        }
        b'"' => match name(text, start, end)? {
            // As for member names: a valid string without a backslash is copied.
            Cow::Borrowed(_) => out.push_str(t),
            Cow::Owned(unescaped) => string(&unescaped, out),
        },
        b'-' | b'0'..=b'9' if plain_integer(t) => out.push_str(t),
        _ => canonical(&serde_json::from_str::<Value>(t).ok()?, out),
    }
    Some(())
}

/// Nesting levels `serde_json` reads into a value: its recursion limit.
const MAX_NESTING: u32 = 128;

/// The string at `text[from..to]` (quotes included), unescaped.
fn name(text: &str, from: usize, to: usize) -> Option<Cow<'_, str>> {
    let raw = text.get(from + 1..to.checked_sub(1)?)?;
    if raw.contains('\\') {
        serde_json::from_str::<String>(text.get(from..to)?).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(raw))
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

fn trim(b: &[u8], mut from: usize, mut to: usize) -> (usize, usize) {
    from = skip_ws(b, from);
    while to > from && is_ws(b[to - 1]) {
        to -= 1;
    }
    (from, to)
}

/// An integer serde_json reads as an `i64` or `u64` and writes back unchanged: an optional
/// minus, no leading zero, at most 18 digits (so it fits either way; `-0` is refused).
pub(crate) fn plain_integer(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" && !t.starts_with('-') || !digits.starts_with('0'))
}

/// Writes `s` as a JSON string, escaped as `serde_json` escapes it.
fn string(s: &str, out: &mut String) {
    // serde_json's escaping is the reference; strings without anything to escape are copied.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{}", Value::String(s.to_string()));
    }
}

impl Serialize for JsonRow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_str(&self.0);
        }
        serialize_compact(&self.0, s)
    }
}

/// Serializes valid JSON text without whitespace (a canonical row's, or `serde_json`'s output
/// for any value) as the value it holds.
///
/// An object (the usual row) is split into its members first, and each member's value encodes
/// from its own text: a serializer that looks at some fields only (key extraction) may leave the
/// others unread. The text has no whitespace, so a plain scan finds the members, in the order
/// they are written.
pub(crate) fn serialize_compact<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    if !text.starts_with('{') {
        return Text(text).serialize(s);
    }
    let mut map = s.serialize_map(None)?;
    for member in Members::of(text) {
        let (name, value) = member.ok_or_else(|| serde::ser::Error::custom("a JSON row's text is not compact JSON"))?;
        map.serialize_entry(name.as_ref(), &Text(value))?;
    }
    map.end()
}

/// Canonical JSON text that serializes as the value it holds: common scalars directly, the rest
/// token by token through `serde_json`'s parser (with the same calls that parser makes).
pub(crate) struct Text<'a>(pub(crate) &'a str);

/// Whether `serde_json` writes canonical value text `t` (through [`Text`]) as `t` itself, which a
/// caller may then copy: a string without escapes, a plain integer, `null`, `true` or `false`.
pub(crate) fn writes_as_itself(t: &str) -> bool {
    match t.as_bytes().first() {
        Some(b'"') => t.len() >= 2 && !t[1..t.len() - 1].contains('\\'),
        Some(b'-' | b'0'..=b'9') => plain_integer(t),
        _ => matches!(t, "null" | "true" | "false"),
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        match t.as_bytes().first() {
            Some(b'"') if t.len() >= 2 && !t[1..t.len() - 1].contains('\\') => s.serialize_str(&t[1..t.len() - 1]),
            Some(b'-') if plain_integer(t) => match t.parse::<i64>() {
                Ok(i) => s.serialize_i64(i),
                Err(_) => transcode(t, s),
            },
            Some(b'0'..=b'9') if plain_integer(t) => match t.parse::<u64>() {
                Ok(u) => s.serialize_u64(u),
                Err(_) => transcode(t, s),
            },
            _ => match t {
                "null" => s.serialize_unit(),
                "true" => s.serialize_bool(true),
                "false" => s.serialize_bool(false),
                _ => transcode(t, s),
            },
        }
    }
}

fn transcode<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_transcode::transcode(&mut de, s)
}

/// The members of canonical object text — names (unescaped) and value texts — in order; an item
/// is `None` (and the last) if the text is not canonical JSON after all.
struct Members<'a> {
    text: &'a str,
    /// Where the next member's name starts; `None` once the object ended.
    at: Option<usize>,
}

impl<'a> Members<'a> {
    /// The members of `text`, which starts with `{`.
    fn of(text: &'a str) -> Self {
        let at = if text.as_bytes().get(1) == Some(&b'}') { None } else { Some(1) };
        Members { text, at }
    }

    fn member(&mut self, i: usize) -> Option<(Cow<'a, str>, &'a str)> {
        let (text, b) = (self.text, self.text.as_bytes());
        let name_end = skip_string(b, i)?;
        let name = name(text, i, name_end)?;
        if b.get(name_end) != Some(&b':') {
            return None;
        }
        let value_end = skip_value(b, name_end + 1)?;
        self.at = match b.get(value_end)? {
            b',' => Some(value_end + 1),
            b'}' => None,
            _ => return None,
        };
        Some((name, text.get(name_end + 1..value_end)?))
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Option<(Cow<'a, str>, &'a str)>;
    fn next(&mut self) -> Option<Self::Item> {
        let i = self.at.take()?;
        let member = self.member(i);
        if member.is_none() {
            self.at = None;
        }
        Some(member)
    }
}

/// The end of the string starting at `b[i]` (a `"`), past its closing quote.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        match b.get(j)? {
            b'"' => return Some(j + 1),
            _ => j += 2,
        }
    }
}

/// The end of the canonical JSON value starting at `b[i]`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let (mut depth, mut j) = (0usize, i);
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']') || is_ws(*c) {
                    break;
                }
                j += 1;
            }
            Some(j)
        }
    }
}

impl<'de> Deserialize<'de> for JsonRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Value::deserialize(d).map(|v| JsonRow::new(&v))
        } else {
            // The binary form is the canonical text a `JsonRow` wrote; check that it is JSON.
            let s = String::deserialize(d)?;
            serde_json::from_str::<serde::de::IgnoredAny>(&s).map_err(serde::de::Error::custom)?;
            Ok(JsonRow(s.into_boxed_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equality_is_the_values_whatever_the_member_order() {
        let vals = [
            json!(null),
            json!(true),
            json!(1),
            json!(1.0),
            json!(-0.0),
            json!(0.0),
            json!(-2),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!("a"),
            json!("quote \" backslash \\ nul \u{0} tab \t é 𝄞"),
            json!([1, [2, {"z": 1, "a": null}]]),
            json!({"a": 1, "b": 2}),
            json!({"b": 2, "a": 1}),
            json!({"nested": {"y": [1.5, "x"], "x": {}}}),
        ];
        for a in &vals {
            for b in &vals {
                let (ra, rb) = (JsonRow::new(a), JsonRow::new(b));
                assert_eq!(ra == rb, a == b, "{a} vs {b}");
                assert_eq!(ra.cmp(&rb), rb.cmp(&ra).reverse());
            }
            // The text is JSON for the same value.
            assert_eq!(&JsonRow::new(a).value(), a, "{a}");
        }
    }

    /// Parsing text gives the row of the parsed value, for any spacing, member order, escapes
    /// and number spellings.
    #[test]
    fn parsing_text_agrees_with_the_value() {
        let texts = [
            r#"{"b": 1, "a": [1, 2.50, -0, -0.0, 1e2, 10000000000000000000, -9223372036854775808, 007]}"#,
            r#" { "\u00e9t\u00e9" : "caf\u00e9\n", "x" : {"z": null, "y": [true, false]} } "#,
            r#"{"dup": 1, "dup": 2}"#,
            r#"[{"b":1,"a":2}, "s", 3]"#,
            r#""just a string""#,
            "12",
            "-0",
            "123456789012345678901234567890",
            r#"{"n":-12,"m":0,"k":-0,"big":18446744073709551615,"neg":-9223372036854775809}"#,
        ];
        for t in texts {
            match serde_json::from_str::<Value>(t) {
                Ok(v) => {
                    let row = JsonRow::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
                    assert_eq!(row, JsonRow::new(&v), "{t}");
                    assert_eq!(row.value(), v, "{t}");
                }
                Err(_) => assert!(JsonRow::parse(t).is_err(), "{t} is not JSON"),
            }
        }
        // A member a later one of the same name replaces must still be JSON serde_json reads:
        // a number out of `f64`'s range refuses the whole text, as it does a `Value`.
        for bad in [
            "{",
            r#"{"a":}"#,
            "[1,]",
            "nul",
            r#"{"a":1} x"#,
            "",
            r#"{"a":1e999,"a":1}"#,
            r#"{"b":{"a":-1e400,"a":{}},"a":0}"#,
        ] {
            assert!(JsonRow::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// Random values, written with random spacing and member order, canonicalize by the scan
    /// exactly as through a `Value` tree; and the row serializes back to its value.
    #[test]
    fn the_scan_agrees_with_the_tree_on_random_values() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        fn gen(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> Value {
            let strings = ["", "a", "b", "é", "q\"uote", "back\\slash", "nl\n", "\u{1}", "𝄞", "}", "],"];
            match next(if depth > 2 { 6 } else { 8 }) {
                0 => Value::Null,
                1 => Value::Bool(next(2) == 0),
                2 => json!(next(1 << 40) as i64 - (1 << 39)),
                3 => json!((next(1000) as f64) / 8.0 - 60.0),
                4 => json!(strings[next(strings.len() as u64) as usize]),
                5 => json!(u64::MAX - next(3)),
                6 => Value::Array((0..next(4)).map(|_| gen(next, depth + 1)).collect()),
                _ => Value::Object(
                    (0..next(5))
                        .map(|_| (strings[next(strings.len() as u64) as usize].to_string(), gen(next, depth + 1)))
                        .collect(),
                ),
            }
        }
        fn write(v: &Value, next: &mut dyn FnMut(u64) -> u64, out: &mut String) {
            let ws = |next: &mut dyn FnMut(u64) -> u64, out: &mut String| {
                for _ in 0..next(3) {
                    out.push([' ', '\n', '\t', '\r'][next(4) as usize]);
                }
            };
            ws(next, out);
            match v {
                Value::Object(m) => {
                    let mut members: Vec<_> = m.iter().collect();
                    members.reverse();
                    out.push('{');
                    for (i, (k, v)) in members.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        ws(next, out);
                        out.push_str(&serde_json::to_string(k).unwrap());
                        ws(next, out);
                        out.push(':');
                        write(v, next, out);
                    }
                    ws(next, out);
                    out.push('}');
                }
                Value::Array(items) => {
                    out.push('[');
                    for (i, v) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write(v, next, out);
                    }
                    ws(next, out);
                    out.push(']');
                }
                other => out.push_str(&other.to_string()),
            }
            ws(next, out);
        }
        for _ in 0..2000 {
            let v = gen(&mut next, 0);
            let mut text = String::new();
            write(&v, &mut next, &mut text);
            let row = JsonRow::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(row, JsonRow::new(&v), "{text}");
            assert_eq!(serde_json::to_value(&row).unwrap(), v, "{text}");
        }
    }

    #[test]
    fn encodes_as_its_value() {
        for v in [
            json!({"id": 1, "name": "x\ny", "tags": [1.5, null, -3], "m": {"b": true, "a": "é"}}),
            json!({"neg": -7, "max": u64::MAX, "min": i64::MIN, "e": {}, "a": [], "f": false, "z": 0, "fl": -0.5}),
            json!({"na\"me\\": {"in\"ner": ["\"", "\\", "}", "]", ",", "{\"a\":1}"]}, "": ""}),
            json!([1, "two", {"three": 3}]),
            json!("a string"),
            json!(12),
            json!(null),
        ] {
            let row = JsonRow::new(&v);
            assert_eq!(serde_json::to_value(&row).unwrap(), v);
            assert_eq!(serde_json::to_string(&row).unwrap(), row.as_str());
            assert_eq!(serde_json::from_str::<JsonRow>(&serde_json::to_string(&v).unwrap()).unwrap(), row);
        }
    }

    /// Key extraction reads some fields and skips the rest: it gets the same key as from the
    /// value itself, including for names with escapes.
    #[test]
    fn fields_can_be_read_selectively() {
        use crate::key::{KeyColumns, KeyEncoding};
        let v = json!({"z": [1, {"deep": "x"}], "id": 7, "na\"me": "q", "a": {"b": 1}});
        let cols = KeyColumns::new(vec!["id".to_string(), "na\"me".to_string()], KeyEncoding::Json).unwrap();
        let from_row = cols.extract(&JsonRow::new(&v));
        let from_value = cols.extract(&v);
        assert_eq!(format!("{from_row:?}"), format!("{from_value:?}"));
        assert!(!format!("{from_row:?}").contains("invalid"), "{from_row:?}");
    }

    #[test]
    fn binary_round_trip_as_text() {
        // bincode is what timely uses between processes and what spill files hold.
        let row = JsonRow::new(&json!({"id": 1, "name": "x", "tags": [1.5, null]}));
        let bytes = bincode::serialize(&row).unwrap();
        assert_eq!(bincode::deserialize::<JsonRow>(&bytes).unwrap(), row);
        assert!(bincode::deserialize::<JsonRow>(&bincode::serialize("{not json").unwrap()).is_err());
    }
}
