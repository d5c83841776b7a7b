//! One value into one column: a serde serializer that checks a value against its column's
//! [`ChType`] and appends its `RowBinary` bytes, converting the way the server would read the same
//! value as JSON (dates, date-times and decimals by [`crate::encode::civil`]).

use super::types::ChType;
use crate::encode::civil;
use crate::encode::scalar::Num;
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

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
            // `from_reason` reads this text back.
            EncodeError::UnknownColumn(c) => write!(f, "the row has field `{c}`, which is not a column of the table"),
            EncodeError::Row(m) => f.write_str(m),
            EncodeError::Mismatch => f.write_str("the row's fields differ from the block's columns"),
        }
    }
}

impl std::error::Error for EncodeError {}

impl EncodeError {
    /// The error whose text is `reason` (a row encoded on another worker keeps only the text):
    /// an unknown column comes back as such, so the inserting worker can say what to do about
    /// it; anything else as [`EncodeError::Row`].
    pub fn from_reason(reason: &str) -> EncodeError {
        let unknown = reason
            .strip_prefix("the row has field `")
            .and_then(|r| r.strip_suffix("`, which is not a column of the table"));
        match unknown {
            Some(c) => EncodeError::UnknownColumn(c.to_string()),
            None => EncodeError::Row(reason.to_string()),
        }
    }
}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError::Row(msg.to_string())
    }
}

/// One column the encoder may write.
#[derive(Clone, Debug)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) ty: ChType,
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

/// One value into a column of type `ty` (`col` names the column in errors).
pub(super) struct ValueSer<'a> {
    pub(super) col: &'a Column,
    pub(super) ty: &'a ChType,
    pub(super) out: &'a mut Vec<u8>,
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
pub(super) struct ArraySer<'a> {
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
