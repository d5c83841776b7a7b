//! ClickHouse's `RowBinary` format, written straight from a row's `serde::Serialize`
//! implementation and driven by the column types the server reports in `system.columns`.
//!
//! This module is pure logic (no I/O): [`ChType::parse`] reads a type such as
//! `Nullable(Decimal(18, 4))`, and a [`RowBinaryEncoder`] built from a table's columns appends rows
//! as `RowBinary` to a block. Each value is checked against its column's type and converted the way
//! the server would read the same value as JSON; a value that does not fit (out of range, too many
//! decimal places, a NULL for a non-`Nullable` column, an unknown enum name, a string that is not a
//! date…) is an [`EncodeError`] naming the column and its type — nothing is truncated or wrapped.
//!
//! # Supported types
//!
//! | ClickHouse type | accepted values |
//! |---|---|
//! | `UInt8/16/32/64`, `Int8/16/32/64` | integers in range, booleans (0/1), integral floats, numeric strings |
//! | `Float32`, `Float64` | numbers, numeric strings |
//! | `Bool` | booleans, 0/1 |
//! | `Decimal(P, S)`, `Decimal32/64/128(S)` | integers, floats (by their shortest decimal text), decimal strings; at most `S` decimal places and `P` digits |
//! | `String` | strings, chars, bytes, unit enum variants |
//! | `FixedString(N)` | strings or bytes of at most `N` bytes (zero-padded) |
//! | `Date` | `YYYY-MM-DD`, or days since 1970-01-01 |
//! | `DateTime`, `DateTime('tz')` | Unix seconds; `YYYY-MM-DD[ hh:mm:ss]` (also with `T`) with a `Z` or `±hh:mm` offset, or without one when the column's time zone is UTC |
//! | `UUID` | the usual hyphenated text |
//! | `Enum8`, `Enum16` | a member's name, or its number |
//! | `Nullable(T)` | `None`/unit as NULL, or a value of `T` |
//! | `LowCardinality(T)` | as `T` (the same bytes in `RowBinary`) |
//! | `Array(T)` | sequences of `T` |
//!
//! Any other type (`Tuple`, `Map`, `IPv4`, `DateTime64`, 128/256-bit integers, …) makes
//! [`RowBinaryEncoder::new`] return the columns it cannot write; the sink then writes that table
//! as `JSONEachRow`, as it always did, rather than refusing it — slower, but nothing that worked
//! stops working.
//!
//! # Columns of a block
//!
//! A `RowBinary` insert names its columns (`INSERT INTO t (a, b) FORMAT RowBinary`) and every row
//! carries all of them, in that order. The encoder takes the column list from the fields of the
//! first row, in the order the row serializes them, so a struct's fields go straight into the block
//! without reordering. A row whose fields come in another order is reordered; a row with another
//! *set* of fields (a map row with a field left out) is not written, and
//! [`RowBinaryEncoder::encode`] returns its fields instead: the caller ends the block and starts a
//! new one with those columns ([`RowBinaryEncoder::set_columns`]), so columns a row leaves out get
//! the server's default, as they would in `JSONEachRow`.

use crate::encode::civil;
pub use crate::encode::civil::days_from_civil;
use crate::encode::fields::{visit_fields, FieldVisitor, Shape};
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// A ClickHouse column type the encoder can write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChType {
    /// `UInt8`.
    UInt8,
    /// `UInt16`.
    UInt16,
    /// `UInt32`.
    UInt32,
    /// `UInt64`.
    UInt64,
    /// `Int8`.
    Int8,
    /// `Int16`.
    Int16,
    /// `Int32`.
    Int32,
    /// `Int64`.
    Int64,
    /// `Float32`.
    Float32,
    /// `Float64`.
    Float64,
    /// `Bool` (one byte, 0 or 1).
    Bool,
    /// `String`.
    String,
    /// `FixedString(N)`.
    FixedString(usize),
    /// `Date`: days since 1970-01-01 as a `UInt16`.
    Date,
    /// `DateTime` / `DateTime('tz')`: Unix seconds as a `UInt32`. `utc` is true when the column's
    /// time zone (its own, or the server's) is UTC, so text without an offset can be converted.
    DateTime {
        /// The column's own time zone, if the type names one.
        tz: Option<String>,
        /// Whether text without an offset may be read as UTC.
        utc: bool,
    },
    /// `Decimal(P, S)`: a 4, 8 or 16 byte integer scaled by `10^S`.
    Decimal {
        /// Total digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
    /// `UUID`: two little-endian `UInt64` halves, high half first.
    Uuid,
    /// `Enum8('a' = 1, …)`.
    Enum8(Vec<(String, i8)>),
    /// `Enum16('a' = 1, …)`.
    Enum16(Vec<(String, i16)>),
    /// `Nullable(T)`: a 1 (NULL) or 0 byte, then `T` if not NULL.
    Nullable(Box<ChType>),
    /// `LowCardinality(T)`: the same bytes as `T`.
    LowCardinality(Box<ChType>),
    /// `Array(T)`: a LEB128 length, then the elements.
    Array(Box<ChType>),
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "UCT" | "Etc/UCT" | "Universal" | "Etc/Universal" | "Zulu")
}

/// Splits `s` at top-level commas (outside quotes and parentheses).
fn split_args(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut quoted, mut escaped, mut start) = (Vec::new(), 0i32, false, false, 0);
    for (i, ch) in s.char_indices() {
        if quoted {
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => quoted = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '\'' => quoted = true,
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

/// Reads a quoted SQL string literal (`'a\'b'`) at the start of `s`; returns it and the rest.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('\'')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '\'' => return Some((out, &s[i + 2..])),
            _ => out.push(c),
        }
    }
    None
}

fn enum_members<T: std::str::FromStr>(args: &str) -> Option<Vec<(String, T)>> {
    split_args(args)
        .into_iter()
        .map(|m| {
            let (name, rest) = quoted(m)?;
            let n = rest.trim().strip_prefix('=')?.trim().parse().ok()?;
            Some((name, n))
        })
        .collect()
}

impl ChType {
    /// Parses a type as `system.columns` spells it. `server_tz` is the server's time zone
    /// (`SELECT timezone()`), which `DateTime` columns without their own use. Unsupported types
    /// are an error carrying the (innermost) type that is not supported.
    ///
    /// ```
    /// use differential_sinks::connectors::clickhouse::rowbinary::ChType;
    /// assert_eq!(
    ///     ChType::parse("Nullable(Decimal(18, 4))", "UTC").unwrap(),
    ///     ChType::Nullable(Box::new(ChType::Decimal { precision: 18, scale: 4 }))
    /// );
    /// assert!(ChType::parse("Tuple(UInt8, String)", "UTC").is_err());
    /// ```
    pub fn parse(ty: &str, server_tz: &str) -> Result<ChType, String> {
        let ty = ty.trim();
        let (name, args) = match ty.find('(') {
            Some(i) if ty.ends_with(')') => (&ty[..i], Some(&ty[i + 1..ty.len() - 1])),
            _ => (ty, None),
        };
        let unsupported = || Err(ty.to_string());
        let scale = |a: &str| a.trim().parse::<u32>().map_err(|_| ty.to_string());
        Ok(match (name, args) {
            ("UInt8", None) => ChType::UInt8,
            ("UInt16", None) => ChType::UInt16,
            ("UInt32", None) => ChType::UInt32,
            ("UInt64", None) => ChType::UInt64,
            ("Int8", None) => ChType::Int8,
            ("Int16", None) => ChType::Int16,
            ("Int32", None) => ChType::Int32,
            ("Int64", None) => ChType::Int64,
            ("Float32", None) => ChType::Float32,
            ("Float64", None) => ChType::Float64,
            ("Bool", None) => ChType::Bool,
            ("String", None) => ChType::String,
            ("FixedString", Some(n)) => ChType::FixedString(n.trim().parse().map_err(|_| ty.to_string())?),
            ("Date", None) => ChType::Date,
            ("DateTime", None) => ChType::DateTime { tz: None, utc: is_utc(server_tz) },
            ("DateTime", Some(a)) => {
                let (tz, rest) = quoted(a.trim()).ok_or_else(|| ty.to_string())?;
                if !rest.trim().is_empty() {
                    return unsupported();
                }
                ChType::DateTime { utc: is_utc(&tz), tz: Some(tz) }
            }
            ("Decimal", Some(a)) => match split_args(a)[..] {
                [p, s] => {
                    let (precision, scale) = (scale(p)?, scale(s)?);
                    if precision == 0 || precision > 38 || scale > precision {
                        return unsupported();
                    }
                    ChType::Decimal { precision, scale }
                }
                _ => return unsupported(),
            },
            ("Decimal32", Some(s)) => ChType::Decimal { precision: 9, scale: scale(s)? },
            ("Decimal64", Some(s)) => ChType::Decimal { precision: 18, scale: scale(s)? },
            ("Decimal128", Some(s)) => ChType::Decimal { precision: 38, scale: scale(s)? },
            ("UUID", None) => ChType::Uuid,
            ("Enum8", Some(a)) => ChType::Enum8(enum_members(a).ok_or_else(|| ty.to_string())?),
            ("Enum16", Some(a)) => ChType::Enum16(enum_members(a).ok_or_else(|| ty.to_string())?),
            ("Nullable", Some(a)) => ChType::Nullable(Box::new(ChType::parse(a, server_tz)?)),
            ("LowCardinality", Some(a)) => ChType::LowCardinality(Box::new(ChType::parse(a, server_tz)?)),
            ("Array", Some(a)) => ChType::Array(Box::new(ChType::parse(a, server_tz)?)),
            _ => return unsupported(),
        })
    }

    /// The type without `LowCardinality` wrappers (which do not change the bytes).
    fn plain(&self) -> &ChType {
        match self {
            ChType::LowCardinality(t) => t.plain(),
            t => t,
        }
    }
}

impl fmt::Display for ChType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members = |f: &mut fmt::Formatter<'_>, kind: &str, m: &mut dyn Iterator<Item = (&String, i64)>| {
            write!(f, "{kind}(")?;
            for (i, (name, n)) in m.enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}'{}' = {n}", name.replace('\\', "\\\\").replace('\'', "\\'"))?;
            }
            write!(f, ")")
        };
        match self {
            ChType::UInt8 => write!(f, "UInt8"),
            ChType::UInt16 => write!(f, "UInt16"),
            ChType::UInt32 => write!(f, "UInt32"),
            ChType::UInt64 => write!(f, "UInt64"),
            ChType::Int8 => write!(f, "Int8"),
            ChType::Int16 => write!(f, "Int16"),
            ChType::Int32 => write!(f, "Int32"),
            ChType::Int64 => write!(f, "Int64"),
            ChType::Float32 => write!(f, "Float32"),
            ChType::Float64 => write!(f, "Float64"),
            ChType::Bool => write!(f, "Bool"),
            ChType::String => write!(f, "String"),
            ChType::FixedString(n) => write!(f, "FixedString({n})"),
            ChType::Date => write!(f, "Date"),
            ChType::DateTime { tz: None, .. } => write!(f, "DateTime"),
            ChType::DateTime { tz: Some(tz), .. } => write!(f, "DateTime('{tz}')"),
            ChType::Decimal { precision, scale } => write!(f, "Decimal({precision}, {scale})"),
            ChType::Uuid => write!(f, "UUID"),
            ChType::Enum8(m) => members(f, "Enum8", &mut m.iter().map(|(s, n)| (s, i64::from(*n)))),
            ChType::Enum16(m) => members(f, "Enum16", &mut m.iter().map(|(s, n)| (s, i64::from(*n)))),
            ChType::Nullable(t) => write!(f, "Nullable({t})"),
            ChType::LowCardinality(t) => write!(f, "LowCardinality({t})"),
            ChType::Array(t) => write!(f, "Array({t})"),
        }
    }
}

/// Why a row could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A value does not fit its column.
    Value {
        /// The column.
        column: String,
        /// Its ClickHouse type.
        ty: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The row has a field that is not a column the encoder may write.
    UnknownColumn(String),
    /// The row is not a struct or map, or a field name is not a string.
    Row(String),
    /// The row's fields differ from the block's columns (internal: sends the row the slow way).
    Mismatch,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Value { column, ty, reason } => write!(f, "column `{column}` ({ty}): {reason}"),
            EncodeError::UnknownColumn(c) => write!(f, "the row has field `{c}`, which is not a column of the table"),
            EncodeError::Row(m) => f.write_str(m),
            EncodeError::Mismatch => f.write_str("the row's fields differ from the block's columns"),
        }
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError::Row(msg.to_string())
    }
}

/// One column the encoder may write.
#[derive(Clone, Debug)]
struct Column {
    name: String,
    ty: ChType,
}

/// What [`RowBinaryEncoder::encode`] did with a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoded {
    /// The row was appended.
    Written,
    /// The row's fields (column indices, in the row's order) differ from the block's columns; nothing
    /// was appended. Start a block with these columns and encode the row again.
    Columns(Vec<usize>),
}

/// Appends rows as `RowBinary`, column types from the table.
#[derive(Clone, Debug)]
pub struct RowBinaryEncoder {
    columns: Vec<Column>,
    /// The block's columns (indices into `columns`), in the order rows write them.
    list: Vec<usize>,
    /// Where each column sits in `list`, or `usize::MAX` if it is not in it.
    position: Vec<usize>,
    scratch: Vec<u8>,
    slots: Vec<Option<(usize, usize)>>,
    order: Vec<usize>,
}

impl RowBinaryEncoder {
    /// An encoder for rows whose fields are some of `columns` (`(name, type)` as in
    /// `system.columns`, without the columns the sink fills itself). Returns the `(name, type)` of
    /// each column whose type it cannot write if there are any.
    pub fn new<'a>(
        columns: impl IntoIterator<Item = (&'a str, &'a str)>,
        server_tz: &str,
    ) -> Result<Self, Vec<(String, String)>> {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for (name, ty) in columns {
            match ChType::parse(ty, server_tz) {
                Ok(t) => ok.push(Column { name: name.to_string(), ty: t }),
                Err(inner) => bad.push((name.to_string(), if inner == ty { inner } else { format!("{ty} ({inner})") })),
            }
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        let n = ok.len();
        Ok(RowBinaryEncoder {
            columns: ok,
            list: Vec::new(),
            position: vec![usize::MAX; n],
            scratch: Vec::new(),
            slots: vec![None; n],
            order: Vec::new(),
        })
    }

    /// The name of column `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.columns[i].name
    }

    /// The block's columns, in the order rows are written.
    pub fn columns(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.list.iter().map(|&i| self.columns[i].name.as_str())
    }

    /// Sets the block's columns (as [`Encoded::Columns`] returned them).
    pub fn set_columns(&mut self, list: Vec<usize>) {
        self.position.iter_mut().for_each(|p| *p = usize::MAX);
        for (p, &i) in list.iter().enumerate() {
            self.position[i] = p;
        }
        self.list = list;
    }

    /// Appends `row` to `out` in the block's columns, or says which columns it has instead. On an
    /// error nothing is appended.
    pub fn encode<R: Serialize + ?Sized>(&mut self, row: &R, out: &mut Vec<u8>) -> Result<Encoded, EncodeError> {
        let start = out.len();
        if !self.list.is_empty() {
            let r = visit_fields(row, &mut DirectFields { enc: self, out: &mut *out, next: 0 });
            match r {
                Ok(()) => return Ok(Encoded::Written),
                Err(EncodeError::Mismatch) => out.truncate(start),
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        // The slow way: each field into its slot, then the slots in the block's order.
        self.scratch.clear();
        self.order.clear();
        self.slots.iter_mut().for_each(|s| *s = None);
        visit_fields(row, &mut SlotFields { enc: self })?;
        let same = self.order.len() == self.list.len() && self.order.iter().all(|&i| self.position[i] != usize::MAX);
        if !same {
            return Ok(Encoded::Columns(self.order.clone()));
        }
        for &i in &self.list {
            let (a, b) = self.slots[i].expect("every column of the block is in the row");
            out.extend_from_slice(&self.scratch[a..b]);
        }
        Ok(Encoded::Written)
    }

    fn lookup(&self, name: &str) -> Result<usize, EncodeError> {
        self.columns.iter().position(|c| c.name == name).ok_or_else(|| EncodeError::UnknownColumn(name.to_string()))
    }
}

/// Appends `n` as unsigned LEB128 (string and array lengths).
#[inline]
pub fn put_leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A row's fields written straight into the block (fields must come in the block's order).
struct DirectFields<'a> {
    enc: &'a RowBinaryEncoder,
    out: &'a mut Vec<u8>,
    next: usize,
}

impl FieldVisitor for DirectFields<'_> {
    type Error = EncodeError;
    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), EncodeError> {
        let Some(&i) = self.enc.list.get(self.next) else { return Err(EncodeError::Mismatch) };
        let col = &self.enc.columns[i];
        if col.name != name {
            return Err(EncodeError::Mismatch);
        }
        self.next += 1;
        value.serialize(ValueSer { col, ty: &col.ty, out: self.out })
    }
    fn not_a_row(&self, shape: Shape) -> EncodeError {
        not_a_row(shape)
    }
    fn end(&mut self) -> Result<(), EncodeError> {
        if self.next == self.enc.list.len() {
            Ok(())
        } else {
            Err(EncodeError::Mismatch)
        }
    }
}

/// A row's fields each into its slot.
struct SlotFields<'a> {
    enc: &'a mut RowBinaryEncoder,
}

impl FieldVisitor for SlotFields<'_> {
    type Error = EncodeError;
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), EncodeError> {
        let i = self.enc.lookup(name)?;
        if self.enc.slots[i].is_some() {
            return Err(EncodeError::Row(format!("the row has field `{name}` twice")));
        }
        let a = self.enc.scratch.len();
        let col = &self.enc.columns[i];
        value.serialize(ValueSer { col, ty: &col.ty, out: &mut self.enc.scratch })?;
        self.enc.slots[i] = Some((a, self.enc.scratch.len()));
        self.enc.order.push(i);
        Ok(())
    }
    fn not_a_row(&self, shape: Shape) -> EncodeError {
        not_a_row(shape)
    }
}

fn not_a_row(shape: Shape) -> EncodeError {
    let what = match shape {
        Shape::NonStringKey => return EncodeError::Row("a row's field names must be strings".into()),
        Shape::Char | Shape::UnitVariant => "a string",
        Shape::Unit | Shape::UnitStruct => "null",
        Shape::TupleStruct => "a tuple",
        other => other.describe(),
    };
    EncodeError::Row(format!("rows for ClickHouse must serialize as structs or maps (JSON objects), not {what}"))
}

/// One value into a column of type `ty` (`col` names the column in errors).
struct ValueSer<'a> {
    col: &'a Column,
    ty: &'a ChType,
    out: &'a mut Vec<u8>,
}

/// A number as the serializer received it.
#[derive(Clone, Copy, Debug)]
enum Num {
    I(i64),
    U(u64),
    I128(i128),
    F(f64),
    F32(f32),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::I(v) => write!(f, "{v}"),
            Num::U(v) => write!(f, "{v}"),
            Num::I128(v) => write!(f, "{v}"),
            Num::F(v) => write!(f, "{v:?}"),
            Num::F32(v) => write!(f, "{v:?}"),
        }
    }
}

impl Num {
    /// The exact integer value, if the number is one.
    fn integer(self) -> Option<i128> {
        match self {
            Num::I(v) => Some(i128::from(v)),
            Num::U(v) => Some(i128::from(v)),
            Num::I128(v) => Some(v),
            Num::F(v) => (v.fract() == 0.0 && v.abs() < 1.7e38).then_some(v as i128),
            Num::F32(v) => (v.fract() == 0.0 && v.abs() < 1.7e38).then_some(v as i128),
        }
    }
    fn float(self) -> f64 {
        match self {
            Num::I(v) => v as f64,
            Num::U(v) => v as f64,
            Num::I128(v) => v as f64,
            Num::F(v) => v,
            Num::F32(v) => f64::from(v),
        }
    }
}

/// `YYYY-MM-DD` as days since the epoch.
fn parse_date(s: &str) -> Option<i64> {
    civil::parse_date(s).ok()
}

/// `YYYY-MM-DD[( |T)hh:mm:ss][Z|±hh:mm]` as Unix seconds; `Err` names what is missing. Text
/// without an offset is read as UTC only if `utc`. A fraction of a second is refused: `DateTime`
/// holds whole seconds.
fn parse_datetime(s: &str, utc: bool) -> Result<i64, &'static str> {
    const BAD: &str = "is not a date-time (YYYY-MM-DD hh:mm:ss, optionally with T, Z or ±hh:mm)";
    let dt = civil::parse_datetime(s).map_err(|_| BAD)?;
    if !dt.fraction.is_empty() {
        return Err(BAD);
    }
    match dt.offset {
        Some(_) => Ok(dt.utc_seconds()),
        None if utc => Ok(dt.local_seconds()),
        None => Err("has no time zone offset, and the column's time zone is not UTC: add Z or ±hh:mm, or send Unix \
                     seconds"),
    }
}

/// An exact decimal `text` as an integer scaled by `10^scale`, or why not.
fn parse_decimal(text: &str, scale: u32) -> Result<i128, String> {
    civil::parse_decimal(text, scale).map_err(|e| e.to_string())
}

/// `8-4-4-4-12` hex digits (or 32 without hyphens) as the 128-bit value.
fn parse_uuid(s: &str) -> Option<u128> {
    let hex: String = match s.len() {
        36 => {
            let b = s.as_bytes();
            if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
                return None;
            }
            s.chars().filter(|&c| c != '-').collect()
        }
        32 => s.to_string(),
        _ => return None,
    };
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| u128::from_str_radix(&hex, 16).ok())?
}

impl ValueSer<'_> {
    fn err(&self, reason: impl Into<String>) -> EncodeError {
        EncodeError::Value { column: self.col.name.clone(), ty: self.col.ty.to_string(), reason: reason.into() }
    }

    fn wrong(&self, what: &str) -> EncodeError {
        self.err(format!("{what} cannot be written to a {} column", self.ty))
    }

    /// Writes `n` into an integer column of `bytes` bytes in `[lo, hi]`.
    #[inline]
    fn int(self, n: Num, lo: i128, hi: i128, bytes: usize) -> Result<(), EncodeError> {
        match n.integer() {
            Some(v) if v >= lo && v <= hi => {
                self.out.extend_from_slice(&v.to_le_bytes()[..bytes]);
                Ok(())
            }
            Some(_) => Err(self.err(format!("{n} is out of range"))),
            None => Err(self.err(format!("{n} is not an integer"))),
        }
    }

    fn decimal_bytes(&self, precision: u32) -> usize {
        match precision {
            0..=9 => 4,
            10..=18 => 8,
            _ => 16,
        }
    }

    fn decimal(self, v: Result<i128, String>, precision: u32) -> Result<(), EncodeError> {
        let v = v.map_err(|e| self.err(e))?;
        if v.unsigned_abs() >= 10u128.pow(precision) {
            return Err(self.err(format!("{v} (unscaled) has more than {precision} digits")));
        }
        let n = self.decimal_bytes(precision);
        self.out.extend_from_slice(&v.to_le_bytes()[..n]);
        Ok(())
    }

    #[inline]
    fn number(self, n: Num) -> Result<(), EncodeError> {
        match self.ty {
            ChType::UInt8 => self.int(n, 0, u8::MAX.into(), 1),
            ChType::UInt16 => self.int(n, 0, u16::MAX.into(), 2),
            ChType::UInt32 => self.int(n, 0, u32::MAX.into(), 4),
            ChType::UInt64 => self.int(n, 0, u64::MAX.into(), 8),
            ChType::Int8 => self.int(n, i8::MIN.into(), i8::MAX.into(), 1),
            ChType::Int16 => self.int(n, i16::MIN.into(), i16::MAX.into(), 2),
            ChType::Int32 => self.int(n, i32::MIN.into(), i32::MAX.into(), 4),
            ChType::Int64 => self.int(n, i64::MIN.into(), i64::MAX.into(), 8),
            ChType::Bool => self.int(n, 0, 1, 1),
            ChType::Float64 => {
                self.out.extend_from_slice(&n.float().to_le_bytes());
                Ok(())
            }
            ChType::Float32 => {
                let v = match n {
                    Num::F32(v) => v,
                    _ => n.float() as f32,
                };
                if v.is_infinite() && n.float().is_finite() {
                    return Err(self.err(format!("{n} is out of range")));
                }
                self.out.extend_from_slice(&v.to_le_bytes());
                Ok(())
            }
            ChType::Decimal { precision, scale } => {
                let (p, s) = (*precision, *scale);
                let v = match n {
                    Num::F(v) if v.is_finite() => parse_decimal(&v.to_string(), s),
                    Num::F32(v) if v.is_finite() => parse_decimal(&v.to_string(), s),
                    Num::F(_) | Num::F32(_) => Err(format!("{n} is not a finite number")),
                    _ => n
                        .integer()
                        .and_then(|i| i.checked_mul(10i128.pow(s)))
                        .ok_or_else(|| format!("{n} is too large")),
                };
                self.decimal(v, p)
            }
            ChType::Date => self.int(n, 0, u16::MAX.into(), 2),
            ChType::DateTime { .. } => self.int(n, 0, u32::MAX.into(), 4),
            ChType::Enum8(m) => match n.integer() {
                Some(v) if m.iter().any(|(_, x)| i128::from(*x) == v) => self.int(n, i8::MIN.into(), i8::MAX.into(), 1),
                _ => Err(self.err(format!("{n} is not a value of the enum"))),
            },
            ChType::Enum16(m) => match n.integer() {
                Some(v) if m.iter().any(|(_, x)| i128::from(*x) == v) => {
                    self.int(n, i16::MIN.into(), i16::MAX.into(), 2)
                }
                _ => Err(self.err(format!("{n} is not a value of the enum"))),
            },
            ChType::Nullable(t) => {
                self.out.push(0);
                ValueSer { col: self.col, ty: t, out: self.out }.number(n)
            }
            ChType::LowCardinality(t) => ValueSer { col: self.col, ty: t, out: self.out }.number(n),
            _ => Err(self.wrong(&format!("the number {n}"))),
        }
    }

    #[inline]
    fn text(self, s: &str) -> Result<(), EncodeError> {
        match self.ty {
            ChType::String => {
                put_leb128(self.out, s.len() as u64);
                self.out.extend_from_slice(s.as_bytes());
                Ok(())
            }
            ChType::FixedString(n) => self.fixed(s.as_bytes(), *n),
            ChType::Date => match parse_date(s) {
                Some(d) if (0..=i64::from(u16::MAX)).contains(&d) => {
                    self.out.extend_from_slice(&(d as u16).to_le_bytes());
                    Ok(())
                }
                Some(_) => Err(self.err(format!("{s} is outside the Date range (1970-01-01 to 2149-06-06)"))),
                None => Err(self.err(format!("`{s}` is not a date (YYYY-MM-DD)"))),
            },
            ChType::DateTime { utc, .. } => match parse_datetime(s, *utc) {
                Ok(t) if (0..=i64::from(u32::MAX)).contains(&t) => {
                    self.out.extend_from_slice(&(t as u32).to_le_bytes());
                    Ok(())
                }
                Ok(_) => Err(self.err(format!("{s} is outside the DateTime range (1970 to 2106)"))),
                Err(why) => Err(self.err(format!("`{s}` {why}"))),
            },
            ChType::Uuid => match parse_uuid(s) {
                Some(u) => {
                    self.out.extend_from_slice(&((u >> 64) as u64).to_le_bytes());
                    self.out.extend_from_slice(&(u as u64).to_le_bytes());
                    Ok(())
                }
                None => Err(self.err(format!("`{s}` is not a UUID"))),
            },
            ChType::Enum8(m) => match m.iter().find(|(name, _)| name == s) {
                Some((_, v)) => {
                    self.out.push(*v as u8);
                    Ok(())
                }
                None => Err(self.err(format!("`{s}` is not a member of the enum"))),
            },
            ChType::Enum16(m) => match m.iter().find(|(name, _)| name == s) {
                Some((_, v)) => {
                    self.out.extend_from_slice(&v.to_le_bytes());
                    Ok(())
                }
                None => Err(self.err(format!("`{s}` is not a member of the enum"))),
            },
            ChType::Decimal { precision, scale } => {
                let (p, sc) = (*precision, *scale);
                self.decimal(parse_decimal(s.trim(), sc), p)
            }
            ChType::Float32 | ChType::Float64 => match s.trim().parse::<f64>() {
                Ok(v) if matches!(self.ty, ChType::Float32) => match s.trim().parse::<f32>() {
                    Ok(f) => self.number(Num::F32(f)),
                    Err(_) => self.number(Num::F(v)),
                },
                Ok(v) => self.number(Num::F(v)),
                Err(_) => Err(self.err(format!("`{s}` is not a number"))),
            },
            ChType::UInt8
            | ChType::UInt16
            | ChType::UInt32
            | ChType::UInt64
            | ChType::Int8
            | ChType::Int16
            | ChType::Int32
            | ChType::Int64 => match s.trim().parse::<i128>() {
                Ok(v) => self.number(Num::I128(v)),
                Err(_) => Err(self.err(format!("`{s}` is not an integer"))),
            },
            ChType::Nullable(t) => {
                self.out.push(0);
                ValueSer { col: self.col, ty: t, out: self.out }.text(s)
            }
            ChType::LowCardinality(t) => ValueSer { col: self.col, ty: t, out: self.out }.text(s),
            _ => Err(self.wrong("a string")),
        }
    }

    fn fixed(self, b: &[u8], n: usize) -> Result<(), EncodeError> {
        if b.len() > n {
            return Err(self.err(format!("{} bytes do not fit in {n}", b.len())));
        }
        self.out.extend_from_slice(b);
        self.out.resize(self.out.len() + n - b.len(), 0);
        Ok(())
    }

    fn null(self) -> Result<(), EncodeError> {
        match self.ty.plain() {
            ChType::Nullable(_) => {
                self.out.push(1);
                Ok(())
            }
            _ => Err(self.err("NULL cannot be written to a column that is not Nullable")),
        }
    }
}

impl<'a> ser::Serializer for ValueSer<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = ArraySer<'a>;
    type SerializeTuple = ArraySer<'a>;
    type SerializeTupleStruct = ArraySer<'a>;
    type SerializeTupleVariant = Impossible<(), EncodeError>;
    type SerializeMap = Impossible<(), EncodeError>;
    type SerializeStruct = Impossible<(), EncodeError>;
    type SerializeStructVariant = Impossible<(), EncodeError>;

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        let inner = match self.ty.plain() {
            ChType::Nullable(t) => t.plain(),
            t => t,
        };
        match inner {
            ChType::UInt8
            | ChType::UInt16
            | ChType::UInt32
            | ChType::UInt64
            | ChType::Int8
            | ChType::Int16
            | ChType::Int32
            | ChType::Int64
            | ChType::Bool => self.number(Num::U(u64::from(v))),
            _ => Err(self.wrong("a boolean")),
        }
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.number(Num::I(v.into()))
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.number(Num::I(v.into()))
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.number(Num::I(v.into()))
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        self.number(Num::I(v))
    }
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        self.number(Num::I128(v))
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.number(Num::U(v.into()))
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        self.number(Num::U(v.into()))
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        self.number(Num::U(v.into()))
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        self.number(Num::U(v))
    }
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        match i128::try_from(v) {
            Ok(v) => self.number(Num::I128(v)),
            Err(_) => Err(self.err(format!("{v} is out of range"))),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.number(Num::F32(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        self.number(Num::F(v))
    }
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        self.text(v.encode_utf8(&mut [0; 4]))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.text(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        match self.ty {
            ChType::String => {
                put_leb128(self.out, v.len() as u64);
                self.out.extend_from_slice(v);
                Ok(())
            }
            ChType::FixedString(n) => {
                let n = *n;
                self.fixed(v, n)
            }
            ChType::Nullable(t) => {
                self.out.push(0);
                ValueSer { col: self.col, ty: t, out: self.out }.serialize_bytes(v)
            }
            ChType::LowCardinality(t) => ValueSer { col: self.col, ty: t, out: self.out }.serialize_bytes(v),
            _ => Err(self.wrong("bytes")),
        }
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.null()
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), EncodeError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.null()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), EncodeError> {
        self.null()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), EncodeError> {
        self.text(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), EncodeError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), EncodeError> {
        Err(self.wrong("an enum variant with data"))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<ArraySer<'a>, EncodeError> {
        let mut ty = self.ty.plain();
        if let ChType::Nullable(t) = ty {
            self.out.push(0);
            ty = t.plain();
        }
        let ChType::Array(elem) = ty else { return Err(self.wrong("a sequence")) };
        let start = self.out.len();
        match len {
            Some(n) => put_leb128(self.out, n as u64),
            // The length goes in front: reserve the widest LEB128 and fix it up at the end.
            None => self.out.extend_from_slice(&[0; 10]),
        }
        Ok(ArraySer { col: self.col, elem, out: self.out, start, expected: len, count: 0 })
    }
    fn serialize_tuple(self, len: usize) -> Result<ArraySer<'a>, EncodeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<ArraySer<'a>, EncodeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, EncodeError> {
        Err(self.wrong("an enum variant with data"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, EncodeError> {
        Err(self.wrong("a map"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, EncodeError> {
        Err(self.wrong("a struct"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, EncodeError> {
        Err(self.wrong("an enum variant with data"))
    }
}

/// The elements of an `Array(T)` value.
struct ArraySer<'a> {
    col: &'a Column,
    elem: &'a ChType,
    out: &'a mut Vec<u8>,
    start: usize,
    expected: Option<usize>,
    count: usize,
}

impl ArraySer<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), EncodeError> {
        self.count += 1;
        v.serialize(ValueSer { col: self.col, ty: self.elem, out: self.out })
    }
    fn finish(self) -> Result<(), EncodeError> {
        match self.expected {
            Some(n) if n == self.count => Ok(()),
            Some(n) => Err(EncodeError::Row(format!(
                "column `{}`: a sequence announced {n} elements and had {}",
                self.col.name, self.count
            ))),
            None => {
                let mut len = Vec::with_capacity(10);
                put_leb128(&mut len, self.count as u64);
                self.out.splice(self.start..self.start + 10, len);
                Ok(())
            }
        }
    }
}

macro_rules! array_impl {
    ($tr:ident, $m:ident) => {
        impl ser::$tr for ArraySer<'_> {
            type Ok = ();
            type Error = EncodeError;
            fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), EncodeError> {
                self.element(v)
            }
            fn end(self) -> Result<(), EncodeError> {
                self.finish()
            }
        }
    };
}
array_impl!(SerializeSeq, serialize_element);
array_impl!(SerializeTuple, serialize_element);
array_impl!(SerializeTupleStruct, serialize_field);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// Encodes `v` as the single column `c` of type `ty`.
    fn enc<T: Serialize>(ty: &str, v: T) -> Result<Vec<u8>, EncodeError> {
        #[derive(Serialize)]
        struct R<T> {
            c: T,
        }
        let mut e = RowBinaryEncoder::new([("c", ty)], "UTC").unwrap();
        e.set_columns(vec![0]);
        let mut out = Vec::new();
        assert_eq!(e.encode(&R { c: v }, &mut out)?, Encoded::Written);
        Ok(out)
    }

    fn reason(r: Result<Vec<u8>, EncodeError>) -> String {
        match r {
            Err(EncodeError::Value { column, reason, .. }) => {
                assert_eq!(column, "c");
                reason
            }
            other => panic!("expected a value error, got {other:?}"),
        }
    }

    #[test]
    fn parses_types() {
        let p = |s: &str| ChType::parse(s, "UTC");
        assert_eq!(p("UInt8"), Ok(ChType::UInt8));
        assert_eq!(p("Decimal32(3)"), Ok(ChType::Decimal { precision: 9, scale: 3 }));
        assert_eq!(p("Decimal(38, 10)"), Ok(ChType::Decimal { precision: 38, scale: 10 }));
        assert_eq!(p("FixedString(16)"), Ok(ChType::FixedString(16)));
        assert_eq!(
            p("Enum8('a' = 1, 'it\\'s, ok' = -2)"),
            Ok(ChType::Enum8(vec![("a".into(), 1), ("it's, ok".into(), -2)]))
        );
        assert_eq!(
            p("DateTime('Europe/Berlin')"),
            Ok(ChType::DateTime { tz: Some("Europe/Berlin".into()), utc: false })
        );
        assert_eq!(ChType::parse("DateTime", "Etc/UTC"), Ok(ChType::DateTime { tz: None, utc: true }));
        assert_eq!(ChType::parse("DateTime", "Asia/Tokyo"), Ok(ChType::DateTime { tz: None, utc: false }));
        assert_eq!(
            p("Array(Nullable(String))"),
            Ok(ChType::Array(Box::new(ChType::Nullable(Box::new(ChType::String)))))
        );
        assert_eq!(p("Array(Tuple(UInt8, String))"), Err("Tuple(UInt8, String)".into()));
        for bad in ["IPv4", "DateTime64(3)", "Int128", "Map(String, UInt8)", "Decimal(40, 2)", "Nothing"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        for s in ["Nullable(Decimal(18, 4))", "Enum16('x' = 300)", "LowCardinality(String)", "DateTime('UTC')"] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn integers_are_little_endian_and_range_checked() {
        assert_eq!(enc("UInt8", 200u8).unwrap(), [200]);
        assert_eq!(enc("UInt16", 0x1234u16).unwrap(), [0x34, 0x12]);
        assert_eq!(enc("UInt32", 0x1234_5678u32).unwrap(), [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(enc("UInt64", u64::MAX).unwrap(), [0xff; 8]);
        assert_eq!(enc("Int8", -1i8).unwrap(), [0xff]);
        assert_eq!(enc("Int16", -2i64).unwrap(), [0xfe, 0xff]);
        assert_eq!(enc("Int32", i32::MIN).unwrap(), [0, 0, 0, 0x80]);
        assert_eq!(enc("Int64", -1i64).unwrap(), [0xff; 8]);
        assert_eq!(enc("UInt32", true).unwrap(), [1, 0, 0, 0]);
        assert_eq!(enc("UInt16", 7.0f64).unwrap(), [7, 0]);
        assert_eq!(enc("Int32", "-12").unwrap(), (-12i32).to_le_bytes());
        assert_eq!(reason(enc("UInt8", 256u32)), "256 is out of range");
        assert_eq!(reason(enc("UInt32", -1i32)), "-1 is out of range");
        assert_eq!(reason(enc("Int64", u64::MAX)), "18446744073709551615 is out of range");
        assert_eq!(reason(enc("Int8", 1.5f64)), "1.5 is not an integer");
        assert_eq!(reason(enc("UInt16", "x1")), "`x1` is not an integer");
        assert_eq!(enc("Bool", true).unwrap(), [1]);
        assert_eq!(reason(enc("Bool", 2u8)), "2 is out of range");
    }

    #[test]
    fn floats() {
        assert_eq!(enc("Float64", 1.5f64).unwrap(), 1.5f64.to_le_bytes());
        assert_eq!(enc("Float64", 3u8).unwrap(), 3f64.to_le_bytes());
        assert_eq!(enc("Float32", 0.1f32).unwrap(), 0.1f32.to_le_bytes());
        assert_eq!(enc("Float32", 0.1f64).unwrap(), 0.1f32.to_le_bytes());
        assert_eq!(enc("Float32", "0.1").unwrap(), 0.1f32.to_le_bytes());
        assert_eq!(enc("Float64", f64::NEG_INFINITY).unwrap(), f64::NEG_INFINITY.to_le_bytes());
        assert_eq!(reason(enc("Float32", 1e300f64)), "1e300 is out of range");
        assert!(reason(enc("Float64", true)).contains("a boolean cannot be written to a Float64 column"));
    }

    #[test]
    fn strings_and_fixed_strings() {
        assert_eq!(enc("String", "").unwrap(), [0]);
        assert_eq!(enc("String", "日本").unwrap(), [6, 0xe6, 0x97, 0xa5, 0xe6, 0x9c, 0xac]);
        let long = "x".repeat(300);
        let mut want = vec![0xac, 0x02];
        want.extend_from_slice(long.as_bytes());
        assert_eq!(enc("String", &long).unwrap(), want);
        assert_eq!(enc("String", 'é').unwrap(), [2, 0xc3, 0xa9]);
        assert_eq!(enc("FixedString(4)", "ab").unwrap(), [b'a', b'b', 0, 0]);
        assert_eq!(enc("FixedString(2)", serde_bytes_like(&[1, 2])).unwrap(), [1, 2]);
        assert_eq!(reason(enc("FixedString(2)", "abc")), "3 bytes do not fit in 2");
        assert!(reason(enc("String", 5u8)).contains("the number 5 cannot be written to a String column"));
    }

    struct Bytes<'a>(&'a [u8]);
    impl Serialize for Bytes<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    fn serde_bytes_like(b: &[u8]) -> Bytes<'_> {
        Bytes(b)
    }

    #[test]
    fn nullable_and_option() {
        assert_eq!(enc("Nullable(UInt16)", None::<u16>).unwrap(), [1]);
        assert_eq!(enc("Nullable(UInt16)", Some(5u16)).unwrap(), [0, 5, 0]);
        assert_eq!(enc("Nullable(String)", "a").unwrap(), [0, 1, b'a']);
        assert_eq!(enc("UInt16", Some(5u16)).unwrap(), [5, 0]);
        assert_eq!(reason(enc("UInt16", None::<u16>)), "NULL cannot be written to a column that is not Nullable");
        assert_eq!(enc("LowCardinality(Nullable(String))", None::<&str>).unwrap(), [1]);
        assert_eq!(enc("LowCardinality(String)", "ab").unwrap(), [2, b'a', b'b']);
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(enc("Date", "1970-01-01").unwrap(), [0, 0]);
        assert_eq!(enc("Date", "2000-03-01").unwrap(), 11_017u16.to_le_bytes());
        assert_eq!(enc("Date", 11_017u16).unwrap(), 11_017u16.to_le_bytes());
        assert_eq!(reason(enc("Date", "2023-02-29")), "`2023-02-29` is not a date (YYYY-MM-DD)");
        assert!(reason(enc("Date", "1969-12-31")).contains("outside the Date range"));
        assert_eq!(enc("DateTime", "2001-09-09 01:46:40").unwrap(), 1_000_000_000u32.to_le_bytes());
        assert_eq!(enc("DateTime", "2001-09-09T03:46:40+02:00").unwrap(), 1_000_000_000u32.to_le_bytes());
        assert_eq!(enc("DateTime", "2001-09-08T22:46:40-03:00").unwrap(), 1_000_000_000u32.to_le_bytes());
        assert_eq!(enc("DateTime('Asia/Tokyo')", "2001-09-09T01:46:40Z").unwrap(), 1_000_000_000u32.to_le_bytes());
        assert_eq!(enc("DateTime", "2001-09-09").unwrap(), 999_993_600u32.to_le_bytes());
        assert_eq!(enc("DateTime('Asia/Tokyo')", 1_000_000_000u32).unwrap(), 1_000_000_000u32.to_le_bytes());
        assert!(reason(enc("DateTime('Asia/Tokyo')", "2001-09-09 01:46:40")).contains("not UTC"));
        assert!(reason(enc("DateTime", "2001-09-09 25:00:00")).contains("is not a date-time"));
        assert!(reason(enc("DateTime", -1i64)).contains("out of range"));
        // days_from_civil against known dates.
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2106, 2, 7), 49_710);
    }

    #[test]
    fn decimals() {
        assert_eq!(enc("Decimal(9, 2)", "123.45").unwrap(), 12_345i32.to_le_bytes());
        assert_eq!(enc("Decimal(9, 2)", "-0.5").unwrap(), (-50i32).to_le_bytes());
        assert_eq!(enc("Decimal(18, 4)", 1.25f64).unwrap(), 12_500i64.to_le_bytes());
        assert_eq!(enc("Decimal(18, 4)", 7u8).unwrap(), 70_000i64.to_le_bytes());
        assert_eq!(enc("Decimal(38, 2)", "-1.5").unwrap(), (-150i128).to_le_bytes());
        assert_eq!(enc("Decimal64(3)", 0.1f64).unwrap(), 100i64.to_le_bytes());
        assert_eq!(reason(enc("Decimal(9, 2)", "1.234")), "1.234 has more than 2 decimal places");
        assert_eq!(enc("Decimal(9, 2)", "1.230").unwrap(), 123i32.to_le_bytes(), "trailing zeros are not places");
        assert_eq!(reason(enc("Decimal(4, 2)", "100.5")), "10050 (unscaled) has more than 4 digits");
        assert!(reason(enc("Decimal(9, 2)", "1e5")).contains("not a decimal number"));
    }

    #[test]
    fn uuids_and_enums() {
        let u = "61f0c404-5cb3-11e7-907b-a6006ad3dba0";
        let mut want = 0x61f0_c404_5cb3_11e7u64.to_le_bytes().to_vec();
        want.extend_from_slice(&0x907b_a600_6ad3_dba0u64.to_le_bytes());
        assert_eq!(enc("UUID", u).unwrap(), want);
        assert_eq!(reason(enc("UUID", "61f0c404")), "`61f0c404` is not a UUID");
        assert_eq!(enc("Enum8('a' = 1, 'b' = -2)", "b").unwrap(), [0xfe]);
        assert_eq!(enc("Enum8('a' = 1, 'b' = -2)", 1u8).unwrap(), [1]);
        assert_eq!(enc("Enum16('a' = 1, 'b' = 300)", "b").unwrap(), 300i16.to_le_bytes());
        assert_eq!(reason(enc("Enum8('a' = 1)", "c")), "`c` is not a member of the enum");
        assert_eq!(reason(enc("Enum8('a' = 1)", 2u8)), "2 is not a value of the enum");
        #[derive(Serialize)]
        enum E {
            A,
        }
        assert_eq!(enc("Enum8('A' = 3)", E::A).unwrap(), [3]);
    }

    #[test]
    fn arrays() {
        assert_eq!(enc("Array(UInt8)", vec![1u8, 2, 3]).unwrap(), [3, 1, 2, 3]);
        assert_eq!(enc("Array(String)", ["a", "bc"]).unwrap(), [2, 1, b'a', 2, b'b', b'c']);
        assert_eq!(enc("Array(Nullable(Int8))", vec![None, Some(-1i8)]).unwrap(), [2, 1, 0, 0xff]);
        assert_eq!(enc("Array(Array(UInt8))", vec![vec![], vec![9u8]]).unwrap(), [2, 0, 1, 9]);
        assert_eq!(reason(enc("Array(UInt8)", vec![300u16])), "300 is out of range");
        assert!(reason(enc("UInt8", vec![1u8])).contains("a sequence cannot be written"));
    }

    #[derive(Serialize)]
    struct Abc {
        a: u8,
        b: &'static str,
        c: Option<i16>,
    }

    fn abc() -> RowBinaryEncoder {
        RowBinaryEncoder::new([("c", "Nullable(Int16)"), ("a", "UInt8"), ("b", "String"), ("d", "UInt8")], "UTC")
            .unwrap()
    }

    #[test]
    fn the_first_row_sets_the_columns_and_later_rows_follow() {
        let mut e = abc();
        let mut out = Vec::new();
        let row = Abc { a: 1, b: "x", c: Some(-1) };
        let Encoded::Columns(cols) = e.encode(&row, &mut out).unwrap() else { panic!("no columns yet") };
        assert!(out.is_empty());
        e.set_columns(cols);
        assert_eq!(e.columns().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(e.encode(&row, &mut out).unwrap(), Encoded::Written);
        assert_eq!(out, [1, 1, b'x', 0, 0xff, 0xff]);
        // A map with the same fields in another order is reordered to the block's columns.
        let m: std::collections::BTreeMap<&str, serde_json::Value> =
            [("c", serde_json::Value::Null), ("b", "yz".into()), ("a", 2.into())].into_iter().collect();
        out.clear();
        assert_eq!(e.encode(&m, &mut out).unwrap(), Encoded::Written);
        assert_eq!(out, [2, 2, b'y', b'z', 1]);
        // Another set of fields is not written: the caller starts a block with these columns.
        let m2: std::collections::BTreeMap<&str, u8> = [("a", 3), ("d", 4)].into_iter().collect();
        out.clear();
        assert_eq!(e.encode(&m2, &mut out).unwrap(), Encoded::Columns(vec![1, 3]));
        assert!(out.is_empty());
        e.set_columns(vec![1, 3]);
        assert_eq!(e.encode(&m2, &mut out).unwrap(), Encoded::Written);
        assert_eq!(out, [3, 4]);
    }

    #[test]
    fn errors_leave_nothing_behind_and_name_the_column() {
        let mut e = abc();
        e.set_columns(vec![1, 2, 0]);
        let mut out = vec![42];
        let err = e.encode(&Abc { a: 1, b: "x", c: Some(1) }, &mut out);
        assert_eq!(err, Ok(Encoded::Written));
        out.truncate(1);
        #[derive(Serialize)]
        struct Big {
            a: u32,
            b: &'static str,
            c: i16,
        }
        let err = e.encode(&Big { a: 999, b: "x", c: 1 }, &mut out).unwrap_err();
        assert_eq!(out, [42]);
        assert_eq!(err.to_string(), "column `a` (UInt8): 999 is out of range");
        #[derive(Serialize)]
        struct Extra {
            a: u8,
            zz: u8,
        }
        assert_eq!(e.encode(&Extra { a: 1, zz: 2 }, &mut out), Err(EncodeError::UnknownColumn("zz".into())));
        assert!(matches!(e.encode(&5u8, &mut out), Err(EncodeError::Row(m)) if m.contains("structs or maps")));
        assert_eq!(out, [42]);
    }

    #[test]
    fn unsupported_columns_are_listed() {
        let e = RowBinaryEncoder::new([("a", "UInt8"), ("t", "Tuple(UInt8, String)"), ("x", "Array(IPv6)")], "UTC")
            .unwrap_err();
        assert_eq!(e, vec![("t".into(), "Tuple(UInt8, String)".into()), ("x".into(), "Array(IPv6) (IPv6)".into())]);
    }

    #[test]
    fn leb128() {
        for (n, want) in [(0u64, vec![0u8]), (127, vec![127]), (128, vec![0x80, 1]), (300, vec![0xac, 2])] {
            let mut out = Vec::new();
            put_leb128(&mut out, n);
            assert_eq!(out, want, "{n}");
        }
    }
}
